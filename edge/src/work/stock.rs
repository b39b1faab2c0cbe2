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

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::limits::{self, MAX_QTY};
use crate::work::barcode::VariableMeasureLayout;
use crate::work::catalog::{self, ProductRef};
use crate::work::ctx::{Ctx, new_id};

/// What a ledger row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveKind {
    Receive,
    Pick,
    Reserve,
    Release,
    Adjust,
    Count,
    Damage,
    Expiry,
    Return,
}

impl MoveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receive => "receive",
            Self::Pick => "pick",
            Self::Reserve => "reserve",
            Self::Release => "release",
            Self::Adjust => "adjust",
            Self::Count => "count",
            Self::Damage => "damage",
            Self::Expiry => "expiry",
            Self::Return => "return",
        }
    }

    /// Whether the move changes what is on the shelf (as opposed to what is held for orders).
    pub fn physical(self) -> bool {
        !matches!(self, Self::Reserve | Self::Release)
    }
}

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

/// Goods in: `qty` packages of the product a GTIN names, or the raw scan of a GS1-128 case
/// label that says all of it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Receive {
    #[serde(flatten)]
    pub product: ProductRef,
    /// Packages (pieces when the product is named by id). Required without `scan`.
    pub qty: Option<i64>,
    pub lot: Option<String>,
    pub expiry: Option<String>,
    /// Defaults to the product's first slot.
    pub bin_id: Option<String>,
    /// The raw scan of a GS1 case label, AIM identifier first (`]C1` for GS1-128), FNC1 as
    /// ASCII 29 (or typed as `<GS>` / `\x1d`): GTIN (01, or 02 with the count in 37), lot (10),
    /// expiry (17) and count (37 or 30). Fields given besides it must agree with it.
    pub scan: Option<String>,
}

/// What a GS1 case label said, as receiving read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseLabel {
    /// The scan, FNC1 shown as `<GS>`.
    pub raw: String,
    /// The GTIN received: AI (01), or AI (02) (the trade items the case contains).
    pub gtin: String,
    /// `01` or `02`.
    pub gtin_ai: &'static str,
    /// Packages of `gtin` (AI 37 or 30; 1 for a lone AI 01).
    pub count: i64,
    /// Pieces per package of `gtin` (`product_gtins.pack_qty`).
    pub pack_qty: i64,
    pub lot: Option<String>,
    /// AI (17), YYYY-MM-DD (a day of 00 is the month's last day).
    pub expiry: Option<String>,
}

/// The GS1 data of a case label scan, before the catalog is consulted.
struct CaseScan {
    raw: String,
    gtin: String,
    gtin_ai: &'static str,
    count: i64,
    lot: Option<String>,
    expiry: Option<String>,
}

fn case_scan(scan: &str) -> Result<CaseScan, Error> {
    use flashkart_hw::gs1::Value as V;
    use flashkart_hw::scanner::ScanContent;
    let shown = flashkart_hw::scanner::decode::escape_gs(scan.trim());
    let refuse = |why: String| Error::Invalid(format!("case label `{shown}`: {why}"));
    let event = flashkart_hw::decode_raw_scan(scan.trim()).map_err(|e| refuse(e.to_string()))?;
    let elements = match &event.content {
        ScanContent::Gs1 { elements, .. } | ScanContent::DigitalLink { elements, .. } => elements,
        _ => {
            return Err(refuse(
                "not GS1 data: scan the case's GS1-128 label (`]C1...`), or give `gtin`".into(),
            ));
        }
    };
    let get = |ai: &str| elements.iter().find(|e| e.ai == ai);
    let key = |ai: &str| match get(ai).map(|e| &e.value) {
        Some(V::Key { key }) => Some(key.clone()),
        _ => None,
    };
    let number = |ai: &str| -> Result<Option<i64>, Error> {
        match get(ai).map(|e| &e.value) {
            None => Ok(None),
            Some(V::Number { number }) => i64::try_from(*number)
                .map(Some)
                .map_err(|_| refuse(format!("AI ({ai}) {number} is too large"))),
            Some(_) => Err(refuse(format!("AI ({ai}) is not a count"))),
        }
    };
    let (gtin, gtin_ai) = match (key("01"), key("02")) {
        (Some(gtin), None) => (gtin, "01"),
        (None, Some(gtin)) => (gtin, "02"),
        (Some(_), Some(_)) => {
            return Err(refuse(
                "has both AI (01) and AI (02): which is received?".into(),
            ));
        }
        (None, None) => {
            return Err(refuse(
                "carries no GTIN (AI 01, or AI 02 with the count in AI 37)".into(),
            ));
        }
    };
    let count = match (number("37")?, number("30")?) {
        (Some(a), Some(b)) if a != b => {
            return Err(refuse(format!(
                "AI (37) says {a} and AI (30) says {b}: which count is it?"
            )));
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) if gtin_ai == "02" => {
            return Err(refuse(
                "AI (02) names the contained items but AI (37) does not count them".into(),
            ));
        }
        (None, None) => 1,
    };
    if count <= 0 {
        return Err(refuse(format!("counts {count} items")));
    }
    let expiry = match get("17").map(|e| &e.value) {
        None => None,
        Some(V::Date { date, .. }) => Some(date.to_string()),
        Some(_) => return Err(refuse("AI (17) is not a date".into())),
    };
    Ok(CaseScan {
        raw: event.raw.clone(),
        gtin,
        gtin_ai,
        count,
        lot: get("10").map(|e| e.raw.clone()),
        expiry,
    })
}

