//! The store database and the cr-sqlite machinery both halves of FlashKart share.
//!
//! Every store keeps its truth in a SQLite database with the cr-sqlite extension loaded, so its
//! tables are conflict-free replicated relations (CRRs) that merge column by column. This crate
//! owns everything about that database: building and loading the extension
//! ([`crsqlite`]), the schema with the owning side of every synced column and its migrations
//! ([`schema`]), the single-writer/reader-pool access that keeps SQLite off the async runtime
//! ([`store`]), and reading and merging changes as protobuf batches ([`changes`]). On top of
//! that sits the edge <-> cloud sync: the wire ([`protocol`]), chunking and reassembly of
//! transactions ([`chunks`]), durable per-origin positions ([`cursors`]), packed primary keys read without trusting them
//! ([`packed_key`]), the cloud's check of
//! who may write what ([`authorize`]), the replica side ([`server`]) and the edge's client
//! ([`client`]). [`change_log`] answers what changed without the values (origins, touched rows,
//! unacknowledged local changes), so no other crate queries cr-sqlite's tables;
//! [`cloud_writes`] is every write the cloud makes into a store database, the columns it owns.
//! [`timestamp`] is the one format of stored timestamps.

pub mod authorize;
pub mod change_log;
pub mod changes;
pub mod chunks;
pub mod client;
pub mod cloud_writes;
pub mod content;
pub mod crsqlite;
pub mod cursors;
mod error;
pub mod packed_key;
pub mod protocol;
pub mod schema;
pub mod server;
pub mod store;
pub mod timestamp;

pub use error::{BatchError, Error, SchemaError};
pub use store::{StoreConfig, StoreDb, Synchronous};
