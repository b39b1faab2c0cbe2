//! Shared helpers of the edge's integration tests: a real daemon on port 0, a JSON client, a
//! live event stream reader, and the demo catalog.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use flashkart_edge::{Config, Running};
use flashkart_hw::gs1::check::with_mod10;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const MILK: &str = "p-milk";
pub const OAT: &str = "p-oat";
pub const BREAD: &str = "p-bread";
pub const CHEESE: &str = "p-cheese";
pub const YOGURT: &str = "p-yogurt";

/// GTINs of the test catalog (valid check digits).
pub fn gtin(product: &str) -> String {
    let body = match product {
        MILK => "400638133393",
        OAT => "500011263792",
        BREAD => "871000010001",
        YOGURT => "871000010002",
        "milk-case" => "1400638133393",
        other => panic!("no GTIN for {other}"),
    };
    with_check_digit(body)
}

/// `body` and its GS1 check digit.
fn with_check_digit(body: &str) -> String {
    with_mod10(body).expect("digits")
}

/// A variable-measure label for the cheese (PLU 12345) weighing `grams`.
pub fn cheese_label(grams: u32) -> String {
    with_check_digit(&format!("2312345{grams:05}"))
}

pub fn config(dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.join("data")),
        extension_dir: Some(dir.join("ext")),
        manager_pin: Some("123456".into()),
        dev_endpoints: true,
        shutdown_grace_secs: 5,
        ..Config::default()
    }
}

