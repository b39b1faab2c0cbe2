//! Who is calling: the bearer token of a signed-in member of staff.
//!
//! Tablets send `Authorization: Bearer <token>`; the live stream also accepts
//! `?access_token=<token>` because browsers' EventSource cannot set headers.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::ApiError;
use crate::Error;
use crate::app::App;
use crate::work::staff::Session;

/// The signed-in caller.
#[derive(Debug, Clone)]
pub struct Staff(pub Session);

impl FromRequestParts<Arc<App>> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        Ok(Self(app.authenticate(token).await?))
    }
}

/// The caller's token itself, for signing out: the session it opened ends.
#[derive(Debug, Clone)]
pub struct Token(pub String);

impl FromRequestParts<Arc<App>> for Token {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<App>) -> Result<Self, ApiError> {
        Ok(Self(bearer(parts)?.to_owned()))
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let query = parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("access_token="))
    });
    Ok(header.or(query).filter(|t| !t.is_empty()).ok_or_else(|| {
        Error::Unauthorized("sign in first: send `Authorization: Bearer <token>`".into())
    })?)
}
