//! Goods in: receiving by quantity or by the GS1 case label a scanner reads.
//!
//! Why apart from the ledger core: reading a case label (GTIN, count, lot, expiry, the
//! catalog's pack quantity) and checking the fields typed beside it is most of receiving, and
//! none of it is about keeping the ledger's sums right; the result is one [`record`]ed move.

use flashkart_hw::ScanEvent;
use flashkart_hw::gs1::Value as V;
use flashkart_hw::scanner::ScanContent;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::config::VariableMeasureConfig;
use crate::limits::{self, MAX_QTY};
use crate::work::catalog::{self, ProductRef};
use crate::work::ctx::Ctx;

use super::{Move, MoveKind, MoveOutcome, level, record, valid_bin, valid_lot};

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

/// Refuses a case label, showing it as scanned (FNC1 as `<GS>`).
fn refuse_label(shown: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("case label `{shown}`: {why}"))
}

/// Decodes the `scan` of a request with hw's decoder, once, as a serial scanner's line is.
fn decode_label(scan: &str) -> Result<ScanEvent, Error> {
    flashkart_hw::decode_raw_scan(scan.trim())
        .map_err(|e| refuse_label(&flashkart_hw::scanner::decode::escape_gs(scan.trim()), e))
}

fn case_scan(event: &ScanEvent) -> Result<CaseScan, Error> {
    let refuse = |why: String| refuse_label(&event.raw, why);
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
    layout: &VariableMeasureConfig,
    r: &Receive,
    label: Option<&ScanEvent>,
) -> Result<(catalog::Product, i64, Receive, Option<CaseLabel>), Error> {
    let Some(scan) = label else {
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

/// Receives goods into a bin, as a request says (its `scan`, if any, decoded here).
pub fn receive(
    conn: &Connection,
    ctx: &mut Ctx,
    layout: &VariableMeasureConfig,
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
    let label = r.scan.as_deref().map(decode_label).transpose()?;
    book(conn, ctx, layout, r, label.as_ref())
}

/// Receives the case label a receiving scanner read: exactly a request with only its `scan`.
pub fn receive_scan(
    conn: &Connection,
    ctx: &mut Ctx,
    layout: &VariableMeasureConfig,
    label: &ScanEvent,
) -> Result<MoveOutcome, Error> {
    book(conn, ctx, layout, &Receive::default(), Some(label))
}

/// Books a receive whose raw fields are checked and whose case label (if any) is decoded.
fn book(
    conn: &Connection,
    ctx: &mut Ctx,
    layout: &VariableMeasureConfig,
    r: &Receive,
    label: Option<&ScanEvent>,
) -> Result<MoveOutcome, Error> {
    let (product, pack_qty, r, case_label) = receive_request(conn, layout, r, label)?;
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
