//! Stock as an insert-only ledger, and the summary derived from it.
//!
//! Every change of stock is a row in `stock_moves` (UUIDv7 id, signed quantity, kind, lot,
//! expiry, order reference, actor, time); nothing is ever updated in place, so replicas can only
//! ever add moves and on-hand is a sum no sync can overwrite. Physical kinds (receive, pick,
//! adjust, count, damage, expiry, return) move pieces in or out of a bin's lot; `reserve` and
//! `release` hold pieces for an order without moving them.
//!
//! `available = on_hand - reserved` never goes below zero and no lot goes below zero: [`record`]
//! checks both after every move, inside the same write transaction that inserts it, so
//! concurrent pickers, receivers and adjusters cannot race past each other (the store database
//! has one writer). Sums come from a local summary (`stock_lots`, `stock_reserved`,
//! `order_holds`) that the same transaction maintains, which [`rebuild_summary`] recomputes
//! from the ledger at start-up and [`check_summary`] compares against it.
//!
//! The operations staff ask for live beside the core: goods in ([`receive`](receive()), by
//! quantity or by case label) in `receive.rs`, adjustments and blind counts in `adjust.rs`.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::limits;
use crate::work::catalog;
use crate::work::ctx::{Ctx, new_id};

mod adjust;
mod receive;

pub use crate::kinds::MoveKind;
pub use adjust::{Adjust, AdjustReason, Count, adjust, count};
pub use receive::{CaseLabel, Receive, receive, receive_scan};

/// One ledger row to insert.
#[derive(Debug, Clone, Copy)]
pub struct Move<'a> {
    pub product_id: &'a str,
    /// Required for physical moves; reservations are per product.
    pub bin_id: Option<&'a str>,
    /// Signed: + into the bin (or reserved), - out of it.
    pub qty: i64,
    pub kind: MoveKind,
    /// `""` for stock without a lot.
    pub lot: &'a str,
    /// `YYYY-MM-DD`, or `""` for none.
    pub expiry: &'a str,
    pub order: Option<(&'a str, i64)>,
    pub reason: Option<&'a str>,
}

impl<'a> Move<'a> {
    /// A reservation (`qty` > 0) or release (`qty` < 0) for an order line.
    pub fn hold(product_id: &'a str, qty: i64, order_id: &'a str, line_no: i64) -> Self {
        Self {
            product_id,
            bin_id: None,
            qty,
            kind: if qty > 0 {
                MoveKind::Reserve
            } else {
                MoveKind::Release
            },
            lot: "",
            expiry: "",
            order: Some((order_id, line_no)),
            reason: None,
        }
    }
}

/// On-hand, reserved and available pieces of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub product_id: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

/// On-hand of one lot in one bin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotLevel {
    pub bin_id: String,
    pub lot: String,
    pub expiry: String,
    pub on_hand: i64,
    pub pick_seq: Option<i64>,
}

