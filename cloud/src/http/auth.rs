//! Who is calling, as axum extractors: a handler names the caller it needs (`Admin`,
//! `StoreCaller`, `BoundStore`, `Customer`, `Viewer`) and never checks a credential itself.
//!
//! On guarded routes the guard has authenticated before the body was read and left the caller
//! in the request extensions; the extractors take it from there. On routes without a body they
//! authenticate from the headers themselves, with the same rules.
//!
//! HQ is either the admin token (automation) or an HQ user signed in to the dashboard, whose
//! browser holds the session in an HttpOnly, SameSite=Strict cookie. A cookie is sent by the
//! browser on its own, so a request that changes something must also carry the session's CSRF
//! token in `X-CSRF-Token`, which only the dashboard's own script can read (from the sign-in
//! answer or `/hq/api/me`).
//!
//! A customer is one of three: an HQ-issued bearer token (`fkc_`, the first customers and
//! automation), an account session's token as bearer (`fks_`, the mobile app), or the same
//! session in the `fk_customer` cookie (the web app), which like the dashboard's must echo the
//! session's CSRF token on every change. A bearer decides alone; the cookie is looked at only
//! without one.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};

use crate::hq::accounts::{AccountSession, SESSION_TOKEN_PREFIX};
use crate::hq::users::HqRole;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::intake::Customer;
use crate::registry::{StoreAuth, token_hash};

/// HQ: the admin token or a signed-in HQ user, with what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The HQ user's name, or [`ADMIN_TOKEN_ACTOR`]: who the audit log says did it.
    pub actor: String,
    pub role: HqRole,
}

/// The audit log's name for the admin token.
pub const ADMIN_TOKEN_ACTOR: &str = "admin-token";
/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "fk_hq";
/// The customer web app's session cookie.
pub const CUSTOMER_COOKIE: &str = "fk_customer";
/// The header a cookie-authenticated request that changes something echoes the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

impl Admin {
    /// Refuses (403) unless this caller's role is at least `role`.
    pub fn require(&self, role: HqRole) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{} is an HQ {}; this needs an {} or above",
                self.actor,
                self.role.as_str(),
                role.as_str()
            )))
        }
    }
}

/// The dashboard session's token from the `Cookie` headers, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

/// Cookie `name` from the `Cookie` headers, if any and not empty.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// A customer's account session token: the bearer if there is one (it decides alone), else
/// the web app's cookie. What sign-out ends.
pub(crate) fn customer_session_token(headers: &HeaderMap) -> Option<&str> {
    match bearer(headers) {
        Some(token) => token.starts_with(SESSION_TOKEN_PREFIX).then_some(token),
        None => cookie(headers, CUSTOMER_COOKIE),
    }
}

/// Refuses (403) a cookie-authenticated change without the session's CSRF token.
fn require_csrf(
    method: &Method,
    headers: &HeaderMap,
    csrf_token: &str,
    refusal: &str,
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if same_secret(sent, csrf_token) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(refusal.into()))
    }
}

/// Equal without an early exit, so the time taken does not say how much of a guess matched.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// A store's credential (not the admin's).
#[derive(Debug, Clone)]
pub struct StoreCaller(pub StoreAuth);

/// A store whose edge database is bound (it said hello), with that database's site id.
#[derive(Debug, Clone)]
pub struct BoundStore {
    pub auth: StoreAuth,
    pub site: [u8; 16],
}

/// Who may read an order: HQ reads any, a customer only their own.
#[derive(Debug, Clone)]
pub enum Viewer {
    Admin,
    Customer(Customer),
}

