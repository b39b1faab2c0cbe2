//! Replays an MDRP instance in simulated time through a dispatch policy and scores it with the
//! checker's rules (README of the instances): travel = ceil(metres / metres_per_minute); pickup
//! no earlier than max(ready, arrival + pickup service / 2), leaving half the service later;
//! drop-off at arrival + dropoff service / 2; one restaurant per bundle; no pickup after the
//! courier's off time; no diversion en route. The simulator executes trips itself and rejects
//! any that break a rule, so the dispatcher and the greedy baseline are scored identically.

use std::collections::HashSet;

use serde::Serialize;

use flashkart_cloud::dispatch::greedy::nearest_available;
use flashkart_cloud::dispatch::model::{
    MAX_BUNDLE, Order, OrderId, Rider, RiderId, ServiceTimes, StoreId, Vehicle,
};
use flashkart_cloud::dispatch::offers::OfferError;
use flashkart_cloud::dispatch::travel::{PlanarMetres, Point, TravelTime};
use flashkart_cloud::dispatch::{DispatchConfig, Dispatcher};

use crate::mdrp::{Courier, Instance, Parameters};
use crate::solution::{self, Place, Solution};

/// A trip a policy commits: one courier, orders of one restaurant in drop-off sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    pub rider: RiderId,
    pub orders: Vec<OrderId>,
}

/// A dispatch policy under test. `riders` are the couriers who can still pick up (idle or
/// busy, with when and where they are next free); `orders` are placed and not yet taken.
pub trait Policy {
    fn plan(
        &mut self,
        now: f64,
        riders: &[Rider],
        orders: &[Order],
    ) -> Result<Vec<Trip>, ReplayError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("minute {now}: trip for rider {rider:?} breaks a rule: {reason}")]
    Rule {
        now: f64,
        rider: RiderId,
        reason: &'static str,
    },
    #[error("minute {now}: the dispatcher's offer could not be accepted: {source}")]
    Offer { now: f64, source: OfferError },
}

/// The figures the benchmark reports for one policy on one instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub orders_delivered: usize,
    pub orders_undelivered: usize,
    pub click_to_door_mean: f64,
    pub click_to_door_p90: f64,
    pub share_over_target: f64,
    pub ready_to_pickup_mean: f64,
    pub orders_per_courier_hour: f64,
    pub cost_per_order: f64,
    /// Mean orders per trip.
    pub orders_per_trip: f64,
}

/// The real dispatcher, accepting every offer at once (MDRP couriers never decline).
#[derive(Debug)]
pub struct DispatcherPolicy {
    dispatcher: Dispatcher<PlanarMetres>,
}

impl DispatcherPolicy {
    /// The dispatcher configured with the instance's speed and service times.
    pub fn for_instance(instance: &Instance, config: DispatchConfig) -> Self {
        let config = DispatchConfig {
            service: service_times(instance),
            ..config
        };
        Self {
            dispatcher: Dispatcher::new(config, travel(instance)),
        }
    }
}

impl Policy for DispatcherPolicy {
    fn plan(
        &mut self,
        now: f64,
        riders: &[Rider],
        orders: &[Order],
    ) -> Result<Vec<Trip>, ReplayError> {
        let plan = self.dispatcher.tick(now, riders, orders);
        plan.offers
            .into_iter()
            .map(|assignment| {
                let offer = self
                    .dispatcher
                    .accept(assignment.rider, now)
                    .map_err(|source| ReplayError::Offer { now, source })?;
                Ok(Trip {
                    rider: offer.rider,
                    orders: offer.orders,
                })
            })
            .collect()
    }
}

/// The nearest-available-courier baseline.
#[derive(Debug)]
pub struct GreedyPolicy {
    service: ServiceTimes,
    travel: PlanarMetres,
}

impl GreedyPolicy {
    pub fn for_instance(instance: &Instance) -> Self {
        Self {
            service: service_times(instance),
            travel: travel(instance),
        }
    }
}

impl Policy for GreedyPolicy {
    fn plan(
        &mut self,
        now: f64,
        riders: &[Rider],
        orders: &[Order],
    ) -> Result<Vec<Trip>, ReplayError> {
        Ok(
            nearest_available(now, riders, orders, &self.service, &self.travel)
                .into_iter()
                .map(|(rider, order)| Trip {
                    rider,
                    orders: vec![order],
                })
                .collect(),
        )
    }
}

