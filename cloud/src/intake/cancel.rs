//! Cancelling an order: the customer before picking starts, HQ until the rider has it; after
//! delivery HQ's cancellation is a full refund.
//!
//! The store is the truth for its orders, so the cloud only asks (`cancel_requested_at` in the
//! store's replica); the store honours it on its next pull (releasing reservations and putting
//! picked items back) unless the rider left with the order meanwhile, and its CANCELLED event
//! coming back through the projection is what voids the card's authorisation. A request is
//! idempotent: asking twice asks once.

use serde::Serialize;

use super::{Intake, IntakeError};
use crate::payments::PaymentError;
use crate::store_writes::StoreWrite;

/// Who asks for a cancellation.
#[derive(Debug, Clone)]
pub enum Canceller {
    /// The customer who placed the order.
    Customer(String),
    /// HQ (support, operations).
    Hq,
}

/// The answer to a cancellation request.
#[derive(Debug, Clone, Serialize)]
pub struct CancelAnswer {
    pub order_id: String,
    /// `cancel_requested` (the store will cancel it), `cancelled` (it was already), or
    /// `refund_requested` (delivered: the whole capture is being refunded).
    pub outcome: &'static str,
    pub status: String,
    pub reason: String,
}

/// Statuses a customer may cancel from: nothing has been picked yet.
const CUSTOMER_MAY_CANCEL: &[&str] = &["PENDING", "CONFIRMED", "ROUTED", "ACCEPTED"];

/// Statuses HQ may cancel from: the rider does not have it yet.
const HQ_MAY_CANCEL: &[&str] = &[
    "PENDING",
    "CONFIRMED",
    "ROUTED",
    "ACCEPTED",
    "PICKING",
    "PACKED",
    "READY",
    "ASSIGNED",
];

impl Intake {
    /// Asks for an order's cancellation; see the module's rules.
    pub async fn cancel(
        &self,
        order_id: &str,
        by: Canceller,
        reason: Option<String>,
    ) -> Result<CancelAnswer, IntakeError> {
        let view = self
            .projection
            .order(order_id)
            .await?
            .filter(|o| match &by {
                Canceller::Hq => true,
                Canceller::Customer(id) => o.customer_id.as_deref() == Some(id),
            })
            .ok_or_else(|| {
                IntakeError::Payment(PaymentError::NotFound(format!("no order {order_id}")))
            })?;
        let reason = match (&by, reason) {
            (_, Some(reason)) => reason,
            (Canceller::Customer(_), None) => "cancelled by the customer".to_owned(),
            (Canceller::Hq, None) => {
                return Err(IntakeError::Invalid(
                    "HQ must give a reason to cancel an order".into(),
                ));
            }
        };
        let status = view.status.clone();
        let answer = |outcome| CancelAnswer {
            order_id: view.id.clone(),
            outcome,
            status: status.clone(),
            reason: reason.clone(),
        };
        if status == "CANCELLED" {
            return Ok(answer("cancelled"));
        }
        let allowed = match by {
            Canceller::Customer(_) => CUSTOMER_MAY_CANCEL,
            Canceller::Hq => HQ_MAY_CANCEL,
        };
        if allowed.contains(&status.as_str()) {
            self.writes
                .write(
                    &view.store_id,
                    vec![StoreWrite::CancelRequest {
                        order_id: view.id.clone(),
                        at: crate::clock::now_rfc3339(),
                        reason: reason.clone(),
                    }],
                )
                .await?;
            let who = match &by {
                Canceller::Customer(_) => "the customer",
                Canceller::Hq => "HQ",
            };
            self.projection
                .note(
                    &view.id,
                    &view.store_id,
                    "CANCEL_REQUESTED",
                    format!("{who}: {reason}"),
                    None,
                )
                .await?;
            tracing::info!(order_id = %view.id, trace_id = %super::trace::trace_id(&view.id), store_id = %view.store_id, who, "cancellation requested");
            return Ok(answer("cancel_requested"));
        }
        if matches!(by, Canceller::Hq) && matches!(status.as_str(), "DELIVERED" | "CLOSED") {
            let payment = self.payments.payment(&view.id).await?.ok_or_else(|| {
                PaymentError::Conflict(format!("order {} has no payment to refund", view.id))
            })?;
            let left = payment
                .captured_minor
                .checked_sub(payment.refund_requested_minor)
                .unwrap_or(0);
            if left > 0 {
                self.payments.refund(&view.id, left, &reason).await?;
            } else if payment.state != "captured" {
                return Err(PaymentError::Conflict(format!(
                    "order {}: the payment is {} {}; refund it once captured",
                    view.id, payment.method, payment.state
                ))
                .into());
            }
            self.projection
                .note(
                    &view.id,
                    &view.store_id,
                    "REFUNDED",
                    format!("HQ: {reason}"),
                    None,
                )
                .await?;
            return Ok(answer("refund_requested"));
        }
        Err(PaymentError::Conflict(format!(
            "order {} is {status}: {} cannot cancel it now",
            view.id,
            match by {
                Canceller::Customer(_) => "the customer (picking has started)",
                Canceller::Hq => "HQ (the rider has it)",
            }
        ))
        .into())
    }
}
