//! Customers' ratings against a real cloud with two stores syncing through the real client: an
//! order placed through the API, offered by live dispatch to a rider who accepts it, and
//! delivered by the store's own database; then rated through the API (only by its customer,
//! only once delivered, only once, stars 1-5). The rider's effective rating for dispatch
//! follows customers' stars once there are enough; the dashboard's store figures equal
//! independent SQL over `hq.db`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::Api;
use common::city::*;
use common::*;
use flashkart_cloud::clock;
use flashkart_cloud::hq::RosterRider;
use flashkart_cloud::hq::ratings::{OrderRating, RIDER_MIN_RATINGS, RIDER_WINDOW};
use reqwest::{Method, StatusCode};
use rusqlite::params;
use serde_json::{Value, json};

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

/// The rider accepts the offer live dispatch made them for `order` (waiting for it).
async fn accept(env: &Env, rider: &str, order: &str) {
    let sql = format!(
        "SELECT count(*) FROM assignments WHERE rider_id = '{rider}' AND order_id = '{order}'"
    );
    let db = env.edge("s1").clone();
    until(env, &sql.clone(), || {
        let (db, sql) = (db.clone(), sql.clone());
        async move { count(&db, sql).await >= 1 }
    })
    .await;
    let (rider, order) = (rider.to_owned(), order.to_owned());
    let (reply_rider, reply_order) = (rider.clone(), order.clone());
    env.edge("s1")
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
    let cloud = &env.running.cloud;
    let sql = format!(
        "SELECT count(*) FROM rm_replies r JOIN rm_offers f ON f.assignment_id = r.assignment_id
         WHERE f.order_id = '{order}' AND r.rider_id = '{rider}' AND r.reply = 'accepted'"
    );
    let sql = sql.as_str();
    until(env, "the acceptance projected", || async move {
        rm_sql::count(cloud, sql).await == 1
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

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-9,
        (None, None) => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_rate_delivered_orders_and_ratings_feed_dispatch_and_the_dashboard() {
    let env = two_stores(Some(100), 30).await;
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
    let order = env.order_at("rate-1", ONLY_S1, "s1").await;
    let e1 = env.edge("s1").clone();
    let db = e1.clone();
    until(&env, "the order at s1", || {
        let db = db.clone();
        async move { count(&db, "SELECT count(*) FROM orders").await == 1 }
    })
    .await;
    let base = clock::now();
    let ready = [("ACCEPTED", 1), ("PICKING", 2), ("PACKED", 3), ("READY", 4)];
    progress(&e1, "s1", &order, "ROUTED", base, &ready).await;
    projected(&env, &[(order.as_str(), "READY")]).await;

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
        "s1",
        &order,
        "READY",
        later,
        &[("PICKED_UP", 1), ("DELIVERED", 2)],
    )
    .await;
    projected(&env, &[(order.as_str(), "DELIVERED")]).await;

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
    // The customer's order view shows it as the customer's answer did: no rider.
    let (code, mine) = env
        .api
        .call(
            Method::GET,
            &format!("/api/v1/orders/{order}"),
            &env.customer,
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(mine["rating"], got, "{mine}");

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
    for id in ["s1", "s2"] {
        let row = hq_sql::row(
            env.dir.path(),
            &format!(
                "SELECT CAST(count(*) AS TEXT), CAST(avg(order_stars) AS TEXT),
                    CAST(avg(delivery_stars) AS TEXT)
                 FROM order_ratings WHERE store_id = '{id}' AND created_at >= '{since}'"
            ),
        )
        .await;
        let number = |i: usize| row[i].as_deref().map(|v| v.parse::<f64>().unwrap());
        let (n, order_mean, delivery_mean) = (
            number(0).map(|n| n as i64).unwrap_or(0),
            number(1),
            number(2),
        );
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
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_ratings_shows_none() {
    let env = two_stores(Some(100), 30).await;
    let published = env.running.cloud.dashboard().rebuild().await.unwrap();
    let snapshot: Value = serde_json::from_str(&published.json).unwrap();
    for id in ["s1", "s2"] {
        let shown = store(&snapshot, id);
        assert_eq!(shown["ratings_7d"], 0);
        assert!(shown["rating_order_7d"].is_null() && shown["rating_delivery_7d"].is_null());
    }
    env.stop().await;
}
