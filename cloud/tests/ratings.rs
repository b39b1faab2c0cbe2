//! Customers' ratings against a real cloud with two stores syncing through the real client: an
//! order placed through the API, offered by live dispatch to a rider who accepts it, and
//! delivered by the store's own database; then rated through the API (only by its customer,
//! only once delivered, only once, stars 1-5). The rider's effective rating for dispatch
//! follows customers' stars once there are enough; the dashboard's store figures equal
//! independent SQL over `hq.db`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use common::api::Api;
use common::*;
use flashkart_cloud::RunningCloud;
use flashkart_cloud::clock;
use flashkart_cloud::hq::RosterRider;
use flashkart_cloud::hq::ratings::{OrderRating, RIDER_MIN_RATINGS, RIDER_WINDOW};
use flashkart_sync::StoreDb;
use flashkart_sync::client::{self, SyncStatus};
use reqwest::{Method, StatusCode};
use rusqlite::params;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Inside only store 1's area.
const ONLY_S1: (f64, f64) = (52.50, 13.35);

struct Env {
    dir: tempfile::TempDir,
    running: RunningCloud,
    shutdown: CancellationToken,
    api: Api,
    customer: String,
    edges: Vec<(StoreDb, CancellationToken)>,
    status: watch::Receiver<SyncStatus>,
}

fn profile(name: &str, lon: f64, west: f64, east: f64) -> Value {
    json!({
        "name": name, "lat": 52.50, "lon": lon,
        "service_area": {"type": "Polygon", "coordinates": [[[west, 52.4], [east, 52.4], [east, 52.6], [west, 52.6], [west, 52.4]]]},
        "max_radius_m": 10000.0, "hours": {"opens": "00:00", "closes": "00:00"},
        "capacity": 50, "sla_minutes": 30
    })
}

