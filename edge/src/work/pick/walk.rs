//! Pick walks: the open lines of one order, or of a batch of orders with a tote each, as stops
//! in the order a picker meets them walking the store (bin sequence, then bin, then product).
//!
//! Kept apart from scanning: a walk is planned once, before the first scan, and only reads
//! stock (the first-expiring lot's bin), while scans write the ledger.

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::Error;
use crate::work::ctx::Ctx;
use crate::work::orders::{self, Status};
use crate::work::stock;

/// One stop on a pick walk.
#[derive(Debug, Clone, Serialize)]
pub struct Stop {
    pub order_id: String,
    pub tote: Option<String>,
    pub line_no: i64,
    pub product_id: String,
    pub product_name: String,
    pub qty: i64,
    /// Where to pick: the first-expiring lot's bin, else the first slot, else unknown.
    pub bin_id: Option<String>,
    pub pick_seq: Option<i64>,
    /// The lot to take (FEFO) and its expiry, when stock is known by lot.
    pub lot: Option<String>,
    pub expiry: Option<String>,
}

fn stops_for(
    conn: &Connection,
    order_id: &str,
    tote: Option<&str>,
    stops: &mut Vec<Stop>,
) -> Result<(), Error> {
    for line in orders::lines(conn, order_id)?
        .into_iter()
        .filter(|l| l.open_qty > 0)
    {
        let product_id = line.expected_product().to_owned();
        let fefo = stock::lots(conn, &product_id)?.into_iter().next();
        let (bin_id, pick_seq, lot, expiry) = match fefo {
            Some(l) => (
                Some(l.bin_id),
                l.pick_seq,
                Some(l.lot).filter(|s| !s.is_empty()),
                Some(l.expiry).filter(|s| !s.is_empty()),
            ),
            None => match crate::work::bins::slots_of(conn, &product_id)?
                .into_iter()
                .next()
            {
                Some(bin) => (Some(bin.id), Some(bin.pick_seq), None, None),
                None => (None, None, None, None),
            },
        };
        let product_name = match &line.substitute_name {
            Some(name) => name.clone(),
            None => line.product_name.clone(),
        };
        stops.push(Stop {
            order_id: order_id.to_owned(),
            tote: tote.map(str::to_owned),
            line_no: line.line_no,
            product_id,
            product_name,
            qty: line.open_qty,
            bin_id,
            pick_seq,
            lot,
            expiry,
        });
    }
    Ok(())
}

fn walk_order(stops: &mut [Stop]) {
    stops.sort_by(|a, b| {
        (
            a.pick_seq.is_none(),
            a.pick_seq,
            &a.bin_id,
            &a.product_id,
            &a.order_id,
        )
            .cmp(&(
                b.pick_seq.is_none(),
                b.pick_seq,
                &b.bin_id,
                &b.product_id,
                &b.order_id,
            ))
    });
}

/// The open lines of one order in walk order.
pub fn pick_list(conn: &Connection, order_id: &str) -> Result<Vec<Stop>, Error> {
    orders::status(conn, order_id)?;
    let tote: Option<String> = conn
        .prepare_cached("SELECT tote FROM order_progress WHERE order_id = ?1")?
        .query_row([order_id], |row| row.get(0))?;
    let mut stops = Vec::new();
    stops_for(conn, order_id, tote.as_deref(), &mut stops)?;
    walk_order(&mut stops);
    Ok(stops)
}

/// A batch walk: several orders, one tote each, one pass through the store.
#[derive(Debug, Clone, Serialize)]
pub struct Batch {
    pub totes: Vec<(String, String)>,
    pub stops: Vec<Stop>,
}

/// Most orders one picker walks with at once (one tote each on the trolley).
pub const MAX_BATCH: usize = 12;

/// Starts picking several orders in one walk: each gets a tote (`T1`, `T2`, ... unless it has
/// one) and moves to PICKING; the stops of all of them come back in walk order.
pub fn batch(conn: &Connection, ctx: &mut Ctx, order_ids: &[String]) -> Result<Batch, Error> {
    if order_ids.is_empty() || order_ids.len() > MAX_BATCH {
        return Err(Error::Invalid(format!(
            "a batch holds 1 to {MAX_BATCH} orders"
        )));
    }
    let mut totes = Vec::with_capacity(order_ids.len());
    let mut stops = Vec::new();
    for (i, order_id) in order_ids.iter().enumerate() {
        if order_ids[..i].contains(order_id) {
            return Err(Error::Invalid(format!(
                "order {order_id} is in the batch twice"
            )));
        }
        orders::ensure_not_cancelling(conn, order_id)?;
        match orders::status(conn, order_id)? {
            Status::Accepted => {
                orders::transition(
                    conn,
                    ctx,
                    order_id,
                    Status::Picking,
                    "start picking",
                    Some("batch"),
                )?;
            }
            Status::Picking => {}
            status => {
                return Err(Error::InvalidTransition {
                    order_id: order_id.clone(),
                    status,
                    action: "start picking",
                });
            }
        }
        let tote = format!("T{}", i + 1);
        conn.prepare_cached(
            "UPDATE order_progress SET tote = coalesce(tote, ?2) WHERE order_id = ?1",
        )?
        .execute(params![order_id, tote])?;
        let tote: String = conn
            .prepare_cached("SELECT tote FROM order_progress WHERE order_id = ?1")?
            .query_row([order_id], |row| row.get(0))?;
        ctx.order_changed(order_id, Status::Picking, "tote");
        stops_for(conn, order_id, Some(&tote), &mut stops)?;
        totes.push((order_id.clone(), tote));
    }
    walk_order(&mut stops);
    Ok(Batch { totes, stops })
}
