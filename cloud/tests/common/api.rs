//! The cloud's HTTP API as an admin and a customer see it: calls with a token, a profiled
//! store with a Berlin service area, and orders (for the tests that check what the API must
//! refuse: `hardening.rs`, `catalog_limits.rs`, `store_registration.rs`).

use std::net::SocketAddr;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::ADMIN;

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn admin(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(method, path, ADMIN, Some(body)).await
    }

    pub async fn order(&self, customer: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/api/v1/orders", self.base))
            .bearer_auth(customer)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A registered, profiled store covering Berlin, and a customer; the customer's token.
    pub async fn store_and_customer(&self, store: &str) -> String {
        let (status, _) = self
            .admin(Method::POST, "/admin/v1/stores", json!({"id": store}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = self
            .admin(
                Method::PUT,
                &format!("/admin/v1/stores/{store}/profile"),
                profile(area(5)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, customer) = self
            .admin(
                Method::POST,
                "/admin/v1/customers",
                json!({"first_name": "Ada"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        customer["token"].as_str().unwrap().to_owned()
    }
}

/// A closed ring of `positions` positions around Berlin.
pub fn area(positions: usize) -> Value {
    let mut ring: Vec<[f64; 2]> = (0..positions - 1)
        .map(|i| {
            let angle = i as f64 / (positions - 1) as f64 * std::f64::consts::TAU;
            // Four decimals keep a position short, so big areas stay under the body limit.
            let round = |x: f64| (x * 1e4).round() / 1e4;
            [
                round(13.4 + 0.3 * angle.cos()),
                round(52.5 + 0.2 * angle.sin()),
            ]
        })
        .collect();
    ring.push(ring[0]);
    json!({"type": "Polygon", "coordinates": [ring]})
}

pub fn profile(service_area: Value) -> Value {
    json!({
        "name": "Berlin", "lat": 52.5, "lon": 13.4, "service_area": service_area,
        "max_radius_m": 50000.0, "hours": {"opens": "00:00", "closes": "00:00"},
        "capacity": 100, "sla_minutes": 30
    })
}

pub fn order_of(product: &str, qty: i64) -> Value {
    json!({
        "address": {"text": "Somewhere 1, Berlin", "lat": 52.5, "lon": 13.4},
        "lines": [{"product_id": product, "qty": qty}],
        "payment": {"method": "cash"}
    })
}
