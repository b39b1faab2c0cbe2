//! A store restores a backup and sync stays right, with the cloud and the edge daemon in one
//! process, synced over real HTTP: the edge receives stock (A), takes a backup, receives more
//! (B) and accepts an order routed to it (reserving stock), which the cloud acknowledges;
//! then it stops and restores the backup. The restored database has a new cr-sqlite site id,
//! so HQ rotates the store's token releasing the old one; the edge, restarted with the new
//! token, gets B and the order's progress back from the cloud (the old site's changes are
//! another origin now) without taking the order in a second time, and a new receipt (C)
//! reaches the cloud. Nothing is counted twice: the ledger holds A, B, C and one reservation
//! at the edge, in the replica and in the read model.

use std::path::Path;
use std::time::{Duration, Instant};

use flashkart_cloud::CloudConfig;
use flashkart_edge::backup::{self, BackupSettings};
use flashkart_sync::client::ClientConfig;
use flashkart_tests::call_api;
use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "test-admin";
const STORE: &str = "store-5";
const PIN: &str = "246800";
const GTIN: &str = "4006381333931";
const WAIT: Duration = Duration::from_secs(60);

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let (status, body) = call_api(http, method, url, token, body).await;
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

/// Polls `probe` (the edge and the cloud change on their own schedule) until it is `Some`.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Edge {
    base: String,
    manager: String,
    shutdown: CancellationToken,
    running: flashkart_edge::Running,
}

async fn start_edge(dir: &Path, cloud: &str, token: &str, http: &reqwest::Client) -> Edge {
    let mut sync = ClientConfig::new(cloud, token);
    sync.long_poll_ms = 1_000;
    sync.local_poll_ms = 20;
    sync.backoff_initial_ms = 20;
    sync.backoff_max_ms = 200;
    let config = flashkart_edge::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: Some(dir.join("edge")),
        extension_dir: Some(dir.join("ext")),
        store_id: STORE.into(),
        manager_pin: Some(PIN.into()),
        shutdown_grace_secs: 5,
        sync: Some(sync),
        ..flashkart_edge::Config::default()
    };
    let shutdown = CancellationToken::new();
    let running = flashkart_edge::start(config, shutdown.clone())
        .await
        .expect("edge starts");
    let base = format!("http://{}", running.local_addr);
    let manager = call(
        http,
        Method::POST,
        &format!("{base}/api/v1/auth/sign-in"),
        "",
        Some(json!({"staff_id": "manager", "pin": PIN})),
    )
    .await["token"]
        .as_str()
        .expect("manager token")
        .to_owned();
    Edge {
        base,
        manager,
        shutdown,
        running,
    }
}

impl Edge {
    async fn receive(&self, http: &reqwest::Client, qty: i64, lot: &str) {
        call(
            http,
            Method::POST,
            &format!("{}/api/v1/stock/receive", self.base),
            &self.manager,
            Some(json!({"gtin": GTIN, "qty": qty, "lot": lot, "bin_id": "A-01-1"})),
        )
        .await;
    }

    /// `GET /api/v1/sync/status` as the manager sees it.
    async fn sync_status(&self, http: &reqwest::Client) -> Value {
        call(
            http,
            Method::GET,
            &format!("{}/api/v1/sync/status", self.base),
            &self.manager,
            None,
        )
        .await
    }

    async fn on_hand(&self, http: &reqwest::Client) -> Option<i64> {
        self.level(http).await.map(|(on_hand, _)| on_hand)
    }

    /// (on_hand, reserved) of milk, once the store knows the product.
    async fn level(&self, http: &reqwest::Client) -> Option<(i64, i64)> {
        let (status, body) = call_api(
            http,
            Method::GET,
            &format!("{}/api/v1/stock/milk", self.base),
            &self.manager,
            None,
        )
        .await;
        if status != StatusCode::OK {
            return None;
        }
        Some((
            body["level"]["on_hand"].as_i64()?,
            body["level"]["reserved"].as_i64()?,
        ))
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.running.wait().await.expect("edge stops cleanly");
    }
}

