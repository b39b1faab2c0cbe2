//! Payments: the money path of an order, from the card's authorisation at intake to the
//! capture of what was delivered, voids, refunds and cash on delivery, with every movement
//! booked in a double-entry ledger.
//!
//! The gateway (`gateway`) only speaks a provider's wire API; this service decides what to ask
//! for and keeps each step durable in `payments.db` (`book`), so a crash, a retry or a provider
//! that is down never moves money twice and never blocks an order:
//!
//! - intake authorises a card before the order reaches a store (`authorise`); a declined card
//!   is the customer's answer, with no order;
//! - when the read model shows an order delivered or cancelled (`settle`), what the store
//!   delivered is priced from its replica (`delivered`) and a capture, a void or, for cash,
//!   the rider's collection is recorded; the worker (`worker`) makes pending gateway calls,
//!   checking first what the provider already holds, and retries with backoff;
//! - webhooks (`webhook`, `events`) are verified and move a payment on when the provider
//!   reports first.
//!
//! Where the rows live ([`Backend`]): on one machine in `<data_dir>/payments.db` (SQLite, with
//! its own outbox for refund notifications); with `database_url` in the cloud's PostgreSQL
//! database (component `payments`: the same tables, money BIGINT), shared by every instance,
//! with refund notifications written into HQ's `notify_outbox` there, in the transaction that
//! books the refund. Each method matches on the engine: what is one `db.write` closure on
//! SQLite is one transaction on PostgreSQL, with the ledger's postings in the same
//! transaction as the payment's state change they book. Because instances share the rows,
//! the PostgreSQL branches lock the payment (`FOR UPDATE`) before deciding from its state, a
//! webhook event id is recorded once (`ON CONFLICT DO NOTHING`, the loser waiting for the
//! winner and then refused as a replay), and the worker claims each pending gateway call
//! (`FOR UPDATE SKIP LOCKED`, moving its next attempt a lease ahead) before making it, so two
//! instances never make the same call at once.

mod book;
mod delivered;
mod events;
pub mod gateway;
pub mod ledger;
mod settle;
pub mod webhook;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use flashkart_sync::{StoreConfig, StoreDb};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use book::{Flag, Payment};
use gateway::{AuthoriseRequest, CardSetup, Gateway, GatewayError, IntentStatus};
pub use ledger::Economics;

use crate::clock::now_rfc3339;
use crate::metrics::{GatewayCallLabels, Metrics};
use crate::postgres::Postgres;

/// Where and with which key a customer's browser registers a card at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardForm {
    pub provider: &'static str,
    pub api_base: String,
    pub publishable_key: String,
}

impl CardForm {
    /// The provider API's origin (`https://api.stripe.com`), which the customer app's page
    /// must be allowed to reach.
    pub fn origin(&self) -> Option<String> {
        let url = reqwest::Url::parse(&self.api_base).ok()?;
        matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
    }
}

/// How a customer pays for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentChoice {
    /// A card the customer's app registered with the provider's client library; only the
    /// provider's reference (`pm_...`) reaches FlashKart.
    Card { payment_method: String },
    /// Cash to the rider at the door.
    Cash,
}

impl PaymentChoice {
    pub fn method(&self) -> &'static str {
        match self {
            Self::Card { .. } => "card",
            Self::Cash => "cash",
        }
    }

    /// Refuses a malformed card reference before it reaches the provider.
    pub fn validate(&self) -> Result<(), String> {
        if let Self::Card { payment_method } = self {
            let ok = (1..=128).contains(&payment_method.len())
                && payment_method
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err("payment.payment_method must be 1-128 letters, digits or `_`".into());
            }
        }
        Ok(())
    }
}

/// What an order costs, as placed: the payment is made for this.
#[derive(Debug, Clone)]
pub struct OrderToPay {
    pub order_id: String,
    pub customer_id: String,
    pub store_id: String,
    pub currency: String,
    pub items_minor: i64,
    pub discount_minor: i64,
    pub delivery_fee_minor: i64,
    pub total_minor: i64,
}

