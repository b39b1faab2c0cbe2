//! The cloud's half of the protocol for one store: its replica, transport aside.
//!
//! The cloud keeps one [`Replica`] per store. It answers the edge's hello with how far the
//! edge's changes are applied, assembles pushed chunks into whole transactions, authorises and
//! applies them together with the durable cursor, and serves the cloud's changes for the store
//! per origin (the replica's own writes, the catalog fanned out into it) with a long-poll woken
//! by every write. HTTP lives in the cloud crate; everything here is testable without it.

use std::time::Duration;

use flashkart_proto::sync::{
    Chunk, HelloRequest, HelloResponse, PullRequest, PullResponse, PushResponse,
};
use rusqlite::Connection;
use tokio::sync::{Mutex, watch};

use crate::authorize::{AuthorizeError, Violation, authorize, verify_merged};
use crate::chunks::{Assembler, ChunkError, Complete, Position, read_chunk};
use crate::schema::Owner;
use crate::schema::store::synced_table;
use crate::{Error, StoreDb, change_log, changes, cursors};

/// Limits of the replica side.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaLimits {
    /// Longest long-poll the server grants.
    pub max_wait: Duration,
    /// Largest answer to a pull, in encoded change bytes.
    pub max_pull_bytes: usize,
    /// Largest transaction held while its chunks arrive.
    pub max_pending_bytes: usize,
}

impl Default for ReplicaLimits {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_secs(30),
            max_pull_bytes: 4 << 20,
            max_pending_bytes: 256 << 20,
        }
    }
}

/// Why a sync request failed; the transport maps each kind to a status.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The request does not fit where the replica stands; the client resumes from `acked`.
    #[error("{reason}; resume from the acknowledged position")]
    Resume { reason: String, acked: PushResponse },
    /// The batch holds a change the store may not make; nothing of it was applied.
    #[error("refused: {0}")]
    Forbidden(#[from] Violation),
    /// This replica is bound to another edge database.
    #[error("this store is bound to another edge database (site {bound})")]
    WrongSite { bound: String },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("a transaction in assembly exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Store(#[from] Error),
}

/// What a successful push did, for the caller's metrics and read model.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub response: PushResponse,
    /// The changes applied by this push (whole transactions), if any.
    pub applied: Option<Complete>,
}

/// One store's replica in the cloud.
#[derive(Debug)]
pub struct Replica {
    store_id: String,
    db: StoreDb,
    limits: ReplicaLimits,
    /// Bumped after every committed write, waking long-polls.
    changed: watch::Sender<u64>,
    /// The edge's transaction being assembled, and the edge's site.
    push: Mutex<Option<Assembler>>,
}

impl Replica {
    /// Wraps an open replica database of `store_id`.
    pub async fn new(store_id: String, db: StoreDb, limits: ReplicaLimits) -> Result<Self, Error> {
        db.write(cursors::ensure_table).await?;
        Ok(Self {
            store_id,
            db,
            limits,
            changed: watch::Sender::new(0),
            push: Mutex::new(None),
        })
    }

    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    pub fn db(&self) -> &StoreDb {
        &self.db
    }

    /// Writes into the replica (the cloud's own rows for this store) and wakes the store's
    /// long-poll once committed.
    pub async fn write<T, E, F>(&self, write: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let result = self.db.write(write).await;
        self.notify();
        result
    }

    /// Wakes long-polls (after a write that did not go through [`Replica::write`]).
    pub fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Answers the edge's hello; any half-assembled transaction of an earlier session is dropped.
    pub async fn hello(
        &self,
        request: &HelloRequest,
        bound_site: &[u8; 16],
    ) -> Result<HelloResponse, ServerError> {
        let edge = site(&request.edge_site_id)?;
        check_site(&edge, bound_site)?;
        let acked = self.db.read(move |conn| cursors::load(conn, &edge)).await?;
        *self.push.lock().await = None;
        Ok(HelloResponse {
            store_id: self.store_id.clone(),
            replica_site_id: self.db.site_id().to_vec(),
            acked: Some(acked.cursor(&edge)),
            schema_version: self.db.schema_version(),
        })
    }

