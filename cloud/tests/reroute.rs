//! Short lines reported by a store, through real sync: an order whose every line is short at a
//! store that has not started picking moves to another store that has the goods (cancelled at
//! the first, written to the second); an order only partly short is confirmed partial.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use flashkart_sync::StoreDb;
use flashkart_sync::client;
use rusqlite::params;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn report_short(db: &StoreDb, order: &str, short: i64) {
    let order = order.to_owned();
    db.write(move |conn| {
        let now = flashkart_cloud::clock::now_rfc3339();
        conn.execute(
            "INSERT INTO order_progress (order_id, store_id, status, status_at) VALUES (?1, 's1', 'ACCEPTED', ?2)",
            params![order, now],
        )?;
        conn.execute(
            "INSERT INTO order_line_progress (order_id, line_no, store_id, short_qty) VALUES (?1, 1, 's1', ?2)",
            params![order, short],
        )?;
        Ok::<_, flashkart_sync::Error>(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_short_reroutes_and_partly_short_confirms_partial() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: String, body: Value| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let area = json!({"type": "Polygon", "coordinates": [[[13.3, 52.4], [13.5, 52.4], [13.5, 52.6], [13.3, 52.6], [13.3, 52.4]]]});
    let mut edges = Vec::new();
    for (store, lat) in [("s1", 52.50), ("s2", 52.53)] {
        let token = running.cloud.register_store(store).await.unwrap();
        let put = admin(
            reqwest::Method::PUT,
            format!("/admin/v1/stores/{store}/profile"),
            json!({"name": store, "lat": lat, "lon": 13.40, "service_area": area,
                   "max_radius_m": 10000.0, "hours": {"opens": "00:00", "closes": "00:00"},
                   "capacity": 10, "sla_minutes": 30}),
        )
        .await
        .unwrap();
        assert!(put.status().is_success());
        let db = open_edge(dir.path(), store).await;
        edge_stock_move(&db, store, format!("{store}-stock"), 10).await;
        let stop = CancellationToken::new();
        let handle = client::spawn(client_config(&base, &token), db.clone(), stop.clone()).unwrap();
        edges.push((db, handle, stop));
    }
    let put = admin(
        reqwest::Method::PUT,
        "/admin/v1/products/p1".into(),
        json!({"name": "p1", "price_minor": 100}),
    )
    .await
    .unwrap();
    assert!(put.status().is_success());
    let customer: Value = admin(
        reqwest::Method::POST,
        "/admin/v1/customers".into(),
        json!({"first_name": "Ada"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let cloud = &running.cloud;
    let mut status = edges[0].1.status.clone();
    wait_for(&mut status, Duration::from_secs(30), || async move {
        rm_sql::count(cloud, "SELECT count(*) FROM rm_stock WHERE on_hand = 10").await == 2
    })
    .await;

    let place = |key: &'static str, qty: i64| {
        let request = http
            .post(format!("{base}/api/v1/orders"))
            .bearer_auth(customer["token"].as_str().unwrap())
            .header("idempotency-key", key)
            .json(
                &json!({"address": {"text": "Here 1", "lat": 52.495, "lon": 13.40},
                          "lines": [{"product_id": "p1", "qty": qty}],
                          "payment": {"method": "cash"}}),
            );
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let all_short = place("o-1", 2).await;
    let partly_short = place("o-2", 3).await;
    assert_eq!(
        all_short["store_id"], "s1",
        "the nearer store with stock: {all_short}"
    );
    assert_eq!(partly_short["store_id"], "s1");
    let (all_short, partly_short) = (
        all_short["order_id"].as_str().unwrap().to_owned(),
        partly_short["order_id"].as_str().unwrap().to_owned(),
    );

    // The first store finds the shelf empty for the first order, one piece short for the other.
    let (s1, s2) = (edges[0].0.clone(), edges[1].0.clone());
    wait_for(&mut status, Duration::from_secs(30), || {
        let s1 = s1.clone();
        async move { count(&s1, "SELECT count(*) FROM orders").await == 2 }
    })
    .await;
    report_short(&s1, &all_short, 2).await;
    report_short(&s1, &partly_short, 1).await;

    let (moved, s1_db, s2_db) = (all_short.clone(), s1.clone(), s2.clone());
    wait_for(&mut status, Duration::from_secs(30), || {
        let (moved, s1_db, s2_db) = (moved.clone(), s1_db.clone(), s2_db.clone());
        async move {
            rm_sql::count(cloud, "SELECT count(*) FROM rm_timeline WHERE status = 'PARTIAL_CONFIRMED'").await == 1
                && count(&s2_db, format!("SELECT count(*) FROM order_lines WHERE order_id = '{moved}'")).await == 1
                && count(
                    &s1_db,
                    format!("SELECT count(*) FROM orders WHERE id = '{moved}' AND cancel_requested_at IS NOT NULL"),
                )
                .await
                    == 1
        }
    })
    .await;
    let view = running
        .cloud
        .projection()
        .order(&all_short)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.store_id, "s2");
    assert!(
        view.timeline
            .iter()
            .any(|t| t.status == "REROUTED" && t.store_id == "s1"),
        "{:?}",
        view.timeline
    );

    let partial = running
        .cloud
        .projection()
        .order(&partly_short)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(partial.store_id, "s1");
    let note = partial
        .timeline
        .iter()
        .find(|t| t.status == "PARTIAL_CONFIRMED")
        .and_then(|t| t.note.clone())
        .expect("a partial confirmation");
    assert!(note.contains("line 1 (p1) short 1"), "{note}");
    assert_eq!(
        count(
            &s2,
            format!("SELECT count(*) FROM orders WHERE id = '{partly_short}'")
        )
        .await,
        0
    );

    for (_, _, stop) in &edges {
        stop.cancel();
    }
    shutdown.cancel();
    running.wait().await.unwrap();
}