/// `[payments]` in the cloud's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// The Stripe account; without it card orders are refused (503) and cash works.
    /// The secret key may come from `FLASHKART_STRIPE_SECRET_KEY` instead.
    pub stripe: Option<gateway::stripe::StripeConfig>,
    /// The webhook endpoint's signing secret (`whsec_...`); without it webhooks are refused.
    /// May come from `FLASHKART_STRIPE_WEBHOOK_SECRET` instead.
    pub webhook_secret: Option<gateway::stripe::Secret>,
    /// How old (or how far ahead) a webhook's signature timestamp may be.
    pub webhook_tolerance_s: i64,
    /// The first retry of a failed capture, void or refund; doubled per attempt.
    pub retry_initial_ms: u64,
    /// The longest wait between retries.
    pub retry_max_ms: u64,
    /// Attempts at an authorisation while the customer waits.
    pub authorise_attempts: u32,
    /// A payment whose order has not reached the read model this long after it was made was
    /// abandoned (intake stopped after the authorisation and the customer never retried):
    /// its authorisation is voided.
    pub abandoned_after_s: u64,
    /// The platform's commission and the rider's fee, for the ledger.
    pub economics: Economics,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            stripe: None,
            webhook_secret: None,
            webhook_tolerance_s: 300,
            retry_initial_ms: 1_000,
            retry_max_ms: 300_000,
            authorise_attempts: 3,
            abandoned_after_s: 900,
            economics: Economics::default(),
        }
    }
}

/// Why a payment step did not happen. Each maps to one HTTP status in `http/error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// 402: the customer must pay another way.
    #[error("payment declined: {0}")]
    Declined(String),
    /// 503: the provider is not configured or cannot be reached; nothing was charged.
    #[error("card payments are unavailable: {0}")]
    Unavailable(String),
    /// 422
    #[error("{0}")]
    Invalid(String),
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 400: a webhook that is not the provider's (signature, age, replay, shape).
    #[error("webhook refused: {0}")]
    Webhook(String),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error(transparent)]
    Store(#[from] flashkart_sync::Error),
    /// A replica or the read model could not be read (an internal failure, not bad input).
    #[error(transparent)]
    Cloud(#[from] crate::CloudError),
}

impl From<rusqlite::Error> for PaymentError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.into())
    }
}

impl From<tokio_postgres::Error> for PaymentError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Cloud(error.into())
    }
}

/// Where the payments' rows are. Every read and write of the service matches on it: the same
/// tables and the same questions on either engine.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `payments.db` in the data directory: one instance.
    Sqlite(StoreDb),
    /// The cloud's shared PostgreSQL database: any number of instances.
    Postgres(Postgres),
}

/// How long an instance holds a pending gateway call it claimed (PostgreSQL) before another
/// may make it: longer than the provider's requests for one call take, short enough that a
/// call left by an instance that died is made again soon.
const CLAIM_LEASE: Duration = Duration::from_secs(300);

/// The payments service.
#[derive(Debug)]
pub struct Payments {
    backend: Backend,
    gateway: Option<Arc<dyn Gateway>>,
    config: PaymentsConfig,
    metrics: Arc<Metrics>,
    /// Wakes the worker: a new pending call, or an order to settle.
    wake: Notify,
}

impl Payments {
    pub async fn open(
        mut store: StoreConfig,
        config: PaymentsConfig,
        gateway: Option<Arc<dyn Gateway>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PaymentError> {
        config.economics.validate()?;
        store.readers = 2;
        let db = StoreDb::open(store, book::MIGRATIONS).await?;
        Ok(Self::with(Backend::Sqlite(db), config, gateway, metrics))
    }

    /// Payments in the cloud's PostgreSQL database (their tables migrated first), shared by
    /// every instance. Needs HQ's tables there too: refund notifications go into HQ's
    /// `notify_outbox` in the transaction that books the refund.
    pub async fn open_postgres(
        postgres: Postgres,
        config: PaymentsConfig,
        gateway: Option<Arc<dyn Gateway>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PaymentError> {
        config.economics.validate()?;
        postgres.migrate("payments", book::PG_MIGRATIONS).await?;
        Ok(Self::with(
            Backend::Postgres(postgres),
            config,
            gateway,
            metrics,
        ))
    }

    fn with(
        backend: Backend,
        config: PaymentsConfig,
        gateway: Option<Arc<dyn Gateway>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            backend,
            gateway,
            config,
            metrics,
            wake: Notify::new(),
        }
    }

    /// Closes `payments.db`; the PostgreSQL pool is the cloud's, closed by its owner.
    pub async fn close(&self) -> Result<(), PaymentError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db.close().await?),
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Where the rows are (tests and operators inspect them).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The outbox of refund notifications for the sender to drain: `payments.db`'s own, or
    /// none on PostgreSQL, where they are written into HQ's outbox (drained as HQ's).
    pub fn outbox(&self) -> Option<crate::notify::Outbox> {
        match &self.backend {
            Backend::Sqlite(db) => Some(crate::notify::Outbox::Sqlite(db.clone())),
            Backend::Postgres(_) => None,
        }
    }