/// Inserts a move into the ledger, updates the summary, and refuses (rolling the write back)
/// if the move would leave its lot below zero or the product's available stock below zero.
pub fn record(conn: &Connection, ctx: &mut Ctx, m: &Move<'_>) -> Result<String, Error> {
    if m.qty == 0 || m.qty.checked_neg().is_none() {
        return Err(Error::Invalid(format!(
            "a stock move needs a non-zero quantity, not {}",
            m.qty
        )));
    }
    let id = new_id();
    let (order_id, line_no) = m.order.map_or((None, None), |(o, l)| (Some(o), Some(l)));
    conn.prepare_cached(
        "INSERT INTO stock_moves
            (id, store_id, product_id, bin_id, qty, kind, lot, expiry, order_id, line_no, reason,
             actor, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, nullif(?7, ''), nullif(?8, ''), ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        id,
        ctx.store_id,
        m.product_id,
        m.bin_id,
        m.qty,
        m.kind.as_str(),
        m.lot,
        m.expiry,
        order_id,
        line_no,
        m.reason,
        ctx.actor,
        ctx.at
    ])?;
    if m.kind.physical() {
        let bin_id = m
            .bin_id
            .ok_or_else(|| Error::Invalid(format!("a {} move needs a bin", m.kind.as_str())))?;
        let on_hand: i64 = conn
            .prepare_cached(
                "INSERT INTO stock_lots (product_id, bin_id, lot, expiry, on_hand)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (product_id, bin_id, lot) DO UPDATE SET
                    on_hand = on_hand + excluded.on_hand,
                    expiry = CASE WHEN excluded.expiry <> '' THEN excluded.expiry ELSE expiry END
                 RETURNING on_hand",
            )?
            .query_row(
                params![m.product_id, bin_id, m.lot, m.expiry, m.qty],
                |row| row.get(0),
            )?;
        if on_hand < 0 {
            return Err(Error::Conflict(format!(
                "bin {bin_id} holds only {} of {}{}",
                on_hand.saturating_sub(m.qty),
                product_name(conn, m.product_id),
                lot_suffix(m.lot)
            )));
        }
    } else {
        let reserved: i64 = conn
            .prepare_cached(
                "INSERT INTO stock_reserved (product_id, reserved) VALUES (?1, ?2)
                 ON CONFLICT (product_id) DO UPDATE SET reserved = reserved + excluded.reserved
                 RETURNING reserved",
            )?
            .query_row(params![m.product_id, m.qty], |row| row.get(0))?;
        if reserved < 0 {
            return Err(Error::Conflict(format!(
                "cannot release {} of {}: only {} reserved",
                m.qty.saturating_neg(),
                product_name(conn, m.product_id),
                reserved.saturating_sub(m.qty)
            )));
        }
        if let Some((order_id, line_no)) = m.order {
            let held: i64 = conn
                .prepare_cached(
                    "INSERT INTO order_holds (order_id, line_no, product_id, held)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (order_id, line_no, product_id) DO UPDATE SET
                        held = held + excluded.held
                     RETURNING held",
                )?
                .query_row(params![order_id, line_no, m.product_id, m.qty], |row| {
                    row.get(0)
                })?;
            if held < 0 {
                return Err(Error::Conflict(format!(
                    "line {line_no} of order {order_id} holds only {} of {}",
                    held.saturating_sub(m.qty),
                    product_name(conn, m.product_id)
                )));
            }
        }
    }
    let lowers_available = (m.kind.physical() && m.qty < 0) || m.kind == MoveKind::Reserve;
    if lowers_available {
        let after = level(conn, m.product_id)?;
        if after.available < 0 {
            return Err(Error::InsufficientStock {
                product: product_name(conn, m.product_id),
                available: after.available.saturating_add(m.qty.saturating_abs()),
                requested: m.qty.saturating_abs(),
            });
        }
    }
    ctx.stock_moved(m.product_id, m.kind);
    Ok(id)
}

fn product_name(conn: &Connection, product_id: &str) -> String {
    catalog::product(conn, product_id).map_or_else(|_| product_id.to_owned(), |p| p.label())
}

fn lot_suffix(lot: &str) -> String {
    if lot.is_empty() {
        String::new()
    } else {
        format!(" (lot {lot})")
    }
}

