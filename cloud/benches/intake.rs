//! Order intake throughput and latency over real HTTP: concurrent customers post orders that
//! are validated, priced, routed between two stores and written durably (idempotency record,
//! store replica, read model). One run measures, with the same clients and the same scenario,
//! three configurations:
//!
//! 1. one instance on the embedded default (SQLite, synchronous=FULL);
//! 2. one instance on PostgreSQL (`FLASHKART_TEST_POSTGRES`, a fresh `fk_bench_*` database);
//! 3. two instances sharing one PostgreSQL database (another fresh one), each client talking to
//!    one of them (client `i` to instance `i % 2`, over its own keep-alive connection).
//!
//! On PostgreSQL both stores are held: each store says hello over the sync protocol once, to
//! the instance that is to serve it (with two instances, one store each), so an order is
//! either applied by its writer (the holder) or journaled for the other instance; the bench
//! counts which, and checks at the end that every acknowledged order is in the read model and
//! in its store holder's replica.
//!
//! Baseline for each configuration, measured with the same clients: `GET /healthz` (the HTTP
//! floor). With two instances that baseline is itself the floor of scaling out on this machine:
//! if `/healthz` does not scale from one instance to two, intake cannot either. Each run also
//! records the machine's CPU use (`/proc/stat`) and this process's (`/proc/self/stat`).
//! Every instance runs on its own Tokio runtime (its own worker threads), the clients on the
//! bench's.
//!
//! `cargo bench -p flashkart-cloud --bench intake [-- SECONDS CLIENTS]` (defaults 8 s, 64)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flashkart_cloud::postgres::{DatabaseUrl, Postgres};
use flashkart_cloud::projection::Backend;
use flashkart_cloud::{CloudConfig, RunningCloud};
use flashkart_proto::sync::HelloRequest;
use flashkart_sync::protocol;
use hdrhistogram::Histogram;
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "bench-admin";
/// The stores: id, latitude, and the south and north edges of the service area.
const STORES: [(&str, f64, f64, f64); 2] = [
    ("north", 52.55, 52.47, 52.70),
    ("south", 52.45, 52.30, 52.52),
];

/// CPU use during a run: of the whole machine (every process, PostgreSQL's included) and of
/// this process (the clients and the instances).
#[derive(Clone, Copy)]
struct Cpu {
    /// Busy share of all cores, 0..=1.
    machine: f64,
    /// Cores' worth used by this process.
    process: f64,
}

impl Cpu {
    /// Cores' worth used by other processes (PostgreSQL's, and whatever else runs).
    fn others(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        (self.machine * cores - self.process).max(0.0)
    }
}

/// (busy ticks, all ticks) of the machine and this process's ticks.
fn cpu_ticks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let own: u64 = own
        .rsplit_once(')')
        .map(|(_, rest)| {
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
            [11, 12]
                .iter()
                .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
                .sum()
        })
        .unwrap_or(0);
    (total - idle, total, own)
}

fn cpu_since(before: (u64, u64, u64)) -> Cpu {
    let after = cpu_ticks();
    let total = after.1.saturating_sub(before.1).max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Cpu {
        machine: after.0.saturating_sub(before.0) as f64 / total,
        process: after.2.saturating_sub(before.2) as f64 / total * cores,
    }
}

struct Run {
    done: u64,
    seconds: f64,
    latency: Histogram<u64>,
    cpu: Cpu,
}

impl Run {
    fn rate(&self) -> f64 {
        self.done as f64 / self.seconds
    }

