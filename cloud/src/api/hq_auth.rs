//! HQ users in the browser: sign-in with a password, the session cookie, sign-out; the HQ
//! users an admin manages; the audit log of every change HQ made.
//!
//! The dashboard's script gets the session's CSRF token from the sign-in answer (and again
//! from `/hq/api/me` after a reload) and sends it with every change; the cookie itself is
//! HttpOnly, so a script injected into some other page can neither read it nor use it across
//! sites (SameSite=Strict).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::check_text;
use crate::hq::users::{self, HqRole, HqUser};
use crate::http::ApiError;
use crate::http::auth::{self, Admin, SESSION_COOKIE};
use crate::http::state::AppState;

/// Longest password accepted (argon2 hashes any length; this bounds the work a caller asks for).
const MAX_PASSWORD: usize = 256;
/// Shortest password an admin may set.
const MIN_PASSWORD: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    username: String,
    password: String,
}

/// A username: 1-64 of lowercase letters, digits, `.`, `_` or `-`.
fn check_username(username: &str) -> Result<(), ApiError> {
    if username.is_empty()
        || username.len() > 64
        || !username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(ApiError::Unprocessable(
            "a username is 1-64 lowercase letters, digits, `.`, `_` or `-`".into(),
        ));
    }
    Ok(())
}

fn cookie(state: &AppState, value: &str, max_age_s: u64) -> Result<HeaderValue, ApiError> {
    auth::session_set_cookie(
        SESSION_COOKIE,
        value,
        max_age_s,
        state.hq_settings.secure_cookie,
    )
}

/// `POST /hq/api/sign-in`: a session cookie for a right password. Failures count per client
/// address; past the limit the address is answered 429 without a check until its window ends.
pub async fn sign_in(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<SignIn>,
) -> Result<Response, ApiError> {
    let ip = peer.ip();
    state.sign_in_throttle.check(ip).map_err(|seconds| {
        ApiError::TooManyRequests(
            format!("too many failed sign-ins from {ip}; try again in {seconds} s"),
            seconds,
        )
    })?;
    let known_shape = check_username(&body.username).is_ok()
        && !body.password.is_empty()
        && body.password.len() <= MAX_PASSWORD;
    let signed_in = if known_shape {
        state
            .hq
            .sign_in(
                &body.username,
                body.password,
                state.hq_settings.session_hours.max(1),
            )
            .await?
    } else {
        None
    };
    let Some((token, session)) = signed_in else {
        state.sign_in_throttle.failed(ip);
        state.metrics.hq_sign_ins_failed.inc();
        tracing::warn!(username = ?body.username, %ip, "HQ sign-in refused");
        return Err(ApiError::Unauthorized);
    };
    tracing::info!(username = %session.username, role = session.role.as_str(), %ip, "HQ signed in");
    let max_age = u64::from(state.hq_settings.session_hours.max(1)) * 3600;
    let mut response = Json(session).into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, cookie(&state, &token, max_age)?);
    Ok(response)
}

/// `GET /hq/api/me`: the signed-in user and the session's CSRF token (a reloaded page asks).
pub async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let token = auth::session_cookie(&headers).ok_or(ApiError::Unauthorized)?;
    let session = state
        .hq
        .session(token)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Json(session).into_response())
}

/// `POST /hq/api/sign-out`: ends the session (its CSRF token required, like any change) and
/// clears the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = auth::session_cookie(&headers) {
        state.hq.end_session(token).await?;
    }
    tracing::info!(username = %admin.actor, "HQ signed out");
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, cookie(&state, "", 0)?);
    Ok(response)
}

/// `GET /admin/v1/hq-users` (an HQ admin).
pub async fn list_users(State(state): State<AppState>, admin: Admin) -> Result<Response, ApiError> {
    admin.require(HqRole::Admin)?;
    Ok(Json(state.hq.users().await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutUser {
    name: String,
    role: HqRole,
    /// Required for a new user; absent keeps an existing user's password.
    #[serde(default)]
    password: Option<String>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// `PUT /admin/v1/hq-users/{username}` (an HQ admin): adds or changes an HQ user. A new
/// password or a deactivation signs them out everywhere.
pub async fn put_user(
    State(state): State<AppState>,
    admin: Admin,
    Path(username): Path<String>,
    Json(body): Json<PutUser>,
) -> Result<Response, ApiError> {
    check_username(&username)?;
    check_text("name", &body.name, 100, true)?;
    if username == admin.actor && (!body.active || body.role < HqRole::Admin) {
        return Err(ApiError::Conflict(
            "an admin cannot demote or deactivate themselves: ask another admin".into(),
        ));
    }
    let hash = match body.password {
        Some(password) => {
            if password.chars().count() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
                return Err(ApiError::Unprocessable(format!(
                    "a password is {MIN_PASSWORD}-{MAX_PASSWORD} characters"
                )));
            }
            Some(
                tokio::task::spawn_blocking(move || users::hash_password(&password))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))??,
            )
        }
        None => None,
    };
    let user = HqUser {
        username,
        name: body.name,
        role: body.role,
        active: body.active,
    };
    if !state.hq.put_user(user.clone(), hash).await? {
        return Err(ApiError::NotFound(format!(
            "no HQ user {}: a new user needs a password",
            user.username
        )));
    }
    Ok(Json(user).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default = "hundred")]
    limit: u32,
}

fn hundred() -> u32 {
    100
}

/// `GET /admin/v1/audit?limit=N`: HQ's latest changes, newest first (any HQ role).
pub async fn audit(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    Ok(Json(state.hq.audit_log(query.limit).await?).into_response())
}
