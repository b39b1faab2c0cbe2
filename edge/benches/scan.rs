//! Edge benchmark: HTTP scan -> durable commit -> event latency, and sustained scans/s, against
//! a bare SQLite insert baseline measured in the same run on the same disk.
//!
//! `cargo bench -p flashkart-edge --bench scan` (`FLASHKART_BENCH_QUICK=1` for a smoke run).
//! Each scan is a real HTTP request through the daemon: auth, barcode lookup, reservation
//! release and a FEFO pick move in the ledger, line progress, a durable (synchronous=FULL)
//! group commit, then the events on the live stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use hdrhistogram::Histogram;
use serde_json::json;

struct Scale {
    sequential: usize,
    clients: usize,
    per_client: usize,
    baseline: usize,
}

impl Scale {
    /// The full run, or CI's smoke run (`FLASHKART_BENCH_QUICK`) with about a tenth of the work.
    /// The baseline repeats as many plain writes as the sequential scans it is compared with.
    fn from_env() -> Self {
        let quick = std::env::var_os("FLASHKART_BENCH_QUICK").is_some();
        let (sequential, clients, per_client) = if quick {
            (200, 16, 50)
        } else {
            (2_000, 32, 400)
        };
        Scale {
            sequential,
            clients,
            per_client,
            baseline: sequential,
        }
    }
}

fn main() {
    let scale = Scale::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(scale));
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// One line of the results table; cases without a rate leave the column blank.
fn row(case: &str, h: &Histogram<u64>, per_s: Option<f64>) {
    let per_s = per_s.map_or_else(String::new, |rate| format!("{rate:.0}"));
    println!(
        "{case:<58} {:>9.2} {:>9.2} {per_s:>10}",
        ms(h, 0.5),
        ms(h, 0.99)
    );
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

async fn run(scale: Scale) {
    println!(
        "edge scan benchmark ({} cores, synchronous=FULL)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"product_id": MILK, "qty": 1_000_000, "lot": "L1"}),
    )
    .await;

    let (committed, evented, sequential_rate) = sequential(&api, &t, scale.sequential, "s").await;
    let code = gtin(MILK);

    // Sustained: many clients scanning at once (group commit shares each fsync).
    for c in 0..scale.clients {
        api.ok(&t.manager, "/api/v1/intake/orders",
            json!({"id": format!("c-{c}"), "lines": [{"product_id": MILK, "qty": scale.per_client}]})).await;
    }
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..scale.clients {
        let (api, token, code) = (api.clone(), t.picker.clone(), code.clone());
        let per_client = scale.per_client;
        clients.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3).unwrap();
            let path = format!("/api/v1/orders/c-{c}/scan");
            for _ in 0..per_client {
                let sent = Instant::now();
                api.ok(&token, &path, json!({"code": code})).await;
                latency.record(micros(sent.elapsed())).unwrap();
            }
            latency
        }));
    }
    let mut loaded = Histogram::<u64>::new(3).unwrap();
    for client in clients {
        loaded.add(client.await.unwrap()).unwrap();
    }
    let total = scale.clients * scale.per_client;
    let sustained_rate = total as f64 / started.elapsed().as_secs_f64();
    daemon.stop().await;

    // The same single-client scans with synchronous=NORMAL: still safe against kill -9 (the WAL
    // is written before the answer), not against power loss.
    let normal = Daemon::start_with(tempfile::tempdir().unwrap(), |c| {
        c.synchronous = flashkart_sync::Synchronous::Normal;
    })
    .await;
    let tn = seed(&normal.api).await;
    normal
        .api
        .ok(
            &tn.picker,
            "/api/v1/stock/receive",
            json!({"product_id": MILK, "qty": 1_000_000, "lot": "L1"}),
        )
        .await;
    let (normal_committed, normal_evented, normal_rate) =
        sequential(&normal.api, &tn, scale.sequential, "n").await;
    normal.stop().await;

    // Baseline: bare SQLite (no cr-sqlite, no HTTP), one durable single-row insert per commit.
    let dir = tempfile::tempdir().unwrap();
    let baseline_dir = dir.path().to_path_buf();
    let (baseline, baseline_rate) = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(baseline_dir.join("bare.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE moves (id TEXT PRIMARY KEY NOT NULL, product_id TEXT NOT NULL,
                                 qty INTEGER NOT NULL, kind TEXT NOT NULL, at TEXT NOT NULL);",
        )
        .unwrap();
        let mut h = Histogram::<u64>::new(3).unwrap();
        let started = Instant::now();
        for _ in 0..scale.baseline {
            let t0 = Instant::now();
            conn.execute(
                "INSERT INTO moves VALUES (?1, 'p-milk', -1, 'pick', '2030-01-01T00:00:00Z')",
                [uuid::Uuid::now_v7().to_string()],
            )
            .unwrap();
            h.record(micros(t0.elapsed())).unwrap();
        }
        (h, scale.baseline as f64 / started.elapsed().as_secs_f64())
    })
    .await
    .unwrap();

    println!(
        "{:<58} {:>9} {:>9} {:>10}",
        "case", "p50 ms", "p99 ms", "per s"
    );
    row(
        "bare SQLite insert, one durable commit each (baseline)",
        &baseline,
        Some(baseline_rate),
    );
    row(
        "HTTP scan -> durable commit (response), one client",
        &committed,
        Some(sequential_rate),
    );
    row(
        "HTTP scan -> durable commit -> event on the stream",
        &evented,
        None,
    );
    row(
        "synchronous=NORMAL: HTTP scan -> commit (response)",
        &normal_committed,
        Some(normal_rate),
    );
    row(
        "synchronous=NORMAL: HTTP scan -> commit -> event",
        &normal_evented,
        None,
    );
    row(
        &format!(
            "HTTP scan -> durable commit, {} clients (sustained)",
            scale.clients
        ),
        &loaded,
        Some(sustained_rate),
    );
}

/// One scan at a time: latency to the response (committed) and to its event on the stream.
async fn sequential(
    api: &Api,
    t: &Tokens,
    count: usize,
    prefix: &str,
) -> (Histogram<u64>, Histogram<u64>, f64) {
    let orders = count.div_ceil(100);
    for o in 0..orders {
        api.ok(
            &t.manager,
            "/api/v1/intake/orders",
            json!({"id": format!("{prefix}-{o}"), "lines": [{"product_id": MILK, "qty": 100}]}),
        )
        .await;
    }
    // One timestamp per scan, drained as the scans are timed: bounded at the batch size.
    let (sender, mut scans) = tokio::sync::mpsc::channel::<Instant>(4096);
    let mut events = api.events(&t.picker).await;
    let reader = tokio::spawn(async move {
        loop {
            let (name, e) = events.next().await;
            if name == "order"
                && e["change"] == "scan"
                && sender.send(Instant::now()).await.is_err()
            {
                return;
            }
        }
    });
    let mut committed = Histogram::<u64>::new(3).unwrap();
    let mut evented = Histogram::<u64>::new(3).unwrap();
    let code = gtin(MILK);
    let started = Instant::now();
    for i in 0..count {
        let path = format!("/api/v1/orders/{prefix}-{}/scan", i / 100);
        let sent = Instant::now();
        api.ok(&t.picker, &path, json!({"code": code})).await;
        committed.record(micros(sent.elapsed())).unwrap();
        let seen = scans.recv().await.expect("scan event");
        evented
            .record(micros(seen.saturating_duration_since(sent)))
            .unwrap();
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    reader.abort();
    (committed, evented, rate)
}
