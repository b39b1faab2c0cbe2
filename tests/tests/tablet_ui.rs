//! The staff tablet app in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/browser/tablet.test.mjs`, run with Node's test runner) against a real store daemon
//! on port 0, synced with a real cloud through a relay that can cut the link, with a scanner,
//! a scale and a label printer simulated over ptys (real serial bytes).
//!
//! This file sets the stage and lends the browser test its hands: a small control server
//! ([`control`]) through which the test scans with the serial scanner, puts weight on the
//! scale, reads what the printer printed, cuts and restores the cloud link, and places
//! orders at the cloud. Everything the test asserts, it asserts through the screen.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use flashkart_cloud::CloudConfig;
use flashkart_edge::Config;
use flashkart_edge::config::DevicesConfig;
use flashkart_hw::gs1::check::with_mod10;
use flashkart_hw::printer::PrinterLanguage;
use flashkart_hw::scale::ScaleProtocol;
use flashkart_hw_sim::printer::PrinterSim;
use flashkart_hw_sim::scale::ScaleSim;
use flashkart_hw_sim::scanner::ScannerSim;
use flashkart_sync::client::ClientConfig;
use flashkart_tests::browser::run_browser_tests;
use flashkart_tests::call_api;
use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use flashkart_tests::relay::Relay;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "tablet-admin";
const STORE: &str = "store-1";
const MANAGER_PIN: &str = "246810";

/// The catalog: id, name, GTIN body (check digit added), unit weight, bin, walk position.
const PRODUCTS: &[(&str, &str, &str, i64, &str, i64)] = &[
    ("p-milk", "Whole Milk 1L", "400638133393", 1030, "A-01", 10),
    ("p-bread", "Sourdough Loaf", "871000010001", 800, "A-02", 20),
    (
        "p-yogurt",
        "Greek Yogurt 500g",
        "871000010002",
        520,
        "B-01",
        30,
    ),
    ("p-oat", "Oat Milk 1L", "500011263792", 1050, "B-02", 40),
    (
        "p-juice",
        "Orange Juice 1L",
        "871000010003",
        1080,
        "C-01",
        50,
    ),
];
/// The case of six milks that goods in receives by its GS1-128 label.
const MILK_CASE: &str = "1400638133393";

fn gtin(body: &str) -> String {
    with_mod10(body).expect("GTIN digits")
}

fn devices(dev: &Path) -> DevicesConfig {
    let text = format!(
        r#"
label_printer = "printer-1"
pack_scale = "scale-1"
scale_timeout_ms = 3000
backoff_initial_ms = 20
backoff_max_ms = 200
printer_poll_ms = 500

[[device]]
id = "scanner-1"
location = {{ path = "{dev}/scanner-1" }}
kind = {{ type = "scanner" }}

[[device]]
id = "scale-1"
location = {{ path = "{dev}/scale-1" }}
kind = {{ type = "scale", protocol = "toledo8217", poll_interval_ms = 200 }}

[[device]]
id = "printer-1"
location = {{ path = "{dev}/printer-1" }}
kind = {{ type = "printer", language = "zpl", status_timeout_ms = 500, max_attempts = 2, retry_delay_ms = 100 }}
"#,
        dev = dev.display()
    );
    toml::from_str(&text).expect("devices config")
}

/// A JSON client for one base URL.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let (status, body) = call_api(&self.http, method, &url, token, body).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }
}

/// What the control server reaches.
struct Stage {
    scanner: ScannerSim,
    scale: ScaleSim,
    printer: PrinterSim,
    relay: Relay,
    cloud: Client,
    edge: Client,
    customer: String,
    manager: String,
}

