//! The delivery PIN from HQ to the door, with the cloud and a store's order desk in one process,
//! synced over real HTTP: the customer sees the PIN in their order view, the store replica
//! (and so the store) gets only `sha256(order ':' pin)`, the store's desk judges the rider's
//! PIN against it, and three wrong PINs pushed by the store flag the order in HQ's view.

use std::time::{Duration, Instant};

use flashkart_cloud::CloudConfig;
use flashkart_edge::riders::{Delivery, DeskError, LocalDesk, OrderDesk};
use flashkart_sync::client::{self, ClientConfig};
use flashkart_sync::schema::store::MIGRATIONS;
use flashkart_sync::{StoreConfig, StoreDb};
use flashkart_tests::call_api;
use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "test-admin";
const STORE: &str = "store-3";

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let (status, body) = call_api(&self.http, method, &url, token, body).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn order(&self, customer: &str, key: &str, contactless: bool) -> Value {
        let response = self
            .http
            .post(format!("{}/api/v1/orders", self.base))
            .bearer_auth(customer)
            .header("idempotency-key", key)
            .json(&json!({
                "address": {"text": "Somewhere 1, Berlin", "lat": 52.5, "lon": 13.4},
                "lines": [{"product_id": "milk", "qty": 1}],
                "payment": {"method": "cash"},
                "contactless": contactless,
            }))
            .send()
            .await
            .expect("order");
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("order body")
    }
}

