//! HQ's catalog with several cloud instances on one PostgreSQL: a product written at one
//! instance reaches every instance's catalog (and the replicas it serves), an instance started
//! later has it before it serves, and a GTIN belongs to one product whichever instances the
//! PUTs reach, even when they race.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::api::Api;
use common::*;
use flashkart_cloud::RunningCloud;
use flashkart_cloud::postgres::DatabaseUrl;
use flashkart_sync::StoreDb;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Instance {
    running: RunningCloud,
    shutdown: CancellationToken,
    api: Api,
}

impl Instance {
    async fn start(dir: &Path, name: &str, url: &DatabaseUrl) -> Self {
        let mut config = cloud_config(&dir.join(name));
        config.extension_dir = Some(dir.join("ext"));
        config.database_url = Some(url.clone());
        let shutdown = CancellationToken::new();
        let running = flashkart_cloud::start(config, shutdown.clone())
            .await
            .expect("instance starts");
        let api = Api::new(running.addr);
        Self {
            running,
            shutdown,
            api,
        }
    }

    async fn put(&self, product: &str, gtins: &[&str]) -> (StatusCode, Value) {
        let gtins: Vec<Value> = gtins.iter().map(|g| json!({"gtin": g})).collect();
        self.api
            .admin(
                Method::PUT,
                &format!("/admin/v1/products/{product}"),
                json!({"name": product, "price_minor": 250, "gtins": gtins}),
            )
            .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.running.wait().await.unwrap();
    }
}

/// The product's name and price in `db` (a catalog or a replica), if it has the product.
async fn product(db: &StoreDb, id: &str) -> Option<(String, i64)> {
    let id = id.to_owned();
    db.read(move |conn| {
        use rusqlite::OptionalExtension;
        conn.query_row(
            "SELECT p.name, pr.unit_price_minor FROM products p
             JOIN prices pr ON pr.product_id = p.id WHERE p.id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap()
}

/// The product `gtin` belongs to in `db`.
async fn gtin_owner(db: &StoreDb, gtin: &str) -> Option<String> {
    let gtin = gtin.to_owned();
    db.read(move |conn| {
        use rusqlite::OptionalExtension;
        conn.query_row(
            "SELECT product_id FROM product_gtins WHERE gtin = ?1",
            [gtin],
            |r| r.get(0),
        )
        .optional()
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap()
}

/// Polls `check` until it holds, failing after a deadline far beyond the journal's poll.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A GTIN-13 with a valid check digit, distinct per `n`.
fn gtin13(n: u64) -> String {
    let body = format!("400{n:09}");
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_written_at_one_instance_reaches_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::fresh_database();
    let a = Instance::start(dir.path(), "a", &url).await;
    let b = Instance::start(dir.path(), "b", &url).await;
    // A store whose replica is at B: the catalog reaches it through B's fan-out.
    b.running.cloud.register_store("s1").await.unwrap();
    let replica_b = b.running.cloud.replica("s1").await.unwrap();

    let (status, answer) = a.put("milk", &[&gtin13(1)]).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    // At A's catalog as soon as the PUT answered.
    assert_eq!(
        product(a.running.cloud.catalog(), "milk").await,
        Some(("milk".into(), 250))
    );
    eventually("B's catalog has milk", || async {
        product(b.running.cloud.catalog(), "milk").await == Some(("milk".into(), 250))
    })
    .await;
    eventually("the store B serves has milk", || async {
        product(replica_b.db(), "milk").await == Some(("milk".into(), 250))
    })
    .await;

    // A change made at B comes back to A.
    let (status, answer) = b
        .api
        .admin(
            Method::PUT,
            "/admin/v1/products/milk",
            json!({"name": "milk 1l", "price_minor": 199, "gtins": [{"gtin": gtin13(1)}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    eventually("A's catalog has the new price", || async {
        product(a.running.cloud.catalog(), "milk").await == Some(("milk 1l".into(), 199))
    })
    .await;

    // An instance started later has the whole catalog before it serves.
    let c = Instance::start(dir.path(), "c", &url).await;
    assert_eq!(
        product(c.running.cloud.catalog(), "milk").await,
        Some(("milk 1l".into(), 199))
    );
    assert_eq!(
        gtin_owner(c.running.cloud.catalog(), &gtin13(1))
            .await
            .as_deref(),
        Some("milk")
    );

    c.stop().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gtin_taken_at_one_instance_is_refused_at_another() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::fresh_database();
    let a = Instance::start(dir.path(), "a", &url).await;
    let b = Instance::start(dir.path(), "b", &url).await;
    let gtin = gtin13(2);

    let (status, answer) = a.put("milk", &[&gtin]).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    // At once, whether or not B's poll has applied it yet: B checks a caught-up catalog.
    let (status, answer) = b.put("bread", &[&gtin]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"], "conflict", "{answer}");
    // Nothing of the refused PUT was written, at either instance.
    assert_eq!(product(b.running.cloud.catalog(), "bread").await, None);
    assert_eq!(
        gtin_owner(b.running.cloud.catalog(), &gtin)
            .await
            .as_deref(),
        Some("milk")
    );
    // The owner itself may write it again at B.
    let (status, answer) = b.put("milk", &[&gtin]).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let c = Instance::start(dir.path(), "c", &url).await;
    assert_eq!(product(c.running.cloud.catalog(), "bread").await, None);

    c.stop().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_puts_of_one_gtin_at_two_instances_give_it_to_one_product() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::fresh_database();
    let a = Instance::start(dir.path(), "a", &url).await;
    let b = Instance::start(dir.path(), "b", &url).await;

    for round in 0..12_u64 {
        let gtin = gtin13(100 + round);
        let (at_a, at_b) = (format!("a{round}"), format!("b{round}"));
        let gtins = [gtin.as_str()];
        let ((status_a, answer_a), (status_b, answer_b)) =
            tokio::join!(a.put(&at_a, &gtins), b.put(&at_b, &gtins));
        let winner = match (status_a, status_b) {
            (StatusCode::NO_CONTENT, StatusCode::CONFLICT) => &at_a,
            (StatusCode::CONFLICT, StatusCode::NO_CONTENT) => &at_b,
            _ => panic!("round {round}: {status_a} {answer_a}, {status_b} {answer_b}"),
        };
        for instance in [&a, &b] {
            eventually(&format!("round {round}: {winner} owns {gtin}"), || async {
                gtin_owner(instance.running.cloud.catalog(), &gtin)
                    .await
                    .as_deref()
                    == Some(winner.as_str())
            })
            .await;
        }
        let loser = if winner == &at_a { &at_b } else { &at_a };
        for instance in [&a, &b] {
            assert_eq!(
                product(instance.running.cloud.catalog(), loser).await,
                None,
                "round {round}: the refused product was written"
            );
        }
    }

    b.stop().await;
    a.stop().await;
}
