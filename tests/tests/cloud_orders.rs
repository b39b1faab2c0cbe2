//! A real cloud and two real edge daemons, as processes: orders placed through the cloud's
//! intake API are routed by service area and stock (learned from what the stores pushed),
//! reach the chosen store within a second, progress there, and the cloud's read model shows
//! every transition; a store that went offline past the grace period gets no new orders.

use std::time::{Duration, Instant};

use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use flashkart_tests::store_daemon::StoreDaemon;
use flashkart_tests::{Daemon, binary, call_api, url_in};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const START: Duration = Duration::from_secs(60);
const ADMIN: &str = "test-admin";
const MILK: &str = "4006381333931";
const BREAD: &str = "96385074";

struct Api {
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        url: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call_api(&self.http, method, url, token, body).await
    }

    async fn ok(&self, method: Method, url: &str, token: &str, body: Value) -> Value {
        let (status, body) = self.call(method, url, token, Some(body)).await;
        assert!(status.is_success(), "{url}: {status} {body}");
        body
    }

    /// Polls `url` until `done` holds (the cloud and the stores work asynchronously).
    async fn until(
        &self,
        url: &str,
        token: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.call(Method::GET, url, token, None).await;
            if status.is_success() && done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn start_store(
    api: &Api,
    hq: &HqAdmin,
    dir: &std::path::Path,
    cloud: &str,
    id: &str,
    env: &[(&str, &std::path::Path)],
) -> StoreDaemon {
    let store_token = hq.register_store(id).await;
    StoreDaemon::start(&api.http, dir, cloud, id, &store_token, env, START).await
}

/// Waits for the catalog at `store`, slots both products in one bin, and receives stock.
async fn stock_up(store: &StoreDaemon, api: &Api, stock: &[(&str, &str, i64)]) {
    for (_, gtin, _) in stock {
        api.until(
            &format!("{}/catalog/lookup?code={gtin}", store.base),
            &store.token,
            "the catalog",
            |_| true,
        )
        .await;
    }
    api.ok(
        Method::PUT,
        &format!("{}/bins/A-1", store.base),
        &store.token,
        json!({"aisle": "A", "bay": "1", "shelf": "1", "pick_seq": 1}),
    )
    .await;
    for (product, gtin, qty) in stock {
        api.ok(
            Method::PUT,
            &format!("{}/products/{product}/bins/A-1", store.base),
            &store.token,
            json!({}),
        )
        .await;
        api.ok(
            Method::POST,
            &format!("{}/stock/receive", store.base),
            &store.token,
            json!({"gtin": gtin, "qty": qty}),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_routed_by_area_and_stock_and_progress_at_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let env = [("XDG_CACHE_HOME", cache.as_path()), ("HOME", dir.path())];
    let cloud_config = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud_config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{ADMIN}\"\n\n\
             [intake]\noffline_grace_ms = 1500\n",
            dir.path().join("cloud").display()
        ),
    )
    .expect("cloud config");
    let config_arg = cloud_config.display().to_string();
    let mut cloud_daemon = Daemon::start(
        &binary("flashkart-cloud"),
        &["run", "--config", &config_arg],
        &env,
    );
    let cloud = url_in(&cloud_daemon.wait_for_line("cloud listening", START)).expect("cloud url");
    let api = Api {
        http: reqwest::Client::new(),
    };

    // HQ: the catalog, two stores (north and south of Berlin, overlapping around 52.49), a customer.
    let hq = HqAdmin::new(&api.http, &cloud, ADMIN);
    for (id, gtin, price, weight) in [("milk", MILK, 129, 1030), ("bread", BREAD, 249, 500)] {
        hq.put_product(
            id,
            json!({"name": id, "price_minor": price, "unit_weight_g": weight, "gtins": [{"gtin": gtin}]}),
        )
        .await;
    }
    let north = start_store(&api, &hq, dir.path(), &cloud, "north", &env).await;
    let south = start_store(&api, &hq, dir.path(), &cloud, "south", &env).await;
    for (id, lat, south_edge, north_edge) in [
        ("north", 52.55, 52.47, 52.70),
        ("south", 52.45, 52.30, 52.52),
    ] {
        let profile = StoreProfile::new(id)
            .at(lat, 13.40)
            .area((13.2, south_edge, 13.6, north_edge))
            .radius_m(20000.0)
            .capacity(50);
        hq.put_store_profile(id, &profile).await;
    }
    let customer = hq.create_customer("Ada").await;

    // Stock: only the north store has milk; both have bread. The cloud learns it by sync.
    stock_up(&north, &api, &[("milk", MILK, 10), ("bread", BREAD, 10)]).await;
    stock_up(&south, &api, &[("bread", BREAD, 10)]).await;
    api.until(
        &format!("{cloud}/admin/v1/stock/milk"),
        ADMIN,
        "milk in the read model",
        |s| s["north"] == 10,
    )
    .await;
    api.until(
        &format!("{cloud}/admin/v1/stock/bread"),
        ADMIN,
        "bread in the read model",
        |s| s["north"] == 10 && s["south"] == 10,
    )
    .await;

    let place = |key: &'static str, lat: f64, lines: Value| {
        let request = api
            .http
            .post(format!("{cloud}/api/v1/orders"))
            .bearer_auth(&customer)
            .header("idempotency-key", key)
            .json(&json!({"address": {"text": "Test Street 1", "lat": lat, "lon": 13.40}, "lines": lines, "payment": {"method": "cash"}}));
        async move {
            let response = request.send().await.expect("place order");
            let status = response.status();
            (status, response.json::<Value>().await.expect("order body"))
        }
    };

    // In the overlap, nearer the south store: bread alone goes south (nearest with everything),
    // milk and bread go north (the only store with milk).
    let (status, bread_only) =
        place("o-1", 52.49, json!([{"product_id": "bread", "qty": 2}])).await;
    assert_eq!(status, StatusCode::CREATED, "{bread_only}");
    assert_eq!(bread_only["store_id"], "south", "{bread_only}");
    let (status, with_milk) = place(
        "o-2",
        52.49,
        json!([{"product_id": "milk", "qty": 1}, {"product_id": "bread", "qty": 1}]),
    )
    .await;
    let placed_at = Instant::now();
    assert_eq!(status, StatusCode::CREATED, "{with_milk}");
    assert_eq!(with_milk["store_id"], "north", "{with_milk}");
    let order_id = with_milk["order_id"].as_str().expect("order id").to_owned();

    // It reaches the north store within a second, reserved.
    let detail = api
        .until(
            &format!("{}/orders/{order_id}", north.base),
            &north.token,
            "the order at the store",
            |_| true,
        )
        .await;
    let reached = placed_at.elapsed();
    assert!(
        reached < Duration::from_secs(1),
        "the order took {reached:?} to reach the store"
    );
    assert_eq!(detail["status"], "ACCEPTED", "{detail}");

    // The store works it: pick by scan, pack, ready, hand off.
    let order_url = format!("{}/orders/{order_id}", north.base);
    for gtin in [MILK, BREAD] {
        api.ok(
            Method::POST,
            &format!("{order_url}/scan"),
            &north.token,
            json!({"code": gtin}),
        )
        .await;
    }
    let packed = api
        .ok(
            Method::POST,
            &format!("{order_url}/pack"),
            &north.token,
            json!({"bag_weight_g": 1530}),
        )
        .await;
    let label = packed["label_id"].as_str().expect("label").to_owned();
    api.ok(
        Method::POST,
        &format!("{order_url}/ready"),
        &north.token,
        json!({}),
    )
    .await;
    api.ok(
        Method::POST,
        &format!("{order_url}/handoff"),
        &north.token,
        json!({"rider_id": "r-1", "label_id": label}),
    )
    .await;

    // The read model shows every transition, the cloud's and the store's, in order.
    let view = api
        .until(
            &format!("{cloud}/admin/v1/orders/{order_id}"),
            ADMIN,
            "PICKED_UP in the read model",
            |v| v["order"]["status"] == "PICKED_UP",
        )
        .await;
    let statuses: Vec<&str> = view["order"]["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|t| t["status"].as_str())
        .collect();
    for expected in [
        "PENDING",
        "CONFIRMED",
        "ROUTED",
        "ACCEPTED",
        "PICKING",
        "PACKED",
        "READY",
        "PICKED_UP",
    ] {
        assert!(
            statuses.contains(&expected),
            "{expected} missing from {statuses:?}"
        );
    }
    let picked = statuses.iter().position(|s| *s == "PICKED_UP");
    let accepted = statuses.iter().position(|s| *s == "ACCEPTED");
    assert!(accepted < picked, "{statuses:?}");
    // The customer sees the same order.
    let (status, mine) = api
        .call(
            Method::GET,
            &format!("{cloud}/api/v1/orders/{order_id}"),
            &customer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["order"]["status"], "PICKED_UP");

    // The south store goes offline; past the grace period it gets no new orders: an address
    // only it serves is refused, one in the overlap goes north.
    let (exit, log) = south.daemon.terminate(Duration::from_secs(30));
    assert!(exit.success(), "south exit: {}", log.join("\n"));
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let (status, refused) = place("o-3", 52.35, json!([{"product_id": "bread", "qty": 1}])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("south is offline")),
        "{refused}"
    );
    let (status, rerouted) = place("o-4", 52.49, json!([{"product_id": "bread", "qty": 1}])).await;
    assert_eq!(status, StatusCode::CREATED, "{rerouted}");
    assert_eq!(rerouted["store_id"], "north", "{rerouted}");

    let (exit, log) = north.daemon.terminate(Duration::from_secs(30));
    assert!(exit.success(), "north exit: {}", log.join("\n"));
    let (exit, log) = cloud_daemon.terminate(Duration::from_secs(30));
    assert!(exit.success(), "cloud exit: {}", log.join("\n"));
}
