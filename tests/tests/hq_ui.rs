//! The HQ dashboard in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/browser/hq.test.mjs`, run with Node's test runner) against a real cloud and two real
//! store daemons on port 0, each synced to the cloud, with overlapping service areas in one city
//! and both stocked, and HQ users of every role (admin, operator, viewer).
//!
//! This file sets the stage and lends the browser test its hands: a small control server
//! ([`control`]) through which the test places orders as a customer (the cloud routes them) and
//! works an order at its store through that store's staff API (scan every line, pack at the
//! expected weight, put it on the shelf). Everything the test asserts about the dashboard, it
//! asserts through the screen.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use flashkart_cloud::CloudConfig;
use flashkart_edge::Config;
use flashkart_edge::config::DevicesConfig;
use flashkart_edge::config::RidersSection;
use flashkart_hw::gs1::check::with_mod10;
use flashkart_hw::printer::PrinterLanguage;
use flashkart_hw::printer::status::PrinterStatus;
use flashkart_hw_sim::printer::PrinterSim;
use flashkart_sync::client::ClientConfig;
use flashkart_tests::browser::run_browser_tests;
use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use flashkart_tests::{call_api, enrolment_code_when_ready};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "hq-ui-admin";
const MANAGER_PIN: &str = "246810";

/// A store: id, name, position (lat, lon), service area (min lon, min lat, max lon, max lat).
struct StoreDef {
    id: &'static str,
    name: &'static str,
    lat: f64,
    lon: f64,
    area: (f64, f64, f64, f64),
}

/// Two stores in Berlin whose areas overlap around [`ADDRESS`].
const STORES: [StoreDef; 2] = [
    StoreDef {
        id: "store-a",
        name: "Berlin Mitte",
        lat: 52.514,
        lon: 13.392,
        area: (13.33, 52.49, 13.45, 52.56),
    },
    StoreDef {
        id: "store-b",
        name: "Kreuzberg",
        lat: 52.490,
        lon: 13.445,
        area: (13.38, 52.46, 13.50, 52.52),
    },
];

/// An address both stores serve, about 0.5 km from the first and 4 km from the second, so
/// routing prefers the first unless it is paused: (lat, lon).
const ADDRESS: (f64, f64) = (52.510, 13.398);

/// The catalog: id, name, GTIN body (check digit added), unit weight in grams.
const PRODUCTS: &[(&str, &str, &str, i64)] = &[
    ("p-milk", "Whole Milk 1L", "400638133393", 1030),
    ("p-bread", "Sourdough Loaf", "871000010001", 800),
    ("p-yogurt", "Greek Yogurt 500g", "871000010002", 520),
    ("p-juice", "Orange Juice 1L", "871000010003", 1080),
];

/// The roster: id, name, home store. The first one's home store runs the riders' service, so
/// HQ can issue it an enrolment code.
const RIDERS: &[(&str, &str, &str)] = &[("r-rita", "Rita", "store-a"), ("r-ben", "Ben", "store-b")];

/// HQ users: role, username, name, password.
const USERS: &[(&str, &str, &str, &str)] = &[
    ("admin", "ada", "Ada Admin", "ada-password-0451"),
    ("operator", "oli", "Oli Operator", "oli-password-2718"),
    ("viewer", "vic", "Vic Viewer", "vic-password-3141"),
];

fn gtin(body: &str) -> String {
    with_mod10(body).expect("GTIN digits")
}

/// A JSON client for one base URL.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A call that must succeed (setting the stage).
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, token, body).await {
            Ok(body) => body,
            Err(message) => panic!("{message}"),
        }
    }

    /// A call whose failure is the control server's answer (the browser test reports it).
    async fn try_call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let (status, body) = call_api(&self.http, method, &url, token, body).await;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{path}: {status} {body}"))
        }
    }
}

/// One store daemon as the control server reaches it.
struct StoreStage {
    api: Client,
    manager: String,
}

/// What the control server reaches.
struct Stage {
    /// The second store's label printer (over a pty), whose paper the test takes out.
    printer: PrinterSim,
    cloud: Client,
    customer: String,
    stores: HashMap<&'static str, StoreStage>,
    /// product id -> GTIN a picker scans
    gtins: HashMap<&'static str, String>,
}

type Answer = Result<Json<Value>, (StatusCode, String)>;