    pub fn economics(&self) -> &Economics {
        &self.config.economics
    }

    /// Where a customer's browser registers a card: the provider's API and publishable key;
    /// `None` unless a gateway and a publishable key are configured.
    pub fn card_form(&self) -> Option<CardForm> {
        let stripe = self.config.stripe.as_ref()?;
        if self.gateway.is_none() || stripe.publishable_key.is_empty() {
            return None;
        }
        Some(CardForm {
            provider: "stripe",
            api_base: stripe.api_base.trim_end_matches('/').to_owned(),
            publishable_key: stripe.publishable_key.clone(),
        })
    }

    /// Starts a card setup at the provider for a customer's browser to complete.
    pub async fn card_setup(&self, customer_id: &str) -> Result<CardSetup, PaymentError> {
        let Some(gateway) = self.gateway.clone().filter(|_| self.card_form().is_some()) else {
            return Err(PaymentError::Unavailable(
                "cards are not taken in the browser here; pay cash on delivery".into(),
            ));
        };
        // A fresh key per setup: each is a new card form, and one left unused costs nothing.
        let key = format!("setup:{customer_id}:{}", uuid::Uuid::now_v7());
        let setup = gateway.card_setup(&key).await;
        self.count("card_setup", if setup.is_ok() { "ok" } else { "error" });
        setup.map_err(|error| match error {
            GatewayError::Unavailable(m) => PaymentError::Unavailable(m),
            other => PaymentError::Unavailable(other.to_string()),
        })
    }

