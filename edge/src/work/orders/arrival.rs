//! An order arriving at the store (reserve or short every line) and leaving it cancelled.
//!
//! Why apart from the transitions: arrival and cancellation are the two places where an order
//! and the stock ledger change together (holds taken, released, picks put back).

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::work::catalog;
use crate::work::ctx::Ctx;
use crate::work::stock::{self, Move};

use super::{Status, record_event, status, transition};

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
    /// `card` (the default) or `cash`: the rider collects `cash_due_minor` at the door.
    #[serde(default = "card")]
    pub payment_method: String,
    /// What the rider collects for a cash order (0..=10^10 minor units); a cash order without
    /// it is due its total. A card order has nothing due.
    #[serde(default)]
    pub cash_due_minor: Option<i64>,
    /// ISO 4217 code of the order's amounts; a cash order must name it (the rider's phone shows
    /// "collect 23.40 EUR").
    #[serde(default)]
    pub currency: Option<String>,
}

fn card() -> String {
    "card".to_owned()
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
    let currency = order.currency.as_deref().unwrap_or_default();
    if !currency.is_empty() {
        crate::limits::currency("currency", currency)?;
    }
    let cash = match order.payment_method.as_str() {
        "card" => {
            if order.cash_due_minor.is_some_and(|due| due != 0) {
                return Err(Error::Invalid(
                    "a card order has no `cash_due_minor`: the customer paid when ordering".into(),
                ));
            }
            false
        }
        "cash" => {
            if currency.is_empty() {
                return Err(Error::Invalid(
                    "a cash order names its `currency` (the rider collects in it)".into(),
                ));
            }
            true
        }
        other => {
            return Err(Error::Invalid(format!(
                "`payment_method` must be `card` or `cash`, not `{}`",
                other.chars().take(16).collect::<String>().escape_debug()
            )));
        }
    };
    if let Some(due) = order.cash_due_minor {
        crate::limits::money_minor("cash_due_minor", due)?;
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
    let cash_due = if cash {
        let due = order.cash_due_minor.unwrap_or(total);
        crate::limits::money_minor("cash_due_minor", due)?
    } else {
        0
    };
    conn.prepare_cached(
        "INSERT INTO orders (id, store_id, customer_first_name, address, lat, lon, payment_ref,
                             delivery_slot, total_minor, placed_at, routed_at, payment_method,
                             cash_due_minor, currency)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13)",
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
        ctx.at,
        order.payment_method,
        cash_due,
        currency
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
