//! Orders at the store: the state machine, arrival (reserve or short every line), queues,
//! detail, and cancellation.
//!
//! An order's lines are cloud-owned (`orders`, `order_lines`); the store's progress on it is
//! edge-owned (`order_progress`, `order_line_progress`, `order_events`). Every status change
//! goes through [`transition`], which refuses what the state machine does not allow (naming
//! the current state) and stores the change with its actor and time in `order_events`.
//!
//! Until sync lands, [`intake`] and [`request_cancel`] write the cloud-owned rows exactly as
//! the cloud's replication will, then run the same arrival/cancellation the store runs when
//! those rows arrive by sync.

use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::work::catalog;
use crate::work::ctx::{Ctx, new_id};
use crate::work::stock::{self, Move};

/// The order lifecycle of ARCHITECTURE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Confirmed,
    Routed,
    Accepted,
    Picking,
    Packed,
    Ready,
    Assigned,
    PickedUp,
    Delivered,
    Closed,
    Cancelled,
    Refunded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Routed => "ROUTED",
            Self::Accepted => "ACCEPTED",
            Self::Picking => "PICKING",
            Self::Packed => "PACKED",
            Self::Ready => "READY",
            Self::Assigned => "ASSIGNED",
            Self::PickedUp => "PICKED_UP",
            Self::Delivered => "DELIVERED",
            Self::Closed => "CLOSED",
            Self::Cancelled => "CANCELLED",
            Self::Refunded => "REFUNDED",
        }
    }

    /// Whether the state machine allows `self -> to`.
    ///
    /// The cloud moves orders up to ROUTED and decides refunds; the store takes them from
    /// ROUTED to PICKED_UP. A handoff may come straight from READY: the rider's assignment is
    /// cloud-owned and may not have reached an offline store. Cancellation is honoured until
    /// the handoff.
    pub fn can_become(self, to: Self) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Pending, Confirmed)
                | (Confirmed, Routed)
                | (Routed, Accepted)
                | (Accepted, Picking)
                | (Picking, Packed)
                | (Packed, Ready)
                | (Ready, Assigned)
                | (Ready | Assigned, PickedUp)
                | (PickedUp, Delivered)
                | (Delivered, Closed)
                | (
                    Pending | Confirmed | Routed | Accepted | Picking | Packed | Ready | Assigned,
                    Cancelled
                )
                | (Cancelled | Delivered | Closed, Refunded)
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        use Status::*;
        [
            Pending, Confirmed, Routed, Accepted, Picking, Packed, Ready, Assigned, PickedUp,
            Delivered, Closed, Cancelled, Refunded,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| Error::Invalid(format!("unknown order status `{s}`")))
    }
}

fn status_column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Status> {
    let text: String = row.get(index)?;
    text.parse().map_err(|e: Error| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            Box::new(std::io::Error::other(e.to_string())),
        )
    })
}

/// The store's status of an order.
pub fn status(conn: &Connection, order_id: &str) -> Result<Status, Error> {
    conn.prepare_cached("SELECT status FROM order_progress WHERE order_id = ?1")?
        .query_row([order_id], |row| status_column(row, 0))
        .optional()?
        .ok_or_else(|| Error::not_found("order", order_id))
}

/// Moves an order to `to`, storing the event; refuses what the state machine does not allow.
/// `action` names what was attempted, for the refusal.
pub fn transition(
    conn: &Connection,
    ctx: &mut Ctx,
    order_id: &str,
    to: Status,
    action: &'static str,
    note: Option<&str>,
) -> Result<Status, Error> {
    let from = status(conn, order_id)?;
    if !from.can_become(to) {
        return Err(Error::InvalidTransition {
            order_id: order_id.to_owned(),
            status: from,
            action,
        });
    }
    conn.prepare_cached(
        "UPDATE order_progress SET status = ?2, status_at = ?3 WHERE order_id = ?1",
    )?
    .execute(params![order_id, to.as_str(), ctx.at])?;
    record_event(conn, ctx, order_id, Some(from), to, note)?;
    ctx.order_moved(order_id, to, note);
    Ok(from)
}

fn record_event(
    conn: &Connection,
    ctx: &Ctx,
    order_id: &str,
    from: Option<Status>,
    to: Status,
    note: Option<&str>,
) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO order_events (id, store_id, order_id, from_status, to_status, actor, at, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        new_id(),
        ctx.store_id,
        order_id,
        from.map(Status::as_str),
        to.as_str(),
        ctx.actor,
        ctx.at,
        note
    ])?;
    Ok(())
}

