//! HQ's admin HTTP API as the end-to-end tests set the cloud up through it: register a store,
//! give it a profile (where it is, what it serves, how much it takes), put products in the
//! catalog and create a customer.
//!
//! Each test used to carry its own copy of this set-up, the same JSON in each; here it is once,
//! typed where the tests differ (a store's name, position, area, radius and capacity) and fixed
//! where they do not (open around the clock, a 30-minute promise).

use reqwest::Method;
use serde_json::{Value, json};

/// A client of one cloud's admin API with HQ's bearer token. Every call is test set-up, so one
/// that fails panics with the status and the answer rather than returning an error.
#[derive(Clone, Debug)]
pub struct HqAdmin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl HqAdmin {
    /// The admin API of the cloud at `base` (`http://host:port`), called with `token`.
    pub fn new(http: &reqwest::Client, base: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            http: http.clone(),
            base: base.into(),
            token: token.into(),
        }
    }

    /// `method` on `path` (below the base URL) with an optional JSON body; the answer as JSON
    /// (one that is not JSON comes back as a string). Panics on anything but a 2xx, naming the
    /// call, the status and the answer's text.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: reading the answer: {e}"));
        assert!(status.is_success(), "{method} {url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    /// `POST /admin/v1/stores`: registers store `id`; its sync token.
    pub async fn register_store(&self, id: &str) -> String {
        let registered = self
            .call(Method::POST, "/admin/v1/stores", Some(json!({"id": id})))
            .await;
        token_in(&registered, "store")
    }

    /// `PUT /admin/v1/stores/{id}/profile`.
    pub async fn put_store_profile(&self, id: &str, profile: &StoreProfile) {
        self.call(
            Method::PUT,
            &format!("/admin/v1/stores/{id}/profile"),
            Some(profile.to_json()),
        )
        .await;
    }

    /// `PUT /admin/v1/products/{id}` with the product as the test writes it (name, price,
    /// GTINs, ...: the tests' catalogs differ in what they need).
    pub async fn put_product(&self, id: &str, product: Value) {
        self.call(
            Method::PUT,
            &format!("/admin/v1/products/{id}"),
            Some(product),
        )
        .await;
    }

    /// `POST /admin/v1/customers`: a customer called `first_name`; their token.
    pub async fn create_customer(&self, first_name: &str) -> String {
        let created = self
            .call(
                Method::POST,
                "/admin/v1/customers",
                Some(json!({"first_name": first_name})),
            )
            .await;
        token_in(&created, "customer")
    }
}

/// The `token` of an admin answer; panics naming whose it should have been.
fn token_in(answer: &Value, whose: &str) -> String {
    answer["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no {whose} token in {answer}"))
        .to_owned()
}

/// A store's profile as HQ sets it: by default in central Berlin (52.5, 13.4), serving a
/// rectangle over the city within 50 km, 100 orders at a time, open around the clock with a
/// 30-minute promise. A test changes what its scenario needs.
#[derive(Clone, Debug)]
pub struct StoreProfile {
    name: String,
    lat: f64,
    lon: f64,
    /// The service area's bounds: (west, south, east, north).
    area: (f64, f64, f64, f64),
    max_radius_m: f64,
    capacity: i64,
}

impl StoreProfile {
    /// A store called `name` with the Berlin defaults.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            lat: 52.5,
            lon: 13.4,
            area: (13.2, 52.3, 13.6, 52.7),
            max_radius_m: 50_000.0,
            capacity: 100,
        }
    }

    /// The store's position.
    pub fn at(mut self, lat: f64, lon: f64) -> Self {
        self.lat = lat;
        self.lon = lon;
        self
    }

    /// The service area, a rectangle: (west, south, east, north) in degrees.
    pub fn area(mut self, bounds: (f64, f64, f64, f64)) -> Self {
        self.area = bounds;
        self
    }

    /// How far from the store it delivers, in metres.
    pub fn radius_m(mut self, metres: f64) -> Self {
        self.max_radius_m = metres;
        self
    }

    /// How many orders the store takes at a time.
    pub fn capacity(mut self, orders: i64) -> Self {
        self.capacity = orders;
        self
    }

    fn to_json(&self) -> Value {
        let (w, s, e, n) = self.area;
        json!({
            "name": self.name, "lat": self.lat, "lon": self.lon,
            "service_area": {"type": "Polygon",
                             "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            "max_radius_m": self.max_radius_m, "hours": {"opens": "00:00", "closes": "00:00"},
            "capacity": self.capacity, "sla_minutes": 30
        })
    }
}
