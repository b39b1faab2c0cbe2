//! What the customer is charged at delivery: the order as placed, less what the store did not
//! deliver, read from the store's own record of the order in its replica.
//!
//! The store is the truth for what left it (its `order_line_progress` rows, synced and already
//! checked to be about an order routed to it); the cloud is the truth for prices. A line is
//! charged for the pieces picked, at most the pieces ordered; a substitute costs what the
//! catalog asks for it or the ordered product's price, whichever is lower, since a customer
//! never pays more for a substitution they did not choose. The coupon's discount shrinks in
//! proportion to what was delivered; the delivery fee stays once anything was delivered. The
//! result never exceeds what was authorised.

use rusqlite::{Connection, OptionalExtension};

use super::PaymentError;
use super::book::Payment;

/// The amounts of a delivered order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Delivered {
    pub items_minor: i64,
    pub discount_minor: i64,
    pub delivery_fee_minor: i64,
    pub total_minor: i64,
    /// Who delivered it (the store's `deliveries` row), when the store recorded it.
    pub rider_id: Option<String>,
    /// What the rider collected at the door (cash orders).
    pub cash_collected_minor: Option<i64>,
}

/// One line as the store worked it.
struct Line {
    qty: i64,
    unit_price_minor: i64,
    picked_qty: i64,
    substitute_product_id: Option<String>,
}

/// Reads the order's lines and delivery from the store's replica; `prices` gives the catalog
/// price of a substitute in the order's currency.
pub(super) fn price_delivery(
    replica: &Connection,
    payment: &Payment,
    substitute_price: impl Fn(&str) -> Result<Option<i64>, PaymentError>,
) -> Result<Delivered, PaymentError> {
    let overflow = || PaymentError::Invalid(format!("order {}: amount overflow", payment.order_id));
    let lines = replica
        .prepare_cached(
            "SELECT l.qty, l.unit_price_minor, coalesce(p.picked_qty, 0), p.substitute_product_id
             FROM order_lines l
             LEFT JOIN order_line_progress p
               ON p.order_id = l.order_id AND p.line_no = l.line_no AND p.store_id = l.store_id
             WHERE l.order_id = ?1 AND l.store_id = ?2
             ORDER BY l.line_no",
        )?
        .query_map([&payment.order_id, &payment.store_id], |r| {
            Ok(Line {
                qty: r.get(0)?,
                unit_price_minor: r.get(1)?,
                picked_qty: r.get(2)?,
                substitute_product_id: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut items: i64 = 0;
    for line in &lines {
        let pieces = line.picked_qty.clamp(0, line.qty.max(0));
        let unit = match &line.substitute_product_id {
            Some(substitute) => match substitute_price(substitute)? {
                Some(price) if (0..line.unit_price_minor).contains(&price) => price,
                _ => line.unit_price_minor,
            },
            None => line.unit_price_minor,
        };
        let charged = pieces.checked_mul(unit).ok_or_else(overflow)?;
        items = items.checked_add(charged).ok_or_else(overflow)?;
    }
    // The placed items are what was authorised for; a store cannot make an order dearer.
    let items = items.min(payment.items_minor);
    let discount = if payment.items_minor > 0 {
        let scaled = i128::from(payment.discount_minor) * i128::from(items)
            / i128::from(payment.items_minor);
        i64::try_from(scaled).map_err(|_| overflow())?
    } else {
        0
    };
    let fee = if items > 0 {
        payment.delivery_fee_minor
    } else {
        0
    };
    let total = items
        .checked_sub(discount)
        .and_then(|t| t.checked_add(fee))
        .ok_or_else(overflow)?
        .clamp(0, payment.total_minor);
    let (rider_id, cash_collected_minor) = replica
        .prepare_cached(
            "SELECT rider_id, cash_collected_minor FROM deliveries
             WHERE order_id = ?1 AND store_id = ?2",
        )?
        .query_row([&payment.order_id, &payment.store_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .optional()?
        .map_or((None, None), |(rider, cash)| {
            (Some(rider).filter(|r| !r.is_empty()), cash)
        });
    Ok(Delivered {
        items_minor: items,
        discount_minor: discount,
        delivery_fee_minor: fee,
        total_minor: total,
        rider_id,
        cash_collected_minor,
    })
}
