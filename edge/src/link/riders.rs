//! The daemon's side of the riders service: its start-up (from `[riders]`, [`RidersSection`])
//! and the order desk that moves orders for riders through the real order state machine.
//!
//! The riders service decides who may act (the rider holding the accepted assignment, as the
//! broker authenticated it); this desk moves the order with the same domain functions and the
//! same writer path the tablets use, so a rider's pickup or delivery is checked by the same
//! rules, stored with the rider as actor, and announced on the live event stream.

use std::path::Path;
use std::sync::Arc;

use flashkart_sync::StoreDb;

use rusqlite::{OptionalExtension, params};

use crate::app::App;
use crate::config::RidersSection;
use crate::error::Error;
use crate::riders::desk::{check_cash, check_door};
use crate::riders::{Delivery, DeskError, Handoff, OrderDesk, Riders, RidersConfig};
use crate::work::orders::{self, Status};
use crate::work::pack;

/// Starts the broker and the riders service with the CA kept under `data_dir/riders-ca`.
pub async fn start(
    section: &RidersSection,
    store_id: &str,
    data_dir: &Path,
    db: StoreDb,
    app: Arc<App>,
) -> Result<Riders, Error> {
    let mut config = RidersConfig::new(store_id, data_dir.join("riders-ca"));
    config.tls_listen = section.tls_listen;
    config.plain_listen = section.plain_listen;
    config.server_names = section.server_names.clone();
    config.geofence_m = section.geofence_m;
    config.cert_validity_days = section.cert_validity_days;
    let riders = Riders::start(config, db, StoreDesk::new(app))
        .await
        .map_err(|e| Error::Config(format!("starting the riders broker: {e}")))?;
    tracing::info!(
        tls = %riders.tls_addr(),
        plain = %riders.plain_addr().map_or_else(|| "none".to_owned(), |a| a.to_string()),
        "riders broker listening"
    );
    Ok(riders)
}

/// [`OrderDesk`] over the daemon's [`App`].
#[derive(Debug, Clone)]
pub struct StoreDesk {
    app: Arc<App>,
}

impl StoreDesk {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

impl OrderDesk for StoreDesk {
    async fn handoff(&self, handoff: Handoff) -> Result<(), DeskError> {
        let actor = format!("rider:{}", handoff.rider_id);
        let order_id = handoff.order_id.clone();
        self.app
            .write(&actor, move |conn, ctx| {
                // Checked here too (pack::handoff refuses it as well) so the rider's device
                // gets the precise `wrong_label` code.
                let label: Option<String> = conn
                    .prepare_cached("SELECT label_id FROM order_progress WHERE order_id = ?1")?
                    .query_row([&handoff.order_id], |row| row.get(0))
                    .optional()?
                    .flatten();
                if label.as_deref() != Some(handoff.label_id.as_str()) {
                    return Ok(Err(DeskError::WrongLabel {
                        order_id: handoff.order_id.clone(),
                        label_id: handoff.label_id.clone(),
                    }));
                }
                pack::handoff(
                    conn,
                    ctx,
                    &handoff.order_id,
                    &pack::Handoff {
                        rider_id: handoff.rider_id.clone(),
                        label_id: handoff.label_id.clone(),
                    },
                )?;
                Ok(Ok(()))
            })
            .await
            .map_err(|error| desk_error(&order_id, Status::PickedUp, error))?
    }

    async fn delivered(&self, delivery: Delivery) -> Result<Option<bool>, DeskError> {
        let actor = format!("rider:{}", delivery.rider_id);
        let order_id = delivery.order_id.clone();
        self.app
            .write(&actor, move |conn, ctx| {
                let handed_to: Option<String> = conn
                    .prepare_cached("SELECT rider_id FROM handoffs WHERE order_id = ?1")?
                    .query_row([&delivery.order_id], |row| row.get(0))
                    .optional()?;
                if handed_to.as_deref() != Some(delivery.rider_id.as_str()) {
                    return Ok(Err(DeskError::NotPickedUp {
                        order_id: delivery.order_id.clone(),
                        rider_id: delivery.rider_id.clone(),
                    }));
                }
                // Only a picked-up order is judged at the door (no attempt is recorded for an
                // order that could not move anyway).
                let status: String = conn
                    .prepare_cached("SELECT status FROM order_progress WHERE order_id = ?1")?
                    .query_row([&delivery.order_id], |row| row.get(0))?;
                if status != Status::PickedUp.as_str() {
                    return Ok(Err(DeskError::BadTransition {
                        order_id: delivery.order_id.clone(),
                        from: status,
                        to: Status::Delivered.as_str().to_owned(),
                    }));
                }
                // Before the door: a refusal here writes nothing, not even a PIN attempt.
                let cash = match check_cash(conn, &delivery)? {
                    Ok(cash) => cash,
                    Err(refused) => return Ok(Err(refused)),
                };
                let pin_ok = match check_door(conn, &ctx.store_id, &delivery)? {
                    Ok(pin_ok) => pin_ok,
                    Err(refused) => return Ok(Err(refused)),
                };
                orders::transition(
                    conn,
                    ctx,
                    &delivery.order_id,
                    Status::Delivered,
                    "deliver",
                    None,
                )?;
                conn.prepare_cached(
                    "INSERT INTO deliveries (order_id, store_id, rider_id, at, lat, lon,
                        customer_pin_ok, photo_ref, cash_collected_minor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    delivery.order_id,
                    ctx.store_id,
                    delivery.rider_id,
                    delivery.at,
                    delivery.lat,
                    delivery.lon,
                    pin_ok,
                    delivery.photo_ref.as_deref().map(str::trim),
                    cash
                ])?;
                Ok(Ok(pin_ok))
            })
            .await
            .map_err(|error| desk_error(&order_id, Status::Delivered, error))?
    }
}

fn desk_error(order_id: &str, to: Status, error: Error) -> DeskError {
    match error {
        Error::NotFound { .. } => DeskError::UnknownOrder(order_id.to_owned()),
        Error::InvalidTransition { status, .. } => DeskError::BadTransition {
            order_id: order_id.to_owned(),
            from: status.as_str().to_owned(),
            to: to.as_str().to_owned(),
        },
        other => DeskError::Internal(other.to_string()),
    }
}