/// Refuses a field given besides a scan that says something else.
fn agree(field: &str, given: Option<&str>, scanned: Option<&str>) -> Result<(), Error> {
    match (given, scanned) {
        (Some(given), Some(scanned)) if given.trim() != scanned => Err(Error::Invalid(format!(
            "`{field}` is {given} but the case label says {scanned}: send one or the other"
        ))),
        _ => Ok(()),
    }
}

/// Reads a case label scan into the product, packages, lot and expiry it receives; checks
/// the fields given besides it.
fn receive_request(
    conn: &Connection,
    layout: &VariableMeasureLayout,
    r: &Receive,
) -> Result<(catalog::Product, i64, Receive, Option<CaseLabel>), Error> {
    let Some(scan) = &r.scan else {
        let (product, pack_qty) = r.product.resolve(conn, layout)?;
        r.qty.ok_or_else(|| {
            Error::Invalid("a receive needs `qty` (or a case label `scan`)".into())
        })?;
        return Ok((product, pack_qty, r.clone(), None));
    };
    let case = case_scan(scan)?;
    let (product, pack_qty) = ProductRef {
        product_id: None,
        gtin: Some(case.gtin.clone()),
    }
    .resolve(conn, layout)?;
    if let Some(gtin) = &r.product.gtin {
        let forms = crate::work::barcode::gtin_forms(gtin.trim());
        if !forms.contains(&case.gtin) {
            return Err(Error::Invalid(format!(
                "`gtin` is {gtin} but the case label says {}: send one or the other",
                case.gtin
            )));
        }
    }
    agree(
        "product_id",
        r.product.product_id.as_deref(),
        Some(product.id.as_str()),
    )?;
    let count = case.count.to_string();
    agree(
        "qty",
        r.qty.map(|q| q.to_string()).as_deref(),
        Some(count.as_str()),
    )?;
    agree("lot", r.lot.as_deref(), case.lot.as_deref())?;
    agree("expiry", r.expiry.as_deref(), case.expiry.as_deref())?;
    let request = Receive {
        qty: Some(case.count),
        lot: case.lot.clone().or_else(|| r.lot.clone()),
        expiry: case.expiry.clone().or_else(|| r.expiry.clone()),
        ..r.clone()
    };
    let label = CaseLabel {
        raw: case.raw,
        gtin: case.gtin,
        gtin_ai: case.gtin_ai,
        count: case.count,
        pack_qty,
        lot: request.lot.clone(),
        expiry: request.expiry.clone(),
    };
    Ok((product, pack_qty, request, Some(label)))
}

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

/// Receives goods into a bin.
pub fn receive(
    conn: &Connection,
    ctx: &mut Ctx,
    layout: &VariableMeasureLayout,
    r: &Receive,
) -> Result<MoveOutcome, Error> {
    // The raw fields first (also when a scan follows: they are compared with it), then what
    // the scan made of them.
    if let Some(scan) = &r.scan {
        limits::scan("scan", scan)?;
    }
    if let Some(qty) = r.qty {
        limits::qty("qty", qty, 1)?;
    }
    valid_lot(r.lot.as_deref())?;
    if let Some(bin) = &r.bin_id {
        valid_bin(bin)?;
    }
    let (product, pack_qty, r, case_label) = receive_request(conn, layout, r)?;
    let qty = limits::qty("qty", r.qty.unwrap_or_default(), 1)?;
    valid_lot(r.lot.as_deref())?;
    let expiry = r.expiry.as_deref().unwrap_or("");
    if !expiry.is_empty() {
        limits::date("expiry", expiry)?;
    }
    let bin_id = match &r.bin_id {
        Some(bin) => crate::work::bins::get(conn, bin)?.id,
        None => crate::work::bins::slots_of(conn, &product.id)?
            .into_iter()
            .next()
            .map(|b| b.id)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{} is not slotted to any bin: give `bin_id`",
                    product.label()
                ))
            })?,
    };
    let pieces = qty
        .checked_mul(pack_qty)
        .filter(|p| (1..=MAX_QTY).contains(p))
        .ok_or_else(|| Error::Invalid(format!("{qty} × {pack_qty} pieces is too many")))?;
    let id = record(
        conn,
        ctx,
        &Move {
            product_id: &product.id,
            bin_id: Some(&bin_id),
            qty: pieces,
            kind: MoveKind::Receive,
            lot: r.lot.as_deref().unwrap_or(""),
            expiry,
            order: None,
            reason: None,
        },
    )?;
    Ok(MoveOutcome {
        level: level(conn, &product.id)?,
        product_id: product.id,
        moves: vec![id],
        qty: pieces,
        case_label,
    })
}

/// Adjusts stock in a bin, with a reason.
pub fn adjust(
    conn: &Connection,
    ctx: &mut Ctx,
    layout: &VariableMeasureLayout,
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
    layout: &VariableMeasureLayout,
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
