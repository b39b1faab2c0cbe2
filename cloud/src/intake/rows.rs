//! The order rows in a store's replica: written when an order is routed (which wakes the
//! store's long-poll; through the store write journal with several instances), read back when
//! it is rerouted.

use rusqlite::OptionalExtension;
use sha2::{Digest, Sha256};

use crate::projection::{RoutedLine, RoutedOrder};
use crate::store_writes::{self, StoreWrite};

use super::{Customer, Intake, IntakeError, PlacedOrder, PricedLine, Step};

impl Intake {
    /// Writes the order rows into the store's replica (waking its long-poll) and the read model.
    pub(super) async fn deliver_to_store(
        &self,
        customer: &Customer,
        order: &PlacedOrder,
        steps: &[Step],
    ) -> Result<(), IntakeError> {
        if let Some(pin) = &order.delivery_pin {
            self.hq.keep_delivery_pin(&order.order_id, pin).await?;
        }
        self.writes
            .write(&order.store_id, vec![order_write(order)])
            .await?;
        tracing::info!(
            order_id = %order.order_id,
            trace_id = %super::trace::trace_id(&order.order_id),
            store_id = %order.store_id,
            "order written to the store's replica"
        );
        self.projection
            .record_routed_with_lines(
                RoutedOrder {
                    id: order.order_id.clone(),
                    store_id: order.store_id.clone(),
                    customer_id: customer.id.clone(),
                    at: order.placed_at.clone(),
                    placed_at: order.placed_at.clone(),
                    promised_at: order.promised_at.clone(),
                    total_minor: order.total_minor,
                    delivery_fee_minor: order.delivery_fee_minor,
                    currency: order.currency.clone(),
                    lat: order.lat,
                    lon: order.lon,
                    steps: steps.to_vec(),
                },
                order
                    .lines
                    .iter()
                    .map(|line| RoutedLine {
                        line_no: line.line_no,
                        product_id: line.product_id.clone(),
                        qty: line.qty,
                        unit_price_minor: line.unit_price_minor,
                    })
                    .collect(),
            )
            .await?;
        Ok(())
    }

    pub(super) async fn replica_order_position(
        &self,
        store_id: &str,
        order_id: &str,
    ) -> Result<Option<(f64, f64)>, IntakeError> {
        let replica = self.stores.replica(store_id).await?;
        let order_id = order_id.to_owned();
        Ok(replica
            .db()
            .read(move |conn| {
                conn.prepare_cached("SELECT lat, lon FROM orders WHERE id = ?1")?
                    .query_row([order_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(flashkart_sync::Error::from)
            })
            .await?)
    }
}

/// The order as the store gets it.
fn order_write(order: &PlacedOrder) -> StoreWrite {
    StoreWrite::Order {
        order: store_writes::Order {
            id: order.order_id.clone(),
            customer_first_name: order.customer_first_name.clone(),
            address: order.address.clone(),
            lat: order.lat,
            lon: order.lon,
            delivery_slot: order.delivery_slot.clone(),
            total_minor: order.total_minor,
            placed_at: order.placed_at.clone(),
            routed_at: crate::clock::now_rfc3339(),
            delivery_pin_sha256: order
                .delivery_pin
                .as_deref()
                .map(|pin| delivery_pin_sha256(&order.order_id, pin)),
            contactless: order.contactless,
            payment_method: order.payment_method.clone(),
            // The rider collects the whole total of a cash order at the door.
            cash_due_minor: if order.payment_method == "cash" {
                order.total_minor
            } else {
                0
            },
            currency: order.currency.clone(),
        },
        lines: order
            .lines
            .iter()
            .map(|line| store_writes::OrderLine {
                line_no: line.line_no,
                product_id: line.product_id.clone(),
                qty: line.qty,
                unit_price_minor: line.unit_price_minor,
            })
            .collect(),
    }
}

/// What a store gets of a delivery PIN: SHA-256 (hex) over `order_id || ':' || pin`, so equal
/// PINs of different orders hash differently.
fn delivery_pin_sha256(order_id: &str, pin: &str) -> String {
    crate::registry::hex(&Sha256::digest(format!("{order_id}:{pin}").as_bytes()))
}

/// The order rows of a replica, as intake wrote them (for a reroute; the PIN, which the
/// replica does not have, is the caller's to add).
pub(super) fn read_order_rows(
    conn: &rusqlite::Connection,
    order_id: &str,
) -> Result<Option<PlacedOrder>, flashkart_sync::Error> {
    let order = conn
        .prepare_cached(
            "SELECT store_id, customer_first_name, address, lat, lon, delivery_slot, total_minor,
                placed_at, contactless, payment_method, currency FROM orders WHERE id = ?1",
        )?
        .query_row([order_id], |r| {
            Ok(PlacedOrder {
                order_id: order_id.to_owned(),
                store_id: r.get(0)?,
                status: "ROUTED".into(),
                placed_at: r.get(7)?,
                promised_at: String::new(),
                eta_minutes: 0,
                // Carried over, so the second store's cash due is in the same currency.
                currency: r.get(10)?,
                lines: Vec::new(),
                items_minor: 0,
                discount_minor: 0,
                delivery_fee_minor: 0,
                surge_factor: 1.0,
                total_minor: r.get(6)?,
                customer_first_name: r.get(1)?,
                address: r.get(2)?,
                lat: r.get(3)?,
                lon: r.get(4)?,
                delivery_slot: r.get(5)?,
                contactless: r.get(8)?,
                payment_method: r.get(9)?,
                delivery_pin: None,
            })
        })
        .optional()?;
    let Some(mut order) = order else {
        return Ok(None);
    };
    order.lines = conn
        .prepare_cached(
            "SELECT line_no, product_id, qty, unit_price_minor FROM order_lines
             WHERE order_id = ?1 ORDER BY line_no",
        )?
        .query_map([order_id], |r| {
            let (qty, unit): (i64, i64) = (r.get(2)?, r.get(3)?);
            Ok(PricedLine {
                line_no: r.get(0)?,
                product_id: r.get(1)?,
                qty,
                unit_price_minor: unit,
                line_minor: qty
                    .checked_mul(unit)
                    .ok_or(rusqlite::Error::IntegralValueOutOfRange(3, unit))?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(order))
}
