//! The read model: every store's applied changes projected into global tables.
//!
//! Routing and the dashboard must not scan a hundred store replicas per request, so the cloud
//! keeps one database (`<data_dir>/readmodel.db`, plain SQLite) with orders and their status
//! timelines, stock per store and product, rider positions, and the counts derived from them.
//! Writes come from two places: intake records each order it routes, and the projector follows
//! what stores push.
//!
//! Projection is idempotent by construction: the projector finds the rows a store's changes
//! touched, re-reads them from the store's replica (the truth the cloud holds) and folds them
//! in by their keys. Ledger rows (stock moves, order events) are insert-only with UUIDv7 ids, so
//! each is counted once however often it is delivered, and the stock sums stay exact.
//!
//! It follows a durable cursor, not the pushes themselves: per store and origin, the read
//! model records (in the same transaction as the rows it folded) how far into the replica's
//! changes it has projected. A push only marks its store dirty. So a push whose client hangs
//! up, or a cloud that dies between the replica's commit and the projection, loses nothing:
//! the projector catches up from the cursor when it is next woken, and for every store at
//! start. The dirty set holds at most one entry per store, so it cannot grow with traffic.
//!
//! A store is believed only about what it owns. The replica's own rows (cloud-owned: the
//! orders routed to it, its assignments, its riders) decide which order events, line
//! progress, assignment replies and rider positions a store may report; anything else is
//! dropped with a warning. Timestamps a store writes are clamped to a window around the
//! cloud's clock, so a date far in the future cannot make a fact win for good.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use flashkart_proto::sync::Change;
use flashkart_sync::packed_key::{self, KeyValue};
use flashkart_sync::schema::{Migration, Step};
use flashkart_sync::{StoreConfig, StoreDb};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::readmodel::ReadModel;
use crate::stores::Stores;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "read model",
        steps: &[
            Step::Sql(
                "CREATE TABLE rm_orders (
                id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL,
                customer_id TEXT,
                status TEXT NOT NULL,
                status_at TEXT NOT NULL,
                placed_at TEXT NOT NULL,
                -- when the order should be at the door (placed + SLA), RFC 3339
                promised_at TEXT,
                total_minor INTEGER NOT NULL DEFAULT 0,
                delivery_fee_minor INTEGER NOT NULL DEFAULT 0,
                lat REAL NOT NULL DEFAULT 0,
                lon REAL NOT NULL DEFAULT 0,
                -- 1 until picked up, delivered or cancelled: the store's backlog
                open INTEGER NOT NULL DEFAULT 1
            )",
            ),
            Step::Sql("CREATE INDEX rm_orders_open ON rm_orders (store_id) WHERE open = 1"),
            Step::Sql(
                "CREATE TABLE rm_timeline (
                event_id TEXT PRIMARY KEY NOT NULL,
                order_id TEXT NOT NULL,
                store_id TEXT NOT NULL,
                from_status TEXT,
                status TEXT NOT NULL,
                at TEXT NOT NULL,
                actor TEXT NOT NULL DEFAULT '',
                -- 'cloud' or 'edge'
                source TEXT NOT NULL,
                note TEXT
            )",
            ),
            Step::Sql("CREATE INDEX rm_timeline_by_order ON rm_timeline (order_id, at)"),
            Step::Sql("CREATE INDEX rm_timeline_by_status ON rm_timeline (status, at)"),
            Step::Sql(
                "CREATE TABLE rm_stock (
                store_id TEXT NOT NULL,
                product_id TEXT NOT NULL,
                on_hand INTEGER NOT NULL DEFAULT 0,
                reserved INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (store_id, product_id)
            ) WITHOUT ROWID",
            ),
            Step::Sql("CREATE TABLE rm_moves (id TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID"),
            Step::Sql(
                "CREATE TABLE rm_riders (
                rider_id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL,
                lat REAL NOT NULL,
                lon REAL NOT NULL,
                at TEXT NOT NULL
            )",
            ),
            Step::Sql(
                "CREATE TABLE rm_short_lines (
                order_id TEXT NOT NULL,
                line_no INTEGER NOT NULL,
                store_id TEXT NOT NULL,
                short_qty INTEGER NOT NULL,
                PRIMARY KEY (order_id, line_no, store_id)
            ) WITHOUT ROWID",
            ),
        ],
    },
    Migration {
        version: 2,
        name: "rider offers and replies",
        steps: &[
            Step::Sql(
                "CREATE TABLE rm_offers (
                    assignment_id TEXT PRIMARY KEY NOT NULL,
                    store_id TEXT NOT NULL,
                    order_id TEXT NOT NULL,
                    rider_id TEXT NOT NULL,
                    offered_at TEXT NOT NULL,
                    expires_at TEXT NOT NULL
                )",
            ),
            Step::Sql("CREATE INDEX rm_offers_by_order ON rm_offers (order_id)"),
            Step::Sql(
                "CREATE TABLE rm_replies (
                    assignment_id TEXT PRIMARY KEY NOT NULL,
                    store_id TEXT NOT NULL,
                    rider_id TEXT NOT NULL,
                    -- accepted | declined | expired
                    reply TEXT NOT NULL,
                    at TEXT NOT NULL
                )",
            ),
        ],
    },
    Migration {
        version: 3,
        name: "projection cursors",
        steps: &[Step::Sql(
            "CREATE TABLE rm_cursors (
                store_id TEXT NOT NULL,
                -- the origin (site id) whose changes in the store's replica are followed
                origin BLOB NOT NULL,
                -- the origin's changes up to this db_version are projected
                db_version INTEGER NOT NULL,
                PRIMARY KEY (store_id, origin)
            ) WITHOUT ROWID",
        )],
    },
];

