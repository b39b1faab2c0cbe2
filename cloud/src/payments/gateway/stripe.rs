//! [`Gateway`] over Stripe's HTTP API (and over localstripe, the stand-in the tests run).
//!
//! Stripe's wire format: form-encoded requests (nested keys such as `metadata[order_id]`),
//! `Authorization: Bearer <secret key>`, JSON answers, and errors as
//! `{"error": {"type", "code", "decline_code", "message"}}`. Every POST carries an
//! `Idempotency-Key`, so a retry of a call whose answer was lost is answered with the first
//! result instead of moving money again. Each call is one attempt: the payments service owns
//! retries and backoff, and what to check before retrying.
//!
//! localstripe (1.15.10) ignores idempotency keys, so nothing here relies on them alone:
//! authorisations and refunds also carry the key as `metadata[flashkart_key]`, and
//! [`Gateway::find_authorisation`] / [`Gateway::refunds`] find them by it. Where localstripe
//! differs from Stripe on the wire the adapter accepts both; each place says why.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::de::DeserializeOwned;

use super::{
    AuthoriseRequest, CardSetup, Gateway, GatewayError, GatewayFuture, Intent, IntentStatus, Refund,
};

/// Metadata key holding FlashKart's idempotency key on intents and refunds.
const KEY_METADATA: &str = "flashkart_key";
/// Metadata key holding the order an intent pays for.
const ORDER_METADATA: &str = "order_id";
/// Metadata key holding FlashKart's customer id on customers and intents.
const CUSTOMER_METADATA: &str = "flashkart_customer";

/// Stripe's page size limit.
const PAGE_SIZE: &str = "100";
/// Most pages one search reads (10 000 objects): past that the answer would be a guess, so
/// the search fails instead of saying "not found".
const MAX_PAGES: usize = 100;
/// Stripe accepts idempotency keys up to 255 characters; the adapter derives keys for its
/// own sub-steps by appending a short suffix, so callers get a little less.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;
/// Longest error message kept from an answer (they end up in logs and the database).
const MAX_MESSAGE_LEN: usize = 300;

/// A secret (an API key, a webhook signing secret). Its `Debug` never shows it, so configs
/// and gateways can be logged. (`Serialize` writes it: serialising a config is writing a
/// config file, which needs it.)
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The secret itself: only to put it on the wire or key a MAC with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where and how to reach Stripe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or a stand-in's URL (plain `http` only on a loopback address,
    /// since the secret key travels in every request).
    pub api_base: String,
    /// `sk_live_...` / `sk_test_...` (or a restricted `rk_` key allowing payment intents,
    /// payment methods, customers and refunds).
    pub secret_key: Secret,
    /// `pk_live_...` / `pk_test_...`: given to customers' browsers, which register a card at
    /// Stripe with it (a SetupIntent's confirmation); empty: the customer app offers cash only.
    pub publishable_key: String,
    /// The `Stripe-Version` to speak, so that an account's default version changing cannot
    /// change the answers under the adapter; empty: the account's default.
    pub api_version: String,
    /// Time to establish a connection.
    pub connect_timeout_ms: u64,
    /// Time for a whole call, answer included; past it the call counts as unavailable (it may
    /// still have happened).
    pub request_timeout_ms: u64,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self {
            api_base: "https://api.stripe.com".into(),
            secret_key: Secret::default(),
            publishable_key: String::new(),
            api_version: "2024-06-20".into(),
            connect_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
        }
    }
}

/// Why a [`StripeConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeConfigError {
    #[error("payments: no Stripe secret key configured")]
    NoSecret,
    #[error("payments: the Stripe secret key is not a valid header value")]
    BadSecret,
    #[error("payments: bad Stripe api_base `{0}`: {1}")]
    BadApiBase(String, &'static str),
    #[error(
        "payments: the Stripe publishable key must start with `pk_` and hold only letters, digits and `_`"
    )]
    BadPublishableKey,
    #[error("payments: bad Stripe api_version `{0}`")]
    BadApiVersion(String),
    #[error("payments: cannot build the HTTP client: {0}")]
    Client(String),
}