/// A `Set-Cookie` value for the session cookie `name` (HQ's or a customer's): HttpOnly, so no
/// script reads it; SameSite=Strict, so no other site's page sends it; `Secure` where the
/// app is reached over TLS. `max_age_s` 0 clears it.
pub(crate) fn session_set_cookie(
    name: &str,
    value: &str,
    max_age_s: u64,
    secure: bool,
) -> Result<axum::http::HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    axum::http::HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"
    ))
    .map_err(|e| ApiError::Internal(format!("session cookie: {e}")))
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// HQ: the admin token as bearer, else a dashboard session cookie (with the CSRF token on
/// anything but a read). A bearer that is not the admin token decides alone: a store's
/// credential gets 403 (it is a credential, just not this one), anything else 401.
pub(crate) async fn admin(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Admin, ApiError> {
    if let Some(token) = bearer(headers) {
        if token_hash(token) == state.admin_token_sha256 {
            return Ok(Admin {
                actor: ADMIN_TOKEN_ACTOR.into(),
                role: HqRole::Admin,
            });
        }
        return Err(if state.registry.authenticate(token).await?.is_some() {
            ApiError::Forbidden("a store credential cannot use the admin API".into())
        } else {
            ApiError::Unauthorized
        });
    }
    let token = session_cookie(headers).ok_or(ApiError::Unauthorized)?;
    let session = state
        .hq
        .session(token)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    require_csrf(
        method,
        headers,
        &session.csrf_token,
        "a change from the dashboard must carry its X-CSRF-Token",
    )?;
    Ok(Admin {
        actor: session.username,
        role: session.role,
    })
}

pub(crate) async fn store(state: &AppState, headers: &HeaderMap) -> Result<StoreAuth, ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    if token_hash(token) == state.admin_token_sha256 {
        return Err(ApiError::Forbidden(
            "the admin credential cannot sync as a store".into(),
        ));
    }
    state
        .registry
        .authenticate(token)
        .await?
        .ok_or(ApiError::Unauthorized)
}

/// A customer signed in to an account (an e-mail and a password), not holding an HQ-issued
/// token: the account routes need one.
#[derive(Debug, Clone)]
pub struct AccountCustomer(pub AccountSession);

/// A customer, and their account session if they came with one.
pub(crate) async fn customer(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(Customer, Option<AccountSession>), ApiError> {
    let (session, via_cookie) = match bearer(headers) {
        Some(token) if token.starts_with(SESSION_TOKEN_PREFIX) => {
            (state.hq.account_session(token).await?, false)
        }
        Some(token) => {
            let (id, first_name) = state
                .hq
                .customer(token)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            return Ok((Customer { id, first_name }, None));
        }
        None => {
            let token = cookie(headers, CUSTOMER_COOKIE).ok_or(ApiError::Unauthorized)?;
            (state.hq.account_session(token).await?, true)
        }
    };
    let session = session.ok_or(ApiError::Unauthorized)?;
    if via_cookie {
        require_csrf(
            method,
            headers,
            &session.csrf_token,
            "a change from the web app must carry its X-CSRF-Token",
        )?;
    }
    let customer = Customer {
        id: session.customer_id.clone(),
        first_name: session.first_name.clone(),
    };
    Ok((customer, Some(session)))
}

/// Leaves a customer (and their account session, if any) for the extractors.
pub(crate) fn keep_customer(
    extensions: &mut axum::http::Extensions,
    (customer, session): (Customer, Option<AccountSession>),
) {
    extensions.insert(customer);
    if let Some(session) = session {
        extensions.insert(AccountCustomer(session));
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match parts.extensions.get::<Admin>() {
            Some(admin) => Ok(admin.clone()),
            None => admin(state, &parts.method, &parts.headers).await,
        }
    }
}

impl FromRequestParts<AppState> for StoreCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match parts.extensions.get::<StoreAuth>() {
            Some(auth) => Ok(Self(auth.clone())),
            None => store(state, &parts.headers).await.map(Self),
        }
    }
}

impl FromRequestParts<AppState> for BoundStore {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let StoreCaller(auth) = StoreCaller::from_request_parts(parts, state).await?;
        let site = auth.edge_site_id.ok_or_else(|| {
            ApiError::Forbidden("no edge database bound to this store: say hello first".into())
        })?;
        Ok(Self { auth, site })
    }
}

impl FromRequestParts<AppState> for Customer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(customer) = parts.extensions.get::<Customer>() {
            return Ok(customer.clone());
        }
        let found = customer(state, &parts.method, &parts.headers).await?;
        let customer = found.0.clone();
        keep_customer(&mut parts.extensions, found);
        Ok(customer)
    }
}

impl FromRequestParts<AppState> for AccountCustomer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.extensions.get::<Customer>().is_none() {
            let found = customer(state, &parts.method, &parts.headers).await?;
            keep_customer(&mut parts.extensions, found);
        }
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            ApiError::Forbidden(
                "this needs a customer account: sign in with an e-mail and a password".into(),
            )
        })
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let hq = match bearer(&parts.headers) {
            _ if parts.extensions.get::<Admin>().is_some() => true,
            Some(token) => token_hash(token) == state.admin_token_sha256,
            None => admin(state, &parts.method, &parts.headers).await.is_ok(),
        };
        if hq {
            return Ok(Self::Admin);
        }
        Customer::from_request_parts(parts, state)
            .await
            .map(Self::Customer)
    }
}
