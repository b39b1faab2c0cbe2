//! What happens when a store reports lines short: a whole order short at a store that has not
//! started picking moves to a store that has everything; otherwise it is confirmed partial.
//! HQ moves an order its store has not started the same way (`reroute_by_hq`).

use std::sync::Arc;

use flashkart_sync::cloud_writes;
use rusqlite::OptionalExtension;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::projection::ShortReport;
use crate::routing;

use super::rows::read_order_rows;
use super::{Customer, Intake, IntakeError, PlacedOrder, REROUTED, ReplicaLine};

impl Intake {
    /// Follows the projector's short reports until shutdown.
    pub async fn run_short_handler(
        self: Arc<Self>,
        mut shorts: mpsc::Receiver<ShortReport>,
        shutdown: CancellationToken,
    ) {
        loop {
            let report = tokio::select! {
                report = shorts.recv() => report,
                () = shutdown.cancelled() => None,
            };
            let Some(report) = report else { return };
            if let Err(error) = self.on_short(&report).await {
                tracing::warn!(order = %report.order_id, %error, "short lines not handled");
            }
        }
    }

    /// Reroutes or confirms partial an order its store reported short.
    pub async fn on_short(&self, report: &ShortReport) -> Result<(), IntakeError> {
        let Some(view) = self.projection.order(&report.order_id).await? else {
            return Ok(());
        };
        if view.store_id != report.store_id
            || view.timeline.iter().any(|t| {
                t.source == "cloud"
                    && t.store_id == report.store_id
                    && matches!(t.status.as_str(), "PARTIAL_CONFIRMED" | "REROUTED")
            })
        {
            return Ok(());
        }
        let replica = self.stores.replica(&report.store_id).await?;
        let order_id = report.order_id.clone();
        let (lines, placed): (Vec<ReplicaLine>, Option<String>) = replica
            .db()
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let lines = conn
                    .prepare_cached(
                        "SELECT l.line_no, l.product_id, l.qty, coalesce(p.short_qty, 0)
                         FROM order_lines l LEFT JOIN order_line_progress p
                           ON p.order_id = l.order_id AND p.line_no = l.line_no
                         WHERE l.order_id = ?1 ORDER BY l.line_no",
                    )?
                    .query_map([&order_id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<_, _>>()?;
                let status: Option<String> = conn
                    .prepare_cached("SELECT status FROM order_progress WHERE order_id = ?1")?
                    .query_row([&order_id], |r| r.get(0))
                    .optional()?;
                Ok((lines, status))
            })
            .await?;
        let all_short = !lines.is_empty() && lines.iter().all(|(_, _, qty, short)| short >= qty);
        let not_started = matches!(placed.as_deref(), Some("ROUTED" | "ACCEPTED"));
        if all_short && not_started && self.reroute(&view, &lines).await? {
            return Ok(());
        }
        let short: Vec<String> = lines
            .iter()
            .filter(|(_, _, _, short)| *short > 0)
            .map(|(line_no, product, _, short)| format!("line {line_no} ({product}) short {short}"))
            .collect();
        self.projection
            .note(
                &report.order_id,
                &report.store_id,
                "PARTIAL_CONFIRMED",
                format!("confirmed partial, to refund: {}", short.join(", ")),
            )
            .await?;
        Ok(())
    }

    /// Moves an order to another store that has every line, if one can take it now.
    async fn reroute(
        &self,
        view: &crate::projection::OrderView,
        lines: &[(i64, String, i64, i64)],
    ) -> Result<bool, IntakeError> {
        let product_ids: Vec<String> = lines.iter().map(|l| l.1.clone()).collect();
        let quantities: Vec<i64> = lines.iter().map(|l| l.2).collect();
        let (available, backlog) = tokio::try_join!(
            self.projection.available(product_ids.clone()),
            self.projection.backlog(),
        )?;
        let (lat, lon) = self
            .replica_order_position(&view.store_id, &view.id)
            .await?
            .unwrap_or((0.0, 0.0));
        let candidates = self.candidates(
            &self.hq.stores(),
            (lat, lon),
            &product_ids,
            &available,
            &backlog,
            Some(&view.store_id),
        );
        let Ok(choice) = routing::choose(&candidates, &quantities, &self.estimates()) else {
            return Ok(false);
        };
        if !choice.has_everything {
            return Ok(false);
        }
        let moved = self
            .move_order(
                view,
                &choice.store_id,
                "rerouted: out of stock".into(),
                format!("every line short; rerouted to {}", choice.store_id),
            )
            .await?;
        Ok(moved == Move::Moved)
    }