    fn line(&self, configuration: &str, case: &str) -> String {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "| {configuration} | {case} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0}% | {:.2} | {:.2} |",
            self.rate(),
            ms(0.5),
            ms(0.95),
            ms(0.99),
            self.cpu.machine * 100.0,
            self.cpu.process,
            self.cpu.others()
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
    let cpu = cpu_ticks();
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
    let cpu = cpu_since(cpu);
    let latency = histogram.lock().await.clone();
    Run {
        done,
        seconds,
        latency,
        cpu,
    }
}

fn area(south: f64, north: f64) -> Value {
    json!({"type": "Polygon", "coordinates": [[[13.2, south], [13.6, south], [13.6, north], [13.2, north], [13.2, south]]]})
}

/// A cloud instance on its own runtime.
struct Instance {
    runtime: tokio::runtime::Runtime,
    running: RunningCloud,
    shutdown: CancellationToken,
    base: String,
}

impl Instance {
    async fn start(dir: &Path, name: &str, database: Option<&DatabaseUrl>) -> Self {
        let mut config = CloudConfig::ephemeral(dir.join(name));
        config.admin_token = Some(ADMIN.into());
        config.synchronous = flashkart_sync::Synchronous::Full;
        config.intake.offline_grace_ms = 3_600_000;
        config.intake.max_qty_per_line = 1_000;
        config.database_url = database.cloned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(format!("cloud-{name}"))
            .build()
            .unwrap();
        let shutdown = CancellationToken::new();
        let running = runtime
            .spawn(flashkart_cloud::start(config, shutdown.clone()))
            .await
            .unwrap()
            .unwrap();
        let base = format!("http://{}", running.addr);
        Self {
            runtime,
            running,
            shutdown,
            base,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.runtime
            .spawn(self.running.wait())
            .await
            .unwrap()
            .unwrap();
        self.runtime.shutdown_background();
    }

    /// Orders in this instance's replica of `store_id`.
    async fn replica_orders(&self, store_id: &str) -> i64 {
        let replica = self.running.cloud.replica(store_id).await.unwrap();
        replica
            .db()
            .read(|conn| {
                conn.query_row("SELECT count(*) FROM orders", [], |r| r.get::<_, i64>(0))
                    .map_err(flashkart_sync::Error::from)
            })
            .await
            .unwrap()
    }

    /// Orders in the read model (shared on PostgreSQL).
    async fn read_model_orders(&self) -> i64 {
        match self.running.cloud.projection().backend() {
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
        }
    }
}

/// The machine's PostgreSQL, where each configuration gets a fresh database.
struct Server {
    url: String,
    admin: Postgres,
    created: Vec<String>,
}

impl Server {
    async fn connect() -> Self {
        let url = std::env::var("FLASHKART_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let admin = Postgres::connect(&DatabaseUrl::parse(&url).expect("server URL"))
            .await
            .expect("PostgreSQL for the intake bench (FLASHKART_TEST_POSTGRES)");
        Self {
            url,
            admin,
            created: Vec::new(),
        }
    }

    async fn fresh_database(&mut self) -> DatabaseUrl {
        let name = format!("fk_bench_{}", uuid::Uuid::now_v7().simple());
        self.admin
            .client()
            .await
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        self.created.push(name.clone());
        let (base, _) = self.url.rsplit_once('/').expect("URL ends in /database");
        DatabaseUrl::parse(&format!("{base}/{name}")).unwrap()
    }

    async fn drop_databases(self) {
        let client = self.admin.client().await.unwrap();
        for name in &self.created {
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .unwrap();
        }
        drop(client);
        self.admin.close();
    }
}

/// Stores, profiles, products and one customer per client, through the first instance; the
/// customers' tokens and the stores' sync tokens.
async fn set_up(
    http: &reqwest::Client,
    first: &Instance,
    clients: usize,
) -> (Vec<String>, Vec<String>) {
    let base = &first.base;
    let admin = |method: reqwest::Method, path: String, body: Value| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let mut store_tokens = Vec::new();
    for (id, lat, south, north) in STORES {
        store_tokens.push(first.running.cloud.register_store(id).await.unwrap());
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
    (tokens, store_tokens)
}

/// A store's sync hello at `base`: the instance takes the store's lease and serves it.
async fn hello(http: &reqwest::Client, base: &str, token: &str) {
    let body = HelloRequest {
        edge_site_id: uuid::Uuid::now_v7().as_bytes().to_vec(),
        schema_version: 0,
    }
    .encode_to_vec();
    let answer = http
        .post(format!("{base}{}", protocol::HELLO_PATH))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, protocol::CONTENT_TYPE)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "hello: {}", answer.status());
}

/// One configuration's figures.
struct Measured {
    name: &'static str,
    instances: usize,
    healthz: Run,
    intake: Run,
    /// Orders applied to the replica by the instance that took them (it holds the store, or
    /// there is no journal).
    by_writer: u64,
    /// Orders journaled by one instance and applied by the store's holder, the other one.
    by_holder: u64,
}

/// Starts `instances` instances (on `database`, or SQLite with none), sets up the scenario, has
/// each store held, runs the `/healthz` baseline and the intake, checks and stops.
async fn measure(
    name: &'static str,
    dir: &Path,
    database: Option<DatabaseUrl>,
    instances: usize,
    clients: usize,
    seconds: f64,
) -> Measured {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let first = Instance::start(dir, &format!("{name}-0"), database.as_ref()).await;
    let (tokens, store_tokens) = set_up(&http, &first, clients).await;
    let mut cluster = vec![first];
    for i in 1..instances {
        cluster.push(Instance::start(dir, &format!("{name}-{i}"), database.as_ref()).await);
    }
    // Store s is held by instance s % instances.
    let holder: Vec<usize> = (0..STORES.len()).map(|s| s % instances).collect();
    if let Some(database) = &database {
        for (s, token) in store_tokens.iter().enumerate() {
            hello(&http, &cluster[holder[s]].base, token).await;
        }
        let pg = Postgres::connect(database).await.unwrap();
        let rows = pg
            .client()
            .await
            .unwrap()
            .query(
                "SELECT store_id, owner_url FROM store_leases WHERE expires_at > now()",
                &[],
            )
            .await
            .unwrap();
        for (s, (id, ..)) in STORES.iter().enumerate() {
            let owner = rows
                .iter()
                .find(|row| row.get::<_, String>(0) == *id)
                .map(|row| row.get::<_, String>(1));
            assert_eq!(
                owner.as_deref().map(|u| u.trim_end_matches('/')),
                Some(cluster[holder[s]].base.as_str()),
                "store {id} is held by its instance"
            );
        }
        pg.close();
    }
    let bases: Arc<Vec<String>> = Arc::new(cluster.iter().map(|i| i.base.clone()).collect());

    eprintln!("{name}: GET /healthz, {clients} clients, {seconds} s");
    let healthz = {
        let (http, bases) = (http.clone(), bases.clone());
        drive(clients, seconds, move |client, _| {
            let request = http.get(format!("{}/healthz", bases[client % bases.len()]));
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await
    };
    eprintln!("{name}: POST /api/v1/orders, {clients} clients, {seconds} s");
    // Orders acknowledged per (writer instance, store).
    let placed: Arc<Vec<AtomicU64>> = Arc::new(
        (0..instances * STORES.len())
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let intake = {
        let (http, bases, placed) = (http.clone(), bases.clone(), placed.clone());
        let tokens = Arc::new(tokens);
        drive(clients, seconds, move |client, n| {
            let writer = client % bases.len();
            let lat = 52.35 + ((client as f64 * 7.0 + n as f64) % 30.0) / 100.0;
            let request = http
                .post(format!("{}/api/v1/orders", bases[writer]))
                .bearer_auth(&tokens[client])
                .header("idempotency-key", format!("{client}-{n}"))
                .json(&json!({
                    "address": {"text": "Bench Street 1", "lat": lat, "lon": 13.41},
                    "lines": [{"product_id": format!("p{}", n % 20), "qty": 1 + n % 3},
                              {"product_id": format!("p{}", (n + 7) % 20), "qty": 1}],
                    "payment": {"method": "cash"}
                }));
            let placed = placed.clone();
            async move {
                let Ok(answer) = request.send().await else {
                    return false;
                };
                if answer.status().as_u16() != 201 {
                    return false;
                }
                let Ok(order) = answer.json::<Value>().await else {
                    return false;
                };
                let Some(s) = STORES.iter().position(|(id, ..)| order["store_id"] == *id) else {
                    return false;
                };
                placed[writer * STORES.len() + s].fetch_add(1, Ordering::Relaxed);
                true
            }
        })
        .await
    };

    // Every acknowledged order is in the read model and in its store's holder's replica
    // (journaled ones within the holder's poll).
    let placed: Vec<u64> = placed.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    let mut by_writer = 0;
    let mut by_holder = 0;
    for (w, _) in cluster.iter().enumerate() {
        for (s, _) in STORES.iter().enumerate() {
            let n = placed[w * STORES.len() + s];
            if holder[s] == w {
                by_writer += n;
            } else {
                by_holder += n;
            }
        }
    }
    assert_eq!(by_writer + by_holder, intake.done);
    assert_eq!(
        cluster[0].read_model_orders().await as u64,
        intake.done,
        "every acknowledged order is in the read model"
    );
    for (s, (id, ..)) in STORES.iter().enumerate() {
        let expected: u64 = (0..instances).map(|w| placed[w * STORES.len() + s]).sum();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let have = cluster[holder[s]].replica_orders(id).await as u64;
            if have == expected {
                break;
            }
            assert!(
                have < expected && Instant::now() < deadline,
                "store {id}: {have} orders in its holder's replica, {expected} placed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for instance in cluster {
        instance.stop().await;
    }
    Measured {
        name,
        instances,
        healthz,
        intake,
        by_writer,
        by_holder,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let seconds: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(8.0);
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::connect().await;

    let sqlite = measure("sqlite-1", dir.path(), None, 1, clients, seconds).await;
    let database = server.fresh_database().await;
    let pg1 = measure("pg-1", dir.path(), Some(database), 1, clients, seconds).await;
    let database = server.fresh_database().await;
    let pg2 = measure("pg-2", dir.path(), Some(database), 2, clients, seconds).await;
    server.drop_databases().await;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{clients} clients, {seconds} s per case, {cores} cores; CPU over each case: the machine's \
         busy share, the cores' worth used by this process (clients and instances) and by all \
         other processes (PostgreSQL, and anything else running)\n"
    );
    println!(
        "| configuration | case | per s | p50 ms | p95 ms | p99 ms | machine CPU | bench process cores | other processes' cores |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let label = |m: &Measured| match (m.name, m.instances) {
        ("sqlite-1", _) => "SQLite, 1 instance".to_owned(),
        (_, 1) => "PostgreSQL, 1 instance".to_owned(),
        (_, n) => format!("PostgreSQL, {n} instances"),
    };
    for m in [&sqlite, &pg1, &pg2] {
        println!("{}", m.healthz.line(&label(m), "baseline: GET /healthz"));
        println!("{}", m.intake.line(&label(m), "order intake"));
    }
    println!();
    println!(
        "- PostgreSQL 2 instances / 1 instance, intake: {:.2}x (target >= 1.7x)",
        pg2.intake.rate() / pg1.intake.rate()
    );
    println!(
        "- floor: GET /healthz with 2 instances / 1 instance (PostgreSQL): {:.2}x; the HTTP floor \
         itself {} on {cores} cores",
        pg2.healthz.rate() / pg1.healthz.rate(),
        if pg2.healthz.rate() / pg1.healthz.rate() >= 1.7 {
            "scales"
        } else {
            "does not scale"
        }
    );
    for m in [&sqlite, &pg1, &pg2] {
        println!(
            "- {}: intake {:.3}x the SQLite intake, {:.4}x its own /healthz baseline, {:.4}x the \
             SQLite /healthz baseline",
            label(m),
            m.intake.rate() / sqlite.intake.rate(),
            m.intake.rate() / m.healthz.rate(),
            m.intake.rate() / sqlite.healthz.rate()
        );
    }
    for m in [&sqlite, &pg1, &pg2] {
        let path = match (m.name, m.instances) {
            ("sqlite-1", _) => format!(
                "all {} orders written straight into the store replicas (no journal)",
                m.intake.done
            ),
            (_, 1) => format!(
                "both stores held by the instance (sync hello); all {} orders journaled and \
                 applied by the writer, the holder",
                m.by_writer
            ),
            (_, _) => format!(
                "one store held by each instance (sync hello); {} orders applied by the writer, \
                 the holder, {} journaled by one instance and applied by the other (the holder, \
                 within its poll)",
                m.by_writer, m.by_holder
            ),
        };
        println!("- {}: {path}", label(m));
    }
    println!(
        "- checked: every acknowledged order is in the read model and in its store holder's replica"
    );
}
