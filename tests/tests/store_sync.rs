//! A real cloud and a real edge daemon, as processes: the edge, configured with the store
//! credential HQ registered, syncs its own rows to its replica in the cloud and shows the sync
//! state on its API; and with sync on, it refuses to write cloud-owned rows locally.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flashkart_tests::{Daemon, addr_in, binary, url_in};
use serde_json::{Value, json};

const START: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_syncs_its_rows_to_the_cloud_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let env = [("XDG_CACHE_HOME", cache.as_path()), ("HOME", dir.path())];

    let cloud_config = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud_config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"test-admin\"\n",
            dir.path().join("cloud").display()
        ),
    )
    .expect("write cloud config");
    let cloud_bin = binary("flashkart-cloud");
    let registered = Command::new(&cloud_bin)
        .args(["register-store", "store-7", "--config"])
        .arg(&cloud_config)
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .expect("register-store");
    assert!(
        registered.status.success(),
        "register-store failed: {registered:?}"
    );
    let token = String::from_utf8_lossy(&registered.stdout)
        .lines()
        .last()
        .expect("a token line")
        .trim()
        .to_owned();
    assert!(!token.is_empty());

    let config_arg = cloud_config.display().to_string();
    let mut cloud = Daemon::start(&cloud_bin, &["run", "--config", &config_arg], &env);
    let cloud_url = url_in(&cloud.wait_for_line("cloud listening", START)).expect("cloud url");

    let edge_config = dir.path().join("edge.toml");
    std::fs::write(
        &edge_config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nstore_id = \"store-7\"\n\
             manager_pin = \"246800\"\n\n[sync]\ncloud_url = \"{cloud_url}\"\ntoken = \"{token}\"\n",
            dir.path().join("edge").display()
        ),
    )
    .expect("write edge config");
    let edge_arg = edge_config.display().to_string();
    let mut edge = Daemon::start(
        &binary("flashkart-edge"),
        &["run", "--config", &edge_arg],
        &env,
    );
    let addr = addr_in(&edge.wait_for_line("HTTP API listening", START)).expect("edge addr");
    let base = format!("http://{addr}/api/v1");
    let http = reqwest::Client::new();

    let signed_in: Value = http
        .post(format!("{base}/auth/sign-in"))
        .json(&json!({"staff_id": "manager", "pin": "246800"}))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("sign-in body");
    let bearer = format!("Bearer {}", signed_in["token"].as_str().expect("token"));

    // An edge-owned row: a bin of this store.
    let bin = http
        .put(format!("{base}/bins/A-01-1"))
        .header("authorization", &bearer)
        .json(&json!({"aisle": "A", "bay": "01", "shelf": "1", "pick_seq": 10}))
        .send()
        .await
        .expect("put bin");
    assert!(bin.status().is_success(), "put bin: {}", bin.status());

    // Cloud-owned rows are not written at the edge while it syncs.
    let intake = http
        .post(format!("{base}/intake/orders"))
        .header("authorization", &bearer)
        .json(&json!({"id": "o-1", "lines": [{"product_id": "p", "qty": 1}]}))
        .send()
        .await
        .expect("intake");
    assert_eq!(intake.status().as_u16(), 409);

    // The replica in the cloud receives the bin; the edge reports what it pushed.
    let replica = dir.path().join("cloud/stores/store-7.db");
    let mut status = Value::Null;
    for _ in 0..300 {
        status = http
            .get(format!("{base}/sync/status"))
            .header("authorization", &bearer)
            .send()
            .await
            .expect("sync status")
            .json()
            .await
            .expect("status body");
        if status["status"]["online"] == true
            && status["status"]["pushed_changes"].as_u64().unwrap_or(0) > 0
            && bin_in_replica(&replica)
        {
            break;
        }
        // The edge pushes on its own schedule; poll its status like an operator would.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["configured"], true, "{status}");
    assert_eq!(status["status"]["online"], true, "{status}");
    assert!(
        bin_in_replica(&replica),
        "the bin reached the cloud replica; status {status}"
    );

    let (edge_status, edge_log) = edge.terminate(Duration::from_secs(30));
    assert!(edge_status.success(), "edge exit: {}", edge_log.join("\n"));
    let (cloud_status, cloud_log) = cloud.terminate(Duration::from_secs(30));
    assert!(
        cloud_status.success(),
        "cloud exit: {}",
        cloud_log.join("\n")
    );
}

fn bin_in_replica(replica: &Path) -> bool {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(replica, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return false;
    };
    conn.query_row(
        "SELECT count(*) FROM bins WHERE id = 'A-01-1' AND store_id = 'store-7'",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n == 1)
    .unwrap_or(false)
}
