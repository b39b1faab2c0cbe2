//! What the rest of the cloud reads from the read model (order views and lines, stock for
//! routing, backlogs and rider counts for dispatch, the dashboard's figures, what HQ's support
//! and rider enrolment need of a store) and what intake records.
//! Every method asks the same question of either engine ([`Backend`]) and gets the same
//! answer: the same rows, the same order and tie-breaks, and the same idempotent writes.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{Connection, OptionalExtension, params};

use crate::CloudError;
use crate::notify::{self, Kind, Notification};

use super::{
    Backend, OrderSummary, OrderView, ProjectedLine, Projection, RoutedLine, RoutedOrder,
    StoreFigures, TimelineEntry,
};

impl Projection {
    /// Records an order intake routed (status ROUTED, with the cloud's own timeline entries);
    /// a new order's confirmation is enqueued for the customer in the same transaction (once
    /// per order: a replay or a reroute finds it there).
    pub async fn record_routed(&self, order: RoutedOrder) -> Result<(), CloudError> {
        self.record_routed_with_lines(order, Vec::new()).await
    }

    /// [`Projection::record_routed`] with the order's lines as routed to its store, in the
    /// same transaction (HQ's order detail reads them at any instance; the store's progress
    /// is folded into them).
    pub async fn record_routed_with_lines(
        &self,
        order: RoutedOrder,
        lines: Vec<RoutedLine>,
    ) -> Result<(), CloudError> {
        let enqueued = match self.backend() {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<bool, flashkart_sync::Error> {
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
                    for line in &lines {
                        conn.prepare_cached(
                            "INSERT INTO rm_order_lines
                                (order_id, store_id, line_no, product_id, qty, unit_price_minor)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                             ON CONFLICT (order_id, store_id, line_no) DO UPDATE SET
                                product_id = excluded.product_id, qty = excluded.qty,
                                unit_price_minor = excluded.unit_price_minor",
                        )?
                        .execute(params![
                            order.id,
                            order.store_id,
                            line.line_no,
                            line.product_id,
                            line.qty,
                            line.unit_price_minor
                        ])?;
                    }
                    for (n, (from, to, note)) in order.steps.iter().enumerate() {
                        conn.prepare_cached(
                            "INSERT OR IGNORE INTO rm_timeline
                                (event_id, order_id, store_id, from_status, status, at, actor, source, note)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'cloud', 'cloud', ?7)",
                        )?
                        .execute(params![
                            step_event_id(&order, n, to),
                            order.id,
                            order.store_id,
                            from,
                            to,
                            order.at,
                            note
                        ])?;
                    }
                    match confirmation(&order) {
                        Some(confirmation) => Ok(notify::enqueue(conn, &confirmation)?),
                        None => Ok(false),
                    }
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                tx.execute(
                    "INSERT INTO rm_orders (id, store_id, customer_id, status, status_at,
                        placed_at, promised_at, total_minor, delivery_fee_minor, lat, lon)
                     VALUES ($1, $2, $3, 'ROUTED', $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (id) DO UPDATE SET store_id = excluded.store_id,
                        status = CASE WHEN rm_orders.open = 1 THEN 'ROUTED' ELSE rm_orders.status END,
                        status_at = excluded.status_at, open = 1",
                    &[
                        &order.id,
                        &order.store_id,
                        &order.customer_id,
                        &order.at,
                        &order.placed_at,
                        &order.promised_at,
                        &order.total_minor,
                        &order.delivery_fee_minor,
                        &order.lat,
                        &order.lon,
                    ],
                )
                .await?;
                if !lines.is_empty() {
                    let line_insert = tx
                        .prepare(
                            "INSERT INTO rm_order_lines
                                (order_id, store_id, line_no, product_id, qty, unit_price_minor)
                             VALUES ($1, $2, $3, $4, $5, $6)
                             ON CONFLICT (order_id, store_id, line_no) DO UPDATE SET
                                product_id = excluded.product_id, qty = excluded.qty,
                                unit_price_minor = excluded.unit_price_minor",
                        )
                        .await?;
                    for line in &lines {
                        tx.execute(
                            &line_insert,
                            &[
                                &order.id,
                                &order.store_id,
                                &line.line_no,
                                &line.product_id,
                                &line.qty,
                                &line.unit_price_minor,
                            ],
                        )
                        .await?;
                    }
                }
                for (n, (from, to, note)) in order.steps.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO rm_timeline
                            (event_id, order_id, store_id, from_status, status, at, actor, source, note)
                         VALUES ($1, $2, $3, $4, $5, $6, 'cloud', 'cloud', $7)
                         ON CONFLICT DO NOTHING",
                        &[
                            &step_event_id(&order, n, to),
                            &order.id,
                            &order.store_id,
                            from,
                            to,
                            &order.at,
                            note,
                        ],
                    )
                    .await?;
                }
                let enqueued = match confirmation(&order) {
                    Some(confirmation) => notify::enqueue_postgres(&tx, &confirmation).await?,
                    None => false,
                };
                tx.commit().await?;
                enqueued
            }
        };
        self.written.send_modify(|n| *n = n.wrapping_add(1));
        if enqueued {
            notify::wake();
        }
        Ok(())
    }

    /// Adds a cloud entry to an order's timeline (a partial confirmation, a reroute), with
    /// what the customer is to be told of it (`tell`: kind and payload) enqueued in the same
    /// transaction the first time the entry is written.
    pub async fn note(
        &self,
        order_id: &str,
        store_id: &str,
        status: &str,
        note: String,
        tell: Option<(Kind, serde_json::Value)>,
    ) -> Result<(), CloudError> {
        let (order_id, store_id, status) =
            (order_id.to_owned(), store_id.to_owned(), status.to_owned());
        let enqueued = match self.backend() {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    let fresh = conn.execute(
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
                    )?;
                    let Some((kind, payload)) = tell.filter(|_| fresh > 0) else {
                        return Ok(false);
                    };
                    let about = format!("{order_id}/{store_id}");
                    Ok::<_, flashkart_sync::Error>(notify::enqueue(
                        conn,
                        &noted(kind, &about, &order_id, payload),
                    )?)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                let fresh = tx
                    .execute(
                        "INSERT INTO rm_timeline
                            (event_id, order_id, store_id, status, at, actor, source, note)
                         VALUES ($1, $2, $3, $4, $5, 'cloud', 'cloud', $6)
                         ON CONFLICT DO NOTHING",
                        &[
                            &format!("{order_id}/{store_id}/{status}"),
                            &order_id,
                            &store_id,
                            &status,
                            &crate::clock::now_rfc3339(),
                            &note,
                        ],
                    )
                    .await?;
                let enqueued = match tell.filter(|_| fresh > 0) {
                    Some((kind, payload)) => {
                        let about = format!("{order_id}/{store_id}");
                        let told = noted(kind, &about, &order_id, payload);
                        notify::enqueue_postgres(&tx, &told).await?
                    }
                    None => false,
                };
                tx.commit().await?;
                enqueued
            }
        };
        self.written.send_modify(|n| *n = n.wrapping_add(1));
        if enqueued {
            notify::wake();
        }
        Ok(())
    }

    /// The lines of `order_id` as routed to `store_id`, with the store's progress, by line
    /// number (none if it was never routed there).
    pub async fn order_lines(
        &self,
        order_id: &str,
        store_id: &str,
    ) -> Result<Vec<ProjectedLine>, CloudError> {
        const COLUMNS: &str = "SELECT line_no, product_id, qty, unit_price_minor, picked_qty,
                short_qty, substitute_product_id FROM rm_order_lines";
        match self.backend() {
            Backend::Sqlite(db) => {
                let (order_id, store_id) = (order_id.to_owned(), store_id.to_owned());
                Ok(db
                    .read(move |conn| -> Result<_, flashkart_sync::Error> {
                        let lines = conn
                            .prepare_cached(&format!(
                                "{COLUMNS} WHERE order_id = ?1 AND store_id = ?2 ORDER BY line_no"
                            ))?
                            .query_map([&order_id, &store_id], |r| {
                                Ok(ProjectedLine {
                                    line_no: r.get(0)?,
                                    product_id: r.get(1)?,
                                    qty: r.get(2)?,
                                    unit_price_minor: r.get(3)?,
                                    picked_qty: r.get(4)?,
                                    short_qty: r.get(5)?,
                                    substitute_product_id: r.get(6)?,
                                })
                            })?
                            .collect::<Result<_, _>>()?;
                        Ok(lines)
                    })
                    .await?)
            }
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    &format!("{COLUMNS} WHERE order_id = $1 AND store_id = $2 ORDER BY line_no"),
                    &[&order_id, &store_id],
                )
                .await?
                .iter()
                .map(|r| ProjectedLine {
                    line_no: r.get(0),
                    product_id: r.get(1),
                    qty: r.get(2),
                    unit_price_minor: r.get(3),
                    picked_qty: r.get(4),
                    short_qty: r.get(5),
                    substitute_product_id: r.get(6),
                })
                .collect()),
        }
    }

    /// Wrong delivery PINs `store_id` recorded for `order_id` (routed to it).
    pub async fn pin_failures(&self, order_id: &str, store_id: &str) -> Result<u32, CloudError> {
        let count: i64 = match self.backend() {
            Backend::Sqlite(db) => {
                let (order_id, store_id) = (order_id.to_owned(), store_id.to_owned());
                db.read(move |conn| {
                    conn.prepare_cached(
                        "SELECT count(*) FROM rm_pin_attempts
                         WHERE order_id = ?1 AND store_id = ?2 AND outcome = 'wrong_pin'",
                    )?
                    .query_row([order_id, store_id], |r| r.get(0))
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query_one(
                    "SELECT count(*) FROM rm_pin_attempts
                     WHERE order_id = $1 AND store_id = $2 AND outcome = 'wrong_pin'",
                    &[&order_id, &store_id],
                )
                .await?
                .get(0),
        };
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// The SHA-256 of `store_id`'s riders' CA as the store reported it (well-formed: the
    /// projector keeps no other), if it did.
    pub async fn riders_ca_sha256(&self, store_id: &str) -> Result<Option<String>, CloudError> {
        let sha256: Option<String> = match self.backend() {
            Backend::Sqlite(db) => {
                let store_id = store_id.to_owned();
                db.read(move |conn| {
                    conn.prepare_cached(
                        "SELECT sha256 FROM rm_store_certificates
                         WHERE store_id = ?1 AND id = 'riders-ca'",
                    )?
                    .query_row([store_id], |r| r.get(0))
                    .optional()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query_opt(
                    "SELECT sha256 FROM rm_store_certificates
                     WHERE store_id = $1 AND id = 'riders-ca'",
                    &[&store_id],
                )
                .await?
                .map(|r| r.get(0)),
        };
        Ok(sha256.filter(|s| super::rows::well_formed_sha256(s)))
    }

    /// Available pieces (on hand minus reserved) per store for `product_ids`.
    pub async fn available(
        &self,
        product_ids: Vec<String>,
    ) -> Result<BTreeMap<(String, String), i64>, CloudError> {
        match self.backend() {
            Backend::Sqlite(db) => Ok(db
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
                .await?),
            // One statement for all the products (along the by-product index).
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    "SELECT store_id, product_id, on_hand - reserved FROM rm_stock
                     WHERE product_id = ANY($1)",
                    &[&product_ids],
                )
                .await?
                .iter()
                .map(|row| ((row.get(0), row.get(1)), row.get(2)))
                .collect()),
        }
    }

    /// Every product with pieces available at `store_id` (on hand minus reserved, above 0).
    pub async fn stock_at(&self, store_id: &str) -> Result<HashMap<String, i64>, CloudError> {
        match self.backend() {
            Backend::Sqlite(db) => {
                let store_id = store_id.to_owned();
                Ok(db
                    .read(move |conn| -> Result<_, flashkart_sync::Error> {
                        let rows = conn
                            .prepare_cached(
                                "SELECT product_id, on_hand - reserved FROM rm_stock
                                 WHERE store_id = ?1 AND on_hand - reserved > 0",
                            )?
                            .query_map([&store_id], |row| Ok((row.get(0)?, row.get(1)?)))?
                            .collect::<Result<_, _>>()?;
                        Ok(rows)
                    })
                    .await?)
            }
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    "SELECT product_id, on_hand - reserved FROM rm_stock
                     WHERE store_id = $1 AND on_hand - reserved > 0",
                    &[&store_id],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect()),
        }
    }

    /// Open orders per store.
    pub async fn backlog(&self) -> Result<BTreeMap<String, u32>, CloudError> {
        match self.backend() {
            Backend::Sqlite(db) => Ok(db
                .read(|conn| -> Result<_, flashkart_sync::Error> {
                    let rows = conn
                        .prepare_cached(
                            "SELECT store_id, count(*) FROM rm_orders WHERE open = 1 GROUP BY store_id",
                        )?
                        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                        .collect::<Result<_, _>>()?;
                    Ok(rows)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    "SELECT store_id, count(*) FROM rm_orders WHERE open = 1 GROUP BY store_id",
                    &[],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), count(row.get(1))))
                .collect()),
        }
    }

    /// Riders seen at each store since `since` (RFC 3339).
    pub async fn riders_seen(&self, since: String) -> Result<BTreeMap<String, u32>, CloudError> {
        match self.backend() {
            Backend::Sqlite(db) => Ok(db
                .read(move |conn| -> Result<_, flashkart_sync::Error> {
                    let rows = conn
                        .prepare_cached(
                            "SELECT store_id, count(*) FROM rm_riders WHERE at >= ?1 GROUP BY store_id",
                        )?
                        .query_map([since], |row| Ok((row.get(0)?, row.get(1)?)))?
                        .collect::<Result<_, _>>()?;
                    Ok(rows)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    "SELECT store_id, count(*) FROM rm_riders WHERE at >= $1 GROUP BY store_id",
                    &[&since],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), count(row.get(1))))
                .collect()),
        }
    }

    /// An order as the customer and HQ see it, with its timeline.
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderView>, CloudError> {
        match self.backend() {
            Backend::Sqlite(db) => {
                let order_id = order_id.to_owned();
                Ok(db.read(move |conn| order_view(conn, &order_id)).await?)
            }
            Backend::Postgres(pg) => pg_order_view(&**pg.client().await?, order_id).await,
        }
    }

    /// `customer_id`'s orders, newest first, at most `limit`.
    pub async fn customer_orders(
        &self,
        customer_id: &str,
        limit: u32,
    ) -> Result<Vec<OrderSummary>, CloudError> {
        match self.backend() {
            Backend::Sqlite(db) => {
                let customer_id = customer_id.to_owned();
                Ok(db
                    .read(move |conn| -> Result<_, flashkart_sync::Error> {
                        let rows = conn
                            .prepare_cached(
                                "SELECT id, store_id, status, status_at, placed_at, promised_at,
                                    total_minor
                                 FROM rm_orders WHERE customer_id = ?1
                                 ORDER BY placed_at DESC, id DESC LIMIT ?2",
                            )?
                            .query_map(rusqlite::params![customer_id, limit], |r| {
                                Ok(OrderSummary {
                                    id: r.get(0)?,
                                    store_id: r.get(1)?,
                                    status: r.get(2)?,
                                    status_at: r.get(3)?,
                                    placed_at: r.get(4)?,
                                    promised_at: r.get(5)?,
                                    total_minor: r.get(6)?,
                                })
                            })?
                            .collect::<Result<_, _>>()?;
                        Ok(rows)
                    })
                    .await?)
            }
            // Ids tie-broken in byte order (COLLATE "C"), as SQLite compares text.
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    "SELECT id, store_id, status, status_at, placed_at, promised_at, total_minor
                     FROM rm_orders WHERE customer_id = $1
                     ORDER BY placed_at DESC, id COLLATE \"C\" DESC LIMIT $2",
                    &[&customer_id, &i64::from(limit)],
                )
                .await?
                .iter()
                .map(|r| OrderSummary {
                    id: r.get(0),
                    store_id: r.get(1),
                    status: r.get(2),
                    status_at: r.get(3),
                    placed_at: r.get(4),
                    promised_at: r.get(5),
                    total_minor: r.get(6),
                })
                .collect()),
        }
    }

    /// The status of each of these orders that the read model knows.
    pub async fn statuses(
        &self,
        order_ids: Vec<String>,
    ) -> Result<HashMap<String, String>, CloudError> {
        match self.backend() {
            Backend::Sqlite(db) => Ok(db
                .read(move |conn| -> Result<_, flashkart_sync::Error> {
                    let mut statement =
                        conn.prepare_cached("SELECT status FROM rm_orders WHERE id = ?1")?;
                    let mut found = HashMap::new();
                    for id in order_ids {
                        let status: Option<String> =
                            statement.query_row([&id], |row| row.get(0)).optional()?;
                        if let Some(status) = status {
                            found.insert(id, status);
                        }
                    }
                    Ok(found)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    "SELECT id, status FROM rm_orders WHERE id = ANY($1)",
                    &[&order_ids],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect()),
        }
    }

    /// Per-store figures for HQ's dashboard.
    pub async fn store_figures(&self, since: String) -> Result<Vec<StoreFigures>, CloudError> {
        match self.backend() {
            Backend::Sqlite(db) => Ok(db
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
                .await?),
            // Stores in byte order (COLLATE "C"), as SQLite sorts them.
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    "SELECT s.store_id,
                        (SELECT count(*) FROM rm_orders o WHERE o.store_id = s.store_id AND o.open = 1),
                        (SELECT count(*) FROM rm_timeline t
                           WHERE t.store_id = s.store_id AND t.status = 'PICKED_UP' AND t.at >= $1),
                        (SELECT count(*) FROM rm_timeline t JOIN rm_orders o ON o.id = t.order_id
                           WHERE t.store_id = s.store_id AND t.status = 'DELIVERED' AND t.at >= $1),
                        (SELECT count(*) FROM rm_timeline t JOIN rm_orders o ON o.id = t.order_id
                           WHERE t.store_id = s.store_id AND t.status = 'DELIVERED' AND t.at >= $1
                             AND o.promised_at IS NOT NULL AND t.at <= o.promised_at),
                        (SELECT count(*) FROM rm_riders r WHERE r.store_id = s.store_id AND r.at >= $1)
                     FROM (SELECT DISTINCT store_id FROM rm_orders
                           UNION SELECT DISTINCT store_id FROM rm_stock) s
                     ORDER BY s.store_id COLLATE \"C\"",
                    &[&since],
                )
                .await?
                .iter()
                .map(|row| StoreFigures {
                    store_id: row.get(0),
                    open_orders: count(row.get(1)),
                    picked_up: count(row.get(2)),
                    delivered: count(row.get(3)),
                    delivered_on_time: count(row.get(4)),
                    riders_seen: count(row.get(5)),
                })
                .collect()),
        }
    }

    /// Short lines the store reported for an order.
    pub async fn short_lines(
        &self,
        order_id: &str,
        store_id: &str,
    ) -> Result<Vec<(i64, i64)>, CloudError> {
        match self.backend() {
            Backend::Sqlite(db) => {
                let (order_id, store_id) = (order_id.to_owned(), store_id.to_owned());
                Ok(db
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
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    "SELECT line_no, short_qty FROM rm_short_lines
                     WHERE order_id = $1 AND store_id = $2 ORDER BY line_no",
                    &[&order_id, &store_id],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect()),
        }
    }
}

