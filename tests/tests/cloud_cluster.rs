//! Two real cloud instances on one PostgreSQL database behind a round-robin balancer, three
//! real edge daemons syncing through it, and customers ordering through it: the orders reach
//! their stores and are worked there whichever instance took them; one instance is killed with
//! SIGKILL and its stores move to the other within the lease time; orders keep flowing, orders
//! placed before the kill and worked after it are projected by the new holder, and in the end
//! the shared read model says what the stores say (every order's status, every store's stock).
//! A watcher reads the lease table all through the run: no store is ever leased twice at one
//! epoch, and no epoch goes back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flashkart_cloud::postgres::{DatabaseUrl, Postgres};
use flashkart_tests::balancer::Balancer;
use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use flashkart_tests::store_daemon::StoreDaemon;
use flashkart_tests::{Daemon, binary, call_api, url_in};
use nix::sys::signal::Signal;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const START: Duration = Duration::from_secs(60);
const ADMIN: &str = "test-admin";
const BREAD: &str = "96385074";
const LEASE: Duration = Duration::from_millis(3_000);
/// The stores, each with its own band of latitudes to serve.
const STORES: [(&str, f64); 3] = [("s1", 52.40), ("s2", 52.50), ("s3", 52.60)];

/// A new database on the machine's PostgreSQL (`FLASHKART_TEST_POSTGRES`, as the cloud's
/// tests use), named `fk_test_*` so `scripts/test` drops it on its next run.
async fn fresh_database() -> DatabaseUrl {
    let server = std::env::var("FLASHKART_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let admin = Postgres::connect(&DatabaseUrl::parse(&server).expect("server URL"))
        .await
        .expect("PostgreSQL for the cluster test");
    let name = format!("fk_test_{}", uuid::Uuid::now_v7().simple());
    admin
        .client()
        .await
        .expect("connection")
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("CREATE DATABASE");
    admin.close();
    let (base, _) = server
        .rsplit_once('/')
        .expect("server URL ends in /database");
    DatabaseUrl::parse(&format!("{base}/{name}")).expect("database URL")
}

/// A cloud instance as a process (so it can be killed), and its address.
fn start_cloud(dir: &std::path::Path, name: &str, url: &DatabaseUrl) -> (Daemon, SocketAddr) {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{ADMIN}\"\n\
             database_url = \"{}\"\n\n[cluster]\nlease_ms = {}\n\n\
             [intake]\noffline_grace_ms = 10000\n",
            dir.join(name).display(),
            url.expose(),
            LEASE.as_millis()
        ),
    )
    .expect("cloud config");
    let config = config.display().to_string();
    let cache = dir.join("cache");
    let mut daemon = Daemon::start(
        &binary("flashkart-cloud"),
        &["run", "--config", &config],
        &[("XDG_CACHE_HOME", cache.as_path()), ("HOME", dir)],
    );
    let url = url_in(&daemon.wait_for_line("cloud listening", START)).expect("cloud URL");
    let addr = url
        .trim_start_matches("http://")
        .parse()
        .expect("cloud address");
    (daemon, addr)
}

struct Store {
    id: &'static str,
    edge: StoreDaemon,
}

async fn start_store(
    http: &reqwest::Client,
    hq: &HqAdmin,
    dir: &std::path::Path,
    cloud: &str,
    id: &'static str,
) -> Store {
    let store_token = hq.register_store(id).await;
    let cache = dir.join("cache");
    let env = [("XDG_CACHE_HOME", cache.as_path()), ("HOME", dir)];
    let edge = StoreDaemon::start(http, dir, cloud, id, &store_token, &env, START).await;
    Store { id, edge }
}

/// Polls `url` until `done` holds (instances, stores and the projection work asynchronously).
async fn until(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, body) = call_api(http, Method::GET, url, token, None).await;
        if status.is_success() && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ok(http: &reqwest::Client, method: Method, url: &str, token: &str, body: Value) -> Value {
    let (status, answer) = call_api(http, method, url, token, Some(body)).await;
    assert!(status.is_success(), "{url}: {status} {answer}");
    answer
}

impl Store {
    /// Slots bread in one bin and receives `qty` pieces.
    async fn stock_up(&self, http: &reqwest::Client, qty: i64) {
        until(
            http,
            &format!("{}/catalog/lookup?code={BREAD}", self.edge.base),
            &self.edge.token,
            "bread in the store's catalog",
            |_| true,
        )
        .await;
        ok(
            http,
            Method::PUT,
            &format!("{}/bins/A-1", self.edge.base),
            &self.edge.token,
            json!({"aisle": "A", "bay": "1", "shelf": "1", "pick_seq": 1}),
        )
        .await;
        ok(
            http,
            Method::PUT,
            &format!("{}/products/bread/bins/A-1", self.edge.base),
            &self.edge.token,
            json!({}),
        )
        .await;
        ok(
            http,
            Method::POST,
            &format!("{}/stock/receive", self.edge.base),
            &self.edge.token,
            json!({"gtin": BREAD, "qty": qty}),
        )
        .await;
    }

