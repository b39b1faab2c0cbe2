//! What the catalog must refuse from an admin: a price that overflows (nothing is written),
//! and a barcode (GTIN) given to a second product.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::*;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_that_overflow_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let api = Api::new(running.addr);
    let customer = api.store_and_customer("s1").await;

    // At the API: out-of-range numbers are refused and nothing is written.
    for (what, body) in [
        (
            "price i64::MAX",
            json!({"name": "gold", "price_minor": i64::MAX}),
        ),
        (
            "price over the cap",
            json!({"name": "gold", "price_minor": 10_000_000_001_i64}),
        ),
        ("negative price", json!({"name": "gold", "price_minor": -1})),
        (
            "weight",
            json!({"name": "gold", "price_minor": 1, "unit": "kg", "unit_weight_g": i64::MAX}),
        ),
        (
            "pack size",
            json!({"name": "gold", "price_minor": 1, "pack_size": i64::MAX}),
        ),
        (
            "pack qty",
            json!({"name": "gold", "price_minor": 1, "gtins": [{"gtin": "96385074", "pack_qty": i64::MAX}]}),
        ),
    ] {
        let (status, answer) = api
            .admin(Method::PUT, "/admin/v1/products/gold", body)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {answer}");
        assert_eq!(answer["error"], "unprocessable", "{what}");
    }
    let products = running
        .cloud
        .catalog()
        .read(|conn| {
            conn.query_row("SELECT count(*) FROM products", [], |r| r.get::<_, i64>(0))
                .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    assert_eq!(products, 0);
    let (status, _) = api
        .admin(
            Method::PUT,
            "/admin/v1/coupons/ALL",
            json!({"amount_off_minor": i64::MAX}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // In the catalog anyway (written before the bound, or by another path): intake refuses to
    // price it instead of panicking or wrapping.
    running
        .cloud
        .write_catalog(|conn| {
            conn.execute_batch(&format!(
                "INSERT INTO products (id, name) VALUES ('gold', 'gold');
                 INSERT INTO prices (product_id, unit_price_minor) VALUES ('gold', {max});
                 INSERT INTO products (id, name, unit, unit_weight_g) VALUES ('ore', 'ore', 'kg', {max});
                 INSERT INTO prices (product_id, unit_price_minor) VALUES ('ore', 1000000);
                 INSERT INTO products (id, name) VALUES ('milk', 'milk');
                 INSERT INTO prices (product_id, unit_price_minor) VALUES ('milk', 129);",
                max = i64::MAX
            ))
            .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    for (key, body) in [
        ("k-1", order_of("gold", 1)),
        ("k-2", order_of("gold", 2)),
        ("k-3", order_of("ore", 1)),
    ] {
        let (status, answer) = api.order(&customer, key, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{key}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains("out of range"),
            "{answer}"
        );
    }
    // A quantity beyond the per-line bound is refused the same way.
    let (status, _) = api
        .order(&customer, "k-4", order_of("milk", i64::MAX))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // The cloud still serves, and only the sane order exists.
    let (status, answer) = api.order(&customer, "k-5", order_of("milk", 2)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["items_minor"], 258);
    let replica = running.cloud.replica("s1").await.unwrap();
    assert_eq!(count(replica.db(), "SELECT count(*) FROM orders").await, 1);
    assert_eq!(
        count(replica.db(), "SELECT count(*) FROM order_lines").await,
        1
    );
    // A retried refused key is still refused (nothing was remembered under it).
    let (status, _) = api.order(&customer, "k-1", order_of("gold", 1)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    drop(replica);
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gtin_belongs_to_one_product() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let api = Api::new(running.addr);
    let put = |id: &'static str, gtins: Value| {
        let api = &api;
        async move {
            api.admin(
                Method::PUT,
                &format!("/admin/v1/products/{id}"),
                json!({"name": id, "price_minor": 100, "gtins": gtins}),
            )
            .await
        }
    };
    assert_eq!(
        put("milk", json!([{"gtin": "4006381333931"}])).await.0,
        StatusCode::NO_CONTENT
    );
    // Another product claiming milk's barcode: 409 naming milk, and nothing of it written.
    let (status, body) = put(
        "bread",
        json!([{"gtin": "96385074"}, {"gtin": "4006381333931"}]),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "conflict");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("milk") && message.contains("4006381333931"),
        "{message}"
    );
    let catalog = |sql: &'static str| {
        running.cloud.catalog().read(move |conn| {
            conn.query_row(sql, [], |r| r.get::<_, String>(0))
                .map_err(flashkart_sync::Error::from)
        })
    };
    assert_eq!(
        catalog("SELECT group_concat(id) FROM products")
            .await
            .unwrap(),
        "milk"
    );
    assert_eq!(
        catalog("SELECT group_concat(gtin || '=' || product_id) FROM product_gtins")
            .await
            .unwrap(),
        "4006381333931=milk"
    );
    // The same GTIN twice in one body is refused; milk keeping its own GTIN is fine.
    let (status, _) = put(
        "bread",
        json!([{"gtin": "96385074"}, {"gtin": "96385074", "pack_qty": 6}]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        put("milk", json!([{"gtin": "4006381333931", "pack_qty": 1}]))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put("bread", json!([{"gtin": "96385074"}])).await.0,
        StatusCode::NO_CONTENT
    );
    shutdown.cancel();
    running.wait().await.unwrap();
}