fn failed(message: String) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, message)
}

impl Stage {
    /// Places an order at the cloud as the customer; answers once its store has queued it.
    async fn place(&self, lat: f64, lon: f64, lines: Value) -> Result<Value, String> {
        let response = self
            .cloud
            .http
            .post(format!("{}/api/v1/orders", self.cloud.base))
            .bearer_auth(&self.customer)
            .header("idempotency-key", uuid::Uuid::now_v7().to_string())
            .json(&json!({
                "address": {"text": "Oranienstraße 1, Berlin", "lat": lat, "lon": lon},
                "lines": lines,
                "payment": {"method": "cash"},
            }))
            .send()
            .await
            .map_err(|e| format!("placing an order: {e}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("order reply: {e}"))?;
        if !status.is_success() {
            return Err(format!("placing an order: {status} {body}"));
        }
        let order_id = body["order_id"].as_str().unwrap_or_default().to_owned();
        let store_id = body["store_id"].as_str().unwrap_or_default().to_owned();
        let store = self
            .stores
            .get(store_id.as_str())
            .ok_or_else(|| format!("the order went to an unknown store: {body}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let queues = store
                .api
                .try_call(Method::GET, "/api/v1/queues", &store.manager, None)
                .await?;
            if queues["new"]
                .as_array()
                .is_some_and(|q| q.iter().any(|e| e["order_id"] == order_id.as_str()))
            {
                return Ok(json!({"order_id": order_id, "store_id": store_id}));
            }
            if Instant::now() > deadline {
                return Err(format!("order {order_id} never reached {store_id}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Works an order at its store: `pick` scans every line's GTIN, `pack` packs at the
    /// expected weight, `ready` puts it on the pickup shelf.
    async fn work(&self, order_id: &str, step: &str) -> Result<Value, String> {
        let order = self
            .cloud
            .try_call(
                Method::GET,
                &format!("/admin/v1/orders/{order_id}"),
                ADMIN,
                None,
            )
            .await?;
        let store_id = order["order"]["store_id"].as_str().unwrap_or_default();
        let store = self
            .stores
            .get(store_id)
            .ok_or_else(|| format!("order {order_id} is at an unknown store: {order}"))?;
        let (api, token) = (&store.api, store.manager.as_str());
        let reply = match step {
            "pick" => {
                let stops = api
                    .try_call(
                        Method::GET,
                        &format!("/api/v1/orders/{order_id}/pick-list"),
                        token,
                        None,
                    )
                    .await?;
                let mut last = Value::Null;
                for stop in stops.as_array().into_iter().flatten() {
                    let product = stop["product_id"].as_str().unwrap_or_default();
                    let code = self
                        .gtins
                        .get(product)
                        .ok_or_else(|| format!("no GTIN for {product}"))?;
                    for _ in 0..stop["qty"].as_i64().unwrap_or(0) {
                        last = api
                            .try_call(
                                Method::POST,
                                &format!("/api/v1/orders/{order_id}/scan"),
                                token,
                                Some(json!({"code": code, "line_no": stop["line_no"]})),
                            )
                            .await?;
                    }
                }
                last
            }
            "pack" => {
                let detail = api
                    .try_call(
                        Method::GET,
                        &format!("/api/v1/orders/{order_id}"),
                        token,
                        None,
                    )
                    .await?;
                let expected: i64 = detail["lines"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l["picked_weight_g"].as_i64())
                    .sum();
                api.try_call(
                    Method::POST,
                    &format!("/api/v1/orders/{order_id}/pack"),
                    token,
                    Some(json!({"bag_weight_g": expected})),
                )
                .await?
            }
            "ready" => {
                api.try_call(
                    Method::POST,
                    &format!("/api/v1/orders/{order_id}/ready"),
                    token,
                    Some(json!({})),
                )
                .await?
            }
            other => return Err(format!("no step {other}: pick, pack or ready")),
        };
        Ok(json!({"order_id": order_id, "store_id": store_id, "step": step, "reply": reply}))
    }
}

/// The browser test's hands.
fn control(stage: Arc<Stage>) -> Router {
    async fn order(State(stage): State<Arc<Stage>>, Json(body): Json<Value>) -> Answer {
        let lat = body["lat"].as_f64().unwrap_or(ADDRESS.0);
        let lon = body["lon"].as_f64().unwrap_or(ADDRESS.1);
        stage
            .place(lat, lon, body["lines"].clone())
            .await
            .map(Json)
            .map_err(failed)
    }
    async fn work(State(stage): State<Arc<Stage>>, Json(body): Json<Value>) -> Answer {
        let order_id = body["order_id"].as_str().unwrap_or_default();
        let step = body["step"].as_str().unwrap_or_default();
        stage.work(order_id, step).await.map(Json).map_err(failed)
    }
    async fn printer(State(stage): State<Arc<Stage>>, Json(body): Json<Value>) -> Json<Value> {
        let paper_out = body["paper_out"].as_bool().unwrap_or(false);
        stage.printer.set_status(PrinterStatus {
            paper_out,
            ..PrinterStatus::default()
        });
        Json(json!({"paper_out": paper_out}))
    }
    Router::new()
        .route("/orders", post(order))
        .route("/work", post(work))
        .route("/printer", post(printer))
        .with_state(stage)
}

/// zbarimg, which the page test reads the enrolment QR code with.
fn require_zbarimg() {
    assert!(
        Path::new("/usr/bin/zbarimg").exists(),
        "the HQ browser test reads the QR code with zbarimg: run scripts/install-test-deps"
    );
}

/// The second store's one device: its label printer, polled twice a second.
fn printer_config(dev: &Path) -> DevicesConfig {
    let text = format!(
        r#"
label_printer = "printer-1"
backoff_initial_ms = 20
backoff_max_ms = 200
printer_poll_ms = 500

[[device]]
id = "printer-1"
location = {{ path = "{dev}/printer-1" }}
kind = {{ type = "printer", language = "zpl", status_timeout_ms = 500, max_attempts = 2, retry_delay_ms = 100 }}
"#,
        dev = dev.display()
    );
    toml::from_str(&text).expect("devices config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_run_the_city_from_the_hq_dashboard_in_a_real_browser() {
    require_zbarimg();
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();

    // The cloud: both stores, their profiles, the catalog, the roster, a customer, HQ users.
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
    let mut tokens = HashMap::new();
    for store in &STORES {
        tokens.insert(store.id, hq.register_store(store.id).await);
        let profile = StoreProfile::new(store.name)
            .at(store.lat, store.lon)
            .area(store.area)
            .radius_m(20000.0)
            .capacity(50);
        hq.put_store_profile(store.id, &profile).await;
    }
    for (id, name, gtin_body, weight) in PRODUCTS {
        hq.put_product(
            id,
            json!({"name": name, "price_minor": 199, "unit_weight_g": weight,
                    "category_id": "grocery", "gtins": [{"gtin": gtin(gtin_body)}]}),
        )
        .await;
    }
    for (id, name, home) in RIDERS {
        hq.call(
            Method::PUT,
            &format!("/admin/v1/riders/{id}"),
            Some(json!({"home_store_id": home, "name": name})),
        )
        .await;
    }
    let customer = hq.create_customer("Ada").await;
    let mut users = serde_json::Map::new();
    for (role, username, name, password) in USERS {
        hq.call(
            Method::PUT,
            &format!("/admin/v1/hq-users/{username}"),
            Some(json!({"name": name, "role": role, "password": password, "active": true})),
        )
        .await;
        users.insert(
            (*role).into(),
            json!({"username": username, "name": name, "role": role, "password": password}),
        );
    }

    // The two stores, each synced to the cloud; the first runs the riders' service (so HQ can
    // issue its riders enrolment codes: they pin its CA).
    // The second store reports its label printer's health to HQ.
    let dev = dir.path().join("dev");
    std::fs::create_dir_all(&dev).expect("device dir");
    let printer = PrinterSim::spawn(
        &dev.join("printer-1"),
        PrinterLanguage::Zpl,
        shutdown.clone(),
    )
    .expect("printer");
    let mut daemons = Vec::new();
    let mut stage_stores = HashMap::new();
    for (i, store) in STORES.iter().enumerate() {
        let mut sync = ClientConfig::new(cloud_api.base.clone(), &tokens[store.id]);
        sync.long_poll_ms = 1_000;
        sync.local_poll_ms = 20;
        sync.backoff_initial_ms = 50;
        sync.backoff_max_ms = 500;
        let riders = (i == 0).then(|| RidersSection {
            tls_listen: "127.0.0.1:0".parse().expect("listen"),
            enrol_listen: "127.0.0.1:0".parse().expect("listen"),
            ..RidersSection::default()
        });
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("listen"),
            data_dir: Some(dir.path().join(store.id)),
            extension_dir: Some(dir.path().join("ext")),
            store_id: store.id.into(),
            manager_pin: Some(MANAGER_PIN.into()),
            shutdown_grace_secs: 2,
            riders,
            sync: Some(sync),
            devices: if i == 1 {
                printer_config(&dev)
            } else {
                DevicesConfig::default()
            },
            ..Config::default()
        };
        let edge = flashkart_edge::start(config, shutdown.clone())
            .await
            .expect("store daemon starts");
        let api = Client {
            http: http.clone(),
            base: format!("http://{}", edge.local_addr),
        };
        let manager = api
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
        daemons.push(edge);
        stage_stores.insert(store.id, StoreStage { api, manager });
    }

    // The catalog arrives by sync; each store slots and stocks it.
    for store in &STORES {
        let StoreStage { api, manager } = &stage_stores[store.id];
        let deadline = Instant::now() + Duration::from_secs(30);
        while api
            .call(Method::GET, "/api/v1/products", manager, None)
            .await
            .as_array()
            .map_or(0, Vec::len)
            < PRODUCTS.len()
        {
            assert!(
                Instant::now() < deadline,
                "the catalog never reached {}",
                store.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (n, (id, _, gtin_body, _)) in PRODUCTS.iter().enumerate() {
            let bin = format!("A-{:02}", n + 1);
            api.call(
                Method::PUT,
                &format!("/api/v1/bins/{bin}"),
                manager,
                Some(
                    json!({"aisle": "A", "bay": format!("{:02}", n + 1), "shelf": "1",
                            "pick_seq": (n + 1) * 10}),
                ),
            )
            .await;
            api.call(
                Method::PUT,
                &format!("/api/v1/products/{id}/bins/{bin}"),
                manager,
                None,
            )
            .await;
            api.call(
                Method::POST,
                "/api/v1/stock/receive",
                manager,
                Some(json!({"gtin": gtin(gtin_body), "qty": 50})),
            )
            .await;
        }
    }
    // Routing reads the stock from the read model: wait until both stores have everything.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (id, _, _, _) in PRODUCTS {
        loop {
            let stock = hq
                .call(Method::GET, &format!("/admin/v1/stock/{id}"), None)
                .await;
            if STORES.iter().all(|s| stock[s.id].as_i64().unwrap_or(0) > 0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the stock of {id} never reached the cloud: {stock}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // An enrolment code can be issued once the first store's riders' CA has synced.
    enrolment_code_when_ready(
        &http,
        &cloud_api.base,
        ADMIN,
        RIDERS[0].0,
        Duration::from_secs(30),
    )
    .await;

    let stage = Arc::new(Stage {
        printer,
        cloud: cloud_api.clone(),
        customer,
        stores: stage_stores,
        gtins: PRODUCTS
            .iter()
            .map(|(id, _, body, _)| (*id, gtin(body)))
            .collect(),
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("control listener");
    let control_addr = listener.local_addr().expect("control address");
    let control_task = tokio::spawn(
        axum::serve(listener, control(stage.clone()))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );

    let fixture = json!({
        "users": users,
        "stores": STORES.iter().map(|s| json!({"id": s.id, "name": s.name})).collect::<Vec<_>>(),
        "address": {"lat": ADDRESS.0, "lon": ADDRESS.1},
        "lines": [{"product_id": "p-milk", "qty": 1}, {"product_id": "p-bread", "qty": 1}],
        "rider": {"id": RIDERS[0].0, "name": RIDERS[0].1},
        "product": {"id": PRODUCTS[3].0, "name": PRODUCTS[3].1},
    });
    run_browser_tests(
        "hq.test.mjs",
        &[
            ("CLOUD_URL", cloud_api.base.clone()),
            ("CONTROL_URL", format!("http://{control_addr}")),
            ("FIXTURE", fixture.to_string()),
        ],
        Duration::from_secs(240),
    )
    .await;

    shutdown.cancel();
    let _ = control_task.await;
    for daemon in daemons {
        daemon.wait().await.expect("store daemon stops");
    }
    cloud.wait().await.expect("cloud stops");
}