/// How far a store's clock may run ahead of the cloud's before its timestamps are clamped.
const STORE_CLOCK_AHEAD: time::Duration = time::Duration::minutes(2);

/// How far back a store's timestamps may go: a store may catch up after days offline, but
/// not rewrite last year.
const STORE_CLOCK_BEHIND: time::Duration = time::Duration::days(30);

/// The largest stock move a store may report, in pieces; bigger is not a real move, and would
/// let the sums overflow.
const MAX_MOVE_QTY: i64 = 1_000_000_000;

/// Changes read from a replica per projection step (whole transactions; a bigger one is read
/// whole).
const STEP_CHANGES: usize = 5_000;

/// Statuses after which an order no longer counts against its store's capacity.
const CLOSED_STATUSES: &[&str] = &["PICKED_UP", "DELIVERED", "CLOSED", "CANCELLED", "REFUNDED"];

/// The tables whose rows the projector follows.
const FOLLOWED: &[&str] = &[
    "order_events",
    "stock_moves",
    "rider_positions",
    "order_line_progress",
    "assignment_replies",
];

/// Rows of one store to re-read: table -> packed primary keys.
type Touched = BTreeMap<&'static str, BTreeSet<Vec<u8>>>;

/// Something the projector saw that intake may act on: an order whose store found lines short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortReport {
    pub order_id: String,
    pub store_id: String,
}

/// The read model database, and the stores waiting for its projector.
#[derive(Debug, Clone)]
pub struct Projection {
    db: StoreDb,
    dirty: Arc<Dirty>,
    /// Bumped after every projected step (tests and the dashboard wait on it).
    projected: watch::Sender<u64>,
}

/// Stores with changes the projector may not have seen. A set, so a busy store is one entry
/// however often it pushes.
#[derive(Debug, Default)]
struct Dirty {
    stores: std::sync::Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Dirty {
    fn mark(&self, store_id: &str) {
        if let Ok(mut stores) = self.stores.lock() {
            stores.insert(store_id.to_owned());
        }
        self.wake.notify_one();
    }

    fn take(&self) -> BTreeSet<String> {
        self.stores
            .lock()
            .map(|mut stores| std::mem::take(&mut *stores))
            .unwrap_or_default()
    }
}

impl Projection {
    pub async fn open(mut config: StoreConfig) -> Result<Self, CloudError> {
        config.readers = 4;
        let db = StoreDb::open(config, MIGRATIONS).await?;
        Ok(Self {
            db,
            dirty: Arc::default(),
            projected: watch::Sender::new(0),
        })
    }

