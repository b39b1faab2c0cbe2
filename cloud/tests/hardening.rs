//! What a client, with or without a credential, must not be able to do to the cloud: make it
//! buffer a body before it has authenticated, buffer more than a route needs, or hold
//! connections without ever sending a request. (Overflowing a price and giving two products one
//! barcode: `catalog_limits.rs`; taking over a registered store by registering it again:
//! `store_registration.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::api::*;
use common::*;
use flashkart_sync::protocol;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Longest any single step may take before the test fails (nothing here waits on it).
const LIMIT: Duration = Duration::from_secs(10);

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
    config.tls = Some(common::pki::private_pki(dir.path()).1);
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
