//! The one place errors become HTTP statuses, and the extractors whose rejections do too.
//!
//! Every failure but a sync resume leaves as `{"error": code, "message": text}`. Internal
//! failures are logged with the request id and the client sees only that id, so database
//! paths and SQL never reach a caller.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flashkart_sync::protocol::{self, WireError};
use flashkart_sync::server::ServerError;
use prost::Message;

use crate::error::CloudError;

/// A failed HTTP request. Every handler returns this; [`IntoResponse`] picks the status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown credential")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    PaymentRequired(String),
    /// 429, with the seconds to wait.
    #[error("{0}")]
    TooManyRequests(String, u64),
    #[error("resume from the acknowledged position")]
    Resume(flashkart_proto::sync::PushResponse),
    #[error("{0}")]
    Internal(String),
}

impl From<ServerError> for ApiError {
    fn from(error: ServerError) -> Self {
        match error {
            ServerError::Resume { acked, .. } => Self::Resume(acked),
            ServerError::Forbidden(_) | ServerError::WrongSite { .. } => {
                Self::Forbidden(error.to_string())
            }
            ServerError::BadRequest(_) => Self::BadRequest(error.to_string()),
            ServerError::TooLarge { .. } => Self::TooLarge(error.to_string()),
            ServerError::Store(e) => Self::Internal(e.to_string()),
        }
    }
}

