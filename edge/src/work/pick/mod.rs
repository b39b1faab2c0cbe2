//! Picking: pick lists in walk order, batch walks for several orders, and pick by scan with
//! shorts and substitutions.
//!
//! A scan must be the product the line expects (the substitute, once there is one); a wrong
//! scan is refused naming both products. A pick consumes the line's reservation (a `release`
//! move, then a `pick` move from the first-expiring lot), so available stock never dips.

use flashkart_hw::ScanEvent;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::config::VariableMeasureConfig;
use crate::work::barcode;
use crate::work::catalog::{self, ProductRef};
use crate::work::ctx::Ctx;
use crate::work::orders::{self, Line, Status};
use crate::work::stock::{self, Move, MoveKind};

mod walk;
pub use walk::{Batch, MAX_BATCH, Stop, batch, pick_list};

/// A scan at the pick face, as a tablet sends it (`POST /api/v1/orders/{id}/scan`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    /// What the scanner read: a GTIN or a variable-measure code, or a whole scan with its AIM
    /// identifier (GS1 data too).
    pub code: String,
    /// The line being picked; by default the first open line expecting the scanned product.
    pub line_no: Option<i64>,
    /// The lot taken, if the picker did not take the suggested (first-expiring) one; by
    /// default the scan's own lot (GS1 AI 10), if it has one.
    pub lot: Option<String>,
}

impl Scan {
    /// Decodes `code` with hw's decoder, once: from here on a tablet's scan takes the path of
    /// a serial scanner's.
    pub fn decode(&self, layout: &VariableMeasureConfig) -> Result<PickScan, Error> {
        crate::limits::scan("code", &self.code)?;
        let mut scan = PickScan::from_event(barcode::decode_entered(&self.code, layout)?);
        scan.line_no = self.line_no;
        if self.lot.is_some() {
            scan.lot.clone_from(&self.lot);
        }
        Ok(scan)
    }
}

/// A decoded scan at the pick face, from a serial scanner or a tablet alike.
#[derive(Debug, Clone)]
pub struct PickScan {
    /// The scan, as hw decoded it.
    pub event: ScanEvent,
    /// The line being picked; by default the first open line expecting the scanned product.
    pub line_no: Option<i64>,
    /// The lot taken; by default the first-expiring one.
    pub lot: Option<String>,
}

impl PickScan {
    /// A scan for no particular line; its lot is GS1 AI (10) when the barcode carries one.
    pub fn from_event(event: ScanEvent) -> Self {
        let lot = event.element("10").map(|e| e.raw.clone());
        Self {
            event,
            line_no: None,
            lot,
        }
    }
}

/// One `pick` move of a scan.
#[derive(Debug, Clone, Serialize)]
pub struct Taken {
    pub move_id: String,
    pub bin_id: String,
    pub lot: String,
    pub expiry: String,
    pub qty: i64,
}

/// What a scan did.
#[derive(Debug, Clone, Serialize)]
pub struct Scanned {
    pub order_id: String,
    pub line_no: i64,
    pub product_id: String,
    pub product_name: String,
    pub qty: i64,
    pub weight_g: i64,
    pub taken: Vec<Taken>,
    /// The `release` move consuming the reservation, if any.
    pub release_move: Option<String>,
    pub line_open_qty: i64,
    pub order_open_qty: i64,
    pub status: Status,
}

fn start_or_continue(
    conn: &Connection,
    ctx: &mut Ctx,
    order_id: &str,
    action: &'static str,
) -> Result<Status, Error> {
    orders::ensure_not_cancelling(conn, order_id)?;
    match orders::status(conn, order_id)? {
        Status::Accepted => {
            orders::transition(conn, ctx, order_id, Status::Picking, action, None)?;
            Ok(Status::Picking)
        }
        Status::Picking => Ok(Status::Picking),
        status => Err(Error::InvalidTransition {
            order_id: order_id.to_owned(),
            status,
            action,
        }),
    }
}

fn find_line(lines: &[Line], line_no: i64) -> Result<&Line, Error> {
    lines
        .iter()
        .find(|l| l.line_no == line_no)
        .ok_or_else(|| Error::not_found("order line", line_no.to_string()))
}