async fn row(db: &StoreDb, order_id: &str) -> Option<(Option<String>, bool)> {
    let order_id = order_id.to_owned();
    db.read(move |conn| {
        use rusqlite::OptionalExtension;
        conn.query_row(
            "SELECT delivery_pin_sha256, contactless FROM orders WHERE id = ?1",
            [order_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .expect("read order")
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pin_reaches_the_customer_its_hash_the_store_and_wrong_pins_reach_support() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = CloudConfig::ephemeral(dir.path().join("cloud"));
    config.admin_token = Some(ADMIN.into());
    config.extension_dir = Some(dir.path().join("ext"));
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .expect("cloud starts");
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{}", running.addr),
    };

    let hq = HqAdmin::new(&api.http, &api.base, ADMIN);
    let store_token = hq.register_store(STORE).await;
    hq.put_store_profile(STORE, &StoreProfile::new("Berlin"))
        .await;
    hq.put_product(
        "milk",
        json!({"name": "milk", "price_minor": 129, "gtins": [{"gtin": "4006381333931"}]}),
    )
    .await;
    let customer = hq.create_customer("Ada").await;

    // The store: its database, synced with the cloud, and its order desk.
    let mut store_config = StoreConfig::new(dir.path().join("store.db"));
    store_config.extension_dir = Some(dir.path().join("ext"));
    let db = StoreDb::open(store_config, MIGRATIONS)
        .await
        .expect("store db");
    let mut sync = ClientConfig::new(&api.base, &store_token);
    sync.long_poll_ms = 1_000;
    sync.local_poll_ms = 20;
    sync.backoff_initial_ms = 20;
    sync.backoff_max_ms = 200;
    let _sync = client::spawn(sync, db.clone(), shutdown.clone()).expect("sync client");
    let desk = LocalDesk::new(db.clone(), STORE);

    let placed = api.order(&customer, "k-pin", false).await;
    let contactless = api.order(&customer, "k-photo", true).await;
    let order_id = placed["order_id"].as_str().expect("order id").to_owned();
    let photo_id = contactless["order_id"].as_str().expect("id").to_owned();
    let pin = placed["delivery_pin"].as_str().expect("a PIN").to_owned();
    assert!(
        pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()),
        "{pin}"
    );
    assert_eq!(contactless.get("delivery_pin"), None, "{contactless}");

    // The customer sees the PIN in their order view; nothing for the contactless order.
    let view = api
        .call(
            Method::GET,
            &format!("/api/v1/orders/{order_id}"),
            &customer,
            None,
        )
        .await;
    assert_eq!(view["delivery_pin"], pin.as_str(), "{view}");
    assert_eq!(
        view.get("pin_failures"),
        None,
        "support fields are HQ's: {view}"
    );
    let view = api
        .call(
            Method::GET,
            &format!("/api/v1/orders/{photo_id}"),
            &customer,
            None,
        )
        .await;
    assert_eq!(view["delivery_pin"], Value::Null, "{view}");

    // The replica, and by sync the store, get the hash and the flag, never the PIN.
    let expected = sha256_hex(&format!("{order_id}:{pin}"));
    let replica = running.cloud.replica(STORE).await.expect("replica");
    assert_eq!(
        row(replica.db(), &order_id).await,
        Some((Some(expected.clone()), false))
    );
    assert_eq!(row(replica.db(), &photo_id).await, Some((None, true)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while row(&db, &order_id).await.is_none() || row(&db, &photo_id).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the orders never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(row(&db, &order_id).await, Some((Some(expected), false)));
    let clear = db
        .read({
            let pin = pin.clone();
            move |conn| {
                conn.query_row(
                    "SELECT count(*) FROM crsql_changes WHERE \"table\" = 'orders' AND val = ?1",
                    [pin],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(flashkart_sync::Error::from)
            }
        })
        .await
        .expect("read changes");
    assert_eq!(clear, 0, "the PIN reached the store in clear");

    // The store works both orders to PICKED_UP with rider r1 (its own rows).
    let ids = [order_id.clone(), photo_id.clone()];
    db.write(move |conn| {
        for id in &ids {
            conn.execute(
                "INSERT INTO order_progress (order_id, store_id, status) VALUES (?1, ?2, 'PICKED_UP')",
                (id, STORE),
            )?;
            conn.execute(
                "INSERT INTO handoffs (order_id, store_id, rider_id, label_id, at)
                 VALUES (?1, ?2, 'r1', 'L', '2026-12-04T08:00:00.000Z')",
                (id, STORE),
            )?;
        }
        Ok::<_, flashkart_sync::Error>(())
    })
    .await
    .expect("store work");
    // Both are cash orders of the same basket: the rider collects what is due.
    let due: i64 = db
        .read({
            let id = order_id.clone();
            move |conn| {
                conn.query_row(
                    "SELECT cash_due_minor FROM orders WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .map_err(flashkart_sync::Error::from)
            }
        })
        .await
        .expect("cash due");
    assert!(due > 0, "a cash order says what to collect");
    let delivery = |order: &str, pin: Option<&str>, photo: Option<&str>| Delivery {
        order_id: order.to_owned(),
        rider_id: "r1".into(),
        at: "2026-12-04T08:30:00.000Z".into(),
        lat: None,
        lon: None,
        customer_pin: pin.map(str::to_owned),
        photo_ref: photo.map(str::to_owned),
        cash_collected_minor: Some(due),
    };
    let wrong = if pin == "0000" { "1111" } else { "0000" };

    // The contactless order is delivered with a photo.
    assert_eq!(
        desk.delivered(delivery(&photo_id, None, None)).await,
        Err(DeskError::PhotoRequired(photo_id.clone()))
    );
    assert_eq!(
        desk.delivered(delivery(&photo_id, None, Some("photos/door.jpg")))
            .await,
        Ok(None)
    );

    // Three wrong PINs at the door: refused, the third locks, even the right PIN then.
    for _ in 0..2 {
        let refused = desk.delivered(delivery(&order_id, Some(wrong), None)).await;
        assert!(
            matches!(refused, Err(DeskError::WrongPin { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        desk.delivered(delivery(&order_id, Some("12a4"), None))
            .await,
        Err(DeskError::PinLocked(order_id.clone()))
    );
    assert_eq!(
        desk.delivered(delivery(&order_id, Some(&pin), None)).await,
        Err(DeskError::PinLocked(order_id.clone()))
    );

    // HQ support sees the flag once the store has pushed the attempts.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = hq
            .call(Method::GET, &format!("/admin/v1/orders/{order_id}"), None)
            .await;
        if view["flagged_for_support"] == true {
            assert_eq!(view["pin_failures"], 3, "{view}");
            assert_eq!(
                view["delivery_pin"],
                pin.as_str(),
                "support reads the PIN: {view}"
            );
            break;
        }
        assert_eq!(view["flagged_for_support"], false, "{view}");
        assert!(Instant::now() < deadline, "never flagged: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    shutdown.cancel();
    running.wait().await.expect("cloud stops");
}