    fn count(&self, op: &str, result: &str) {
        self.metrics
            .gateway_calls
            .get_or_create(&GatewayCallLabels {
                op: op.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Takes payment for a new order before it reaches its store: records a cash order, or
    /// authorises the card (manual capture). Idempotent per order: a retried intake finds the
    /// authorisation made before (also when the answer was lost) instead of making another.
    pub async fn authorise(
        &self,
        order: &OrderToPay,
        choice: &PaymentChoice,
    ) -> Result<(), PaymentError> {
        choice.validate().map_err(PaymentError::Invalid)?;
        let at = now_rfc3339();
        let (state, payment_method) = match choice {
            PaymentChoice::Cash => ("cash_due", None),
            PaymentChoice::Card { payment_method } => ("authorising", Some(payment_method)),
        };
        if payment_method.is_some() && self.gateway.is_none() {
            return Err(PaymentError::Unavailable(
                "no payment gateway is configured; pay cash on delivery".into(),
            ));
        }
        let record = Payment {
            order_id: order.order_id.clone(),
            customer_id: order.customer_id.clone(),
            store_id: order.store_id.clone(),
            method: choice.method().to_owned(),
            currency: order.currency.clone(),
            items_minor: order.items_minor,
            discount_minor: order.discount_minor,
            delivery_fee_minor: order.delivery_fee_minor,
            total_minor: order.total_minor,
            payment_method: payment_method.cloned(),
            intent_id: None,
            state: state.to_owned(),
            delivered_minor: None,
            rider_id: None,
            captured_minor: 0,
            refund_requested_minor: 0,
            refunded_minor: 0,
            cash_collected_minor: None,
            note: None,
            created_at: String::new(),
        };
        let key = format!("authorise:{}", order.order_id);
        let stored = match &self.backend {
            Backend::Sqlite(db) => {
                let (record, key, at) = (record, key.clone(), at.clone());
                db.write(move |conn| -> Result<Payment, PaymentError> {
                    book::insert_payment(conn, &record, &at)?;
                    if record.method == "card" {
                        book::insert_call(
                            conn,
                            &key,
                            &record.order_id,
                            "authorise",
                            record.total_minor,
                            None,
                            &at,
                        )?;
                    }
                    book::payment(conn, &record.order_id)?
                        .ok_or_else(|| PaymentError::NotFound(record.order_id.clone()))
                })
                .await?
            }
            Backend::Postgres(pg) => {
                // A concurrent intake of the same order waits on the first insert and then
                // reads the payment it made.
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                book::pg_insert_payment(&*tx, &record, &at).await?;
                if record.method == "card" {
                    book::pg_insert_call(
                        &*tx,
                        &key,
                        &record.order_id,
                        "authorise",
                        record.total_minor,
                        None,
                        &at,
                    )
                    .await?;
                }
                let stored = book::pg_payment(&*tx, &record.order_id)
                    .await?
                    .ok_or_else(|| PaymentError::NotFound(record.order_id.clone()))?;
                tx.commit().await?;
                stored
            }
        };
        if stored.method != choice.method() {
            return Err(PaymentError::Conflict(format!(
                "order {} is paid by {}",
                order.order_id, stored.method
            )));
        }
        match stored.state.as_str() {
            "authorising" => {}
            "declined" => {
                return Err(PaymentError::Declined(
                    stored
                        .note
                        .unwrap_or_else(|| "the card was declined".into()),
                ));
            }
            "voiding" | "voided" | "failed" => {
                return Err(PaymentError::Conflict(format!(
                    "order {}: its payment lapsed ({}) before the order was confirmed; place the order again with a new Idempotency-Key",
                    order.order_id, stored.state
                )));
            }
            // Cash, or a card authorised by an earlier attempt.
            _ => return Ok(()),
        }
        let Some(gateway) = self.gateway.clone() else {
            return Err(PaymentError::Unavailable("no payment gateway".into()));
        };
        let payment_method = stored
            .payment_method
            .clone()
            .ok_or_else(|| PaymentError::Invalid("no card reference".into()))?;
        let gateway_customer = self.gateway_customer(&*gateway, &order.customer_id).await?;
        let request = AuthoriseRequest {
            idempotency_key: key.clone(),
            order_id: order.order_id.clone(),
            customer_id: order.customer_id.clone(),
            gateway_customer,
            payment_method,
            amount_minor: stored.total_minor,
            currency: stored.currency.clone(),
        };
        // Counted before the request goes out: a crash after the provider authorised and
        // before we wrote it down leaves a count, and the retry looks for that authorisation.
        let earlier_attempts = match &self.backend {
            Backend::Sqlite(db) => {
                let (key, at) = (key.clone(), now_rfc3339());
                db.write(move |conn| -> Result<i64, PaymentError> {
                    Ok(book::call_sending(conn, &key, &at)?)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                book::pg_call_sending(&**pg.client().await?, &key, &now_rfc3339()).await?
            }
        };
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            // An earlier attempt may have reached the provider without us hearing the answer.
            let found = if earlier_attempts > 0 || attempt > 1 {
                gateway.find_authorisation(&request).await
            } else {
                Ok(None)
            };
            let result = match found {
                Ok(Some(intent)) => Ok(intent),
                Ok(None) => gateway.authorise(&request).await,
                Err(error) => Err(error),
            };
            match result {
                Err(GatewayError::Unavailable(message))
                    if attempt < self.config.authorise_attempts.max(1) =>
                {
                    self.count("authorise", "unavailable");
                    tracing::warn!(order_id = %order.order_id, %message, attempt, "authorisation: gateway unavailable, retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt.min(4))).await;
                }
                other => break other,
            }
        };
        if outcome.is_ok() {
            crate::faults::crash_point("after-gateway:authorise");
        }
        let at = now_rfc3339();
        let order_id = order.order_id.clone();
        match outcome {
            Ok(intent) if intent.status == IntentStatus::RequiresCapture => {
                self.count("authorise", "ok");
                match &self.backend {
                    Backend::Sqlite(db) => {
                        db.write(move |conn| -> Result<(), PaymentError> {
                            book::call_finished(conn, &key, "done", Some(&intent.id), None, &at)?;
                            conn.prepare_cached(
                                "UPDATE payments SET state = 'authorised', intent_id = ?2,
                                 updated_at = ?3 WHERE order_id = ?1 AND state = 'authorising'",
                            )?
                            .execute(rusqlite::params![order_id, intent.id, at])?;
                            Ok(())
                        })
                        .await?;
                    }
                    Backend::Postgres(pg) => {
                        let mut client = pg.client().await?;
                        let tx = client.transaction().await?;
                        book::pg_call_finished(&*tx, &key, "done", Some(&intent.id), None, &at)
                            .await?;
                        tx.execute(
                            "UPDATE payments SET state = 'authorised', intent_id = $2,
                                 updated_at = $3 WHERE order_id = $1 AND state = 'authorising'",
                            &[&order_id, &intent.id, &at],
                        )
                        .await?;
                        tx.commit().await?;
                    }
                }
                Ok(())
            }
            Ok(intent) => {
                // Needs the customer's action (3-D Secure) or failed: not an authorisation.
                self.count("authorise", "declined");
                let message = format!(
                    "the card could not be authorised (payment {} is {:?}); use another card",
                    intent.id, intent.status
                );
                self.decline(key, order_id, message.clone(), at).await?;
                Err(PaymentError::Declined(message))
            }
            Err(GatewayError::Declined { code, message }) => {
                self.count("authorise", "declined");
                let message = format!("{message} ({code})");
                self.decline(key, order_id, message.clone(), at).await?;
                Err(PaymentError::Declined(message))
            }
            Err(GatewayError::Refused { message, .. }) => {
                self.count("authorise", "refused");
                let message = format!("the card was refused: {message}");
                self.decline(key, order_id, message.clone(), at).await?;
                Err(PaymentError::Declined(message))
            }
            Err(GatewayError::Unavailable(message)) => {
                self.count("authorise", "unavailable");
                let next = at.clone();
                self.call_attempted(key, message, next, at).await?;
                Err(PaymentError::Unavailable(
                    "the payment provider did not answer; nothing was charged, try again".into(),
                ))
            }
        }
    }

    async fn decline(
        &self,
        key: String,
        order_id: String,
        message: String,
        at: String,
    ) -> Result<(), PaymentError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<(), PaymentError> {
                    book::call_finished(conn, &key, "failed", None, Some(&message), &at)?;
                    book::set_state(conn, &order_id, "declined", Some(&message), &at)?;
                    Ok(())
                })
                .await
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                book::pg_call_finished(&*tx, &key, "failed", None, Some(&message), &at).await?;
                book::pg_set_state(&*tx, &order_id, "declined", Some(&message), &at).await?;
                Ok(tx.commit().await?)
            }
        }
    }

    /// A call that did not get through: counted, and tried again at `next`.
    async fn call_attempted(
        &self,
        key: String,
        message: String,
        next: String,
        at: String,
    ) -> Result<(), PaymentError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<(), PaymentError> {
                    Ok(book::call_attempted(conn, &key, &message, &next, &at)?)
                })
                .await
            }
            Backend::Postgres(pg) => {
                book::pg_call_attempted(&**pg.client().await?, &key, &message, &next, &at).await
            }
        }
    }

    /// The provider's customer kept for a FlashKart customer, if any.
    async fn known_gateway_customer(
        &self,
        customer_id: &str,
    ) -> Result<Option<String>, PaymentError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let id = customer_id.to_owned();
                db.read(move |conn| -> Result<_, PaymentError> {
                    Ok(book::gateway_customer(conn, &id)?)
                })
                .await
            }
            Backend::Postgres(pg) => {
                book::pg_gateway_customer(&**pg.client().await?, customer_id).await
            }
        }
    }

    /// The provider's customer for a FlashKart customer, made on first use.
    async fn gateway_customer(
        &self,
        gateway: &dyn Gateway,
        customer_id: &str,
    ) -> Result<String, PaymentError> {
        if let Some(known) = self.known_gateway_customer(customer_id).await? {
            return Ok(known);
        }
        let made = gateway
            .create_customer(customer_id, &format!("customer:{customer_id}"))
            .await
            .map_err(|e| match e {
                GatewayError::Unavailable(m) => PaymentError::Unavailable(m),
                other => PaymentError::Declined(other.to_string()),
            })?;
        let (id, at) = (customer_id.to_owned(), now_rfc3339());
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<String, PaymentError> {
                    book::keep_gateway_customer(conn, &id, &made, &at)?;
                    // A concurrent first order may have kept another; use the one kept.
                    book::gateway_customer(conn, &id)?
                        .ok_or_else(|| PaymentError::NotFound(format!("gateway customer of {id}")))
                })
                .await
            }
            Backend::Postgres(pg) => {
                // The insert waits for a concurrent one of the same customer; the read then
                // finds whichever was kept.
                let client = pg.client().await?;
                book::pg_keep_gateway_customer(&**client, &id, &made, &at).await?;
                book::pg_gateway_customer(&**client, &id)
                    .await?
                    .ok_or_else(|| PaymentError::NotFound(format!("gateway customer of {id}")))
            }
        }
    }

    /// An order's payment.
    pub async fn payment(&self, order_id: &str) -> Result<Option<Payment>, PaymentError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let id = order_id.to_owned();
                db.read(move |conn| -> Result<_, PaymentError> { Ok(book::payment(conn, &id)?) })
                    .await
            }
            Backend::Postgres(pg) => book::pg_payment(&**pg.client().await?, order_id).await,
        }
    }

    /// Refunds part or all of what was captured (HQ). Returns the refund's number.
    pub async fn refund(
        &self,
        order_id: &str,
        amount_minor: i64,
        reason: &str,
    ) -> Result<u32, PaymentError> {
        if !(1..=ledger::MAX_AMOUNT_MINOR).contains(&amount_minor) {
            return Err(PaymentError::Invalid(format!(
                "amount_minor must be 1..={}",
                ledger::MAX_AMOUNT_MINOR
            )));
        }
        let (id, reason, at) = (order_id.to_owned(), reason.to_owned(), now_rfc3339());
        let number = match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<u32, PaymentError> {
                    let payment = book::payment(conn, &id)?.ok_or_else(|| {
                        PaymentError::NotFound(format!("no payment for order {id}"))
                    })?;
                    request_refund(conn, &payment, amount_minor, &reason, &at)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                // The payment is locked: two refunds asked at once are numbered and reserved
                // one after the other.
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                let payment = book::pg_payment_for_update(&*tx, &id)
                    .await?
                    .ok_or_else(|| PaymentError::NotFound(format!("no payment for order {id}")))?;
                let number = pg_request_refund(&tx, &payment, amount_minor, &reason, &at).await?;
                tx.commit().await?;
                number
            }
        };
        self.wake.notify_one();
        Ok(number)
    }

    /// The order was rerouted: what it delivers is read from its new store.
    pub async fn moved(&self, order_id: &str, store_id: &str) -> Result<(), PaymentError> {
        let (id, store, at) = (order_id.to_owned(), store_id.to_owned(), now_rfc3339());
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<(), PaymentError> {
                    conn.prepare_cached(
                        "UPDATE payments SET store_id = ?2, updated_at = ?3 WHERE order_id = ?1",
                    )?
                    .execute(rusqlite::params![id, store, at])?;
                    Ok(())
                })
                .await
            }
            Backend::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute(
                        "UPDATE payments SET store_id = $2, updated_at = $3 WHERE order_id = $1",
                        &[&id, &store, &at],
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// What HQ must look at, newest first.
    pub async fn flags(&self, limit: usize) -> Result<Vec<Flag>, PaymentError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |conn| -> Result<_, PaymentError> { Ok(book::flags(conn, limit)?) })
                    .await
            }
            Backend::Postgres(pg) => book::pg_flags(&**pg.client().await?, limit).await,
        }
    }

    /// The ledger's trial balance per currency.
    pub async fn trial_balance(&self) -> Result<Vec<ledger::TrialLine>, PaymentError> {
        match &self.backend {
            Backend::Sqlite(db) => db.read(|conn| Ok(ledger::trial_balance(conn)?)).await,
            Backend::Postgres(pg) => Ok(ledger::pg_trial_balance(&**pg.client().await?).await?),
        }
    }

    /// Every account's balance in one currency (see [`ledger::balances`]).
    pub async fn balances(&self, currency: &str) -> Result<Vec<(String, i64)>, PaymentError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let currency = currency.to_owned();
                db.read(move |conn| Ok(ledger::balances(conn, &currency)?))
                    .await
            }
            Backend::Postgres(pg) => {
                Ok(ledger::pg_balances(&**pg.client().await?, currency).await?)
            }
        }
    }

    /// One account's statement for `[from, to)` (see [`ledger::statement`]).
    pub async fn statement(
        &self,
        account: &ledger::Account,
        currency: &str,
        from: &str,
        to: &str,
    ) -> Result<ledger::Statement, PaymentError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let (account, currency, from, to) = (
                    account.clone(),
                    currency.to_owned(),
                    from.to_owned(),
                    to.to_owned(),
                );
                db.read(move |conn| Ok(ledger::statement(conn, &account, &currency, &from, &to)?))
                    .await
            }
            Backend::Postgres(pg) => {
                Ok(
                    ledger::pg_statement(&**pg.client().await?, account, currency, from, to)
                        .await?,
                )
            }
        }
    }

    /// A rider's two statements for `[from, to)` (see [`ledger::rider_statements`]).
    pub async fn rider_statements(
        &self,
        rider_id: &str,
        currency: &str,
        from: &str,
        to: &str,
    ) -> Result<ledger::RiderStatements, PaymentError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let (id, currency, from, to) = (
                    rider_id.to_owned(),
                    currency.to_owned(),
                    from.to_owned(),
                    to.to_owned(),
                );
                db.read(move |conn| Ok(ledger::rider_statements(conn, &id, &currency, &from, &to)?))
                    .await
            }
            Backend::Postgres(pg) => Ok(ledger::pg_rider_statements(
                &**pg.client().await?,
                rider_id,
                currency,
                from,
                to,
            )
            .await?),
        }
    }

    /// Wakes the worker (a new pending call or an order to settle).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Reserves a refund of a captured payment and records its gateway call.
