//! The money path against a real Stripe stand-in (localstripe): a cloud with its Stripe
//! gateway, a store database syncing with it over real sync, and orders placed through the
//! intake API with cards made the way a customer's app makes them.
//!
//! The store's side is written as the edge writes it (edge-owned rows: line progress, order
//! events, the delivery), so each test can choose exactly what the store delivered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use flashkart_cloud::{CloudConfig, RunningCloud};
use flashkart_sync::client::{self, ClientConfig};
use flashkart_sync::{StoreConfig, StoreDb};
use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use flashkart_tests::localstripe::LocalStripe;
use rusqlite::params;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "payments-admin-token";
const WEBHOOK_SECRET: &str = "whsec_flashkart_test";
const GOOD_CARD: &str = "4242424242424242";

/// A cloud with the Stripe gateway, one store syncing, a customer and two products.
struct Shop {
    _dir: tempfile::TempDir,
    stripe: LocalStripe,
    cloud: RunningCloud,
    shutdown: CancellationToken,
    base: String,
    http: reqwest::Client,
    customer: String,
    store: StoreDb,
    sync_stop: CancellationToken,
}

impl Shop {
    async fn open() -> Self {
        let stripe = LocalStripe::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = CloudConfig::ephemeral(dir.path().join("cloud"));
        config.admin_token = Some(ADMIN.into());
        config.extension_dir = Some(dir.path().join("ext"));
        config.payments = toml::from_str(&format!(
            "webhook_secret = '{WEBHOOK_SECRET}'\nretry_initial_ms = 100\nretry_max_ms = 500\n\
             [stripe]\napi_base = '{}'\nsecret_key = '{}'\n",
            stripe.base_url(),
            stripe.secret_key()
        ))
        .expect("payments config");
        let shutdown = CancellationToken::new();
        let cloud = flashkart_cloud::start(config, shutdown.clone())
            .await
            .expect("cloud starts");
        let base = format!("http://{}", cloud.addr);
        let http = reqwest::Client::new();
        let token = cloud.cloud.register_store("s1").await.unwrap();
        let hq = HqAdmin::new(&http, &base, ADMIN);
        let profile = StoreProfile::new("s1")
            .at(52.5, 13.40)
            .area((13.3, 52.4, 13.5, 52.6))
            .radius_m(10000.0)
            .capacity(50);
        hq.put_store_profile("s1", &profile).await;
        for (product, price) in [("milk", 250), ("bread", 180)] {
            hq.put_product(product, json!({"name": product, "price_minor": price}))
                .await;
        }
        let customer = hq.create_customer("Ada").await;
        let store = open_store(dir.path()).await;
        for product in ["milk", "bread"] {
            let product = product.to_owned();
            store
                .write(move |conn| {
                    conn.execute(
                        "INSERT INTO stock_moves (id, store_id, product_id, qty, kind, actor, at)
                         VALUES (?1, 's1', ?2, 100, 'receive', 'test', '2026-01-01T00:00:00.000Z')",
                        params![format!("stock-{product}"), product],
                    )
                    .map_err(flashkart_sync::Error::from)
                })
                .await
                .unwrap();
        }
        let sync_stop = CancellationToken::new();
        let mut sync = ClientConfig::new(&base, &token);
        sync.long_poll_ms = 1_000;
        sync.backoff_initial_ms = 20;
        sync.backoff_max_ms = 400;
        sync.local_poll_ms = 20;
        client::spawn(sync, store.clone(), sync_stop.clone()).unwrap();
        let shop = Self {
            _dir: dir,
            stripe,
            cloud,
            shutdown,
            base,
            http,
            customer,
            store,
            sync_stop,
        };
        shop.until(
            "the store's stock is in the read model",
            |shop| async move {
                shop.admin_get("/admin/v1/stock/milk")
                    .await
                    .to_string()
                    .contains("100")
            },
        )
        .await;
        shop
    }

    async fn close(self) {
        self.sync_stop.cancel();
        self.shutdown.cancel();
        self.cloud.wait().await.unwrap();
        self.stripe.stop().await;
    }

