//! Customer accounts over HTTP: sign-up, sign-in, sign-out, the signed-in customer and their
//! saved addresses.
//!
//! One session serves both apps: sign-up and sign-in answer with the session's bearer token
//! (the mobile app keeps it and sends `Authorization: Bearer`) and set it as the HttpOnly,
//! SameSite=Strict cookie `fk_customer` (the web app, whose script never sees the cookie and
//! echoes the CSRF token from the answer, or from `GET /api/v1/account` after a reload, on
//! every change). Sign-ins fail with one answer whatever was wrong, and are held back per client
//! address and per e-mail tried, so guessing costs the guesser time and the cloud nothing;
//! sign-ups are bounded per address. A forgotten password is reset through an e-mailed link:
//! the request answers the same whether the e-mail has an account or not, and is bounded per
//! address and per e-mail; refused confirmations are bounded per address. Who is calling is decided in `http/auth.rs`; what may be
//! stored, in `hq/accounts.rs`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::hq::accounts::{AccountError, AccountSession, NewAccount, NewAddress, normalize_email};
use crate::http::auth::{self, AccountCustomer, CUSTOMER_COOKIE};
use crate::http::error::{ApiError, Json, Path};
use crate::http::state::AppState;
use crate::registry::token_hash;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    email: String,
    password: String,
    first_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    token: String,
    password: String,
}

/// What sign-up and sign-in answer: the customer, the session's CSRF token and expiry, and
/// its bearer token (for an app that does not keep cookies).
#[derive(Debug, Serialize)]
struct SignedIn {
    #[serde(flatten)]
    session: AccountSession,
    token: String,
}

fn cookie(state: &AppState, value: &str, max_age_s: u64) -> Result<HeaderValue, ApiError> {
    auth::session_set_cookie(
        CUSTOMER_COOKIE,
        value,
        max_age_s,
        state.customers.settings.secure_cookie,
    )
}

/// `status` with the session as the answer and as the cookie.
fn signed_in(
    state: &AppState,
    status: StatusCode,
    token: String,
    session: AccountSession,
) -> Result<Response, ApiError> {
    let max_age = u64::from(state.customers.settings.session_days.max(1)) * 86_400;
    let set_cookie = cookie(state, &token, max_age)?;
    let mut response = (status, Json(SignedIn { session, token })).into_response();
    response.headers_mut().insert(SET_COOKIE, set_cookie);
    Ok(response)
}

fn too_many(what: String, seconds: u64) -> ApiError {
    ApiError::TooManyRequests(format!("{what}; try again in {seconds} s"), seconds)
}

/// `POST /api/v1/account/sign-up` `{email, password, first_name}`: 201 with the new customer
/// signed in; 409 if the e-mail has an account, 422 for input of the wrong shape (nothing
/// written either way).
pub async fn sign_up(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<SignUp>,
) -> Result<Response, ApiError> {
    let ip = peer.ip();
    let gate = &state.customers;
    gate.sign_ups
        .check(ip)
        .map_err(|seconds| too_many(format!("too many sign-ups from {ip}"), seconds))?;
    let account = NewAccount::new(&body.email, body.password, &body.first_name)?;
    // Every well-formed attempt counts, taken or not: each costs a hash.
    gate.sign_ups.failed(ip);
    let (token, session) = state
        .hq
        .sign_up(account, gate.settings.session_days)
        .await?;
    tracing::info!(customer_id = %session.customer_id, %ip, "customer signed up");
    signed_in(&state, StatusCode::CREATED, token, session)
}

/// `POST /api/v1/account/sign-in` `{email, password}`: 200 with the customer signed in, 401
/// for an unknown e-mail or a wrong password alike, 429 once the address or the e-mail has
/// used up its failures (even for the right password).
pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<SignIn>,
) -> Result<Response, ApiError> {
    let ip = peer.ip();
    let gate = &state.customers;
    // Keyed by a hash: the map holds a fixed size per e-mail whatever was sent, and no
    // addresses in the clear.
    let email_key = token_hash(&body.email.trim().to_lowercase());
    gate.sign_ins_by_address
        .check(ip)
        .map_err(|seconds| too_many(format!("too many failed sign-ins from {ip}"), seconds))?;
    gate.sign_ins_by_email
        .check(email_key.clone())
        .map_err(|seconds| too_many("too many failed sign-ins for this e-mail".into(), seconds))?;
    let signed = state
        .hq
        .account_sign_in(&body.email, body.password, gate.settings.session_days)
        .await?;
    let Some((token, session)) = signed else {
        gate.sign_ins_by_address.failed(ip);
        gate.sign_ins_by_email.failed(email_key);
        state.metrics.customer_sign_ins_failed.inc();
        tracing::warn!(%ip, "customer sign-in refused");
        return Err(ApiError::Unauthorized);
    };
    tracing::info!(customer_id = %session.customer_id, %ip, "customer signed in");
    signed_in(&state, StatusCode::OK, token, session)
}

