//! What HQ reads of a store, at an instance that does not hold the store: two cloud instances
//! on one PostgreSQL, the store's edge syncing with A. At B, an order's lines with the
//! store's progress and its wrong delivery PINs come from the shared read model, and an
//! enrolment code issued there (once the store's riders' CA fingerprint is projected) reaches
//! the store through its write journal; HQ's reroute of the order asked at B is handed on to
//! A, which serves the store; B never opens a replica of the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::api::{Api, area, order_of, profile};
use common::*;
use flashkart_cloud::RunningCloud;
use flashkart_cloud::postgres::DatabaseUrl;
use flashkart_sync::StoreDb;
use flashkart_sync::client;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Instance {
    running: RunningCloud,
    shutdown: CancellationToken,
}

impl Instance {
    async fn start(dir: &Path, name: &str, url: &DatabaseUrl, lease_ms: u64) -> Self {
        let mut config = cloud_config(&dir.join(name));
        config.extension_dir = Some(dir.join("ext"));
        config.database_url = Some(url.clone());
        config.cluster.lease_ms = lease_ms;
        let shutdown = CancellationToken::new();
        let running = flashkart_cloud::start(config, shutdown.clone())
            .await
            .expect("instance starts");
        Self { running, shutdown }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.running.wait().await.unwrap();
    }
}

/// How long anything here may take to sync, project or apply.
const LIMIT: Duration = Duration::from_secs(30);