    /// Polls `check` (every 50 ms, at most 30 s): the cloud works on its own schedule.
    async fn until<'a, F, Fut>(&'a self, what: &str, check: F)
    where
        F: Fn(&'a Self) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !check(self).await {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn admin_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn place(&self, key: &str, payment: Value) -> (reqwest::StatusCode, Value) {
        let answer = self
            .http
            .post(format!("{}/api/v1/orders", self.base))
            .bearer_auth(&self.customer)
            .header("idempotency-key", key)
            .json(&json!({
                "address": {"text": "Here 1", "lat": 52.5, "lon": 13.41},
                "lines": [{"product_id": "milk", "qty": 2}, {"product_id": "bread", "qty": 1}],
                "payment": payment,
            }))
            .send()
            .await
            .unwrap();
        (answer.status(), answer.json().await.unwrap())
    }

    async fn card_order(&self, key: &str) -> Value {
        let card = self.stripe.create_payment_method(GOOD_CARD).await;
        let (status, order) = self
            .place(key, json!({"method": "card", "payment_method": card}))
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{order}");
        order
    }

    async fn payment(&self, order_id: &str) -> Value {
        self.admin_get(&format!("/admin/v1/orders/{order_id}"))
            .await["payment"]
            .clone()
    }

    async fn until_payment(&self, order_id: &str, state: &str) -> Value {
        self.until(
            &format!("payment of {order_id} {state}"),
            |shop| async move { shop.payment(order_id).await["state"] == state },
        )
        .await;
        self.payment(order_id).await
    }

    /// The store works the order to `to` as the edge records it; `picked` pieces per line.
    async fn store_works(&self, order_id: &str, picked: &[(i64, i64)], to: &[&str]) {
        self.store_works_for(order_id, picked, to, None).await;
    }

    /// As [`Shop::store_works`]; `cash` is what the rider collected at the door.
    async fn store_works_for(
        &self,
        order_id: &str,
        picked: &[(i64, i64)],
        to: &[&str],
        cash: Option<i64>,
    ) {
        let order = order_id.to_owned();
        let db = self.store.clone();
        self.until("the order reached the store", |_| {
            let (db, order) = (db.clone(), order.clone());
            async move {
                db.read(move |conn| {
                    conn.query_row("SELECT count(*) FROM orders WHERE id = ?1", [&order], |r| {
                        r.get::<_, i64>(0)
                    })
                    .map_err(flashkart_sync::Error::from)
                })
                .await
                .unwrap()
                    == 1
            }
        })
        .await;
        let (picked, to) = (
            picked.to_vec(),
            to.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        );
        self.store
            .write(move |conn| {
                let at = flashkart_cloud::clock::now_rfc3339();
                for (line_no, qty) in picked {
                    conn.execute(
                        "INSERT INTO order_line_progress (order_id, line_no, store_id, picked_qty, short_qty)
                         VALUES (?1, ?2, 's1', ?3, 0)
                         ON CONFLICT (order_id, line_no) DO UPDATE SET picked_qty = excluded.picked_qty",
                        params![order, line_no, qty],
                    )?;
                }
                let mut from = "ROUTED".to_owned();
                for status in to {
                    conn.execute(
                        "INSERT INTO order_events (id, store_id, order_id, from_status, to_status, actor, at)
                         VALUES (?1, 's1', ?2, ?3, ?4, 'test', ?5)",
                        params![uuid::Uuid::now_v7().to_string(), order, from, status, at],
                    )?;
                    if status == "DELIVERED" {
                        conn.execute(
                            "INSERT INTO deliveries (order_id, store_id, rider_id, at, cash_collected_minor)
                             VALUES (?1, 's1', 'r1', ?2, ?3)",
                            params![order, at, cash],
                        )?;
                    }
                    from = status;
                }
                Ok::<_, flashkart_sync::Error>(())
            })
            .await
            .unwrap();
    }

    async fn intent(&self, intent_id: &str) -> Value {
        self.http
            .get(format!(
                "{}/v1/payment_intents/{intent_id}",
                self.stripe.base_url()
            ))
            .bearer_auth(self.stripe.secret_key())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn assert_balanced(&self) {
        let trial = self.admin_get("/admin/v1/ledger/trial-balance").await;
        assert_eq!(trial["balanced"], true, "{trial}");
    }
}