    /// Waits for the order at the store (reserved on arrival).
    async fn arrived(&self, http: &reqwest::Client, order_id: &str) {
        until(
            http,
            &format!("{}/orders/{order_id}", self.edge.base),
            &self.edge.token,
            "the order at its store",
            |order| order["status"] == "ACCEPTED",
        )
        .await;
    }

    /// Picks, packs, readies and hands the order over: PICKED_UP at the store.
    async fn work(&self, http: &reqwest::Client, order_id: &str) {
        let order = format!("{}/orders/{order_id}", self.edge.base);
        ok(
            http,
            Method::POST,
            &format!("{order}/scan"),
            &self.edge.token,
            json!({"code": BREAD}),
        )
        .await;
        let packed = ok(
            http,
            Method::POST,
            &format!("{order}/pack"),
            &self.edge.token,
            json!({"bag_weight_g": 500}),
        )
        .await;
        let label = packed["label_id"].as_str().expect("label").to_owned();
        ok(
            http,
            Method::POST,
            &format!("{order}/ready"),
            &self.edge.token,
            json!({}),
        )
        .await;
        ok(
            http,
            Method::POST,
            &format!("{order}/handoff"),
            &self.edge.token,
            json!({"rider_id": "r-1", "label_id": label}),
        )
        .await;
    }