fn request_refund(
    conn: &rusqlite::Connection,
    payment: &Payment,
    amount_minor: i64,
    reason: &str,
    at: &str,
) -> Result<u32, PaymentError> {
    if payment.method != "card" || payment.state != "captured" {
        return Err(PaymentError::Conflict(format!(
            "order {}: only a captured card payment can be refunded (it is {} {})",
            payment.order_id, payment.method, payment.state
        )));
    }
    let left = payment
        .captured_minor
        .checked_sub(payment.refund_requested_minor)
        .ok_or_else(|| PaymentError::Invalid("refund overflow".into()))?;
    if amount_minor > left {
        return Err(PaymentError::Invalid(format!(
            "order {}: {amount_minor} is more than the {left} {} left to refund",
            payment.order_id, payment.currency
        )));
    }
    let number = book::count_calls(conn, &payment.order_id, "refund")?
        .checked_add(1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| PaymentError::Invalid("too many refunds".into()))?;
    book::insert_call(
        conn,
        &format!("refund:{}:{number}", payment.order_id),
        &payment.order_id,
        "refund",
        amount_minor,
        Some(reason),
        at,
    )?;
    conn.prepare_cached(
        "UPDATE payments SET refund_requested_minor = refund_requested_minor + ?2, updated_at = ?3
         WHERE order_id = ?1",
    )?
    .execute(rusqlite::params![payment.order_id, amount_minor, at])?;
    Ok(number)
}

