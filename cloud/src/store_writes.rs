//! The cloud's own writes into a store's replica (its row, its riders and their enrolment
//! codes, the orders routed to it, cancellation requests, offers to its riders), kept as data so that any instance can make
//! them.
//!
//! With one instance a write is applied to the store's replica at once, as it always was. With
//! several instances on PostgreSQL a store's replica is a file of whichever instance holds its
//! lease (`leases.rs`), and the holder changes: an order placed at one instance may be for a
//! store another instance serves, and a new holder starts from a replica without the rows the
//! old one wrote. So every write is appended to the store's journal in PostgreSQL
//! (`store_writes`, numbered per store under a lock on the store's head row, so entries commit
//! in the order of their numbers) and the holder applies the journal to its replica: at once
//! when the writer holds the store (or nobody does: then the writer's replica takes them),
//! within [`POLL`] otherwise, and before it answers a store's hello, so a new holder's replica has every order and offer the store already has before the
//! store pushes anything that refers to them (the projector believes a store only about orders
//! and offers its replica holds).
//!
//! A replica's position in the journal is kept per replica (its site id), as the projection's
//! cursors are, and moves only after the replica committed what it covers. Every write is
//! idempotent (inserts leave a row that is there, upserts write the same values), so an entry
//! applied twice after a crash, or a whole journal applied to a new replica, changes nothing
//! the store has: the same values under a new site merge as no change at the edge.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flashkart_sync::cloud_writes::{
    self, AssignmentRow, OrderLineRow, OrderRow, RiderRow, StoreRow,
};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::leases::Leases;
use crate::postgres::{self, Postgres};
use crate::stores::Stores;

/// How often an instance looks for journal entries of the stores it holds that another
/// instance wrote.
pub const POLL: Duration = Duration::from_millis(250);

/// Entries applied to a replica per transaction.
const STEP: i64 = 500;

const MIGRATIONS: &[postgres::Migration] = &[postgres::Migration {
    version: 1,
    name: "store write journal",
    sql: "
    -- The last entry number of each store's journal; its row lock orders appends.
    CREATE TABLE store_write_heads (
        store_id TEXT PRIMARY KEY NOT NULL,
        last_seq BIGINT NOT NULL
    );
    CREATE TABLE store_writes (
        store_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        -- a StoreWrite as JSON
        entry TEXT NOT NULL,
        -- the order an Order entry routes to the store (is it there? without its replica)
        order_id TEXT,
        written_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (store_id, seq)
    );
    CREATE INDEX store_writes_orders ON store_writes (store_id, order_id)
        WHERE order_id IS NOT NULL;
    -- How far each replica (site id) of a store has applied its journal.
    CREATE TABLE store_write_cursors (
        store_id TEXT NOT NULL,
        replica BYTEA NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (store_id, replica)
    );
    ",
}];

/// One cloud-owned write into a store's replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "write", rename_all = "snake_case")]
pub enum StoreWrite {
    /// The store's own row: its name and place.
    Store {
        id: String,
        name: String,
        lat: f64,
        lon: f64,
    },
    /// A rider on the store's roster.
    Rider {
        id: String,
        home_store_id: String,
        name: String,
        vehicle: String,
        active: bool,
    },
    /// An order routed to the store, with its lines.
    Order { order: Order, lines: Vec<OrderLine> },
    /// A request to cancel an order (the first one stands; the store cancels unless the order
    /// has left it).
    CancelRequest {
        order_id: String,
        at: String,
        reason: String,
    },
    /// An offer of an order to a rider.
    Assignment {
        id: String,
        order_id: String,
        rider_id: String,
        offered_at: String,
        expires_at: String,
    },
    /// A rider's phone enrolment code (its SHA-256) and expiry, replacing any earlier one. The
    /// rider's row is the store's already: their `Rider` upsert is earlier in this journal.
    EnrolmentCode {
        rider_id: String,
        code_sha256: String,
        expires_at: String,
    },
}

/// [`OrderRow`], owned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_first_name: String,
    pub address: String,
    pub lat: f64,
    pub lon: f64,
    pub delivery_slot: Option<String>,
    pub total_minor: i64,
    pub placed_at: String,
    pub routed_at: String,
    pub delivery_pin_sha256: Option<String>,
    pub contactless: bool,
    pub payment_method: String,
    pub cash_due_minor: i64,
    pub currency: String,
}