    /// HQ moves an order to `to_store`: only while its store has not started picking it
    /// (ROUTED, not yet arrived, or ACCEPTED), and only to a store that can serve it now with
    /// every line in stock (in its area and radius, open, not paused, online, under capacity).
    /// The move itself is the one a wholly short order makes.
    pub async fn reroute_by_hq(
        &self,
        order_id: &str,
        to_store: &str,
        reason: &str,
    ) -> Result<String, RerouteRefused> {
        let view = self
            .projection
            .order(order_id)
            .await?
            .ok_or_else(|| RerouteRefused::NotFound(format!("no order {order_id}")))?;
        if view.store_id == to_store {
            return Err(RerouteRefused::Conflict(format!(
                "order {order_id} is at {to_store} already"
            )));
        }
        if !matches!(view.status.as_str(), "ROUTED" | "ACCEPTED") {
            return Err(RerouteRefused::Conflict(format!(
                "order {order_id} is {} at {}: only an order its store has not started picking \
                 can move",
                view.status, view.store_id
            )));
        }
        let stores = self.hq.stores();
        if !stores.iter().any(|s| s.profile.id == to_store) {
            return Err(RerouteRefused::NotFound(format!(
                "store {to_store} has no profile"
            )));
        }
        let replica = self.stores.replica(&view.store_id).await?;
        let id = view.id.clone();
        let lines: Vec<(String, i64)> = replica
            .db()
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let lines = conn
                    .prepare_cached(
                        "SELECT product_id, qty FROM order_lines WHERE order_id = ?1 ORDER BY line_no",
                    )?
                    .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(lines)
            })
            .await
            .map_err(IntakeError::from)?;
        let position = self
            .replica_order_position(&view.store_id, &view.id)
            .await?;
        let (Some(position), false) = (position, lines.is_empty()) else {
            return Err(RerouteRefused::Conflict(format!(
                "order {order_id} is not in {}'s replica",
                view.store_id
            )));
        };
        let product_ids: Vec<String> = lines.iter().map(|l| l.0.clone()).collect();
        let quantities: Vec<i64> = lines.iter().map(|l| l.1).collect();
        let (available, backlog) = tokio::try_join!(
            self.projection.available(product_ids.clone()),
            self.projection.backlog(),
        )
        .map_err(IntakeError::from)?;
        let target: Vec<_> = self
            .candidates(
                &stores,
                position,
                &product_ids,
                &available,
                &backlog,
                Some(&view.store_id),
            )
            .into_iter()
            .filter(|c| c.store_id == to_store)
            .collect();
        match routing::choose(&target, &quantities, &self.estimates()) {
            Err(routing::NoStore::OutsideAreas) => {
                return Err(RerouteRefused::Conflict(format!(
                    "{to_store} does not deliver to the order's address"
                )));
            }
            Err(routing::NoStore::Unavailable(why)) => {
                return Err(RerouteRefused::Conflict(format!(
                    "{to_store} cannot take an order now: {why}"
                )));
            }
            Ok(choice) if !choice.has_everything => {
                return Err(RerouteRefused::Conflict(format!(
                    "{to_store} does not have every line of order {order_id} in stock"
                )));
            }
            Ok(_) => {}
        }
        let moved = self
            .move_order(
                &view,
                to_store,
                format!("rerouted by HQ: {reason}"),
                format!("HQ rerouted to {to_store}: {reason}"),
            )
            .await?;
        match moved {
            Move::Moved => Ok(to_store.to_owned()),
            Move::Started(status) => Err(RerouteRefused::Conflict(format!(
                "order {order_id} is {status} at {}: only an order its store has not started \
                 picking can move",
                view.store_id
            ))),
            Move::Cancelling => Err(RerouteRefused::Conflict(format!(
                "order {order_id} is being cancelled"
            ))),
            Move::WasThere => Err(RerouteRefused::Conflict(format!(
                "order {order_id} was at {to_store} before and was cancelled there"
            ))),
            Move::Unknown => Err(RerouteRefused::Conflict(format!(
                "order {order_id} was not placed through intake or is not in its store's replica"
            ))),
        }
    }

    /// Moves an order to store `to`: the cancellation is asked for at its store (which
    /// releases what it reserved), the same order (id, lines, PIN, promise) is written to `to`
    /// and the payment follows it. Nothing is written unless the store's replica shows the
    /// order not started (no progress yet, ROUTED or ACCEPTED) and not being cancelled.
    async fn move_order(
        &self,
        view: &crate::projection::OrderView,
        to: &str,
        cancel_reason: String,
        note: String,
    ) -> Result<Move, IntakeError> {
        let Some(customer_id) = view.customer_id.clone() else {
            return Ok(Move::Unknown);
        };
        // A store the order left has cancelled it; writing it there again would change nothing
        // (an order already in a replica is left as it is), so it would never be picked.
        let target = self.stores.replica(to).await?;
        let order_id = view.id.clone();
        let was_there = target
            .db()
            .read(move |conn| {
                conn.prepare_cached("SELECT 1 FROM orders WHERE id = ?1")?
                    .query_row([order_id], |_| Ok(()))
                    .optional()
                    .map_err(flashkart_sync::Error::from)
            })
            .await?
            .is_some();
        if was_there {
            return Ok(Move::WasThere);
        }
        let from = self.stores.replica(&view.store_id).await?;
        let order_id = view.id.clone();
        let now = crate::clock::now_rfc3339();
        // The check and the cancellation request are one transaction of the replica, so what
        // the store reported last is what was checked.
        let moved = from
            .write(
                move |conn| -> Result<Result<PlacedOrder, Move>, flashkart_sync::Error> {
                    let state: Option<(Option<String>, Option<String>)> = conn
                        .prepare_cached(
                            "SELECT p.status, o.cancel_requested_at FROM orders o
                             LEFT JOIN order_progress p ON p.order_id = o.id WHERE o.id = ?1",
                        )?
                        .query_row([&order_id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    match state {
                        None => return Ok(Err(Move::Unknown)),
                        Some((_, Some(_))) => return Ok(Err(Move::Cancelling)),
                        Some((Some(status), None))
                            if !matches!(status.as_str(), "ROUTED" | "ACCEPTED") =>
                        {
                            return Ok(Err(Move::Started(status)));
                        }
                        Some(_) => {}
                    }
                    let Some(order) = read_order_rows(conn, &order_id)? else {
                        return Ok(Err(Move::Unknown));
                    };
                    cloud_writes::request_cancel(conn, &order_id, &now, &cancel_reason)?;
                    Ok(Ok(order))
                },
            )
            .await?;
        let mut order = match moved {
            Ok(order) => order,
            Err(refused) => return Ok(refused),
        };
        self.projection
            .note(&view.id, &view.store_id, "REROUTED", note)
            .await?;
        order.store_id = to.to_owned();
        order.delivery_pin = self.hq.delivery_pin(&view.id).await?;
        order.promised_at = view.promised_at.clone().unwrap_or_default();
        let customer = Customer {
            id: customer_id,
            first_name: order.customer_first_name.clone(),
        };
        self.payments
            .moved(&view.id, to)
            .await
            .map_err(IntakeError::Payment)?;
        self.deliver_to_store(&customer, &order, REROUTED).await?;
        tracing::info!(order = %view.id, from = %view.store_id, to, "rerouted");
        Ok(Move::Moved)
    }
}

/// What came of moving an order to another store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Move {
    Moved,
    /// Its store has started on it (the status there).
    Started(String),
    /// A cancellation has been asked for already.
    Cancelling,
    /// The other store had it before and has cancelled it.
    WasThere,
    /// Not an order intake placed, or not in its store's replica.
    Unknown,
}

/// Why HQ's reroute of an order did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RerouteRefused {
    /// No such order or target store; nothing was written.
    #[error("{0}")]
    NotFound(String),
    /// The order cannot move (started, cancelling, been there) or the store cannot take it;
    /// nothing was written.
    #[error("{0}")]
    Conflict(String),
    /// A database or payments failure, possibly after the first store was asked to cancel
    /// (as with a short order's reroute, the move is not resumed).
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

impl From<crate::CloudError> for RerouteRefused {
    fn from(error: crate::CloudError) -> Self {
        Self::Intake(error.into())
    }
}
