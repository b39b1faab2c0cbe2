//! Who is calling, as axum extractors: a handler names the caller it needs (`Admin`,
//! `StoreCaller`, `BoundStore`, `Customer`, `Viewer`) and never checks a credential itself.
//!
//! On guarded routes the guard has authenticated before the body was read and left the caller
//! in the request extensions; the extractors take it from there. On routes without a body they
//! authenticate from the headers themselves, with the same rules.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::intake::Customer;
use crate::registry::{StoreAuth, token_hash};

/// HQ's admin credential was presented.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

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

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether the bearer is HQ's admin credential.
fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|token| token_hash(token) == state.admin_token_sha256)
}

/// HQ's admin credential. A store's credential gets 403 (it is a credential, just not this
/// one), anything else 401.
pub(crate) async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Admin, ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    if token_hash(token) == state.admin_token_sha256 {
        return Ok(Admin);
    }
    Err(if state.registry.authenticate(token).await?.is_some() {
        ApiError::Forbidden("a store credential cannot use the admin API".into())
    } else {
        ApiError::Unauthorized
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

pub(crate) async fn customer(state: &AppState, headers: &HeaderMap) -> Result<Customer, ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    let (id, first_name) = state
        .hq
        .customer(token)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Customer { id, first_name })
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match parts.extensions.get::<Admin>() {
            Some(admin) => Ok(*admin),
            None => admin(state, &parts.headers).await,
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
        match parts.extensions.get::<Customer>() {
            Some(customer) => Ok(customer.clone()),
            None => customer(state, &parts.headers).await,
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.extensions.get::<Admin>().is_some() || is_admin(state, &parts.headers) {
            return Ok(Self::Admin);
        }
        Customer::from_request_parts(parts, state)
            .await
            .map(Self::Customer)
    }
}
