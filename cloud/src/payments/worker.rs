//! The worker: settles delivered and cancelled orders, books cash hand-ins, and makes the
//! pending gateway calls (captures, voids, refunds), retrying with backoff while the provider
//! is down.
//!
//! It runs beside the order flow and never in it: a delivery is complete when the store says
//! so, whatever the provider does; a capture that cannot be made now stays a pending row (the
//! backlog on `/metrics`) and is made when the provider answers again. Before repeating a call
//! that may have reached the provider, the worker asks the provider what it holds, so a lost
//! answer is never a second capture or refund.
//!
//! With PostgreSQL every instance runs a worker over the same rows. Settling and booking are
//! safe to run twice (each locks the payment and moves it on once); a gateway call is claimed
//! before it is made (its next attempt moved a lease ahead in a `FOR UPDATE SKIP LOCKED`
//! statement), so two instances never make the same call at once, and one that dies while
//! making it leaves it due again when the lease ends, to be checked with the provider first.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;
use tokio_util::sync::CancellationToken;

use super::book::{self, Call};
use super::gateway::{GatewayError, IntentStatus};
use super::ledger::{self, Refunded};
use super::settle::{captured, pg_captured};
use super::{Backend, PaymentError, Payments};
use crate::clock::{now, now_rfc3339, rfc3339};
use crate::metrics::OpLabels;
use crate::projection::Projection;
use crate::stores::Stores;

/// Calls made per round, so one round cannot hold the loop for long.
const CALLS_PER_ROUND: usize = 32;

/// How often cash hand-ins are looked for (they are rare; orders settle on every projection).
const HANDIN_INTERVAL: Duration = Duration::from_secs(5);

/// What a gateway call came to.
enum Made {
    /// Done: the provider's object id and the amount it moved.
    Done { result: String, amount_minor: i64 },
    /// Will not succeed: why.
    Failed(String),
}

