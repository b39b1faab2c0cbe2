//! The provider's webhook events: verified, recorded once, and applied to the payment they
//! are about.
//!
//! An event is believed only with a valid signature made within the tolerance, only once (its
//! id is recorded in the same transaction as its effect, so a replay is refused and a crash
//! leaves it unrecorded for the provider's redelivery), and only when its amounts and currency
//! fit the payment; anything else is refused with nothing written. The worker checks the
//! provider itself before every retry, so events only make a payment move on sooner.

use super::book::{self, Payment};
use super::webhook::{self, Event};
use super::worker::{finish_call, pg_finish_call};
use super::{Backend, PaymentError, Payments};
use crate::clock::{now, now_rfc3339};

/// What became of a webhook event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Received {
    pub event_id: String,
    pub kind: String,
    /// True when it moved a payment on.
    pub applied: bool,
}

impl Payments {
    /// Verifies and applies one webhook delivery (`Stripe-Signature` header, raw body).
    pub async fn webhook(&self, signature: &str, body: &[u8]) -> Result<Received, PaymentError> {
        let refused = |message: String| {
            self.metrics.webhooks_refused.inc();
            PaymentError::Webhook(message)
        };
        let Some(secret) = self.config.webhook_secret.as_ref() else {
            return Err(refused("no webhook secret is configured".into()));
        };
        webhook::verify(
            signature,
            body,
            secret.expose(),
            now().unix_timestamp(),
            self.config.webhook_tolerance_s,
        )
        .map_err(|e| refused(e.to_string()))?;
        let event = Event::parse(body).map_err(|e| refused(e.to_string()))?;
        let at = now_rfc3339();
        let outcome = match &self.backend {
            Backend::Sqlite(db) => {
                let event = event.clone();
                db.write(move |conn| -> Result<Result<bool, String>, PaymentError> {
                    let payment = book::payment_by_intent(conn, &event.object_id)?;
                    if let Some(payment) = &payment
                        && let Err(message) = fits(&event, payment)
                    {
                        return Ok(Err(message));
                    }
                    if !book::record_event(conn, &event.id, &event.kind, &event.object_id, &at)? {
                        return Ok(Err(format!("event {} was received before", event.id)));
                    }
                    let Some(payment) = payment else {
                        return Ok(Ok(false));
                    };
                    apply(conn, &event, &payment, &at).map(Ok)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                // One transaction with the payment locked: the event is recorded once (a
                // concurrent delivery of it waits for this one, then finds it recorded) and
                // only with its effect; a refusal rolls back, leaving nothing recorded.
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                let payment = book::pg_payment_by_intent_for_update(&*tx, &event.object_id).await?;
                let outcome = if let Some(payment) = &payment
                    && let Err(message) = fits(&event, payment)
                {
                    Err(message)
                } else if !book::pg_record_event(
                    &*tx,
                    &event.id,
                    &event.kind,
                    &event.object_id,
                    &at,
                )
                .await?
                {
                    Err(format!("event {} was received before", event.id))
                } else if let Some(payment) = payment {
                    Ok(pg_apply(&tx, &event, &payment, &at).await?)
                } else {
                    Ok(false)
                };
                if outcome.is_ok() {
                    tx.commit().await?;
                }
                outcome
            }
        };
        match outcome {
            Ok(applied) => {
                if applied {
                    self.wake.notify_one();
                    crate::notify::wake();
                }
                Ok(Received {
                    event_id: event.id,
                    kind: event.kind,
                    applied,
                })
            }
            Err(message) => Err(refused(message)),
        }
    }
}

/// The event's amounts and currency must be the payment's.
fn fits(event: &Event, payment: &Payment) -> Result<(), String> {
    let object = &event.object;
    if let Some(currency) = object.get("currency") {
        let currency = currency.as_str().unwrap_or_default();
        if !currency.eq_ignore_ascii_case(&payment.currency) {
            return Err(format!(
                "event {}: currency {currency:?} is not the payment's {}",
                event.id, payment.currency
            ));
        }
    }
    for field in ["amount", "amount_received", "amount_capturable"] {
        if let Some(value) = object.get(field) {
            let amount = value
                .as_i64()
                .filter(|a| (0..=payment.total_minor).contains(a));
            if amount.is_none() {
                return Err(format!(
                    "event {}: {field} {value} does not fit the payment of {} {}",
                    event.id, payment.total_minor, payment.currency
                ));
            }
        }
    }
    Ok(())
}

/// What an event asks of a payment, decided alike on both engines.
enum Outcome {
    /// The event reports what the pending call `op` asked for, for `amount`.
    Finish { op: &'static str, amount: i64 },
    /// The provider reports a failure HQ must look at.
    Flag(book::Flag),
    /// Nothing to do (an event for a state the payment is not in, or not one we act on).
    Ignore,
}

fn outcome(event: &Event, payment: &Payment, at: &str) -> Outcome {
    let (op, amount) = match event.kind.as_str() {
        "payment_intent.succeeded" if payment.state == "capturing" => (
            "capture",
            event
                .object
                .get("amount_received")
                .and_then(serde_json::Value::as_i64),
        ),
        "payment_intent.canceled" if payment.state == "voiding" => ("cancel", Some(0)),
        "payment_intent.payment_failed" => {
            return Outcome::Flag(book::Flag {
                id: format!("event:{}", event.id),
                kind: "payment_failed".into(),
                order_id: Some(payment.order_id.clone()),
                store_id: Some(payment.store_id.clone()),
                rider_id: None,
                currency: Some(payment.currency.clone()),
                expected_minor: Some(payment.total_minor),
                actual_minor: None,
                message: format!("the provider reports payment {} failed", event.object_id),
                at: at.to_owned(),
            });
        }
        _ => return Outcome::Ignore,
    };
    match amount {
        Some(amount) => Outcome::Finish { op, amount },
        None => Outcome::Ignore,
    }
}

/// Moves the payment on when the event reports what a pending call asked for.
fn apply(
    conn: &rusqlite::Connection,
    event: &Event,
    payment: &Payment,
    at: &str,
) -> Result<bool, PaymentError> {
    match outcome(event, payment, at) {
        Outcome::Ignore => Ok(false),
        Outcome::Flag(flag) => {
            book::raise_flag(conn, &flag)?;
            Ok(false)
        }
        Outcome::Finish { op, amount } => {
            let Some(call) = book::call(conn, &format!("{op}:{}", payment.order_id))? else {
                return Ok(false);
            };
            finish_call(conn, payment, &call, &event.object_id, amount, at)?;
            Ok(true)
        }
    }
}

/// [`apply`] on PostgreSQL, in the transaction that locked `payment`.
async fn pg_apply(
    tx: &tokio_postgres::Transaction<'_>,
    event: &Event,
    payment: &Payment,
    at: &str,
) -> Result<bool, PaymentError> {
    match outcome(event, payment, at) {
        Outcome::Ignore => Ok(false),
        Outcome::Flag(flag) => {
            book::pg_raise_flag(tx, &flag).await?;
            Ok(false)
        }
        Outcome::Finish { op, amount } => {
            let Some(call) =
                book::pg_call_for_update(tx, &format!("{op}:{}", payment.order_id)).await?
            else {
                return Ok(false);
            };
            pg_finish_call(tx, payment, &call, &event.object_id, amount, at).await?;
            Ok(true)
        }
    }
}
