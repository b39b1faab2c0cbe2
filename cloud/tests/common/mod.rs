//! Shared helpers of the cloud's sync tests: a cloud on a free port, edge databases, writes
//! that look like a store's and the cloud's, and a TCP proxy that breaks connections.
//! [`api`] calls the HTTP API as an admin and a customer; [`city`] is two stores and a cloud
//! with orders moving; [`raw_store`] is a store speaking the
//! sync protocol by hand; [`rm_sql`] reads the read model of a cloud under test on either
//! engine; [`pki`] makes the certificates TLS tests serve; [`postgres`] gives a
//! test its own PostgreSQL database.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod city;
pub mod hq_sql;
pub mod pki;
pub mod postgres;
pub mod raw_store;
pub mod rm_sql;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flashkart_cloud::{Cloud, CloudConfig, RunningCloud};
use flashkart_sync::client::{ClientConfig, SyncStatus};
use flashkart_sync::schema::store::SYNCED_TABLES;
use flashkart_sync::{StoreConfig, StoreDb, content};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "test-admin-token";

pub fn cloud_config(dir: &Path) -> CloudConfig {
    let mut config = CloudConfig::ephemeral(dir.join("cloud"));
    config.admin_token = Some(ADMIN.into());
    config.extension_dir = Some(dir.join("ext"));
    if postgres::backend_is_postgres() {
        config.database_url = Some(postgres::database_for(dir));
    }
    config
}

pub async fn start_cloud(dir: &Path) -> (RunningCloud, CancellationToken) {
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(cloud_config(dir), shutdown.clone())
        .await
        .expect("cloud starts");
    (running, shutdown)
}

pub async fn open_edge(dir: &Path, name: &str) -> StoreDb {
    let mut config = StoreConfig::new(edge_path(dir, name));
    config.extension_dir = Some(dir.join("ext"));
    StoreDb::open(config, flashkart_sync::schema::store::MIGRATIONS)
        .await
        .expect("edge database opens")
}

pub fn edge_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("edge-{name}.db"))
}

/// A client config for tests: short long-polls and fast retries.
pub fn client_config(url: &str, token: &str) -> ClientConfig {
    let mut config = ClientConfig::new(url, token);
    config.long_poll_ms = 1_000;
    config.request_timeout_ms = 5_000;
    config.backoff_initial_ms = 20;
    config.backoff_max_ms = 400;
    config.local_poll_ms = 20;
    config.max_chunk_bytes = 64 << 10;
    config.apply_max_changes = 500;
    config
}

pub async fn digest(db: &StoreDb) -> [u8; 32] {
    db.read(|conn| {
        let tables: Vec<&str> = SYNCED_TABLES.iter().map(|t| t.name).collect();
        content::content_digest(conn, &tables)
    })
    .await
    .unwrap()
}

pub async fn count(db: &StoreDb, sql: impl Into<String>) -> i64 {
    let sql = sql.into();
    db.read(move |conn| {
        conn.query_row(&sql, [], |r| r.get::<_, i64>(0))
            .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap()
}

/// The store records a stock move (an edge-owned, insert-only row).
pub async fn edge_stock_move(db: &StoreDb, store: &str, id: String, qty: i64) {
    let store = store.to_owned();
    db.write(move |conn| {
        conn.execute(
            "INSERT INTO stock_moves (id, store_id, product_id, qty, kind, actor, at)
             VALUES (?1, ?2, 'p1', ?3, 'receive', 'test', '2026-01-01T00:00:00Z')",
            rusqlite::params![id, store, qty],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
}

/// The cloud routes an order to the store (a cloud-owned row in the store's replica).
pub async fn cloud_order(cloud: &Cloud, store: &str, id: String) {
    let replica = cloud.replica(store).await.unwrap();
    let store = store.to_owned();
    replica
        .write(move |conn| {
            conn.execute(
                "INSERT INTO orders (id, store_id, customer_first_name, total_minor, placed_at)
                 VALUES (?1, ?2, 'Ada', 1234, '2026-01-01T00:00:00Z')",
                rusqlite::params![id, store],
            )
            .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
}

/// HQ changes the catalog.
pub async fn cloud_product(cloud: &Cloud, id: String, price: i64) {
    cloud
        .write_catalog(move |conn| {
            conn.execute(
                "INSERT INTO products (id, name) VALUES (?1, 'thing')
                 ON CONFLICT (id) DO UPDATE SET name = 'thing v2'",
                [&id],
            )?;
            conn.execute(
                "INSERT INTO prices (product_id, unit_price_minor) VALUES (?1, ?2)
                 ON CONFLICT (product_id) DO UPDATE SET unit_price_minor = excluded.unit_price_minor",
                rusqlite::params![id, price],
            )
            .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
}

/// Waits (on status updates, bounded by `limit`) until `done` holds.
pub async fn wait_for<F, Fut>(
    status: &mut watch::Receiver<SyncStatus>,
    limit: Duration,
    mut done: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if done().await {
            return;
        }
        match tokio::time::timeout_at(deadline, status.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("sync client stopped"),
            Err(_) => panic!(
                "condition not reached within {limit:?}: {:?}",
                *status.borrow()
            ),
        }
    }
}

/// A TCP proxy between the edges and the cloud that can drop every connection, stall traffic,
/// and be pointed at a restarted cloud.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    generation: Arc<Mutex<CancellationToken>>,
    stalled: watch::Sender<bool>,
    refusing: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            upstream: Arc::new(Mutex::new(upstream)),
            generation: Arc::new(Mutex::new(CancellationToken::new())),
            stalled: watch::Sender::new(false),
            refusing: Arc::new(AtomicBool::new(false)),
        };
        let accepting = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if accepting.refusing.load(Ordering::SeqCst) {
                    continue;
                }
                let upstream = *accepting.upstream.lock().await;
                let cut = accepting.generation.lock().await.clone();
                let stalled = accepting.stalled.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        () = pipe(cr, sw, stalled.clone()) => {}
                        () = pipe(sr, cw, stalled) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every open connection.
    pub async fn drop_all(&self) {
        let mut generation = self.generation.lock().await;
        generation.cancel();
        *generation = CancellationToken::new();
    }

    /// Holds all traffic (connections stay open) until `stall(false)`.
    pub fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }

    /// Refuses new connections (the cloud looks down) until `refuse(false)`.
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }

    pub async fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.lock().await = upstream;
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0_u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while *stalled.borrow_and_update() {
            if stalled.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
