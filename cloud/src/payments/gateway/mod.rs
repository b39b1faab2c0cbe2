//! The payment gateway behind a small trait, so that a provider other than Stripe can follow.
//!
//! The payments service decides *what* happens to a customer's money (authorise at intake,
//! capture what was delivered, void, refund) and keeps every step durable; a [`Gateway`] only
//! says how to ask one provider for it over its wire API. Every call carries an idempotency key
//! the service stored before calling, and every call that may have reached the provider before
//! an answer was lost can be checked afterwards ([`Gateway::intent`], [`Gateway::refunds`],
//! [`Gateway::find_authorisation`]), so a retry after a crash never moves money twice even with
//! a provider (or stand-in) that ignores idempotency keys.

pub mod stripe;

use std::future::Future;
use std::pin::Pin;

/// What every gateway call returns.
pub type GatewayFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, GatewayError>> + Send + 'a>>;

/// Why a gateway call did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The card or its issuer said no: the customer must use another card (HTTP 402).
    #[error("card declined ({code}): {message}")]
    Declined { code: String, message: String },
    /// The provider refused the request as malformed or not allowed in the object's state
    /// (its 4xx other than a decline): retrying the same call cannot help.
    #[error("refused by the gateway ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The provider could not be reached or failed (timeouts, connection errors, 5xx, 429):
    /// the call may or may not have happened; retry later with the same idempotency key after
    /// checking what the provider holds.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
}

impl GatewayError {
    /// True when trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// An authorisation to ask for: hold `amount_minor` on the customer's card, capture later.
#[derive(Debug, Clone)]
pub struct AuthoriseRequest {
    /// Stored by the caller before the call; the same key for every retry of this request.
    pub idempotency_key: String,
    pub order_id: String,
    /// FlashKart's customer id (kept as metadata at the provider).
    pub customer_id: String,
    /// The provider's customer for this FlashKart customer ([`Gateway::create_customer`]).
    pub gateway_customer: String,
    /// The provider's reference to the card, made by the customer's app with the provider's
    /// client library (card numbers never pass through FlashKart).
    pub payment_method: String,
    pub amount_minor: i64,
    /// ISO 4217, upper case (`EUR`).
    pub currency: String,
}

/// A provider's payment: an authorisation that may be captured, voided or refunded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The provider's id (`pi_...`).
    pub id: String,
    /// The provider's customer the card was attached to.
    pub gateway_customer: Option<String>,
    pub status: IntentStatus,
    /// Authorised amount.
    pub amount_minor: i64,
    /// Captured amount (0 until captured).
    pub captured_minor: i64,
    pub currency: String,
}

/// Where a provider's payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentStatus {
    /// Authorised, waiting for capture.
    RequiresCapture,
    /// Captured (in full or in part).
    Succeeded,
    /// Voided before capture.
    Canceled,
    /// Anything else the provider reports (needs action, processing, failed).
    Other,
}

/// A refund the provider made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub amount_minor: i64,
    /// The idempotency key FlashKart gave it (kept as metadata at the provider).
    pub idempotency_key: Option<String>,
}

/// A provider's card setup a customer's browser completes with the card itself, so the card
/// never passes through FlashKart: the browser confirms it at the provider with the client
/// secret and the publishable key and gets back a payment method (`pm_...`) to order with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardSetup {
    /// The provider's id (`seti_...`).
    pub id: String,
    /// What the browser confirms the setup with (it can do nothing else).
    pub client_secret: String,
}

/// One payment provider.
pub trait Gateway: Send + Sync + std::fmt::Debug {
    /// Starts a card setup for a customer's browser to complete at the provider.
    fn card_setup<'a>(&'a self, idempotency_key: &'a str) -> GatewayFuture<'a, CardSetup>;

    /// Makes the provider's customer for a FlashKart customer (cards are attached to it);
    /// returns the provider's id (`cus_...`). The caller stores it and passes it in every
    /// [`AuthoriseRequest`] after.
    fn create_customer<'a>(
        &'a self,
        customer_id: &'a str,
        idempotency_key: &'a str,
    ) -> GatewayFuture<'a, String>;

    /// Authorises the amount on the card (manual capture). A declined card is
    /// [`GatewayError::Declined`].
    fn authorise<'a>(&'a self, request: &'a AuthoriseRequest) -> GatewayFuture<'a, Intent>;

    /// The authorisation made with this idempotency key for this order, if any reached the
    /// provider (the retry after a crash asks this first).
    fn find_authorisation<'a>(
        &'a self,
        request: &'a AuthoriseRequest,
    ) -> GatewayFuture<'a, Option<Intent>>;

    /// Captures `amount_minor` (at most what was authorised; the rest is released).
    fn capture<'a>(
        &'a self,
        intent_id: &'a str,
        amount_minor: i64,
        idempotency_key: &'a str,
    ) -> GatewayFuture<'a, Intent>;

    /// Voids an authorisation that was not captured.
    fn cancel<'a>(
        &'a self,
        intent_id: &'a str,
        idempotency_key: &'a str,
    ) -> GatewayFuture<'a, Intent>;

    /// Refunds `amount_minor` of a captured payment.
    fn refund<'a>(
        &'a self,
        intent_id: &'a str,
        amount_minor: i64,
        idempotency_key: &'a str,
    ) -> GatewayFuture<'a, Refund>;

    /// The payment as the provider holds it now.
    fn intent<'a>(&'a self, intent_id: &'a str) -> GatewayFuture<'a, Intent>;

    /// Every refund of the payment.
    fn refunds<'a>(&'a self, intent_id: &'a str) -> GatewayFuture<'a, Vec<Refund>>;
}