/// The Stripe adapter. Cheap to clone (the HTTP client's pool is shared).
#[derive(Clone)]
pub struct StripeGateway {
    http: reqwest::Client,
    /// `api_base` without a trailing slash.
    base: String,
    /// `Bearer <key>`, marked sensitive so that even the `http` crate's `Debug` hides it.
    authorization: HeaderValue,
    api_version: Option<HeaderValue>,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl StripeGateway {
    pub fn new(config: StripeConfig) -> Result<Self, StripeConfigError> {
        let base = config.api_base.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|_| StripeConfigError::BadApiBase(base.clone(), "not a URL"))?;
        let loopback = match url.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(StripeConfigError::BadApiBase(
                    base,
                    "plain http is only allowed to a loopback address",
                ));
            }
            _ => return Err(StripeConfigError::BadApiBase(base, "not http(s)")),
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(StripeConfigError::BadApiBase(
                base,
                "must not have a query, fragment or user",
            ));
        }
        if config.secret_key.is_empty() {
            return Err(StripeConfigError::NoSecret);
        }
        // It ends up in a page's script and its security policy: nothing but an id.
        let key = &config.publishable_key;
        if !key.is_empty()
            && (!key.starts_with("pk_")
                || key.len() > 255
                || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(StripeConfigError::BadPublishableKey);
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", config.secret_key.expose()))
                .map_err(|_| StripeConfigError::BadSecret)?;
        authorization.set_sensitive(true);
        let api_version = match config.api_version.as_str() {
            "" => None,
            version => Some(
                HeaderValue::from_str(version)
                    .map_err(|_| StripeConfigError::BadApiVersion(version.to_owned()))?,
            ),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.request_timeout_ms))
            // Stripe never redirects; following one would only send the key somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("flashkart-cloud/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeConfigError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base,
            authorization,
            api_version,
        })
    }

    /// The base URL calls go to.
    pub fn api_base(&self) -> &str {
        &self.base
    }

    async fn post<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<T, GatewayError> {
        let key = HeaderValue::from_str(idempotency_key)
            .map_err(|_| refused_locally("the idempotency key is not a valid header value"))?;
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", key)
            .form(form);
        self.send(op, request).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, GatewayError> {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(op, request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        op: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, GatewayError> {
        let mut request = request.header(AUTHORIZATION, self.authorization.clone());
        if let Some(version) = &self.api_version {
            request = request.header("Stripe-Version", version.clone());
        }
        let started = Instant::now();
        let result = self.exchange(request).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(_) => tracing::debug!(op, elapsed_ms, "stripe call"),
            Err(error @ GatewayError::Declined { .. }) => {
                tracing::info!(op, elapsed_ms, %error, "stripe call declined");
            }
            Err(error) => tracing::warn!(op, elapsed_ms, %error, "stripe call failed"),
        }
        result
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, GatewayError> {
        // The URL holds nothing secret (ids only), but the query of a GET is not worth logging.
        let response = request
            .send()
            .await
            .map_err(|e| GatewayError::Unavailable(describe(&e.without_url())))?;
        let status = response.status();
        let should_retry = response
            .headers()
            .get("Stripe-Should-Retry")
            .is_some_and(|v| v.as_bytes() == b"true");
        let body = response
            .bytes()
            .await
            .map_err(|e| GatewayError::Unavailable(describe(&e.without_url())))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                GatewayError::Unavailable(format!("unreadable answer ({status}): {e}"))
            });
        }
        Err(error_from(status.as_u16(), should_retry, &body))
    }

    /// Attaches the card to the customer unless it already is theirs (as a card the app saved
    /// with a SetupIntent is), so that nothing depends on how a repeated attach is answered.
    async fn attach(&self, request: &AuthoriseRequest) -> Result<(), GatewayError> {
        let pm_path = format!("/v1/payment_methods/{}", request.payment_method);
        let method: WirePaymentMethod = self.get("payment_method", &pm_path, &[]).await?;
        if method.customer.as_deref() == Some(request.gateway_customer.as_str()) {
            return Ok(());
        }
        let _: WirePaymentMethod = self
            .post(
                "attach",
                &format!("{pm_path}/attach"),
                &[("customer".into(), request.gateway_customer.clone())],
                &format!("{}-attach", request.idempotency_key),
            )
            .await?;
        Ok(())
    }

    /// Hands every item of a list to `each`, page by page.
    async fn scan<T: DeserializeOwned + HasId>(
        &self,
        op: &'static str,
        path: &str,
        filter: &[(&str, &str)],
        mut each: impl FnMut(&T),
    ) -> Result<(), GatewayError> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = filter.to_vec();
            query.push(("limit", PAGE_SIZE));
            if let Some(after) = &after {
                query.push(("starting_after", after.as_str()));
            }
            let page: WireList<T> = self.get(op, path, &query).await?;
            page.data.iter().for_each(&mut each);
            match page.data.last() {
                Some(last) if page.has_more => after = Some(last.id().to_owned()),
                _ => return Ok(()),
            }
        }
        Err(GatewayError::Unavailable(format!(
            "{op}: more than {MAX_PAGES} pages, giving up the search"
        )))
    }
}

