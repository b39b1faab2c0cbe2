//! Dispatch: matching packed (or soon packed) orders to riders. A pure, synchronous core: the
//! caller hands [`Dispatcher::tick`] the riders on shift and the open orders, and gets back a
//! [`Plan`] of offers to send now (the rolling horizon: only trips whose rider must start
//! moving within [`DispatchConfig::commit_horizon`]) and tentative trips that are re-planned
//! next tick. Orders of one store going the same way are batched (`bundle`), bundles are
//! matched to riders by a min-cost assignment (`matching`) over the cost of predicted lateness
//! and travel, and answers to offers go through the offer book (`offers`). `live` is the one
//! part that is not pure: it feeds the core from the read model on a timer and writes its
//! offers into the stores' replicas, keeping the offer book as rows (`durable`) so that it
//! survives a restart.
//!
//! All times are `f64` minutes on the caller's clock.

pub mod bundle;
pub(crate) mod durable;
pub mod greedy;
pub mod live;
pub mod matching;
pub mod model;
pub mod offers;
pub mod travel;

use std::collections::{BinaryHeap, HashMap};

use bundle::{Bundle, BundlePolicy, make_bundles};
use matching::AssignmentProblem;
pub use model::{Order, OrderId, Rider, RiderId, ServiceTimes, StoreId, Vehicle};
use offers::{Offer, OfferBook, OfferError};
pub use travel::{Haversine, PlanarMetres, Point, TravelTime};

/// Weights of the assignment cost, per minute unless noted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostWeights {
    /// Every minute from click to door of every order.
    pub click_to_door: f64,
    /// Every minute an order is delivered past its target, on top.
    pub lateness: f64,
    /// Every minute the rider travels (to the store and along the drop-offs).
    pub travel: f64,
    /// Every minute the rider waits at the store for the bag.
    pub waiting: f64,
    /// Once per trip to a store that is not the rider's home store.
    pub away_from_home: f64,
    /// Per rating point below 5, once per trip.
    pub rating: f64,
    /// Per order beyond the rider's `guaranteed_orders_left` (it raises the pay bill).
    pub extra_pay: f64,
}

impl Default for CostWeights {
    fn default() -> Self {
        Self {
            click_to_door: 1.0,
            lateness: 4.0,
            travel: 0.1,
            waiting: 0.2,
            away_from_home: 1.0,
            rating: 0.2,
            extra_pay: 5.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DispatchConfig {
    pub service: ServiceTimes,
    pub bundling: BundlePolicy,
    pub weights: CostWeights,
    /// Riders considered per bundle (the cheapest ones); bounds the matching's size.
    pub candidates_per_bundle: usize,
    /// Orders are planned once their ready time is at most this many minutes away.
    pub ready_lookahead: f64,
    /// Offers go out for trips the rider must start within this many minutes.
    pub commit_horizon: f64,
    /// Minutes a rider has to answer an offer.
    pub offer_timeout: f64,
    /// Cost (in cost minutes) per order of leaving a bundle for a later tick; high, so an
    /// order is left only when no rider can take it.
    pub leave_cost_per_order: f64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            service: ServiceTimes {
                pickup: 4.0,
                dropoff: 4.0,
            },
            bundling: BundlePolicy::default(),
            weights: CostWeights::default(),
            candidates_per_bundle: 12,
            ready_lookahead: 30.0,
            commit_horizon: 1.0,
            offer_timeout: 1.0,
            leave_cost_per_order: 10_000.0,
        }
    }
}

/// One rider's trip: pick up a bundle at a store, then drop off in sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub rider: RiderId,
    pub store: StoreId,
    /// Orders in drop-off sequence.
    pub orders: Vec<OrderId>,
    /// The latest time the rider can leave and still be at the store when the bag is.
    pub start_by: f64,
    pub pickup_at: f64,
    /// Predicted delivery time of each order, same sequence.
    pub deliveries: Vec<f64>,
    /// When the rider is free again, at the last drop-off.
    pub free_at: f64,
}

