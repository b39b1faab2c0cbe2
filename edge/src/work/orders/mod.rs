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
//!
//! Arrival and cancellation live in `arrival.rs`, what the tablets read (lines, detail,
//! queues) in `view.rs`; this file keeps the transitions every other module goes through.

use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::work::ctx::{Ctx, new_id};

mod arrival;
mod view;

pub use crate::kinds::{Status, UnknownStatus};
pub use arrival::{
    Arrival, Cancelled, LineArrival, LineIntake, OrderIntake, arrive, honour_cancel, intake,
    request_cancel,
};
pub use view::{Detail, Event, Line, QueueEntry, Queues, detail, lines, queues};

fn status_column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Status> {
    let text: String = row.get(index)?;
    text.parse().map_err(|e: UnknownStatus| {
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