fn travel(instance: &Instance) -> PlanarMetres {
    PlanarMetres {
        metres_per_minute: instance.parameters.metres_per_minute,
        whole_minutes: true,
    }
}

fn service_times(instance: &Instance) -> ServiceTimes {
    ServiceTimes {
        pickup: instance.parameters.pickup_service,
        dropoff: instance.parameters.dropoff_service,
    }
}

struct CourierState {
    position: Point,
    /// Where the courier is, as the solution files name it.
    place: Place,
    free_at: f64,
    delivered: usize,
}

/// What a replay produced: its figures and the solution they were computed from.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub metrics: Metrics,
    pub solution: Solution,
}

#[derive(Clone, Copy)]
struct Delivery {
    click_to_door: f64,
    ready_to_pickup: f64,
}

/// Replays `instance`, asking `policy` for trips every `tick_minutes` from the first order or
/// shift start until no courier can pick up any more; records every trip and move.
pub fn replay(
    instance: &Instance,
    policy: &mut dyn Policy,
    tick_minutes: f64,
) -> Result<Replayed, ReplayError> {
    let parameters = &instance.parameters;
    let travel = travel(instance);
    let half_pickup = parameters.pickup_service / 2.0;
    let half_dropoff = parameters.dropoff_service / 2.0;
    let mut couriers: Vec<CourierState> = instance
        .couriers
        .iter()
        .map(|courier| CourierState {
            position: courier.start,
            place: Place::Start,
            free_at: courier.on_time,
            delivered: 0,
        })
        .collect();
    let mut deliveries: Vec<Option<Delivery>> = vec![None; instance.orders.len()];
    let mut taken = vec![false; instance.orders.len()];
    let mut trips = 0_usize;
    let mut record = Solution::new(instance.orders.len());
    let mut by_placement: Vec<usize> = (0..instance.orders.len()).collect();
    by_placement.sort_by(|&a, &b| {
        instance.orders[a]
            .placed_at
            .total_cmp(&instance.orders[b].placed_at)
    });
    let first_event = instance
        .orders
        .iter()
        .map(|order| order.placed_at)
        .chain(instance.couriers.iter().map(|courier| courier.on_time))
        .fold(f64::INFINITY, f64::min);
    let last_pickup = instance
        .couriers
        .iter()
        .map(|courier| courier.off_time)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut placed = 0;
    let mut taken_count = 0;
    let mut now = first_event.floor();
    while now <= last_pickup && taken_count < instance.orders.len() {
        while placed < by_placement.len() && instance.orders[by_placement[placed]].placed_at <= now
        {
            placed += 1;
        }
        let open: Vec<Order> = by_placement[..placed]
            .iter()
            .filter(|&&index| !taken[index])
            .map(|&index| {
                let order = &instance.orders[index];
                Order {
                    id: OrderId(index as u32),
                    store: StoreId(order.restaurant as u32),
                    pickup: instance.restaurants[order.restaurant].position,
                    dropoff: order.dropoff,
                    placed_at: order.placed_at,
                    ready_at: order.ready_at,
                    target_minutes: parameters.target_click_to_door,
                }
            })
            .collect();
        let riders: Vec<Rider> = instance
            .couriers
            .iter()
            .zip(&couriers)
            .enumerate()
            .filter(|(_, (courier, _))| courier.off_time >= now)
            .map(|(index, (courier, state))| Rider {
                id: RiderId(index as u32),
                vehicle: Vehicle::Scooter,
                capacity: MAX_BUNDLE as u8,
                rating: 5.0,
                home_store: None,
                guaranteed_orders_left: guaranteed_orders(parameters, courier)
                    .saturating_sub(state.delivered as u32),
                shift_end: courier.off_time,
                position: state.position,
                free_at: state.free_at,
            })
            .collect();
        if !open.is_empty() {
            for trip in policy.plan(now, &riders, &open)? {
                let rule = |reason| ReplayError::Rule {
                    now,
                    rider: trip.rider,
                    reason,
                };
                let courier_index = trip.rider.0 as usize;
                let (Some(courier), Some(state)) = (
                    instance.couriers.get(courier_index),
                    couriers.get_mut(courier_index),
                ) else {
                    return Err(rule("unknown courier"));
                };
                if courier.on_time > now || state.free_at > now {
                    return Err(rule("courier is not free"));
                }
                if trip.orders.is_empty() || trip.orders.len() > MAX_BUNDLE {
                    return Err(rule("a trip carries 1 to 3 orders"));
                }
                let indices: Vec<usize> =
                    trip.orders.iter().map(|order| order.0 as usize).collect();
                if indices.iter().collect::<HashSet<_>>().len() != indices.len() {
                    return Err(rule("an order appears twice"));
                }
                let mut restaurant = None;
                let mut ready = f64::NEG_INFINITY;
                for &index in &indices {
                    let Some(order) = instance.orders.get(index) else {
                        return Err(rule("unknown order"));
                    };
                    if taken[index] || order.placed_at > now {
                        return Err(rule("order is not open"));
                    }
                    if restaurant.is_some_and(|r| r != order.restaurant) {
                        return Err(rule("orders of two restaurants in one bundle"));
                    }
                    restaurant = Some(order.restaurant);
                    ready = ready.max(order.ready_at);
                }
                let Some(restaurant) = restaurant.and_then(|r| instance.restaurants.get(r)) else {
                    return Err(rule("unknown restaurant"));
                };
                let arrival = now + travel.minutes(state.position, restaurant.position);
                let pickup = ready.max(arrival + half_pickup);
                if pickup > courier.off_time {
                    return Err(rule("pickup after the courier's off time"));
                }
                let restaurant_index = instance.orders[indices[0]].restaurant;
                record.moves.push(solution::Move {
                    courier: courier_index,
                    departure: now,
                    origin: state.place,
                    destination: Place::Restaurant(restaurant_index),
                });
                let mut clock = pickup + half_pickup;
                let mut here = restaurant.position;
                let mut place = Place::Restaurant(restaurant_index);
                for &index in &indices {
                    let order = &instance.orders[index];
                    record.moves.push(solution::Move {
                        courier: courier_index,
                        departure: clock,
                        origin: place,
                        destination: Place::Dropoff(index),
                    });
                    clock += travel.minutes(here, order.dropoff);
                    let delivered = clock + half_dropoff;
                    deliveries[index] = Some(Delivery {
                        click_to_door: delivered - order.placed_at,
                        ready_to_pickup: pickup - order.ready_at,
                    });
                    record.orders[index] = Some(solution::Delivered {
                        pickup_at: pickup,
                        dropoff_at: delivered,
                        courier: courier_index,
                    });
                    taken[index] = true;
                    clock = delivered + half_dropoff;
                    here = order.dropoff;
                    place = Place::Dropoff(index);
                }
                record.assignments.push(solution::Assignment {
                    assigned_at: now,
                    pickup_at: pickup,
                    courier: courier_index,
                    orders: indices.clone(),
                });
                taken_count += indices.len();
                trips += 1;
                state.free_at = clock;
                state.position = here;
                state.place = place;
                state.delivered += indices.len();
            }
        }
        now += tick_minutes;
    }
    Ok(Replayed {
        metrics: score(instance, &couriers, &deliveries, trips),
        solution: record,
    })
}

