//! The outbox across a crash: the real cloud binary dies (a crash point, `FLASHKART_CRASH_AT`,
//! aborts it as `kill -9` would) after an order is confirmed and before its e-mail is sent.
//! After a restart exactly one e-mail for the order arrives at the SMTP server (aiosmtpd): the
//! confirmation was committed with the order, so it is neither lost nor sent twice, and the
//! customer's retry of the order (same idempotency key) adds nothing.

use std::time::{Duration, Instant};

use flashkart_sync::client::{self, ClientConfig};
use flashkart_sync::{StoreConfig, StoreDb};
use flashkart_tests::call_api;
use flashkart_tests::crashing_cloud::{CrashingCloud, place_milk_order};
use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use flashkart_tests::smtp::SmtpSink;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "notify-crash-admin-token";
const WAIT: Duration = Duration::from_secs(30);

/// Polls `url` (as HQ; every 50 ms, at most [`WAIT`]) until `done` holds for its text.
async fn until_text(http: &reqwest::Client, url: &str, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = match http.get(url).bearer_auth(ADMIN).send().await {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if done(&text) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out: {what}: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One store covering the customer, with 10 milk, syncing with the cloud.
async fn shop(http: &reqwest::Client, cloud: &CrashingCloud, stop: &CancellationToken) -> StoreDb {
    let base = &cloud.url;
    let url = |path: &str| format!("{base}{path}");
    let hq = HqAdmin::new(http, base, ADMIN);
    hq.put_product("milk", json!({"name": "milk", "price_minor": 250}))
        .await;
    let token = hq.register_store("s1").await;
    let profile = StoreProfile::new("s1")
        .area((13.3, 52.4, 13.6, 52.6))
        .radius_m(20000.0)
        .capacity(50);
    hq.put_store_profile("s1", &profile).await;
    let mut config = StoreConfig::new(cloud.dir.path().join("store-s1.db"));
    config.extension_dir = Some(cloud.dir.path().join("ext"));
    let db = StoreDb::open(config, flashkart_sync::schema::store::MIGRATIONS)
        .await
        .expect("store database");
    db.write(|conn| {
        conn.execute(
            "INSERT INTO stock_moves (id, store_id, product_id, qty, kind, actor, at)
             VALUES ('stock-s1', 's1', 'milk', 10, 'receive', 'test', '2026-01-01T00:00:00.000Z')",
            [],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .expect("stock");
    let mut sync = ClientConfig::new(base, &token);
    sync.long_poll_ms = 1_000;
    sync.backoff_initial_ms = 20;
    sync.backoff_max_ms = 200;
    sync.local_poll_ms = 20;
    client::spawn(sync, db.clone(), stop.clone()).expect("sync client");
    until_text(
        http,
        &url("/admin/v1/stock/milk"),
        "the store's stock in the read model",
        |text| serde_json::from_str::<Value>(text).is_ok_and(|v| v["s1"] == 10),
    )
    .await;
    db
}

/// Places the order (idempotency key `key`): its id, or `None` when the cloud died before it
/// answered.
async fn place(http: &reqwest::Client, base: &str, session: &str, key: &str) -> Option<String> {
    let (status, placed) = place_milk_order(http, base, session, key).await?;
    assert!(status.is_success(), "{status} {placed}");
    Some(placed["order_id"].as_str().expect("order id").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_confirmed_before_a_crash_is_emailed_exactly_once_after_the_restart() {
    let smtp = SmtpSink::start().await;
    let sections = format!(
        "[notifications.smtp]\nhost = \"{}\"\nport = {}\ntls = \"none\"\nfrom = \"orders@flashkart.example\"\n",
        smtp.addr.ip(),
        smtp.addr.port()
    );
    let http = reqwest::Client::new();
    let stop = CancellationToken::new();
    let mut cloud = CrashingCloud::start(ADMIN, &sections, Some("notify:before-send"));
    let _store = shop(&http, &cloud, &stop).await;
    let (status, account) = call_api(
        &http,
        Method::POST,
        &format!("{}/api/v1/account/sign-up", cloud.url),
        "",
        Some(json!({"email": "ada@example.com", "password": "correct horse battery", "first_name": "Ada"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let session = account["token"].as_str().expect("session token").to_owned();

    // The order is confirmed (its e-mail committed with it); the sender dies as it takes the
    // e-mail, before anything reaches the SMTP server. The answer may or may not get out.
    let first = place(&http, &cloud.url, &session, "crash-order-1").await;
    cloud.crashed();
    assert!(smtp.mails().is_empty(), "{:#?}", smtp.mails());

    // Restarted without the crash point: the customer's app retries the same order and the
    // e-mail goes out, once.
    cloud.run(None);
    let order = place(&http, &cloud.url, &session, "crash-order-1")
        .await
        .expect("the retried order is answered");
    if let Some(first) = first {
        assert_eq!(first, order);
    }
    let subject = format!("Order {order} confirmed");
    smtp.wait_for("the confirmation after the restart", WAIT, |mails| {
        mails.iter().any(|m| m.subject() == subject)
    })
    .await;
    // Awaited, not slept for: the sender has recorded it sent and has nothing left, so a
    // second e-mail would have been sent by now.
    until_text(
        &http,
        &format!("{}/metrics", cloud.url),
        "the e-mail recorded as sent, nothing pending",
        |metrics| {
            metrics.contains(
                "flashkart_cloud_notifications_total{channel=\"email\",kind=\"order_confirmed\",outcome=\"sent\"} 1",
            ) && metrics.contains("flashkart_cloud_notifications_pending{channel=\"email\"} 0")
        },
    )
    .await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].to, ["ada@example.com"]);
    assert_eq!(mails[0].subject(), subject);
    stop.cancel();
    cloud.stop();
}