/// [`request_refund`] on PostgreSQL, in the transaction that locked `payment`.
async fn pg_request_refund(
    tx: &tokio_postgres::Transaction<'_>,
    payment: &Payment,
    amount_minor: i64,
    reason: &str,
    at: &str,
) -> Result<u32, PaymentError> {
    if payment.method != "card" || payment.state != "captured" {
        return Err(PaymentError::Conflict(format!(
            "order {}: only a captured card payment can be refunded (it is {} {})",
            payment.order_id, payment.method, payment.state
        )));
    }
    let left = payment
        .captured_minor
        .checked_sub(payment.refund_requested_minor)
        .ok_or_else(|| PaymentError::Invalid("refund overflow".into()))?;
    if amount_minor > left {
        return Err(PaymentError::Invalid(format!(
            "order {}: {amount_minor} is more than the {left} {} left to refund",
            payment.order_id, payment.currency
        )));
    }
    let number = book::pg_count_calls(tx, &payment.order_id, "refund")
        .await?
        .checked_add(1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| PaymentError::Invalid("too many refunds".into()))?;
    book::pg_insert_call(
        tx,
        &format!("refund:{}:{number}", payment.order_id),
        &payment.order_id,
        "refund",
        amount_minor,
        Some(reason),
        at,
    )
    .await?;
    tx.execute(
        "UPDATE payments SET refund_requested_minor = refund_requested_minor + $2, updated_at = $3
         WHERE order_id = $1",
        &[&payment.order_id, &amount_minor, &at],
    )
    .await?;
    Ok(number)
}
