//! The edge's half of the protocol: a task that keeps the store and its cloud replica in step.
//!
//! The edge opens every connection (stores sit behind NAT). A session says hello, then runs two
//! loops over one HTTP/2 connection: push sends the store's own changes from where the cloud
//! acknowledged them, pull long-polls the cloud's changes for the store and merges them in
//! bounded steps with the durable per-origin cursors. Any failure ends the session; the task
//! retries with exponential backoff and full jitter, forever, until shut down, and the store
//! works on offline meanwhile. Progress is published as a [`SyncStatus`] on a watch channel.
//!
//! Start it with [`spawn`] (or drive [`run`] yourself):
//!
//! ```no_run
//! # async fn demo(db: flashkart_sync::StoreDb) -> Result<(), flashkart_sync::client::ClientError> {
//! use flashkart_sync::client::{self, ClientConfig};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let config = ClientConfig::new("http://127.0.0.1:7800", "fks_...token...");
//! let handle = client::spawn(config, db, shutdown.clone())?;
//! let status = handle.status.borrow().clone(); // serde-serialisable, for /api/v1/sync
//! handle.nudge(); // after a local write: push now instead of at the next poll
//! shutdown.cancel();
//! handle.task.await.ok();
//! # let _ = status; Ok(()) }
//! ```

mod config;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flashkart_proto::sync::{
    HelloRequest, HelloResponse, PullRequest, PullResponse, PushRequest, PushResponse,
};
use prost::Message;
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::chunks::{Assembler, ChunkError, Position, read_chunk};
use crate::protocol::{self, WireError};
use crate::{Error, StoreDb, changes, cursors};

pub use config::{ClientConfig, MAX_CHUNK_BYTES};

/// What the edge shows about sync on `/api/v1/sync` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyncStatus {
    /// A session with the cloud is up.
    pub online: bool,
    /// Last time an exchange with the cloud succeeded (Unix milliseconds).
    pub last_success_unix_ms: Option<u64>,
    /// Local changes not yet acknowledged by the cloud (estimate while catching up).
    pub lag_changes: u64,
    /// Seconds since the store was last fully caught up both ways (0 when it is), as of the
    /// last update; `behind_since_unix_ms` gives the live figure.
    pub lag_seconds: f64,
    pub behind_since_unix_ms: Option<u64>,
    /// Why the last session ended, if it failed.
    pub last_error: Option<String>,
    /// The store's own db_version the cloud has durably applied.
    pub acked_db_version: i64,
    /// Totals since start.
    pub pushed_changes: u64,
    pub pulled_changes: u64,
    /// Pull answers that left nothing more to pull: after one, the store has merged everything
    /// the cloud had for it when it answered (a restored edge waits for this, see
    /// edge/src/backup).
    pub complete_pulls: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub sessions: u64,
}

