//! Sync benchmarks over loopback, printed as a table for docs/benchmarks.md:
//! - catch-up: a store offline with 100,000 queued changes reconnects; seconds until the cloud
//!   has applied them all, and bytes on the wire per change (counted by a TCP proxy, so HTTP/2
//!   framing and headers are included);
//! - the same for 100,000 cloud changes waiting for an offline store;
//! - propagation latency p50/p99: cloud write -> edge applied, edge write -> cloud applied.
//!
//! `cargo bench -p flashkart-cloud --bench sync`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use flashkart_cloud::readmodel::ReadModel;
use flashkart_cloud::{CloudConfig, RunningCloud};
use flashkart_proto::sync::{Change, value::Kind};
use flashkart_sync::client::{self, ClientConfig};
use flashkart_sync::{StoreConfig, StoreDb};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const QUEUED: i64 = 100_000;
const SAMPLES: usize = 300;

/// Tells the benchmark when the cloud applied a marked stock move.
#[derive(Debug)]
struct Marker(mpsc::UnboundedSender<(String, Instant)>);

impl ReadModel for Marker {
    fn project(&self, _store: &str, changes: &[Change]) {
        for change in changes {
            if change.table == "stock_moves"
                && change.cid == "actor"
                && let Some(Kind::Text(actor)) = change.val.as_ref().and_then(|v| v.kind.as_ref())
                && actor.starts_with("lat-")
            {
                let _ = self.0.send((actor.clone(), Instant::now()));
            }
        }
    }
}

