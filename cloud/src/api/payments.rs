//! What HQ, customers and the payment provider call about money: cancellations, refunds,
//! the provider's webhooks, the ledger's trial balance and statements, and the flags HQ must
//! look at.

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::check_text;
use crate::http::auth::{Admin, Viewer};
use crate::http::error::{ApiError, Json, OptionalJson, Path};
use crate::http::state::AppState;
use crate::intake::Canceller;
use crate::payments::ledger::{self, Account};

/// Longest cancellation or refund reason.
const MAX_REASON: usize = 500;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/orders/{id}/cancel`: the customer (before picking starts) or HQ (before
/// pickup, with a reason; after delivery it refunds).
pub async fn cancel_order(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    OptionalJson(request): OptionalJson<CancelRequest>,
) -> Result<Response, ApiError> {
    if let Some(reason) = &request.reason {
        check_text("reason", reason, MAX_REASON, true)?;
    }
    let by = match viewer {
        Viewer::Admin => Canceller::Hq,
        Viewer::Customer(customer) => Canceller::Customer(customer.id),
    };
    let answer = state.intake.cancel(&id, by, request.reason).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// `GET /api/v1/payments/config`: how a customer may pay here. Cash at the door always; a
/// card when a provider and its publishable key are configured, with where the browser
/// registers it (the card goes to the provider, never to FlashKart).
pub async fn payment_options(State(state): State<AppState>) -> Result<Response, ApiError> {
    let card = state.payments.card_form();
    let mut methods = vec!["cash"];
    if card.is_some() {
        methods.push("card");
    }
    Ok(Json(serde_json::json!({ "methods": methods, "card": card })).into_response())
}

/// `POST /api/v1/payments/card-setup`: a signed-in customer's card form. The provider's setup
/// id and client secret, which the browser confirms at the provider with the card and the
/// publishable key to get the payment method (`pm_...`) it orders with.
pub async fn card_setup(
    State(state): State<AppState>,
    customer: crate::intake::Customer,
) -> Result<Response, ApiError> {
    let form = state.payments.card_form().ok_or_else(|| {
        ApiError::from(crate::payments::PaymentError::Unavailable(
            "cards are not taken in the browser here; pay cash on delivery".into(),
        ))
    })?;
    let setup = state.payments.card_setup(&customer.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "setup_id": setup.id,
            "client_secret": setup.client_secret,
            "provider": form.provider,
            "api_base": form.api_base,
            "publishable_key": form.publishable_key,
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    amount_minor: i64,
    reason: String,
}

/// `POST /admin/v1/orders/{id}/refund`: part or all of a captured payment.
pub async fn refund_order(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(request): Json<RefundRequest>,
) -> Result<Response, ApiError> {
    check_text("reason", &request.reason, MAX_REASON, true)?;
    let number = state
        .payments
        .refund(&id, request.amount_minor, &request.reason)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "order_id": id,
            "refund_no": number,
            "amount_minor": request.amount_minor,
            "outcome": "refund_requested",
        })),
    )
        .into_response())
}

/// `POST /api/v1/payments/stripe/webhook`: the provider's events, believed only when signed.
/// A client address whose deliveries keep failing the check is held back (429).
pub async fn stripe_webhook(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ip = peer.ip();
    state.webhook_throttle.check(ip).map_err(|seconds| {
        ApiError::TooManyRequests(
            format!("too many refused webhooks from {ip}; retry in {seconds} s"),
            seconds,
        )
    })?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::BadRequest("the Stripe-Signature header is required".into()))?;
    match state.payments.webhook(signature, &body).await {
        Ok(received) => Ok(Json(received).into_response()),
        Err(error) => {
            if matches!(error, crate::payments::PaymentError::Webhook(_)) {
                state.webhook_throttle.failed(ip);
            }
            Err(error.into())
        }
    }
}

/// `GET /admin/v1/ledger/trial-balance`
pub async fn trial_balance(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Response, ApiError> {
    let lines = state.payments.trial_balance().await?;
    let balanced = ledger::is_balanced(&lines);
    Ok(Json(serde_json::json!({ "balanced": balanced, "currencies": lines })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencyQuery {
    currency: String,
}

/// `GET /admin/v1/ledger/balances?currency=EUR`: every account's balance (debit positive).
pub async fn balances(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<CurrencyQuery>,
) -> Result<Response, ApiError> {
    let currency = query.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::Unprocessable(
            "currency must be an ISO 4217 code such as EUR".into(),
        ));
    }
    let balances = state.payments.balances(&currency).await?;
    let accounts: serde_json::Map<String, serde_json::Value> = balances
        .into_iter()
        .map(|(account, balance)| (account, balance.into()))
        .collect();
    Ok(Json(accounts).into_response())
}

/// `GET /admin/v1/payments/flags`: cash differences and failed gateway calls, newest first.
pub async fn flags(State(state): State<AppState>, _admin: Admin) -> Result<Response, ApiError> {
    Ok(Json(state.payments.flags(500).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    currency: String,
    from: String,
    to: String,
    #[serde(default)]
    format: Option<String>,
}

impl Period {
    fn check(&self) -> Result<bool, ApiError> {
        let currency_ok =
            self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase());
        if !currency_ok {
            return Err(ApiError::Unprocessable(
                "currency must be an ISO 4217 code such as EUR".into(),
            ));
        }
        for (name, at) in [("from", &self.from), ("to", &self.to)] {
            if crate::clock::parse(at).is_none() {
                return Err(ApiError::Unprocessable(format!(
                    "{name} must be an RFC 3339 timestamp"
                )));
            }
        }
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(other) => Err(ApiError::Unprocessable(format!(
                "format {other:?}: use json or csv"
            ))),
        }
    }

    /// The bounds in the ledger's own timestamp format, so they compare as its text does.
    fn bounds(&self) -> (String, String) {
        let normal = |at: &str| crate::clock::parse(at).map(crate::clock::rfc3339);
        (
            normal(&self.from).unwrap_or_default(),
            normal(&self.to).unwrap_or_default(),
        )
    }
}

fn csv(name: String, body: String) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// `GET /admin/v1/statements/stores/{id}?currency=&from=&to=[&format=csv]`: what FlashKart
/// owes the store over the period.
pub async fn store_statement(
    State(state): State<AppState>,
    _admin: Admin,
    Path(store_id): Path<String>,
    Query(period): Query<Period>,
) -> Result<Response, ApiError> {
    let as_csv = period.check()?;
    let account = Account::StorePayable(store_id.clone());
    account
        .validate()
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let (from, to) = period.bounds();
    let statement = state
        .payments
        .statement(&account, &period.currency, &from, &to)
        .await?;
    if as_csv {
        return Ok(csv(format!("store-{store_id}"), statement.to_csv()));
    }
    Ok(Json(statement).into_response())
}

/// `GET /admin/v1/statements/riders/{id}?currency=&from=&to=[&format=csv]`: what FlashKart
/// owes the rider and the cash they carry, over the period.
pub async fn rider_statement(
    State(state): State<AppState>,
    _admin: Admin,
    Path(rider_id): Path<String>,
    Query(period): Query<Period>,
) -> Result<Response, ApiError> {
    let as_csv = period.check()?;
    Account::RiderPayable(rider_id.clone())
        .validate()
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let (from, to) = period.bounds();
    let statements = state
        .payments
        .rider_statements(&rider_id, &period.currency, &from, &to)
        .await?;
    if as_csv {
        return Ok(csv(format!("rider-{rider_id}"), statements.to_csv()));
    }
    Ok(Json(statements).into_response())
}