impl Stage {
    /// Places an order at the cloud and returns its id once the store has queued it.
    async fn place(&self, lines: Value) -> String {
        let response = self
            .cloud
            .http
            .post(format!("{}/api/v1/orders", self.cloud.base))
            .bearer_auth(&self.customer)
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .json(&json!({
                "address": {"text": "Torstraße 1, Berlin", "lat": 52.52, "lon": 13.40},
                "lines": lines,
                "payment": {"method": "cash"},
            }))
            .send()
            .await
            .expect("placing an order");
        let status = response.status();
        let body: Value = response.json().await.expect("order reply");
        assert!(status.is_success(), "placing an order: {status} {body}");
        let order_id = body["order_id"].as_str().expect("order id").to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let queues = self
                .edge
                .call(Method::GET, "/api/v1/queues", &self.manager, None)
                .await;
            if queues["new"]
                .as_array()
                .is_some_and(|q| q.iter().any(|e| e["order_id"] == order_id.as_str()))
            {
                return order_id;
            }
            assert!(
                Instant::now() < deadline,
                "order {order_id} never reached the store"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The browser test's hands.
fn control(stage: Arc<Stage>) -> Router {
    async fn scan(State(stage): State<Arc<Stage>>, Json(body): Json<Value>) -> Json<Value> {
        let code = body["code"].as_str().unwrap_or_default();
        stage.scanner.scan(code).await.expect("serial scan");
        Json(json!({"scanned": code}))
    }
    async fn scale(State(stage): State<Arc<Stage>>, Json(body): Json<Value>) -> Json<Value> {
        let grams = body["grams"].as_i64().unwrap_or(0);
        let stable = body["stable"].as_bool().unwrap_or(true);
        stage.scale.update(|s| {
            s.milligrams = grams * 1000;
            s.stable = stable;
        });
        Json(json!({"grams": grams, "stable": stable}))
    }
    async fn cloud(State(stage): State<Arc<Stage>>, Json(body): Json<Value>) -> Json<Value> {
        let up = body["up"].as_bool().unwrap_or(true);
        if up {
            stage.relay.up().await;
        } else {
            stage.relay.down().await;
        }
        Json(json!({"up": up}))
    }
    async fn printer(State(stage): State<Arc<Stage>>) -> Json<Value> {
        let received = stage.printer.received();
        Json(json!({
            "labels": received.labels.len(),
            "last": received.labels.last(),
        }))
    }
    async fn order(State(stage): State<Arc<Stage>>, Json(body): Json<Value>) -> Json<Value> {
        let order_id = stage.place(body["lines"].clone()).await;
        Json(json!({"order_id": order_id}))
    }
    Router::new()
        .route("/scan", post(scan))
        .route("/scale", post(scale))
        .route("/cloud", post(cloud))
        .route("/printer", get(printer))
        .route("/orders", post(order))
        .with_state(stage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_work_an_order_from_the_tablet_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();

    // The cloud, with the store, its catalog and a customer.
    let mut cloud_config = CloudConfig::ephemeral(dir.path().join("cloud"));
    cloud_config.admin_token = Some(ADMIN.into());
    cloud_config.extension_dir = Some(dir.path().join("ext"));
    let cloud = flashkart_cloud::start(cloud_config, shutdown.clone())
        .await
        .expect("cloud starts");
    let http = reqwest::Client::new();
    let cloud_api = Client {
        http: http.clone(),
        base: format!("http://{}", cloud.addr),
    };
    let hq = HqAdmin::new(&http, &cloud_api.base, ADMIN);
    let store_token = hq.register_store(STORE).await;
    hq.put_store_profile(STORE, &StoreProfile::new("Berlin Mitte").at(52.52, 13.40))
        .await;
    for (id, name, gtin_body, weight, _, _) in PRODUCTS {
        let mut gtins = vec![json!({"gtin": gtin(gtin_body)})];
        if *id == "p-milk" {
            gtins.push(json!({"gtin": gtin(MILK_CASE), "pack_qty": 6}));
        }
        hq.put_product(
            id,
            json!({"name": name, "price_minor": 199, "unit_weight_g": weight,
                    "category_id": "grocery", "gtins": gtins}),
        )
        .await;
    }
    let customer = hq.create_customer("Ada").await;

    // The store's devices over ptys, and the store synced through the relay.
    let dev = dir.path().join("dev");
    std::fs::create_dir_all(&dev).expect("device dir");
    let scanner = ScannerSim::spawn(&dev.join("scanner-1"), shutdown.clone()).expect("scanner");
    let scale = ScaleSim::spawn(
        &dev.join("scale-1"),
        ScaleProtocol::Toledo8217,
        shutdown.clone(),
    )
    .expect("scale");
    let printer = PrinterSim::spawn(
        &dev.join("printer-1"),
        PrinterLanguage::Zpl,
        shutdown.clone(),
    )
    .expect("printer");
    let relay = Relay::start(cloud.addr).await;
    let mut sync = ClientConfig::new(format!("http://{}", relay.addr), &store_token);
    sync.long_poll_ms = 1_000;
    sync.local_poll_ms = 20;
    sync.backoff_initial_ms = 50;
    sync.backoff_max_ms = 500;
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("listen"),
        data_dir: Some(dir.path().join("store")),
        extension_dir: Some(dir.path().join("ext")),
        store_id: STORE.into(),
        manager_pin: Some(MANAGER_PIN.into()),
        shutdown_grace_secs: 2,
        devices: devices(&dev),
        sync: Some(sync),
        ..Config::default()
    };
    let edge = flashkart_edge::start(config, shutdown.clone())
        .await
        .expect("store daemon starts");
    let edge_api = Client {
        http: http.clone(),
        base: format!("http://{}", edge.local_addr),
    };
    let manager = edge_api
        .call(
            Method::POST,
            "/api/v1/auth/sign-in",
            "",
            Some(json!({"staff_id": "manager", "pin": MANAGER_PIN})),
        )
        .await["token"]
        .as_str()
        .expect("manager token")
        .to_owned();

    // The catalog arrives by sync; the store slots it, stocks it and hires its staff.
    let deadline = Instant::now() + Duration::from_secs(30);
    while edge_api
        .call(Method::GET, "/api/v1/products", &manager, None)
        .await
        .as_array()
        .map_or(0, Vec::len)
        < PRODUCTS.len()
    {
        assert!(
            Instant::now() < deadline,
            "the catalog never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (id, _, gtin_body, _, bin, seq) in PRODUCTS {
        let (aisle, bay) = bin.split_once('-').expect("bin name");
        edge_api
            .call(
                Method::PUT,
                &format!("/api/v1/bins/{bin}"),
                &manager,
                Some(json!({"aisle": aisle, "bay": bay, "shelf": "1", "pick_seq": seq})),
            )
            .await;
        edge_api
            .call(
                Method::PUT,
                &format!("/api/v1/products/{id}/bins/{bin}"),
                &manager,
                None,
            )
            .await;
        edge_api
            .call(
                Method::POST,
                "/api/v1/stock/receive",
                &manager,
                Some(json!({"gtin": gtin(gtin_body), "qty": 20})),
            )
            .await;
    }
    let staff = json!({
        "picker": {"id": "pia", "name": "Pia", "role": "picker", "pin": "135791"},
        "lead": {"id": "lea", "name": "Lea", "role": "lead", "pin": "246802"},
        "manager": {"id": "manager", "name": "Store manager", "role": "manager", "pin": MANAGER_PIN},
    });
    for role in ["picker", "lead"] {
        edge_api
            .call(
                Method::POST,
                "/api/v1/staff",
                &manager,
                Some(staff[role].clone()),
            )
            .await;
    }

    let stage = Arc::new(Stage {
        scanner,
        scale,
        printer,
        relay,
        cloud: cloud_api,
        edge: edge_api.clone(),
        customer,
        manager,
    });
    let orders = vec![
        stage
            .place(json!([{"product_id": "p-milk", "qty": 2}, {"product_id": "p-bread", "qty": 1}]))
            .await,
        stage
            .place(
                json!([{"product_id": "p-milk", "qty": 1}, {"product_id": "p-yogurt", "qty": 1}]),
            )
            .await,
        stage
            .place(json!([{"product_id": "p-oat", "qty": 1}]))
            .await,
    ];
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("control listener");
    let control_addr = listener.local_addr().expect("control address");
    let control_task = tokio::spawn(
        axum::serve(listener, control(stage.clone()))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );

    let products: Vec<Value> = PRODUCTS
        .iter()
        .map(|(id, name, gtin_body, weight, bin, _)| {
            let gtin = gtin(gtin_body);
            json!({"id": id, "name": name, "gtin": gtin, "scan": format!("]E0{gtin}"),
                   "bin_id": bin, "unit_weight_g": weight})
        })
        .collect();
    let fixture = json!({
        "staff": staff,
        "orders": orders,
        "products": products,
        "wrong_scan": format!("]E0{}", gtin("871000010003")),
        "case_label": format!("]C101{}17271231\u{1d}10LOT-42", gtin(MILK_CASE)),
    });
    run_browser_tests(
        "tablet.test.mjs",
        &[
            ("EDGE_URL", edge_api.base.clone()),
            ("CONTROL_URL", format!("http://{control_addr}")),
            ("FIXTURE", fixture.to_string()),
        ],
        Duration::from_secs(360),
    )
    .await;

    shutdown.cancel();
    let _ = control_task.await;
    edge.wait().await.expect("store daemon stops");
    cloud.wait().await.expect("cloud stops");
}