/// Forwards TCP and counts the bytes both ways.
async fn counting_proxy(upstream: SocketAddr, bytes: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let server = TcpStream::connect(upstream).await.unwrap();
                client.set_nodelay(true).unwrap();
                server.set_nodelay(true).unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(pipe(cr, sw, bytes.clone()), pipe(sr, cw, bytes));
            });
        }
    });
    addr
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    bytes: Arc<AtomicU64>,
) {
    let mut buf = vec![0_u8; 64 << 10];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

async fn open(dir: &std::path::Path, name: &str) -> StoreDb {
    let mut config = StoreConfig::new(dir.join(format!("{name}.db")));
    config.extension_dir = Some(dir.join("ext"));
    StoreDb::open(config, flashkart_sync::schema::store::MIGRATIONS)
        .await
        .unwrap()
}

async fn local_changes(db: &StoreDb) -> i64 {
    db.read(|c| {
        c.query_row("SELECT count(*) FROM crsql_changes", [], |r| r.get(0))
            .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap()
}

async fn start_cloud(
    dir: &std::path::Path,
    marker: mpsc::UnboundedSender<(String, Instant)>,
) -> (RunningCloud, CancellationToken) {
    let mut config = CloudConfig::ephemeral(dir.join("cloud"));
    config.admin_token = Some("bench".into());
    config.extension_dir = Some(dir.join("ext"));
    let shutdown = CancellationToken::new();
    let running =
        flashkart_cloud::start_with(config, shutdown.clone(), Some(Arc::new(Marker(marker))))
            .await
            .unwrap();
    (running, shutdown)
}

fn quiet_client(url: &str, token: &str) -> ClientConfig {
    let mut config = ClientConfig::new(url, token);
    config.long_poll_ms = 10_000;
    config
}

/// Writes rows in transactions of 10 with `write_ten(first_index)` until `db` holds
/// [`QUEUED`] more changes (counted once after a first batch: counting scans every change).
async fn queue<F, Fut>(db: &StoreDb, mut write_ten: F) -> (i64, i64)
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = local_changes(db).await;
    write_ten(0).await;
    let per_row = (local_changes(db).await - before) / 10;
    let rows = (QUEUED + per_row - 1) / per_row;
    let mut written = 10;
    while written < rows {
        write_ten(written).await;
        written += 10;
    }
    (local_changes(db).await - before, written)
}

/// A store's scans arriving as small transactions.
async fn write_moves(db: StoreDb, start: i64) {
    db.write(move |c| {
        for n in start..start + 10 {
            c.execute(
                "INSERT INTO stock_moves (id, store_id, product_id, bin_id, qty, kind, lot, actor, at)
                 VALUES (?1, 's1', 'product-0001', 'A-01-1', -1, 'pick', 'L1', 'picker', '2026-01-01T10:00:00Z')",
                [format!("move-{n:08}")],
            )?;
        }
        Ok::<_, flashkart_sync::Error>(())
    })
    .await
    .unwrap();
}

/// Orders routed to the store while it is offline.
async fn write_orders(replica: Arc<flashkart_sync::server::Replica>, start: i64) {
    replica
        .write(move |c| {
            for i in start..start + 10 {
                c.execute(
                    "INSERT INTO orders (id, store_id, customer_first_name, address, total_minor, placed_at)
                     VALUES (?1, 's1', 'Ada', '1 Main St', 1999, '2026-01-01T10:00:00Z')",
                    [format!("order-{i:08}")],
                )?;
            }
            Ok::<_, flashkart_sync::Error>(())
        })
        .await
        .unwrap();
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (marks_tx, mut marks) = mpsc::unbounded_channel();
    let (running, shutdown) = start_cloud(dir.path(), marks_tx).await;
    let wire = Arc::new(AtomicU64::new(0));
    let proxy = counting_proxy(running.addr, wire.clone()).await;
    let url = format!("http://{proxy}");
    println!("## Sync\n");
    println!(
        "`cargo bench -p flashkart-cloud --bench sync` (loopback, cloud and edge in one process, synchronous=FULL)\n"
    );
    println!("| measurement | result |\n|---|---|");

    // ---- Edge catch-up: 100k queued store changes.
    let token = running.cloud.register_store("s1").await.unwrap();
    let edge = open(dir.path(), "edge-s1").await;
    let (queued, _) = queue(&edge, |start| write_moves(edge.clone(), start)).await;
    let target: i64 = edge
        .read(|c| {
            c.query_row("SELECT crsql_db_version()", [], |r| r.get(0))
                .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    let client_stop = CancellationToken::new();
    wire.store(0, Ordering::SeqCst);
    let started = Instant::now();
    let handle = client::spawn(
        quiet_client(&url, &token),
        edge.clone(),
        client_stop.clone(),
    )
    .unwrap();
    let mut status = handle.status.clone();
    while status.borrow_and_update().acked_db_version < target {
        status.changed().await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = wire.load(Ordering::SeqCst);
    println!(
        "| edge -> cloud catch-up, {queued} queued changes | {seconds:.2} s ({:.0} changes/s) |",
        queued as f64 / seconds
    );
    println!(
        "| bytes on the wire per change (edge -> cloud catch-up) | {:.1} B |",
        bytes as f64 / queued as f64
    );
    // Drain the read model's markers of the catch-up (none) and let the pull settle.
    while marks.try_recv().is_ok() {}

    // ---- Cloud catch-up: 100k changes for a store that is offline.
    client_stop.cancel();
    handle.task.await.unwrap();
    let replica = running.cloud.replica("s1").await.unwrap();
    let (queued_cloud, orders) =
        queue(replica.db(), |start| write_orders(replica.clone(), start)).await;
    let client_stop = CancellationToken::new();
    wire.store(0, Ordering::SeqCst);
    let started = Instant::now();
    let handle = client::spawn(
        quiet_client(&url, &token),
        edge.clone(),
        client_stop.clone(),
    )
    .unwrap();
    let mut status = handle.status.clone();
    loop {
        let have: i64 = edge
            .read(|c| {
                c.query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
                    .map_err(flashkart_sync::Error::from)
            })
            .await
            .unwrap();
        if have >= orders {
            break;
        }
        status.changed().await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = wire.load(Ordering::SeqCst);
    println!(
        "| cloud -> edge catch-up, {queued_cloud} queued changes | {seconds:.2} s ({:.0} changes/s) |",
        queued_cloud as f64 / seconds
    );
    println!(
        "| bytes on the wire per change (cloud -> edge catch-up) | {:.1} B |",
        bytes as f64 / queued_cloud as f64
    );

    // ---- Propagation latency, on the caught-up store.
    let mut down = Histogram::<u64>::new(3).unwrap();
    for i in 0..SAMPLES {
        let id = format!("lat-order-{i}");
        let started = Instant::now();
        let store_id = id.clone();
        replica
            .write(move |c| {
                c.execute(
                    "INSERT INTO orders (id, store_id) VALUES (?1, 's1')",
                    [store_id],
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await
            .unwrap();
        loop {
            let id = id.clone();
            let found: i64 = edge
                .read(move |c| {
                    c.query_row("SELECT count(*) FROM orders WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })
                    .map_err(flashkart_sync::Error::from)
                })
                .await
                .unwrap();
            if found == 1 {
                break;
            }
            status.changed().await.unwrap();
        }
        down.record(started.elapsed().as_micros() as u64).unwrap();
    }
    let mut up = Histogram::<u64>::new(3).unwrap();
    let mut up_nudged = Histogram::<u64>::new(3).unwrap();
    for i in 0..SAMPLES * 2 {
        let nudge = i % 2 == 1;
        let actor = format!("lat-{i}");
        let started = Instant::now();
        let row = actor.clone();
        edge.write(move |c| {
            c.execute(
                "INSERT INTO stock_moves (id, store_id, qty, kind, actor) VALUES (?1, 's1', 1, 'count', ?1)",
                [row],
            )
            .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
        if nudge {
            handle.nudge();
        }
        loop {
            let (seen, at) = marks.recv().await.unwrap();
            if seen == actor {
                let micros = at.duration_since(started).as_micros() as u64;
                if nudge {
                    up_nudged.record(micros).unwrap()
                } else {
                    up.record(micros).unwrap()
                }
                break;
            }
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| cloud write -> edge applied, p50 / p99 ({SAMPLES} samples) | {:.1} ms / {:.1} ms |",
        ms(&down, 0.5),
        ms(&down, 0.99)
    );
    println!(
        "| edge write -> cloud applied (client polls every 100 ms), p50 / p99 | {:.1} ms / {:.1} ms |",
        ms(&up, 0.5),
        ms(&up, 0.99)
    );
    println!(
        "| edge write -> cloud applied (edge nudges the client), p50 / p99 | {:.1} ms / {:.1} ms |",
        ms(&up_nudged, 0.5),
        ms(&up_nudged, 0.99)
    );

    client_stop.cancel();
    handle.task.await.unwrap();
    edge.close().await.unwrap();
    drop(replica);
    shutdown.cancel();
    running.wait().await.unwrap();
}
