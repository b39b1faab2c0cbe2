//! What happens when a store reports lines short: a whole order short at a store that has not
//! started picking moves to a store that has everything; otherwise it is confirmed partial.
//! HQ moves an order its store has not started the same way (`reroute_by_hq`).

use std::sync::Arc;

use flashkart_sync::cloud_writes;
use rusqlite::OptionalExtension;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hq::OrderMove;
use crate::projection::ShortReport;
use crate::routing;
use crate::store_writes::StoreWrite;

use super::rows::read_order_rows;
use super::{Customer, Intake, IntakeError, REROUTED, ReplicaLine};

/// How often moves a stopped cloud left half-way are tried again while any is left.
const MOVES_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

impl Intake {
    /// Finishes moves a stopped cloud left half-way, then follows the projector's short
    /// reports until shutdown.
    pub async fn run_short_handler(
        self: Arc<Self>,
        mut shorts: mpsc::Receiver<ShortReport>,
        shutdown: CancellationToken,
    ) {
        // Moves a stopped cloud left half-way are finished first, then retried while any is
        // left (a store's replica that could not be opened, say).
        let mut resume = tokio::time::interval(MOVES_RETRY);
        let mut moves_left = true;
        loop {
            let report = tokio::select! {
                _ = resume.tick(), if moves_left => {
                    match self.resume_moves().await {
                        Ok(left) => moves_left = left > 0,
                        Err(error) => tracing::warn!(%error, "unfinished moves not read"),
                    }
                    continue;
                }
                report = shorts.recv() => report,
                () = shutdown.cancelled() => None,
            };
            let Some(report) = report else { return };
            if let Err(error) = self.on_short(&report).await {
                tracing::warn!(order = %report.order_id, trace_id = %super::trace::trace_id(&report.order_id), %error, "short lines not handled");
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
        // The customer hears of short lines from this decision, not from the store's report:
        // an order moved whole to another store lacks nothing.
        let missing: Vec<serde_json::Value> = lines
            .iter()
            .filter(|(_, _, _, short)| *short > 0)
            .map(|(line_no, product, _, short)| {
                serde_json::json!({"line_no": line_no, "product_id": product, "short_qty": short})
            })
            .collect();
        self.projection
            .note(
                &report.order_id,
                &report.store_id,
                "PARTIAL_CONFIRMED",
                format!("confirmed partial, to refund: {}", short.join(", ")),
                Some((
                    crate::notify::Kind::ItemsShort,
                    serde_json::json!({"store_id": report.store_id, "lines": missing}),
                )),
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
                "order {order_id} is being cancelled or moved"
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
    /// order not started (no progress yet, ROUTED or ACCEPTED) and not being cancelled. The
    /// move is recorded in HQ's database before the first store is asked to cancel, so a
    /// cloud stopped half-way finishes it when it is back ([`Intake::resume_moves`]).
    async fn move_order(
        &self,
        view: &crate::projection::OrderView,
        to: &str,
        cancel_reason: String,
        note: String,
    ) -> Result<Move, IntakeError> {
        if view.customer_id.is_none() {
            return Ok(Move::Unknown);
        }
        // A store the order left has cancelled it; writing it there again would change nothing
        // (an order already in a replica is left as it is), so it would never be picked.
        if self.writes.routed_there(to, &view.id).await? {
            return Ok(Move::WasThere);
        }
        let order_move = OrderMove {
            order_id: view.id.clone(),
            from_store: view.store_id.clone(),
            to_store: to.to_owned(),
            requested_at: crate::clock::now_rfc3339(),
            cancel_reason,
            note,
        };
        if !self.hq.begin_move(order_move.clone()).await? {
            return Ok(Move::Cancelling);
        }
        crate::faults::crash_point("reroute:after-intent");
        let from = self.stores.replica(&view.store_id).await?;
        let (order_id, at, reason) = (
            view.id.clone(),
            order_move.requested_at.clone(),
            order_move.cancel_reason.clone(),
        );
        // The check and the cancellation request are one transaction of the replica, so what
        // the store reported last is what was checked.
        let checked = from
            .write(
                move |conn| -> Result<Result<(), Move>, flashkart_sync::Error> {
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
                    cloud_writes::request_cancel(conn, &order_id, &at, &reason)?;
                    Ok(Ok(()))
                },
            )
            .await;
        match checked {
            Ok(Ok(())) => {
                // Also into the store's journal, so that a replica rebuilt by the next holder
                // of the store has the request too (here it is already there: a no-op).
                self.writes
                    .write(
                        &view.store_id,
                        vec![StoreWrite::CancelRequest {
                            order_id: view.id.clone(),
                            at: order_move.requested_at.clone(),
                            reason: order_move.cancel_reason.clone(),
                        }],
                    )
                    .await?;
            }
            Ok(Err(refused)) => {
                self.hq.end_move(&view.id).await?;
                return Ok(refused);
            }
            // Whether the cancellation committed is unknown: the recorded move decides, at the
            // next resume, from what the replica shows.
            Err(error) => return Err(error.into()),
        }
        crate::faults::crash_point("reroute:after-cancel");
        self.finish_move(&order_move).await?;
        Ok(Move::Moved)
    }

    /// The rest of a move whose cancellation the first store's replica holds: the timeline
    /// note, the payment, the order at the second store. Each step is idempotent, so a move
    /// finished twice is finished once.
    async fn finish_move(&self, order_move: &OrderMove) -> Result<(), IntakeError> {
        let m = order_move;
        let view = self.projection.order(&m.order_id).await?;
        let from = self.stores.replica(&m.from_store).await?;
        let order_id = m.order_id.clone();
        let order = from
            .db()
            .read(move |conn| read_order_rows(conn, &order_id))
            .await?;
        let (Some(view), Some(mut order)) = (view, order) else {
            tracing::error!(order = %m.order_id, from = %m.from_store, "a recorded move names an order intake does not know: dropped");
            self.hq.end_move(&m.order_id).await?;
            return Ok(());
        };
        let Some(customer_id) = view.customer_id.clone() else {
            self.hq.end_move(&m.order_id).await?;
            return Ok(());
        };
        self.projection
            .note(&m.order_id, &m.from_store, "REROUTED", m.note.clone(), None)
            .await?;
        order.store_id = m.to_store.clone();
        order.delivery_pin = self.hq.delivery_pin(&m.order_id).await?;
        order.promised_at = view.promised_at.clone().unwrap_or_default();
        let customer = Customer {
            id: customer_id,
            first_name: order.customer_first_name.clone(),
        };
        self.payments
            .moved(&m.order_id, &m.to_store)
            .await
            .map_err(IntakeError::Payment)?;
        self.deliver_to_store(&customer, &order, REROUTED).await?;
        self.hq.end_move(&m.order_id).await?;
        tracing::info!(order = %m.order_id, trace_id = %super::trace::trace_id(&m.order_id), from = %m.from_store, to = %m.to_store, "rerouted");
        Ok(())
    }

    /// Finishes every move a stopped cloud left half-way, or drops those whose first store
    /// was never asked to cancel. Says how many are still unfinished (a store's replica or a
    /// database could not be reached; the next resume tries again).
    pub async fn resume_moves(&self) -> Result<usize, IntakeError> {
        let mut left = 0;
        for m in self.hq.unfinished_moves().await? {
            match self.resume_move(&m).await {
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(order = %m.order_id, trace_id = %super::trace::trace_id(&m.order_id), %error, "move not finished yet");
                    left += 1;
                }
            }
        }
        Ok(left)
    }

    async fn resume_move(&self, m: &OrderMove) -> Result<(), IntakeError> {
        let from = self.stores.replica(&m.from_store).await?;
        let order_id = m.order_id.clone();
        let cancel: Option<(Option<String>, Option<String>)> = from
            .db()
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT cancel_requested_at, cancel_reason FROM orders WHERE id = ?1",
                )?
                .query_row([&order_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(flashkart_sync::Error::from)
            })
            .await?;
        let ours = cancel.is_some_and(|(at, reason)| {
            at.as_deref() == Some(m.requested_at.as_str())
                && reason.as_deref() == Some(m.cancel_reason.as_str())
        });
        if ours {
            tracing::info!(order = %m.order_id, trace_id = %super::trace::trace_id(&m.order_id), from = %m.from_store, to = %m.to_store, "finishing a move a stopped cloud began");
            self.finish_move(m).await
        } else {
            tracing::info!(order = %m.order_id, trace_id = %super::trace::trace_id(&m.order_id), from = %m.from_store, "a move that never reached its store: dropped");
            Ok(self.hq.end_move(&m.order_id).await?)
        }
    }
}

/// What came of moving an order to another store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Move {
    Moved,
    /// Its store has started on it (the status there).
    Started(String),
    /// A cancellation has been asked for already, or the order is being moved.
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
    /// (the move is recorded and finished by the next resume).
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

impl From<crate::CloudError> for RerouteRefused {
    fn from(error: crate::CloudError) -> Self {
        Self::Intake(error.into())
    }
}
