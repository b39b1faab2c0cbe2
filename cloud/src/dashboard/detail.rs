//! What HQ sees of one order beyond the customer's view: its lines as the store knows them
//! (picked, short, substituted) and the rider who took it. The lines live only in the store's
//! replica (the read model keeps statuses, not baskets), so they are read from there.

use serde::Serialize;

use crate::CloudError;
use crate::projection::{Backend, Projection};
use crate::stores::Stores;

/// One line of an order at its store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderLine {
    pub line_no: i64,
    pub product_id: String,
    /// The catalog's name, as the store's replica has it.
    pub name: Option<String>,
    pub qty: i64,
    pub unit_price_minor: i64,
    pub line_minor: i64,
    pub picked_qty: i64,
    pub short_qty: i64,
    pub substitute_product_id: Option<String>,
    pub substitute_name: Option<String>,
}

/// The lines of `order_id` in `store_id`'s replica (none if the store does not have it).
pub async fn order_lines(
    stores: &Stores,
    store_id: &str,
    order_id: &str,
) -> Result<Vec<OrderLine>, CloudError> {
    let replica = stores.replica(store_id).await?;
    let order_id = order_id.to_owned();
    replica
        .db()
        .read(move |conn| -> Result<Vec<OrderLine>, CloudError> {
            let mut statement = conn
                .prepare_cached(
                    "SELECT l.line_no, l.product_id, p.name, l.qty, l.unit_price_minor,
                        coalesce(g.picked_qty, 0), coalesce(g.short_qty, 0),
                        g.substitute_product_id, s.name
                     FROM order_lines l
                     LEFT JOIN order_line_progress g
                        ON g.order_id = l.order_id AND g.line_no = l.line_no
                     LEFT JOIN products p ON p.id = l.product_id
                     LEFT JOIN products s ON s.id = g.substitute_product_id
                     WHERE l.order_id = ?1 ORDER BY l.line_no",
                )
                .map_err(flashkart_sync::Error::from)?;
            let rows = statement
                .query_map([&order_id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                    ))
                })
                .map_err(flashkart_sync::Error::from)?;
            let mut lines = Vec::new();
            for row in rows {
                let (line_no, product_id, name, qty, unit, picked, short, substitute, sub_name) =
                    row.map_err(flashkart_sync::Error::from)?;
                let line_minor = qty.checked_mul(unit).ok_or_else(|| {
                    CloudError::Corrupt(format!("order {order_id} line {line_no} overflows"))
                })?;
                lines.push(OrderLine {
                    line_no,
                    product_id,
                    name,
                    qty,
                    unit_price_minor: unit,
                    line_minor,
                    picked_qty: picked,
                    short_qty: short,
                    substitute_product_id: substitute,
                    substitute_name: sub_name,
                });
            }
            Ok(lines)
        })
        .await
}

/// The rider who accepted the order, if one did.
pub async fn order_rider(
    projection: &Projection,
    order_id: &str,
) -> Result<Option<String>, CloudError> {
    match projection.backend() {
        Backend::Sqlite(db) => {
            let order_id = order_id.to_owned();
            Ok(db
                .read(move |conn| super::queries::order_rider(conn, &order_id))
                .await?)
        }
        Backend::Postgres(pg) => super::queries::pg::order_rider(pg, order_id).await,
    }
}