impl Gateway for StripeGateway {
    fn card_setup<'a>(&'a self, idempotency_key: &'a str) -> GatewayFuture<'a, CardSetup> {
        Box::pin(async move {
            check_key(idempotency_key)?;
            let setup: WireSetup = self
                .post(
                    "card_setup",
                    "/v1/setup_intents",
                    &[("payment_method_types[0]".to_owned(), "card".to_owned())],
                    idempotency_key,
                )
                .await?;
            check_id(&setup.id).map_err(|_| unreadable("setup intent id"))?;
            // `<id>_secret_<random>`: the same alphabet as ids.
            check_id(&setup.client_secret).map_err(|_| unreadable("client secret"))?;
            Ok(CardSetup {
                id: setup.id,
                client_secret: setup.client_secret,
            })
        })
    }

    fn create_customer<'a>(
        &'a self,
        customer_id: &'a str,
        idempotency_key: &'a str,
    ) -> GatewayFuture<'a, String> {
        Box::pin(async move {
            check_key(idempotency_key)?;
            // localstripe ignores the key, so a retry after a lost answer can make a second
            // (empty, harmless) customer there; Stripe answers the first one.
            let customer: WireId = self
                .post(
                    "create_customer",
                    "/v1/customers",
                    &[(
                        format!("metadata[{CUSTOMER_METADATA}]"),
                        customer_id.to_owned(),
                    )],
                    idempotency_key,
                )
                .await?;
            check_id(&customer.id).map_err(|_| unreadable("customer id"))?;
            Ok(customer.id)
        })
    }

    fn authorise<'a>(&'a self, request: &'a AuthoriseRequest) -> GatewayFuture<'a, Intent> {
        Box::pin(async move {
            check_key(&request.idempotency_key)?;
            check_id(&request.gateway_customer)?;
            check_id(&request.payment_method)?;
            check_amount(request.amount_minor)?;
            let currency = wire_currency(&request.currency)?;
            // A card the issuer refuses to save is declined here already (402).
            self.attach(request).await?;
            let form = vec![
                ("amount".to_owned(), request.amount_minor.to_string()),
                ("currency".to_owned(), currency),
                ("customer".to_owned(), request.gateway_customer.clone()),
                ("payment_method".to_owned(), request.payment_method.clone()),
                // Cards only: with the dashboard's automatic payment methods Stripe would
                // want a return_url for redirecting methods the customer cannot use here.
                ("payment_method_types[0]".to_owned(), "card".to_owned()),
                ("capture_method".to_owned(), "manual".to_owned()),
                ("confirm".to_owned(), "true".to_owned()),
                (
                    format!("metadata[{ORDER_METADATA}]"),
                    request.order_id.clone(),
                ),
                (
                    format!("metadata[{CUSTOMER_METADATA}]"),
                    request.customer_id.clone(),
                ),
                (
                    format!("metadata[{KEY_METADATA}]"),
                    request.idempotency_key.clone(),
                ),
            ];
            let intent: WireIntent = self
                .post(
                    "authorise",
                    "/v1/payment_intents",
                    &form,
                    &request.idempotency_key,
                )
                .await?;
            intent.into_intent()
        })
    }

    fn find_authorisation<'a>(
        &'a self,
        request: &'a AuthoriseRequest,
    ) -> GatewayFuture<'a, Option<Intent>> {
        Box::pin(async move {
            check_id(&request.gateway_customer)?;
            let customer = request.gateway_customer.as_str();
            let mut matches = Vec::new();
            let mut matcher = |intent: &WireIntent| {
                if intent.customer.as_deref() == Some(customer)
                    && intent.metadata(KEY_METADATA) == Some(request.idempotency_key.as_str())
                    && intent.metadata(ORDER_METADATA) == Some(request.order_id.as_str())
                {
                    // Stripe answers the same key with the same intent (for 24 hours), so one
                    // is all there should be; localstripe could hold two after a retry, so
                    // every page is read to see them all.
                    matches.push(intent.clone());
                }
            };
            let filtered = self
                .scan(
                    "find_authorisation",
                    "/v1/payment_intents",
                    &[("customer", customer)],
                    &mut matcher,
                )
                .await;
            match filtered {
                Ok(()) => {}
                // localstripe cannot filter payment intents (it answers 400 "Unexpected
                // customer"): read them all and filter here. Only a stand-in says this, and
                // only a stand-in's account is small enough to read whole.
                Err(GatewayError::Refused {
                    status: 400,
                    message,
                }) if message == "Unexpected customer" => {
                    self.scan(
                        "find_authorisation",
                        "/v1/payment_intents",
                        &[],
                        &mut matcher,
                    )
                    .await?;
                }
                Err(error) => return Err(error),
            }
            if matches.len() > 1 {
                tracing::warn!(
                    order_id = %request.order_id,
                    count = matches.len(),
                    "more than one payment intent with the same idempotency key"
                );
            }
            // Of duplicates, the one that holds or took money is the authorisation.
            let mut intents = matches
                .into_iter()
                .map(WireIntent::into_intent)
                .collect::<Result<Vec<_>, _>>()?;
            intents.sort_by_key(|intent| match intent.status {
                IntentStatus::RequiresCapture | IntentStatus::Succeeded => 0,
                IntentStatus::Canceled => 1,
                IntentStatus::Other => 2,
            });
            Ok(intents.into_iter().next())
        })
    }

    fn capture<'a>(
        &'a self,
        intent_id: &'a str,
        amount_minor: i64,
        idempotency_key: &'a str,
    ) -> GatewayFuture<'a, Intent> {
        Box::pin(async move {
            check_id(intent_id)?;
            check_key(idempotency_key)?;
            check_amount(amount_minor)?;
            let intent: WireIntent = self
                .post(
                    "capture",
                    &format!("/v1/payment_intents/{intent_id}/capture"),
                    &[("amount_to_capture".into(), amount_minor.to_string())],
                    idempotency_key,
                )
                .await?;
            intent.into_intent()
        })
    }

    fn cancel<'a>(
        &'a self,
        intent_id: &'a str,
        idempotency_key: &'a str,
    ) -> GatewayFuture<'a, Intent> {
        Box::pin(async move {
            check_id(intent_id)?;
            check_key(idempotency_key)?;
            // No cancellation_reason: localstripe refuses any parameter here.
            let intent: WireIntent = self
                .post(
                    "cancel",
                    &format!("/v1/payment_intents/{intent_id}/cancel"),
                    &[],
                    idempotency_key,
                )
                .await?;
            intent.into_intent()
        })
    }

    fn refund<'a>(
        &'a self,
        intent_id: &'a str,
        amount_minor: i64,
        idempotency_key: &'a str,
    ) -> GatewayFuture<'a, Refund> {
        Box::pin(async move {
            check_id(intent_id)?;
            check_key(idempotency_key)?;
            check_amount(amount_minor)?;
            let refund: WireRefund = self
                .post(
                    "refund",
                    "/v1/refunds",
                    &[
                        ("payment_intent".into(), intent_id.to_owned()),
                        ("amount".into(), amount_minor.to_string()),
                        (
                            format!("metadata[{KEY_METADATA}]"),
                            idempotency_key.to_owned(),
                        ),
                    ],
                    idempotency_key,
                )
                .await?;
            refund.into_refund()
        })
    }

    fn intent<'a>(&'a self, intent_id: &'a str) -> GatewayFuture<'a, Intent> {
        Box::pin(async move {
            check_id(intent_id)?;
            let intent: WireIntent = self
                .get("intent", &format!("/v1/payment_intents/{intent_id}"), &[])
                .await?;
            intent.into_intent()
        })
    }

    fn refunds<'a>(&'a self, intent_id: &'a str) -> GatewayFuture<'a, Vec<Refund>> {
        Box::pin(async move {
            check_id(intent_id)?;
            let mut refunds = Vec::new();
            self.scan(
                "refunds",
                "/v1/refunds",
                &[("payment_intent", intent_id)],
                |refund: &WireRefund| {
                    // localstripe lists, besides the refunds asked for, the release of the
                    // uncaptured rest of a partial capture as a refund of the charge with no
                    // payment_intent: that money was never taken, so it is not a refund.
                    if refund.payment_intent.as_deref() == Some(intent_id) {
                        refunds.push(refund.clone());
                    }
                },
            )
            .await?;
            refunds.into_iter().map(WireRefund::into_refund).collect()
        })
    }
}

