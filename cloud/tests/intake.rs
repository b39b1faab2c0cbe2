//! Order intake over real HTTP against a cloud on a free port: idempotency (sequential and
//! concurrent), bad input refused with nothing written, routing by area, and a store's own
//! changes projected into the read model.

mod common;

use common::{ADMIN, count, rm_sql, start_cloud};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Two stores in Berlin: north of 52.50 and south of it, overlapping in a band around 52.50.
fn area(south: f64, north: f64) -> Value {
    json!({
        "type": "Polygon",
        "coordinates": [[[13.2, south], [13.6, south], [13.6, north], [13.2, north], [13.2, south]]]
    })
}

struct Hq {
    http: reqwest::Client,
    base: String,
}

impl Hq {
    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("admin request")
    }

    async fn set_up(&self) -> String {
        for (id, lat, south, north) in [
            ("north", 52.55, 52.48, 52.70),
            ("south", 52.45, 52.30, 52.52),
        ] {
            let registered = self
                .admin(reqwest::Method::POST, "/admin/v1/stores", json!({"id": id}))
                .await;
            assert_eq!(registered.status(), StatusCode::CREATED);
            let profile = self
                .admin(
                    reqwest::Method::PUT,
                    &format!("/admin/v1/stores/{id}/profile"),
                    json!({
                        "name": format!("Berlin {id}"), "lat": lat, "lon": 13.40,
                        "service_area": area(south, north), "max_radius_m": 20000.0,
                        "hours": {"opens": "00:00", "closes": "00:00"},
                        "capacity": 100, "sla_minutes": 30
                    }),
                )
                .await;
            assert_eq!(
                profile.status(),
                StatusCode::OK,
                "{:?}",
                profile.text().await
            );
        }
        // One GTIN names one product.
        for (id, price, gtin) in [("milk", 129, "4006381333931"), ("bread", 249, "96385074")] {
            let put = self
                .admin(
                    reqwest::Method::PUT,
                    &format!("/admin/v1/products/{id}"),
                    json!({"name": id, "price_minor": price, "gtins": [{"gtin": gtin}]}),
                )
                .await;
            assert_eq!(
                put.status(),
                StatusCode::NO_CONTENT,
                "{:?}",
                put.text().await
            );
        }
        let customer: Value = self
            .admin(
                reqwest::Method::POST,
                "/admin/v1/customers",
                json!({"first_name": "Ada"}),
            )
            .await
            .json()
            .await
            .expect("customer body");
        customer["token"].as_str().expect("token").to_owned()
    }
}