/// [`OrderLineRow`], owned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub line_no: i64,
    pub product_id: String,
    pub qty: i64,
    pub unit_price_minor: i64,
}

impl StoreWrite {
    /// Applies the write to `store_id`'s replica.
    pub fn apply(
        &self,
        conn: &rusqlite::Connection,
        store_id: &str,
    ) -> Result<(), flashkart_sync::Error> {
        match self {
            StoreWrite::Store { id, name, lat, lon } => cloud_writes::upsert_store(
                conn,
                &StoreRow {
                    id,
                    name,
                    lat: *lat,
                    lon: *lon,
                },
            ),
            StoreWrite::Rider {
                id,
                home_store_id,
                name,
                vehicle,
                active,
            } => cloud_writes::upsert_rider(
                conn,
                &RiderRow {
                    id,
                    home_store_id,
                    name,
                    vehicle,
                    active: *active,
                },
            ),
            StoreWrite::Order { order, lines } => {
                cloud_writes::insert_order(
                    conn,
                    &OrderRow {
                        id: &order.id,
                        store_id,
                        customer_first_name: &order.customer_first_name,
                        address: &order.address,
                        lat: order.lat,
                        lon: order.lon,
                        delivery_slot: order.delivery_slot.as_deref(),
                        total_minor: order.total_minor,
                        placed_at: &order.placed_at,
                        routed_at: &order.routed_at,
                        delivery_pin_sha256: order.delivery_pin_sha256.as_deref(),
                        contactless: order.contactless,
                        payment_method: &order.payment_method,
                        cash_due_minor: order.cash_due_minor,
                        currency: &order.currency,
                    },
                )?;
                for line in lines {
                    cloud_writes::insert_order_line(
                        conn,
                        &OrderLineRow {
                            order_id: &order.id,
                            line_no: line.line_no,
                            store_id,
                            product_id: &line.product_id,
                            qty: line.qty,
                            unit_price_minor: line.unit_price_minor,
                        },
                    )?;
                }
                Ok(())
            }
            StoreWrite::CancelRequest {
                order_id,
                at,
                reason,
            } => cloud_writes::request_cancel(conn, order_id, at, reason),
            StoreWrite::Assignment {
                id,
                order_id,
                rider_id,
                offered_at,
                expires_at,
            } => cloud_writes::insert_assignment(
                conn,
                &AssignmentRow {
                    id,
                    store_id,
                    order_id,
                    rider_id,
                    offered_at,
                    expires_at,
                },
            ),
            StoreWrite::EnrolmentCode {
                rider_id,
                code_sha256,
                expires_at,
            } => {
                // Without the rider's row (a roster older than the journal) there is nothing
                // to set: PUTting the rider again writes it, and a new code then applies.
                if !cloud_writes::set_enrolment_code(conn, rider_id, code_sha256, expires_at)? {
                    tracing::warn!(
                        store = store_id,
                        rider = %rider_id,
                        "enrolment code for a rider the store's replica does not have"
                    );
                }
                Ok(())
            }
        }
    }
}

/// Makes the cloud's writes into stores' replicas, directly or through the journal.
#[derive(Debug)]
pub struct StoreWrites {
    stores: Arc<Stores>,
    shared: Option<Shared>,
}

/// The journal and what this instance has applied of it.
#[derive(Debug)]
struct Shared {
    pg: Postgres,
    leases: Arc<Leases>,
    /// Per store: the journal position this instance's replica has applied (known once read
    /// or written), behind a lock held while applying, so two catch-ups of one store do not
    /// interleave.
    applied: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<i64>>>>>,
}

impl StoreWrites {
    /// Writes straight into the replicas: one instance.
    pub fn direct(stores: Arc<Stores>) -> Self {
        Self {
            stores,
            shared: None,
        }
    }