/// The outcome of a tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Offers sent this tick (recorded in the offer book, awaiting an answer).
    pub offers: Vec<Assignment>,
    /// The rest of the best plan, re-planned next tick.
    pub tentative: Vec<Assignment>,
    /// Offers that timed out at the start of this tick; their orders were re-planned.
    pub expired: Vec<Offer>,
}

/// The dispatcher: configuration, travel model and the offer book.
#[derive(Debug)]
pub struct Dispatcher<T> {
    config: DispatchConfig,
    travel: T,
    offers: OfferBook,
}

/// What scoring needs of a rider, gathered once per tick.
struct RiderRow {
    id: RiderId,
    position: Point,
    start: f64,
    shift_end: f64,
    max_orders: usize,
    guaranteed_orders_left: f64,
    home_store: Option<StoreId>,
    /// The part of the cost that does not depend on the bundle.
    fixed: f64,
}

/// Below this many bundles per core, threads cost more than they save.
const MIN_BUNDLES_PER_THREAD: usize = 64;

/// Cost units per cost minute in the integer matching.
const COST_SCALE: f64 = 100.0;
const BEST_RATING: f64 = 5.0;

impl<T: TravelTime> Dispatcher<T> {
    pub fn new(config: DispatchConfig, travel: T) -> Self {
        Self {
            config,
            travel,
            offers: OfferBook::default(),
        }
    }

    pub fn config(&self) -> &DispatchConfig {
        &self.config
    }

    pub fn offers(&self) -> &OfferBook {
        &self.offers
    }

    /// Plans `orders` (the open ones: not yet accepted by a rider) onto `riders` (those on
    /// shift and online) at time `now`. Riders with a pending offer and orders held by one
    /// are left out; riders who refused an order are never matched with it again.
    pub fn tick(&mut self, now: f64, riders: &[Rider], orders: &[Order]) -> Plan {
        let expired = self.offers.expire(now);
        let riders: Vec<&Rider> = riders
            .iter()
            .filter(|rider| rider.shift_end >= now && self.offers.pending(rider.id).is_none())
            .collect();
        let pool: Vec<Order> = orders
            .iter()
            .filter(|order| {
                !self.offers.is_held(order.id)
                    && order.ready_at <= now + self.config.ready_lookahead
            })
            .cloned()
            .collect();
        let free_soon = riders
            .iter()
            .filter(|rider| rider.free_at <= now + self.config.commit_horizon)
            .count();
        let size_limit = pool.len().div_ceil(free_soon.max(1));
        let bundles = make_bundles(
            &pool,
            size_limit,
            &self.config.bundling,
            &self.config.service,
            &self.travel,
        );
        let problem = self.assignment_problem(now, &riders, &pool, &bundles);
        let matched = problem.solve();

        let mut plan = Plan {
            expired,
            ..Plan::default()
        };
        for (bundle, rider) in bundles.iter().zip(matched) {
            let Some(rider) = rider.and_then(|index| riders.get(index)) else {
                continue;
            };
            let assignment = self.assignment(now, rider, &pool, bundle);
            let commit =
                rider.free_at <= now && assignment.start_by <= now + self.config.commit_horizon;
            if commit {
                self.offers.record(Offer {
                    rider: assignment.rider,
                    orders: assignment.orders.clone(),
                    offered_at: now,
                    expires_at: now + self.config.offer_timeout,
                });
                plan.offers.push(assignment);
            } else {
                plan.tentative.push(assignment);
            }
        }
        plan
    }

    /// The rider accepted their offer; the caller now owns the trip (and no longer passes its
    /// orders to [`Dispatcher::tick`]).
    pub fn accept(&mut self, rider: RiderId, now: f64) -> Result<Offer, OfferError> {
        self.offers.accept(rider, now)
    }

    /// The store recorded the rider's acceptance (it judges the timeout, so this holds even
    /// after `expires_at` on the caller's clock).
    pub fn accepted(&mut self, rider: RiderId) -> Result<Offer, OfferError> {
        self.offers.accepted(rider)
    }

    /// Puts back an offer still pending when the caller last stopped.
    pub fn restore_offer(&mut self, offer: Offer) {
        self.offers.record(offer);
    }