impl Payments {
    /// Runs until `shutdown`: wakes on every projection step, on [`Payments::wake`] and when
    /// the next retry is due.
    pub async fn run(
        self: Arc<Self>,
        stores: Arc<Stores>,
        projection: Projection,
        shutdown: CancellationToken,
    ) {
        let mut projected = projection.projected();
        let mut last_handins = tokio::time::Instant::now() - HANDIN_INTERVAL;
        loop {
            if let Err(error) = self.settle_orders(&stores, &projection).await {
                tracing::error!(%error, "settling orders");
            }
            if last_handins.elapsed() >= HANDIN_INTERVAL {
                last_handins = tokio::time::Instant::now();
                if let Err(error) = self.book_handins(&stores).await {
                    tracing::error!(%error, "booking cash hand-ins");
                }
            }
            if let Err(error) = self.make_due_calls(&shutdown).await {
                tracing::error!(%error, "gateway calls");
            }
            let wait = match self.until_next_call().await {
                Ok(wait) => wait.min(HANDIN_INTERVAL),
                Err(error) => {
                    tracing::error!(%error, "reading the gateway backlog");
                    HANDIN_INTERVAL
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = projected.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn until_next_call(&self) -> Result<Duration, PaymentError> {
        let (next, backlog) = match &self.backend {
            Backend::Sqlite(db) => {
                db.read(|conn| -> Result<_, PaymentError> {
                    Ok((book::next_due(conn)?, book::backlog(conn)?))
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let client = pg.client().await?;
                (
                    book::pg_next_due(&**client).await?,
                    book::pg_backlog(&**client).await?,
                )
            }
        };
        for op in ["capture", "cancel", "refund"] {
            let pending = backlog.iter().find(|(o, _)| o == op).map_or(0, |(_, n)| *n);
            self.metrics
                .payment_backlog
                .get_or_create(&OpLabels { op: op.to_owned() })
                .set(pending);
        }
        Ok(match next.as_deref().and_then(crate::clock::parse) {
            Some(at) => {
                let left = at - now();
                Duration::from_millis(u64::try_from(left.whole_milliseconds()).unwrap_or(0))
            }
            None => Duration::from_secs(3600),
        })
    }

    /// One round of pending gateway calls (what the worker does after settling). With
    /// PostgreSQL each call is claimed first ([`book::pg_claim_due_call`]), so instances
    /// sharing the rows never make the same call at once; public for their tests.
    #[doc(hidden)]
    pub async fn make_due_calls(&self, shutdown: &CancellationToken) -> Result<(), PaymentError> {
        let Some(gateway) = self.gateway.clone() else {
            return Ok(());
        };
        match &self.backend {
            Backend::Sqlite(db) => {
                let due = {
                    let at = now_rfc3339();
                    db.read(move |conn| -> Result<_, PaymentError> {
                        Ok(book::due_calls(conn, &at, CALLS_PER_ROUND)?)
                    })
                    .await?
                };
                for call in due {
                    if shutdown.is_cancelled() {
                        break;
                    }
                    self.make_call(&*gateway, call).await?;
                }
            }
            Backend::Postgres(pg) => {
                // One at a time, each claimed right before it is made, so a claim's lease
                // covers one call however slow the others of the round are.
                for _ in 0..CALLS_PER_ROUND {
                    if shutdown.is_cancelled() {
                        break;
                    }
                    let now = now();
                    let claimed = book::pg_claim_due_call(
                        &**pg.client().await?,
                        &rfc3339(now),
                        &rfc3339(now + super::CLAIM_LEASE),
                    )
                    .await?;
                    let Some(call) = claimed else {
                        break;
                    };
                    self.make_call(&*gateway, call).await?;
                }
            }
        }
        Ok(())
    }

    /// Makes one pending call and writes down what it came to.
    async fn make_call(
        &self,
        gateway: &dyn super::gateway::Gateway,
        call: Call,
    ) -> Result<(), PaymentError> {
        let order_id = call.order_id.clone();
        let payment = self
            .payment(&order_id)
            .await?
            .ok_or_else(|| PaymentError::NotFound(format!("no payment for {order_id}")))?;
        let Some(intent_id) = payment.intent_id.clone() else {
            self.finish_failed(&call, "no authorisation to act on")
                .await?;
            return Ok(());
        };
        let made = match call.op.as_str() {
            "capture" => self.make_capture(gateway, &intent_id, &call).await,
            "cancel" => self.make_cancel(gateway, &intent_id, &call).await,
            "refund" => self.make_refund(gateway, &intent_id, &call).await,
            other => Ok(Made::Failed(format!("unknown operation {other}"))),
        };
        match made {
            Ok(Made::Done {
                result,
                amount_minor,
            }) => {
                crate::faults::crash_point(&format!("after-gateway:{}", call.op));
                self.count(&call.op, "ok");
                self.finish_done(&call, &result, amount_minor).await?;
            }
            Ok(Made::Failed(message)) => {
                self.count(&call.op, "refused");
                tracing::error!(order_id, op = %call.op, %message, "gateway call failed; flagged for HQ");
                self.finish_failed(&call, &message).await?;
            }
            Err(GatewayError::Unavailable(message)) => {
                self.count(&call.op, "unavailable");
                self.retry_later(&call, &message).await?;
            }
            Err(error) => {
                self.count(&call.op, "refused");
                tracing::error!(order_id, op = %call.op, %error, "gateway refused a call; flagged for HQ");
                self.finish_failed(&call, &error.to_string()).await?;
            }
        }
        Ok(())
    }

    async fn make_capture(
        &self,
        gateway: &dyn super::gateway::Gateway,
        intent_id: &str,
        call: &Call,
    ) -> Result<Made, GatewayError> {
        let intent = gateway.intent(intent_id).await?;
        match intent.status {
            IntentStatus::Succeeded => Ok(Made::Done {
                result: intent.id,
                amount_minor: intent.captured_minor,
            }),
            IntentStatus::RequiresCapture => {
                let intent = gateway
                    .capture(intent_id, call.amount_minor, &call.idempotency_key)
                    .await?;
                Ok(Made::Done {
                    result: intent.id,
                    amount_minor: intent.captured_minor,
                })
            }
            IntentStatus::Canceled => Ok(Made::Failed(
                "the authorisation was voided or expired before the capture".into(),
            )),
            IntentStatus::Other => Err(GatewayError::Unavailable(format!(
                "payment {intent_id} is not ready to capture"
            ))),
        }
    }

    async fn make_cancel(
        &self,
        gateway: &dyn super::gateway::Gateway,
        intent_id: &str,
        call: &Call,
    ) -> Result<Made, GatewayError> {
        let intent = gateway.intent(intent_id).await?;
        match intent.status {
            IntentStatus::Canceled => Ok(Made::Done {
                result: intent.id,
                amount_minor: 0,
            }),
            IntentStatus::Succeeded => Ok(Made::Failed(
                "the payment was captured before it could be voided; refund it".into(),
            )),
            _ => {
                let intent = gateway.cancel(intent_id, &call.idempotency_key).await?;
                Ok(Made::Done {
                    result: intent.id,
                    amount_minor: 0,
                })
            }
        }
    }

    async fn make_refund(
        &self,
        gateway: &dyn super::gateway::Gateway,
        intent_id: &str,
        call: &Call,
    ) -> Result<Made, GatewayError> {
        // A refund made by an attempt whose answer was lost carries our key.
        let earlier = gateway.refunds(intent_id).await?;
        if let Some(refund) = earlier
            .into_iter()
            .find(|r| r.idempotency_key.as_deref() == Some(&call.idempotency_key))
        {
            return Ok(Made::Done {
                result: refund.id,
                amount_minor: refund.amount_minor,
            });
        }
        let refund = gateway
            .refund(intent_id, call.amount_minor, &call.idempotency_key)
            .await?;
        Ok(Made::Done {
            result: refund.id,
            amount_minor: refund.amount_minor,
        })
    }

    async fn retry_later(&self, call: &Call, message: &str) -> Result<(), PaymentError> {
        let exponent = u32::try_from(call.attempts.clamp(0, 20)).unwrap_or(20);
        let wait = self
            .config
            .retry_initial_ms
            .saturating_mul(1_u64 << exponent)
            .min(self.config.retry_max_ms);
        let next = rfc3339(now() + Duration::from_millis(wait));
        tracing::warn!(order_id = %call.order_id, op = %call.op, attempts = call.attempts + 1, retry_in_ms = wait, message, "gateway unavailable; will retry");
        self.call_attempted(
            call.idempotency_key.clone(),
            message.to_owned(),
            next,
            now_rfc3339(),
        )
        .await
    }

    async fn finish_failed(&self, call: &Call, message: &str) -> Result<(), PaymentError> {
        let (call, message, at) = (call.clone(), message.to_owned(), now_rfc3339());
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<(), PaymentError> {
                        book::call_finished(
                            conn,
                            &call.idempotency_key,
                            "failed",
                            None,
                            Some(&message),
                            &at,
                        )?;
                        let payment = book::payment(conn, &call.order_id)?;
                        if call.op != "refund" {
                            book::set_state(conn, &call.order_id, "failed", Some(&message), &at)?;
                        } else if let Some(payment) = &payment {
                            // The reserved amount is free again.
                            conn.prepare_cached(
                                "UPDATE payments SET refund_requested_minor = max(0, refund_requested_minor - ?2)
                                 WHERE order_id = ?1",
                            )?
                            .execute(params![payment.order_id, call.amount_minor])?;
                        }
                        book::raise_flag(
                            conn,
                            &book::Flag {
                                id: format!("call:{}", call.idempotency_key),
                                kind: format!("{}_failed", call.op),
                                order_id: Some(call.order_id.clone()),
                                store_id: payment.as_ref().map(|p| p.store_id.clone()),
                                rider_id: None,
                                currency: payment.as_ref().map(|p| p.currency.clone()),
                                expected_minor: Some(call.amount_minor),
                                actual_minor: None,
                                message,
                                at,
                            },
                        )?;
                        Ok(())
                    })
                    .await
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                pg_finish_failed(&tx, &call, message, at).await?;
                Ok(tx.commit().await?)
            }
        }
    }

    /// Writes a finished call with its effect on the payment and the ledger.
    async fn finish_done(
        &self,
        call: &Call,
        result: &str,
        amount_minor: i64,
    ) -> Result<(), PaymentError> {
        let (call, result, at) = (call.clone(), result.to_owned(), now_rfc3339());
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<(), PaymentError> {
                    let payment = book::payment(conn, &call.order_id)?.ok_or_else(|| {
                        PaymentError::NotFound(format!("no payment for {}", call.order_id))
                    })?;
                    finish_call(conn, &payment, &call, &result, amount_minor, &at)
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                // The payment and the call as they are now, locked: a webhook may have
                // finished the call while it was being made, and then this changes nothing.
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                let payment = book::pg_payment_for_update(&*tx, &call.order_id)
                    .await?
                    .ok_or_else(|| {
                        PaymentError::NotFound(format!("no payment for {}", call.order_id))
                    })?;
                let current = book::pg_call_for_update(&*tx, &call.idempotency_key)
                    .await?
                    .unwrap_or(call);
                pg_finish_call(&tx, &payment, &current, &result, amount_minor, &at).await?;
                tx.commit().await?;
            }
        }
        crate::notify::wake();
        Ok(())
    }
}

/// A call the provider carried out, from the worker or from a webhook: its effect on the
/// payment and the ledger, once.
pub(super) fn finish_call(
    conn: &rusqlite::Connection,
    payment: &book::Payment,
    call: &Call,
    result: &str,
    amount_minor: i64,
    at: &str,
) -> Result<(), PaymentError> {
    if call.state != "pending" {
        return Ok(());
    }
    match call.op.as_str() {
        "capture" => captured(
            conn,
            payment,
            &call.idempotency_key,
            result,
            amount_minor,
            at,
        ),
        "cancel" => {
            book::call_finished(conn, &call.idempotency_key, "done", Some(result), None, at)?;
            book::set_state(conn, &payment.order_id, "voided", None, at)?;
            Ok(())
        }
        "refund" => {
            book::call_finished(conn, &call.idempotency_key, "done", Some(result), None, at)?;
            let number = call
                .idempotency_key
                .rsplit(':')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(1);
            let transaction = ledger::refunded(&Refunded {
                order_id: &payment.order_id,
                refund_no: number,
                currency: &payment.currency,
                at,
                amount_minor,
            })?;
            ledger::post(conn, &transaction)?;
            conn.prepare_cached(
                "UPDATE payments SET refunded_minor = refunded_minor + ?2, updated_at = ?3
                 WHERE order_id = ?1",
            )?
            .execute(params![payment.order_id, amount_minor, at])?;
            // The customer hears of it from the transaction that books it (`notify`).
            crate::notify::enqueue(
                conn,
                &crate::notify::Notification {
                    kind: crate::notify::Kind::Refunded,
                    about: &call.idempotency_key,
                    order_id: Some(&payment.order_id),
                    customer_id: Some(&payment.customer_id),
                    payload: serde_json::json!({
                        "amount_minor": amount_minor,
                        "currency": payment.currency,
                    }),
                },
            )?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The write of [`Payments::finish_failed`] on PostgreSQL, in `tx`.
async fn pg_finish_failed(
    tx: &tokio_postgres::Transaction<'_>,
    call: &Call,
    message: String,
    at: String,
) -> Result<(), PaymentError> {
    book::pg_call_finished(
        tx,
        &call.idempotency_key,
        "failed",
        None,
        Some(&message),
        &at,
    )
    .await?;
    let payment = book::pg_payment_for_update(tx, &call.order_id).await?;
    if call.op != "refund" {
        book::pg_set_state(tx, &call.order_id, "failed", Some(&message), &at).await?;
    } else if let Some(payment) = &payment {
        // The reserved amount is free again.
        tx.execute(
            "UPDATE payments SET refund_requested_minor = GREATEST(0, refund_requested_minor - $2)
             WHERE order_id = $1",
            &[&payment.order_id, &call.amount_minor],
        )
        .await?;
    }
    book::pg_raise_flag(
        tx,
        &book::Flag {
            id: format!("call:{}", call.idempotency_key),
            kind: format!("{}_failed", call.op),
            order_id: Some(call.order_id.clone()),
            store_id: payment.as_ref().map(|p| p.store_id.clone()),
            rider_id: None,
            currency: payment.as_ref().map(|p| p.currency.clone()),
            expected_minor: Some(call.amount_minor),
            actual_minor: None,
            message,
            at,
        },
    )
    .await?;
    Ok(())
}

/// [`finish_call`] on PostgreSQL, in `tx`: the refund's notification goes into HQ's outbox
/// in the same transaction.
pub(super) async fn pg_finish_call(
    tx: &tokio_postgres::Transaction<'_>,
    payment: &book::Payment,
    call: &Call,
    result: &str,
    amount_minor: i64,
    at: &str,
) -> Result<(), PaymentError> {
    if call.state != "pending" {
        return Ok(());
    }
    match call.op.as_str() {
        "capture" => {
            pg_captured(tx, payment, &call.idempotency_key, result, amount_minor, at).await
        }
        "cancel" => {
            book::pg_call_finished(tx, &call.idempotency_key, "done", Some(result), None, at)
                .await?;
            book::pg_set_state(tx, &payment.order_id, "voided", None, at).await?;
            Ok(())
        }
        "refund" => {
            book::pg_call_finished(tx, &call.idempotency_key, "done", Some(result), None, at)
                .await?;
            let number = call
                .idempotency_key
                .rsplit(':')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(1);
            let transaction = ledger::refunded(&Refunded {
                order_id: &payment.order_id,
                refund_no: number,
                currency: &payment.currency,
                at,
                amount_minor,
            })?;
            ledger::pg_post(tx, &transaction).await?;
            tx.execute(
                "UPDATE payments SET refunded_minor = refunded_minor + $2, updated_at = $3
                 WHERE order_id = $1",
                &[&payment.order_id, &amount_minor, &at],
            )
            .await?;
            crate::notify::enqueue_postgres(
                tx,
                &crate::notify::Notification {
                    kind: crate::notify::Kind::Refunded,
                    about: &call.idempotency_key,
                    order_id: Some(&payment.order_id),
                    customer_id: Some(&payment.customer_id),
                    payload: serde_json::json!({
                        "amount_minor": amount_minor,
                        "currency": payment.currency,
                    }),
                },
            )
            .await?;
            Ok(())
        }
        _ => Ok(()),
    }
}