/// `POST /api/v1/account/password-reset` `{email}`: 202 `{"status": "sent"}` whether or not
/// the e-mail has an account (the link goes out only if it has); 422 for something that is
/// not an e-mail, 429 once the address or the e-mail has used up its requests.
pub async fn request_password_reset(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<ResetRequest>,
) -> Result<Response, ApiError> {
    let ip = peer.ip();
    let gate = &state.customers;
    gate.resets_by_address
        .check(ip)
        .map_err(|seconds| too_many(format!("too many password resets from {ip}"), seconds))?;
    let email = normalize_email(&body.email)
        .ok_or_else(|| ApiError::Unprocessable("email must look like name@example.com".into()))?;
    // Keyed by a hash, as for sign-ins.
    let email_key = token_hash(&email);
    gate.resets_by_email
        .check(email_key.clone())
        .map_err(|seconds| too_many("too many password resets for this e-mail".into(), seconds))?;
    gate.resets_by_address.failed(ip);
    gate.resets_by_email.failed(email_key);
    state.hq.request_password_reset(email).await?;
    state.metrics.password_resets.inc();
    tracing::info!(%ip, "password reset requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": "sent"})),
    )
        .into_response())
}

/// `POST /api/v1/account/password-reset/confirm` `{token, password}`: 204 with the new
/// password set, every session of the customer ended and the link spent; 422 for a token
/// that is unknown, used or expired, or a password sign-up would refuse (nothing changed);
/// 429 once the address has had too many refused.
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<ResetConfirm>,
) -> Result<Response, ApiError> {
    let ip = peer.ip();
    let gate = &state.customers;
    gate.reset_confirms_by_address
        .check(ip)
        .map_err(|seconds| {
            too_many(
                format!("too many refused password resets from {ip}"),
                seconds,
            )
        })?;
    match state
        .hq
        .confirm_password_reset(&body.token, body.password)
        .await
    {
        Ok(customer_id) => {
            tracing::info!(%customer_id, %ip, "password reset: new password set, sessions ended");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(error @ AccountError::Invalid(_)) => {
            gate.reset_confirms_by_address.failed(ip);
            tracing::warn!(%ip, "password reset refused");
            Err(error.into())
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /api/v1/account/sign-out`: ends the session it was sent with (a cookie's needs its
/// CSRF token, like any change) and clears the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    AccountCustomer(session): AccountCustomer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = auth::customer_session_token(&headers) {
        state.hq.end_account_session(token).await?;
    }
    tracing::info!(customer_id = %session.customer_id, "customer signed out");
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, cookie(&state, "", 0)?);
    Ok(response)
}

/// `GET /api/v1/account`: the signed-in customer and the session's CSRF token (a reloaded web
/// page asks for it).
pub async fn me(AccountCustomer(session): AccountCustomer) -> Json<AccountSession> {
    Json(session)
}

/// `GET /api/v1/account/addresses`: the customer's saved addresses, oldest first.
pub async fn addresses(
    State(state): State<AppState>,
    AccountCustomer(session): AccountCustomer,
) -> Result<Response, ApiError> {
    Ok(Json(state.hq.addresses(&session.customer_id).await?).into_response())
}

/// `POST /api/v1/account/addresses` `{label, text, lat, lon}`: 201 with the saved address;
/// 422 for a field out of range, 409 past the most a customer keeps.
pub async fn add_address(
    State(state): State<AppState>,
    AccountCustomer(session): AccountCustomer,
    Json(body): Json<NewAddress>,
) -> Result<Response, ApiError> {
    let saved = state.hq.add_address(&session.customer_id, body).await?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

/// `DELETE /api/v1/account/addresses/{id}`: 204, or 404 unless the customer saved it.
pub async fn delete_address(
    State(state): State<AppState>,
    AccountCustomer(session): AccountCustomer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.hq.delete_address(&session.customer_id, &id).await? {
        return Err(ApiError::NotFound(format!("no saved address {id}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
