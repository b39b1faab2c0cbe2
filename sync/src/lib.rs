//! The store database and the cr-sqlite machinery both halves of FlashKart share.
//!
//! Every store keeps its truth in a SQLite database with the cr-sqlite extension loaded, so its
//! tables are conflict-free replicated relations (CRRs) that merge column by column. This crate
//! owns everything about that database: building and loading the extension
//! ([`crsqlite`]), the schema with the owning side of every synced column and its migrations
//! ([`schema`]), the single-writer/reader-pool access that keeps SQLite off the async runtime
//! ([`store`]), and reading and merging changes as protobuf batches ([`changes`]).

pub mod changes;
pub mod content;
pub mod crsqlite;
mod error;
pub mod schema;
pub mod store;

pub use error::{BatchError, Error, SchemaError};
pub use store::{StoreConfig, StoreDb, Synchronous};