/// A Stripe error answer mapped to what the caller can do about it.
fn error_from(status: u16, should_retry: bool, body: &[u8]) -> GatewayError {
    let error = serde_json::from_slice::<WireErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let message = match &error {
        Some(WireError {
            message: Some(message),
            ..
        }) => bounded(message),
        // localstripe's 500s, proxies' error pages: a little of the text, for the log.
        _ => bounded(String::from_utf8_lossy(body).trim()),
    };
    let card_error = error
        .as_ref()
        .is_some_and(|e| e.kind.as_deref() == Some("card_error"));
    if status == 402 || (card_error && (400..500).contains(&status)) {
        let code = error
            .as_ref()
            .and_then(|e| e.decline_code.clone().or_else(|| e.code.clone()))
            .unwrap_or_else(|| "card_declined".into());
        return GatewayError::Declined {
            code: bounded(&code),
            message,
        };
    }
    // 409: another request with the same idempotency key is still in flight at Stripe; once
    // it is done the same call is answered with its result. 429: rate limited.
    if should_retry || status == 409 || status == 429 || !(400..500).contains(&status) {
        return GatewayError::Unavailable(format!("HTTP {status}: {message}"));
    }
    GatewayError::Refused { status, message }
}

fn bounded(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_LEN)
        .collect();
    clean
}