    /// Puts back a refusal recorded before the caller last stopped.
    pub fn restore_refusal(&mut self, rider: RiderId, order: OrderId) {
        self.offers.bar(rider, order);
    }

    /// The rider declined: the next tick offers the orders to the next best rider.
    pub fn decline(&mut self, rider: RiderId) -> Result<Offer, OfferError> {
        self.offers.decline(rider)
    }

    /// The rider went offline: their pending offer is withdrawn and re-planned next tick.
    pub fn rider_offline(&mut self, rider: RiderId) -> Option<Offer> {
        self.offers.rider_offline(rider)
    }

    /// The order is delivered or cancelled: forget who refused it.
    pub fn order_finished(&mut self, order: OrderId) {
        self.offers.forget_order(order);
    }

    fn assignment_problem(
        &self,
        now: f64,
        riders: &[&Rider],
        pool: &[Order],
        bundles: &[Bundle],
    ) -> AssignmentProblem {
        let weights = &self.config.weights;
        let rows: Vec<RiderRow> = riders
            .iter()
            .map(|rider| RiderRow {
                id: rider.id,
                position: rider.position,
                start: rider.free_at.max(now),
                shift_end: rider.shift_end,
                max_orders: rider.max_orders(),
                guaranteed_orders_left: f64::from(rider.guaranteed_orders_left),
                home_store: rider.home_store,
                fixed: weights.rating * (BEST_RATING - f64::from(rider.rating)).max(0.0),
            })
            .collect();
        // Bundles share stores, so travel to each store is computed once per rider rather
        // than once per bundle.
        let mut store_slot: HashMap<StoreId, usize> = HashMap::new();
        let mut to_store: Vec<Vec<f64>> = Vec::new();
        let bundle_store: Vec<usize> = bundles
            .iter()
            .map(|bundle| {
                *store_slot.entry(bundle.store).or_insert_with(|| {
                    to_store.push(
                        rows.iter()
                            .map(|rider| self.travel.minutes(rider.position, bundle.pickup))
                            .collect(),
                    );
                    to_store.len() - 1
                })
            })
            .collect();
        // Scoring every rider for every bundle is the tick's main cost: split the bundles
        // over the cores (small ticks stay on the calling thread).
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(bundles.len() / MIN_BUNDLES_PER_THREAD)
            .max(1);
        let chunk = bundles.len().div_ceil(threads).max(1);
        let score = |index: usize| {
            self.candidates(&rows, &to_store[bundle_store[index]], pool, &bundles[index])
        };
        let candidates: Vec<Vec<(usize, i64)>> = if threads == 1 {
            (0..bundles.len()).map(score).collect()
        } else {
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..bundles.len())
                    .step_by(chunk)
                    .map(|first| {
                        let score = &score;
                        let last = (first + chunk).min(bundles.len());
                        scope.spawn(move || (first..last).map(score).collect::<Vec<_>>())
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|worker| {
                        worker
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        };
        let mut problem = AssignmentProblem::new(rows.len());
        for (bundle, row) in bundles.iter().zip(candidates) {
            let leave = self.config.leave_cost_per_order * bundle.orders.len() as f64;
            problem.push_bundle(row, (leave * COST_SCALE).round() as i64);
        }
        problem
    }

    /// The cheapest `candidates_per_bundle` riders for `bundle`, with integer costs;
    /// `to_store[slot]` is rider `slot`'s travel time to the bundle's store.
    fn candidates(
        &self,
        rows: &[RiderRow],
        to_store: &[f64],
        pool: &[Order],
        bundle: &Bundle,
    ) -> Vec<(usize, i64)> {
        let weights = &self.config.weights;
        let half_pickup = self.config.service.pickup / 2.0;
        let size = bundle.orders.len();
        let mut refused = Vec::new();
        for &index in &bundle.orders {
            refused.extend_from_slice(self.offers.refused_by(pool[index].id));
        }
        let deadlines: Vec<f64> = bundle.orders.iter().map(|&i| pool[i].deadline()).collect();
        let placed_sum: f64 = bundle.orders.iter().map(|&i| pool[i].placed_at).sum();
        let offsets_sum: f64 = bundle.delivery_offsets.iter().sum();
        let keep = self.config.candidates_per_bundle.max(1);
        // The `keep` cheapest so far, most expensive on top.
        let mut best: BinaryHeap<(i64, usize)> = BinaryHeap::with_capacity(keep + 1);
        for ((slot, rider), &to_store) in rows.iter().enumerate().zip(to_store) {
            if rider.max_orders < size
                || rider.shift_end < bundle.ready_at
                || (!refused.is_empty() && refused.contains(&rider.id))
            {
                continue;
            }
            let at_counter = rider.start + to_store + half_pickup;
            let pickup = bundle.ready_at.max(at_counter);
            if pickup > rider.shift_end {
                continue;
            }
            let click_to_door =
                weights.click_to_door * (size as f64 * pickup + offsets_sum - placed_sum);
            // Every other term is non-negative: a rider already dearer than the worst kept
            // one is skipped before the rest is computed.
            if best.len() == keep
                && best
                    .peek()
                    .is_some_and(|&(worst, _)| click_to_door * COST_SCALE >= worst as f64)
            {
                continue;
            }
            let lateness: f64 = deadlines
                .iter()
                .zip(&bundle.delivery_offsets)
                .map(|(deadline, offset)| (pickup + offset - deadline).max(0.0))
                .sum();
            let away = match rider.home_store {
                Some(home) if home != bundle.store => weights.away_from_home,
                _ => 0.0,
            };
            let cost = click_to_door
                + weights.lateness * lateness
                + weights.travel * (to_store + bundle.route_minutes)
                + weights.waiting * (bundle.ready_at - at_counter).max(0.0)
                + weights.extra_pay * (size as f64 - rider.guaranteed_orders_left).max(0.0)
                + away
                + rider.fixed;
            let cost = (cost * COST_SCALE).round() as i64;
            if best.len() < keep {
                best.push((cost, slot));
            } else if best.peek().is_some_and(|&(worst, _)| cost < worst) {
                best.pop();
                best.push((cost, slot));
            }
        }
        best.into_iter().map(|(cost, slot)| (slot, cost)).collect()
    }

    fn assignment(&self, now: f64, rider: &Rider, pool: &[Order], bundle: &Bundle) -> Assignment {
        let half_pickup = self.config.service.pickup / 2.0;
        let to_store = self.travel.minutes(rider.position, bundle.pickup);
        let pickup_at = bundle
            .ready_at
            .max(rider.free_at.max(now) + to_store + half_pickup);
        Assignment {
            rider: rider.id,
            store: bundle.store,
            orders: bundle.orders.iter().map(|&i| pool[i].id).collect(),
            start_by: pickup_at - half_pickup - to_store,
            pickup_at,
            deliveries: bundle
                .delivery_offsets
                .iter()
                .map(|offset| pickup_at + offset)
                .collect(),
            free_at: pickup_at + bundle.route_minutes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAVEL: PlanarMetres = PlanarMetres {
        metres_per_minute: 100.0,
        whole_minutes: false,
    };

    fn rider(id: u32, x: f64) -> Rider {
        Rider {
            id: RiderId(id),
            vehicle: Vehicle::Scooter,
            capacity: 3,
            rating: 5.0,
            home_store: None,
            guaranteed_orders_left: 10,
            shift_end: 500.0,
            position: Point::new(x, 0.0),
            free_at: 0.0,
        }
    }

    fn order(id: u32, store_x: f64) -> Order {
        Order {
            id: OrderId(id),
            store: StoreId(store_x as u32),
            pickup: Point::new(store_x, 0.0),
            dropoff: Point::new(store_x, 500.0),
            placed_at: 0.0,
            ready_at: 0.0,
            target_minutes: 30.0,
        }
    }

    fn offered(plan: &Plan) -> Vec<(RiderId, Vec<OrderId>)> {
        plan.offers
            .iter()
            .map(|a| (a.rider, a.orders.clone()))
            .collect()
    }

    #[test]
    fn decline_cascades_to_the_next_best_rider_and_never_back() {
        let riders = [rider(1, 100.0), rider(2, 300.0), rider(3, 900.0)];
        let orders = [order(7, 0.0)];
        let mut dispatcher = Dispatcher::new(DispatchConfig::default(), TRAVEL);
        let plan = dispatcher.tick(0.0, &riders, &orders);
        assert_eq!(offered(&plan), vec![(RiderId(1), vec![OrderId(7)])]);
        // Held while pending: the next tick does not offer it again.
        assert!(dispatcher.tick(0.5, &riders, &orders).offers.is_empty());
        assert!(dispatcher.decline(RiderId(1)).is_ok());
        let plan = dispatcher.tick(0.6, &riders, &orders);
        assert_eq!(offered(&plan), vec![(RiderId(2), vec![OrderId(7)])]);
        // Rider 2 lets it expire: rider 3 is next, never riders 1 or 2 again.
        let plan = dispatcher.tick(5.0, &riders, &orders);
        assert_eq!(plan.expired.len(), 1);
        assert_eq!(offered(&plan), vec![(RiderId(3), vec![OrderId(7)])]);
        assert!(dispatcher.decline(RiderId(3)).is_ok());
        assert!(dispatcher.tick(6.0, &riders, &orders).offers.is_empty());
    }

    #[test]
    fn a_rider_going_offline_has_their_offer_replanned() {
        let riders = [rider(1, 100.0), rider(2, 300.0)];
        let orders = [order(7, 0.0)];
        let mut dispatcher = Dispatcher::new(DispatchConfig::default(), TRAVEL);
        assert_eq!(
            dispatcher.tick(0.0, &riders, &orders).offers[0].rider,
            RiderId(1)
        );
        assert!(dispatcher.rider_offline(RiderId(1)).is_some());
        let plan = dispatcher.tick(0.1, &riders[1..], &orders);
        assert_eq!(offered(&plan), vec![(RiderId(2), vec![OrderId(7)])]);
        assert!(dispatcher.accept(RiderId(2), 0.2).is_ok());
    }

    #[test]
    fn assignment_beats_nearest_first() {
        // Rider 1 sits between the stores and is nearest to the first order's store, so
        // nearest-first gives it that order and sends rider 2 across town for the second
        // (500 + 1,600 m). The matching swaps them (600 + 500 m).
        let riders = [rider(1, 500.0), rider(2, -600.0)];
        let orders = [order(1, 0.0), order(2, 1000.0)];
        let mut dispatcher = Dispatcher::new(DispatchConfig::default(), TRAVEL);
        let mut plan = offered(&dispatcher.tick(0.0, &riders, &orders));
        plan.sort();
        assert_eq!(
            plan,
            vec![
                (RiderId(1), vec![OrderId(2)]),
                (RiderId(2), vec![OrderId(1)])
            ]
        );
        let greedy = greedy::nearest_available(
            0.0,
            &riders,
            &orders,
            &DispatchConfig::default().service,
            &TRAVEL,
        );
        assert_eq!(greedy[0], (RiderId(1), OrderId(1)));
    }

    #[test]
    fn trips_are_offered_only_when_the_rider_must_leave_soon() {
        let riders = [rider(1, 100.0)];
        let mut later = order(7, 0.0);
        later.ready_at = 20.0;
        let mut dispatcher = Dispatcher::new(DispatchConfig::default(), TRAVEL);
        let plan = dispatcher.tick(0.0, &riders, std::slice::from_ref(&later));
        assert!(plan.offers.is_empty());
        assert_eq!(plan.tentative.len(), 1);
        // 1 minute to the store and 2 at the counter: must leave by 17.
        assert_eq!(plan.tentative[0].start_by, 17.0);
        let plan = dispatcher.tick(16.5, &riders, std::slice::from_ref(&later));
        assert_eq!(plan.offers.len(), 1);
        assert_eq!(plan.offers[0].pickup_at, 20.0);
    }
}
