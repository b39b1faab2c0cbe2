//! The one place errors become HTTP statuses, and extractors whose rejections do too.
//!
//! Every failure leaves as `{"error": code, "message": text}`: domain refusals as 4xx with
//! their message, malformed requests (bad JSON, bad path or query) as 400/422, and internal
//! failures as 500/503 with the detail logged rather than sent.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Error;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header (429).
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(Body {
                error: self.code,
                message: &self.message,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        use StatusCode as S;
        let message = error.to_string();
        let (status, code) = match &error {
            Error::NotFound { .. } => (S::NOT_FOUND, "not_found"),
            Error::InvalidTransition { .. } => (S::CONFLICT, "invalid_transition"),
            Error::WrongItem { .. } => (S::CONFLICT, "wrong_item"),
            Error::InsufficientStock { .. } => (S::CONFLICT, "insufficient_stock"),
            Error::Conflict(_) => (S::CONFLICT, "conflict"),
            Error::Invalid(_) => (S::UNPROCESSABLE_ENTITY, "invalid"),
            Error::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (S::FORBIDDEN, "forbidden"),
            Error::Locked {
                retry_after_secs, ..
            } => {
                let mut locked = Self::new(S::TOO_MANY_REQUESTS, "locked", message);
                locked.retry_after = Some(*retry_after_secs);
                return locked;
            }
            Error::Device(_) => (S::SERVICE_UNAVAILABLE, "device_unavailable"),
            Error::Store(flashkart_sync::Error::Closed) => {
                return Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store database is shutting down",
                );
            }
            Error::Store(_)
            | Error::Sqlite(_)
            | Error::Io { .. }
            | Error::PinHash(_)
            | Error::Config(_) => {
                tracing::error!(%error, "request failed");
                return Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; nothing was changed (see the daemon's log)",
                );
            }
        };
        Self::new(status, code, message)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match &rejection {
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, "bad_json", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_query", rejection.body_text())
    }
}

/// A JSON body whose rejection is an [`ApiError`]; also the JSON response type.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A query string whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
