//! What the tablets read of orders: lines with progress, the detail, the work queues.
//!
//! Why apart from the transitions: these are read-only queries over the same tables; they
//! change nothing and can be reshaped for the screens without touching the state machine.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use crate::Error;
use crate::work::stock;

use super::{Status, status_column};

/// One line of an order with the store's progress on it.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub line_no: i64,
    pub product_id: String,
    pub product_name: String,
    pub category_id: Option<String>,
    pub qty: i64,
    pub unit_price_minor: i64,
    pub picked_qty: i64,
    pub picked_weight_g: i64,
    pub short_qty: i64,
    pub substitute_product_id: Option<String>,
    pub substitute_name: Option<String>,
    /// Pieces still to pick.
    pub open_qty: i64,
}

impl Line {
    /// The product a scan for this line must be: the substitute if there is one.
    pub fn expected_product(&self) -> &str {
        self.substitute_product_id
            .as_deref()
            .unwrap_or(&self.product_id)
    }

    pub fn expected_label(&self) -> String {
        match (&self.substitute_product_id, &self.substitute_name) {
            (Some(id), Some(name)) => format!("{name} ({id})"),
            (Some(id), None) => id.clone(),
            _ => format!("{} ({})", self.product_name, self.product_id),
        }
    }
}

/// The lines of an order, with progress.
pub fn lines(conn: &Connection, order_id: &str) -> Result<Vec<Line>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.line_no, l.product_id, coalesce(p.name, l.product_id), p.category_id, l.qty,
                l.unit_price_minor, coalesce(lp.picked_qty, 0), coalesce(lp.picked_weight_g, 0),
                coalesce(lp.short_qty, 0), lp.substitute_product_id, sp.name
         FROM order_lines l
         LEFT JOIN products p ON p.id = l.product_id
         LEFT JOIN order_line_progress lp ON lp.order_id = l.order_id AND lp.line_no = l.line_no
         LEFT JOIN products sp ON sp.id = lp.substitute_product_id
         WHERE l.order_id = ?1 ORDER BY l.line_no",
    )?;
    let lines = stmt
        .query_map([order_id], |row| {
            let qty: i64 = row.get(4)?;
            let picked_qty: i64 = row.get(6)?;
            let short_qty: i64 = row.get(8)?;
            Ok(Line {
                line_no: row.get(0)?,
                product_id: row.get(1)?,
                product_name: row.get(2)?,
                category_id: row.get(3)?,
                qty,
                unit_price_minor: row.get(5)?,
                picked_qty,
                picked_weight_g: row.get(7)?,
                short_qty,
                substitute_product_id: row.get(9)?,
                substitute_name: row.get(10)?,
                open_qty: qty - picked_qty - short_qty,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if lines.is_empty() {
        return Err(Error::not_found("order", order_id));
    }
    Ok(lines)
}

/// A stored status change.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub from: Option<Status>,
    pub to: Status,
    pub actor: String,
    pub at: String,
    pub note: Option<String>,
}

/// Everything the store knows about an order.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    pub id: String,
    pub status: Status,
    pub status_at: String,
    pub customer_first_name: String,
    pub address: String,
    pub total_minor: i64,
    pub cancel_requested_at: Option<String>,
    pub tote: Option<String>,
    pub label_id: Option<String>,
    pub bags: i64,
    pub expected_weight_g: Option<i64>,
    pub bag_weight_g: Option<i64>,
    pub lines: Vec<Line>,
    /// What the order still holds reserved: (line, product, pieces).
    pub holds: Vec<(i64, String, i64)>,
    pub events: Vec<Event>,
}

/// The detail of one order.
pub fn detail(conn: &Connection, order_id: &str) -> Result<Detail, Error> {
    let head = conn
        .prepare_cached(
            "SELECT op.status, op.status_at, o.customer_first_name, o.address, o.total_minor,
                    o.cancel_requested_at, op.tote, op.label_id, op.bags, op.expected_weight_g,
                    op.bag_weight_g
             FROM order_progress op JOIN orders o ON o.id = op.order_id WHERE op.order_id = ?1",
        )?
        .query_row([order_id], |row| {
            Ok(Detail {
                id: order_id.to_owned(),
                status: status_column(row, 0)?,
                status_at: row.get(1)?,
                customer_first_name: row.get(2)?,
                address: row.get(3)?,
                total_minor: row.get(4)?,
                cancel_requested_at: row.get(5)?,
                tote: row.get(6)?,
                label_id: row.get(7)?,
                bags: row.get(8)?,
                expected_weight_g: row.get(9)?,
                bag_weight_g: row.get(10)?,
                lines: Vec::new(),
                holds: Vec::new(),
                events: Vec::new(),
            })
        })
        .optional()?;
    let mut detail = head.ok_or_else(|| Error::not_found("order", order_id))?;
    detail.lines = lines(conn, order_id)?;
    detail.holds = stock::line_holds(conn, order_id, None)?;
    let mut events = conn.prepare_cached(
        "SELECT from_status, to_status, actor, at, note FROM order_events
         WHERE order_id = ?1 ORDER BY at, id",
    )?;
    detail.events = events
        .query_map([order_id], |row| {
            let from: Option<String> = row.get(0)?;
            Ok(Event {
                from: from.and_then(|s| s.parse().ok()),
                to: status_column(row, 1)?,
                actor: row.get(2)?,
                at: row.get(3)?,
                note: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(detail)
}

/// An order in a queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueueEntry {
    pub order_id: String,
    pub status: Status,
    pub status_at: String,
    /// When the customer placed it (when it reached the store, for an order taken here).
    pub placed_at: String,
    /// When it should be READY ([`Queues::ready_within_minutes`] after placement).
    pub due_at: String,
    pub customer_first_name: String,
    pub lines: i64,
    pub open_qty: i64,
    pub tote: Option<String>,
    /// The bag label, once packed: what a rider's bag scan is matched against.
    pub label_id: Option<String>,
    /// The rider who accepted it, once assigned.
    pub rider_id: Option<String>,
    pub rider_name: Option<String>,
}

/// An order handed to a rider: who took what.
#[derive(Debug, Clone, Serialize)]
pub struct HandedOff {
    pub order_id: String,
    pub label_id: String,
    pub rider_id: String,
    pub rider_name: Option<String>,
    /// The member of staff (or `rider` for a rider's own bag scan) who recorded it.
    pub staff_id: Option<String>,
    pub at: String,
}

/// The store's work queues.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Queues {
    /// The store's clock, so a tablet with a wrong clock still shows the right ages.
    pub now: String,
    pub ready_within_minutes: u32,
    /// Accepted, waiting for a picker.
    pub new: Vec<QueueEntry>,
    pub picking: Vec<QueueEntry>,
    pub packed: Vec<QueueEntry>,
    /// READY, and ASSIGNED (a rider accepted it and is on the way).
    pub ready: Vec<QueueEntry>,
    /// The last handoffs of the past 12 hours, newest first.
    pub handed_off: Vec<HandedOff>,
}

/// Handoffs shown with the queues.
const HANDED_OFF_SHOWN: i64 = 20;

/// The queues, oldest first.
pub fn queues(conn: &Connection, ready_within_minutes: u32) -> Result<Queues, Error> {
    let mut stmt = conn.prepare_cached(
        "WITH q AS (
           SELECT op.order_id, op.status, op.status_at, coalesce(o.customer_first_name, '') AS name,
                  coalesce(nullif(o.placed_at, ''),
                           (SELECT min(e.at) FROM order_events e WHERE e.order_id = op.order_id),
                           op.status_at) AS placed_at,
                  op.tote, op.label_id
           FROM order_progress op LEFT JOIN orders o ON o.id = op.order_id
           WHERE op.status IN ('ACCEPTED', 'PICKING', 'PACKED', 'READY', 'ASSIGNED'))
         SELECT q.order_id, q.status, q.status_at, q.name, q.placed_at,
                strftime('%Y-%m-%dT%H:%M:%fZ', q.placed_at, ?1),
                (SELECT count(*) FROM order_lines l WHERE l.order_id = q.order_id),
                (SELECT coalesce(sum(l.qty - coalesce(lp.picked_qty, 0) - coalesce(lp.short_qty, 0)), 0)
                   FROM order_lines l LEFT JOIN order_line_progress lp
                     ON lp.order_id = l.order_id AND lp.line_no = l.line_no
                  WHERE l.order_id = q.order_id),
                q.tote, q.label_id, r.rider_id, rd.name
         FROM q
         LEFT JOIN (SELECT a.order_id, ar.rider_id, max(ar.at) FROM assignments a
                      JOIN assignment_replies ar ON ar.assignment_id = a.id
                     WHERE ar.reply = 'accepted' GROUP BY a.order_id) r ON r.order_id = q.order_id
         LEFT JOIN riders rd ON rd.id = r.rider_id
         ORDER BY q.placed_at, q.order_id",
    )?;
    let offset = format!("+{ready_within_minutes} minutes");
    let entries = stmt
        .query_map([&offset], |row| {
            let placed_at: String = row.get(4)?;
            let due_at: Option<String> = row.get(5)?;
            Ok(QueueEntry {
                order_id: row.get(0)?,
                status: status_column(row, 1)?,
                status_at: row.get(2)?,
                // A placement time SQLite cannot read leaves the order due at once.
                due_at: due_at.unwrap_or_else(|| placed_at.clone()),
                placed_at,
                customer_first_name: row.get(3)?,
                lines: row.get(6)?,
                open_qty: row.get(7)?,
                tote: row.get(8)?,
                label_id: row.get(9)?,
                rider_id: row.get(10)?,
                rider_name: row.get(11)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut queues = Queues {
        now: crate::clock::now(),
        ready_within_minutes,
        ..Queues::default()
    };
    for entry in entries {
        match entry.status {
            Status::Accepted => queues.new.push(entry),
            Status::Picking => queues.picking.push(entry),
            Status::Packed => queues.packed.push(entry),
            _ => queues.ready.push(entry),
        }
    }
    queues.handed_off = conn
        .prepare_cached(
            "SELECT h.order_id, h.label_id, h.rider_id, r.name,
                    (SELECT e.actor FROM order_events e
                      WHERE e.order_id = h.order_id AND e.to_status = 'PICKED_UP'
                      ORDER BY e.at DESC LIMIT 1),
                    h.at
             FROM handoffs h LEFT JOIN riders r ON r.id = h.rider_id
             WHERE h.at >= ?1 ORDER BY h.at DESC, h.order_id LIMIT ?2",
        )?
        .query_map(
            rusqlite::params![crate::clock::seconds_from_now(-12 * 3600), HANDED_OFF_SHOWN],
            |row| {
                Ok(HandedOff {
                    order_id: row.get(0)?,
                    label_id: row.get(1)?,
                    rider_id: row.get(2)?,
                    rider_name: row.get(3)?,
                    staff_id: row.get(4)?,
                    at: row.get(5)?,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(queues)
}
