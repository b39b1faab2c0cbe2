//! The read model: every store's applied changes projected into global tables.
//!
//! Routing and the dashboard must not scan a hundred store replicas per request, so the cloud
//! keeps one database (`<data_dir>/readmodel.db`, plain SQLite) with orders and their status
//! timelines, stock per store and product, rider positions, and the counts derived from them.
//! Writes come from two places: intake records each order it routes, and the projector follows
//! what stores push.
//!
//! Projection is idempotent by construction: a pushed batch only names the rows it touched; the
//! projector re-reads those rows from the store's replica (the truth the cloud holds) and folds
//! them in by their keys. Ledger rows (stock moves, order events) are insert-only with UUIDv7
//! ids, so each is counted once however often it is delivered, and the stock sums stay exact.
//! The projector runs on its own task so a push is answered without waiting for it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use flashkart_proto::sync::Change;
use flashkart_sync::schema::{Migration, Step};
use flashkart_sync::{StoreConfig, StoreDb};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
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
];

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

/// Rows a store's push touched: table -> packed primary keys.
#[derive(Debug)]
struct Touched {
    store_id: String,
    keys: BTreeMap<&'static str, BTreeSet<Vec<u8>>>,
}

/// Something the projector saw that intake may act on: an order whose store found lines short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortReport {
    pub order_id: String,
    pub store_id: String,
}

/// The read model database, and the queue into its projector.
#[derive(Debug, Clone)]
pub struct Projection {
    db: StoreDb,
    queue: mpsc::UnboundedSender<Touched>,
    /// Bumped after every projected batch (tests and the dashboard wait on it).
    projected: watch::Sender<u64>,
}

/// The projector's end of the queue, run by [`Projection::run`].
#[derive(Debug)]
pub struct Projector {
    queue: mpsc::UnboundedReceiver<Touched>,
}

impl Projection {
    pub async fn open(mut config: StoreConfig) -> Result<(Self, Projector), CloudError> {
        config.readers = 4;
        let db = StoreDb::open(config, MIGRATIONS).await?;
        let (queue, receiver) = mpsc::unbounded_channel();
        Ok((
            Self {
                db,
                queue,
                projected: watch::Sender::new(0),
            },
            Projector { queue: receiver },
        ))
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

    /// Follows the queue until shutdown, reporting orders with short lines on `shorts`.
    pub async fn run(
        &self,
        mut projector: Projector,
        stores: Arc<Stores>,
        shorts: mpsc::UnboundedSender<ShortReport>,
        shutdown: CancellationToken,
    ) {
        loop {
            let touched = tokio::select! {
                touched = projector.queue.recv() => touched,
                () = shutdown.cancelled() => None,
            };
            let Some(touched) = touched else { return };
            match self.project_touched(&stores, touched).await {
                Ok(reports) => {
                    for report in reports {
                        let _ = shorts.send(report);
                    }
                }
                Err(error) => tracing::error!(%error, "projection failed"),
            }
            self.projected.send_modify(|n| *n += 1);
        }
    }

    async fn project_touched(
        &self,
        stores: &Stores,
        touched: Touched,
    ) -> Result<Vec<ShortReport>, CloudError> {
        let replica = stores.replica(&touched.store_id).await?;
        let store_id = touched.store_id.clone();
        let rows = replica
            .db()
            .read(move |conn| read_rows(conn, &touched))
            .await?;
        let reports = self
            .db
            .write(move |conn| fold(conn, &store_id, &rows))
            .await?;
        Ok(reports)
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
    fn project(&self, store_id: &str, changes: &[Change]) {
        let mut keys: BTreeMap<&'static str, BTreeSet<Vec<u8>>> = BTreeMap::new();
        for change in changes {
            if let Some(table) = FOLLOWED.iter().find(|t| **t == change.table) {
                keys.entry(table).or_default().insert(change.pk.clone());
            }
        }
        if !keys.is_empty() {
            let _ = self.queue.send(Touched {
                store_id: store_id.to_owned(),
                keys,
            });
        }
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

fn unpack(conn: &Connection, pk: &[u8]) -> Result<Vec<SqlValue>, flashkart_sync::Error> {
    Ok(conn
        .prepare_cached("SELECT cell FROM crsql_unpack_columns WHERE package = ?1")?
        .query_map([pk], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

fn single_text(values: Vec<SqlValue>) -> Option<String> {
    match <[SqlValue; 1]>::try_from(values) {
        Ok([SqlValue::Text(text)]) => Some(text),
        _ => None,
    }
}

fn read_rows(conn: &Connection, touched: &Touched) -> Result<Rows, flashkart_sync::Error> {
    let mut rows = Rows::default();
    for (table, keys) in &touched.keys {
        for pk in keys {
            let values = unpack(conn, pk)?;
            match *table {
                "order_events" => {
                    let Some(id) = single_text(values) else {
                        continue;
                    };
                    let row = conn
                        .prepare_cached(
                            "SELECT id, order_id, from_status, to_status, actor, at, note
                             FROM order_events WHERE id = ?1",
                        )?
                        .query_row([id], |r| {
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
                    rows.events.extend(row);
                }
                "stock_moves" => {
                    let Some(id) = single_text(values) else {
                        continue;
                    };
                    let row = conn
                        .prepare_cached(
                            "SELECT id, product_id, qty, kind FROM stock_moves WHERE id = ?1",
                        )?
                        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .optional()?;
                    rows.moves.extend(row);
                }
                "rider_positions" => {
                    let Some(id) = single_text(values) else {
                        continue;
                    };
                    let row = conn
                        .prepare_cached(
                            "SELECT rider_id, lat, lon, at FROM rider_positions WHERE rider_id = ?1",
                        )?
                        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .optional()?;
                    rows.riders.extend(row);
                }
                "assignment_replies" => {
                    let Some(id) = single_text(values) else {
                        continue;
                    };
                    let row = conn
                        .prepare_cached(
                            "SELECT assignment_id, rider_id, reply, at FROM assignment_replies
                             WHERE assignment_id = ?1",
                        )?
                        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .optional()?;
                    rows.replies.extend(row);
                }
                "order_line_progress" => {
                    let [SqlValue::Text(order_id), SqlValue::Integer(line_no)] =
                        <[SqlValue; 2]>::try_from(values)
                            .unwrap_or([SqlValue::Null, SqlValue::Null])
                    else {
                        continue;
                    };
                    let short: Option<i64> = conn
                        .prepare_cached(
                            "SELECT short_qty FROM order_line_progress
                             WHERE order_id = ?1 AND line_no = ?2",
                        )?
                        .query_row(params![order_id, line_no], |r| r.get(0))
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