/// An order as the cloud routes it to this store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderIntake {
    pub id: String,
    #[serde(default)]
    pub customer_first_name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub lat: f64,
    #[serde(default)]
    pub lon: f64,
    pub payment_ref: Option<String>,
    pub delivery_slot: Option<String>,
    pub lines: Vec<LineIntake>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineIntake {
    pub product_id: String,
    pub qty: i64,
}

/// What happened to each line on arrival.
#[derive(Debug, Clone, Serialize)]
pub struct Arrival {
    pub order_id: String,
    pub status: Status,
    pub lines: Vec<LineArrival>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LineArrival {
    pub line_no: i64,
    pub product_id: String,
    pub qty: i64,
    pub reserved: i64,
    pub short: i64,
}

/// Writes an order's cloud-owned rows as the cloud would, then runs [`arrive`].
pub fn intake(conn: &Connection, ctx: &mut Ctx, order: &OrderIntake) -> Result<Arrival, Error> {
    if order.id.trim().is_empty() || order.lines.is_empty() {
        return Err(Error::Invalid(
            "an order needs an id and at least one line".into(),
        ));
    }
    crate::limits::id("id", &order.id)?;
    if order.lines.len() > 200 {
        return Err(Error::Invalid("an order has at most 200 lines".into()));
    }
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM orders WHERE id = ?1)")?
        .query_row([&order.id], |row| row.get(0))?;
    if exists {
        return Err(Error::Conflict(format!(
            "order {} has already arrived",
            order.id
        )));
    }
    let mut total: i64 = 0;
    for (i, line) in order.lines.iter().enumerate() {
        if line.qty <= 0 || line.qty > 10_000 {
            return Err(Error::Invalid(format!(
                "line {}: quantity must be 1..=10000",
                i + 1
            )));
        }
        let price: i64 = conn
            .prepare_cached("SELECT unit_price_minor FROM prices WHERE product_id = ?1")?
            .query_row([&line.product_id], |row| row.get(0))
            .optional()?
            .unwrap_or(0);
        crate::limits::id("product_id", &line.product_id)?;
        total = price
            .checked_mul(line.qty)
            .and_then(|line_total| total.checked_add(line_total))
            .ok_or_else(|| Error::Invalid(format!("line {}: the order total overflows", i + 1)))?;
        conn.prepare_cached(
            "INSERT INTO order_lines (order_id, line_no, store_id, product_id, qty, unit_price_minor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            order.id,
            i64::try_from(i + 1).unwrap_or(i64::MAX),
            ctx.store_id,
            line.product_id,
            line.qty,
            price
        ])?;
    }
    conn.prepare_cached(
        "INSERT INTO orders (id, store_id, customer_first_name, address, lat, lon, payment_ref,
                             delivery_slot, total_minor, placed_at, routed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )?
    .execute(params![
        order.id,
        ctx.store_id,
        order.customer_first_name,
        order.address,
        order.lat,
        order.lon,
        order.payment_ref,
        order.delivery_slot,
        total,
        ctx.at
    ])?;
    arrive(conn, ctx, &order.id)
}