/// (receipts, pieces received, reservations) of milk in a store database's ledger.
async fn ledger(db: &flashkart_sync::StoreDb) -> (i64, i64, i64) {
    db.read(|conn| {
        Ok::<_, flashkart_sync::Error>(conn.query_row(
            "SELECT count(*) FILTER (WHERE kind = 'receive'),
                    coalesce(sum(qty) FILTER (WHERE kind = 'receive'), 0),
                    count(*) FILTER (WHERE kind = 'reserve')
             FROM stock_moves WHERE product_id = 'milk'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    })
    .await
    .expect("ledger")
}

/// The edge's ledger, read beside the running daemon (a reader only).
async fn edge_ledger(dir: &Path) -> (i64, i64, i64) {
    let mut config = flashkart_sync::StoreConfig::new(dir.join("edge").join(backup::DB_FILE));
    config.extension_dir = Some(dir.join("ext"));
    let db = flashkart_sync::StoreDb::open(config, flashkart_sync::schema::store::MIGRATIONS)
        .await
        .expect("edge database");
    let found = ledger(&db).await;
    db.close().await.expect("close");
    found
}

/// A customer's order of 2 milk, routed to the store; its id.
async fn place_order(http: &reqwest::Client, base: &str, customer: &str) -> String {
    let response = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(customer)
        .header("idempotency-key", "restore-1")
        .json(&json!({
            "address": {"text": "Somewhere 1, Berlin", "lat": 52.5, "lon": 13.4},
            "lines": [{"product_id": "milk", "qty": 2}],
            "payment": {"method": "cash"},
        }))
        .send()
        .await
        .expect("order");
    assert_eq!(response.status(), StatusCode::CREATED);
    let placed: Value = response.json().await.expect("order body");
    placed["order_id"].as_str().expect("order id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_store_gets_back_what_the_cloud_had_and_syncs_on_under_a_new_site() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = CloudConfig::ephemeral(dir.path().join("cloud"));
    config.admin_token = Some(ADMIN.into());
    config.extension_dir = Some(dir.path().join("ext"));
    let cloud_shutdown = CancellationToken::new();
    let cloud = flashkart_cloud::start(config, cloud_shutdown.clone())
        .await
        .expect("cloud starts");
    let base = format!("http://{}", cloud.addr);
    let http = reqwest::Client::new();
    let hq = HqAdmin::new(&http, &base, ADMIN);
    let token = hq.register_store(STORE).await;
    hq.put_product(
        "milk",
        json!({"name": "Milk", "price_minor": 129, "gtins": [{"gtin": GTIN}]}),
    )
    .await;
    hq.put_store_profile(STORE, &StoreProfile::new("Berlin"))
        .await;
    let customer = hq.create_customer("Ada").await;

    // The edge syncs; the catalog arrives; A is received.
    let edge = start_edge(dir.path(), &base, &token, &http).await;
    eventually("the catalog reaches the store", || edge.on_hand(&http)).await;
    call(
        &http,
        Method::PUT,
        &format!("{}/api/v1/bins/A-01-1", edge.base),
        &edge.manager,
        Some(json!({"aisle": "A", "bay": "01", "shelf": "1", "pick_seq": 10})),
    )
    .await;
    edge.receive(&http, 10, "A").await;
    let replica = cloud.cloud.replica(STORE).await.expect("replica");
    eventually("A reaches the cloud", || async {
        (ledger(replica.db()).await == (1, 10, 0)).then_some(())
    })
    .await;

    // A backup, then B, which the cloud acknowledges.
    let settings = BackupSettings {
        db_path: dir.path().join("edge").join(backup::DB_FILE),
        dir: dir.path().join("edge/backups"),
        keep: 8,
        extension_dir: Some(dir.path().join("ext")),
    };
    let taken = tokio::task::spawn_blocking(move || backup::take(&settings))
        .await
        .expect("backup thread")
        .expect("backup");
    edge.receive(&http, 5, "B").await;
    let order = place_order(&http, &base, &customer).await;
    eventually("B and the order's reservation reach the cloud", || async {
        (ledger(replica.db()).await == (2, 15, 1)).then_some(())
    })
    .await;
    assert_eq!(edge.level(&http).await, Some((15, 2)));
    edge.stop().await;

    // Restore: a new site id, and what to do next.
    let (file, data, ext) = (
        taken.file.path.clone(),
        dir.path().join("edge"),
        dir.path().join("ext"),
    );
    let restored = tokio::task::spawn_blocking(move || backup::restore(&file, &data, Some(&ext)))
        .await
        .expect("restore thread")
        .expect("restored");
    assert_ne!(restored.new_site_id, restored.old_site_id);
    assert!(
        dir.path()
            .join("edge")
            .join(backup::RESTORED_MARKER)
            .exists()
    );
    assert!(backup::next_steps(STORE).contains("{\"release_edge_site\": true}"));

    // With the old token the cloud refuses the new site: nothing is pushed or pulled.
    let edge = start_edge(dir.path(), &base, &token, &http).await;
    let status = eventually("the edge reports the refusal", || async {
        let status = edge.sync_status(&http).await;
        status["status"]["last_error"].is_string().then_some(status)
    })
    .await;
    assert_eq!(status["status"]["online"], false, "{status}");
    assert_eq!(
        edge.on_hand(&http).await,
        Some(10),
        "only A, from the backup"
    );
    edge.stop().await;

    // HQ rotates the token, releasing the old database; the edge restarts with it.
    let rotated = hq
        .call(
            Method::POST,
            &format!("/admin/v1/stores/{STORE}/token"),
            Some(json!({"release_edge_site": true})),
        )
        .await["token"]
        .as_str()
        .expect("new token")
        .to_owned();
    let edge = start_edge(dir.path(), &base, &rotated, &http).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let level = edge.level(&http).await;
        if level == Some((15, 2)) {
            break;
        }
        if Instant::now() > deadline {
            let status = edge.sync_status(&http).await;
            panic!(
                "B and the reservation never came back: level {level:?}, edge ledger {:?}, \
                 sync {status}",
                edge_ledger(dir.path()).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let marker = dir.path().join("edge").join(backup::RESTORED_MARKER);
    eventually("the catch-up after the restore ends", || async {
        (!marker.exists()).then_some(())
    })
    .await;

    // C is new, under the new site, and reaches the cloud; nothing is counted twice.
    edge.receive(&http, 7, "C").await;
    eventually("C reaches the cloud", || async {
        (ledger(replica.db()).await == (3, 22, 1)).then_some(())
    })
    .await;
    eventually("the read model counts each move once", || async {
        let stock = hq.call(Method::GET, "/admin/v1/stock/milk", None).await;
        (stock[STORE].as_i64() == Some(20)).then_some(())
    })
    .await;
    let status = edge.sync_status(&http).await;
    assert_eq!(status["status"]["online"], true, "{status}");
    assert_eq!(edge.level(&http).await, Some((22, 2)), "reserved once");
    let progress = call(
        &http,
        Method::GET,
        &format!("{}/api/v1/orders/{order}", edge.base),
        &edge.manager,
        None,
    )
    .await;
    assert_eq!(progress["status"], "ACCEPTED", "{progress}");
    edge.stop().await;

    // The edge's ledger, read directly: A, B and C once each.
    let mut store_config =
        flashkart_sync::StoreConfig::new(dir.path().join("edge").join(backup::DB_FILE));
    store_config.extension_dir = Some(dir.path().join("ext"));
    let db = flashkart_sync::StoreDb::open(store_config, flashkart_sync::schema::store::MIGRATIONS)
        .await
        .expect("edge database");
    assert_eq!(db.site_id(), restored.new_site_id);
    assert_eq!(ledger(&db).await, (3, 22, 1));
    assert_eq!(ledger(replica.db()).await, (3, 22, 1));
    db.close().await.expect("close");

    cloud_shutdown.cancel();
    cloud.wait().await.expect("cloud stops");
}
