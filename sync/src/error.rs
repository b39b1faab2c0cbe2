//! Errors of the store database, as values callers can match on.

use std::path::PathBuf;

/// Anything that can go wrong opening, migrating, reading or writing a store database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cr-sqlite extension at {path}: {message}")]
    Extension { path: PathBuf, message: String },
    #[error("io error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("the transaction could not be committed: {0}")]
    Commit(String),
    #[error("a write panicked and was rolled back: {0}")]
    WritePanicked(String),
    #[error("the store database is closed")]
    Closed,
}

/// A migration that cannot be applied; nothing of it is kept.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("table `{table}` cannot be a replicated (CRR) table: {rule}")]
    CrrRule { table: String, rule: String },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        source: Box<Error>,
    },
    #[error(
        "the database is at schema version {found}, newer than this build knows ({known}); \
         refusing to run an older FlashKart against it"
    )]
    TooNew { found: u32, known: u32 },
}

/// A change batch that is refused as a whole; the database is left unchanged.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batch cannot be decoded: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("batch says it holds {declared} changes but holds {actual}: truncated")]
    CountMismatch { declared: u32, actual: usize },
    #[error("batch digest does not match its changes: corrupted in transit")]
    DigestMismatch,
    #[error("change {index}: {reason}")]
    InvalidChange { index: usize, reason: String },
    #[error("change {index} for table `{table}`: not a replicated table here")]
    UnknownTable { index: usize, table: String },
}
