//! Order intake: validate, price, route, and write the order into the chosen store's replica.
//!
//! The order is durable in three steps, each idempotent, so a crash or a retried request never
//! makes two orders: first the decision (order id, store, priced order) is recorded under the
//! customer's idempotency key in HQ's database; then the order rows are written into the
//! store's replica (the store's long-poll wakes and pulls them within a round trip); then the
//! read model records it. A retry with the same key finds the decision and redoes the later
//! steps with the same id and store, which change nothing the second time. Concurrent requests
//! with one key are serialised in memory, so the second waits and gets the first one's answer.
//!
//! After routing, the store reserves stock and may report lines short. [`Intake::on_short`]
//! decides: an order whose every line is short at a store that has not started picking is
//! rerouted to another store that has everything; otherwise the order is confirmed partial
//! (payments refund the short lines).
//!
//! The parts: idempotency is here (a key is decided once), `decide` validates, prices and
//! routes without writing, `rows` writes and reads the order rows of a replica, `reroute`
//! handles short reports, `liveness` tracks which stores are online, and `trace` gives each
//! order the trace id its log lines carry (the order id, see there why).

mod cancel;
mod decide;
mod liveness;
mod reroute;
mod rows;
pub mod trace;

pub use cancel::{CancelAnswer, Canceller};
pub use decide::Quote;
pub use liveness::{InFlight, Liveness};
pub use reroute::RerouteRefused;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::CloudError;
use crate::config::IntakeConfig;
use crate::hq::{Hq, Placed};
use crate::payments::{OrderToPay, PaymentChoice, PaymentError, Payments};
use crate::projection::Projection;
use crate::registry::hex;
use crate::routing::NoStore;
use crate::store_writes::StoreWrites;
use crate::stores::Stores;

/// A transition the cloud makes itself: (from, to, note).
type Step = (Option<&'static str>, &'static str, &'static str);

/// A new order paid by card: placed, the card authorised, routed.
const PLACED_CARD: &[Step] = &[
    (None, "PENDING", "placed"),
    (Some("PENDING"), "CONFIRMED", "payment authorised"),
    (Some("CONFIRMED"), "ROUTED", "routed"),
];

/// A new order paid in cash at the door: placed, confirmed, routed.
const PLACED_CASH: &[Step] = &[
    (None, "PENDING", "placed"),
    (Some("PENDING"), "CONFIRMED", "cash on delivery"),
    (Some("CONFIRMED"), "ROUTED", "routed"),
];

/// An order moved to another store.
const REROUTED: &[Step] = &[(Some("ROUTED"), "ROUTED", "rerouted")];

/// Why an order was not taken. Each maps to one HTTP status in `http/error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{0}")]
    Invalid(String),
    #[error("idempotency key already used for a different order")]
    KeyReused,
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error(transparent)]
    NoStore(#[from] NoStore),
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

impl From<flashkart_sync::Error> for IntakeError {
    fn from(error: flashkart_sync::Error) -> Self {
        Self::Cloud(error.into())
    }
}

/// `POST /api/v1/orders`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    pub address: Address,
    pub lines: Vec<LineRequest>,
    /// Card (authorised now, captured at delivery for what was delivered) or cash.
    pub payment: PaymentChoice,
    #[serde(default)]
    pub coupon: Option<String>,
    #[serde(default)]
    pub delivery_slot: Option<String>,
    /// Delivered with a photo at the door instead of the customer's PIN.
    #[serde(default)]
    pub contactless: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub text: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub product_id: String,
    pub qty: i64,
}

/// The priced, routed order: the answer to the customer, and what is remembered under the key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlacedOrder {
    pub order_id: String,
    pub store_id: String,
    pub status: String,
    pub placed_at: String,
    pub promised_at: String,
    pub eta_minutes: u32,
    pub currency: String,
    pub lines: Vec<PricedLine>,
    pub items_minor: i64,
    pub discount_minor: i64,
    pub delivery_fee_minor: i64,
    pub surge_factor: f64,
    pub total_minor: i64,
    pub customer_first_name: String,
    pub address: String,
    pub lat: f64,
    pub lon: f64,
    pub delivery_slot: Option<String>,
    #[serde(default)]
    pub contactless: bool,
    /// `card` or `cash`.
    pub payment_method: String,
    /// The 4 digits the customer tells the rider at the door (none for a contactless order).
    /// The cloud keeps it; the store gets only `sha256(order_id ':' pin)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_pin: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PricedLine {
    pub line_no: i64,
    pub product_id: String,
    pub qty: i64,
    pub unit_price_minor: i64,
    pub line_minor: i64,
}

/// A customer, authenticated by the HTTP layer.
#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub first_name: String,
}
/// Order intake and its collaborators.
#[derive(Debug)]
pub struct Intake {
    config: IntakeConfig,
    hq: Hq,
    projection: Projection,
    stores: Arc<Stores>,
    /// The order rows go to the store's replica through these.
    writes: Arc<StoreWrites>,
    payments: Arc<Payments>,
    pub liveness: Liveness,
    /// One lock per idempotency key being placed.
    placing: Mutex<HashMap<(String, String), KeyLock>>,
}

/// The lock of one (customer, idempotency key) being placed.
type KeyLock = Arc<tokio::sync::Mutex<()>>;

/// An order line at the store: line number, product, quantity, pieces short.
type ReplicaLine = (i64, String, i64, i64);

