//! What a client, with or without a credential, must not be able to do to the cloud: make it
//! buffer a body before it has authenticated, buffer more than a route needs, overflow a
//! price, give two products one barcode, take over a registered store by registering it again,
//! or hold connections without ever sending a request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use flashkart_cloud::config::TlsConfig;
use flashkart_sync::protocol;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Longest any single step may take before the test fails (nothing here waits on it).
const LIMIT: Duration = Duration::from_secs(10);

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
        }
    }

    async fn call(
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

    async fn admin(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(method, path, ADMIN, Some(body)).await
    }

    async fn order(&self, customer: &str, key: &str, body: Value) -> (StatusCode, Value) {
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
    async fn store_and_customer(&self, store: &str) -> String {
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
fn area(positions: usize) -> Value {
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

fn profile(service_area: Value) -> Value {
    json!({
        "name": "Berlin", "lat": 52.5, "lon": 13.4, "service_area": service_area,
        "max_radius_m": 50000.0, "hours": {"opens": "00:00", "closes": "00:00"},
        "capacity": 100, "sla_minutes": 30
    })
}

fn order_of(product: &str, qty: i64) -> Value {
    json!({
        "address": {"text": "Somewhere 1, Berlin", "lat": 52.5, "lon": 13.4},
        "lines": [{"product_id": product, "qty": qty}]
    })
}

/// Sends `head` and `body` on a new connection and reads one response: (status, body). The
/// rest of a declared body is never sent, so an answer proves the server did not wait for it.
async fn raw_request(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    tokio::time::timeout(LIMIT, read_response(&mut stream))
        .await
        .expect("an answer before the body was sent")
}

/// One HTTP/1.1 response with a Content-Length: (status, JSON body).
async fn read_response(stream: &mut TcpStream) -> (u16, Value) {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
            let status: u16 = head[9..12].parse().unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buffer.len() >= end + 4 + length {
                let body = &buffer[end + 4..end + 4 + length];
                return (status, serde_json::from_slice(body).unwrap_or(Value::Null));
            }
        }
        let n = stream.read(&mut chunk).await.expect("read the response");
        assert!(n > 0, "connection closed before a whole response");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn post_head(path: &str, token: Option<&str>, length: Option<usize>) -> String {
    let mut head =
        format!("POST {path} HTTP/1.1\r\nhost: cloud\r\ncontent-type: application/json\r\n");
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    match length {
        Some(length) => head.push_str(&format!("content-length: {length}\r\n")),
        None => head.push_str("transfer-encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_bodies_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let api = Api::new(running.addr);
    let customer = api.store_and_customer("s1").await;
    let store = running.cloud.register_store("s2").await.unwrap();
    const HUGE: usize = 60 << 20;

    // Without a credential: 401 while 59.99 MB of the declared body are still unsent.
    for path in [
        "/api/v1/orders",
        "/admin/v1/products/p1",
        "/admin/v1/stores",
        protocol::PUSH_PATH,
        protocol::HELLO_PATH,
        protocol::PULL_PATH,
    ] {
        for token in [None, Some("forged")] {
            let (status, body) =
                raw_request(running.addr, &post_head(path, token, Some(HUGE)), b"{").await;
            assert_eq!(status, 401, "{path} {token:?}: {body}");
            assert_eq!(body["error"], "unauthorized", "{path}");
        }
    }
    // The wrong kind of credential: refused as well, still unread.
    let (status, body) = raw_request(
        running.addr,
        &post_head("/admin/v1/products/p1", Some(&store), Some(HUGE)),
        b"{",
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // With a credential, a declared length over the route's limit: 413 before reading it.
    for (path, token) in [
        ("/api/v1/orders", customer.as_str()),
        ("/admin/v1/products/p1", ADMIN),
        ("/admin/v1/stores/s1/profile", ADMIN),
        (protocol::PUSH_PATH, store.as_str()),
        (protocol::PULL_PATH, store.as_str()),
    ] {
        let (status, body) = raw_request(
            running.addr,
            &post_head(path, Some(token), Some(HUGE)),
            b"{",
        )
        .await;
        assert_eq!(status, 413, "{path}: {body}");
        assert_eq!(body["error"], "too_large", "{path}");
        assert!(
            body["message"].as_str().unwrap().contains("at most"),
            "{body}"
        );
    }
    // Just over the order limit (32 KiB): refused too.
    let (status, _) = raw_request(
        running.addr,
        &post_head("/api/v1/orders", Some(&customer), Some((32 << 10) + 1)),
        b"{",
    )
    .await;
    assert_eq!(status, 413);

    // A chunked body (no declared length) is cut at the limit: the server answers 413 while
    // the client is still sending, having read no more than the limit and a read buffer.
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let head = post_head("/api/v1/orders", Some(&customer), None);
    let sending = async {
        writer.write_all(head.as_bytes()).await.unwrap();
        let frame = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
        // 4 MiB if the server kept reading; it stops after 32 KiB.
        for _ in 0..1024 {
            if writer.write_all(frame.as_bytes()).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    let answer = async {
        let mut buffer = Vec::new();
        let mut chunk = [0_u8; 4096];
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = reader.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed without an answer");
            buffer.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buffer).into_owned()
    };
    let response = tokio::time::timeout(LIMIT, async {
        tokio::select! {
            () = sending => unreachable!(),
            response = answer => response,
        }
    })
    .await
    .expect("an answer while the body is still coming");
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    drop(stream);

    // What fits is served as before, and nothing of the refused requests was written.
    let (status, _) = api
        .admin(
            Method::PUT,
            "/admin/v1/products/p1",
            json!({"name": "milk", "price_minor": 129}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.order(&customer, "k-1", order_of("p1", 1)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let replica = running.cloud.replica("s1").await.unwrap();
    assert_eq!(count(replica.db(), "SELECT count(*) FROM orders").await, 1);
    drop(replica);
    shutdown.cancel();
    running.wait().await.unwrap();
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_again_conflicts_and_rotation_keeps_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let api = Api::new(running.addr);
    let (status, first) = api
        .admin(Method::POST, "/admin/v1/stores", json!({"id": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let first = first["token"].as_str().unwrap().to_owned();

    let edge = open_edge(dir.path(), "s1").await;
    let hello = |token: String, site: Vec<u8>| {
        let http = api.http.clone();
        let url = format!("{}{}", api.base, protocol::HELLO_PATH);
        async move {
            let body = prost::Message::encode_to_vec(&flashkart_proto::sync::HelloRequest {
                edge_site_id: site,
                schema_version: 1,
            });
            http.post(url)
                .bearer_auth(token)
                .header("content-type", protocol::CONTENT_TYPE)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let site = edge.site_id().to_vec();
    assert_eq!(hello(first.clone(), site.clone()).await, StatusCode::OK);

    // Registering it again: 409, and the running edge's token still works.
    let (status, body) = api
        .admin(Method::POST, "/admin/v1/stores", json!({"id": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("/token"),
        "{body}"
    );
    assert_eq!(hello(first.clone(), site.clone()).await, StatusCode::OK);

    // Rotation: a store's credential cannot, unknown stores are 404, the admin gets a new
    // token; the old one stops working and the edge stays bound.
    let (status, _) = api
        .call(Method::POST, "/admin/v1/stores/s1/token", &first, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .call(Method::POST, "/admin/v1/stores/nope/token", ADMIN, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, rotated) = api
        .call(Method::POST, "/admin/v1/stores/s1/token", ADMIN, None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let second = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(
        hello(first.clone(), site.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(hello(second.clone(), site.clone()).await, StatusCode::OK);
    let other_site = vec![9_u8; 16];
    assert_eq!(
        hello(second.clone(), other_site.clone()).await,
        StatusCode::FORBIDDEN,
        "the binding survived the rotation"
    );

    // A replaced edge database: rotation that releases the binding lets the new one bind.
    let (status, released) = api
        .admin(
            Method::POST,
            "/admin/v1/stores/s1/token",
            json!({"release_edge_site": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let third = released["token"].as_str().unwrap().to_owned();
    assert_eq!(hello(third.clone(), other_site).await, StatusCode::OK);
    assert_eq!(hello(third, site).await, StatusCode::FORBIDDEN);
    let (status, _) = api
        .admin(
            Method::POST,
            "/admin/v1/stores/s1/token",
            json!({"release": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The in-process handle behaves the same.
    assert!(running.cloud.register_store("s1").await.is_err());
    edge.close().await.unwrap();
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_store_cli_refuses_an_existing_store_unless_rotating() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cloud.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nextension_dir = \"{}\"\n",
            dir.path().join("cloud").display(),
            dir.path().join("ext").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flashkart-cloud"))
            .arg("register-store")
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, first, stderr) = run(&["s1"]);
    assert!(ok && first.starts_with("fks_"), "{stderr}");
    let (ok, out, stderr) = run(&["s1"]);
    assert!(!ok, "registering twice must fail: {out}");
    assert!(stderr.contains("already registered"), "{stderr}");
    let (ok, _, stderr) = run(&["nope", "--rotate"]);
    assert!(!ok && stderr.contains("not registered"), "{stderr}");
    let (ok, _, stderr) = run(&["s1", "--release-edge-site"]);
    assert!(!ok, "--release-edge-site needs --rotate: {stderr}");
    let (ok, second, stderr) = run(&["s1", "--rotate"]);
    assert!(ok && second.starts_with("fks_"), "{stderr}");
    assert_ne!(first, second);

    // The running cloud sees the rotated token, not the first one.
    let mut cloud_config = cloud_config(dir.path());
    cloud_config.data_dir = dir.path().join("cloud");
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(cloud_config, shutdown.clone())
        .await
        .unwrap();
    let api = Api::new(running.addr);
    for (token, expected) in [
        (first, StatusCode::UNAUTHORIZED),
        (second, StatusCode::FORBIDDEN),
    ] {
        // A store's credential on the admin API: 403 when it is a valid store token.
        let (status, _) = api
            .call(Method::POST, "/admin/v1/customers", &token, None)
            .await;
        assert_eq!(status, expected);
    }
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let api = Api::new(running.addr);
    let customer = api.store_and_customer("s1").await;

    let (status, body) = api
        .admin(
            Method::PUT,
            "/admin/v1/stores/s1/profile",
            profile(area(5_001)),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("5000"), "{body}");
    let (status, body) = api
        .admin(
            Method::PUT,
            "/admin/v1/stores/s1/profile",
            profile(area(4_000)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a large but bounded area: {body}");

    let many_gtins: Vec<Value> = (0..33).map(|_| json!({"gtin": "96385074"})).collect();
    for (what, path, body) in [
        (
            "long name",
            "/admin/v1/products/p1",
            json!({"name": "n".repeat(201), "price_minor": 1}),
        ),
        (
            "control chars",
            "/admin/v1/products/p1",
            json!({"name": "a\u{0}b", "price_minor": 1}),
        ),
        (
            "long sku",
            "/admin/v1/products/p1",
            json!({"name": "n", "sku": "s".repeat(65), "price_minor": 1}),
        ),
        (
            "many GTINs",
            "/admin/v1/products/p1",
            json!({"name": "n", "price_minor": 1, "gtins": many_gtins}),
        ),
        (
            "long id",
            &format!("/admin/v1/products/{}", "p".repeat(65)),
            json!({"name": "n", "price_minor": 1}),
        ),
        (
            "coupon minimum",
            "/admin/v1/coupons/C",
            json!({"min_basket_minor": i64::MAX}),
        ),
        (
            "long coupon code",
            &format!("/admin/v1/coupons/{}", "C".repeat(33)),
            json!({}),
        ),
    ] {
        let (status, answer) = api.admin(Method::PUT, path, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {answer}");
    }
    let (status, _) = api
        .admin(
            Method::POST,
            "/admin/v1/customers",
            json!({"first_name": "x".repeat(101)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let mut long_product = order_of("p1", 1);
    long_product["lines"][0]["product_id"] = json!("p".repeat(65));
    let mut long_coupon = order_of("p1", 1);
    long_coupon["coupon"] = json!("C".repeat(33));
    let mut many_lines = order_of("p1", 1);
    many_lines["lines"] = (0..51)
        .map(|i| json!({"product_id": format!("p{i}"), "qty": 1}))
        .collect();
    let mut long_address = order_of("p1", 1);
    long_address["address"]["text"] = json!("a".repeat(501));
    for (what, body) in [
        ("long product id", long_product),
        ("long coupon", long_coupon),
        ("51 lines", many_lines),
        ("long address", long_address),
    ] {
        let (status, answer) = api.order(&customer, &what.replace(' ', "-"), body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {answer}");
    }
    let replica = running.cloud.replica("s1").await.unwrap();
    assert_eq!(count(replica.db(), "SELECT count(*) FROM orders").await, 0);
    drop(replica);
    shutdown.cancel();
    running.wait().await.unwrap();
}

/// A CA and a `localhost` certificate signed by it.
fn tls_files(dir: &std::path::Path) -> TlsConfig {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    TlsConfig {
        cert: cert_path,
        key: key_path,
    }
}

/// Reads until the server closes the connection (EOF or reset).
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buffer = [0_u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_connection_is_closed_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloud_config(dir.path());
    config.tls = Some(tls_files(dir.path()));
    config.http.handshake_timeout_ms = 300;
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .unwrap();

    let opened = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(running.addr).await.unwrap();
    tokio::time::timeout(LIMIT, closed_by_server(&mut silent))
        .await
        .expect("the server closes a connection that never starts TLS");
    assert!(opened.elapsed() >= Duration::from_millis(250));

    // Half a handshake is no better: a ClientHello record header promising more than it sends.
    let mut partial = TcpStream::connect(running.addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    tokio::time::timeout(LIMIT, closed_by_server(&mut partial))
        .await
        .expect("the server closes a stalled handshake");
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_request_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloud_config(dir.path());
    config.http.max_pending_connections = 1;
    config.http.handshake_timeout_ms = 60_000;
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .unwrap();

    // The first silent connection takes the one slot; the next is closed at once, long
    // before any timeout.
    let mut first = TcpStream::connect(running.addr).await.unwrap();
    let mut second = TcpStream::connect(running.addr).await.unwrap();
    tokio::time::timeout(LIMIT, closed_by_server(&mut second))
        .await
        .expect("a connection beyond the pending bound is closed");

    // Once the first sends a request it is no longer pending, and others get in again.
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: cloud\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0_u8; 256];
    while !answer.ends_with(b"ok") {
        let n = tokio::time::timeout(LIMIT, first.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        answer.extend_from_slice(&chunk[..n]);
    }
    let health = reqwest::get(format!("http://{}/healthz", running.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    drop(first);
    shutdown.cancel();
    running.wait().await.unwrap();
}