impl From<WireError> for ApiError {
    fn from(error: WireError) -> Self {
        match error {
            WireError::TooLarge => Self::TooLarge(error.to_string()),
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl From<CloudError> for ApiError {
    fn from(error: CloudError) -> Self {
        match error {
            CloudError::BadStoreId(_) => Self::BadRequest(error.to_string()),
            CloudError::StoreExists(_) => Self::Conflict(error.to_string()),
            CloudError::UnknownStore(_) => Self::NotFound(error.to_string()),
            CloudError::Unavailable(message) => Self::Unavailable(message),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::Resume(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            Self::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let request_id = crate::http::observe::request_id();
        if status.is_server_error() {
            tracing::error!(error = %self, %request_id, "request failed");
        } else if matches!(self, Self::Forbidden(_)) {
            tracing::warn!(error = %self, %request_id, "refused");
        }
        match self {
            Self::Resume(acked) => (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(protocol::CONTENT_TYPE),
                )],
                acked.encode_to_vec(),
            )
                .into_response(),
            Self::Unauthorized => (
                status,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                self.json_body(),
            )
                .into_response(),
            Self::TooManyRequests(_, seconds) => (
                status,
                [(header::RETRY_AFTER, HeaderValue::from(seconds))],
                self.json_body(),
            )
                .into_response(),
            Self::Internal(_) => (
                status,
                axum::Json(serde_json::json!({
                    "error": "internal",
                    "message": format!("internal error, request id {request_id}"),
                })),
            )
                .into_response(),
            other => (status, other.json_body()).into_response(),
        }
    }
}

impl ApiError {
    /// `{"error": <code>, "message": <text>}`, the body of every failed request but a resume.
    fn json_body(&self) -> axum::Json<serde_json::Value> {
        let code = match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge(_) => "too_large",
            Self::Timeout(_) => "timeout",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) | Self::Resume(_) => "conflict",
            Self::Unprocessable(_) => "unprocessable",
            Self::Unavailable(_) => "unavailable",
            Self::PaymentRequired(_) => "payment_declined",
            Self::TooManyRequests(..) => "too_many_requests",
            Self::Internal(_) => "internal",
        };
        axum::Json(serde_json::json!({ "error": code, "message": self.to_string() }))
    }
}

impl From<crate::intake::IntakeError> for ApiError {
    fn from(error: crate::intake::IntakeError) -> Self {
        use crate::intake::IntakeError;
        use crate::routing::NoStore;
        match error {
            IntakeError::Invalid(_) => Self::Unprocessable(error.to_string()),
            IntakeError::KeyReused => Self::Conflict(error.to_string()),
            IntakeError::NoStore(NoStore::OutsideAreas) => Self::Unprocessable(error.to_string()),
            IntakeError::NoStore(NoStore::Unavailable(_)) => Self::Unavailable(error.to_string()),
            IntakeError::Payment(e) => e.into(),
            IntakeError::Cloud(e) => e.into(),
        }
    }
}

impl From<crate::hq::accounts::AccountError> for ApiError {
    fn from(error: crate::hq::accounts::AccountError) -> Self {
        use crate::hq::accounts::AccountError;
        match error {
            AccountError::Invalid(_) => Self::Unprocessable(error.to_string()),
            AccountError::EmailTaken | AccountError::TooManyAddresses => {
                Self::Conflict(error.to_string())
            }
            AccountError::Cloud(e) => e.into(),
        }
    }
}

impl From<crate::hq::ratings::RatingError> for ApiError {
    fn from(error: crate::hq::ratings::RatingError) -> Self {
        use crate::hq::ratings::RatingError;
        match error {
            RatingError::Invalid(_) => Self::Unprocessable(error.to_string()),
            RatingError::AlreadyRated(_) => Self::Conflict(error.to_string()),
            RatingError::Cloud(e) => e.into(),
        }
    }
}

impl From<crate::payments::PaymentError> for ApiError {
    fn from(error: crate::payments::PaymentError) -> Self {
        use crate::payments::PaymentError;
        match error {
            PaymentError::Declined(_) => Self::PaymentRequired(error.to_string()),
            PaymentError::Unavailable(_) => Self::Unavailable(error.to_string()),
            PaymentError::Invalid(_) => Self::Unprocessable(error.to_string()),
            PaymentError::Conflict(_) => Self::Conflict(error.to_string()),
            PaymentError::NotFound(_) => Self::NotFound(error.to_string()),
            PaymentError::Webhook(_) => Self::BadRequest(error.to_string()),
            PaymentError::Cloud(e) => e.into(),
            PaymentError::Ledger(_) | PaymentError::Store(_) => Self::Internal(error.to_string()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<crate::storefront::StorefrontError> for ApiError {
    fn from(error: crate::storefront::StorefrontError) -> Self {
        use crate::storefront::{SearchError, StorefrontError};
        match error {
            StorefrontError::Search(
                SearchError::TooLong { .. } | SearchError::TooManyWords { .. },
            ) => Self::BadRequest(error.to_string()),
            _ => Self::Internal(error.to_string()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        Self::BadRequest(format!(
            "reading the request body: {}",
            rejection.body_text()
        ))
    }
}

/// Path parameters whose rejection is an [`ApiError`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters whose rejection is an [`ApiError`] (400 with serde's message).
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// A JSON body whose rejection is an [`ApiError`] (400 with serde's message). No content type
/// is required: clients have always been able to post JSON without one.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let body = axum::body::Bytes::from_request(request, state).await?;
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
    }
}

/// A JSON body that may be left out: an empty (or all-whitespace) body is `T::default()`, for
/// the admin actions whose options all have defaults (`curl -X POST` with no `-d` works).
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let body = axum::body::Bytes::from_request(request, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
    }
}

/// The `Idempotency-Key` header an order must carry, so a retried request is answered once.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get("idempotency-key")
            .ok_or_else(|| ApiError::BadRequest("the Idempotency-Key header is required".into()))?
            .to_str()
            .map_err(|_| ApiError::BadRequest("Idempotency-Key is not ASCII".into()))?;
        Ok(Self(key.to_owned()))
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_name_the_request_not_the_cause() {
        let response = crate::http::observe::scoped("0190-test".to_owned(), async {
            ApiError::Internal("no such table: secret_sql".into()).into_response()
        })
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"], "internal");
        assert_eq!(body["message"], "internal error, request id 0190-test");
    }
}
