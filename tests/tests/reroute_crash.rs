//! HQ moves an order from one store to another and the cloud dies half-way (a crash point,
//! `FLASHKART_CRASH_AT`, aborts the real process there, as `kill -9` would). After the first
//! store was asked to cancel, the restarted cloud finishes the move: the order ends at the
//! second store, not cancelled at one and lost. Before that, the move is dropped and the order
//! stays where it was, untouched, and can be moved again. The cloud is the real binary; the
//! stores are store databases syncing with it.

use std::time::{Duration, Instant};

use flashkart_sync::client::{self, ClientConfig};
use flashkart_sync::{StoreConfig, StoreDb};
use flashkart_tests::call_api;
use flashkart_tests::crashing_cloud::{CrashingCloud, place_milk_order};
use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "reroute-crash-admin-token";
/// How long a restarted cloud may take to resume a move.
const START: Duration = Duration::from_secs(60);

/// Polls `url` (as HQ) until `done` holds.
async fn until(http: &reqwest::Client, url: &str, what: &str, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = call_api(http, Method::GET, url, ADMIN, None).await;
        if status.is_success() && done(&body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {what}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a store's database says of an order: (present, cancel requested, cancel reason).
async fn at_store(db: &StoreDb, order_id: &str) -> (bool, Option<String>, Option<String>) {
    let id = order_id.to_owned();
    db.read(move |conn| {
        let row = conn.query_row(
            "SELECT cancel_requested_at, cancel_reason FROM orders WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        );
        match row {
            Ok((at, reason)) => Ok((true, at, reason)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok((false, None, None)),
            Err(e) => Err(flashkart_sync::Error::from(e)),
        }
    })
    .await
    .expect("store read")
}

async fn store_until(
    db: &StoreDb,
    order_id: &str,
    what: &str,
    done: impl Fn(&(bool, Option<String>, Option<String>)) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = at_store(db, order_id).await;
        if done(&seen) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out: {what}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// HQ's set-up through the API (two stores whose areas both cover the customer, milk, a
/// customer) and both stores' databases syncing with the cloud, 10 milk each; the customer's
/// token and the stores (s1 nearer the customer).
async fn two_shops(
    http: &reqwest::Client,
    cloud: &CrashingCloud,
    stop: &CancellationToken,
) -> (String, StoreDb, StoreDb) {
    let base = cloud.url.clone();
    let hq = HqAdmin::new(http, &base, ADMIN);
    hq.put_product("milk", json!({"name": "milk", "price_minor": 250}))
        .await;
    let mut stores = Vec::new();
    for (id, lon) in [("s1", 13.40), ("s2", 13.50)] {
        let token = hq.register_store(id).await;
        let profile = StoreProfile::new(id)
            .at(52.5, lon)
            .area((13.3, 52.4, 13.6, 52.6))
            .radius_m(20000.0)
            .capacity(50);
        hq.put_store_profile(id, &profile).await;
        let mut config = StoreConfig::new(cloud.dir.path().join(format!("store-{id}.db")));
        config.extension_dir = Some(cloud.dir.path().join("ext"));
        let db = StoreDb::open(config, flashkart_sync::schema::store::MIGRATIONS)
            .await
            .expect("store database");
        let store = id.to_owned();
        db.write(move |conn| {
            conn.execute(
                "INSERT INTO stock_moves (id, store_id, product_id, qty, kind, actor, at)
                 VALUES (?1, ?2, 'milk', 10, 'receive', 'test', '2026-01-01T00:00:00.000Z')",
                [format!("stock-{store}"), store.clone()],
            )
            .map_err(flashkart_sync::Error::from)
        })
        .await
        .expect("stock");
        let mut sync = ClientConfig::new(&base, &token);
        sync.long_poll_ms = 1_000;
        sync.backoff_initial_ms = 20;
        sync.backoff_max_ms = 200;
        sync.local_poll_ms = 20;
        client::spawn(sync, db.clone(), stop.clone()).expect("sync client");
        stores.push(db);
    }
    until(
        http,
        &format!("{base}/admin/v1/stock/milk"),
        "both stores' stock in the read model",
        |v| v["s1"] == 10 && v["s2"] == 10,
    )
    .await;
    let customer = hq.create_customer("Ada").await;
    let s2 = stores.pop().expect("s2");
    let s1 = stores.pop().expect("s1");
    (customer, s1, s2)
}

async fn place(http: &reqwest::Client, base: &str, customer: &str, key: &str) -> String {
    let (status, placed) = place_milk_order(http, base, customer, key)
        .await
        .expect("order");
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(placed["store_id"], "s1", "{placed}");
    placed["order_id"].as_str().expect("order id").to_owned()
}

/// Asks HQ to move `order` to s2; the cloud dies before it answers.
async fn reroute_dies(http: &reqwest::Client, base: &str, order: &str) {
    let lost = http
        .post(format!("{base}/admin/v1/orders/{order}/reroute"))
        .bearer_auth(ADMIN)
        .json(&json!({"store_id": "s2", "reason": "s1 short-staffed"}))
        .send()
        .await;
    assert!(lost.is_err(), "the cloud died before answering: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_cut_after_the_first_store_cancelled_is_finished_after_a_restart() {
    let http = reqwest::Client::new();
    let stop = CancellationToken::new();
    let mut cloud = CrashingCloud::start(ADMIN, "", Some("reroute:after-cancel"));
    let base = cloud.url.clone();
    let (customer, s1, s2) = two_shops(&http, &cloud, &stop).await;
    let order = place(&http, &base, &customer, "move-1").await;
    store_until(&s1, &order, "the order at s1", |s| s.0).await;

    reroute_dies(&http, &base, &order).await;
    cloud.crashed();
    cloud.run(None);
    cloud
        .daemon()
        .wait_for_line("finishing a move a stopped cloud began", START);

    // s1 was asked to cancel (with HQ's reason), s2 has the order, HQ shows it at s2.
    store_until(&s1, &order, "s1 asked to cancel", |s| {
        s.2.as_deref() == Some("rerouted by HQ: s1 short-staffed")
    })
    .await;
    store_until(&s2, &order, "the order at s2, not cancelled", |s| {
        s.0 && s.1.is_none()
    })
    .await;
    let view = format!("{base}/admin/v1/orders/{order}");
    until(&http, &view, "HQ shows the order at s2", |v| {
        v["order"]["store_id"] == "s2" && v.to_string().contains("REROUTED")
    })
    .await;
    // Finished once: moving it back to a store that cancelled it is refused.
    let (status, body) = call_api(
        &http,
        Method::POST,
        &format!("{base}/admin/v1/orders/{order}/reroute"),
        ADMIN,
        Some(json!({"store_id": "s1", "reason": "back"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_cut_before_the_first_store_was_asked_is_dropped_and_can_be_asked_again() {
    let http = reqwest::Client::new();
    let stop = CancellationToken::new();
    let mut cloud = CrashingCloud::start(ADMIN, "", Some("reroute:after-intent"));
    let base = cloud.url.clone();
    let (customer, s1, s2) = two_shops(&http, &cloud, &stop).await;
    let order = place(&http, &base, &customer, "move-2").await;
    store_until(&s1, &order, "the order at s1", |s| s.0).await;

    reroute_dies(&http, &base, &order).await;
    cloud.crashed();
    cloud.run(None);
    cloud
        .daemon()
        .wait_for_line("a move that never reached its store: dropped", START);
    assert_eq!(
        at_store(&s1, &order).await,
        (true, None, None),
        "s1 untouched"
    );
    assert!(!at_store(&s2, &order).await.0, "s2 never got it");

    // The order moves when asked again.
    until(
        &http,
        &format!("{base}/admin/v1/dashboard"),
        "both stores online",
        |v| {
            v["stores"]
                .as_array()
                .is_some_and(|s| s.iter().all(|s| s["online"] == true))
        },
    )
    .await;
    let moved = HqAdmin::new(&http, &base, ADMIN)
        .call(
            Method::POST,
            &format!("/admin/v1/orders/{order}/reroute"),
            Some(json!({"store_id": "s2", "reason": "s1 short-staffed"})),
        )
        .await;
    assert_eq!(moved["store_id"], "s2", "{moved}");
    store_until(&s2, &order, "the order at s2", |s| s.0).await;
    stop.cancel();
}
