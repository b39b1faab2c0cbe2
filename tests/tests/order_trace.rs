//! One order followed by its trace id through the logs of a real cloud and a real edge daemon,
//! both logging JSON lines (the cloud told so by `--log-format json`, the edge by
//! `FLASHKART_LOG_FORMAT=json`): the customer's `traceparent` is taken at intake, the answer's
//! `traceparent` names the order's trace, and that trace id is on the cloud's intake and
//! replica-write lines, on the store's arrival and pick/pack/handoff lines, and on the cloud's
//! projection of the store's events. Every line either daemon wrote is one JSON object with a
//! timestamp, level, target and message.

use std::time::{Duration, Instant};

use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use flashkart_tests::{Daemon, binary, call_api};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const START: Duration = Duration::from_secs(60);
const WITHIN: Duration = Duration::from_secs(30);
const ADMIN: &str = "test-admin";
const MILK: &str = "4006381333931";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A log line as JSON; panics (naming the line) when it is not one object with the fields
/// every line must have.
fn parsed(line: &str) -> Value {
    let value: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    for field in ["timestamp", "level", "target"] {
        assert!(value[field].is_string(), "no {field}: {line}");
    }
    assert!(value["fields"]["message"].is_string(), "no message: {line}");
    value
}

/// Whether a JSON log line carries `trace_id` as a field or in any of its spans.
fn carries(line: &Value, trace_id: &str) -> bool {
    line["fields"]["trace_id"] == trace_id
        || line["span"]["trace_id"] == trace_id
        || line["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s["trace_id"] == trace_id))
}

/// The line, among those read so far, containing every one of `needles`, parsed.
fn line_with(daemon: &mut Daemon, needles: &[&str]) -> Value {
    let log = daemon.log();
    let line = log
        .iter()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no line with {needles:?}:\n{}", log.join("\n")));
    parsed(line)
}

async fn ok(http: &reqwest::Client, method: Method, url: &str, token: &str, body: Value) -> Value {
    let (status, answer) = call_api(http, method, url, token, Some(body)).await;
    assert!(status.is_success(), "{url}: {status} {answer}");
    answer
}

/// Polls `url` until `done` holds (the cloud and the store work asynchronously).
async fn until(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WITHIN;
    loop {
        let (status, body) = call_api(http, Method::GET, url, token, None).await;
        if status.is_success() && done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{url}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_trace_id_follows_it_through_both_daemons_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let json_format = std::path::Path::new("json");
    let cloud_env = [("XDG_CACHE_HOME", cache.as_path()), ("HOME", dir.path())];
    let edge_env = [
        ("XDG_CACHE_HOME", cache.as_path()),
        ("HOME", dir.path()),
        ("FLASHKART_LOG_FORMAT", json_format),
    ];
    let cloud_config = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud_config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{ADMIN}\"\n",
            dir.path().join("cloud").display()
        ),
    )
    .expect("cloud config");
    let config_arg = cloud_config.display().to_string();
    let mut cloud = Daemon::start(
        &binary("flashkart-cloud"),
        &["run", "--log-format", "json", "--config", &config_arg],
        &cloud_env,
    );
    let listening = parsed(&cloud.wait_for_line("cloud listening", START));
    let cloud_url = listening["fields"]["url"]
        .as_str()
        .expect("cloud url")
        .to_owned();
    let http = reqwest::Client::new();

    // HQ: a product, the store, its profile, a customer.
    let hq = HqAdmin::new(&http, &cloud_url, ADMIN);
    hq.put_product(
        "milk",
        json!({"name": "milk", "price_minor": 129, "unit_weight_g": 1030, "gtins": [{"gtin": MILK}]}),
    )
    .await;
    let store_token = hq.register_store("north").await;
    let profile = StoreProfile::new("north")
        .at(52.55, 13.40)
        .area((13.2, 52.4, 13.6, 52.7))
        .radius_m(20000.0)
        .capacity(50);
    hq.put_store_profile("north", &profile).await;
    let customer = hq.create_customer("Ada").await;

    // The store, logging JSON by the environment variable.
    let edge_config = dir.path().join("north.toml");
    std::fs::write(
        &edge_config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nstore_id = \"north\"\nmanager_pin = \"246800\"\n\n\
             [sync]\ncloud_url = \"{cloud_url}\"\ntoken = \"{store_token}\"\nlocal_poll_ms = 20\n\
             long_poll_ms = 2000\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n",
            dir.path().join("north").display()
        ),
    )
    .expect("edge config");
    let edge_arg = edge_config.display().to_string();
    let mut edge = Daemon::start(
        &binary("flashkart-edge"),
        &["run", "--config", &edge_arg],
        &edge_env,
    );
    let listening = parsed(&edge.wait_for_line("HTTP API listening", START));
    let addr = listening["fields"]["addr"].as_str().expect("edge address");
    let base = format!("http://{addr}/api/v1");
    let signed_in = ok(
        &http,
        Method::POST,
        &format!("{base}/auth/sign-in"),
        "",
        json!({"staff_id": "manager", "pin": "246800"}),
    )
    .await;
    let staff = signed_in["token"].as_str().expect("staff token").to_owned();
    until(
        &http,
        &format!("{base}/catalog/lookup?code={MILK}"),
        &staff,
        |_| true,
    )
    .await;
    ok(
        &http,
        Method::PUT,
        &format!("{base}/bins/A-1"),
        &staff,
        json!({"aisle": "A", "bay": "1", "shelf": "1", "pick_seq": 1}),
    )
    .await;
    ok(
        &http,
        Method::PUT,
        &format!("{base}/products/milk/bins/A-1"),
        &staff,
        json!({}),
    )
    .await;
    ok(
        &http,
        Method::POST,
        &format!("{base}/stock/receive"),
        &staff,
        json!({"gtin": MILK, "qty": 5}),
    )
    .await;
    until(
        &http,
        &format!("{cloud_url}/admin/v1/stock/milk"),
        ADMIN,
        |s| s["north"] == 5,
    )
    .await;

    // The customer places the order with a trace of their own.
    let response = http
        .post(format!("{cloud_url}/api/v1/orders"))
        .bearer_auth(&customer)
        .header("idempotency-key", "trace-1")
        .header(
            "traceparent",
            format!("00-{CLIENT_TRACE}-00f067aa0ba902b7-01"),
        )
        .json(&json!({
            "address": {"text": "Test Street 1", "lat": 52.55, "lon": 13.40},
            "lines": [{"product_id": "milk", "qty": 1}],
            "payment": {"method": "cash"}
        }))
        .send()
        .await
        .expect("place order");
    assert_eq!(response.status(), StatusCode::CREATED);
    let traceparent = response
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("a traceparent in the answer")
        .to_owned();
    let order: Value = response.json().await.expect("order body");
    let order_id = order["order_id"].as_str().expect("order id").to_owned();
    // The order's trace id is its UUID in hex: `00-<trace id>-<span id>-01`.
    let trace_id = order_id.replace('-', "");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], trace_id, "{traceparent}");
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "01");

    // The store works it: pick by scan, pack, ready, hand off.
    let order_url = format!("{base}/orders/{order_id}");
    until(&http, &order_url, &staff, |o| o["status"] == "ACCEPTED").await;
    ok(
        &http,
        Method::POST,
        &format!("{order_url}/scan"),
        &staff,
        json!({"code": MILK}),
    )
    .await;
    let packed = ok(
        &http,
        Method::POST,
        &format!("{order_url}/pack"),
        &staff,
        json!({"bag_weight_g": 1030}),
    )
    .await;
    let label = packed["label_id"].as_str().expect("label").to_owned();
    ok(
        &http,
        Method::POST,
        &format!("{order_url}/ready"),
        &staff,
        json!({}),
    )
    .await;
    ok(
        &http,
        Method::POST,
        &format!("{order_url}/handoff"),
        &staff,
        json!({"rider_id": "r-1", "label_id": label}),
    )
    .await;
    until(
        &http,
        &format!("{cloud_url}/admin/v1/orders/{order_id}"),
        ADMIN,
        |v| v["order"]["status"] == "PICKED_UP",
    )
    .await;

    // Each daemon's last line about the order; every earlier one has been read by then.
    edge.wait_for_line("\"status\":\"PICKED_UP\"", WITHIN);
    cloud.wait_for_line("\"to\":\"PICKED_UP\"", WITHIN);

    // The cloud: intake (with the customer's trace beside the order's) and the replica write.
    let placed = line_with(&mut cloud, &["order placed and routed", &trace_id]);
    assert!(carries(&placed, &trace_id), "{placed}");
    assert_eq!(placed["span"]["order_id"], order_id.as_str(), "{placed}");
    let intake_span = placed["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == "intake"))
        .unwrap_or_else(|| panic!("no intake span: {placed}"));
    assert_eq!(intake_span["client_trace_id"], CLIENT_TRACE, "{placed}");
    let written = line_with(&mut cloud, &["store's replica", &trace_id]);
    assert_eq!(
        written["fields"]["trace_id"],
        trace_id.as_str(),
        "{written}"
    );
    // The store: the order's arrival and every step the staff took.
    let arrived = line_with(&mut edge, &["order arrived", &trace_id]);
    assert_eq!(
        arrived["fields"]["trace_id"],
        trace_id.as_str(),
        "{arrived}"
    );
    for status in ["ACCEPTED", "PICKING", "PACKED", "READY", "PICKED_UP"] {
        let changed = line_with(
            &mut edge,
            &[
                "order changed",
                &trace_id,
                &format!("\"status\":\"{status}\""),
            ],
        );
        assert!(carries(&changed, &trace_id), "{changed}");
    }
    // Back at the cloud: the store's events projected into the read model.
    for status in ["ACCEPTED", "PACKED", "PICKED_UP"] {
        let projected = line_with(
            &mut cloud,
            &[
                "store event projected",
                &trace_id,
                &format!("\"to\":\"{status}\""),
            ],
        );
        assert!(carries(&projected, &trace_id), "{projected}");
        assert_eq!(projected["span"]["store_id"], "north", "{projected}");
    }

    // Every line either daemon wrote, start to stop, is a JSON object with the common fields.
    let (exit, edge_log) = edge.terminate(WITHIN);
    assert!(exit.success(), "edge exit");
    let (exit, cloud_log) = cloud.terminate(WITHIN);
    assert!(exit.success(), "cloud exit");
    for line in edge_log.iter().chain(&cloud_log) {
        parsed(line);
    }
    assert!(edge_log.len() > 5 && cloud_log.len() > 5);
}