/// Records a scan against an order.
pub fn scan(
    conn: &Connection,
    ctx: &mut Ctx,
    order_id: &str,
    scan: &PickScan,
) -> Result<Scanned, Error> {
    if let Some(lot) = scan.lot.as_deref().filter(|l| !l.is_empty()) {
        crate::limits::lot(lot)?;
    }
    let status = start_or_continue(conn, ctx, order_id, "pick")?;
    let scanned = catalog::resolve(conn, &scan.event)?;
    let product = &scanned.product;
    let lines = orders::lines(conn, order_id)?;
    let line = match scan.line_no {
        Some(line_no) => {
            let line = find_line(&lines, line_no)?;
            if line.expected_product() != product.id {
                return Err(Error::WrongItem {
                    scanned: product.label(),
                    expected: format!("line {} is {}", line.line_no, line.expected_label()),
                });
            }
            line
        }
        None => match lines
            .iter()
            .find(|l| l.expected_product() == product.id && l.open_qty > 0)
        {
            Some(line) => line,
            None => {
                if lines.iter().any(|l| l.expected_product() == product.id) {
                    return Err(Error::Conflict(format!(
                        "all of {} on order {order_id} is already picked or short",
                        product.label()
                    )));
                }
                let expected = match lines.iter().find(|l| l.open_qty > 0) {
                    Some(next) => format!(
                        "order {order_id} has no line for it; next is line {}: {}",
                        next.line_no,
                        next.expected_label()
                    ),
                    None => format!("order {order_id} is completely picked"),
                };
                return Err(Error::WrongItem {
                    scanned: product.label(),
                    expected,
                });
            }
        },
    };
    if line.open_qty <= 0 {
        return Err(Error::Conflict(format!(
            "line {} of order {order_id} is already complete",
            line.line_no
        )));
    }
    let qty = crate::limits::qty("package quantity", scanned.qty, 1)?;
    if qty > line.open_qty {
        return Err(Error::Conflict(format!(
            "this package holds {qty} of {} but line {} needs only {} more",
            product.label(),
            line.line_no,
            line.open_qty
        )));
    }
    if product.variable_measure() && scanned.weight_g.is_none() {
        return Err(Error::Invalid(format!(
            "{} is sold by weight: scan the weighed label",
            product.label()
        )));
    }
    let weight_g = match scanned.weight_g {
        Some(weight) => weight,
        None => product.unit_weight_g.checked_mul(qty).ok_or_else(|| {
            Error::Invalid(format!(
                "{qty} × {} g of {} overflows",
                product.unit_weight_g,
                product.label()
            ))
        })?,
    };
    crate::limits::weight_g("weight_g", weight_g)?;

    // Consume the reservation first, then take the pieces, so available never dips.
    let held: i64 = stock::line_holds(conn, order_id, Some(line.line_no))?
        .into_iter()
        .filter(|(_, p, _)| *p == product.id)
        .map(|(_, _, held)| held)
        .sum();
    let consume = held.min(qty);
    let release_move = if consume > 0 {
        Some(stock::record(
            conn,
            ctx,
            &Move::hold(&product.id, -consume, order_id, line.line_no),
        )?)
    } else {
        None
    };
    let mut left = qty;
    let mut taken = Vec::new();
    let candidates = stock::lots(conn, &product.id)?
        .into_iter()
        .filter(|l| scan.lot.as_ref().is_none_or(|lot| *lot == l.lot));
    for lot in candidates {
        let take = left.min(lot.on_hand);
        let move_id = stock::record(
            conn,
            ctx,
            &Move {
                product_id: &product.id,
                bin_id: Some(&lot.bin_id),
                qty: -take,
                kind: MoveKind::Pick,
                lot: &lot.lot,
                expiry: &lot.expiry,
                order: Some((order_id, line.line_no)),
                reason: None,
            },
        )?;
        taken.push(Taken {
            move_id,
            bin_id: lot.bin_id,
            lot: lot.lot,
            expiry: lot.expiry,
            qty: take,
        });
        left -= take;
        if left == 0 {
            break;
        }
    }
    if left > 0 {
        return Err(Error::Conflict(format!(
            "the ledger shows no {} left{} to pick from: count the bin",
            product.label(),
            scan.lot
                .as_ref()
                .map(|lot| format!(" in lot {lot}"))
                .unwrap_or_default()
        )));
    }
    conn.prepare_cached(
        "UPDATE order_line_progress SET picked_qty = picked_qty + ?3,
            picked_weight_g = picked_weight_g + ?4
         WHERE order_id = ?1 AND line_no = ?2",
    )?
    .execute(params![order_id, line.line_no, qty, weight_g])?;
    ctx.order_changed(order_id, status, "scan");
    let order_open_qty = lines
        .iter()
        .map(|l| l.open_qty)
        .fold(0_i64, i64::saturating_add)
        .saturating_sub(qty);
    Ok(Scanned {
        order_id: order_id.to_owned(),
        line_no: line.line_no,
        product_id: product.id.clone(),
        product_name: product.name.clone(),
        qty,
        weight_g,
        taken,
        release_move,
        line_open_qty: line.open_qty - qty,
        order_open_qty,
        status,
    })
}

/// What a short or substitution did to a line.
#[derive(Debug, Clone, Serialize)]
pub struct LineChange {
    pub order_id: String,
    pub line: Line,
    /// Pieces released from the reservation.
    pub released: i64,
    /// Pieces newly reserved (substitutions).
    pub reserved: i64,
    pub status: Status,
}

