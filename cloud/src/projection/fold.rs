//! Folding re-read rows into the global tables. Ledger rows are keyed by their UUIDv7 ids, so
//! each is counted once however often it is delivered, and the sums stay exact.
//!
//! What the customer is told about (a rider on the way, delivered, cancelled, a line
//! substituted) is enqueued here, in the fold's transaction (`notify`): an event only when
//! its timeline row is new, a line under its natural key, so folding again adds nothing.
//! Short lines are told by intake's partial confirmation instead (an order short everywhere at
//! its first store may move whole to another).
//!
//! An order's lines are kept per store with their progress: intake records them as routed,
//! the store's `order_line_progress` fills in what was picked, short and substituted (and the
//! line itself, from the replica's, should the progress be folded first).
//!
//! Two folds with the same statements in the same order, one per engine: [`fold`] in a
//! `readmodel.db` write, [`fold_postgres`] in a PostgreSQL transaction. What does not touch
//! the database (what a row means for stock, whether an order stays open, what the customer is
//! told, what is reported) is decided once, below them, for both.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::ShortReport;
use super::rows::{EventRow, LineRow, Rows};
use crate::CloudError;
use crate::notify::{self, Kind, Notification};

/// Store statuses the customer is notified of.
const NOTIFIED: &[(&str, Kind)] = &[
    ("PICKED_UP", Kind::RiderOnTheWay),
    ("DELIVERED", Kind::Delivered),
    ("CANCELLED", Kind::Cancelled),
];

/// What folding found: orders with short lines (for intake) and whether a notification was
/// enqueued (the sender is woken after the commit).
pub(super) struct Folded {
    pub(super) reports: Vec<ShortReport>,
    pub(super) enqueued: bool,
    /// The store's order events new to the read model: (order id, from, to, actor), logged
    /// with the order's trace id once the fold has committed.
    pub(super) events: Vec<(String, Option<String>, String, String)>,
}

/// Statuses after which an order no longer counts against its store's capacity.
const CLOSED_STATUSES: &[&str] = &["PICKED_UP", "DELIVERED", "CLOSED", "CANCELLED", "REFUNDED"];