fn describe(error: &reqwest::Error) -> String {
    // The source chain says why (refused, timed out, TLS); the top level only "error sending".
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    bounded(&text)
}

fn refused_locally(message: &str) -> GatewayError {
    GatewayError::Refused {
        status: 400,
        message: format!("not sent: {message}"),
    }
}

fn unreadable(what: &str) -> GatewayError {
    GatewayError::Unavailable(format!("unreadable answer: bad {what}"))
}

/// Ids go into URL paths: only Stripe's alphabet, so no id can change which URL is called.
fn check_id(id: &str) -> Result<(), GatewayError> {
    if id.is_empty()
        || id.len() > 255
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(refused_locally("an id that is not a Stripe id"));
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), GatewayError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(refused_locally(
            "the idempotency key is empty, too long or not printable ASCII",
        ));
    }
    Ok(())
}

fn check_amount(amount_minor: i64) -> Result<(), GatewayError> {
    if amount_minor <= 0 {
        return Err(refused_locally("amounts must be positive"));
    }
    Ok(())
}

/// ISO 4217 upper case in FlashKart, lower case on Stripe's wire.
fn wire_currency(currency: &str) -> Result<String, GatewayError> {
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(refused_locally("a currency that is not an ISO 4217 code"));
    }
    Ok(currency.to_ascii_lowercase())
}

trait HasId {
    fn id(&self) -> &str;
}

#[derive(serde::Deserialize)]
struct WireId {
    id: String,
}

