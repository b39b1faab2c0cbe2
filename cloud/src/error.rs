//! Errors of the cloud, and the one place they become HTTP statuses.

use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flashkart_sync::protocol::{self, WireError};
use flashkart_sync::server::ServerError;
use prost::Message;

/// Anything that stops the cloud or one of its operations.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("io error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("store id `{0}` is invalid: use 1-64 letters, digits, `-` or `_`")]
    BadStoreId(String),
    #[error(
        "store {0} is already registered: POST /admin/v1/stores/{0}/token (or register-store --rotate) issues a new token"
    )]
    StoreExists(String),
    #[error("store {0} is not registered")]
    UnknownStore(String),
    #[error("database: {0}")]
    Store(#[from] flashkart_sync::Error),
    #[error("corrupt registry: {0}")]
    Corrupt(String),
    #[error("server task: {0}")]
    Task(String),
}

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
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
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
            IntakeError::Cloud(e) => e.into(),
        }
    }
}
