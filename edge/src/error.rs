//! The errors of the store's domain, as values the HTTP layer maps to statuses in one place.
//!
//! Every refusal says what is wrong in words a picker can act on (the current order state, both
//! products of a wrong scan, the stock that is actually available). A refused write changes
//! nothing: the store database rolls back everything the write did.

use crate::kinds::Status;

/// Anything an edge operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("order {order_id} is {status}: cannot {action}")]
    InvalidTransition {
        order_id: String,
        status: Status,
        action: &'static str,
    },
    #[error("wrong item: scanned {scanned}, but {expected}")]
    WrongItem { scanned: String, expected: String },
    #[error("not enough stock of {product}: {available} available, {requested} needed")]
    InsufficientStock {
        product: String,
        available: i64,
        requested: i64,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed sign-ins: refused before the PIN is checked until the back-off passes.
    #[error("{message}")]
    Locked {
        message: String,
        retry_after_secs: u64,
    },
    /// A store device (scale, printer) could not do what was asked.
    #[error("{0}")]
    Device(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("PIN hashing: {0}")]
    PinHash(String),
    #[error(transparent)]
    Store(#[from] flashkart_sync::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl Error {
    pub(crate) fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            what,
            id: id.into(),
        }
    }
}