/// A client that cannot start (bad configuration). Transport failures are retried, not
/// returned.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cloud_url `{0}` is not an http(s) URL")]
    BadUrl(String),
    #[error(
        "max_chunk_bytes {0} is outside 1 KiB..={MAX_CHUNK_BYTES} (the cloud refuses bigger pushes)"
    )]
    ChunkSize(usize),
    #[error("CA certificate {path}: {message}")]
    CaCert { path: PathBuf, message: String },
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Store(#[from] Error),
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("cloud answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    #[error("cloud sent an unusable chunk: {0}")]
    Chunk(#[from] ChunkError),
    #[error("cloud answer lacks {0}")]
    Missing(&'static str),
    #[error("store: {0}")]
    Store(#[from] Error),
}

/// A running sync client.
#[derive(Debug)]
pub struct SyncHandle {
    pub status: watch::Receiver<SyncStatus>,
    pub task: JoinHandle<()>,
    nudge: Arc<Notify>,
}

impl SyncHandle {
    /// Tells the client there are new local changes, so it pushes them at once.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// A cheap handle for writers to nudge the client.
    pub fn nudger(&self) -> Arc<Notify> {
        self.nudge.clone()
    }
}

/// Starts the client as a task on the current runtime; it stops when `shutdown` is cancelled.
pub fn spawn(
    config: ClientConfig,
    db: StoreDb,
    shutdown: CancellationToken,
) -> Result<SyncHandle, ClientError> {
    let (status_tx, status) = watch::channel(SyncStatus::default());
    let nudge = Arc::new(Notify::new());
    let client = Client::new(config, db, status_tx, nudge.clone())?;
    let task = tokio::spawn(client.run(shutdown));
    Ok(SyncHandle {
        status,
        task,
        nudge,
    })
}

/// Runs the client until `shutdown` is cancelled, publishing progress on `status`.
pub async fn run(
    config: ClientConfig,
    db: StoreDb,
    shutdown: CancellationToken,
    status: watch::Sender<SyncStatus>,
) -> Result<(), ClientError> {
    Client::new(config, db, status, Arc::new(Notify::new()))?
        .run(shutdown)
        .await;
    Ok(())
}

struct Client {
    config: ClientConfig,
    base: String,
    http: reqwest::Client,
    db: StoreDb,
    site: [u8; 16],
    status: watch::Sender<SyncStatus>,
    nudge: Arc<Notify>,
    lag: std::sync::Mutex<Lag>,
}

/// Whether each direction is caught up, and since when the store has not been.
#[derive(Debug)]
struct Lag {
    push_done: bool,
    pull_done: bool,
    behind_since: Option<(Instant, u64)>,
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Push,
    Pull,
}

impl Client {
    fn new(
        config: ClientConfig,
        db: StoreDb,
        status: watch::Sender<SyncStatus>,
        nudge: Arc<Notify>,
    ) -> Result<Self, ClientError> {
        let base = config.cloud_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl(config.cloud_url.clone()));
        }
        if !(1 << 10..=MAX_CHUNK_BYTES).contains(&config.max_chunk_bytes) {
            return Err(ClientError::ChunkSize(config.max_chunk_bytes));
        }
        let mut builder = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(config.request_timeout_ms.min(10_000)))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .http2_keep_alive_while_idle(true)
            .pool_idle_timeout(Duration::from_secs(60));
        if config.http2_prior_knowledge {
            builder = builder.http2_prior_knowledge();
        }
        if let Some(path) = &config.ca_cert {
            let ca_error = |message: String| ClientError::CaCert {
                path: path.clone(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        let site = db.site_id();
        Ok(Self {
            http: builder.build()?,
            base,
            config,
            db,
            site,
            status,
            nudge,
            lag: std::sync::Mutex::new(Lag {
                push_done: false,
                pull_done: false,
                behind_since: Some((Instant::now(), now_ms())),
            }),
        })
    }

    async fn run(self, shutdown: CancellationToken) {
        if let Err(error) = self.db.write(cursors::ensure_table).await {
            tracing::error!(%error, "sync client cannot create its cursor table; not syncing");
            self.status
                .send_modify(|s| s.last_error = Some(format!("store: {error}")));
            return;
        }
        let mut failures: u32 = 0;
        loop {
            let outcome = tokio::select! {
                outcome = self.session(&mut failures) => outcome,
                () = shutdown.cancelled() => break,
            };
            if let Err(error) = outcome {
                failures = failures.saturating_add(1);
                let delay = self.backoff(failures);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "sync session ended");
                self.status.send_modify(|s| {
                    s.online = false;
                    s.last_error = Some(error.to_string());
                });
                self.track(Direction::Push, false);
                self.track(Direction::Pull, false);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
        self.status.send_modify(|s| s.online = false);
        tracing::info!("sync client stopped");
    }

    /// Exponential backoff with full jitter: uniform in [0, min(max, initial * 2^failures)].
    fn backoff(&self, failures: u32) -> Duration {
        let cap = self
            .config
            .backoff_initial_ms
            .saturating_mul(1_u64 << failures.min(20))
            .min(self.config.backoff_max_ms)
            .max(1);
        Duration::from_millis(rand::rng().random_range(cap / 4..=cap))
    }

    async fn session(&self, failures: &mut u32) -> Result<(), SessionError> {
        let hello: HelloResponse = self
            .call(
                protocol::HELLO_PATH,
                &HelloRequest {
                    edge_site_id: self.site.to_vec(),
                    schema_version: self.db.schema_version(),
                },
                self.config.request_timeout_ms,
            )
            .await?;
        let acked = hello.acked.as_ref().ok_or(SessionError::Missing("acked"))?;
        *failures = 0;
        tracing::info!(store = %hello.store_id, acked_db_version = acked.db_version, "sync session up");
        self.status.send_modify(|s| {
            s.online = true;
            s.sessions += 1;
            s.acked_db_version = acked.db_version;
            s.last_success_unix_ms = Some(now_ms());
        });
        let start = Position::of(acked);
        let push = self.push_loop(start);
        let pull = self.pull_loop();
        tokio::try_join!(push, pull).map(|_| ())
    }

    async fn push_loop(&self, acked: Position) -> Result<(), SessionError> {
        let mut position = acked;
        let mut caught_up = false;
        let mut counted_at: Option<Instant> = None;
        loop {
            let site = self.site;
            let max = self.config.max_chunk_bytes;
            let read = self
                .db
                .read(move |conn| read_chunk(conn, &site, position, max))
                .await?;
            let Some(read) = read else {
                if !caught_up {
                    caught_up = true;
                    self.status.send_modify(|s| s.lag_changes = 0);
                    self.track(Direction::Push, true);
                }
                tokio::select! {
                    () = self.nudge.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(self.config.local_poll_ms)) => {}
                }
                continue;
            };
            if caught_up {
                caught_up = false;
                self.track(Direction::Push, false);
            }
            let full = read.full;
            let sent = read
                .chunk
                .batch
                .as_ref()
                .map_or(0, |b| b.changes.len() as u64);
            let request = PushRequest {
                chunk: Some(read.chunk),
            };
            let response: PushResponse = match self
                .call(
                    protocol::PUSH_PATH,
                    &request,
                    self.config.request_timeout_ms,
                )
                .await
            {
                Ok(response) => response,
                Err(SessionError::Status { status, .. }) if status == StatusCode::CONFLICT => {
                    // The cloud lost a half-assembled transaction (restart): resume from what
                    // it has durably applied.
                    let response: PushResponse = self.last_conflict().await?;
                    let acked = response.acked.ok_or(SessionError::Missing("acked"))?;
                    position = Position::of(&acked);
                    continue;
                }
                Err(other) => return Err(other),
            };
            let received = response.received.ok_or(SessionError::Missing("received"))?;
            let acked = response.acked.ok_or(SessionError::Missing("acked"))?;
            position = Position::of(&received);
            // Counting what is left scans it: do it at the tail of a catch-up or once a second.
            let recount =
                !full || counted_at.is_none_or(|at| at.elapsed() > Duration::from_secs(1));
            let queued = if recount {
                counted_at = Some(Instant::now());
                self.db
                    .read(move |conn| count_local(conn, &site, position))
                    .await?
            } else {
                self.status.borrow().lag_changes.saturating_sub(sent)
            };
            self.status.send_modify(|s| {
                s.acked_db_version = acked.db_version;
                s.pushed_changes += sent;
                s.lag_changes = queued;
                s.last_success_unix_ms = Some(now_ms());
            });
        }
    }

    /// Asks again where the cloud stands after a conflict (a hello is cheap and authoritative).
    async fn last_conflict(&self) -> Result<PushResponse, SessionError> {
        let hello: HelloResponse = self
            .call(
                protocol::HELLO_PATH,
                &HelloRequest {
                    edge_site_id: self.site.to_vec(),
                    schema_version: self.db.schema_version(),
                },
                self.config.request_timeout_ms,
            )
            .await?;
        Ok(PushResponse {
            acked: hello.acked.clone(),
            received: hello.acked,
            applied: 0,
        })
    }

    async fn pull_loop(&self) -> Result<(), SessionError> {
        let durable = self.db.read(cursors::load_all).await?;
        let mut assemblers: HashMap<[u8; 16], Assembler> = HashMap::new();
        for cursor in durable {
            if let Ok(origin) = <[u8; 16]>::try_from(cursor.origin_site_id.as_slice()) {
                assemblers.insert(origin, self.assembler(origin, Position::of(&cursor)));
            }
        }
        loop {
            let request = PullRequest {
                cursors: assemblers
                    .values()
                    .map(|a| a.received().cursor(a.origin()))
                    .collect(),
                wait_ms: u32::try_from(self.config.long_poll_ms).unwrap_or(u32::MAX),
                max_bytes: u32::try_from(self.config.max_chunk_bytes).unwrap_or(u32::MAX),
            };
            let timeout = self.config.long_poll_ms + self.config.request_timeout_ms;
            let response: PullResponse = self.call(protocol::PULL_PATH, &request, timeout).await?;
            let mut pulled = 0_u64;
            for chunk in response.chunks {
                let origin: [u8; 16] = chunk
                    .after
                    .as_ref()
                    .and_then(|c| c.origin_site_id.as_slice().try_into().ok())
                    .ok_or(SessionError::Missing("chunk origin"))?;
                let assembler = assemblers
                    .entry(origin)
                    .or_insert_with(|| self.assembler(origin, Position::START));
                let after = assembler.received();
                let Some(complete) = assembler.add(chunk)? else {
                    continue;
                };
                let mut from = after;
                for part in complete.split(self.config.apply_max_changes) {
                    let batch = part.batch(&origin, from);
                    let last = part.last;
                    pulled += part.changes.len() as u64;
                    self.db
                        .write(move |conn| -> Result<(), Error> {
                            changes::apply_in_transaction(conn, &batch)?;
                            cursors::advance(conn, &origin, last)
                        })
                        .await?;
                    from = last;
                }
            }
            let complete = !response.more;
            self.status.send_modify(|s| {
                s.pulled_changes += pulled;
                s.complete_pulls += u64::from(complete);
                s.last_success_unix_ms = Some(now_ms());
            });
            self.track(Direction::Pull, !response.more);
        }
    }

    fn assembler(&self, origin: [u8; 16], at: Position) -> Assembler {
        Assembler::new(origin, at, self.config.max_chunk_bytes.saturating_mul(256))
    }

    /// Records whether `direction` is caught up, and publishes the lag.
    fn track(&self, direction: Direction, done: bool) {
        let Ok(mut lag) = self.lag.lock() else {
            return;
        };
        match direction {
            Direction::Push => lag.push_done = done,
            Direction::Pull => lag.pull_done = done,
        }
        if lag.push_done && lag.pull_done {
            lag.behind_since = None;
        } else if lag.behind_since.is_none() {
            lag.behind_since = Some((Instant::now(), now_ms()));
        }
        let behind = lag.behind_since;
        drop(lag);
        self.status.send_modify(|s| {
            s.lag_seconds = behind.map_or(0.0, |(at, _)| at.elapsed().as_secs_f64());
            s.behind_since_unix_ms = behind.map(|(_, ms)| ms);
        });
    }

    /// Sends one request and decodes the answer.
    async fn call<Req: Message, Resp: Message + Default>(
        &self,
        path: &str,
        request: &Req,
        timeout_ms: u64,
    ) -> Result<Resp, SessionError> {
        let body = protocol::encode(request, self.config.compress_min_bytes)?;
        let sent = body.bytes.len() as u64;
        let mut builder = self
            .http
            .post(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.config.token))
            .header(CONTENT_TYPE, protocol::CONTENT_TYPE)
            .header(ACCEPT_ENCODING, protocol::ZSTD)
            .timeout(Duration::from_millis(timeout_ms));
        if body.compressed {
            builder = builder.header(CONTENT_ENCODING, protocol::ZSTD);
        }
        let response = builder.body(body.bytes).send().await?;
        let status = response.status();
        let compressed = response
            .headers()
            .get(CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() == protocol::ZSTD.as_bytes());
        let bytes = response.bytes().await?;
        self.status.send_modify(|s| {
            s.bytes_sent += sent;
            s.bytes_received += bytes.len() as u64;
        });
        if !status.is_success() {
            return Err(SessionError::Status {
                status,
                message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            });
        }
        Ok(protocol::decode(&bytes, compressed)?)
    }
}

/// Local changes after `after` not yet pushed.
fn count_local(
    conn: &rusqlite::Connection,
    site: &[u8; 16],
    after: Position,
) -> Result<u64, Error> {
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM crsql_changes
         WHERE db_version >= ?1 AND (site_id IS ?2 OR site_id IS NULL)
           AND (db_version > ?1 OR seq > ?3)",
        rusqlite::params![after.db_version, site.as_slice(), after.seq],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(count).unwrap_or(0))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
