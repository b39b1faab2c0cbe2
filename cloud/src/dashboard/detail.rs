//! What HQ sees of one order beyond the customer's view: its lines as the store knows them
//! (picked, short, substituted) and the rider who took it. The lines come from the read
//! model (as routed, with the progress the store reported), not from the store's replica,
//! which only the instance holding the store has; the names from the catalog, which every
//! instance has whole.

use std::collections::HashMap;

use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::CloudError;
use crate::projection::{Backend, Projection};
use crate::stores::Stores;

/// One line of an order at its store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderLine {
    pub line_no: i64,
    pub product_id: String,
    /// The catalog's name.
    pub name: Option<String>,
    pub qty: i64,
    pub unit_price_minor: i64,
    pub line_minor: i64,
    pub picked_qty: i64,
    pub short_qty: i64,
    pub substitute_product_id: Option<String>,
    pub substitute_name: Option<String>,
}

/// The lines of `order_id` as routed to `store_id` (none if it was not).
pub async fn order_lines(
    stores: &Stores,
    projection: &Projection,
    store_id: &str,
    order_id: &str,
) -> Result<Vec<OrderLine>, CloudError> {
    let projected = projection.order_lines(order_id, store_id).await?;
    let mut products: Vec<String> = projected
        .iter()
        .flat_map(|l| std::iter::once(&l.product_id).chain(&l.substitute_product_id))
        .cloned()
        .collect();
    products.sort();
    products.dedup();
    let names: HashMap<String, String> = stores
        .catalog()
        .read(move |conn| -> Result<_, flashkart_sync::Error> {
            let mut statement = conn.prepare_cached("SELECT name FROM products WHERE id = ?1")?;
            let mut names = HashMap::new();
            for id in products {
                let name: Option<String> = statement.query_row([&id], |r| r.get(0)).optional()?;
                if let Some(name) = name {
                    names.insert(id, name);
                }
            }
            Ok(names)
        })
        .await?;
    projected
        .into_iter()
        .map(|l| {
            let line_minor = l.qty.checked_mul(l.unit_price_minor).ok_or_else(|| {
                CloudError::Corrupt(format!("order {order_id} line {} overflows", l.line_no))
            })?;
            Ok(OrderLine {
                line_no: l.line_no,
                name: names.get(&l.product_id).cloned(),
                product_id: l.product_id,
                qty: l.qty,
                unit_price_minor: l.unit_price_minor,
                line_minor,
                picked_qty: l.picked_qty,
                short_qty: l.short_qty,
                substitute_name: l
                    .substitute_product_id
                    .as_ref()
                    .and_then(|s| names.get(s).cloned()),
                substitute_product_id: l.substitute_product_id,
            })
        })
        .collect()
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