fn order(lat: f64, qty: i64) -> Value {
    json!({
        "address": {"text": "Somewhere 1, Berlin", "lat": lat, "lon": 13.40},
        "lines": [{"product_id": "milk", "qty": qty}, {"product_id": "bread", "qty": 1}],
        "payment": {"method": "cash"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_makes_one_order_even_concurrently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, shutdown) = start_cloud(dir.path()).await;
    let hq = Hq {
        http: reqwest::Client::new(),
        base: format!("http://{}", running.addr),
    };
    let token = hq.set_up().await;
    let post = |key: &'static str, body: Value| {
        let request = hq
            .http
            .post(format!("{}/api/v1/orders", hq.base))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&body);
        async move { request.send().await.expect("post order") }
    };

    let first = post("k-1", order(52.6, 2)).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("body");
    assert_eq!(first["store_id"], "north", "{first}");
    assert_eq!(first["items_minor"], 2 * 129 + 249);
    assert_eq!(
        first["total_minor"].as_i64(),
        Some(2 * 129 + 249 + first["delivery_fee_minor"].as_i64().expect("fee"))
    );
    let again = post("k-1", order(52.6, 2)).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("body");
    assert_eq!(again, first, "a replay answers exactly the first answer");

    // Eight at once with a new key: one order.
    let racing: Vec<_> = (0..8).map(|_| post("k-2", order(52.4, 1))).collect();
    let answers = futures_join_all(racing).await;
    let mut ids = std::collections::BTreeSet::new();
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::CREATED);
        let body: Value = answer.json().await.expect("body");
        assert_eq!(body["store_id"], "south");
        ids.insert(body["order_id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");

    // The same key with another order is refused.
    let reused = post("k-2", order(52.4, 3)).await;
    assert_eq!(reused.status(), StatusCode::CONFLICT);

    let north = running.cloud.replica("north").await.expect("replica");
    let south = running.cloud.replica("south").await.expect("replica");
    assert_eq!(count(north.db(), "SELECT count(*) FROM orders").await, 1);
    assert_eq!(count(south.db(), "SELECT count(*) FROM orders").await, 1);
    assert_eq!(
        count(south.db(), "SELECT count(*) FROM order_lines").await,
        2
    );

    // The customer sees status and timeline; another customer does not see the order.
    let id = first["order_id"].as_str().expect("id");
    let view: Value = hq
        .http
        .get(format!("{}/api/v1/orders/{id}", hq.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get order")
        .json()
        .await
        .expect("view");
    assert_eq!(view["order"]["status"], "ROUTED", "{view}");
    let statuses: Vec<&str> = view["order"]["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|t| t["status"].as_str())
        .collect();
    assert_eq!(statuses, ["PENDING", "CONFIRMED", "ROUTED"]);
    assert!(view["eta_minutes"].as_i64().is_some_and(|m| m <= 30));
    let stranger: Value = hq
        .admin(
            reqwest::Method::POST,
            "/admin/v1/customers",
            json!({"first_name": "Eve"}),
        )
        .await
        .json()
        .await
        .expect("customer");
    let hidden = hq
        .http
        .get(format!("{}/api/v1/orders/{id}", hq.base))
        .bearer_auth(stranger["token"].as_str().expect("token"))
        .send()
        .await
        .expect("get order");
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);

    shutdown.cancel();
    running.wait().await.expect("clean stop");
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: Vec<F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_orders_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, shutdown) = start_cloud(dir.path()).await;
    let hq = Hq {
        http: reqwest::Client::new(),
        base: format!("http://{}", running.addr),
    };
    let token = hq.set_up().await;
    let lines = |product: &str, qty: i64| json!([{"product_id": product, "qty": qty}]);
    let address = |lat: f64| json!({"text": "Street 1", "lat": lat, "lon": 13.40});
    let cases: Vec<(&str, Option<&str>, String, StatusCode)> = vec![
        (
            "unknown product",
            Some("b-1"),
            json!({"address": address(52.6), "lines": lines("caviar", 1), "payment": {"method": "cash"}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "outside every area",
            Some("b-2"),
            json!({"address": address(48.1), "lines": lines("milk", 1), "payment": {"method": "cash"}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "malformed JSON",
            Some("b-3"),
            "{\"address\": ".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "negative quantity",
            Some("b-4"),
            json!({"address": address(52.6), "lines": lines("milk", -2), "payment": {"method": "cash"}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "huge quantity",
            Some("b-5"),
            json!({"address": address(52.6), "lines": lines("milk", 1_000_000_000), "payment": {"method": "cash"}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "no lines",
            Some("b-6"),
            json!({"address": address(52.6), "lines": [], "payment": {"method": "cash"}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "missing idempotency key",
            None,
            json!({"address": address(52.6), "lines": lines("milk", 1), "payment": {"method": "cash"}}).to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            Some("b-7"),
            json!({"address": address(52.6), "lines": lines("milk", 1), "payment": {"method": "cash"}, "tip": 5}).to_string(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, key, body, expected) in cases {
        let mut request = hq
            .http
            .post(format!("{}/api/v1/orders", hq.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.expect("post");
        assert_eq!(response.status(), expected, "{what}");
        let error: Value = response.json().await.expect("JSON error body");
        assert!(
            error["error"].is_string() && error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {error}"
        );
    }
    let unauthenticated = hq
        .http
        .post(format!("{}/api/v1/orders", hq.base))
        .header("idempotency-key", "b-8")
        .json(&json!({"address": address(52.6), "lines": lines("milk", 1), "payment": {"method": "cash"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

    for store in ["north", "south"] {
        let replica = running.cloud.replica(store).await.expect("replica");
        assert_eq!(
            count(replica.db(), "SELECT count(*) FROM orders").await,
            0,
            "{store}"
        );
    }
    assert_eq!(
        rm_sql::count(&running.cloud, "SELECT count(*) FROM rm_orders").await,
        0
    );
    // A refused order does not use up its key: the corrected order goes through.
    let fixed = hq
        .http
        .post(format!("{}/api/v1/orders", hq.base))
        .bearer_auth(&token)
        .header("idempotency-key", "b-1")
        .json(&json!({"address": address(52.6), "lines": lines("milk", 1), "payment": {"method": "cash"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(fixed.status(), StatusCode::CREATED);

    shutdown.cancel();
    running.wait().await.expect("clean stop");
}