#[derive(serde::Deserialize)]
struct WireList<T> {
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
}

#[derive(serde::Deserialize)]
struct WirePaymentMethod {
    customer: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct WireIntent {
    id: String,
    status: String,
    amount: i64,
    currency: String,
    customer: Option<String>,
    /// Captured so far (Stripe). localstripe has no such field: see [`captured_by_charge`].
    amount_received: Option<i64>,
    latest_charge: Option<serde_json::Value>,
    metadata: Option<BTreeMap<String, String>>,
}

impl HasId for WireIntent {
    fn id(&self) -> &str {
        &self.id
    }
}

impl WireIntent {
    fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.as_ref()?.get(key).map(String::as_str)
    }

    fn into_intent(self) -> Result<Intent, GatewayError> {
        check_id(&self.id).map_err(|_| unreadable("payment intent id"))?;
        let status = match self.status.as_str() {
            "requires_capture" => IntentStatus::RequiresCapture,
            "succeeded" => IntentStatus::Succeeded,
            "canceled" => IntentStatus::Canceled,
            _ => IntentStatus::Other,
        };
        let captured_minor = match self.amount_received {
            Some(received) => received,
            None if status == IntentStatus::Succeeded => self
                .latest_charge
                .as_ref()
                .and_then(captured_by_charge)
                .ok_or_else(|| unreadable("payment intent: no captured amount"))?,
            None => 0,
        };
        Ok(Intent {
            id: self.id,
            gateway_customer: self.customer,
            status,
            amount_minor: self.amount,
            captured_minor,
            currency: self.currency.to_ascii_uppercase(),
        })
    }
}

/// What localstripe captured, from the charge it embeds in the intent: it has no
/// `amount_received`, and records a partial capture as a capture of the whole amount plus a
/// refund of the rest with no payment intent (refunds asked for through the intent have one).
/// Only the newest ten refunds are embedded, so with more than nine refunds after a partial
/// capture this would overstate the capture; a stand-in's tests never get there.
fn captured_by_charge(charge: &serde_json::Value) -> Option<i64> {
    if charge.get("captured")?.as_bool()? {
        let amount = charge.get("amount")?.as_i64()?;
        let released: i64 = charge
            .get("refunds")
            .and_then(|r| r.get("data"))
            .and_then(serde_json::Value::as_array)
            .map(|refunds| {
                refunds
                    .iter()
                    .filter(|r| {
                        r.get("payment_intent")
                            .is_none_or(serde_json::Value::is_null)
                    })
                    .filter_map(|r| r.get("amount").and_then(serde_json::Value::as_i64))
                    .sum()
            })
            .unwrap_or(0);
        Some(amount - released)
    } else {
        Some(0)
    }
}