/// A count as the figures carry it (PostgreSQL's count is a BIGINT; none comes near u32).
fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The timeline key of intake's `n`th step of `order` (to `to`): the same order routed to the
/// same store again writes the same entries.
fn step_event_id(order: &RoutedOrder, n: usize, to: &str) -> String {
    format!("{}/{}/{n}/{to}", order.id, order.store_id)
}

/// The customer's confirmation of `order`, when intake confirmed it.
fn confirmation(order: &RoutedOrder) -> Option<Notification<'_>> {
    if !order.steps.iter().any(|(_, to, _)| *to == "CONFIRMED") {
        return None;
    }
    Some(Notification {
        kind: Kind::OrderConfirmed,
        about: &order.id,
        order_id: Some(&order.id),
        customer_id: Some(&order.customer_id),
        payload: serde_json::json!({
            "store_id": order.store_id,
            "total_minor": order.total_minor,
            "currency": order.currency,
        }),
    })
}

/// What the customer is told of a cloud note on `order_id` (`about`: the order at its store).
fn noted<'a>(
    kind: Kind,
    about: &'a str,
    order_id: &'a str,
    payload: serde_json::Value,
) -> Notification<'a> {
    Notification {
        kind,
        about,
        order_id: Some(order_id),
        customer_id: None,
        payload,
    }
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

