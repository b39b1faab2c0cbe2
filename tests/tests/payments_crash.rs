//! The cloud dies between the payment provider's answer and its own write (a crash point,
//! `FLASHKART_CRASH_AT`, aborts the real process there, as `kill -9` would), then restarts:
//! the order completes and no money moves twice, at the capture, at a refund and at the
//! authorisation. The cloud is the real binary; the store is a store database syncing with it;
//! the gateway is localstripe.

use std::time::{Duration, Instant};

use flashkart_sync::client::{self, ClientConfig};
use flashkart_sync::{StoreConfig, StoreDb};
use flashkart_tests::call_api;
use flashkart_tests::crashing_cloud::CrashingCloud;
use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use flashkart_tests::localstripe::LocalStripe;
use reqwest::{Method, StatusCode};
use rusqlite::params;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "crash-admin-token";

/// A cloud paying through localstripe, to abort at `crash_at` if given.
fn start_cloud(stripe: &LocalStripe, crash_at: Option<&str>) -> CrashingCloud {
    start_cloud_with(stripe, crash_at, "")
}

/// As [`start_cloud`]; `payments` adds lines to the `[payments]` section.
fn start_cloud_with(stripe: &LocalStripe, crash_at: Option<&str>, payments: &str) -> CrashingCloud {
    let sections = format!(
        "[payments]\nretry_initial_ms = 100\nretry_max_ms = 500\n{payments}\n\
         [payments.stripe]\napi_base = \"{}\"\nsecret_key = \"{}\"\n",
        stripe.base_url(),
        stripe.secret_key()
    );
    CrashingCloud::start(ADMIN, &sections, crash_at)
}

