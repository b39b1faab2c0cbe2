//! Batching: orders leaving the same store in the same direction share a rider (at most three
//! per trip). Bundles are formed per store by sweeping the orders sorted by the bearing of
//! their drop-off, and an order joins only if the delay it adds to the bundle stays small;
//! how large bundles may grow follows the ratio of open orders to free riders, so batching
//! happens when riders are short and not when they are plentiful.

use std::f64::consts::PI;

use super::model::{MAX_BUNDLE, Order, ServiceTimes, StoreId};
use super::travel::{Point, TravelTime};

/// Orders of one store carried in one trip, in drop-off sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub store: StoreId,
    pub pickup: Point,
    /// Indices into the order slice the bundle was made from, in drop-off sequence.
    pub orders: Vec<usize>,
    /// The latest ready time of its orders: the bundle is ready when all of them are.
    pub ready_at: f64,
    /// Delivery time of each order (same sequence) counted from the pickup time.
    pub delivery_offsets: Vec<f64>,
    /// Minutes from the pickup time until the rider is free after the last drop-off.
    pub route_minutes: f64,
    pub last_dropoff: Point,
}

/// When orders may share a trip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BundlePolicy {
    /// At most this many orders per trip (capped at 3).
    pub max_orders: usize,
    /// Drop-off bearings (seen from the store) of a bundle's orders lie within this angle.
    pub sector_degrees: f64,
    /// Each order that joins a bundle may add at most this many minutes to the total delay
    /// of the bundle's customers, compared with each order going straight from the store.
    pub max_added_minutes: f64,
}

impl Default for BundlePolicy {
    fn default() -> Self {
        Self {
            max_orders: MAX_BUNDLE,
            sector_degrees: 45.0,
            max_added_minutes: 10.0,
        }
    }
}

/// Groups `orders` into bundles of at most `size_limit` orders (and the policy's maximum).
/// Every order ends up in exactly one bundle; a bundle never mixes stores.
pub fn make_bundles<T: TravelTime>(
    orders: &[Order],
    size_limit: usize,
    policy: &BundlePolicy,
    service: &ServiceTimes,
    travel: &T,
) -> Vec<Bundle> {
    let size_limit = size_limit.min(policy.max_orders).clamp(1, MAX_BUNDLE);
    let bearings: Vec<f64> = orders
        .iter()
        .map(|order| bearing(order.pickup, order.dropoff))
        .collect();
    let mut sorted: Vec<usize> = (0..orders.len()).collect();
    sorted.sort_by(|&a, &b| {
        orders[a]
            .store
            .cmp(&orders[b].store)
            .then(bearings[a].total_cmp(&bearings[b]))
    });
    start_sweeps_at_widest_gaps(orders, &bearings, &mut sorted);
    let sector = policy.sector_degrees.to_radians();
    let mut bundles = Vec::with_capacity(orders.len());
    let mut current: Vec<usize> = Vec::with_capacity(MAX_BUNDLE);
    for index in sorted {
        let joins = match current.first() {
            Some(&first) => {
                current.len() < size_limit
                    && orders[first].store == orders[index].store
                    && angle_between(bearings[first], bearings[index]) <= sector
                    && {
                        let mut candidate = current.clone();
                        candidate.push(index);
                        added_delay(orders, &candidate, service, travel)
                            <= policy.max_added_minutes * current.len() as f64
                    }
            }
            None => true,
        };
        if !joins {
            bundles.push(bundle_of(orders, &current, service, travel));
            current.clear();
        }
        current.push(index);
    }
    if !current.is_empty() {
        bundles.push(bundle_of(orders, &current, service, travel));
    }
    bundles
}

/// Bearings wrap around at due west, so a plain sort splits orders on either side of it. In
/// each store's run of `sorted` (sorted by bearing), rotates the run to start just after the
/// widest angular gap between neighbouring drop-offs, where no bundle would span anyway.
fn start_sweeps_at_widest_gaps(orders: &[Order], bearings: &[f64], sorted: &mut [usize]) {
    let mut start = 0;
    while start < sorted.len() {
        let store = orders[sorted[start]].store;
        let end = sorted[start..]
            .iter()
            .position(|&index| orders[index].store != store)
            .map_or(sorted.len(), |offset| start + offset);
        let run = &mut sorted[start..end];
        let widest = (0..run.len())
            .map(|i| {
                let next = (i + 1) % run.len();
                let mut gap = bearings[run[next]] - bearings[run[i]];
                if gap <= 0.0 {
                    gap += 2.0 * PI;
                }
                (gap, next)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, first)) = widest {
            run.rotate_left(first);
        }
        start = end;
    }
}