impl Intake {
    pub fn new(
        config: IntakeConfig,
        hq: Hq,
        projection: Projection,
        stores: Arc<Stores>,
        writes: Arc<StoreWrites>,
        payments: Arc<Payments>,
    ) -> Self {
        Self {
            config,
            hq,
            projection,
            stores,
            writes,
            payments,
            liveness: Liveness::default(),
            placing: Mutex::new(HashMap::new()),
        }
    }

    /// Places an order; `Ok((order, replayed))`, `replayed` when the key had been used already.
    pub async fn place(
        &self,
        customer: &Customer,
        key: &str,
        request: OrderRequest,
    ) -> Result<(PlacedOrder, bool), IntakeError> {
        if key.is_empty() || key.len() > 128 || !key.chars().all(|c| c.is_ascii_graphic()) {
            return Err(IntakeError::Invalid(
                "Idempotency-Key must be 1-128 printable ASCII characters".into(),
            ));
        }
        let request_sha256 = {
            let canonical =
                serde_json::to_vec(&request).map_err(|e| IntakeError::Invalid(e.to_string()))?;
            hex(&Sha256::digest(canonical))
        };
        let lock = {
            let mut placing = self
                .placing
                .lock()
                .map_err(|_| IntakeError::Invalid("intake is shutting down".into()))?;
            placing
                .entry((customer.id.clone(), key.to_owned()))
                .or_default()
                .clone()
        };
        let result = {
            let _held = lock.lock().await;
            self.place_once(customer, key, &request_sha256, request)
                .await
        };
        if let Ok(mut placing) = self.placing.lock() {
            // The last holder removes the entry (the map holds one reference, we hold one).
            let map_key = (customer.id.clone(), key.to_owned());
            if placing
                .get(&map_key)
                .is_some_and(|l| Arc::strong_count(l) <= 2)
            {
                placing.remove(&map_key);
            }
        }
        result
    }

    async fn place_once(
        &self,
        customer: &Customer,
        key: &str,
        request_sha256: &str,
        request: OrderRequest,
    ) -> Result<(PlacedOrder, bool), IntakeError> {
        if let Some(earlier) = self.hq.placed(&customer.id, key).await? {
            return self
                .replay(customer, request_sha256, earlier, &request.payment)
                .await;
        }
        request.payment.validate().map_err(IntakeError::Invalid)?;
        let payment = request.payment.clone();
        let order = self.decide(customer, request).await?;
        let span = order_span(&order.order_id, &order.store_id);
        let placed = Placed {
            request_sha256: request_sha256.to_owned(),
            order_id: order.order_id.clone(),
            store_id: order.store_id.clone(),
            placed: serde_json::to_string(&order)
                .map_err(|e| IntakeError::Invalid(e.to_string()))?,
        };
        let kept = self.hq.remember(&customer.id, key, placed).await?;
        if kept.order_id != order.order_id {
            return self.replay(customer, request_sha256, kept, &payment).await;
        }
        async {
            tracing::info!(
                customer_id = %customer.id,
                lines = order.lines.len(),
                total_minor = order.total_minor,
                currency = %order.currency,
                payment = %order.payment_method,
                "order placed and routed"
            );
            self.pay_and_deliver(customer, &order, &payment).await
        }
        .instrument(span)
        .await?;
        Ok((order, false))
    }

    /// Takes payment, then writes the order to its store: a declined card writes no order.
    async fn pay_and_deliver(
        &self,
        customer: &Customer,
        order: &PlacedOrder,
        payment: &PaymentChoice,
    ) -> Result<(), IntakeError> {
        self.payments
            .authorise(
                &OrderToPay {
                    order_id: order.order_id.clone(),
                    customer_id: customer.id.clone(),
                    store_id: order.store_id.clone(),
                    currency: order.currency.clone(),
                    items_minor: order.items_minor,
                    discount_minor: order.discount_minor,
                    delivery_fee_minor: order.delivery_fee_minor,
                    total_minor: order.total_minor,
                },
                payment,
            )
            .await?;
        let steps = match payment {
            PaymentChoice::Card { .. } => PLACED_CARD,
            PaymentChoice::Cash => PLACED_CASH,
        };
        self.deliver_to_store(customer, order, steps).await
    }

    async fn replay(
        &self,
        customer: &Customer,
        request_sha256: &str,
        earlier: Placed,
        payment: &PaymentChoice,
    ) -> Result<(PlacedOrder, bool), IntakeError> {
        if earlier.request_sha256 != request_sha256 {
            return Err(IntakeError::KeyReused);
        }
        let order: PlacedOrder = serde_json::from_str(&earlier.placed)
            .map_err(|e| CloudError::Corrupt(format!("idempotency record: {e}")))?;
        // The first attempt may have stopped before the payment, the store or the read model
        // had it; a declined card is declined again.
        async {
            tracing::info!("order placed again under its idempotency key: replayed");
            self.pay_and_deliver(customer, &order, payment).await
        }
        .instrument(order_span(&order.order_id, &order.store_id))
        .await?;
        Ok((order, true))
    }
}

/// The span every log line about an order's journey through the cloud runs in: the order, its
/// trace id ([`trace::trace_id`]) and the store it is routed to.
pub(crate) fn order_span(order_id: &str, store_id: &str) -> tracing::Span {
    tracing::info_span!(
        "order",
        order_id = %order_id,
        trace_id = %trace::trace_id(order_id),
        store_id = %store_id
    )
}
