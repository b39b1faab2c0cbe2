//! One order from the customer to the door, every part a real process: the cloud places it,
//! the store daemon routes it to its staff (the staff simulator picks, packs and readies it
//! through the store's API), the cloud's dispatcher offers it over the store's MQTT broker to a
//! rider's phone (the rider simulator: rumqttc over TLS, enrolled with the one-time code HQ
//! issued), who accepts, arrives at the store (geofence), scans the bag's label, rides to the
//! customer and delivers with the customer's PIN. HQ's read model shows every step.

use std::time::{Duration, Instant};

use flashkart_tests::{Daemon, addr_in, binary, url_in};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const START: Duration = Duration::from_secs(60);
const ADMIN: &str = "test-admin";
const STORE: &str = "store-7";
const PIN: &str = "246800";
const MILK: &str = "4006381333931";
const STORE_AT: (f64, f64) = (52.52, 13.40);

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn ok(http: &reqwest::Client, method: Method, url: &str, token: &str, body: Value) -> Value {
    let (status, answer) = call(http, method, url, token, Some(body)).await;
    assert!(status.is_success(), "{url}: {status} {answer}");
    answer
}

/// The address in `key=ADDR` of a log line.
fn addr_after(line: &str, key: &str) -> std::net::SocketAddr {
    line.split(key)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no {key} address in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rider_enrolled_from_hq_delivers_an_order_with_the_customers_pin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let env = [("XDG_CACHE_HOME", cache.as_path()), ("HOME", dir.path())];
    let http = reqwest::Client::new();

    // The cloud, HQ's catalog, the store, its profile, a rider and a customer.
    let cloud_config = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud_config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{ADMIN}\"\n",
            dir.path().join("cloud").display()
        ),
    )
    .expect("cloud config");
    let cloud_arg = cloud_config.display().to_string();
    let mut cloud_daemon = Daemon::start(
        &binary("flashkart-cloud"),
        &["run", "--config", &cloud_arg],
        &env,
    );
    let cloud = url_in(&cloud_daemon.wait_for_line("cloud listening", START)).expect("cloud url");
    ok(
        &http,
        Method::PUT,
        &format!("{cloud}/admin/v1/products/milk"),
        ADMIN,
        json!({"name": "Milk", "price_minor": 129, "unit_weight_g": 1030, "gtins": [{"gtin": MILK}]}),
    )
    .await;
    let registered = ok(
        &http,
        Method::POST,
        &format!("{cloud}/admin/v1/stores"),
        ADMIN,
        json!({ "id": STORE }),
    )
    .await;
    let store_token = registered["token"]
        .as_str()
        .expect("store token")
        .to_owned();
    let (lat, lon) = STORE_AT;
    ok(
        &http,
        Method::PUT,
        &format!("{cloud}/admin/v1/stores/{STORE}/profile"),
        ADMIN,
        json!({
            "name": "Mitte", "lat": lat, "lon": lon,
            "service_area": {"type": "Polygon", "coordinates": [[
                [13.35, 52.50], [13.45, 52.50], [13.45, 52.55], [13.35, 52.55], [13.35, 52.50]
            ]]},
            "max_radius_m": 5000.0, "hours": {"opens": "00:00", "closes": "00:00"},
            "capacity": 10, "sla_minutes": 30
        }),
    )
    .await;
    ok(
        &http,
        Method::PUT,
        &format!("{cloud}/admin/v1/riders/ria"),
        ADMIN,
        json!({"home_store_id": STORE, "name": "Ria", "vehicle": "scooter"}),
    )
    .await;
    let issued = ok(
        &http,
        Method::POST,
        &format!("{cloud}/admin/v1/riders/ria/enrolment-code"),
        ADMIN,
        json!({}),
    )
    .await;
    let qr = issued["qr_payload"]
        .as_str()
        .expect("qr payload")
        .to_owned();
    let customer = ok(
        &http,
        Method::POST,
        &format!("{cloud}/admin/v1/customers"),
        ADMIN,
        json!({"first_name": "Ada"}),
    )
    .await;
    let customer = customer["token"]
        .as_str()
        .expect("customer token")
        .to_owned();

    // The store daemon with its riders' broker (TLS only).
    let edge_config = dir.path().join("edge.toml");
    std::fs::write(
        &edge_config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nstore_id = \"{STORE}\"\n\
             manager_pin = \"{PIN}\"\n\n[sync]\ncloud_url = \"{cloud}\"\ntoken = \"{store_token}\"\n\
             local_poll_ms = 20\nlong_poll_ms = 2000\nbackoff_initial_ms = 20\n\
             backoff_max_ms = 200\n\n[riders]\ntls_listen = \"127.0.0.1:0\"\n",
            dir.path().join("edge").display()
        ),
    )
    .expect("edge config");
    let edge_arg = edge_config.display().to_string();
    let mut edge_daemon = Daemon::start(
        &binary("flashkart-edge"),
        &["run", "--config", &edge_arg],
        &env,
    );
    let broker = addr_after(
        &edge_daemon.wait_for_line("riders broker listening", START),
        "tls=",
    );
    let edge = format!(
        "http://{}",
        addr_in(&edge_daemon.wait_for_line("HTTP API listening", START)).expect("edge address")
    );

    // The store's staff and the rider's phone, as their simulators.
    let sim = binary("flashkart-edge-sim");
    let staff = Daemon::start(
        &sim,
        &[
            "staff",
            "--edge",
            &edge,
            "--pin",
            PIN,
            "--stock-gtins",
            MILK,
            "--step-ms",
            "50",
            "--poll-ms",
            "100",
        ],
        &env,
    );
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN).expect("token file");
    let phone_dir = dir.path().join("phone");
    let start = format!("{lat},{lon}");
    let broker_arg = format!("localhost:{}", broker.port());
    let token_arg = token_file.display().to_string();
    let phone_arg = phone_dir.display().to_string();
    let mut rider = Daemon::start(
        &sim,
        &[
            "rider",
            "--enrolment",
            &qr,
            "--phone-dir",
            &phone_arg,
            "--broker",
            &broker_arg,
            "--start",
            &start,
            "--speed",
            "300",
            "--edge",
            &edge,
            "--pin",
            PIN,
            "--cloud",
            &cloud,
            "--admin-token-file",
            &token_arg,
        ],
        &env,
    );
    rider.wait_for_line("enrolled: certificate received", START);
    // The phone made its own key; only the certificate came from the store.
    let identity: Value = serde_json::from_str(
        &std::fs::read_to_string(phone_dir.join("identity.json")).expect("stored identity"),
    )
    .expect("identity json");
    assert_eq!(identity["rider_id"], "ria");
    assert_eq!(identity["store_id"], STORE);

    // Stock reaches the cloud by sync, then the customer orders, 600 m north of the store.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, stock) = call(
            &http,
            Method::GET,
            &format!("{cloud}/admin/v1/stock/milk"),
            ADMIN,
            None,
        )
        .await;
        if status.is_success() && stock[STORE].as_i64().is_some_and(|n| n > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stock in the read model: {stock}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let placed = http
        .post(format!("{cloud}/api/v1/orders"))
        .bearer_auth(&customer)
        .header("idempotency-key", "door-1")
        .json(&json!({
            "address": {"text": "Tor Street 1", "lat": lat + 0.0054, "lon": lon},
            "lines": [{"product_id": "milk", "qty": 1}]
        }))
        .send()
        .await
        .expect("place order");
    assert_eq!(placed.status(), StatusCode::CREATED);
    let placed: Value = placed.json().await.expect("order");
    let order_id = placed["order_id"].as_str().expect("order id").to_owned();

    // HQ's view: every step from the store and the rider, up to DELIVERED.
    let deadline = Instant::now() + Duration::from_secs(120);
    let view = loop {
        let (status, view) = call(
            &http,
            Method::GET,
            &format!("{cloud}/admin/v1/orders/{order_id}"),
            ADMIN,
            None,
        )
        .await;
        if status.is_success() && view["order"]["status"] == "DELIVERED" {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered: {status} {view}\nrider: {:?}",
            rider.log().iter().rev().take(20).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let timeline = &view["order"]["timeline"];
    let steps: Vec<&str> = timeline
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|entry| entry["status"].as_str())
        .collect();
    let mut at = 0;
    for step in [
        "ROUTED",
        "ACCEPTED",
        "PICKING",
        "PACKED",
        "READY",
        "PICKED_UP",
        "DELIVERED",
    ] {
        let found = steps[at..]
            .iter()
            .position(|s| *s == step)
            .unwrap_or_else(|| panic!("{step} missing after {at} in {steps:?}"));
        at += found + 1;
    }
    let delivered_by = timeline
        .as_array()
        .expect("timeline")
        .iter()
        .find(|entry| entry["status"] == "DELIVERED")
        .and_then(|entry| entry["actor"].as_str())
        .map(str::to_owned);
    assert_eq!(delivered_by.as_deref(), Some("rider:ria"), "{view}");
    // The store judged the PIN (the rider's phone never had it from the store): right at once.
    assert_eq!(view["pin_failures"], 0, "{view}");
    assert_eq!(view["flagged_for_support"], false, "{view}");
    let edge_log = edge_daemon.log();
    assert!(
        edge_log
            .iter()
            .any(|l| l.contains("order delivered") && l.contains("pin_ok=Some(true)")),
        "no PIN-checked delivery in the store's log"
    );
    assert!(
        !edge_log.iter().any(|l| l.contains("wrong delivery PIN")),
        "a wrong PIN was entered"
    );

    for daemon in [rider, staff] {
        let (status, _) = daemon.terminate(Duration::from_secs(10));
        assert!(status.success() || status.code().is_none(), "{status}");
    }
    let _ = edge_daemon.terminate(Duration::from_secs(20));
    let _ = cloud_daemon.terminate(Duration::from_secs(20));
}