/// Orders a courier's hourly guarantee already pays for.
fn guaranteed_orders(parameters: &Parameters, courier: &Courier) -> u32 {
    let guarantee = parameters.pay_per_hour * (courier.off_time - courier.on_time) / 60.0;
    if parameters.pay_per_order > 0.0 {
        (guarantee / parameters.pay_per_order).floor() as u32
    } else {
        u32::MAX
    }
}

fn score(
    instance: &Instance,
    couriers: &[CourierState],
    deliveries: &[Option<Delivery>],
    trips: usize,
) -> Metrics {
    let parameters = &instance.parameters;
    let done: Vec<Delivery> = deliveries.iter().flatten().copied().collect();
    let delivered = done.len();
    let mut click_to_door: Vec<f64> = done.iter().map(|d| d.click_to_door).collect();
    click_to_door.sort_by(f64::total_cmp);
    let count = delivered.max(1) as f64;
    let p90 = if click_to_door.is_empty() {
        0.0
    } else {
        // Nearest rank.
        let rank = (0.9 * click_to_door.len() as f64).ceil() as usize;
        click_to_door[rank.clamp(1, click_to_door.len()) - 1]
    };
    let courier_hours: f64 = instance
        .couriers
        .iter()
        .map(|courier| (courier.off_time - courier.on_time) / 60.0)
        .sum();
    let pay: f64 = instance
        .couriers
        .iter()
        .zip(couriers)
        .map(|(courier, state)| {
            (parameters.pay_per_order * state.delivered as f64)
                .max(parameters.pay_per_hour * (courier.off_time - courier.on_time) / 60.0)
        })
        .sum();
    let round = |value: f64| (value * 1000.0).round() / 1000.0;
    Metrics {
        orders_delivered: delivered,
        orders_undelivered: deliveries.len() - delivered,
        click_to_door_mean: round(click_to_door.iter().sum::<f64>() / count),
        click_to_door_p90: round(p90),
        share_over_target: round(
            click_to_door
                .iter()
                .filter(|&&minutes| minutes > parameters.target_click_to_door)
                .count() as f64
                / count,
        ),
        ready_to_pickup_mean: round(done.iter().map(|d| d.ready_to_pickup).sum::<f64>() / count),
        orders_per_courier_hour: round(delivered as f64 / courier_hours.max(f64::MIN_POSITIVE)),
        cost_per_order: round(pay / count),
        orders_per_trip: round(delivered as f64 / trips.max(1) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdrp::{MdrpError, Sources};

    const PARAMETERS: &str = "meters_per_minute\tpickup service minutes\tdropoff service minutes\ttarget click-to-door\tmaximum click-to-door\tpay per order\tguaranteed pay per hour\n100\t4\t4\t40\t90\t10\t15\n";

    fn instance(orders: &str, couriers: &str) -> Result<Instance, MdrpError> {
        Instance::parse(
            "tiny".to_owned(),
            Sources {
                orders,
                couriers,
                restaurants: "restaurant\tx\ty\nr1\t0\t0\nr2\t5000\t0\n",
                parameters: PARAMETERS,
            },
        )
    }

    #[test]
    fn greedy_trip_follows_the_checker_rules() -> Result<(), Box<dyn std::error::Error>> {
        // Courier 250 m from r1: 3 minutes (ceil 2.5), arrives 3, pickup max(10, 5) = 10,
        // leaves 12, 1000 m = 10 minutes, drop-off at 22 + 2 = 24: click-to-door 24.
        let instance = instance(
            "order\tx\ty\tplacement_time\trestaurant\tready_time\no1\t1000\t0\t0\tr1\t10\n",
            "courier\tx\ty\ton_time\toff_time\nc1\t250\t0\t0\t60\n",
        )?;
        let metrics = replay(&instance, &mut GreedyPolicy::for_instance(&instance), 1.0)?.metrics;
        assert_eq!(metrics.orders_delivered, 1);
        assert_eq!(metrics.click_to_door_mean, 24.0);
        assert_eq!(metrics.ready_to_pickup_mean, 0.0);
        // One order, one hour on shift: paid the guaranteed 15.
        assert_eq!(metrics.cost_per_order, 15.0);
        Ok(())
    }

    #[test]
    fn no_pickup_after_off_time() -> Result<(), Box<dyn std::error::Error>> {
        let instance = instance(
            "order\tx\ty\tplacement_time\trestaurant\tready_time\no1\t1000\t0\t0\tr2\t50\n",
            "courier\tx\ty\ton_time\toff_time\nc1\t0\t0\t0\t30\n",
        )?;
        for metrics in [
            replay(&instance, &mut GreedyPolicy::for_instance(&instance), 1.0)?.metrics,
            replay(
                &instance,
                &mut DispatcherPolicy::for_instance(&instance, DispatchConfig::default()),
                1.0,
            )?
            .metrics,
        ] {
            assert_eq!(metrics.orders_delivered, 0);
            assert_eq!(metrics.orders_undelivered, 1);
        }
        Ok(())
    }

    #[test]
    fn dispatcher_batches_same_direction_orders_when_couriers_are_short()
    -> Result<(), Box<dyn std::error::Error>> {
        let instance = instance(
            "order\tx\ty\tplacement_time\trestaurant\tready_time\n\
             o1\t1000\t0\t0\tr1\t5\no2\t1100\t0\t0\tr1\t5\no3\t1200\t0\t0\tr1\t5\n",
            "courier\tx\ty\ton_time\toff_time\nc1\t0\t0\t0\t120\n",
        )?;
        let metrics = replay(
            &instance,
            &mut DispatcherPolicy::for_instance(&instance, DispatchConfig::default()),
            1.0,
        )?
        .metrics;
        assert_eq!(metrics.orders_delivered, 3);
        assert_eq!(metrics.orders_per_trip, 3.0);
        Ok(())
    }
}