/// [`order_view`] on PostgreSQL: ties in time ordered the same way, the cloud's entries before
/// the store's and then in insertion order (`seq`, where SQLite has the rowid).
async fn pg_order_view(
    client: &impl tokio_postgres::GenericClient,
    order_id: &str,
) -> Result<Option<OrderView>, CloudError> {
    let Some(row) = client
        .query_opt(
            "SELECT id, store_id, customer_id, status, status_at, placed_at, promised_at,
                total_minor, delivery_fee_minor FROM rm_orders WHERE id = $1",
            &[&order_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let timeline = client
        .query(
            "SELECT status, from_status, at, store_id, source, actor, note FROM rm_timeline
             WHERE order_id = $1 ORDER BY at, source = 'edge', seq",
            &[&order_id],
        )
        .await?
        .iter()
        .map(|row| TimelineEntry {
            status: row.get(0),
            from: row.get(1),
            at: row.get(2),
            store_id: row.get(3),
            source: row.get(4),
            actor: row.get(5),
            note: row.get(6),
        })
        .collect();
    Ok(Some(OrderView {
        id: row.get(0),
        store_id: row.get(1),
        customer_id: row.get(2),
        status: row.get(3),
        status_at: row.get(4),
        placed_at: row.get(5),
        promised_at: row.get(6),
        total_minor: row.get(7),
        delivery_fee_minor: row.get(8),
        timeline,
    }))
}

/// Most PACKED events [`Projection::pick_seconds_since`] reads: far above an hour's packs at
/// every store, so it bounds a scrape without cutting a real figure.
const MAX_PICKS: i64 = 50_000;

impl Projection {
    /// Seconds from each order's first ACCEPTED at a store to its PACKED there, for the orders
    /// packed since `since` (RFC 3339), by store: the pick times `/metrics` turns into
    /// quantiles. Read along the (status, at) index for the window and the by-order index for
    /// each order's acceptance, at most [`MAX_PICKS`] packs.
    pub async fn pick_seconds_since(
        &self,
        since: String,
    ) -> Result<BTreeMap<String, Vec<f64>>, CloudError> {
        let mut picks: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut pick = |store: String, seconds: Option<f64>| {
            // An order packed without an ACCEPTED seen here has no pick time.
            if let Some(seconds) = seconds {
                // Milliseconds, as the timestamps have them (julianday leaves noise).
                picks
                    .entry(store)
                    .or_default()
                    .push((seconds * 1000.0).round() / 1000.0);
            }
        };
        match self.backend() {
            Backend::Sqlite(db) => {
                let rows = db
                    .read(move |conn| {
                        let mut statement = conn.prepare_cached(
                            "SELECT p.store_id, (julianday(p.at) - julianday((SELECT min(a.at)
                                FROM rm_timeline a INDEXED BY rm_timeline_by_order
                                WHERE a.order_id = p.order_id AND a.store_id = p.store_id
                                  AND a.status = 'ACCEPTED'))) * 86400.0
                             FROM rm_timeline p INDEXED BY rm_timeline_by_status
                             WHERE p.status = 'PACKED' AND p.at >= ?1
                             ORDER BY p.at DESC LIMIT ?2",
                        )?;
                        let rows = statement
                            .query_map(params![since, MAX_PICKS], |row| {
                                Ok((row.get::<_, String>(0)?, row.get::<_, Option<f64>>(1)?))
                            })?
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok::<_, flashkart_sync::Error>(rows)
                    })
                    .await?;
                for (store, seconds) in rows {
                    pick(store, seconds);
                }
            }
            // The text times read as timestamps (RFC 3339 with Z, so no time zone applies);
            // the planner picks the same indexes without being told.
            Backend::Postgres(pg) => {
                let rows = pg
                    .client()
                    .await?
                    .query(
                        "SELECT p.store_id, (EXTRACT(EPOCH FROM p.at::timestamptz)
                            - EXTRACT(EPOCH FROM (SELECT min(a.at) FROM rm_timeline a
                                WHERE a.order_id = p.order_id AND a.store_id = p.store_id
                                  AND a.status = 'ACCEPTED')::timestamptz))::DOUBLE PRECISION
                         FROM rm_timeline p
                         WHERE p.status = 'PACKED' AND p.at >= $1
                         ORDER BY p.at DESC LIMIT $2",
                        &[&since, &MAX_PICKS],
                    )
                    .await?;
                for row in &rows {
                    pick(row.get(0), row.get(1));
                }
            }
        }
        Ok(picks)
    }
}