/// Builds the bundle for `members` (1 to 3 orders of one store) with the drop-off sequence
/// that minimises the sum of delivery times.
pub fn bundle_of<T: TravelTime>(
    orders: &[Order],
    members: &[usize],
    service: &ServiceTimes,
    travel: &T,
) -> Bundle {
    let (sequence, route) = best_sequence(orders, members, service, travel);
    let first = &orders[sequence[0]];
    Bundle {
        store: first.store,
        pickup: first.pickup,
        ready_at: sequence
            .iter()
            .map(|&i| orders[i].ready_at)
            .fold(f64::NEG_INFINITY, f64::max),
        last_dropoff: orders[sequence[sequence.len() - 1]].dropoff,
        orders: sequence,
        delivery_offsets: route.offsets,
        route_minutes: route.minutes,
    }
}

struct Route {
    offsets: Vec<f64>,
    minutes: f64,
}

/// Delivery offsets from the pickup time, for drop-offs in the given sequence.
fn route<T: TravelTime>(
    orders: &[Order],
    sequence: &[usize],
    service: &ServiceTimes,
    travel: &T,
) -> Route {
    let mut clock = service.pickup / 2.0;
    let mut here = orders[sequence[0]].pickup;
    let mut offsets = Vec::with_capacity(sequence.len());
    for &index in sequence {
        let drop = orders[index].dropoff;
        let delivered = clock + travel.minutes(here, drop) + service.dropoff / 2.0;
        offsets.push(delivered);
        clock = delivered + service.dropoff / 2.0;
        here = drop;
    }
    Route {
        offsets,
        minutes: clock,
    }
}

const PERMUTATIONS_2: [[usize; 2]; 2] = [[0, 1], [1, 0]];
const PERMUTATIONS_3: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

fn best_sequence<T: TravelTime>(
    orders: &[Order],
    members: &[usize],
    service: &ServiceTimes,
    travel: &T,
) -> (Vec<usize>, Route) {
    let candidates: Vec<Vec<usize>> = match members.len() {
        2 => PERMUTATIONS_2
            .iter()
            .map(|p| p.iter().map(|&k| members[k]).collect())
            .collect(),
        3 => PERMUTATIONS_3
            .iter()
            .map(|p| p.iter().map(|&k| members[k]).collect())
            .collect(),
        _ => vec![members.to_vec()],
    };
    let mut best: Option<(Vec<usize>, Route, f64)> = None;
    for sequence in candidates {
        let route = route(orders, &sequence, service, travel);
        let total: f64 = route.offsets.iter().sum();
        if best
            .as_ref()
            .is_none_or(|(_, _, best_total)| total < *best_total)
        {
            best = Some((sequence, route, total));
        }
    }
    match best {
        Some((sequence, route, _)) => (sequence, route),
        // `members` is never empty; an empty sequence has an empty route.
        None => (
            Vec::new(),
            Route {
                offsets: Vec::new(),
                minutes: 0.0,
            },
        ),
    }
}

/// Minutes of delay the bundle adds to its customers in total, against each order leaving the
/// store alone as soon as it is ready.
fn added_delay<T: TravelTime>(
    orders: &[Order],
    members: &[usize],
    service: &ServiceTimes,
    travel: &T,
) -> f64 {
    let bundle = bundle_of(orders, members, service, travel);
    bundle
        .orders
        .iter()
        .zip(&bundle.delivery_offsets)
        .map(|(&index, offset)| {
            let alone = route(orders, &[index], service, travel).offsets[0];
            (bundle.ready_at - orders[index].ready_at) + (offset - alone)
        })
        .sum()
}

/// Bearing of `to` seen from `from`, radians in (-pi, pi]; planar or lon/lat alike (at city
/// scale the distortion does not matter for grouping by direction).
fn bearing(from: Point, to: Point) -> f64 {
    (to.y - from.y).atan2(to.x - from.x)
}

