//! Adjustments and blind cycle counts: stock staff correct, with a reason, in one bin.
//!
//! Why apart from the ledger core: both turn what a person says is on the shelf into signed
//! moves (a decrease taken first-expiring first); the ledger core only records them.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::config::VariableMeasureConfig;
use crate::limits;
use crate::work::catalog::ProductRef;
use crate::work::ctx::Ctx;

use super::{Move, MoveKind, MoveOutcome, level, lots, product_name, record, valid_bin, valid_lot};

/// Why stock is adjusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustReason {
    /// Broken or spoiled (negative only).
    Damage,
    /// Past its date, written off (negative only).
    Expiry,
    /// Found stock the ledger did not know about (positive only).
    Found,
    /// Any other correction, either sign.
    Correction,
}

/// A stock adjustment in one bin.
#[derive(Debug, Clone, Deserialize)]
pub struct Adjust {
    #[serde(flatten)]
    pub product: ProductRef,
    pub bin_id: String,
    pub lot: Option<String>,
    /// Signed pieces.
    pub qty: i64,
    pub reason: AdjustReason,
    pub note: Option<String>,
}

/// A blind cycle count of one bin (or one lot in it).
#[derive(Debug, Clone, Deserialize)]
pub struct Count {
    #[serde(flatten)]
    pub product: ProductRef,
    pub bin_id: String,
    pub lot: Option<String>,
    pub counted: i64,
}

/// Adjusts stock in a bin, with a reason.
pub fn adjust(
    conn: &Connection,
    ctx: &mut Ctx,
    layout: &VariableMeasureConfig,
    a: &Adjust,
) -> Result<MoveOutcome, Error> {
    // Bounded before anything negates it (i64::MIN has no negative).
    limits::signed_qty("qty", a.qty)?;
    valid_bin(&a.bin_id)?;
    valid_lot(a.lot.as_deref())?;
    if let Some(note) = &a.note {
        limits::text("note", note, limits::MAX_NOTE)?;
    }
    let (product, _) = a.product.resolve(conn, layout)?;
    crate::work::bins::get(conn, &a.bin_id)?;
    let kind = match (a.reason, a.qty > 0) {
        (AdjustReason::Damage, false) => MoveKind::Damage,
        (AdjustReason::Expiry, false) => MoveKind::Expiry,
        (AdjustReason::Found, true) | (AdjustReason::Correction, _) => MoveKind::Adjust,
        (reason, _) => {
            return Err(Error::Invalid(format!(
                "a {reason:?} adjustment must be {}",
                if matches!(reason, AdjustReason::Found) {
                    "positive"
                } else {
                    "negative"
                }
            )));
        }
    };
    let reason = match &a.note {
        Some(note) => format!("{:?}: {note}", a.reason).to_lowercase(),
        None => format!("{:?}", a.reason).to_lowercase(),
    };
    let moves = post_difference(
        conn,
        ctx,
        &product.id,
        &a.bin_id,
        a.lot.as_deref(),
        a.qty,
        kind,
        &reason,
    )?;
    Ok(MoveOutcome {
        level: level(conn, &product.id)?,
        product_id: product.id,
        moves,
        qty: a.qty,
        case_label: None,
    })
}

/// Posts the difference between a blind count and the ledger as a `count` move.
pub fn count(
    conn: &Connection,
    ctx: &mut Ctx,
    layout: &VariableMeasureConfig,
    c: &Count,
) -> Result<MoveOutcome, Error> {
    limits::qty("counted", c.counted, 0)?;
    valid_bin(&c.bin_id)?;
    valid_lot(c.lot.as_deref())?;
    let (product, _) = c.product.resolve(conn, layout)?;
    crate::work::bins::get(conn, &c.bin_id)?;
    let expected: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(on_hand), 0) FROM stock_lots
             WHERE product_id = ?1 AND bin_id = ?2 AND (?3 IS NULL OR lot = ?3)",
        )?
        .query_row(params![product.id, c.bin_id, c.lot], |row| row.get(0))?;
    let difference = c.counted.checked_sub(expected).ok_or_else(|| {
        Error::Conflict(format!(
            "counted {} where the ledger had {expected}: the difference overflows",
            c.counted
        ))
    })?;
    let moves = if difference == 0 {
        Vec::new()
    } else {
        let reason = format!("counted {} where the ledger had {expected}", c.counted);
        post_difference(
            conn,
            ctx,
            &product.id,
            &c.bin_id,
            c.lot.as_deref(),
            difference,
            MoveKind::Count,
            &reason,
        )?
    };
    Ok(MoveOutcome {
        level: level(conn, &product.id)?,
        product_id: product.id,
        moves,
        qty: difference,
        case_label: None,
    })
}

/// Posts a signed quantity to a bin: an increase goes to the named lot (or the lot-less
/// stock); a decrease comes from the named lot, or from the bin's lots first-expiring first.
#[allow(clippy::too_many_arguments)]
fn post_difference(
    conn: &Connection,
    ctx: &mut Ctx,
    product_id: &str,
    bin_id: &str,
    lot: Option<&str>,
    qty: i64,
    kind: MoveKind,
    reason: &str,
) -> Result<Vec<String>, Error> {
    let one = |conn: &Connection, ctx: &mut Ctx, lot: &str, expiry: &str, qty: i64| {
        record(
            conn,
            ctx,
            &Move {
                product_id,
                bin_id: Some(bin_id),
                qty,
                kind,
                lot,
                expiry,
                order: None,
                reason: Some(reason),
            },
        )
    };
    if qty > 0 || lot.is_some() {
        let lot = lot.unwrap_or("");
        let expiry: String = conn
            .prepare_cached(
                "SELECT expiry FROM stock_lots WHERE product_id = ?1 AND bin_id = ?2 AND lot = ?3",
            )?
            .query_row(params![product_id, bin_id, lot], |row| row.get(0))
            .optional()?
            .unwrap_or_default();
        return Ok(vec![one(conn, ctx, lot, &expiry, qty)?]);
    }
    let mut left = qty
        .checked_neg()
        .ok_or_else(|| Error::Invalid(format!("a stock change of {qty} pieces is out of range")))?;
    let mut ids = Vec::new();
    for l in lots(conn, product_id)?
        .into_iter()
        .filter(|l| l.bin_id == bin_id)
    {
        let take = left.min(l.on_hand);
        ids.push(one(conn, ctx, &l.lot, &l.expiry, -take)?);
        left -= take;
        if left == 0 {
            return Ok(ids);
        }
    }
    Err(Error::Conflict(format!(
        "bin {bin_id} holds only {} of {}",
        qty.saturating_neg().saturating_sub(left),
        product_name(conn, product_id)
    )))
}