/// A product's stock level, from the summary.
pub fn level(conn: &Connection, product_id: &str) -> Result<Level, Error> {
    let (on_hand, reserved): (i64, i64) = conn
        .prepare_cached(
            "SELECT coalesce((SELECT sum(on_hand) FROM stock_lots WHERE product_id = ?1), 0),
                    coalesce((SELECT reserved FROM stock_reserved WHERE product_id = ?1), 0)",
        )?
        .query_row([product_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(Level {
        product_id: product_id.to_owned(),
        on_hand,
        reserved,
        available: on_hand.saturating_sub(reserved),
    })
}

/// Levels of every product in the catalog.
pub fn levels(conn: &Connection) -> Result<Vec<Level>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.id,
                coalesce((SELECT sum(on_hand) FROM stock_lots l WHERE l.product_id = p.id), 0),
                coalesce((SELECT reserved FROM stock_reserved r WHERE r.product_id = p.id), 0)
         FROM products p ORDER BY p.id",
    )?;
    let levels = stmt
        .query_map([], |row| {
            let on_hand: i64 = row.get(1)?;
            let reserved: i64 = row.get(2)?;
            Ok(Level {
                product_id: row.get(0)?,
                on_hand,
                reserved,
                available: on_hand.saturating_sub(reserved),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(levels)
}

/// A product on the store's shelves, as goods in and substitution choose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShelfProduct {
    pub id: String,
    pub name: String,
    pub category_id: Option<String>,
    /// `each` or `kg`.
    pub unit: String,
    pub unit_weight_g: i64,
    pub gtins: Vec<String>,
    /// Its first slot in walk order, if slotted.
    pub bin_id: Option<String>,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

/// Every active product with its GTINs, first slot and stock, by name.
pub fn shelf(conn: &Connection) -> Result<Vec<ShelfProduct>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.id, p.name, p.category_id, p.unit, p.unit_weight_g,
                (SELECT group_concat(g.gtin, ' ') FROM
                   (SELECT gtin FROM product_gtins WHERE product_id = p.id ORDER BY gtin) g),
                (SELECT pb.bin_id FROM product_bins pb JOIN bins b ON b.id = pb.bin_id
                  WHERE pb.product_id = p.id ORDER BY b.pick_seq, b.id LIMIT 1),
                coalesce((SELECT sum(on_hand) FROM stock_lots l WHERE l.product_id = p.id), 0),
                coalesce((SELECT reserved FROM stock_reserved r WHERE r.product_id = p.id), 0)
         FROM products p WHERE p.active = 1 ORDER BY p.name, p.id",
    )?;
    let products = stmt
        .query_map([], |row| {
            let gtins: Option<String> = row.get(5)?;
            let on_hand: i64 = row.get(7)?;
            let reserved: i64 = row.get(8)?;
            Ok(ShelfProduct {
                id: row.get(0)?,
                name: row.get(1)?,
                category_id: row.get(2)?,
                unit: row.get(3)?,
                unit_weight_g: row.get(4)?,
                gtins: gtins
                    .map(|g| g.split(' ').map(str::to_owned).collect())
                    .unwrap_or_default(),
                bin_id: row.get(6)?,
                on_hand,
                reserved,
                available: on_hand.saturating_sub(reserved),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(products)
}

/// A product's lots with stock, first-expiring first (FEFO; lots without expiry last), then in
/// walk order: the first one is what a picker should take.
pub fn lots(conn: &Connection, product_id: &str) -> Result<Vec<LotLevel>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.bin_id, l.lot, l.expiry, l.on_hand, b.pick_seq FROM stock_lots l
         LEFT JOIN bins b ON b.id = l.bin_id
         WHERE l.product_id = ?1 AND l.on_hand > 0
         ORDER BY l.expiry = '', l.expiry, b.pick_seq IS NULL, b.pick_seq, l.bin_id, l.lot",
    )?;
    let lots = stmt
        .query_map([product_id], |row| {
            Ok(LotLevel {
                bin_id: row.get(0)?,
                lot: row.get(1)?,
                expiry: row.get(2)?,
                on_hand: row.get(3)?,
                pick_seq: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(lots)
}

/// What one order line holds reserved, per product (several after a substitution).
pub fn line_holds(
    conn: &Connection,
    order_id: &str,
    line_no: Option<i64>,
) -> Result<Vec<(i64, String, i64)>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT line_no, product_id, held FROM order_holds
         WHERE order_id = ?1 AND (?2 IS NULL OR line_no = ?2) AND held <> 0
         ORDER BY line_no, product_id",
    )?;
    let holds = stmt
        .query_map(params![order_id, line_no], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(holds)
}

/// Releases everything an order (or one of its lines) holds. Returns the pieces released.
pub fn release_holds(
    conn: &Connection,
    ctx: &mut Ctx,
    order_id: &str,
    line_no: Option<i64>,
) -> Result<i64, Error> {
    let mut released = 0;
    for (line, product_id, held) in line_holds(conn, order_id, line_no)? {
        record(conn, ctx, &Move::hold(&product_id, -held, order_id, line))?;
        released = checked_sum(released, held)?;
    }
    Ok(released)
}

/// Puts every piece picked for an order back where it was picked from (cancellation).
/// Returns the pieces returned.
pub fn return_picks(conn: &Connection, ctx: &mut Ctx, order_id: &str) -> Result<i64, Error> {
    let picked: Vec<(String, String, String, String, i64, i64)> = conn
        .prepare_cached(
            "SELECT product_id, bin_id, coalesce(lot, ''), coalesce(max(expiry), ''), line_no,
                    -sum(qty)
             FROM stock_moves WHERE order_id = ?1 AND kind IN ('pick', 'return')
             GROUP BY product_id, bin_id, coalesce(lot, ''), line_no HAVING sum(qty) < 0",
        )?
        .query_map([order_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut returned = 0;
    for (product_id, bin_id, lot, expiry, line_no, qty) in picked {
        record(
            conn,
            ctx,
            &Move {
                product_id: &product_id,
                bin_id: Some(&bin_id),
                qty,
                kind: MoveKind::Return,
                lot: &lot,
                expiry: &expiry,
                order: Some((order_id, line_no)),
                reason: Some("order cancelled"),
            },
        )?;
        returned = checked_sum(returned, qty)?;
    }
    Ok(returned)
}

/// Adds ledger quantities; the ledger's own sums never come near i64, so an overflow is a
/// corrupted database, refused rather than wrapped.
fn checked_sum(a: i64, b: i64) -> Result<i64, Error> {
    a.checked_add(b)
        .ok_or_else(|| Error::Conflict(format!("stock sum {a} + {b} overflows")))
}

/// Recomputes the summary from the ledger (run at start-up).
pub fn rebuild_summary(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(
        "DELETE FROM stock_lots;
         DELETE FROM stock_reserved;
         INSERT INTO stock_lots (product_id, bin_id, lot, expiry, on_hand)
            SELECT product_id, bin_id, coalesce(lot, ''), coalesce(max(expiry), ''), sum(qty)
            FROM stock_moves WHERE kind NOT IN ('reserve', 'release') AND bin_id IS NOT NULL
            GROUP BY product_id, bin_id, coalesce(lot, '');
         INSERT INTO stock_reserved (product_id, reserved)
            SELECT product_id, sum(qty) FROM stock_moves WHERE kind IN ('reserve', 'release')
            GROUP BY product_id;
         DELETE FROM order_holds;
         INSERT INTO order_holds (order_id, line_no, product_id, held)
            SELECT order_id, line_no, product_id, sum(qty) FROM stock_moves
            WHERE kind IN ('reserve', 'release') AND order_id IS NOT NULL
            GROUP BY order_id, line_no, product_id;",
    )?;
    Ok(())
}

/// Differences between the summary and the ledger it derives from; empty when they agree.
pub fn check_summary(conn: &Connection) -> Result<Vec<String>, Error> {
    let mut problems = Vec::new();
    let mut lots = conn.prepare(
        "SELECT product_id, bin_id, lot, sum(ledger), sum(summary) FROM (
            SELECT product_id, bin_id, coalesce(lot, '') AS lot, qty AS ledger, 0 AS summary
              FROM stock_moves WHERE kind NOT IN ('reserve', 'release')
            UNION ALL
            SELECT product_id, bin_id, lot, 0, on_hand FROM stock_lots)
         GROUP BY product_id, bin_id, lot HAVING sum(ledger) <> sum(summary)",
    )?;
    let rows = lots.query_map([], |row| {
        Ok(format!(
            "on hand of {} in {} lot `{}`: ledger {}, summary {}",
            row.get::<_, String>(0)?,
            row.get::<_, Option<String>>(1)?.unwrap_or_default(),
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, i64>(4)?
        ))
    })?;
    for row in rows {
        problems.push(row?);
    }
    let mut reserved = conn.prepare(
        "SELECT product_id, sum(ledger), sum(summary) FROM (
            SELECT product_id, qty AS ledger, 0 AS summary FROM stock_moves
              WHERE kind IN ('reserve', 'release')
            UNION ALL
            SELECT product_id, 0, reserved FROM stock_reserved)
         GROUP BY product_id HAVING sum(ledger) <> sum(summary)",
    )?;
    let rows = reserved.query_map([], |row| {
        Ok(format!(
            "reserved of {}: ledger {}, summary {}",
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?
        ))
    })?;
    for row in rows {
        problems.push(row?);
    }
    let mut holds = conn.prepare(
        "SELECT order_id, line_no, product_id, sum(ledger), sum(summary) FROM (
            SELECT order_id, line_no, product_id, qty AS ledger, 0 AS summary FROM stock_moves
              WHERE kind IN ('reserve', 'release') AND order_id IS NOT NULL
            UNION ALL
            SELECT order_id, line_no, product_id, 0, held FROM order_holds)
         GROUP BY order_id, line_no, product_id HAVING sum(ledger) <> sum(summary)",
    )?;
    let rows = holds.query_map([], |row| {
        Ok(format!(
            "held by order {} line {} of {}: ledger {}, summary {}",
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, i64>(4)?
        ))
    })?;
    for row in rows {
        problems.push(row?);
    }
    Ok(problems)
}

/// What a stock operation did.
#[derive(Debug, Clone, Serialize)]
pub struct MoveOutcome {
    pub product_id: String,
    /// Ids of the ledger rows written (empty when a count found no difference).
    pub moves: Vec<String>,
    /// Net pieces moved.
    pub qty: i64,
    pub level: Level,
    /// What a received case label said (receiving by `scan` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_label: Option<CaseLabel>,
}

/// Bounds a lot given (or scanned); `None` and `""` both mean no lot.
fn valid_lot(lot: Option<&str>) -> Result<(), Error> {
    match lot {
        Some(lot) if !lot.is_empty() => limits::lot(lot),
        _ => Ok(()),
    }
}

fn valid_bin(bin_id: &str) -> Result<(), Error> {
    limits::id("bin_id", bin_id)
}

/// A product's stock: level and lots.
#[derive(Debug, Clone, Serialize)]
pub struct StockReport {
    pub product: catalog::Product,
    pub level: Level,
    /// Lots with stock, first-expiring first.
    pub lots: Vec<LotLevel>,
}

/// The stock report of one product.
pub fn report(conn: &Connection, product_id: &str) -> Result<StockReport, Error> {
    Ok(StockReport {
        product: catalog::product(conn, product_id)?,
        level: level(conn, product_id)?,
        lots: lots(conn, product_id)?,
    })
}