    /// Takes a chunk of the edge's changes; applies the transactions it completes after
    /// checking every change, or refuses them all.
    pub async fn push(&self, chunk: Chunk, edge: &[u8; 16]) -> Result<Pushed, ServerError> {
        let mut slot = self.push.lock().await;
        let assembler = match slot.take() {
            Some(assembler) if assembler.origin() == edge => assembler,
            _ => {
                let origin = *edge;
                let durable = self
                    .db
                    .read(move |conn| cursors::load(conn, &origin))
                    .await?;
                Assembler::new(*edge, durable, self.limits.max_pending_bytes)
            }
        };
        let mut assembler = assembler;
        let before = assembler.received();
        let durable_before = self.acked(edge).await?;
        let complete = match assembler.add(chunk) {
            Ok(complete) => complete,
            Err(ChunkError::OutOfOrder { got, .. }) => {
                return Err(ServerError::Resume {
                    reason: format!("chunk continues from {got:?}, replica is at {before:?}"),
                    acked: self.response(edge, durable_before, durable_before, 0),
                });
            }
            Err(ChunkError::TooLarge { limit }) => return Err(ServerError::TooLarge { limit }),
            Err(other) => return Err(ServerError::BadRequest(other.to_string())),
        };
        let received = assembler.received();
        let Some(complete) = complete else {
            *slot = Some(assembler);
            return Ok(Pushed {
                response: self.response(edge, durable_before, received, 0),
                applied: None,
            });
        };
        let batch = complete.batch(edge, durable_before);
        let store_id = self.store_id.clone();
        let origin = *edge;
        let last = complete.last;
        let applied = self
            .db
            .write(move |conn| -> Result<u64, AuthorizeError> {
                // Validated first: authorize decodes keys and looks rows up by them.
                changes::validate(conn, &batch)?;
                authorize(conn, &store_id, &origin, &batch.changes)?;
                let stats = changes::merge_validated(conn, &batch)?;
                verify_merged(conn, &store_id, &batch.changes)?;
                cursors::advance(conn, &origin, last)?;
                Ok(stats.applied)
            })
            .await;
        let applied = match applied {
            Ok(applied) => applied,
            Err(AuthorizeError::Forbidden(violation)) => {
                tracing::warn!(store = %self.store_id, %violation, "push refused; nothing applied");
                return Err(violation.into());
            }
            Err(AuthorizeError::Store(Error::Batch(invalid))) => {
                tracing::warn!(store = %self.store_id, %invalid, "push malformed; nothing applied");
                return Err(ServerError::BadRequest(invalid.to_string()));
            }
            Err(AuthorizeError::Store(error)) => return Err(error.into()),
        };
        *slot = Some(assembler);
        drop(slot);
        Ok(Pushed {
            response: self.response(edge, last, received, applied),
            applied: Some(complete),
        })
    }

    async fn acked(&self, edge: &[u8; 16]) -> Result<Position, Error> {
        let origin = *edge;
        self.db.read(move |conn| cursors::load(conn, &origin)).await
    }

    fn response(
        &self,
        edge: &[u8; 16],
        acked: Position,
        received: Position,
        applied: u64,
    ) -> PushResponse {
        PushResponse {
            acked: Some(acked.cursor(edge)),
            received: Some(received.cursor(edge)),
            applied,
        }
    }