fn angle_between(a: f64, b: f64) -> f64 {
    let difference = (a - b).abs() % (2.0 * PI);
    difference.min(2.0 * PI - difference)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::model::OrderId;
    use crate::dispatch::travel::PlanarMetres;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const TRAVEL: PlanarMetres = PlanarMetres {
        metres_per_minute: 300.0,
        whole_minutes: false,
    };
    const SERVICE: ServiceTimes = ServiceTimes {
        pickup: 4.0,
        dropoff: 4.0,
    };

    fn order(id: u32, store: u32, dropoff: Point, ready_at: f64) -> Order {
        Order {
            id: OrderId(id),
            store: StoreId(store),
            pickup: Point::new(f64::from(store) * 1000.0, 0.0),
            dropoff,
            placed_at: 0.0,
            ready_at,
            target_minutes: 40.0,
        }
    }

    #[test]
    fn bundles_never_mix_stores_nor_exceed_three() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let orders: Vec<Order> = (0..rng.random_range(1..40))
                .map(|i| {
                    order(
                        i,
                        rng.random_range(0..4),
                        Point::new(
                            rng.random_range(-3000.0..3000.0),
                            rng.random_range(0.0..500.0),
                        ),
                        rng.random_range(0.0..5.0),
                    )
                })
                .collect();
            let policy = BundlePolicy {
                max_added_minutes: 1000.0,
                sector_degrees: 180.0,
                ..BundlePolicy::default()
            };
            let bundles = make_bundles(&orders, 5, &policy, &SERVICE, &TRAVEL);
            let mut seen = vec![0; orders.len()];
            for bundle in &bundles {
                assert!((1..=3).contains(&bundle.orders.len()));
                for &index in &bundle.orders {
                    assert_eq!(orders[index].store, bundle.store);
                    seen[index] += 1;
                }
            }
            assert!(
                seen.iter().all(|&count| count == 1),
                "every order exactly once"
            );
        }
    }

    #[test]
    fn same_direction_orders_share_a_trip_and_opposite_ones_do_not() {
        let orders = vec![
            order(1, 0, Point::new(1000.0, 0.0), 0.0),
            order(2, 0, Point::new(1100.0, 50.0), 0.0),
            order(3, 0, Point::new(-1000.0, 0.0), 0.0),
        ];
        let bundles = make_bundles(&orders, 3, &BundlePolicy::default(), &SERVICE, &TRAVEL);
        assert_eq!(bundles.len(), 2);
        let pair = bundles
            .iter()
            .find(|bundle| bundle.orders.len() == 2)
            .map(|bundle| bundle.orders.clone());
        assert_eq!(pair, Some(vec![0, 1]), "nearer drop-off first");
        let singles = make_bundles(&orders, 1, &BundlePolicy::default(), &SERVICE, &TRAVEL);
        assert_eq!(singles.len(), 3, "size limit 1 means no batching");
    }

    #[test]
    fn orders_either_side_of_due_west_share_a_trip() {
        let orders = vec![
            order(1, 0, Point::new(-1000.0, 20.0), 0.0),
            order(2, 0, Point::new(0.0, 1000.0), 0.0),
            order(3, 0, Point::new(-1000.0, -20.0), 0.0),
        ];
        let bundles = make_bundles(&orders, 3, &BundlePolicy::default(), &SERVICE, &TRAVEL);
        let mut pair = bundles
            .iter()
            .find(|bundle| bundle.orders.len() == 2)
            .map(|bundle| bundle.orders.clone())
            .unwrap_or_default();
        pair.sort();
        assert_eq!(pair, vec![0, 2]);
    }

    #[test]
    fn offsets_follow_the_service_rules() {
        let orders = vec![order(1, 0, Point::new(600.0, 0.0), 0.0)];
        let bundle = bundle_of(&orders, &[0], &SERVICE, &TRAVEL);
        // Leave 2 min after pickup, 2 min driving, drop-off 2 min after arrival.
        assert_eq!(bundle.delivery_offsets, vec![6.0]);
        assert_eq!(bundle.route_minutes, 8.0);
    }
}