/// An order's rows have arrived (ROUTED): reserve every line, mark what cannot be reserved as
/// short, and accept it.
pub fn arrive(conn: &Connection, ctx: &mut Ctx, order_id: &str) -> Result<Arrival, Error> {
    let known: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM order_progress WHERE order_id = ?1)")?
        .query_row([order_id], |row| row.get(0))?;
    if known {
        return Err(Error::Conflict(format!(
            "order {order_id} has already arrived"
        )));
    }
    conn.prepare_cached(
        "INSERT INTO order_progress (order_id, store_id, status, status_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![order_id, ctx.store_id, Status::Routed.as_str(), ctx.at])?;
    record_event(conn, ctx, order_id, None, Status::Routed, Some("arrived"))?;
    ctx.order_changed(order_id, Status::Routed, "arrived");

    let ordered: Vec<(i64, String, i64)> = conn
        .prepare_cached(
            "SELECT line_no, product_id, qty FROM order_lines WHERE order_id = ?1 ORDER BY line_no",
        )?
        .query_map([order_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    if ordered.is_empty() {
        return Err(Error::not_found("order lines of order", order_id));
    }
    let mut lines = Vec::with_capacity(ordered.len());
    for (line_no, product_id, qty) in ordered {
        let available = match catalog::product(conn, &product_id) {
            Ok(_) => stock::level(conn, &product_id)?.available.max(0),
            Err(Error::NotFound { .. }) => 0,
            Err(e) => return Err(e),
        };
        let reserved = qty.min(available);
        if reserved > 0 {
            stock::record(
                conn,
                ctx,
                &Move::hold(&product_id, reserved, order_id, line_no),
            )?;
        }
        let short = qty - reserved;
        conn.prepare_cached(
            "INSERT INTO order_line_progress (order_id, line_no, store_id, short_qty)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![order_id, line_no, ctx.store_id, short])?;
        lines.push(LineArrival {
            line_no,
            product_id,
            qty,
            reserved,
            short,
        });
    }
    let shorts = lines.iter().filter(|l| l.short > 0).count();
    let note = (shorts > 0).then(|| format!("{shorts} line(s) short on arrival"));
    transition(
        conn,
        ctx,
        order_id,
        Status::Accepted,
        "accept",
        note.as_deref(),
    )?;
    Ok(Arrival {
        order_id: order_id.to_owned(),
        status: Status::Accepted,
        lines,
    })
}

/// Records the cloud's cancellation request (as the cloud would) and honours it.
pub fn request_cancel(
    conn: &Connection,
    ctx: &mut Ctx,
    order_id: &str,
    reason: &str,
) -> Result<Cancelled, Error> {
    crate::limits::text("reason", reason, crate::limits::MAX_NOTE)?;
    let changed = conn
        .prepare_cached(
            "UPDATE orders SET cancel_requested_at = ?2, cancel_reason = ?3 WHERE id = ?1",
        )?
        .execute(params![order_id, ctx.at, reason])?;
    if changed == 0 {
        return Err(Error::not_found("order", order_id));
    }
    honour_cancel(conn, ctx, order_id)
}

/// What a cancellation undid.
#[derive(Debug, Clone, Serialize)]
pub struct Cancelled {
    pub order_id: String,
    pub previous: Status,
    pub status: Status,
    /// Reserved pieces released.
    pub released: i64,
    /// Picked pieces put back by `return` moves.
    pub returned: i64,
}

/// Cancels an order whose cancellation the cloud requested: releases what it holds, returns
/// what was picked to where it came from. Refused once the rider has it.
pub fn honour_cancel(conn: &Connection, ctx: &mut Ctx, order_id: &str) -> Result<Cancelled, Error> {
    let current = status(conn, order_id)?;
    if !current.can_become(Status::Cancelled) {
        return Err(Error::InvalidTransition {
            order_id: order_id.to_owned(),
            status: current,
            action: "cancel",
        });
    }
    let reason: Option<String> = conn
        .prepare_cached("SELECT cancel_reason FROM orders WHERE id = ?1")?
        .query_row([order_id], |row| row.get(0))
        .optional()?
        .flatten();
    let released = stock::release_holds(conn, ctx, order_id, None)?;
    let returned = stock::return_picks(conn, ctx, order_id)?;
    let previous = transition(
        conn,
        ctx,
        order_id,
        Status::Cancelled,
        "cancel",
        reason.as_deref(),
    )?;
    Ok(Cancelled {
        order_id: order_id.to_owned(),
        previous,
        status: Status::Cancelled,
        released,
        returned,
    })
}

/// Refuses work on an order whose cancellation has been requested but not yet honoured.
pub fn ensure_not_cancelling(conn: &Connection, order_id: &str) -> Result<(), Error> {
    let requested: Option<String> = conn
        .prepare_cached("SELECT cancel_requested_at FROM orders WHERE id = ?1")?
        .query_row([order_id], |row| row.get(0))
        .optional()?
        .flatten();
    match requested {
        Some(at) => Err(Error::Conflict(format!(
            "order {order_id}: the customer cancelled it at {at}; stop and put the items back"
        ))),
        None => Ok(()),
    }
}

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

#[cfg(test)]
mod tests {
    use super::Status::*;

    #[test]
    fn state_machine() {
        assert!(Routed.can_become(Accepted));
        assert!(Ready.can_become(PickedUp));
        assert!(Picking.can_become(Cancelled));
        assert!(!PickedUp.can_become(Cancelled));
        assert!(!Accepted.can_become(Packed));
        assert!(!Packed.can_become(Picking));
        assert_eq!("PICKED_UP".parse::<super::Status>().ok(), Some(PickedUp));
    }
}