pub(super) fn fold(
    conn: &Connection,
    store_id: &str,
    rows: &Rows,
    now: time::OffsetDateTime,
) -> Result<Folded, flashkart_sync::Error> {
    let mut folding = Folding::default();
    for (device_id, device) in &rows.devices {
        match device {
            Some(d) => conn
                .prepare_cached(
                    "INSERT INTO rm_devices
                        (store_id, device_id, kind, health, reason, faults, changed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (store_id, device_id) DO UPDATE SET kind = excluded.kind,
                        health = excluded.health, reason = excluded.reason,
                        faults = excluded.faults, changed_at = excluded.changed_at",
                )?
                .execute(params![
                    store_id,
                    device_id,
                    d.kind,
                    d.health,
                    d.reason,
                    d.faults,
                    d.changed_at
                ])?,
            None => conn
                .prepare_cached("DELETE FROM rm_devices WHERE store_id = ?1 AND device_id = ?2")?
                .execute([store_id, device_id])?,
        };
    }
    if let Some(fact_at) = rows.newest_fact_at() {
        conn.prepare_cached(
            "INSERT INTO rm_store_sync (store_id, fact_at, projected_at, lag_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (store_id) DO UPDATE SET fact_at = excluded.fact_at,
                projected_at = excluded.projected_at, lag_ms = excluded.lag_ms",
        )?
        .execute(params![
            store_id,
            fact_at,
            crate::clock::rfc3339(now),
            lag_ms(fact_at, now)
        ])?;
    }
    for (id, product_id, qty, kind) in &rows.moves {
        let fresh = conn
            .prepare_cached("INSERT OR IGNORE INTO rm_moves (id) VALUES (?1)")?
            .execute([id])?;
        if fresh == 0 {
            continue;
        }
        let (on_hand, reserved) = stock_delta(kind, *qty);
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
        folding.new_event(event);
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
            is_open(event)
        ])?;
        if let Some(tell) = Tell::event(event, store_id) {
            // Only the store the order is routed to speaks for it: the first store's
            // cancellation of a rerouted order is not the customer's news.
            let routed_here = conn
                .prepare_cached("SELECT 1 FROM rm_orders WHERE id = ?1 AND store_id = ?2")?
                .query_row(params![event.order_id, store_id], |_| Ok(()))
                .optional()?
                .is_some();
            if routed_here {
                folding.enqueued |= notify::enqueue(conn, &tell.notification())?;
            }
        }
    }
    for line in &rows.line_progress {
        match (&line.product_id, line.ordered) {
            // The line as routed here with its progress (intake may not have recorded it yet).
            (Some(product_id), Some((qty, unit_price_minor))) => {
                conn.prepare_cached(LINE_UPSERT_SQLITE)?.execute(params![
                    line.order_id,
                    store_id,
                    line.line_no,
                    product_id,
                    qty,
                    unit_price_minor,
                    line.picked_qty,
                    line.short_qty,
                    line.substitute_product_id
                ])?
            }
            _ => conn.prepare_cached(LINE_PROGRESS_SQLITE)?.execute(params![
                line.order_id,
                store_id,
                line.line_no,
                line.picked_qty,
                line.short_qty,
                line.substitute_product_id
            ])?,
        };
        if line.short_qty > 0 {
            conn.prepare_cached(
                "INSERT INTO rm_short_lines (order_id, line_no, store_id, short_qty)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (order_id, line_no, store_id) DO UPDATE SET short_qty = excluded.short_qty",
            )?
            .execute(params![line.order_id, line.line_no, store_id, line.short_qty])?;
            folding.short(line);
        }
        if let Some(tell) = Tell::substitution(line, store_id) {
            folding.enqueued |= notify::enqueue(conn, &tell.notification())?;
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
    for (id, attempt) in &rows.pin_attempts {
        match attempt {
            Some(a) => conn
                .prepare_cached(ATTEMPT_UPSERT_SQLITE)?
                .execute(params![
                    id, a.order_id, store_id, a.rider_id, a.outcome, a.at
                ])?,
            None => conn
                .prepare_cached("DELETE FROM rm_pin_attempts WHERE id = ?1 AND store_id = ?2")?
                .execute([id, store_id])?,
        };
    }
    for (id, certificate) in &rows.certificates {
        match certificate {
            Some((sha256, at)) => conn
                .prepare_cached(CERTIFICATE_UPSERT_SQLITE)?
                .execute(params![store_id, id, sha256, at])?,
            None => conn
                .prepare_cached(
                    "DELETE FROM rm_store_certificates WHERE store_id = ?1 AND id = ?2",
                )?
                .execute([store_id, id])?,
        };
    }
    Ok(folding.done(store_id))
}

/// A line as routed to the store with its progress, by order, store and line: the progress
/// columns are the store's, the rest intake's (the same values from the replica's line).
const LINE_UPSERT_SQLITE: &str = "INSERT INTO rm_order_lines (order_id, store_id, line_no,
        product_id, qty, unit_price_minor, picked_qty, short_qty, substitute_product_id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
     ON CONFLICT (order_id, store_id, line_no) DO UPDATE SET picked_qty = excluded.picked_qty,
        short_qty = excluded.short_qty, substitute_product_id = excluded.substitute_product_id";
const LINE_UPSERT_POSTGRES: &str = "INSERT INTO rm_order_lines (order_id, store_id, line_no,
        product_id, qty, unit_price_minor, picked_qty, short_qty, substitute_product_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (order_id, store_id, line_no) DO UPDATE SET picked_qty = excluded.picked_qty,
        short_qty = excluded.short_qty, substitute_product_id = excluded.substitute_product_id";

/// The progress of a line the replica has no cloud line for: kept only if intake recorded one.
const LINE_PROGRESS_SQLITE: &str = "UPDATE rm_order_lines
     SET picked_qty = ?4, short_qty = ?5, substitute_product_id = ?6
     WHERE order_id = ?1 AND store_id = ?2 AND line_no = ?3";
const LINE_PROGRESS_POSTGRES: &str = "UPDATE rm_order_lines
     SET picked_qty = $4, short_qty = $5, substitute_product_id = $6
     WHERE order_id = $1 AND store_id = $2 AND line_no = $3";

/// A delivery attempt by its id; another store's row of the same id is left alone.
const ATTEMPT_UPSERT_SQLITE: &str = "INSERT INTO rm_pin_attempts
        (id, order_id, store_id, rider_id, outcome, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT (id) DO UPDATE SET order_id = excluded.order_id, rider_id = excluded.rider_id,
        outcome = excluded.outcome, at = excluded.at
     WHERE rm_pin_attempts.store_id = excluded.store_id";
const ATTEMPT_UPSERT_POSTGRES: &str = "INSERT INTO rm_pin_attempts
        (id, order_id, store_id, rider_id, outcome, at) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (id) DO UPDATE SET order_id = excluded.order_id, rider_id = excluded.rider_id,
        outcome = excluded.outcome, at = excluded.at
     WHERE rm_pin_attempts.store_id = excluded.store_id";

/// A store's certificate fingerprint, by store and id.
const CERTIFICATE_UPSERT_SQLITE: &str = "INSERT INTO rm_store_certificates
        (store_id, id, sha256, updated_at) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (store_id, id) DO UPDATE SET sha256 = excluded.sha256,
        updated_at = excluded.updated_at";
const CERTIFICATE_UPSERT_POSTGRES: &str = "INSERT INTO rm_store_certificates
        (store_id, id, sha256, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (store_id, id) DO UPDATE SET sha256 = excluded.sha256,
        updated_at = excluded.updated_at";

/// [`fold`] in the caller's PostgreSQL transaction `tx`: the same statements in the same
/// order, so the same rows, sums and notifications. Each statement a loop repeats is prepared
/// once per fold (a step can carry thousands of rows, and a statement given as text would be
/// parsed again for every one); a table with nothing to fold costs no round trip.
pub(super) async fn fold_postgres(
    tx: &tokio_postgres::Transaction<'_>,
    store_id: &str,
    rows: &Rows,
    now: time::OffsetDateTime,
) -> Result<Folded, CloudError> {
    let mut folding = Folding::default();
    if !rows.devices.is_empty() {
        let upsert = tx
            .prepare(
                "INSERT INTO rm_devices
                    (store_id, device_id, kind, health, reason, faults, changed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (store_id, device_id) DO UPDATE SET kind = excluded.kind,
                    health = excluded.health, reason = excluded.reason,
                    faults = excluded.faults, changed_at = excluded.changed_at",
            )
            .await?;
        let delete = tx
            .prepare("DELETE FROM rm_devices WHERE store_id = $1 AND device_id = $2")
            .await?;
        for (device_id, device) in &rows.devices {
            match device {
                Some(d) => {
                    tx.execute(
                        &upsert,
                        &[
                            &store_id,
                            device_id,
                            &d.kind,
                            &d.health,
                            &d.reason,
                            &d.faults,
                            &d.changed_at,
                        ],
                    )
                    .await?
                }
                None => tx.execute(&delete, &[&store_id, device_id]).await?,
            };
        }
    }
    if let Some(fact_at) = rows.newest_fact_at() {
        tx.execute(
            "INSERT INTO rm_store_sync (store_id, fact_at, projected_at, lag_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (store_id) DO UPDATE SET fact_at = excluded.fact_at,
                projected_at = excluded.projected_at, lag_ms = excluded.lag_ms",
            &[
                &store_id,
                &fact_at,
                &crate::clock::rfc3339(now),
                &lag_ms(fact_at, now),
            ],
        )
        .await?;
    }
    if !rows.moves.is_empty() {
        let claim = tx
            .prepare("INSERT INTO rm_moves (id) VALUES ($1) ON CONFLICT DO NOTHING")
            .await?;
        // The existing row's columns qualified: in PostgreSQL a bare `on_hand` here would be
        // ambiguous with `excluded`'s.
        let add = tx
            .prepare(
                "INSERT INTO rm_stock (store_id, product_id, on_hand, reserved)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (store_id, product_id) DO UPDATE SET
                    on_hand = rm_stock.on_hand + excluded.on_hand,
                    reserved = rm_stock.reserved + excluded.reserved",
            )
            .await?;
        for (id, product_id, qty, kind) in &rows.moves {
            if tx.execute(&claim, &[id]).await? == 0 {
                continue;
            }
            let (on_hand, reserved) = stock_delta(kind, *qty);
            tx.execute(&add, &[&store_id, product_id, &on_hand, &reserved])
                .await?;
        }
    }
    if !rows.events.is_empty() {
        let insert = tx
            .prepare(
                "INSERT INTO rm_timeline
                    (event_id, order_id, store_id, from_status, status, at, actor, source, note)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'edge', $8)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        // Only the store the order is routed to moves its status; the latest event wins.
        let status = tx
            .prepare(
                "INSERT INTO rm_orders (id, store_id, status, status_at, placed_at, open)
                 VALUES ($1, $2, $3, $4, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                    status_at = excluded.status_at, open = excluded.open
                 WHERE rm_orders.store_id = excluded.store_id
                   AND excluded.status_at >= rm_orders.status_at",
            )
            .await?;
        for event in &rows.events {
            let fresh = tx
                .execute(
                    &insert,
                    &[
                        &event.id,
                        &event.order_id,
                        &store_id,
                        &event.from_status,
                        &event.to_status,
                        &event.at,
                        &event.actor,
                        &event.note,
                    ],
                )
                .await?;
            if fresh == 0 {
                continue;
            }
            folding.new_event(event);
            let open = i64::from(is_open(event));
            tx.execute(
                &status,
                &[
                    &event.order_id,
                    &store_id,
                    &event.to_status,
                    &event.at,
                    &open,
                ],
            )
            .await?;
            if let Some(tell) = Tell::event(event, store_id) {
                // Only the store the order is routed to speaks for it.
                let routed_here = tx
                    .query_opt(
                        "SELECT 1 FROM rm_orders WHERE id = $1 AND store_id = $2",
                        &[&event.order_id, &store_id],
                    )
                    .await?
                    .is_some();
                if routed_here {
                    folding.enqueued |= notify::enqueue_postgres(tx, &tell.notification()).await?;
                }
            }
        }
    }
    if !rows.line_progress.is_empty() {
        let short = tx
            .prepare(
                "INSERT INTO rm_short_lines (order_id, line_no, store_id, short_qty)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (order_id, line_no, store_id) DO UPDATE SET short_qty = excluded.short_qty",
            )
            .await?;
        let upsert = tx.prepare(LINE_UPSERT_POSTGRES).await?;
        let progress = tx.prepare(LINE_PROGRESS_POSTGRES).await?;
        for line in &rows.line_progress {
            match (&line.product_id, line.ordered) {
                (Some(product_id), Some((qty, unit_price_minor))) => {
                    tx.execute(
                        &upsert,
                        &[
                            &line.order_id,
                            &store_id,
                            &line.line_no,
                            product_id,
                            &qty,
                            &unit_price_minor,
                            &line.picked_qty,
                            &line.short_qty,
                            &line.substitute_product_id,
                        ],
                    )
                    .await?
                }
                _ => {
                    tx.execute(
                        &progress,
                        &[
                            &line.order_id,
                            &store_id,
                            &line.line_no,
                            &line.picked_qty,
                            &line.short_qty,
                            &line.substitute_product_id,
                        ],
                    )
                    .await?
                }
            };
            if line.short_qty > 0 {
                tx.execute(
                    &short,
                    &[&line.order_id, &line.line_no, &store_id, &line.short_qty],
                )
                .await?;
                folding.short(line);
            }
            if let Some(tell) = Tell::substitution(line, store_id) {
                folding.enqueued |= notify::enqueue_postgres(tx, &tell.notification()).await?;
            }
        }
    }
    if !rows.riders.is_empty() {
        let position = tx
            .prepare(
                "INSERT INTO rm_riders (rider_id, store_id, lat, lon, at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (rider_id) DO UPDATE SET store_id = excluded.store_id,
                    lat = excluded.lat, lon = excluded.lon, at = excluded.at
                 WHERE excluded.at >= rm_riders.at",
            )
            .await?;
        for (rider_id, lat, lon, at) in &rows.riders {
            tx.execute(&position, &[rider_id, &store_id, lat, lon, at])
                .await?;
        }
    }
    if !rows.replies.is_empty() {
        let reply = tx
            .prepare(
                "INSERT INTO rm_replies (assignment_id, store_id, rider_id, reply, at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        for (assignment_id, rider_id, answer, at) in &rows.replies {
            tx.execute(&reply, &[assignment_id, &store_id, rider_id, answer, at])
                .await?;
        }
    }
    if !rows.pin_attempts.is_empty() {
        let upsert = tx.prepare(ATTEMPT_UPSERT_POSTGRES).await?;
        let delete = tx
            .prepare("DELETE FROM rm_pin_attempts WHERE id = $1 AND store_id = $2")
            .await?;
        for (id, attempt) in &rows.pin_attempts {
            match attempt {
                Some(a) => {
                    tx.execute(
                        &upsert,
                        &[id, &a.order_id, &store_id, &a.rider_id, &a.outcome, &a.at],
                    )
                    .await?
                }
                None => tx.execute(&delete, &[id, &store_id]).await?,
            };
        }
    }
    for (id, certificate) in &rows.certificates {
        match certificate {
            Some((sha256, at)) => {
                tx.execute(CERTIFICATE_UPSERT_POSTGRES, &[&store_id, id, sha256, at])
                    .await?
            }
            None => {
                tx.execute(
                    "DELETE FROM rm_store_certificates WHERE store_id = $1 AND id = $2",
                    &[&store_id, id],
                )
                .await?
            }
        };
    }
    Ok(folding.done(store_id))
}

/// What a fold gathers as it goes, on either engine.
#[derive(Default)]
struct Folding {
    enqueued: bool,
    events: Vec<(String, Option<String>, String, String)>,
    short_orders: BTreeSet<String>,
}

impl Folding {
    /// `event` was new to the timeline: logged once the fold has committed.
    fn new_event(&mut self, event: &EventRow) {
        self.events.push((
            event.order_id.clone(),
            event.from_status.clone(),
            event.to_status.clone(),
            event.actor.clone(),
        ));
    }

    /// `line` was short: its order is reported to intake (once however many lines).
    fn short(&mut self, line: &LineRow) {
        self.short_orders.insert(line.order_id.clone());
    }

    fn done(self, store_id: &str) -> Folded {
        let reports = self
            .short_orders
            .into_iter()
            .map(|order_id| ShortReport {
                order_id,
                store_id: store_id.to_owned(),
            })
            .collect();
        Folded {
            reports,
            enqueued: self.enqueued,
            events: self.events,
        }
    }
}

/// How late the store's newest fact reached the read model, in milliseconds. A store clock
/// ahead of the cloud's (clamped to two minutes) reads as no lag.
fn lag_ms(fact_at: &str, now: time::OffsetDateTime) -> i64 {
    crate::clock::parse(fact_at)
        .map(|at| (now - at).whole_milliseconds().max(0))
        .and_then(|ms| i64::try_from(ms).ok())
        .unwrap_or(0)
}

/// What a stock move of `kind` adds to (on hand, reserved): reservations and releases move
/// the reserved pieces, everything else the pieces on hand.
fn stock_delta(kind: &str, qty: i64) -> (i64, i64) {
    if matches!(kind, "reserve" | "release") {
        (0, qty)
    } else {
        (qty, 0)
    }
}

/// Whether the order still counts against its store once `event` is its status.
fn is_open(event: &EventRow) -> bool {
    !CLOSED_STATUSES.contains(&event.to_status.as_str())
}

/// A notification the fold decided on, owned so that either engine's enqueue can borrow it.
struct Tell {
    kind: Kind,
    about: String,
    order_id: String,
    payload: serde_json::Value,
}

impl Tell {
    /// What the customer is told of a store's event, if its status is one they hear of
    /// (sent only when the order is routed to that store, which the fold checks).
    fn event(event: &EventRow, store_id: &str) -> Option<Self> {
        let (_, kind) = NOTIFIED.iter().find(|(s, _)| *s == event.to_status)?;
        Some(Self {
            kind: *kind,
            about: event.order_id.clone(),
            order_id: event.order_id.clone(),
            payload: serde_json::json!({"store_id": store_id, "at": event.at}),
        })
    }

    /// What the customer is told of a substituted line, under the line's own key.
    fn substitution(line: &LineRow, store_id: &str) -> Option<Self> {
        line.substitute_product_id.as_ref()?;
        Some(Self {
            kind: Kind::LineSubstituted,
            about: format!("{}/{}", line.order_id, line.line_no),
            order_id: line.order_id.clone(),
            payload: serde_json::json!({
                "store_id": store_id,
                "line_no": line.line_no,
                "product_id": line.product_id,
                "substitute_product_id": line.substitute_product_id,
            }),
        })
    }

    fn notification(&self) -> Notification<'_> {
        Notification {
            kind: self.kind,
            about: &self.about,
            order_id: Some(&self.order_id),
            customer_id: None,
            payload: self.payload.clone(),
        }
    }
}