/// Polls `check` every 50 ms until it gives a value, failing with `what` after [`LIMIT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The store's edge records `sql` (edge-owned rows); it syncs them on its own.
async fn edge_writes(edge: &StoreDb, sql: String) {
    edge.write(move |conn| {
        conn.execute_batch(&sql)
            .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_the_store_reads_and_writes_it_through_the_shared_state() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::fresh_database();
    // Leases long enough that the store stays at A for the whole test.
    let a = Instance::start(dir.path(), "a", &url, 30_000).await;
    let b = Instance::start(dir.path(), "b", &url, 30_000).await;
    let (api_a, api_b) = (Api::new(a.running.addr), Api::new(b.running.addr));

    // The store, its profile and the product, through A; its edge syncs with A, which takes
    // the store's lease.
    let token = a.running.cloud.register_store("s1").await.unwrap();
    let (status, body) = api_a
        .admin(Method::PUT, "/admin/v1/stores/s1/profile", profile(area(5)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api_a
        .admin(
            Method::PUT,
            "/admin/v1/products/p1",
            json!({"name": "Oat milk", "price_minor": 100}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let edge = open_edge(dir.path(), "s1").await;
    edge_stock_move(&edge, "s1", "stock".into(), 10).await;
    let stop_edge = CancellationToken::new();
    let _handle = client::spawn(
        client_config(&api_a.base, &token),
        edge.clone(),
        stop_edge.clone(),
    )
    .unwrap();
    // B learns of the product from the catalog journal (within its poll).
    let catalog_b = b.running.cloud.catalog().clone();
    eventually("p1 in B's catalog", || async {
        (count(&catalog_b, "SELECT count(*) FROM products WHERE id = 'p1'").await == 1)
            .then_some(())
    })
    .await;
    let projection_b = b.running.cloud.projection();
    eventually("s1's stock in the read model, at B", || async {
        let stock = projection_b.stock_at("s1").await.unwrap();
        (stock.get("p1") == Some(&10)).then_some(())
    })
    .await;

    // A rider put on the roster at B: the row goes to the store through the journal.
    let (status, body) = api_b
        .admin(
            Method::PUT,
            "/admin/v1/riders/grace",
            json!({"home_store_id": "s1", "name": "Grace", "active": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let code_path = "/admin/v1/riders/grace/enrolment-code";
    // No code before the store reported its riders' CA.
    let (status, refused) = api_b.call(Method::POST, code_path, ADMIN, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("certificate authority")),
        "{refused}"
    );

    // A customer orders at B; the order is s1's.
    let (status, customer) = api_b
        .admin(
            Method::POST,
            "/admin/v1/customers",
            json!({"first_name": "Ada"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{customer}");
    let customer = customer["token"].as_str().unwrap().to_owned();
    let (status, placed) = api_b.order(&customer, "k-1", order_of("p1", 2)).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["store_id"], "s1", "{placed}");
    let order_id = placed["order_id"].as_str().unwrap().to_owned();
    let detail = format!("/admin/v1/orders/{order_id}");

    // At B before the store did anything: the lines as routed, no PIN failures.
    let (status, view) = api_b.call(Method::GET, &detail, ADMIN, None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(
        view["lines"],
        json!([{"line_no": 1, "product_id": "p1", "name": "Oat milk", "qty": 2,
                "unit_price_minor": 100, "line_minor": 200, "picked_qty": 0, "short_qty": 0,
                "substitute_product_id": null, "substitute_name": null}]),
        "{view}"
    );
    assert_eq!(view["pin_failures"], 0, "{view}");

    // The order reaches the edge (A applied the journal); the store picks one of two, finds
    // the other short, and the rider gets the PIN wrong twice, then is locked out once.
    let lines_at_edge = format!("SELECT count(*) FROM order_lines WHERE order_id = '{order_id}'");
    eventually("the order at the edge", || async {
        (count(&edge, lines_at_edge.clone()).await == 1).then_some(())
    })
    .await;
    let fingerprint = "ab".repeat(32);
    edge_writes(
        &edge,
        format!(
            "INSERT INTO order_line_progress (order_id, line_no, store_id, picked_qty, short_qty)
             VALUES ('{order_id}', 1, 's1', 1, 1);
             INSERT INTO delivery_attempts (id, store_id, order_id, rider_id, at, outcome) VALUES
                ('att-1', 's1', '{order_id}', 'grace', '2026-01-01T10:00:00Z', 'wrong_pin'),
                ('att-2', 's1', '{order_id}', 'grace', '2026-01-01T10:01:00Z', 'wrong_pin'),
                ('att-3', 's1', '{order_id}', 'grace', '2026-01-01T10:02:00Z', 'locked');
             INSERT INTO store_certificates (id, store_id, sha256, updated_at)
             VALUES ('riders-ca', 's1', '{fingerprint}', '2026-01-01T09:00:00Z');"
        ),
    )
    .await;

    // B shows what the store reported, from the read model A's projector wrote.
    let view: Value = eventually("the store's progress and PIN failures, at B", || async {
        let (status, view) = api_b.call(Method::GET, &detail, ADMIN, None).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        (view["lines"][0]["picked_qty"] == 1 && view["pin_failures"] == 2).then_some(view)
    })
    .await;
    assert_eq!(
        view["lines"],
        json!([{"line_no": 1, "product_id": "p1", "name": "Oat milk", "qty": 2,
                "unit_price_minor": 100, "line_minor": 200, "picked_qty": 1, "short_qty": 1,
                "substitute_product_id": null, "substitute_name": null}]),
        "{view}"
    );
    assert_eq!(view["flagged_for_support"], false, "{view}");
    // A reads the same.
    let (_, at_a) = api_a.call(Method::GET, &detail, ADMIN, None).await;
    assert_eq!(
        (&at_a["lines"], &at_a["pin_failures"]),
        (&view["lines"], &view["pin_failures"])
    );

    // An enrolment code issued at B, pinning the fingerprint the store reported, reaches the
    // store's replica at A and the edge.
    let issued: Value = eventually("an enrolment code, at B", || async {
        let (status, body) = api_b.call(Method::POST, code_path, ADMIN, None).await;
        match status {
            StatusCode::CREATED => Some(body),
            StatusCode::CONFLICT => None,
            _ => panic!("{status} {body}"),
        }
    })
    .await;
    assert!(
        issued["qr_payload"]
            .as_str()
            .is_some_and(|q| q.ends_with(&format!("&ca={fingerprint}"))),
        "{issued}"
    );
    let code_sha256: String = sha2::Sha256::digest(issued["code"].as_str().unwrap().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let expires_at = issued["expires_at"].as_str().unwrap();
    let has_code = format!(
        "SELECT count(*) FROM riders WHERE id = 'grace' AND enrolment_code_sha256 = '{code_sha256}'
            AND enrolment_code_expires_at = '{expires_at}'"
    );
    let replica_a = a.running.cloud.replica("s1").await.unwrap();
    eventually("the code in s1's replica at A", || async {
        (count(replica_a.db(), has_code.clone()).await == 1).then_some(())
    })
    .await;
    eventually("the code at the edge", || async {
        (count(&edge, has_code.clone()).await == 1).then_some(())
    })
    .await;
    // HQ asks B to move the order to s2, a store with a profile but no stock: B cannot check
    // s1's progress in a replica of its own, so it hands the request to A, which can and
    // refuses for s2's reasons (not "the order is not in s1's replica").
    a.running.cloud.register_store("s2").await.unwrap();
    let (status, body) = api_a
        .admin(Method::PUT, "/admin/v1/stores/s2/profile", profile(area(5)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, refused) = api_b
        .call(
            Method::POST,
            &format!("/admin/v1/orders/{order_id}/reroute"),
            ADMIN,
            Some(json!({"store_id": "s2", "reason": "s1 is short"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("s2") && !message.contains("replica"),
        "{refused}"
    );
    let metrics = reqwest::get(format!("{}/metrics", api_b.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("flashkart_cloud_sync_forwarded_total{op=\"reroute\"} 1"),
        "{metrics}"
    );
    assert!(
        !dir.path().join("b/cloud/stores/s1.db").exists(),
        "B never opened a replica of a store it does not serve"
    );

    drop(replica_a);
    stop_edge.cancel();
    b.stop().await;
    a.stop().await;
}