    /// Writes through the journal in PostgreSQL (its tables migrated first): several instances.
    pub async fn journaled(
        stores: Arc<Stores>,
        pg: Postgres,
        leases: Arc<Leases>,
    ) -> Result<Self, CloudError> {
        pg.migrate("store_writes", MIGRATIONS).await?;
        Ok(Self {
            stores,
            shared: Some(Shared {
                pg,
                leases,
                applied: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Makes `writes` in `store_id`'s replica, all or none. With the journal they are durable
    /// when this returns and in the replica the store pulls from as soon as its holder applies
    /// them (before this returns when that is this instance).
    pub async fn write(&self, store_id: &str, writes: Vec<StoreWrite>) -> Result<(), CloudError> {
        let Some(shared) = &self.shared else {
            let replica = self.stores.replica(store_id).await?;
            let store = store_id.to_owned();
            replica
                .write(move |conn| {
                    writes
                        .iter()
                        .try_for_each(|write| write.apply(conn, &store))
                })
                .await?;
            return Ok(());
        };
        let entries = writes
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CloudError::Postgres(format!("store write: {e}")))?;
        let count = i64::try_from(entries.len())
            .map_err(|_| CloudError::Postgres("too many store writes at once".into()))?;
        {
            let mut client = shared.pg.client().await?;
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO store_write_heads (store_id, last_seq) VALUES ($1, 0)
                 ON CONFLICT (store_id) DO NOTHING",
                &[&store_id],
            )
            .await?;
            // Locks the head until the commit: the next writer numbers after these entries
            // and commits after them.
            let last: i64 = tx
                .query_one(
                    "UPDATE store_write_heads SET last_seq = last_seq + $2 WHERE store_id = $1
                     RETURNING last_seq",
                    &[&store_id, &count],
                )
                .await?
                .get(0);
            let first = last - count + 1;
            for (n, (entry, write)) in (first..).zip(entries.iter().zip(&writes)) {
                let order_id = match write {
                    StoreWrite::Order { order, .. } => Some(order.id.as_str()),
                    _ => None,
                };
                tx.execute(
                    "INSERT INTO store_writes (store_id, seq, entry, order_id)
                     VALUES ($1, $2, $3, $4)",
                    &[&store_id, &n, entry, &order_id],
                )
                .await?;
            }
            tx.commit().await?;
        }
        // Committed: the writes are made whatever happens next. Applying them here is only
        // the fast path; the poll retries what fails. A store no instance serves right now
        // (not connected yet, or away) gets them in this instance's replica too, so that the
        // replica is current if the store comes back here; whoever it comes back to catches up
        // before answering it.
        let here = shared.leases.held().contains_key(store_id) || !self.leased(store_id).await?;
        if here && let Err(error) = self.catch_up(store_id).await {
            tracing::warn!(store = store_id, %error, "store writes journaled, not applied yet");
        }
        Ok(())
    }

    /// Whether `order_id` was ever routed to `store_id` (an order that left a store stays in
    /// its replica, cancelled). Read from the journal with several instances, since this
    /// instance's replica of the store may not be the one the store syncs with.
    pub async fn routed_there(&self, store_id: &str, order_id: &str) -> Result<bool, CloudError> {
        if let Some(shared) = &self.shared {
            return Ok(shared
                .pg
                .client()
                .await?
                .query_opt(
                    "SELECT 1 FROM store_writes WHERE store_id = $1 AND order_id = $2 LIMIT 1",
                    &[&store_id, &order_id],
                )
                .await?
                .is_some());
        }
        let replica = self.stores.replica(store_id).await?;
        let order_id = order_id.to_owned();
        Ok(replica
            .db()
            .read(move |conn| {
                conn.prepare_cached("SELECT 1 FROM orders WHERE id = ?1")?
                    .query_row([order_id], |_| Ok(()))
                    .optional()
                    .map_err(flashkart_sync::Error::from)
            })
            .await?
            .is_some())
    }

    /// Whether any instance holds `store_id`'s lease now.
    async fn leased(&self, store_id: &str) -> Result<bool, CloudError> {
        let Some(shared) = &self.shared else {
            return Ok(false);
        };
        Ok(shared
            .pg
            .client()
            .await?
            .query_opt(
                "SELECT 1 FROM store_leases WHERE store_id = $1 AND expires_at > now()",
                &[&store_id],
            )
            .await?
            .is_some())
    }

    /// Applies what `store_id`'s journal has beyond this instance's replica of it; how many
    /// entries. Nothing to do without the journal. Called by the holder, and by a writer for a
    /// store nobody holds: another instance's replica of a held store is not the one the
    /// store pulls, and is brought up to date when the store comes to it.
    pub async fn catch_up(&self, store_id: &str) -> Result<usize, CloudError> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        let position = {
            let mut applied = shared
                .applied
                .lock()
                .map_err(|_| CloudError::Postgres("store write positions poisoned".into()))?;
            applied.entry(store_id.to_owned()).or_default().clone()
        };
        let mut position = position.lock().await;
        let replica = self.stores.replica(store_id).await?;
        let site = replica.db().site_id();
        let client = shared.pg.client().await?;
        let mut at = match *position {
            Some(at) => at,
            None => client
                .query_opt(
                    "SELECT seq FROM store_write_cursors WHERE store_id = $1 AND replica = $2",
                    &[&store_id, &site.as_slice()],
                )
                .await?
                .map_or(0, |row| row.get(0)),
        };
        *position = Some(at);
        let mut applied = 0;
        loop {
            let rows = client
                .query(
                    "SELECT seq, entry FROM store_writes WHERE store_id = $1 AND seq > $2
                     ORDER BY seq LIMIT $3",
                    &[&store_id, &at, &STEP],
                )
                .await?;
            let Some(last) = rows.last().map(|row| row.get::<_, i64>(0)) else {
                return Ok(applied);
            };
            let writes = rows
                .iter()
                .map(|row| serde_json::from_str::<StoreWrite>(row.get(1)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    CloudError::Postgres(format!("store {store_id}: unreadable journal entry: {e}"))
                })?;
            let store = store_id.to_owned();
            let count = writes.len();
            replica
                .write(move |conn| {
                    writes
                        .iter()
                        .try_for_each(|write| write.apply(conn, &store))
                })
                .await?;
            client
                .execute(
                    "INSERT INTO store_write_cursors (store_id, replica, seq) VALUES ($1, $2, $3)
                     ON CONFLICT (store_id, replica) DO UPDATE SET seq = excluded.seq
                     WHERE excluded.seq > store_write_cursors.seq",
                    &[&store_id, &site.as_slice(), &last],
                )
                .await?;
            at = last;
            *position = Some(at);
            applied += count;
        }
    }

    /// Until shutdown, every [`POLL`]: applies entries other instances wrote for the stores
    /// this instance holds. Returns at once without the journal.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(shared) = &self.shared else {
            return;
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.cancelled() => return,
            }
            let held: Vec<String> = shared.leases.held().into_keys().collect();
            if held.is_empty() {
                continue;
            }
            let behind = match self.behind(shared, &held).await {
                Ok(behind) => behind,
                Err(error) => {
                    tracing::warn!(%error, "reading the store write journal");
                    continue;
                }
            };
            for store_id in behind {
                if let Err(error) = self.catch_up(&store_id).await {
                    tracing::warn!(store = %store_id, %error, "applying the store write journal");
                }
            }
        }
    }

    /// Of `held`, the stores whose journal is ahead of what this instance applied (or not
    /// known yet).
    async fn behind(&self, shared: &Shared, held: &[String]) -> Result<Vec<String>, CloudError> {
        let heads: Vec<(String, i64)> = shared
            .pg
            .client()
            .await?
            .query(
                "SELECT store_id, last_seq FROM store_write_heads WHERE store_id = ANY($1)",
                &[&held],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let positions: Vec<(String, Arc<tokio::sync::Mutex<Option<i64>>>)> = {
            let applied = shared
                .applied
                .lock()
                .map_err(|_| CloudError::Postgres("store write positions poisoned".into()))?;
            heads
                .iter()
                .map(|(store, _)| {
                    (
                        store.clone(),
                        applied.get(store).cloned().unwrap_or_default(),
                    )
                })
                .collect()
        };
        let mut behind = Vec::new();
        for ((store, head), (_, position)) in heads.into_iter().zip(positions) {
            // A catch-up under way holds the lock: it is applying already.
            let Ok(position) = position.try_lock() else {
                continue;
            };
            if position.is_none_or(|at| at < head) {
                behind.push(store);
            }
        }
        Ok(behind)
    }
}
