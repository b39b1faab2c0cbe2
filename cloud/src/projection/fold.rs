//! Folding re-read rows into the global tables. Ledger rows are keyed by their UUIDv7 ids, so
//! each is counted once however often it is delivered, and the sums stay exact.
//!
//! What the customer is told about (a rider on the way, delivered, cancelled, a line
//! substituted) is enqueued here, in the fold's transaction (`notify`): an event only when
//! its timeline row is new, a line under its natural key, so folding again adds nothing.
//! Short lines are told by intake's partial confirmation instead (an order short everywhere at
//! its first store may move whole to another).

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::ShortReport;
use super::rows::Rows;
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
    let mut reports = Vec::new();
    let mut enqueued = false;
    let mut events = Vec::new();
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
        // A store clock ahead of the cloud's (clamped to two minutes) reads as no lag.
        let lag_ms = crate::clock::parse(fact_at)
            .map(|at| (now - at).whole_milliseconds().max(0))
            .and_then(|ms| i64::try_from(ms).ok())
            .unwrap_or(0);
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
            lag_ms
        ])?;
    }
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
        events.push((
            event.order_id.clone(),
            event.from_status.clone(),
            event.to_status.clone(),
            event.actor.clone(),
        ));
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
        if let Some((_, kind)) = NOTIFIED.iter().find(|(s, _)| *s == event.to_status) {
            // Only the store the order is routed to speaks for it: the first store's
            // cancellation of a rerouted order is not the customer's news.
            let routed_here = conn
                .prepare_cached("SELECT 1 FROM rm_orders WHERE id = ?1 AND store_id = ?2")?
                .query_row(params![event.order_id, store_id], |_| Ok(()))
                .optional()?
                .is_some();
            if routed_here {
                enqueued |= notify::enqueue(
                    conn,
                    &Notification {
                        kind: *kind,
                        about: &event.order_id,
                        order_id: Some(&event.order_id),
                        customer_id: None,
                        payload: serde_json::json!({"store_id": store_id, "at": event.at}),
                    },
                )?;
            }
        }
    }
    let mut short_orders = BTreeSet::new();
    for line in &rows.line_progress {
        if line.short_qty > 0 {
            conn.prepare_cached(
                "INSERT INTO rm_short_lines (order_id, line_no, store_id, short_qty)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (order_id, line_no, store_id) DO UPDATE SET short_qty = excluded.short_qty",
            )?
            .execute(params![line.order_id, line.line_no, store_id, line.short_qty])?;
            short_orders.insert(line.order_id.clone());
        }
        if line.substitute_product_id.is_some() {
            enqueued |= notify::enqueue(
                conn,
                &Notification {
                    kind: Kind::LineSubstituted,
                    about: &format!("{}/{}", line.order_id, line.line_no),
                    order_id: Some(&line.order_id),
                    customer_id: None,
                    payload: serde_json::json!({
                        "store_id": store_id,
                        "line_no": line.line_no,
                        "product_id": line.product_id,
                        "substitute_product_id": line.substitute_product_id,
                    }),
                },
            )?;
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
    Ok(Folded {
        reports,
        enqueued,
        events,
    })
}