    /// Serves the cloud's changes for the store after the edge's cursors, waiting up to the
    /// request's `wait_ms` (capped) for some to appear.
    pub async fn pull(
        &self,
        request: PullRequest,
        edge: &[u8; 16],
    ) -> Result<PullResponse, ServerError> {
        let wait = Duration::from_millis(u64::from(request.wait_ms)).min(self.limits.max_wait);
        let max_bytes = usize::try_from(request.max_bytes)
            .unwrap_or(usize::MAX)
            .clamp(1, self.limits.max_pull_bytes);
        let mut positions = Vec::with_capacity(request.cursors.len());
        for cursor in &request.cursors {
            positions.push((site(&cursor.origin_site_id)?, Position::of(cursor)));
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut changed = self.changed.subscribe();
        loop {
            changed.mark_unchanged();
            let edge = *edge;
            let positions = positions.clone();
            let response = self
                .db
                .read(move |conn| read_for_edge(conn, &edge, &positions, max_bytes))
                .await?;
            if !response.chunks.is_empty() {
                return Ok(response);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Ok(response),
            }
        }
    }

    /// Merges `source`'s own changes to the shared catalog into this replica, from where it
    /// last stopped, and wakes the store's long-poll. Returns how many changes were merged.
    pub async fn merge_catalog(&self, source: &StoreDb, max_bytes: usize) -> Result<usize, Error> {
        let origin = source.site_id();
        let mut assembler = Assembler::new(
            origin,
            self.db
                .read(move |conn| cursors::load(conn, &origin))
                .await?,
            self.limits.max_pending_bytes,
        );
        let mut merged = 0;
        loop {
            let after = assembler.received();
            let Some(read) = source
                .read(move |conn| read_chunk(conn, &origin, after, max_bytes))
                .await?
            else {
                break;
            };
            let full = read.full;
            let complete = assembler
                .add(read.chunk)
                .map_err(|e| Error::Commit(format!("catalog chunk: {e}")))?;
            if let Some(complete) = complete {
                if let Some(bad) = complete.changes.iter().find(|c| {
                    synced_table(&c.table)
                        .is_none_or(|t| t.owner != Owner::Cloud || t.store_column.is_some())
                }) {
                    return Err(Error::Commit(format!(
                        "catalog database holds a change to `{}`, which is not a shared \
                         catalog table",
                        bad.table
                    )));
                }
                merged += complete.changes.len();
                let batch = complete.batch(&origin, after);
                let last = complete.last;
                self.db
                    .write(move |conn| -> Result<(), Error> {
                        changes::apply_in_transaction(conn, &batch)?;
                        cursors::advance(conn, &origin, last)
                    })
                    .await?;
                self.notify();
            }
            if !full {
                break;
            }
        }
        Ok(merged)
    }
}

/// Chunks of every origin the replica holds except the edge itself.
fn read_for_edge(
    conn: &Connection,
    edge: &[u8; 16],
    positions: &[([u8; 16], Position)],
    max_bytes: usize,
) -> Result<PullResponse, Error> {
    let mut response = PullResponse::default();
    let mut budget = max_bytes;
    for origin in change_log::origins(conn)? {
        if &origin == edge {
            continue;
        }
        if budget == 0 {
            response.more = true;
            break;
        }
        let after = positions
            .iter()
            .find(|(o, _)| *o == origin)
            .map_or(Position::START, |(_, p)| *p);
        if let Some(read) = read_chunk(conn, &origin, after, budget)? {
            let size = read
                .chunk
                .batch
                .as_ref()
                .map_or(0, prost::Message::encoded_len);
            budget = budget.saturating_sub(size);
            response.more |= read.full;
            response.chunks.push(read.chunk);
        }
    }
    Ok(response)
}

fn site(bytes: &[u8]) -> Result<[u8; 16], ServerError> {
    bytes
        .try_into()
        .map_err(|_| ServerError::BadRequest("a site id is 16 bytes".into()))
}

fn check_site(edge: &[u8; 16], bound: &[u8; 16]) -> Result<(), ServerError> {
    if edge != bound {
        return Err(ServerError::WrongSite {
            bound: crate::store::hex(bound),
        });
    }
    Ok(())
}
