//! The seam to the order state machine, which the edge's orders module owns.
//!
//! The riders service decides *who* may hand off or deliver (the rider holding the accepted
//! assignment, per the broker-authenticated topic); the order desk decides whether the order
//! may move and records it. The daemon implements [`OrderDesk`] with its orders service;
//! [`LocalDesk`] is a small, real implementation over the store database for the simulator
//! demo, tests and benchmarks until then.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use flashkart_sync::StoreDb;
use rusqlite::{Connection, OptionalExtension};

use super::DeskError;

/// A rider scanned the bag label of an order at the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Handoff {
    pub order_id: String,
    pub rider_id: String,
    pub label_id: String,
    /// RFC 3339 UTC.
    pub at: String,
}

/// A rider says it delivered an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub order_id: String,
    pub rider_id: String,
    pub at: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// The PIN the customer read out, if any; the desk knows the order's PIN and judges it.
    pub customer_pin: Option<String>,
}

/// Moves orders on riders' behalf: READY (or ASSIGNED) to PICKED_UP at the handoff, PICKED_UP
/// to DELIVERED at delivery, writing the `handoffs` and `deliveries` rows.
pub trait OrderDesk: Send + Sync + 'static {
    /// Records the handoff: refuses a wrong label or an order that is not ready.
    fn handoff(&self, handoff: Handoff) -> impl Future<Output = Result<(), DeskError>> + Send;

    /// Records the delivery; returns whether the customer PIN matched (`None` when the order
    /// has no PIN).
    fn delivered(
        &self,
        delivery: Delivery,
    ) -> impl Future<Output = Result<Option<bool>, DeskError>> + Send;
}

/// An [`OrderDesk`] over the store database alone: checks and moves `order_progress.status`
/// and writes `handoffs`, `deliveries` and `order_events`.
#[derive(Debug, Clone)]
pub struct LocalDesk {
    db: StoreDb,
    store_id: String,
    pins: Arc<Mutex<HashMap<String, String>>>,
}

impl LocalDesk {
    pub fn new(db: StoreDb, store_id: impl Into<String>) -> Self {
        Self {
            db,
            store_id: store_id.into(),
            pins: Arc::default(),
        }
    }

    /// Gives `order_id` a customer PIN that delivery must present.
    pub fn set_customer_pin(&self, order_id: &str, pin: &str) {
        if let Ok(mut pins) = self.pins.lock() {
            pins.insert(order_id.to_owned(), pin.to_owned());
        }
    }

    fn expected_pin(&self, order_id: &str) -> Option<String> {
        self.pins.lock().ok()?.get(order_id).cloned()
    }
}

impl OrderDesk for LocalDesk {
    async fn handoff(&self, handoff: Handoff) -> Result<(), DeskError> {
        let store_id = self.store_id.clone();
        self.db
            .write(move |conn| {
                let (status, label) = progress(conn, &handoff.order_id)?;
                let accepted: bool = conn.query_row(
                    "SELECT count(*) > 0 FROM assignments a
                     JOIN assignment_replies r ON r.assignment_id = a.id
                     WHERE a.order_id = ?1 AND a.rider_id = ?2 AND r.reply = 'accepted'",
                    (&handoff.order_id, &handoff.rider_id),
                    |row| row.get(0),
                )?;
                if !accepted {
                    return Err(DeskError::NotAssigned {
                        order_id: handoff.order_id,
                        rider_id: handoff.rider_id,
                    });
                }
                if label.as_deref() != Some(handoff.label_id.as_str()) {
                    return Err(DeskError::WrongLabel {
                        order_id: handoff.order_id,
                        label_id: handoff.label_id,
                    });
                }
                move_order(
                    conn,
                    &handoff.order_id,
                    &status,
                    &["READY", "ASSIGNED"],
                    "PICKED_UP",
                    &handoff.rider_id,
                    &handoff.at,
                    &store_id,
                )?;
                conn.execute(
                    "INSERT INTO handoffs (order_id, store_id, rider_id, label_id, at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    (
                        &handoff.order_id,
                        &store_id,
                        &handoff.rider_id,
                        &handoff.label_id,
                        &handoff.at,
                    ),
                )?;
                Ok(())
            })
            .await
    }

    async fn delivered(&self, delivery: Delivery) -> Result<Option<bool>, DeskError> {
        let store_id = self.store_id.clone();
        let pin_ok = self
            .expected_pin(&delivery.order_id)
            .map(|expected| delivery.customer_pin.as_deref() == Some(expected.as_str()));
        self.db
            .write(move |conn| {
                let (status, _) = progress(conn, &delivery.order_id)?;
                let carrier: Option<String> = conn
                    .query_row(
                        "SELECT rider_id FROM handoffs WHERE order_id = ?1",
                        [&delivery.order_id],
                        |row| row.get(0),
                    )
                    .optional()?;
                if carrier.as_deref() != Some(delivery.rider_id.as_str()) {
                    return Err(DeskError::NotPickedUp {
                        order_id: delivery.order_id,
                        rider_id: delivery.rider_id,
                    });
                }
                move_order(conn, &delivery.order_id, &status, &["PICKED_UP"], "DELIVERED", &delivery.rider_id, &delivery.at, &store_id)?;
                conn.execute(
                    "INSERT INTO deliveries (order_id, store_id, rider_id, at, lat, lon, customer_pin_ok)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    (
                        &delivery.order_id,
                        &store_id,
                        &delivery.rider_id,
                        &delivery.at,
                        delivery.lat,
                        delivery.lon,
                        pin_ok,
                    ),
                )?;
                Ok(pin_ok)
            })
            .await
    }
}

fn progress(conn: &Connection, order_id: &str) -> Result<(String, Option<String>), DeskError> {
    conn.query_row(
        "SELECT status, label_id FROM order_progress WHERE order_id = ?1",
        [order_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()?
    .ok_or_else(|| DeskError::UnknownOrder(order_id.to_owned()))
}

#[allow(clippy::too_many_arguments)]
fn move_order(
    conn: &Connection,
    order_id: &str,
    from: &str,
    allowed_from: &[&str],
    to: &str,
    rider_id: &str,
    at: &str,
    store_id: &str,
) -> Result<(), DeskError> {
    if !allowed_from.contains(&from) {
        return Err(DeskError::BadTransition {
            order_id: order_id.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }
    conn.execute(
        "UPDATE order_progress SET status = ?2, status_at = ?3 WHERE order_id = ?1",
        (order_id, to, at),
    )?;
    conn.execute(
        "INSERT INTO order_events (id, store_id, order_id, from_status, to_status, actor, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        (
            uuid::Uuid::now_v7().to_string(),
            store_id,
            order_id,
            from,
            to,
            format!("rider:{rider_id}"),
            at,
        ),
    )?;
    Ok(())
}
