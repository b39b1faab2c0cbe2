//! Order intake throughput and latency over real HTTP, on the embedded default (SQLite,
//! synchronous=FULL): concurrent customers post orders that are validated, priced, routed
//! between two stores and written durably (idempotency record, store replica, read model).
//!
//! Baseline, measured in the same run with the same clients: `GET /healthz` (the HTTP floor of
//! this server on this machine). Prints orders/s and p50/p95/p99 and the ratio to the baseline.
//!
//! `cargo bench -p flashkart-cloud --bench intake [-- SECONDS CLIENTS]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashkart_cloud::CloudConfig;
use flashkart_cloud::projection::Backend;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "bench-admin";

struct Run {
    done: u64,
    seconds: f64,
    latency: Histogram<u64>,
}

impl Run {
    fn line(&self, name: &str) -> String {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} |",
            self.done as f64 / self.seconds,
            ms(0.5),
            ms(0.95),
            ms(0.99)
        )
    }
}

/// Runs `clients` loops of `request` for `seconds`, recording each latency (µs).
async fn drive<F, Fut>(clients: usize, seconds: f64, request: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (request, histogram) = (request.clone(), histogram.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0_u64;
            let mut local = Histogram::<u64>::new(3).unwrap();
            while Instant::now() < deadline {
                let t = Instant::now();
                assert!(request(client, n).await, "request failed");
                local.record(t.elapsed().as_micros() as u64).unwrap();
                n += 1;
            }
            histogram.lock().await.add(&local).unwrap();
            n
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let latency = histogram.lock().await.clone();
    Run {
        done,
        seconds,
        latency,
    }
}

fn area(south: f64, north: f64) -> Value {
    json!({"type": "Polygon", "coordinates": [[[13.2, south], [13.6, south], [13.6, north], [13.2, north], [13.2, south]]]})
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let seconds: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    let mut config = CloudConfig::ephemeral(dir.path().join("cloud"));
    config.admin_token = Some(ADMIN.into());
    config.synchronous = flashkart_sync::Synchronous::Full;
    config.intake.offline_grace_ms = 3_600_000;
    config.intake.max_qty_per_line = 1_000;
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let admin = |method: reqwest::Method, path: String, body: Value| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    for (id, lat, south, north) in [
        ("north", 52.55, 52.47, 52.70),
        ("south", 52.45, 52.30, 52.52),
    ] {
        running.cloud.register_store(id).await.unwrap();
        let put = admin(
            reqwest::Method::PUT,
            format!("/admin/v1/stores/{id}/profile"),
            json!({"name": id, "lat": lat, "lon": 13.4, "service_area": area(south, north),
                   "max_radius_m": 30000.0, "hours": {"opens": "00:00", "closes": "00:00"},
                   "capacity": 100000, "sla_minutes": 30}),
        )
        .await
        .unwrap();
        assert!(put.status().is_success());
    }
    for p in 0..20 {
        let put = admin(
            reqwest::Method::PUT,
            format!("/admin/v1/products/p{p}"),
            json!({"name": format!("product {p}"), "price_minor": 100 + p}),
        )
        .await
        .unwrap();
        assert!(put.status().is_success());
    }
    let mut tokens = Vec::new();
    for c in 0..clients {
        let customer: Value = admin(
            reqwest::Method::POST,
            "/admin/v1/customers".into(),
            json!({"first_name": format!("c{c}")}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        tokens.push(customer["token"].as_str().unwrap().to_owned());
    }
    let tokens = Arc::new(tokens);

    eprintln!("baseline: GET /healthz, {clients} clients, {seconds} s");
    let baseline = {
        let (http, base) = (http.clone(), base.clone());
        drive(clients, seconds, move |_, _| {
            let request = http.get(format!("{base}/healthz"));
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await
    };
    eprintln!("intake: POST /api/v1/orders, {clients} clients, {seconds} s");
    let intake = {
        let (http, base) = (http.clone(), base.clone());
        drive(clients, seconds, move |client, n| {
            let lat = 52.35 + ((client as f64 * 7.0 + n as f64) % 30.0) / 100.0;
            let request = http
                .post(format!("{base}/api/v1/orders"))
                .bearer_auth(&tokens[client])
                .header("idempotency-key", format!("{client}-{n}"))
                .json(&json!({
                    "address": {"text": "Bench Street 1", "lat": lat, "lon": 13.41},
                    "lines": [{"product_id": format!("p{}", n % 20), "qty": 1 + n % 3},
                              {"product_id": format!("p{}", (n + 7) % 20), "qty": 1}],
                    "payment": {"method": "cash"}
                }));
            async move {
                request
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 201)
            }
        })
        .await
    };
    let ratio = (intake.done as f64 / intake.seconds) / (baseline.done as f64 / baseline.seconds);
    println!("| case | per s | p50 ms | p95 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    println!("{}", baseline.line("baseline: GET /healthz"));
    println!(
        "{}",
        intake.line("order intake (validate, price, route, 3 durable writes)")
    );
    println!(
        "intake runs at {:.3}x the baseline's request rate; {} orders in {:.1} s with {clients} clients",
        ratio, intake.done, intake.seconds
    );
    let orders = match running.cloud.projection().backend() {
        Backend::Sqlite(db) => db
            .read(|conn| {
                conn.query_row("SELECT count(*) FROM rm_orders", [], |r| r.get::<_, i64>(0))
                    .map_err(flashkart_sync::Error::from)
            })
            .await
            .unwrap(),
        Backend::Postgres(pg) => pg
            .client()
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM rm_orders", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
    };
    assert_eq!(
        orders as u64, intake.done,
        "every acknowledged order is in the read model"
    );
    shutdown.cancel();
    running.wait().await.unwrap();
}