/// A JSON client for one daemon.
#[derive(Clone, Debug)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// POST that must succeed; returns the body.
    pub async fn ok(&self, token: &str, path: &str, body: Value) -> Value {
        let (status, value) = self.post(token, path, body).await;
        assert!(status.is_success(), "POST {path}: {status} {value}");
        value
    }

    pub async fn sign_in(&self, staff_id: &str, pin: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/sign-in",
                None,
                Some(json!({ "staff_id": staff_id, "pin": pin })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// (on_hand, reserved, available) of a product.
    pub async fn level(&self, token: &str, product: &str) -> (i64, i64, i64) {
        let (status, body) = self.get(token, &format!("/api/v1/stock/{product}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let level = &body["level"];
        (
            level["on_hand"].as_i64().unwrap(),
            level["reserved"].as_i64().unwrap(),
            level["available"].as_i64().unwrap(),
        )
    }

    pub async fn events(&self, token: &str) -> Events {
        self.events_after(token, None).await
    }

    /// The event stream, resumed after `last_event_id` as a reconnecting browser asks.
    pub async fn events_after(&self, token: &str, last_event_id: Option<&str>) -> Events {
        let mut request = self
            .http
            .get(format!("{}/api/v1/events", self.base))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("event stream");
        assert_eq!(response.status(), StatusCode::OK);
        let mut events = Events {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        };
        let (name, _) = events.next().await;
        assert_eq!(name, "hello");
        events
    }
}

/// Tokens of the seeded staff.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub manager: String,
    pub lead: String,
    pub picker: String,
}

/// Seeds the catalog, bins, slots and staff of the test store.
pub async fn seed(api: &Api) -> Tokens {
    let manager = api.sign_in("manager", "123456").await;
    api.ok(
        &manager,
        "/api/v1/dev/catalog",
        json!({
            "categories": [
                {"id": "dairy", "name": "Dairy"},
                {"id": "bakery", "name": "Bakery"},
                {"id": "deli", "name": "Deli"}
            ],
            "products": [
                {"id": MILK, "name": "Whole Milk 1L", "category_id": "dairy", "unit_weight_g": 1030,
                 "price_minor": 119,
                 "gtins": [{"gtin": gtin(MILK)}, {"gtin": gtin("milk-case"), "pack_qty": 6}]},
                {"id": OAT, "name": "Oat Milk 1L", "category_id": "dairy", "unit_weight_g": 1050,
                 "price_minor": 229, "gtins": [{"gtin": gtin(OAT)}]},
                {"id": BREAD, "name": "Sourdough Loaf", "category_id": "bakery", "unit_weight_g": 800,
                 "price_minor": 349, "gtins": [{"gtin": gtin(BREAD)}]},
                {"id": YOGURT, "name": "Greek Yogurt 500g", "category_id": "dairy", "unit_weight_g": 520,
                 "price_minor": 199, "gtins": [{"gtin": gtin(YOGURT)}]},
                {"id": CHEESE, "name": "Comté by weight", "category_id": "deli", "unit": "kg",
                 "plu": "12345", "price_minor": 2490}
            ]
        }),
    )
    .await;
    api.ok(
        &manager,
        "/api/v1/staff",
        json!({"id": "lea", "name": "Lea", "role": "lead", "pin": "222222"}),
    )
    .await;
    api.ok(
        &manager,
        "/api/v1/staff",
        json!({"id": "pia", "name": "Pia", "role": "picker", "pin": "111111"}),
    )
    .await;
    let lead = api.sign_in("lea", "222222").await;
    let picker = api.sign_in("pia", "111111").await;
    for (bin, seq, product) in [
        ("C-01-1", 5, CHEESE),
        ("A-01-1", 10, MILK),
        ("A-02-1", 15, YOGURT),
        ("A-01-2", 20, OAT),
        ("B-02-1", 30, BREAD),
    ] {
        let (status, body) = api
            .put(
                &lead,
                &format!("/api/v1/bins/{bin}"),
                json!({"aisle": &bin[..1], "bay": &bin[2..4], "shelf": &bin[5..], "pick_seq": seq}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = api
            .put(
                &lead,
                &format!("/api/v1/products/{product}/bins/{bin}"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    Tokens {
        manager,
        lead,
        picker,
    }
}

/// A daemon running in this process.
#[derive(Debug)]
pub struct Daemon {
    pub api: Api,
    pub dir: tempfile::TempDir,
    /// The riders' broker's loopback listener, when `[riders]` configures one.
    pub riders_plain_addr: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
    running: Running,
}

impl Daemon {
    pub async fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap()).await
    }

    /// Starts a daemon on an existing data directory (a restart).
    pub async fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_with(dir, |_| {}).await
    }

    /// Starts a daemon with a changed configuration.
    pub async fn start_with(dir: tempfile::TempDir, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = config(dir.path());
        change(&mut config);
        let shutdown = CancellationToken::new();
        let running = flashkart_edge::start(config, shutdown.clone())
            .await
            .expect("daemon starts");
        Self {
            api: Api::new(running.local_addr),
            riders_plain_addr: running.riders_plain_addr,
            dir,
            shutdown,
            running,
        }
    }

    /// Stops the daemon cleanly; the data directory stays for inspection.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        self.running.wait().await.expect("clean shutdown");
        self.dir
    }
}

/// Opens a stopped daemon's database directly.
pub async fn open_db(dir: &Path) -> flashkart_sync::StoreDb {
    let mut config = flashkart_sync::StoreConfig::new(dir.join("data/store.db"));
    config.extension_dir = Some(dir.join("ext"));
    flashkart_sync::StoreDb::open(config, flashkart_sync::schema::store::MIGRATIONS)
        .await
        .expect("database opens")
}

pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// A live event stream reader.
pub struct Events {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// The next event: (name, data).
    pub async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() && name == "message" {
                    continue; // keep-alive comment
                }
                return (name, serde_json::from_str(&data).unwrap_or(Value::Null));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("an event within 10 s")
                .expect("stream open")
                .expect("stream chunk");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads events until one matches; returns it.
    pub async fn until(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let (_, data) = self.next().await;
                if matches(&data) {
                    return data;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {what} within 10 s"))
    }

    /// Waits for a stock event of `product` with these levels.
    pub async fn stock(&mut self, product: &str, on_hand: i64, reserved: i64) {
        self.until("stock event", |e| {
            e["type"] == "stock"
                && e["product_id"] == product
                && e["on_hand"] == on_hand
                && e["reserved"] == reserved
        })
        .await;
    }

    /// Waits for an order event.
    pub async fn order(&mut self, order: &str, status: &str, change: &str) {
        self.until("order event", |e| {
            e["type"] == "order"
                && e["order_id"] == order
                && e["status"] == status
                && e["change"] == change
        })
        .await;
    }
}
