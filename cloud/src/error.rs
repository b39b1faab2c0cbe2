//! Errors that stop the cloud or one of its operations. How they look to an HTTP client is
//! decided in `http/error.rs`, so this module knows nothing of HTTP.

use std::path::PathBuf;

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
    #[error("postgres: {0}")]
    Postgres(String),
    /// Cannot serve now, may later (an instance stopping).
    #[error("{0}")]
    Unavailable(String),
    #[error("corrupt registry: {0}")]
    Corrupt(String),
    #[error("payments: {0}")]
    Payments(String),
    #[error("server task: {0}")]
    Task(String),
}
