//! What happens when a store reports lines short: a whole order short at a store that has not
//! started picking moves to a store that has everything; otherwise it is confirmed partial.

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
        let Some(customer_id) = view.customer_id.clone() else {
            return Ok(false);
        };
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
        // Cancel at the first store (it releases its reservations), then route to the second.
        let from = self.stores.replica(&view.store_id).await?;
        let order_id = view.id.clone();
        let now = crate::clock::now_rfc3339();
        let moved = from
            .write(
                move |conn| -> Result<Option<PlacedOrder>, flashkart_sync::Error> {
                    cloud_writes::request_cancel(conn, &order_id, &now, "rerouted: out of stock")?;
                    read_order_rows(conn, &order_id)
                },
            )
            .await?;
        let Some(mut order) = moved else {
            return Ok(false);
        };
        self.projection
            .note(
                &view.id,
                &view.store_id,
                "REROUTED",
                format!("every line short; rerouted to {}", choice.store_id),
            )
            .await?;
        order.store_id = choice.store_id.clone();
        order.delivery_pin = self.hq.delivery_pin(&view.id).await?;
        order.promised_at = view.promised_at.clone().unwrap_or_default();
        let customer = Customer {
            id: customer_id,
            first_name: order.customer_first_name.clone(),
        };
        self.payments
            .moved(&view.id, &choice.store_id)
            .await
            .map_err(IntakeError::Payment)?;
        self.deliver_to_store(&customer, &order, REROUTED).await?;
        tracing::info!(order = %view.id, from = %view.store_id, to = %choice.store_id, "rerouted");
        Ok(true)
    }
}
