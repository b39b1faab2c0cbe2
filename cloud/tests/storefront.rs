//! The storefront against a real cloud with one store syncing through the real client: for an
//! address, the store that would deliver, the fee and ETA, and only what that store has in
//! stock, found by a search with a typo or a half word, or listed by category; an address
//! outside every area is told so; a catalog change reaches the search without a restart. The
//! delivery areas the customer app draws are public.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::{Api, area};
use common::*;
use flashkart_sync::StoreDb;
use flashkart_sync::client;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Inside the store's area, and far outside every area.
const INSIDE: (f64, f64) = (52.50, 13.40);
const OUTSIDE: (f64, f64) = (48.14, 11.58);

async fn stock(db: &StoreDb, product: &str, qty: i64) {
    let (product, id) = (product.to_owned(), format!("stock-{product}"));
    db.write(move |conn| {
        conn.execute(
            "INSERT INTO stock_moves (id, store_id, product_id, qty, kind, actor, at)
             VALUES (?1, 's1', ?2, ?3, 'receive', 'test', '2026-01-01T00:00:00.000Z')",
            rusqlite::params![id, product, qty],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
}

async fn product(api: &Api, id: &str, name: &str, category: &str, price: i64) {
    let (code, body) = api
        .admin(
            Method::PUT,
            &format!("/admin/v1/products/{id}"),
            json!({"name": name, "price_minor": price, "category_id": category}),
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
}

async fn storefront(api: &Api, query: &str) -> (StatusCode, Value) {
    api.call(
        Method::GET,
        &format!("/api/v1/storefront?{query}"),
        "",
        None,
    )
    .await
}

fn names(body: &Value) -> Vec<String> {
    body["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls the storefront until `done` holds (the read model and the index follow the stores
/// and the catalog asynchronously).
async fn until(api: &Api, query: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, body) = storefront(api, query).await;
        if code == StatusCode::OK && done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {code} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_sees_what_the_store_for_their_address_can_deliver_now() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let api = Api::new(running.addr);
    api.store_and_customer("s1").await;
    for (id, name, category, price) in [
        ("choc", "Dark Chocolate 100 g", "sweets", 199),
        ("milk", "Whole Milk 1 l", "dairy", 129),
        ("yogurt", "Greek Yogurt 500 g", "dairy", 249),
        ("banana", "Bananas 1 kg", "fruit", 179),
    ] {
        product(&api, id, name, category, price).await;
    }
    let edge = open_edge(dir.path(), "s1").await;
    // Bananas sold out: never offered.
    for (id, qty) in [("choc", 5), ("milk", 12), ("yogurt", 3)] {
        stock(&edge, id, qty).await;
    }
    let stop = CancellationToken::new();
    let store_token = running.cloud.rotate_store_token("s1", false).await.unwrap();
    client::spawn(
        client_config(&api.base, &store_token),
        edge.clone(),
        stop.clone(),
    )
    .unwrap();

    let here = format!("lat={}&lon={}", INSIDE.0, INSIDE.1);
    let all = until(&api, &here, "three products in stock", |b| {
        b["products"].as_array().is_some_and(|p| p.len() == 3)
    })
    .await;
    assert_eq!(all["deliverable"], true, "{all}");
    assert_eq!(all["store"]["id"], "s1", "{all}");
    assert!(all["eta_minutes"].as_u64().unwrap() > 0, "{all}");
    assert!(all["delivery_fee_minor"].as_i64().unwrap() > 0, "{all}");
    assert_eq!(
        names(&all),
        [
            "Dark Chocolate 100 g",
            "Greek Yogurt 500 g",
            "Whole Milk 1 l"
        ]
    );
    let milk = &all["products"][2];
    assert_eq!(
        (
            milk["unit_price_minor"].as_i64(),
            milk["available"].as_i64()
        ),
        (Some(129), Some(12)),
        "{milk}"
    );

    // A typo and a half word find the product; sold-out bananas are not offered.
    let typo = until(&api, &format!("{here}&q=choclate"), "the typo found", |b| {
        names(b).first().map(String::as_str) == Some("Dark Chocolate 100 g")
    })
    .await;
    assert_eq!(typo["deliverable"], true);
    let prefix = until(&api, &format!("{here}&q=yog"), "the prefix found", |b| {
        !names(b).is_empty()
    })
    .await;
    assert_eq!(names(&prefix), ["Greek Yogurt 500 g"]);
    let (code, bananas) = storefront(&api, &format!("{here}&q=banana")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(names(&bananas).is_empty(), "{bananas}");

    // By category.
    let (_, dairy) = storefront(&api, &format!("{here}&category=dairy")).await;
    assert_eq!(names(&dairy), ["Greek Yogurt 500 g", "Whole Milk 1 l"]);

    // A catalog change reaches the search without a restart.
    product(&api, "milk", "Oat Drink 1 l", "dairy", 149).await;
    until(
        &api,
        &format!("{here}&q=oat"),
        "the renamed product found",
        |b| names(b) == ["Oat Drink 1 l"],
    )
    .await;

    // An address outside every area is told so before any basket.
    let (code, far) = storefront(&api, &format!("lat={}&lon={}", OUTSIDE.0, OUTSIDE.1)).await;
    assert_eq!(code, StatusCode::OK, "{far}");
    assert_eq!(
        (far["deliverable"].as_bool(), far["reason"].as_str()),
        (Some(false), Some("outside_areas")),
        "{far}"
    );
    assert_eq!(far["products"], json!([]));

    // The map the app places the door on: each store's name, position and area, public, and
    // nothing of the profile that is HQ's.
    let (code, areas) = api.call(Method::GET, "/api/v1/areas", "", None).await;
    assert_eq!(code, StatusCode::OK, "{areas}");
    assert_eq!(
        areas,
        json!({"stores": [{"id": "s1", "name": "Berlin", "lat": 52.5, "lon": 13.4,
                           "service_area": area(5)}]})
    );

    // Bad input: a clear 400, never a panic.
    for bad in [
        "lat=abc&lon=1".to_owned(),
        "lon=13.4".to_owned(),
        "lat=95&lon=13.4".to_owned(),
        format!("{here}&q={}", "word ".repeat(30).trim().replace(' ', "%20")),
        format!("{here}&surprise=1"),
    ] {
        let (code, body) = storefront(&api, &bad).await;
        assert!(
            code == StatusCode::BAD_REQUEST || code == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {code} {body}"
        );
    }
    stop.cancel();
    shutdown.cancel();
    running.wait().await.unwrap();
}
