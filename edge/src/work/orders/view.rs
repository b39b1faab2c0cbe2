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
    pub customer_first_name: String,
    pub lines: i64,
    pub open_qty: i64,
    pub tote: Option<String>,
}

/// The store's work queues.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Queues {
    /// Accepted, waiting for a picker.
    pub new: Vec<QueueEntry>,
    pub picking: Vec<QueueEntry>,
    pub packed: Vec<QueueEntry>,
    pub ready: Vec<QueueEntry>,
}

/// The queues, oldest first.
pub fn queues(conn: &Connection) -> Result<Queues, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT op.order_id, op.status, op.status_at, coalesce(o.customer_first_name, ''),
                (SELECT count(*) FROM order_lines l WHERE l.order_id = op.order_id),
                (SELECT coalesce(sum(l.qty - coalesce(lp.picked_qty, 0) - coalesce(lp.short_qty, 0)), 0)
                   FROM order_lines l LEFT JOIN order_line_progress lp
                     ON lp.order_id = l.order_id AND lp.line_no = l.line_no
                  WHERE l.order_id = op.order_id),
                op.tote
         FROM order_progress op LEFT JOIN orders o ON o.id = op.order_id
         WHERE op.status IN ('ACCEPTED', 'PICKING', 'PACKED', 'READY')
         ORDER BY op.status_at, op.order_id",
    )?;
    let entries = stmt
        .query_map([], |row| {
            Ok(QueueEntry {
                order_id: row.get(0)?,
                status: status_column(row, 1)?,
                status_at: row.get(2)?,
                customer_first_name: row.get(3)?,
                lines: row.get(4)?,
                open_qty: row.get(5)?,
                tote: row.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut queues = Queues::default();
    for entry in entries {
        match entry.status {
            Status::Accepted => queues.new.push(entry),
            Status::Picking => queues.picking.push(entry),
            Status::Packed => queues.packed.push(entry),
            _ => queues.ready.push(entry),
        }
    }
    Ok(queues)
}