async fn open_store(dir: &Path) -> StoreDb {
    let mut config = StoreConfig::new(dir.join("store-s1.db"));
    config.extension_dir = Some(dir.join("ext"));
    StoreDb::open(config, flashkart_sync::schema::store::MIGRATIONS)
        .await
        .expect("store database opens")
}

const DELIVERED: &[&str] = &[
    "ACCEPTED",
    "PICKING",
    "PACKED",
    "READY",
    "ASSIGNED",
    "PICKED_UP",
    "DELIVERED",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_line_is_not_captured_and_the_ledger_matches_the_gateway() {
    let shop = Shop::open().await;
    let order = shop.card_order("short-1").await;
    let id = order["order_id"].as_str().unwrap();
    let total = order["total_minor"].as_i64().unwrap();
    let payment = shop.until_payment(id, "authorised").await;
    let intent_id = payment["intent_id"].as_str().unwrap().to_owned();
    let intent = shop.intent(&intent_id).await;
    assert_eq!(intent["status"], "requires_capture", "{intent}");
    assert_eq!(intent["amount"], total);
    shop.assert_balanced().await;

    // The store had no bread: line 2 delivered none.
    shop.store_works(id, &[(1, 2), (2, 0)], DELIVERED).await;
    let payment = shop.until_payment(id, "captured").await;
    let expected = total - 180;
    assert_eq!(payment["captured_minor"], expected, "{payment}");
    assert_eq!(payment["delivered_minor"], expected);
    let intent = shop.intent(&intent_id).await;
    assert_eq!(intent["status"], "succeeded", "{intent}");
    // localstripe records a partial capture as a charge of the whole amount with the rest
    // refunded at once; Stripe reports `amount_received`. Either way: what the customer paid.
    let charge = &intent["latest_charge"];
    let paid = intent["amount_received"].as_i64().unwrap_or_else(|| {
        charge["amount"].as_i64().unwrap() - charge["amount_refunded"].as_i64().unwrap()
    });
    assert_eq!(paid, expected, "{intent}");

    shop.assert_balanced().await;
    let currency = order["currency"].as_str().unwrap();
    let balances = shop
        .admin_get(&format!("/admin/v1/ledger/balances?currency={currency}"))
        .await;
    assert_eq!(balances["gateway_clearing"], expected, "{balances}");
    let customer_account = balances
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("customer:"))
        .map(|(_, v)| v.as_i64().unwrap());
    assert_eq!(
        customer_account,
        Some(0),
        "the customer owes nothing: {balances}"
    );

    let statement = shop
        .http
        .get(format!(
            "{}/admin/v1/statements/stores/s1?currency={currency}&from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&format=csv",
            shop.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(statement.status(), reqwest::StatusCode::OK);
    let csv = statement.text().await.unwrap();
    assert!(csv.contains(id), "{csv}");
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_cards_place_no_order() {
    let shop = Shop::open().await;
    for (key, card) in [("d-1", "4000000000000341"), ("d-2", "4000000000000002")] {
        let card = shop.stripe.create_payment_method(card).await;
        let (status, body) = shop
            .place(key, json!({"method": "card", "payment_method": card}))
            .await;
        assert_eq!(status, reqwest::StatusCode::PAYMENT_REQUIRED, "{body}");
        assert_eq!(body["error"], "payment_declined", "{body}");
        // The same key answers the same.
        let (again, _) = shop
            .place(key, json!({"method": "card", "payment_method": card}))
            .await;
        assert_eq!(again, reqwest::StatusCode::PAYMENT_REQUIRED);
    }
    let (status, body) = shop
        .place(
            "d-3",
            json!({"method": "card", "payment_method": "pm bad!"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let flashkart_cloud::projection::Backend::Sqlite(read_model) =
        shop.cloud.cloud.projection().backend()
    else {
        panic!("this test's cloud keeps its read model in SQLite");
    };
    let orders = read_model
        .read(|conn| {
            conn.query_row("SELECT count(*) FROM rm_orders", [], |r| r.get::<_, i64>(0))
                .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    assert_eq!(orders, 0, "no order for a declined card");
    let replica = shop.cloud.cloud.replica("s1").await.unwrap();
    let at_store = replica
        .db()
        .read(|conn| {
            conn.query_row("SELECT count(*) FROM orders", [], |r| r.get::<_, i64>(0))
                .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    assert_eq!(at_store, 0);
    shop.assert_balanced().await;
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_void_before_capture_and_refund_after() {
    let shop = Shop::open().await;
    // The customer cancels before picking: the store cancels, the authorisation is voided.
    let first = shop.card_order("c-1").await;
    let first_id = first["order_id"].as_str().unwrap();
    shop.until_payment(first_id, "authorised").await;
    let answer = shop
        .http
        .post(format!("{}/api/v1/orders/{first_id}/cancel", shop.base))
        .bearer_auth(&shop.customer)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::ACCEPTED);
    // The store honours the request the cloud wrote into its replica.
    let db = shop.store.clone();
    let id = first_id.to_owned();
    shop.until("the store sees the cancellation", |_| {
        let (db, id) = (db.clone(), id.clone());
        async move {
            db.read(move |conn| {
                conn.query_row(
                    "SELECT count(*) FROM orders WHERE id = ?1 AND cancel_requested_at IS NOT NULL",
                    [&id],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await
            .unwrap()
                == 1
        }
    })
    .await;
    shop.store_works(first_id, &[], &["CANCELLED"]).await;
    let voided = shop.until_payment(first_id, "voided").await;
    let intent = shop.intent(voided["intent_id"].as_str().unwrap()).await;
    assert_eq!(intent["status"], "canceled", "{intent}");

    // HQ cancels a delivered order: the whole capture is refunded.
    let second = shop.card_order("c-2").await;
    let second_id = second["order_id"].as_str().unwrap();
    shop.store_works(second_id, &[(1, 2), (2, 1)], DELIVERED)
        .await;
    let captured = shop.until_payment(second_id, "captured").await;
    let total = second["total_minor"].as_i64().unwrap();
    assert_eq!(captured["captured_minor"], total);
    let refused = shop
        .http
        .post(format!("{}/api/v1/orders/{second_id}/cancel", shop.base))
        .bearer_auth(&shop.customer)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        reqwest::StatusCode::CONFLICT,
        "a customer cannot cancel a delivered order"
    );
    let no_reason = shop
        .http
        .post(format!("{}/api/v1/orders/{second_id}/cancel", shop.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        no_reason.status(),
        reqwest::StatusCode::UNPROCESSABLE_ENTITY
    );
    let too_much = shop
        .http
        .post(format!("{}/admin/v1/orders/{second_id}/refund", shop.base))
        .bearer_auth(ADMIN)
        .json(&json!({"amount_minor": total + 1, "reason": "goodwill"}))
        .send()
        .await
        .unwrap();
    assert_eq!(too_much.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    for bad in [
        json!({"amount_minor": 0, "reason": "x"}),
        json!({"amount_minor": -5, "reason": "x"}),
        json!({"amount_minor": 1.5, "reason": "x"}),
        json!({"amount_minor": 10, "reason": ""}),
    ] {
        let refused = shop
            .http
            .post(format!("{}/admin/v1/orders/{second_id}/refund", shop.base))
            .bearer_auth(ADMIN)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert!(
            refused.status().is_client_error(),
            "{bad}: {}",
            refused.status()
        );
    }
    for path in [
        "/admin/v1/ledger/balances?currency=eur",
        "/admin/v1/statements/stores/s1?currency=EURO&from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
    ] {
        let refused = shop
            .http
            .get(format!("{}{path}", shop.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused.status(),
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            "{path}"
        );
    }
    assert_eq!(
        shop.payment(second_id).await["refund_requested_minor"],
        0,
        "nothing was written"
    );
    let answer = shop
        .http
        .post(format!("{}/api/v1/orders/{second_id}/cancel", shop.base))
        .bearer_auth(ADMIN)
        .json(&json!({"reason": "damaged goods"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::ACCEPTED);
    shop.until("the refund is made", |shop| async move {
        shop.payment(second_id).await["refunded_minor"] == total
    })
    .await;
    let refunds: Value = shop
        .http
        .get(format!(
            "{}/v1/refunds?payment_intent={}",
            shop.stripe.base_url(),
            captured["intent_id"].as_str().unwrap()
        ))
        .bearer_auth(shop.stripe.secret_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refunded: i64 = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["payment_intent"] == captured["intent_id"])
        .map(|r| r["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(refunded, total, "{refunds}");
    shop.assert_balanced().await;
    let currency = second["currency"].as_str().unwrap();
    let balances = shop
        .admin_get(&format!("/admin/v1/ledger/balances?currency={currency}"))
        .await;
    assert_eq!(
        balances["gateway_clearing"], 0,
        "captured and refunded: {balances}"
    );
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_down_at_capture_does_not_stop_the_delivery() {
    let shop = Shop::open().await;
    let order = shop.card_order("g-1").await;
    let id = order["order_id"].as_str().unwrap();
    shop.until_payment(id, "authorised").await;
    shop.stripe.go_down().await;
    shop.store_works(id, &[(1, 2), (2, 1)], DELIVERED).await;
    shop.until(
        "the order is delivered in the read model",
        |shop| async move {
            shop.admin_get(&format!("/admin/v1/orders/{id}")).await["order"]["status"]
                == "DELIVERED"
        },
    )
    .await;
    shop.until("the capture waits in the backlog", |shop| async move {
        let metrics = shop
            .http
            .get(format!("{}/metrics", shop.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics.contains("flashkart_cloud_payment_backlog{op=\"capture\"} 1")
            && metrics.contains("op=\"capture\",result=\"unavailable\"")
    })
    .await;
    assert_eq!(shop.payment(id).await["state"], "capturing");
    shop.stripe.come_up().await;
    let payment = shop.until_payment(id, "captured").await;
    assert_eq!(payment["captured_minor"], order["total_minor"]);
    shop.assert_balanced().await;
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_stale_and_misfit_webhooks_are_refused() {
    let shop = Shop::open().await;
    let order = shop.card_order("w-1").await;
    let id = order["order_id"].as_str().unwrap();
    let payment = shop.until_payment(id, "authorised").await;
    let intent_id = payment["intent_id"].as_str().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let event = |event_id: &str, amount: i64| {
        json!({"id": event_id, "object": "event", "type": "payment_intent.payment_failed",
               "created": now, "data": {"object": {"id": intent_id, "object": "payment_intent",
               "amount": amount, "currency": order["currency"].as_str().unwrap().to_lowercase()}}})
        .to_string()
    };
    let post = |body: String, signature: String| {
        shop.http
            .post(format!("{}/api/v1/payments/stripe/webhook", shop.base))
            .header("stripe-signature", signature)
            .body(body)
            .send()
    };
    let sign = |secret: &str, t: i64, body: &str| {
        flashkart_cloud::payments::webhook::sign(secret, t, body.as_bytes())
    };
    let good = event("evt_1", 100);
    let forged = post(good.clone(), sign("whsec_wrong", now, &good))
        .await
        .unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::BAD_REQUEST);
    let stale = post(good.clone(), sign(WEBHOOK_SECRET, now - 3600, &good))
        .await
        .unwrap();
    assert_eq!(stale.status(), reqwest::StatusCode::BAD_REQUEST);
    let unsigned = shop
        .http
        .post(format!("{}/api/v1/payments/stripe/webhook", shop.base))
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), reqwest::StatusCode::BAD_REQUEST);
    let misfit = event("evt_2", 10_000_000);
    let too_much = post(misfit.clone(), sign(WEBHOOK_SECRET, now, &misfit))
        .await
        .unwrap();
    assert_eq!(too_much.status(), reqwest::StatusCode::BAD_REQUEST);
    let accepted = post(good.clone(), sign(WEBHOOK_SECRET, now, &good))
        .await
        .unwrap();
    assert_eq!(
        accepted.status(),
        reqwest::StatusCode::OK,
        "{}",
        accepted.text().await.unwrap()
    );
    let replayed = post(good.clone(), sign(WEBHOOK_SECRET, now, &good))
        .await
        .unwrap();
    assert_eq!(replayed.status(), reqwest::StatusCode::BAD_REQUEST);
    let flags = shop.admin_get("/admin/v1/payments/flags").await;
    let failed: Vec<&Value> = flags
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "payment_failed")
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "only the one verified event counted: {flags}"
    );
    assert_eq!(shop.payment(id).await["state"], "authorised");

    // Guessing the secret: after 20 refusals a minute the address is held back unchecked.
    let mut refusals = 0;
    loop {
        let forged = post(good.clone(), sign("whsec_guess", now, &good))
            .await
            .unwrap();
        if forged.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            assert!(forged.headers().contains_key("retry-after"));
            break;
        }
        assert_eq!(forged.status(), reqwest::StatusCode::BAD_REQUEST);
        refusals += 1;
        assert!(refusals <= 20, "never held back");
    }
    let fresh = event("evt_3", 100);
    let held = post(fresh.clone(), sign(WEBHOOK_SECRET, now, &fresh))
        .await
        .unwrap();
    assert_eq!(held.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    shop.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cash_collected_and_handed_in_is_booked_and_differences_are_flagged() {
    let shop = Shop::open().await;
    let (status, order) = shop.place("cash-1", json!({"method": "cash"})).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{order}");
    assert_eq!(order["payment_method"], "cash");
    let id = order["order_id"].as_str().unwrap();
    let total = order["total_minor"].as_i64().unwrap();
    let currency = order["currency"].as_str().unwrap();
    assert_eq!(shop.payment(id).await["state"], "cash_due");
    let store = shop.cloud.cloud.replica("s1").await.unwrap();
    let due: i64 = store
        .db()
        .read({
            let id = id.to_owned();
            move |conn| {
                conn.query_row(
                    "SELECT cash_due_minor FROM orders WHERE id = ?1 AND payment_method = 'cash'",
                    [id],
                    |r| r.get(0),
                )
                .map_err(flashkart_sync::Error::from)
            }
        })
        .await
        .unwrap();
    assert_eq!(due, total, "the store is told what to collect");

    // The rider comes back 40 short.
    shop.store_works_for(id, &[(1, 2), (2, 1)], DELIVERED, Some(total - 40))
        .await;
    let payment = shop.until_payment(id, "cash_collected").await;
    assert_eq!(payment["cash_collected_minor"], total - 40);
    shop.until("the shortfall is flagged", |shop| async move {
        let flags = shop.admin_get("/admin/v1/payments/flags").await;
        flags.as_array().unwrap().iter().any(|f| {
            f["kind"] == "cash_collected_difference"
                && f["expected_minor"] == total
                && f["actual_minor"] == total - 40
        })
    })
    .await;

    // The rider hands in what they hold at the store (the store's record, synced).
    let currency_owned = currency.to_owned();
    let handed = total - 40;
    shop.store
        .write(move |conn| {
            conn.execute(
                "INSERT INTO cash_handins (id, store_id, rider_id, at, amount_minor, expected_minor, currency, staff_id)
                 VALUES ('handin-1', 's1', 'r1', ?1, ?2, ?2, ?3, 'lead')",
                params![flashkart_cloud::clock::now_rfc3339(), handed, currency_owned],
            )
            .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    let path = format!("/admin/v1/ledger/balances?currency={currency}");
    shop.until("the hand-in is booked", |shop| {
        let path = path.clone();
        async move { shop.admin_get(&path).await["cash_in_transit:r1"] == 0 }
    })
    .await;
    let balances = shop.admin_get(&path).await;
    let customer_owes: i64 = balances
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("customer:"))
        .map(|(_, v)| v.as_i64().unwrap())
        .sum();
    assert_eq!(
        customer_owes, 40,
        "the shortfall stays on the customer: {balances}"
    );
    let rider = shop
        .admin_get(&format!(
            "/admin/v1/statements/riders/r1?currency={currency}&from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
        ))
        .await;
    let cash = &rider["cash_in_transit"];
    assert_eq!(cash["closing_minor"], 0, "{rider}");
    assert_eq!(
        cash["lines"].as_array().unwrap().len(),
        2,
        "collected, then handed in: {rider}"
    );
    assert_eq!(
        rider["rider_payable"]["lines"].as_array().unwrap().len(),
        1,
        "the delivery fee: {rider}"
    );
    shop.assert_balanced().await;
    shop.close().await;
}