    /// Asks the projector to catch up with `store_id`'s replica.
    pub fn mark_dirty(&self, store_id: &str) {
        self.dirty.mark(store_id);
    }

    pub fn db(&self) -> &StoreDb {
        &self.db
    }

    pub async fn close(&self) -> Result<(), CloudError> {
        Ok(self.db.close().await?)
    }

    /// Counts projected batches; changes after each.
    pub fn projected(&self) -> watch::Receiver<u64> {
        self.projected.subscribe()
    }

    /// Catches up with every dirty store until shutdown, reporting orders with short lines on
    /// `shorts` (waiting for room there: the reports are not dropped).
    pub async fn run(
        &self,
        stores: Arc<Stores>,
        shorts: mpsc::Sender<ShortReport>,
        shutdown: CancellationToken,
    ) {
        loop {
            let dirty = self.dirty.take();
            if dirty.is_empty() {
                tokio::select! {
                    () = self.dirty.wake.notified() => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            for store_id in dirty {
                loop {
                    let step = tokio::select! {
                        step = self.project_step(&stores, &store_id) => step,
                        () = shutdown.cancelled() => return,
                    };
                    match step {
                        Ok((reports, more)) => {
                            for report in reports {
                                tokio::select! {
                                    _ = shorts.send(report) => {}
                                    () = shutdown.cancelled() => return,
                                }
                            }
                            self.projected.send_modify(|n| *n += 1);
                            if !more {
                                break;
                            }
                        }
                        Err(error) => {
                            // Keep the store for the next round; the cursor has not moved.
                            tracing::error!(store = %store_id, %error, "projection failed");
                            self.dirty.mark(&store_id);
                            tokio::select! {
                                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                                () = shutdown.cancelled() => return,
                            }
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Projects the next step of `store_id`'s changes after the read model's cursors; says
    /// whether more are waiting.
    async fn project_step(
        &self,
        stores: &Stores,
        store_id: &str,
    ) -> Result<(Vec<ShortReport>, bool), CloudError> {
        let replica = stores.replica(store_id).await?;
        let own_site = replica.db().site_id();
        let cursors = {
            let store_id = store_id.to_owned();
            self.db
                .read(move |conn| load_cursors(conn, &store_id))
                .await?
        };
        let (touched, cursors, more) = replica
            .db()
            .read(move |conn| touched_since(conn, &own_site, cursors))
            .await?;
        let rows = {
            let store_id = store_id.to_owned();
            let now = crate::clock::now();
            replica
                .db()
                .read(move |conn| read_rows(conn, &store_id, &touched, now))
                .await?
        };
        let store_id = store_id.to_owned();
        let reports = self
            .db
            .write(move |conn| {
                let reports = fold(conn, &store_id, &rows)?;
                save_cursors(conn, &store_id, &cursors)?;
                Ok::<_, flashkart_sync::Error>(reports)
            })
            .await?;
        Ok((reports, more))
    }

    /// Records an order intake routed (status ROUTED, with the cloud's own timeline entries).
    pub async fn record_routed(&self, order: RoutedOrder) -> Result<(), CloudError> {
        self.db
            .write(move |conn| -> Result<(), flashkart_sync::Error> {
                conn.prepare_cached(
                    "INSERT INTO rm_orders (id, store_id, customer_id, status, status_at,
                        placed_at, promised_at, total_minor, delivery_fee_minor, lat, lon)
                     VALUES (?1, ?2, ?3, 'ROUTED', ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (id) DO UPDATE SET store_id = excluded.store_id,
                        status = CASE WHEN rm_orders.open = 1 THEN 'ROUTED' ELSE rm_orders.status END,
                        status_at = excluded.status_at, open = 1",
                )?
                .execute(params![
                    order.id,
                    order.store_id,
                    order.customer_id,
                    order.at,
                    order.placed_at,
                    order.promised_at,
                    order.total_minor,
                    order.delivery_fee_minor,
                    order.lat,
                    order.lon
                ])?;
                for (n, (from, to, note)) in order.steps.iter().enumerate() {
                    conn.prepare_cached(
                        "INSERT OR IGNORE INTO rm_timeline
                            (event_id, order_id, store_id, from_status, status, at, actor, source, note)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'cloud', 'cloud', ?7)",
                    )?
                    .execute(params![
                        format!("{}/{}/{n}/{to}", order.id, order.store_id),
                        order.id,
                        order.store_id,
                        from,
                        to,
                        order.at,
                        note
                    ])?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Adds a cloud entry to an order's timeline (a partial confirmation, a reroute).
    pub async fn note(
        &self,
        order_id: &str,
        store_id: &str,
        status: &str,
        note: String,
    ) -> Result<(), CloudError> {
        let (order_id, store_id, status) =
            (order_id.to_owned(), store_id.to_owned(), status.to_owned());
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO rm_timeline
                        (event_id, order_id, store_id, status, at, actor, source, note)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'cloud', 'cloud', ?6)",
                    params![
                        format!("{order_id}/{store_id}/{status}"),
                        order_id,
                        store_id,
                        status,
                        crate::clock::now_rfc3339(),
                        note
                    ],
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await?;
        Ok(())
    }

    /// Available pieces (on hand minus reserved) per store for `product_ids`.
    pub async fn available(
        &self,
        product_ids: Vec<String>,
    ) -> Result<BTreeMap<(String, String), i64>, CloudError> {
        Ok(self
            .db
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let mut stmt = conn.prepare_cached(
                    "SELECT store_id, on_hand - reserved FROM rm_stock WHERE product_id = ?1",
                )?;
                let mut out = BTreeMap::new();
                for product in product_ids {
                    let rows = stmt.query_map([&product], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                    })?;
                    for row in rows {
                        let (store, available) = row?;
                        out.insert((store, product.clone()), available);
                    }
                }
                Ok(out)
            })
            .await?)
    }

    /// Open orders per store.
    pub async fn backlog(&self) -> Result<BTreeMap<String, u32>, CloudError> {
        Ok(self
            .db
            .read(|conn| -> Result<_, flashkart_sync::Error> {
                let rows = conn
                    .prepare_cached(
                        "SELECT store_id, count(*) FROM rm_orders WHERE open = 1 GROUP BY store_id",
                    )?
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await?)
    }

    /// Riders seen at each store since `since` (RFC 3339).
    pub async fn riders_seen(&self, since: String) -> Result<BTreeMap<String, u32>, CloudError> {
        Ok(self
            .db
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let rows = conn
                    .prepare_cached(
                        "SELECT store_id, count(*) FROM rm_riders WHERE at >= ?1 GROUP BY store_id",
                    )?
                    .query_map([since], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await?)
    }

    /// An order as the customer and HQ see it, with its timeline.
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderView>, CloudError> {
        let order_id = order_id.to_owned();
        Ok(self
            .db
            .read(move |conn| order_view(conn, &order_id))
            .await?)
    }

    /// Per-store figures for HQ's dashboard.
    pub async fn store_figures(&self, since: String) -> Result<Vec<StoreFigures>, CloudError> {
        Ok(self
            .db
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let rows = conn
                    .prepare_cached(
                        "SELECT s.store_id,
                            (SELECT count(*) FROM rm_orders o WHERE o.store_id = s.store_id AND o.open = 1),
                            (SELECT count(*) FROM rm_timeline t
                               WHERE t.store_id = s.store_id AND t.status = 'PICKED_UP' AND t.at >= ?1),
                            (SELECT count(*) FROM rm_timeline t JOIN rm_orders o ON o.id = t.order_id
                               WHERE t.store_id = s.store_id AND t.status = 'DELIVERED' AND t.at >= ?1),
                            (SELECT count(*) FROM rm_timeline t JOIN rm_orders o ON o.id = t.order_id
                               WHERE t.store_id = s.store_id AND t.status = 'DELIVERED' AND t.at >= ?1
                                 AND o.promised_at IS NOT NULL AND t.at <= o.promised_at),
                            (SELECT count(*) FROM rm_riders r WHERE r.store_id = s.store_id AND r.at >= ?1)
                         FROM (SELECT DISTINCT store_id FROM rm_orders
                               UNION SELECT DISTINCT store_id FROM rm_stock) s
                         ORDER BY s.store_id",
                    )?
                    .query_map([since], |row| {
                        Ok(StoreFigures {
                            store_id: row.get(0)?,
                            open_orders: row.get(1)?,
                            picked_up: row.get(2)?,
                            delivered: row.get(3)?,
                            delivered_on_time: row.get(4)?,
                            riders_seen: row.get(5)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await?)
    }

    /// Short lines the store reported for an order.
    pub async fn short_lines(
        &self,
        order_id: &str,
        store_id: &str,
    ) -> Result<Vec<(i64, i64)>, CloudError> {
        let (order_id, store_id) = (order_id.to_owned(), store_id.to_owned());
        Ok(self
            .db
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let rows = conn
                    .prepare_cached(
                        "SELECT line_no, short_qty FROM rm_short_lines
                         WHERE order_id = ?1 AND store_id = ?2 ORDER BY line_no",
                    )?
                    .query_map([order_id, store_id], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await?)
    }
}

impl ReadModel for Projection {
    fn project(&self, store_id: &str, _changes: &[Change]) {
        self.mark_dirty(store_id);
    }
}

/// The read model's cursors for a store: origin -> db_version projected.
fn load_cursors(
    conn: &Connection,
    store_id: &str,
) -> Result<BTreeMap<Vec<u8>, i64>, flashkart_sync::Error> {
    let rows = conn
        .prepare_cached("SELECT origin, db_version FROM rm_cursors WHERE store_id = ?1")?
        .query_map([store_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn save_cursors(
    conn: &Connection,
    store_id: &str,
    cursors: &BTreeMap<Vec<u8>, i64>,
) -> Result<(), flashkart_sync::Error> {
    for (origin, db_version) in cursors {
        conn.prepare_cached(
            "INSERT INTO rm_cursors (store_id, origin, db_version) VALUES (?1, ?2, ?3)
             ON CONFLICT (store_id, origin) DO UPDATE SET db_version = excluded.db_version
             WHERE excluded.db_version > rm_cursors.db_version",
        )?
        .execute(params![store_id, origin, db_version])?;
    }
    Ok(())
}

/// The followed rows changed in a replica after `cursors`, by every origin but the replica's
/// own (the cloud writes none of the followed tables), at most about [`STEP_CHANGES`] changes
/// (whole transactions); the cursors after them, and whether the step was cut short.
#[allow(clippy::type_complexity)]
fn touched_since(
    conn: &Connection,
    own_site: &[u8; 16],
    mut cursors: BTreeMap<Vec<u8>, i64>,
) -> Result<(Touched, BTreeMap<Vec<u8>, i64>, bool), flashkart_sync::Error> {
    let origins: Vec<Vec<u8>> = conn
        .prepare_cached("SELECT site_id FROM crsql_site_id ORDER BY ordinal")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut touched = Touched::new();
    let mut taken = 0_usize;
    let mut more = false;
    let mut stmt = conn.prepare_cached(
        "SELECT \"table\", pk, db_version FROM crsql_changes
         WHERE site_id = ?1 AND db_version > ?2 ORDER BY db_version, seq",
    )?;
    for origin in origins {
        if origin.as_slice() == own_site.as_slice() {
            continue;
        }
        if taken >= STEP_CHANGES {
            more = true;
            break;
        }
        let after = cursors.get(&origin).copied().unwrap_or(0);
        let mut rows = stmt.query(params![origin, after])?;
        let mut last = after;
        while let Some(row) = rows.next()? {
            let db_version: i64 = row.get(2)?;
            if taken >= STEP_CHANGES && db_version != last {
                more = true;
                break;
            }
            let table: String = row.get(0)?;
            if let Some(followed) = FOLLOWED.iter().find(|t| **t == table) {
                touched.entry(followed).or_default().insert(row.get(1)?);
            }
            taken += 1;
            last = db_version;
        }
        if last > after {
            cursors.insert(origin, last);
        }
    }
    Ok((touched, cursors, more))
}

/// A store's timestamp, clamped to the window the cloud believes; unreadable ones become now.
fn clamp_store_time(at: &str, now: OffsetDateTime) -> String {
    let earliest = now - STORE_CLOCK_BEHIND;
    let latest = now + STORE_CLOCK_AHEAD;
    match crate::clock::parse(at) {
        Some(t) if t < earliest => crate::clock::rfc3339(earliest),
        Some(t) if t > latest => crate::clock::rfc3339(latest),
        Some(t) => crate::clock::rfc3339(t),
        None => crate::clock::rfc3339(now),
    }
}

/// An order intake routed, for [`Projection::record_routed`].
#[derive(Debug, Clone)]
pub struct RoutedOrder {
    pub id: String,
    pub store_id: String,
    pub customer_id: String,
    pub at: String,
    pub placed_at: String,
    pub promised_at: String,
    pub total_minor: i64,
    pub delivery_fee_minor: i64,
    pub lat: f64,
    pub lon: f64,
    /// The cloud's own transitions: (from, to, note).
    pub steps: Vec<(Option<&'static str>, &'static str, &'static str)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub status: String,
    pub from: Option<String>,
    pub at: String,
    pub store_id: String,
    pub source: String,
    pub actor: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub id: String,
    pub store_id: String,
    pub customer_id: Option<String>,
    pub status: String,
    pub status_at: String,
    pub placed_at: String,
    pub promised_at: Option<String>,
    pub total_minor: i64,
    pub delivery_fee_minor: i64,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreFigures {
    pub store_id: String,
    pub open_orders: u32,
    pub picked_up: u32,
    pub delivered: u32,
    pub delivered_on_time: u32,
    pub riders_seen: u32,
}

fn order_view(
    conn: &Connection,
    order_id: &str,
) -> Result<Option<OrderView>, flashkart_sync::Error> {
    let order = conn
        .prepare_cached(
            "SELECT id, store_id, customer_id, status, status_at, placed_at, promised_at,
                total_minor, delivery_fee_minor FROM rm_orders WHERE id = ?1",
        )?
        .query_row([order_id], |row| {
            Ok(OrderView {
                id: row.get(0)?,
                store_id: row.get(1)?,
                customer_id: row.get(2)?,
                status: row.get(3)?,
                status_at: row.get(4)?,
                placed_at: row.get(5)?,
                promised_at: row.get(6)?,
                total_minor: row.get(7)?,
                delivery_fee_minor: row.get(8)?,
                timeline: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut order) = order else {
        return Ok(None);
    };
    order.timeline = conn
        .prepare_cached(
            "SELECT status, from_status, at, store_id, source, actor, note FROM rm_timeline
             WHERE order_id = ?1 ORDER BY at, source = 'edge', rowid",
        )?
        .query_map([order_id], |row| {
            Ok(TimelineEntry {
                status: row.get(0)?,
                from: row.get(1)?,
                at: row.get(2)?,
                store_id: row.get(3)?,
                source: row.get(4)?,
                actor: row.get(5)?,
                note: row.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(order))
}

/// Rows re-read from a replica, by table.
#[derive(Debug, Default)]
struct Rows {
    events: Vec<EventRow>,
    moves: Vec<(String, String, i64, String)>,
    riders: Vec<(String, f64, f64, String)>,
    line_progress: Vec<(String, i64, i64)>,
    replies: Vec<(String, String, String, String)>,
}

#[derive(Debug)]
struct EventRow {
    id: String,
    order_id: String,
    from_status: Option<String>,
    to_status: String,
    actor: String,
    at: String,
    note: Option<String>,
}

/// A key that is one text column (all followed tables but line progress).
fn single_text(pk: &[u8]) -> Option<String> {
    match <[KeyValue; 1]>::try_from(packed_key::decode(pk).ok()?) {
        Ok([KeyValue::Text(text)]) => Some(text),
        _ => None,
    }
}

/// Whether the replica holds `sql`'s row (cloud-owned rows: what the cloud gave this store).
fn holds(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params, |_| Ok(()))
        .optional()?
        .is_some())
}

const ROUTED_HERE: &str = "SELECT 1 FROM orders WHERE id = ?1 AND store_id = ?2";

/// Re-reads the touched rows of `store_id`'s replica, keeping only the facts the store owns:
/// events and line progress of orders routed to it, replies to its own assignments by the
/// rider offered, positions of its own riders, moves within sane bounds.
fn read_rows(
    conn: &Connection,
    store_id: &str,
    touched: &Touched,
    now: OffsetDateTime,
) -> Result<Rows, flashkart_sync::Error> {
    let mut rows = Rows::default();
    let refuse = |table: &str, key: &dyn std::fmt::Display, why: &str| {
        tracing::warn!(store = %store_id, table, key = %key, why, "store change not projected");
    };
    for (table, keys) in touched {
        for pk in keys {
            match *table {
                "order_events" => {
                    let Some(id) = single_text(pk) else { continue };
                    let row = conn
                        .prepare_cached(
                            "SELECT id, order_id, from_status, to_status, actor, at, note
                             FROM order_events WHERE id = ?1 AND store_id = ?2",
                        )?
                        .query_row([&id, store_id], |r| {
                            Ok(EventRow {
                                id: r.get(0)?,
                                order_id: r.get(1)?,
                                from_status: r.get(2)?,
                                to_status: r.get(3)?,
                                actor: r.get(4)?,
                                at: r.get(5)?,
                                note: r.get(6)?,
                            })
                        })
                        .optional()?;
                    let Some(mut event) = row else { continue };
                    if !holds(conn, ROUTED_HERE, [&event.order_id, store_id])? {
                        refuse(table, &id, "order not routed to this store");
                        continue;
                    }
                    event.at = clamp_store_time(&event.at, now);
                    rows.events.push(event);
                }
                "stock_moves" => {
                    let Some(id) = single_text(pk) else { continue };
                    let row: Option<(String, String, i64, String)> = conn
                        .prepare_cached(
                            "SELECT id, product_id, qty, kind FROM stock_moves
                             WHERE id = ?1 AND store_id = ?2",
                        )?
                        .query_row([&id, store_id], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })
                        .optional()?;
                    let Some(row) = row else { continue };
                    if !(-MAX_MOVE_QTY..=MAX_MOVE_QTY).contains(&row.2) {
                        refuse(table, &id, "quantity out of range");
                        continue;
                    }
                    rows.moves.push(row);
                }
                "rider_positions" => {
                    let Some(id) = single_text(pk) else { continue };
                    let row: Option<(String, f64, f64, String)> = conn
                        .prepare_cached(
                            "SELECT rider_id, lat, lon, at FROM rider_positions
                             WHERE rider_id = ?1 AND store_id = ?2",
                        )?
                        .query_row([&id, store_id], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })
                        .optional()?;
                    let Some((rider_id, lat, lon, at)) = row else {
                        continue;
                    };
                    if !holds(
                        conn,
                        "SELECT 1 FROM riders WHERE id = ?1 AND home_store_id = ?2",
                        [&rider_id, store_id],
                    )? {
                        refuse(table, &id, "not a rider of this store");
                        continue;
                    }
                    if !((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)) {
                        refuse(table, &id, "position off the Earth");
                        continue;
                    }
                    rows.riders
                        .push((rider_id, lat, lon, clamp_store_time(&at, now)));
                }
                "assignment_replies" => {
                    let Some(id) = single_text(pk) else { continue };
                    let row: Option<(String, String, String, String)> = conn
                        .prepare_cached(
                            "SELECT assignment_id, rider_id, reply, at FROM assignment_replies
                             WHERE assignment_id = ?1 AND store_id = ?2",
                        )?
                        .query_row([&id, store_id], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })
                        .optional()?;
                    let Some((assignment_id, rider_id, reply, at)) = row else {
                        continue;
                    };
                    if !holds(
                        conn,
                        "SELECT 1 FROM assignments WHERE id = ?1 AND store_id = ?2 AND rider_id = ?3",
                        [&assignment_id, store_id, &rider_id],
                    )? {
                        refuse(table, &id, "not an assignment of this store to this rider");
                        continue;
                    }
                    if !matches!(reply.as_str(), "accepted" | "declined" | "expired") {
                        refuse(table, &id, "unknown reply");
                        continue;
                    }
                    rows.replies
                        .push((assignment_id, rider_id, reply, clamp_store_time(&at, now)));
                }
                "order_line_progress" => {
                    let Ok([KeyValue::Text(order_id), KeyValue::Integer(line_no)]) =
                        packed_key::decode(pk)
                            .map(<[KeyValue; 2]>::try_from)
                            .unwrap_or(Err(Vec::new()))
                    else {
                        continue;
                    };
                    if !holds(conn, ROUTED_HERE, [&order_id, store_id])? {
                        refuse(table, &order_id, "order not routed to this store");
                        continue;
                    }
                    let short: Option<i64> = conn
                        .prepare_cached(
                            "SELECT short_qty FROM order_line_progress
                             WHERE order_id = ?1 AND line_no = ?2 AND store_id = ?3",
                        )?
                        .query_row(params![order_id, line_no, store_id], |r| r.get(0))
                        .optional()?;
                    if let Some(short) = short {
                        rows.line_progress.push((order_id, line_no, short));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(rows)
}

fn fold(
    conn: &Connection,
    store_id: &str,
    rows: &Rows,
) -> Result<Vec<ShortReport>, flashkart_sync::Error> {
    let mut reports = Vec::new();
    for (id, product_id, qty, kind) in &rows.moves {
        let fresh = conn
            .prepare_cached("INSERT OR IGNORE INTO rm_moves (id) VALUES (?1)")?
            .execute([id])?;
        if fresh == 0 {
            continue;
        }
        let (on_hand, reserved) = if matches!(kind.as_str(), "reserve" | "release") {
            (0, *qty)
        } else {
            (*qty, 0)
        };
        conn.prepare_cached(
            "INSERT INTO rm_stock (store_id, product_id, on_hand, reserved) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (store_id, product_id) DO UPDATE SET
                on_hand = on_hand + excluded.on_hand, reserved = reserved + excluded.reserved",
        )?
        .execute(params![store_id, product_id, on_hand, reserved])?;
    }
    for event in &rows.events {
        let fresh = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO rm_timeline
                    (event_id, order_id, store_id, from_status, status, at, actor, source, note)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'edge', ?8)",
            )?
            .execute(params![
                event.id,
                event.order_id,
                store_id,
                event.from_status,
                event.to_status,
                event.at,
                event.actor,
                event.note
            ])?;
        if fresh == 0 {
            continue;
        }
        let open = !CLOSED_STATUSES.contains(&event.to_status.as_str());
        // Only the store the order is routed to moves its status (after a reroute the first
        // store's cancellation stays in the timeline only); the latest event wins.
        conn.prepare_cached(
            "INSERT INTO rm_orders (id, store_id, status, status_at, placed_at, open)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                status_at = excluded.status_at, open = excluded.open
             WHERE rm_orders.store_id = excluded.store_id
               AND excluded.status_at >= rm_orders.status_at",
        )?
        .execute(params![
            event.order_id,
            store_id,
            event.to_status,
            event.at,
            open
        ])?;
    }
    let mut short_orders = BTreeSet::new();
    for (order_id, line_no, short) in &rows.line_progress {
        if *short > 0 {
            conn.prepare_cached(
                "INSERT INTO rm_short_lines (order_id, line_no, store_id, short_qty)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (order_id, line_no, store_id) DO UPDATE SET short_qty = excluded.short_qty",
            )?
            .execute(params![order_id, line_no, store_id, short])?;
            short_orders.insert(order_id.clone());
        }
    }
    for (rider_id, lat, lon, at) in &rows.riders {
        conn.prepare_cached(
            "INSERT INTO rm_riders (rider_id, store_id, lat, lon, at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (rider_id) DO UPDATE SET store_id = excluded.store_id,
                lat = excluded.lat, lon = excluded.lon, at = excluded.at
             WHERE excluded.at >= rm_riders.at",
        )?
        .execute(params![rider_id, store_id, lat, lon, at])?;
    }
    for (assignment_id, rider_id, reply, at) in &rows.replies {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO rm_replies (assignment_id, store_id, rider_id, reply, at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![assignment_id, store_id, rider_id, reply, at])?;
    }
    for order_id in short_orders {
        reports.push(ShortReport {
            order_id,
            store_id: store_id.to_owned(),
        });
    }
    Ok(reports)
}
