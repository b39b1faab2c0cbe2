//! kill -9 of the real daemon binary in the middle of a burst of scans: after a restart every
//! scan that was answered 2xx is in the database, the counters agree with the ledger, and
//! `PRAGMA integrity_check` is ok.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::sync::Notify;

const ORDERS: usize = 4;
const SCANNERS: usize = 8;
const KILL_AFTER: usize = 300;

/// Starts the built binary on `dir` and returns it with the address it logged.
fn spawn_daemon(dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flashkart-edge"))
        .arg("run")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .env("FLASHKART_EDGE_MANAGER_PIN", "123456")
        .env("FLASHKART_EDGE_DEV_ENDPOINTS", "1")
        .env("FLASHKART_EDGE_EXTENSION_DIR", dir.join("ext"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daemon binary starts");
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("HTTP API listening")
                && let Some(at) = line.find("addr=")
                && let Some(sender) = sender.take()
            {
                let addr: String = line[at + 5..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                let _ = sender.send(addr.parse::<SocketAddr>().expect("logged address"));
            }
            // Keep draining so the daemon never blocks on a full pipe.
        }
    });
    let addr = receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("the daemon logs its address");
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_of_scans_loses_no_acknowledged_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_daemon(dir.path());
    let api = Api::new(addr);
    let t = seed(&api).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"product_id": MILK, "qty": 50_000, "lot": "L1"}),
    )
    .await;
    for o in 0..ORDERS {
        api.ok(
            &t.manager,
            "/api/v1/intake/orders",
            json!({"id": format!("k-{o}"), "lines": [{"product_id": MILK, "qty": 10_000}]}),
        )
        .await;
    }

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let mut scanners = Vec::new();
    for s in 0..SCANNERS {
        let (api, token, acked, count, enough) = (
            api.clone(),
            t.picker.clone(),
            acked.clone(),
            count.clone(),
            enough.clone(),
        );
        scanners.push(tokio::spawn(async move {
            let path = format!("{}/api/v1/orders/k-{}/scan", api.base, s % ORDERS);
            loop {
                let sent = api
                    .http
                    .post(&path)
                    .bearer_auth(&token)
                    .json(&json!({"code": gtin(MILK)}))
                    .send()
                    .await;
                let Ok(response) = sent else { return };
                if !response.status().is_success() {
                    return;
                }
                let Ok(body) = response.json::<serde_json::Value>().await else {
                    return;
                };
                acked
                    .lock()
                    .unwrap()
                    .push(body["taken"][0]["move_id"].as_str().unwrap().to_owned());
                if count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    enough.notify_one();
                }
            }
        }));
    }
    enough.notified().await;
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    child.wait().unwrap();
    for scanner in scanners {
        scanner.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER);

    // Restart: the daemon comes back on the same database and still knows every scan.
    let (mut child, addr) = spawn_daemon(dir.path());
    let api = Api::new(addr);
    let picker = api.sign_in("pia", "111111").await;
    let mut picked = 0;
    for o in 0..ORDERS {
        let (_, order) = api.get(&picker, &format!("/api/v1/orders/k-{o}")).await;
        picked += order["lines"][0]["picked_qty"].as_i64().unwrap();
    }
    assert!(
        picked >= i64::try_from(acked.len()).unwrap(),
        "{picked} picked < {} acknowledged",
        acked.len()
    );
    let (on_hand, reserved, _) = api.level(&picker, MILK).await;
    assert_eq!(on_hand, 50_000 - picked);
    assert_eq!(reserved, 40_000 - picked);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "clean exit on SIGTERM");

    let db = open_db(dir.path()).await;
    let (integrity, missing, pick_moves, problems) = db
        .read(move |conn| {
            let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            let mut find =
                conn.prepare("SELECT count(*) FROM stock_moves WHERE id = ?1 AND kind = 'pick'")?;
            let mut missing = Vec::new();
            for id in &acked {
                if find.query_row([id], |r| r.get::<_, i64>(0))? != 1 {
                    missing.push(id.clone());
                }
            }
            let pick_moves: i64 = conn.query_row(
                "SELECT count(*) FROM stock_moves WHERE kind = 'pick'",
                [],
                |r| r.get(0),
            )?;
            let problems = flashkart_edge::work::stock::check_summary(conn)
                .map_err(|e| flashkart_sync::Error::Commit(e.to_string()))?;
            Ok::<_, flashkart_sync::Error>((integrity, missing, pick_moves, problems))
        })
        .await
        .unwrap();
    db.close().await.unwrap();
    assert_eq!(integrity, "ok");
    assert!(missing.is_empty(), "acknowledged scans lost: {missing:?}");
    assert_eq!(pick_moves, picked, "one pick move per picked piece");
    assert!(problems.is_empty(), "{problems:?}");
}