/// Polls HQ's view of the order until `done` holds.
async fn until(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = call_api(http, Method::GET, url, ADMIN, None).await;
        if status.is_success() && done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {what}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stripe_get(http: &reqwest::Client, stripe: &LocalStripe, path: &str) -> Value {
    let text = http
        .get(format!("{}{path}", stripe.base_url()))
        .bearer_auth(stripe.secret_key())
        .send()
        .await
        .expect("localstripe")
        .text()
        .await
        .expect("localstripe answer");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

async fn store_write(db: &StoreDb, sql: &'static str, args: Vec<String>) {
    db.write(move |conn| {
        conn.execute(sql, rusqlite::params_from_iter(args.iter()))
            .map_err(flashkart_sync::Error::from)
    })
    .await
    .expect("store write");
}

/// HQ's set-up through the API (a store, its profile, milk, a customer) and the store's
/// database syncing with the cloud; the customer's token, the store and its sync's stop.
async fn open_shop(
    http: &reqwest::Client,
    cloud: &CrashingCloud,
) -> (String, StoreDb, CancellationToken) {
    let base = cloud.url.clone();
    let hq = HqAdmin::new(http, &base, ADMIN);
    let token = hq.register_store("s1").await;
    let profile = StoreProfile::new("s1")
        .at(52.5, 13.40)
        .area((13.3, 52.4, 13.5, 52.6))
        .radius_m(10000.0)
        .capacity(50);
    hq.put_store_profile("s1", &profile).await;
    hq.put_product("milk", json!({"name": "milk", "price_minor": 250}))
        .await;
    let customer = hq.create_customer("Ada").await;

    // The store: its database, its stock, syncing with the cloud.
    let mut store_config = StoreConfig::new(cloud.dir.path().join("store-s1.db"));
    store_config.extension_dir = Some(cloud.dir.path().join("ext"));
    let store = StoreDb::open(store_config, flashkart_sync::schema::store::MIGRATIONS)
        .await
        .expect("store database");
    store_write(
        &store,
        "INSERT INTO stock_moves (id, store_id, product_id, qty, kind, actor, at)
         VALUES ('stock-milk', 's1', 'milk', 100, 'receive', 'test', '2026-01-01T00:00:00.000Z')",
        vec![],
    )
    .await;
    let stop = CancellationToken::new();
    let mut sync = ClientConfig::new(&base, &token);
    sync.long_poll_ms = 1_000;
    sync.backoff_initial_ms = 20;
    sync.backoff_max_ms = 200;
    sync.local_poll_ms = 20;
    client::spawn(sync, store.clone(), stop.clone()).expect("sync client");
    until(
        http,
        &format!("{base}/admin/v1/stock/milk"),
        "stock in the read model",
        |v| v.to_string().contains("100"),
    )
    .await;

    (customer, store, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_killed_after_the_gateway_moved_money_does_not_move_it_twice() {
    let stripe = LocalStripe::start().await;
    let http = reqwest::Client::new();
    // The first run dies right after the provider authorises the first order.
    let mut cloud = start_cloud(&stripe, Some("after-gateway:authorise"));
    let base = cloud.url.clone();
    let (customer, store, stop) = open_shop(&http, &cloud).await;
    let hq = HqAdmin::new(&http, &base, ADMIN);
    // 1. Authorisation: the provider authorised, the cloud died before writing it down. The
    //    customer's retry with the same key finds that authorisation instead of making another.
    let card = stripe.create_payment_method("4242424242424242").await;
    let order = json!({"address": {"text": "Here 1", "lat": 52.5, "lon": 13.41},
                       "lines": [{"product_id": "milk", "qty": 2}],
                       "payment": {"method": "card", "payment_method": card}});
    let lost = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(&customer)
        .header("idempotency-key", "crash-1")
        .json(&order)
        .send()
        .await;
    assert!(lost.is_err(), "the cloud died before answering: {lost:?}");
    cloud.crashed();
    cloud.run(Some("after-gateway:capture"));
    let answer = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(&customer)
        .header("idempotency-key", "crash-1")
        .json(&order)
        .send()
        .await
        .expect("the retry");
    assert_eq!(answer.status(), StatusCode::CREATED);
    let placed: Value = answer.json().await.expect("order JSON");
    let id = placed["order_id"].as_str().expect("order id").to_owned();
    let total = placed["total_minor"].as_i64().expect("total");
    let order_url = format!("{base}/admin/v1/orders/{id}");
    let payment = until(&http, &order_url, "authorised", |v| {
        v["payment"]["state"] == "authorised"
    })
    .await;
    let intent_id = payment["payment"]["intent_id"]
        .as_str()
        .expect("intent")
        .to_owned();
    let intents = stripe_get(&http, &stripe, "/v1/payment_intents").await;
    let made: Vec<&Value> = intents["data"]
        .as_array()
        .expect("intents")
        .iter()
        .filter(|i| i["metadata"]["order_id"] == id.as_str())
        .collect();
    assert_eq!(made.len(), 1, "one authorisation for the order: {intents}");

    // 2. Capture: the store delivers, the provider captures, the cloud dies before the write.
    let db = store.clone();
    let reached = id.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reached = reached.clone();
        let at_store: i64 = db
            .read(move |conn| {
                conn.query_row(
                    "SELECT count(*) FROM orders WHERE id = ?1",
                    [reached],
                    |r| r.get(0),
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await
            .expect("store read");
        if at_store == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the order never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = id.clone();
    store
        .write(move |conn| {
            // Store timestamps after the cloud's ROUTED: the read model keeps the latest.
            let at = &flashkart_sync::timestamp::format(time::OffsetDateTime::now_utc());
            conn.execute(
                "INSERT INTO order_line_progress (order_id, line_no, store_id, picked_qty) VALUES (?1, 1, 's1', 2)",
                params![delivered],
            )?;
            let mut from = "ROUTED";
            for (n, to) in ["ACCEPTED", "PICKING", "PACKED", "READY", "ASSIGNED", "PICKED_UP", "DELIVERED"]
                .into_iter()
                .enumerate()
            {
                conn.execute(
                    "INSERT INTO order_events (id, store_id, order_id, from_status, to_status, actor, at)
                     VALUES (?1, 's1', ?2, ?3, ?4, 'test', ?5)",
                    params![format!("{delivered}-{n}"), delivered, from, to, at],
                )?;
                from = to;
            }
            conn.execute(
                "INSERT INTO deliveries (order_id, store_id, rider_id, at) VALUES (?1, 's1', 'r1', ?2)",
                params![delivered, at],
            )?;
            Ok::<_, flashkart_sync::Error>(())
        })
        .await
        .expect("store work");
    cloud.crashed();
    let intent = stripe_get(&http, &stripe, &format!("/v1/payment_intents/{intent_id}")).await;
    assert_eq!(
        intent["status"], "succeeded",
        "captured before the crash: {intent}"
    );
    cloud.run(Some("after-gateway:refund"));
    let captured = until(&http, &order_url, "captured", |v| {
        v["payment"]["state"] == "captured"
    })
    .await;
    assert_eq!(captured["payment"]["captured_minor"], total);
    // localstripe lists an intent's charges inside it (its /v1/charges filter fails).
    let intent = stripe_get(&http, &stripe, &format!("/v1/payment_intents/{intent_id}")).await;
    let charges = intent["charges"]["data"].as_array().expect("charges");
    assert_eq!(charges.len(), 1, "one charge: {intent}");
    assert_eq!(charges[0]["captured"], true, "{intent}");
    let trial = hq
        .call(Method::GET, "/admin/v1/ledger/trial-balance", None)
        .await;
    assert_eq!(trial["balanced"], true, "{trial}");

    // 3. Refund: the provider refunds, the cloud dies before the write.
    let refund = call_api(
        &http,
        Method::POST,
        &format!("{base}/admin/v1/orders/{id}/refund"),
        ADMIN,
        Some(json!({"amount_minor": 100, "reason": "a dented carton"})),
    )
    .await;
    assert_eq!(refund.0, StatusCode::ACCEPTED, "{}", refund.1);
    cloud.crashed();
    cloud.run(None);
    let refunded = until(&http, &order_url, "refunded", |v| {
        v["payment"]["refunded_minor"] == 100
    })
    .await;
    assert_eq!(refunded["payment"]["captured_minor"], total);
    let refunds = stripe_get(
        &http,
        &stripe,
        &format!("/v1/refunds?payment_intent={intent_id}"),
    )
    .await;
    let ours: Vec<&Value> = refunds["data"]
        .as_array()
        .expect("refunds")
        .iter()
        .filter(|r| r["metadata"]["flashkart_key"].is_string())
        .collect();
    assert_eq!(ours.len(), 1, "one refund: {refunds}");
    assert_eq!(ours[0]["amount"], 100);
    let trial = hq
        .call(Method::GET, "/admin/v1/ledger/trial-balance", None)
        .await;
    assert_eq!(trial["balanced"], true, "{trial}");
    let currency = placed["currency"].as_str().expect("currency");
    let balances = hq
        .call(
            Method::GET,
            &format!("/admin/v1/ledger/balances?currency={currency}"),
            None,
        )
        .await;
    assert_eq!(balances["gateway_clearing"], total - 100, "{balances}");
    assert_eq!(balances["refunds"], 100, "{balances}");

    stop.cancel();
    cloud.stop();
    stripe.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorisation_whose_order_never_reached_a_store_is_voided() {
    let stripe = LocalStripe::start().await;
    let http = reqwest::Client::new();
    let mut cloud = start_cloud_with(
        &stripe,
        Some("after-gateway:authorise"),
        "abandoned_after_s = 1",
    );
    let base = cloud.url.clone();
    let (customer, _store, stop) = open_shop(&http, &cloud).await;
    let card = stripe.create_payment_method("4242424242424242").await;
    let lost = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(&customer)
        .header("idempotency-key", "abandoned-1")
        .json(
            &json!({"address": {"text": "Here 1", "lat": 52.5, "lon": 13.41},
                      "lines": [{"product_id": "milk", "qty": 1}],
                      "payment": {"method": "card", "payment_method": card}}),
        )
        .send()
        .await;
    assert!(lost.is_err(), "the cloud died before answering: {lost:?}");
    cloud.crashed();
    // The customer gives up; the restarted cloud finds the hold on the card and releases it.
    cloud.run(None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let intents = stripe_get(&http, &stripe, "/v1/payment_intents").await;
        let all = intents["data"].as_array().expect("intents");
        assert_eq!(all.len(), 1, "one authorisation was made: {intents}");
        if all[0]["status"] == "canceled" {
            break;
        }
        assert!(Instant::now() < deadline, "never voided: {intents}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    cloud.stop();
    stripe.stop().await;
}
