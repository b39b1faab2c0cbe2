//! Dispatch tick time for 2,000 riders x 1,000 open orders (target < 100 ms), against the
//! nearest-available greedy baseline on the same input in the same run. Riders and orders are
//! spread over a 12 km square city with 60 stores; 60% of riders are idle, the rest free within
//! 20 minutes; orders are ready from 10 minutes ago to 20 minutes ahead. The same scenario is
//! timed with planar metres and with haversine lon/lat travel times.
//!
//! `cargo bench -p flashkart-cloud --bench dispatch` (`FLASHKART_BENCH_QUICK=1` for a smoke run)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use flashkart_cloud::dispatch::greedy::nearest_available;
use flashkart_cloud::dispatch::{
    DispatchConfig, Dispatcher, Haversine, Order, OrderId, PlanarMetres, Point, Rider, RiderId,
    StoreId, TravelTime, Vehicle,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RIDERS: usize = 2_000;
const ORDERS: usize = 1_000;
const STORES: u32 = 60;
const CITY_METRES: f64 = 12_000.0;
const NOW: f64 = 600.0;
/// Metres per degree of latitude, to lay the same city out in lon/lat around Bengaluru.
const METRES_PER_DEGREE: f64 = 111_195.0;
const ORIGIN: Point = Point::new(77.55, 12.90);

struct Scenario {
    riders: Vec<Rider>,
    orders: Vec<Order>,
}

fn scenario(to_point: impl Fn(f64, f64) -> Point) -> Scenario {
    let mut rng = StdRng::seed_from_u64(2026);
    let stores: Vec<(f64, f64)> = (0..STORES)
        .map(|_| {
            (
                rng.random_range(1_000.0..CITY_METRES - 1_000.0),
                rng.random_range(1_000.0..CITY_METRES - 1_000.0),
            )
        })
        .collect();
    let vehicles = [
        Vehicle::Scooter,
        Vehicle::Scooter,
        Vehicle::Bicycle,
        Vehicle::Car,
    ];
    let riders = (0..RIDERS)
        .map(|i| Rider {
            id: RiderId(i as u32),
            vehicle: vehicles[i % vehicles.len()],
            capacity: 3,
            rating: rng.random_range(3.5..5.0),
            home_store: Some(StoreId(rng.random_range(0..STORES))),
            guaranteed_orders_left: rng.random_range(0..6),
            shift_end: NOW + rng.random_range(30.0..240.0),
            position: to_point(
                rng.random_range(0.0..CITY_METRES),
                rng.random_range(0.0..CITY_METRES),
            ),
            free_at: if rng.random_bool(0.6) {
                NOW
            } else {
                NOW + rng.random_range(0.0..20.0)
            },
        })
        .collect();
    let orders = (0..ORDERS)
        .map(|i| {
            let store = rng.random_range(0..STORES);
            let (x, y) = stores[store as usize];
            let placed_at = NOW - rng.random_range(0.0..15.0);
            Order {
                id: OrderId(i as u32),
                store: StoreId(store),
                pickup: to_point(x, y),
                dropoff: to_point(
                    x + rng.random_range(-3_000.0..3_000.0),
                    y + rng.random_range(-3_000.0..3_000.0),
                ),
                placed_at,
                ready_at: (placed_at + rng.random_range(5.0..25.0)).max(NOW - 10.0),
                target_minutes: 30.0,
            }
        })
        .collect();
    Scenario { riders, orders }
}

struct Timings {
    samples: Vec<Duration>,
}

impl Timings {
    fn measure(runs: usize, mut run: impl FnMut()) -> Self {
        run();
        let mut samples: Vec<Duration> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                run();
                started.elapsed()
            })
            .collect();
        samples.sort();
        Self { samples }
    }

    fn p50(&self) -> f64 {
        ms(self.samples[self.samples.len() / 2])
    }

    fn max(&self) -> f64 {
        ms(self.samples[self.samples.len() - 1])
    }

    fn mean(&self) -> f64 {
        self.samples.iter().map(|d| ms(*d)).sum::<f64>() / self.samples.len() as f64
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn run_case<T: TravelTime + Copy>(name: &str, travel: T, scenario: &Scenario, runs: usize) {
    let config = DispatchConfig::default();
    let mut offers = 0;
    let mut tentative = 0;
    let dispatch = Timings::measure(runs, || {
        let mut dispatcher = Dispatcher::new(config.clone(), travel);
        let plan = dispatcher.tick(NOW, &scenario.riders, &scenario.orders);
        offers = plan.offers.iter().map(|a| a.orders.len()).sum::<usize>();
        tentative = plan.tentative.iter().map(|a| a.orders.len()).sum::<usize>();
    });
    let mut greedy_pairs = 0;
    let greedy = Timings::measure(runs, || {
        greedy_pairs = nearest_available(
            NOW,
            &scenario.riders,
            &scenario.orders,
            &config.service,
            &travel,
        )
        .len();
    });
    println!(
        "| {name}: dispatcher tick | {:.1} | {:.1} | {:.1} | {offers} offered now, {tentative} planned ahead |",
        dispatch.p50(),
        dispatch.mean(),
        dispatch.max()
    );
    println!(
        "| {name}: greedy nearest-available (baseline) | {:.1} | {:.1} | {:.1} | {greedy_pairs} assigned |",
        greedy.p50(),
        greedy.mean(),
        greedy.max()
    );
    println!(
        "| {name}: ratio dispatcher / greedy (p50) | {:.2}x | | | |",
        dispatch.p50() / greedy.p50()
    );
}

fn main() {
    let quick = std::env::var_os("FLASHKART_BENCH_QUICK").is_some();
    let runs = if quick { 3 } else { 30 };
    println!("dispatch tick, {RIDERS} riders x {ORDERS} open orders, {runs} runs each");
    println!("| case | p50 ms | mean ms | max ms | plan |");
    println!("|---|---:|---:|---:|---|");
    let planar = PlanarMetres {
        metres_per_minute: 300.0,
        whole_minutes: false,
    };
    run_case("planar", planar, &scenario(Point::new), runs);
    let lon_lat = |x: f64, y: f64| {
        let degrees_lat = y / METRES_PER_DEGREE;
        let degrees_lon = x / (METRES_PER_DEGREE * ORIGIN.y.to_radians().cos());
        Point::new(ORIGIN.x + degrees_lon, ORIGIN.y + degrees_lat)
    };
    run_case(
        "haversine",
        Haversine {
            metres_per_minute: 300.0,
        },
        &scenario(lon_lat),
        runs,
    );
}