/// Stores s1 (west) and s2 (east), both syncing, with p1 in stock; dispatch ticks every 100 ms.
async fn two_stores() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloud_config(dir.path());
    config.dispatch.tick_ms = 100;
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .unwrap();
    let api = Api::new(running.addr);
    let mut edges = Vec::new();
    let mut status = None;
    for (store, lon, west, east) in [("s1", 13.42, 13.30, 13.50), ("s2", 13.58, 13.55, 13.70)] {
        let token = running.cloud.register_store(store).await.unwrap();
        let (code, body) = api
            .admin(
                Method::PUT,
                &format!("/admin/v1/stores/{store}/profile"),
                profile(store, lon, west, east),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let db = open_edge(dir.path(), store).await;
        edge_stock_move(&db, store, format!("{store}-stock"), 10).await;
        let stop = CancellationToken::new();
        let handle =
            client::spawn(client_config(&api.base, &token), db.clone(), stop.clone()).unwrap();
        status.get_or_insert(handle.status.clone());
        edges.push((db, stop));
    }
    let (code, body) = api
        .admin(
            Method::PUT,
            "/admin/v1/products/p1",
            json!({"name": "p1", "price_minor": 100}),
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    let customer = new_customer(&api, "Ada").await;
    let env = Env {
        dir,
        running,
        shutdown,
        api,
        customer,
        edges,
        status: status.unwrap(),
    };
    let projection = env.running.cloud.projection().db().clone();
    until(&env, "the stock projected", || {
        let projection = projection.clone();
        async move { count(&projection, "SELECT count(*) FROM rm_stock").await == 2 }
    })
    .await;
    env
}

async fn new_customer(api: &Api, name: &str) -> String {
    let (code, body) = api
        .admin(
            Method::POST,
            "/admin/v1/customers",
            json!({"first_name": name}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

impl Env {
    async fn stop(self) {
        for (_, stop) in &self.edges {
            stop.cancel();
        }
        self.shutdown.cancel();
        self.running.wait().await.unwrap();
    }

    fn s1(&self) -> &StoreDb {
        &self.edges[0].0
    }

    fn hq_path(&self) -> PathBuf {
        self.dir.path().join("cloud").join("hq.db")
    }

    /// Places an order of one p1 at store s1; its id.
    async fn order(&self, key: &str) -> String {
        let (code, body) = self
            .api
            .order(
                &self.customer,
                key,
                json!({
                    "address": {"text": "Here 1", "lat": ONLY_S1.0, "lon": ONLY_S1.1},
                    "lines": [{"product_id": "p1", "qty": 1}],
                    "payment": {"method": "cash"}
                }),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        assert_eq!(body["store_id"], "s1", "{body}");
        body["order_id"].as_str().unwrap().to_owned()
    }

    async fn rate(&self, token: &str, order: &str, body: Value) -> (StatusCode, Value) {
        self.api
            .call(
                Method::POST,
                &format!("/api/v1/orders/{order}/rating"),
                token,
                Some(body),
            )
            .await
    }

    async fn rating(&self, token: &str, order: &str) -> (StatusCode, Value) {
        self.api
            .call(
                Method::GET,
                &format!("/api/v1/orders/{order}/rating"),
                token,
                None,
            )
            .await
    }
}

/// Waits (on the stores' sync and the projector, at most 30 s) until `done` holds.
async fn until<F, Fut>(env: &Env, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut status = env.status.clone();
    let mut projected = env.running.cloud.projection().projected();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if done().await {
            return;
        }
        tokio::select! {
            _ = status.changed() => {}
            _ = projected.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = tokio::time::sleep_until(deadline) => panic!("{what}: not within 30 s"),
        }
    }
}

async fn projected(env: &Env, order: &str, status: &str) {
    let db = env.running.cloud.projection().db().clone();
    let sql =
        format!("SELECT count(*) FROM rm_orders WHERE id = '{order}' AND status = '{status}'");
    until(env, &sql.clone(), || {
        let (db, sql) = (db.clone(), sql.clone());
        async move { count(&db, sql).await == 1 }
    })
    .await;
}

/// The store moves an order from `from` through `steps` (status, seconds after `base`), as its
/// staff's scans would: one event per step and the order's progress row.
async fn progress(
    db: &StoreDb,
    order: &str,
    from: &str,
    base: OffsetDateTime,
    steps: &[(&'static str, i64)],
) {
    let (order, from, steps) = (order.to_owned(), from.to_owned(), steps.to_vec());
    db.write(move |conn| {
        let mut from = from;
        for (to, seconds) in &steps {
            let at = clock::rfc3339(base + time::Duration::seconds(*seconds));
            conn.execute(
                "INSERT INTO order_events (id, store_id, order_id, from_status, to_status, actor, at)
                 VALUES (?1, 's1', ?2, ?3, ?4, 'pia', ?5)",
                params![uuid::Uuid::now_v7().to_string(), order, from, to, at],
            )?;
            conn.execute(
                "INSERT INTO order_progress (order_id, store_id, status, status_at)
                 VALUES (?1, 's1', ?2, ?3)
                 ON CONFLICT (order_id) DO UPDATE SET status = excluded.status,
                    status_at = excluded.status_at",
                params![order, to, at],
            )?;
            from = (*to).to_owned();
        }
        Ok::<_, flashkart_sync::Error>(())
    })
    .await
    .unwrap();
}

async fn position(db: &StoreDb, rider: &str) {
    let rider = rider.to_owned();
    db.write(move |conn| {
        conn.execute(
            "INSERT INTO rider_positions (rider_id, store_id, lat, lon, at)
             VALUES (?1, 's1', 52.5, 13.42, ?2)
             ON CONFLICT (rider_id) DO UPDATE SET at = excluded.at",
            params![rider, clock::now_rfc3339()],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
}

/// The rider accepts the offer live dispatch made them for `order` (waiting for it).
async fn accept(env: &Env, rider: &str, order: &str) {
    let sql = format!(
        "SELECT count(*) FROM assignments WHERE rider_id = '{rider}' AND order_id = '{order}'"
    );
    let db = env.s1().clone();
    until(env, &sql.clone(), || {
        let (db, sql) = (db.clone(), sql.clone());
        async move { count(&db, sql).await >= 1 }
    })
    .await;
    let (rider, order) = (rider.to_owned(), order.to_owned());
    let (reply_rider, reply_order) = (rider.clone(), order.clone());
    env.s1()
        .write(move |conn| {
            let assignment: String = conn.query_row(
                "SELECT id FROM assignments WHERE rider_id = ?1 AND order_id = ?2 LIMIT 1",
                [&reply_rider, &reply_order],
                |r| r.get(0),
            )?;
            conn.execute(
                "INSERT INTO assignment_replies (assignment_id, store_id, rider_id, reply, at)
                 VALUES (?1, 's1', ?2, 'accepted', ?3)",
                params![assignment, reply_rider, clock::now_rfc3339()],
            )?;
            Ok::<_, flashkart_sync::Error>(())
        })
        .await
        .unwrap();
    let db = env.running.cloud.projection().db().clone();
    let sql = format!(
        "SELECT count(*) FROM rm_replies r JOIN rm_offers f ON f.assignment_id = r.assignment_id
         WHERE f.order_id = '{order}' AND r.rider_id = '{rider}' AND r.reply = 'accepted'"
    );
    until(env, "the acceptance projected", || {
        let (db, sql) = (db.clone(), sql.clone());
        async move { count(&db, sql).await == 1 }
    })
    .await;
}

fn roster_rider(id: &str, rating: f32) -> RosterRider {
    serde_json::from_value(json!({
        "id": id, "home_store_id": "s1", "name": id, "rating": rating
    }))
    .unwrap()
}

/// A rating written straight into HQ's store (an order the API never saw), `ago` back.
fn synthetic(
    order: &str,
    store: &str,
    rider: Option<&str>,
    stars: (u8, u8),
    ago: time::Duration,
) -> OrderRating {
    OrderRating {
        order_id: order.into(),
        customer_id: "c-earlier".into(),
        store_id: store.into(),
        rider_id: rider.map(str::to_owned),
        delivery_stars: stars.0,
        order_stars: stars.1,
        comment: None,
        created_at: clock::rfc3339(clock::now() - ago),
    }
}

fn store<'a>(snapshot: &'a Value, id: &str) -> &'a Value {
    snapshot["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (None, None) => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_rate_delivered_orders_and_ratings_feed_dispatch_and_the_dashboard() {
    let env = two_stores().await;
    let (code, body) = env
        .api
        .admin(
            Method::PUT,
            "/admin/v1/riders/r1",
            json!({"home_store_id": "s1", "name": "r1", "rating": 4.5}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");

    // The order goes through the store and live dispatch: r1 accepts it, it is delivered.
    let order = env.order("rate-1").await;
    let e1 = env.s1().clone();
    let db = e1.clone();
    until(&env, "the order at s1", || {
        let db = db.clone();
        async move { count(&db, "SELECT count(*) FROM orders").await == 1 }
    })
    .await;
    let base = clock::now();
    let ready = [("ACCEPTED", 1), ("PICKING", 2), ("PACKED", 3), ("READY", 4)];
    progress(&e1, &order, "ROUTED", base, &ready).await;
    projected(&env, &order, "READY").await;

    // Not delivered yet: 409, and nothing stored.
    let good = json!({"delivery_stars": 1, "order_stars": 4, "comment": "  cold and late  "});
    let (code, body) = env.rate(&env.customer, &order, good.clone()).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("READY"),
        "{body}"
    );

    position(&e1, "r1").await;
    accept(&env, "r1", &order).await;
    let later = clock::now().max(base + time::Duration::seconds(4));
    progress(
        &e1,
        &order,
        "READY",
        later,
        &[("PICKED_UP", 1), ("DELIVERED", 2)],
    )
    .await;
    projected(&env, &order, "DELIVERED").await;

    // Not the customer's own order: 404 whether rating or reading, as for the order itself.
    let other = new_customer(&env.api, "Bob").await;
    let (code, body) = env.rate(&other, &order, good.clone()).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let (code, _) = env
        .api
        .call(
            Method::GET,
            &format!("/api/v1/orders/{order}"),
            &other,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // No such order: 404.
    let (code, _) = env.rate(&env.customer, "no-such-order", good.clone()).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // Not rated yet: 404.
    let (code, _) = env.rating(&env.customer, &order).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Stars must be integers 1-5 and the comment at most 500 characters: 422.
    for bad in [
        json!({"delivery_stars": 0, "order_stars": 4}),
        json!({"delivery_stars": 6, "order_stars": 4}),
        json!({"delivery_stars": 3, "order_stars": 4.5}),
        json!({"delivery_stars": "3", "order_stars": 4}),
        json!({"delivery_stars": 3, "order_stars": 4, "comment": "x".repeat(501)}),
    ] {
        let (code, body) = env.rate(&env.customer, &order, bad.clone()).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    // Missing stars or unknown fields: malformed, 400.
    let (code, _) = env
        .rate(&env.customer, &order, json!({"delivery_stars": 3}))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // Rated: 201, the comment trimmed.
    let (code, body) = env.rate(&env.customer, &order, good.clone()).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(
        (
            &body["delivery_stars"],
            &body["order_stars"],
            &body["comment"]
        ),
        (&json!(1), &json!(4), &json!("cold and late"))
    );
    assert!(
        body.get("rider_id").is_none(),
        "the customer is not told the rider: {body}"
    );
    let (code, got) = env.rating(&env.customer, &order).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got, body);
    let (code, _) = env.rating(&other, &order).await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Once only: a second rating is 409 and the first stands.
    let (code, body) = env
        .rate(
            &env.customer,
            &order,
            json!({"delivery_stars": 5, "order_stars": 5}),
        )
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let (_, still) = env.rating(&env.customer, &order).await;
    assert_eq!(still["delivery_stars"], 1);

    // HQ's order view shows it, with the rider who delivered.
    let (code, hq_view) = env
        .api
        .call(
            Method::GET,
            &format!("/admin/v1/orders/{order}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(hq_view["rating"]["rider_id"], "r1", "{hq_view}");
    assert_eq!(
        hq_view["rating"]["customer_id"],
        hq_view["order"]["customer_id"]
    );
    assert_eq!(hq_view["rating"]["store_id"], "s1");

    // Dispatch's rating of r1: the roster's 4.5 until RIDER_MIN_RATINGS rated deliveries...
    let hq = env.running.cloud.hq();
    let r1 = roster_rider("r1", 4.5);
    let effective = |hq: flashkart_cloud::hq::Hq, rider: RosterRider| async move {
        hq.effective_ratings(&[&rider]).await.unwrap()[&rider.id]
    };
    assert_eq!(effective(hq.clone(), r1.clone()).await, 4.5);
    for n in 1..RIDER_MIN_RATINGS - 1 {
        hq.add_rating(synthetic(
            &format!("low-{n}"),
            "s1",
            Some("r1"),
            (2, 3),
            time::Duration::minutes(i64::from(n)),
        ))
        .await
        .unwrap();
    }
    assert_eq!(effective(hq.clone(), r1.clone()).await, 4.5);
    // ... then the mean of their delivery stars: (1 + 2 * 4) / 5.
    hq.add_rating(synthetic(
        "low-last",
        "s1",
        Some("r1"),
        (1, 3),
        time::Duration::minutes(30),
    ))
    .await
    .unwrap();
    let expected =
        (1.0 + 2.0 * f64::from(RIDER_MIN_RATINGS - 2) + 1.0) / f64::from(RIDER_MIN_RATINGS);
    let got = effective(hq.clone(), r1.clone()).await;
    assert!(
        (f64::from(got) - expected).abs() < 1e-5,
        "{got} vs {expected}"
    );
    // A rider nobody rated keeps the roster's rating.
    assert_eq!(effective(hq.clone(), roster_rider("r2", 3.0)).await, 3.0);
    // Only the latest RIDER_WINDOW count: older 5-star ratings are outside the window.
    for n in 0..RIDER_WINDOW {
        hq.add_rating(synthetic(
            &format!("old-{n}"),
            "s2",
            Some("r3"),
            (5, 5),
            time::Duration::days(20) + time::Duration::minutes(i64::from(n)),
        ))
        .await
        .unwrap();
    }
    for n in 0..RIDER_WINDOW {
        hq.add_rating(synthetic(
            &format!("new-{n}"),
            "s2",
            Some("r3"),
            (2, 5),
            time::Duration::minutes(i64::from(n)),
        ))
        .await
        .unwrap();
    }
    assert_eq!(effective(hq.clone(), roster_rider("r3", 5.0)).await, 2.0);
    // A second rating of an order is refused here too.
    assert!(
        hq.add_rating(synthetic(
            "low-last",
            "s1",
            Some("r1"),
            (5, 5),
            time::Duration::ZERO
        ))
        .await
        .is_err()
    );

    // The dashboard's store figures equal independent SQL over hq.db (ratings of the last
    // 7 days: r3's 20-day-old ones are left out).
    let published = env.running.cloud.dashboard().rebuild().await.unwrap();
    let snapshot: Value = serde_json::from_str(&published.json).unwrap();
    let since = clock::rfc3339(
        clock::parse(snapshot["at"].as_str().unwrap()).unwrap() - time::Duration::days(7),
    );
    let conn = rusqlite::Connection::open_with_flags(
        env.hq_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    for id in ["s1", "s2"] {
        let (n, order_mean, delivery_mean): (i64, Option<f64>, Option<f64>) = conn
            .query_row(
                "SELECT count(*), avg(order_stars), avg(delivery_stars) FROM order_ratings
                 WHERE store_id = ?1 AND created_at >= ?2",
                params![id, since],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let shown = store(&snapshot, id);
        assert_eq!(shown["ratings_7d"].as_i64(), Some(n), "{id}: {shown}");
        assert!(
            close(shown["rating_order_7d"].as_f64(), order_mean),
            "{id}: {shown}"
        );
        assert!(
            close(shown["rating_delivery_7d"].as_f64(), delivery_mean),
            "{id}: {shown}"
        );
    }
    let s1 = store(&snapshot, "s1");
    assert_eq!(s1["ratings_7d"], RIDER_MIN_RATINGS);
    assert_eq!(store(&snapshot, "s2")["ratings_7d"], RIDER_WINDOW);
    drop(conn);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_ratings_shows_none() {
    let env = two_stores().await;
    let published = env.running.cloud.dashboard().rebuild().await.unwrap();
    let snapshot: Value = serde_json::from_str(&published.json).unwrap();
    for id in ["s1", "s2"] {
        let shown = store(&snapshot, id);
        assert_eq!(shown["ratings_7d"], 0);
        assert!(shown["rating_order_7d"].is_null() && shown["rating_delivery_7d"].is_null());
    }
    env.stop().await;
}