    /// The store's own word on the order's status.
    async fn status(&self, http: &reqwest::Client, order_id: &str) -> String {
        let (status, order) = call_api(
            http,
            Method::GET,
            &format!("{}/orders/{order_id}", self.edge.base),
            &self.edge.token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{order}");
        order["status"].as_str().expect("status").to_owned()
    }

    /// The store's available pieces of bread (on hand minus reserved).
    async fn bread_available(&self, http: &reqwest::Client) -> i64 {
        let (status, levels) = call_api(
            http,
            Method::GET,
            &format!("{}/stock", self.edge.base),
            &self.edge.token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{levels}");
        levels
            .as_array()
            .expect("levels")
            .iter()
            .find(|level| level["product_id"] == "bread")
            .and_then(|level| level["available"].as_i64())
            .expect("bread's level")
    }
}

/// Every unexpired lease: store -> (owner's URL, epoch).
async fn leases(pg: &Postgres) -> BTreeMap<String, (String, i64)> {
    pg.client()
        .await
        .expect("connection")
        .query(
            "SELECT store_id, owner_url, epoch FROM store_leases WHERE expires_at > now()",
            &[],
        )
        .await
        .expect("leases")
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

/// Reads the lease table until stopped: a store's epoch never goes back, and one epoch of a
/// store never has two owners. Returns how many distinct (store, epoch, owner) it saw.
fn watch_leases(pg: Postgres, stop: CancellationToken) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<(String, i64), String> = BTreeMap::new();
        let mut latest: BTreeMap<String, i64> = BTreeMap::new();
        while !stop.is_cancelled() {
            for (store, (owner, epoch)) in leases(&pg).await {
                let last = latest.entry(store.clone()).or_insert(epoch);
                assert!(epoch >= *last, "{store}: epoch {epoch} after {last}");
                *last = epoch;
                let first = seen.entry((store.clone(), epoch)).or_insert(owner.clone());
                assert_eq!(*first, owner, "{store} epoch {epoch} has two owners");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen.len()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_three_stores_and_survive_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database().await;
    let (mut a, a_addr) = start_cloud(dir.path(), "a", &url);
    let (b, b_addr) = start_cloud(dir.path(), "b", &url);
    let balancer = Balancer::start(vec![a_addr, b_addr]).await;
    let cloud = balancer.url();
    let pg = Postgres::connect(&url).await.expect("the test's database");
    let stop_watching = CancellationToken::new();
    let watcher = watch_leases(pg.clone(), stop_watching.clone());
    // A new connection for every request, so the balancer spreads them over both instances
    // as it would spread many customers.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");

    let hq = HqAdmin::new(&http, &cloud, ADMIN);
    hq.put_product(
        "bread",
        json!({"name": "bread", "price_minor": 249, "unit_weight_g": 500, "gtins": [{"gtin": BREAD}]}),
    )
    .await;
    let mut stores = Vec::new();
    for (id, lat) in STORES {
        let store = start_store(&http, &hq, dir.path(), &cloud, id).await;
        let profile = StoreProfile::new(id)
            .at(lat, 13.40)
            .area((13.2, lat - 0.04, 13.6, lat + 0.04))
            .radius_m(10_000.0)
            .capacity(50);
        hq.put_store_profile(id, &profile).await;
        stores.push(store);
    }
    let customer = hq.create_customer("Ada").await;
    for store in &stores {
        store.stock_up(&http, 20).await;
    }
    until(
        &http,
        &format!("{cloud}/admin/v1/stock/bread"),
        ADMIN,
        "every store's bread in the shared read model",
        |s| STORES.iter().all(|(id, _)| s[id] == 20),
    )
    .await;

    let mut placed: Vec<(String, usize)> = Vec::new();
    let place = |key: String, lat: f64| {
        let request = http
            .post(format!("{cloud}/api/v1/orders"))
            .bearer_auth(&customer)
            .header("idempotency-key", key)
            .json(&json!({
                "address": {"text": "Test Street 1", "lat": lat, "lon": 13.40},
                "lines": [{"product_id": "bread", "qty": 1}],
                "payment": {"method": "cash"},
            }));
        async move {
            let response = request.send().await.expect("place order");
            let status = response.status();
            let body = response.json::<Value>().await.expect("order body");
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body
        }
    };

    // Before the kill: two orders per store, taken by either instance. Each reaches its store;
    // one of each pair is worked now, the other waits at the store until after the kill.
    for round in 0..2 {
        for (n, (id, lat)) in STORES.iter().enumerate() {
            let order = place(format!("before-{round}-{id}"), *lat).await;
            assert_eq!(order["store_id"], *id, "{order}");
            let order_id = order["order_id"].as_str().expect("order id").to_owned();
            stores[n].arrived(&http, &order_id).await;
            if round == 0 {
                stores[n].work(&http, &order_id).await;
            }
            placed.push((order_id, n));
        }
    }
    let held = leases(&pg).await;
    assert_eq!(held.len(), 3, "every store is served: {held:?}");
    let a_url = format!("http://{a_addr}");
    let a_held = held.values().filter(|(owner, _)| *owner == a_url).count();

    // A dies without a word. The balancer stops sending it traffic (its port refuses), and its
    // stores go to B once their leases run out.
    a.signal(Signal::SIGKILL);
    a.wait(Duration::from_secs(10));
    let killed = Instant::now();
    let b_url = format!("http://{b_addr}");
    loop {
        let now = leases(&pg).await;
        if now.len() == 3 && now.values().all(|(owner, _)| *owner == b_url) {
            break;
        }
        assert!(
            killed.elapsed() < LEASE + Duration::from_secs(10),
            "A's {a_held} stores have not moved {:?} after the kill: {now:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let moved_after = killed.elapsed();

    // Orders keep flowing: new ones reach their stores and are worked, and so are the ones
    // placed before the kill (their rows at the new holder came from the write journal).
    for (n, (id, lat)) in STORES.iter().enumerate() {
        let order = place(format!("after-{id}"), *lat).await;
        assert_eq!(order["store_id"], *id, "{order}");
        let order_id = order["order_id"].as_str().expect("order id").to_owned();
        stores[n].arrived(&http, &order_id).await;
        stores[n].work(&http, &order_id).await;
        placed.push((order_id, n));
    }
    for (order_id, n) in &placed[3..6] {
        stores[*n].work(&http, order_id).await;
    }

    // The read model ends equal to the stores: every order's status, every store's stock.
    for (order_id, n) in &placed {
        let at_store = stores[*n].status(&http, order_id).await;
        assert_eq!(at_store, "PICKED_UP", "{order_id} at {}", stores[*n].id);
        until(
            &http,
            &format!("{cloud}/admin/v1/orders/{order_id}"),
            ADMIN,
            "the store's status in the read model",
            |view| view["order"]["status"] == at_store.as_str(),
        )
        .await;
    }
    let mut at_stores = serde_json::Map::new();
    for store in &stores {
        at_stores.insert(
            store.id.to_owned(),
            store.bread_available(&http).await.into(),
        );
    }
    assert!(
        at_stores.values().all(|v| v == 17),
        "three pieces gone from each store: {at_stores:?}"
    );
    let at_stores = Value::Object(at_stores);
    until(
        &http,
        &format!("{cloud}/admin/v1/stock/bread"),
        ADMIN,
        "the stores' stock in the read model",
        |s| *s == at_stores,
    )
    .await;

    stop_watching.cancel();
    let seen = watcher.await.expect("the lease watcher");
    assert!(seen >= 3, "{seen} leases seen");
    eprintln!(
        "A held {a_held} of 3 stores; they moved {moved_after:?} after the kill (lease {LEASE:?})"
    );
    for store in stores {
        let (exit, log) = store.edge.daemon.terminate(Duration::from_secs(30));
        assert!(exit.success(), "{} exit: {}", store.id, log.join("\n"));
    }
    let (exit, log) = b.terminate(Duration::from_secs(30));
    assert!(exit.success(), "B exit: {}", log.join("\n"));
    pg.close();
}