#[derive(Debug, serde::Deserialize)]
struct WireSetup {
    id: String,
    client_secret: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct WireRefund {
    id: String,
    amount: i64,
    payment_intent: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

impl HasId for WireRefund {
    fn id(&self) -> &str {
        &self.id
    }
}

impl WireRefund {
    fn into_refund(self) -> Result<Refund, GatewayError> {
        check_id(&self.id).map_err(|_| unreadable("refund id"))?;
        Ok(Refund {
            id: self.id,
            amount_minor: self.amount,
            idempotency_key: self.metadata.and_then(|mut m| m.remove(KEY_METADATA)),
        })
    }
}

#[derive(serde::Deserialize)]
struct WireErrorBody {
    error: WireError,
}

#[derive(serde::Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let config = StripeConfig {
            secret_key: Secret::new("sk_test_very_secret"),
            ..StripeConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("very_secret"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        let gateway = StripeGateway::new(config.clone()).expect("gateway");
        let shown = format!("{gateway:?}");
        assert!(!shown.contains("very_secret"), "{shown}");
    }

    #[test]
    fn config_reads_from_toml_with_defaults() {
        let config: StripeConfig =
            toml::from_str("secret_key = \"sk_test_x\"\napi_base = \"http://127.0.0.1:8420\"")
                .expect("config");
        assert_eq!(config.secret_key.expose(), "sk_test_x");
        assert_eq!(config.request_timeout_ms, 30_000);
        assert!(StripeGateway::new(config.clone()).is_ok());
    }

    #[test]
    fn unusable_configs_are_refused() {
        let key = Secret::new("sk_test_x");
        let with = |api_base: &str, secret_key: Secret| StripeConfig {
            api_base: api_base.into(),
            secret_key,
            ..StripeConfig::default()
        };
        assert_eq!(
            StripeGateway::new(with("https://api.stripe.com", Secret::default())).err(),
            Some(StripeConfigError::NoSecret)
        );
        assert_eq!(
            StripeGateway::new(with("https://api.stripe.com", Secret::new("sk\nx"))).err(),
            Some(StripeConfigError::BadSecret)
        );
        for base in [
            "http://stripe.example.com",
            "ftp://127.0.0.1",
            "not a url",
            "https://api.stripe.com/?x=1",
        ] {
            assert!(
                matches!(
                    StripeGateway::new(with(base, key.clone())),
                    Err(StripeConfigError::BadApiBase(..))
                ),
                "{base}"
            );
        }
        for base in [
            "http://localhost:1",
            "http://127.0.0.1:1/",
            "http://[::1]:1",
        ] {
            assert!(
                StripeGateway::new(with(base, key.clone())).is_ok(),
                "{base}"
            );
        }
    }

    #[test]
    fn errors_map_to_what_the_caller_can_do() {
        let card = br#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}"#;
        assert_eq!(
            error_from(402, false, card),
            GatewayError::Declined {
                code: "insufficient_funds".into(),
                message: "Your card has insufficient funds.".into()
            }
        );
        // localstripe's declines are 402 with type invalid_request_error.
        let local = br#"{"error":{"type":"invalid_request_error","code":"card_declined","message":"Your card was declined."}}"#;
        assert!(matches!(
            error_from(402, false, local),
            GatewayError::Declined { code, .. } if code == "card_declined"
        ));
        let invalid = br#"{"error":{"type":"invalid_request_error","message":"No such payment_intent: 'pi_x'"}}"#;
        assert_eq!(
            error_from(404, false, invalid),
            GatewayError::Refused {
                status: 404,
                message: "No such payment_intent: 'pi_x'".into()
            }
        );
        assert!(error_from(400, false, invalid).is_retryable().eq(&false));
        for status in [409, 429, 500, 502, 503] {
            assert!(
                error_from(status, false, invalid).is_retryable(),
                "{status}"
            );
        }
        assert!(error_from(400, true, invalid).is_retryable());
        let plain = b"500 Internal Server Error\n\nServer got itself in trouble";
        assert!(matches!(
            error_from(500, false, plain),
            GatewayError::Unavailable(m) if m.contains("Server got itself in trouble")
        ));
        assert!(matches!(
            error_from(403, false, b"<html>nope</html>"),
            GatewayError::Refused { status: 403, .. }
        ));
    }

    #[test]
    fn ids_keys_and_amounts_are_checked_before_sending() {
        assert!(check_id("pi_3MtwBwLkdIwHu7ix28a3tqPa").is_ok());
        for bad in ["", "../customers", "pi_1/capture", "pi 1", "pi_1?x=1"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert!(check_key("order-1/authorise").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("a b").is_err());
        assert!(check_key(&"k".repeat(201)).is_err());
        assert!(check_amount(0).is_err());
        assert!(check_amount(-1).is_err());
        assert_eq!(wire_currency("EUR").ok().as_deref(), Some("eur"));
        assert!(wire_currency("EURO").is_err());
        assert!(wire_currency("€").is_err());
    }

    #[test]
    fn localstripe_partial_captures_are_read_from_the_charge() {
        let charge = serde_json::json!({
            "amount": 5000, "captured": true,
            "refunds": {"data": [
                {"amount": 1000, "payment_intent": "pi_1"},
                {"amount": 800, "payment_intent": null}
            ]}
        });
        assert_eq!(captured_by_charge(&charge), Some(4200));
        let uncaptured = serde_json::json!({"amount": 5000, "captured": false});
        assert_eq!(captured_by_charge(&uncaptured), Some(0));
    }
}