/// Marks pieces of a line short (all its open pieces by default) and releases their hold.
pub fn short(
    conn: &Connection,
    ctx: &mut Ctx,
    order_id: &str,
    line_no: i64,
    qty: Option<i64>,
) -> Result<LineChange, Error> {
    let status = start_or_continue(conn, ctx, order_id, "short a line")?;
    let lines = orders::lines(conn, order_id)?;
    let line = find_line(&lines, line_no)?;
    let qty = qty.unwrap_or(line.open_qty);
    if qty <= 0 || qty > line.open_qty {
        return Err(Error::Invalid(format!(
            "line {line_no} has {} open; cannot short {qty}",
            line.open_qty
        )));
    }
    let expected = line.expected_product().to_owned();
    let held: i64 = stock::line_holds(conn, order_id, Some(line_no))?
        .into_iter()
        .filter(|(_, p, _)| *p == expected)
        .map(|(_, _, held)| held)
        .sum();
    let released = held.min(qty);
    if released > 0 {
        stock::record(
            conn,
            ctx,
            &Move::hold(&expected, -released, order_id, line_no),
        )?;
    }
    conn.prepare_cached(
        "UPDATE order_line_progress SET short_qty = short_qty + ?3
         WHERE order_id = ?1 AND line_no = ?2",
    )?
    .execute(params![order_id, line_no, qty])?;
    ctx.order_changed(order_id, status, "short");
    let line = find_line(&orders::lines(conn, order_id)?, line_no)?.clone();
    Ok(LineChange {
        order_id: order_id.to_owned(),
        line,
        released,
        reserved: 0,
        status,
    })
}

/// Substitutes the unpicked pieces of a line (open or short) with a product of the same
/// category: releases what the line holds, reserves the substitute. Refunds are the cloud's.
pub fn substitute(
    conn: &Connection,
    ctx: &mut Ctx,
    layout: &VariableMeasureConfig,
    order_id: &str,
    line_no: i64,
    with: &ProductRef,
) -> Result<LineChange, Error> {
    let status = start_or_continue(conn, ctx, order_id, "substitute")?;
    let lines = orders::lines(conn, order_id)?;
    let line = find_line(&lines, line_no)?;
    let (substitute, _) = with.resolve(conn, layout)?;
    if substitute.id == line.product_id
        || Some(&substitute.id) == line.substitute_product_id.as_ref()
    {
        return Err(Error::Invalid(format!(
            "{} is already what line {line_no} is for",
            substitute.label()
        )));
    }
    let original = catalog::product(conn, &line.product_id)?;
    if original.category_id.is_none() || original.category_id != substitute.category_id {
        return Err(Error::Conflict(format!(
            "{} (category {}) cannot replace {} (category {}): same category only",
            substitute.label(),
            substitute.category_id.as_deref().unwrap_or("none"),
            original.label(),
            original.category_id.as_deref().unwrap_or("none")
        )));
    }
    let unpicked = line.qty - line.picked_qty;
    if unpicked <= 0 {
        return Err(Error::Conflict(format!(
            "line {line_no} is completely picked; nothing to substitute"
        )));
    }
    let released = stock::release_holds(conn, ctx, order_id, Some(line_no))?;
    stock::record(
        conn,
        ctx,
        &Move::hold(&substitute.id, unpicked, order_id, line_no),
    )?;
    conn.prepare_cached(
        "UPDATE order_line_progress SET short_qty = 0, substitute_product_id = ?3
         WHERE order_id = ?1 AND line_no = ?2",
    )?
    .execute(params![order_id, line_no, substitute.id])?;
    ctx.order_changed(order_id, status, "substitute");
    let line = find_line(&orders::lines(conn, order_id)?, line_no)?.clone();
    Ok(LineChange {
        order_id: order_id.to_owned(),
        line,
        released,
        reserved: unpicked,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_become_pick_requests() {
        let ev = flashkart_hw::decode_raw_scan("]C101095060001343521012AB").expect("gs1");
        let scan = PickScan::from_event(ev);
        assert_eq!(
            barcode::key(&scan.event).expect("gtin"),
            barcode::Key::Gtin("09506000134352")
        );
        assert_eq!(scan.lot.as_deref(), Some("12AB"));
        // A weighed label with no layout in the scanner: looked up as the code it is.
        let code = flashkart_hw::gs1::check::with_mod10("231234500450").expect("digits");
        let ev = flashkart_hw::decode_raw_scan(&format!("]E0{code}")).expect("ean");
        let scan = PickScan::from_event(ev);
        assert_eq!(
            barcode::key(&scan.event).expect("code"),
            barcode::Key::Gtin(&code)
        );
        // A tablet's lot wins over the scan's.
        let typed = Scan {
            code: "]C101095060001343521012AB".into(),
            line_no: Some(2),
            lot: Some("L9".into()),
        };
        let scan = typed
            .decode(&VariableMeasureConfig::default())
            .expect("decodes");
        assert_eq!((scan.line_no, scan.lot.as_deref()), (Some(2), Some("L9")));
    }
}
