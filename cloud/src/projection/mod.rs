//! The read model: every store's applied changes projected into global tables.
//!
//! Routing and the dashboard must not scan a hundred store replicas per request, so the cloud
//! keeps one database with orders and their status timelines, stock per store and product,
//! rider positions, and the counts derived from them; and what HQ reads of a store besides
//! (an order's lines and their progress at each store, wrong delivery PINs, the riders' CA
//! fingerprint), since with several instances only the one holding a store has its replica: `<data_dir>/readmodel.db` (plain SQLite)
//! on one machine, or the shared PostgreSQL database with `database_url`, where every
//! instance's projector writes the stores whose leases it holds and every instance reads all
//! stores ([`Backend`]). Writes come from two places: intake records each order it routes, and
//! the projector follows what stores push.
//!
//! Projection is idempotent by construction: the projector finds the rows a store's changes
//! touched, re-reads them from the store's replica (the truth the cloud holds) and folds them
//! in by their keys. Ledger rows (stock moves, order events) are insert-only with UUIDv7 ids, so
//! each is counted once however often it is delivered, and the stock sums stay exact.
//!
//! It follows a durable cursor, not the pushes themselves: per store and origin (and, in
//! PostgreSQL, per replica: each instance keeps its own replica file of a store, whose
//! positions mean nothing in another's), the read model records (in the same transaction as
//! the rows it folded) how far into the replica's changes it has projected. A push only marks
//! its store dirty. So a push whose client hangs up, or a cloud that dies between the
//! replica's commit and the projection, loses nothing: the projector catches up from the
//! cursor when it is next woken, and for every store at start. The dirty set holds at most one entry per store, so it cannot grow with traffic.
//!
//! A store is believed only about what it owns. The replica's own rows (cloud-owned: the
//! orders routed to it, its assignments, its riders) decide which order events, line
//! progress, delivery attempts, assignment replies and rider positions a store may report; anything else is
//! dropped with a warning. Timestamps a store writes are clamped to a window around the
//! cloud's clock, so a date far in the future cannot make a fact win for good.
//!
//! The parts: `schema` (the read model's tables), `projector` (the loop, its cursors and what
//! changed since them), `rows` (re-reading touched rows, with the ownership checks), `fold`
//! (folding them into the global tables) and `queries` (what intake, routing, dispatch and the
//! dashboard read, and what intake records). `fold`, `queries` and the cursors say each thing
//! once per engine, side by side; replicas are SQLite files whichever engine holds the read
//! model, so `rows` has one version.

mod fold;
mod projector;
mod queries;
mod rows;
mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use flashkart_proto::sync::Change;
use flashkart_sync::{StoreConfig, StoreDb};
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::CloudError;
use crate::postgres::Postgres;
use crate::readmodel::ReadModel;

use schema::{MIGRATIONS, PG_MIGRATIONS};

/// The tables whose rows the projector follows.
const FOLLOWED: &[&str] = &[
    "order_events",
    "stock_moves",
    "rider_positions",
    "order_line_progress",
    "assignment_replies",
    "device_status",
    "delivery_attempts",
    "store_certificates",
];

/// Rows of one store to re-read: table -> packed primary keys.
type Touched = BTreeMap<&'static str, BTreeSet<Vec<u8>>>;

/// Something the projector saw that intake may act on: an order whose store found lines short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortReport {
    pub order_id: String,
    pub store_id: String,
}

/// Where the read model's rows are. Every reader of the read model matches on it: the same
/// tables and the same questions on either engine.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `readmodel.db` in the data directory: one instance.
    Sqlite(StoreDb),
    /// The cloud's shared PostgreSQL database: any number of instances.
    Postgres(Postgres),
}

/// The read model database, and the stores waiting for its projector.
#[derive(Debug, Clone)]
pub struct Projection {
    backend: Backend,
    dirty: Arc<Dirty>,
    /// Bumped after every projected step (tests and the dashboard wait on it).
    projected: watch::Sender<u64>,
    /// Bumped after the cloud's own writes (an order intake routed, a note), which no
    /// projected step announces: the dashboard shows a new order before its store has it.
    written: watch::Sender<u64>,
}

/// Stores with changes the projector may not have seen. A set, so a busy store is one entry
/// however often it pushes.
#[derive(Debug, Default)]
struct Dirty {
    stores: std::sync::Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Dirty {
    fn mark(&self, store_id: &str) {
        if let Ok(mut stores) = self.stores.lock() {
            stores.insert(store_id.to_owned());
        }
        self.wake.notify_one();
    }

    fn take(&self) -> BTreeSet<String> {
        self.stores
            .lock()
            .map(|mut stores| std::mem::take(&mut *stores))
            .unwrap_or_default()
    }
}

impl Projection {
    pub async fn open(mut config: StoreConfig) -> Result<Self, CloudError> {
        config.readers = 4;
        let db = StoreDb::open(config, MIGRATIONS).await?;
        Ok(Self::with(Backend::Sqlite(db)))
    }

    /// The read model in PostgreSQL (its tables migrated first). Needs HQ's tables there too:
    /// what the projector tells customers goes into HQ's `notify_outbox` in the same
    /// transaction.
    pub async fn open_postgres(postgres: Postgres) -> Result<Self, CloudError> {
        postgres.migrate("readmodel", PG_MIGRATIONS).await?;
        Ok(Self::with(Backend::Postgres(postgres)))
    }

    fn with(backend: Backend) -> Self {
        Self {
            backend,
            dirty: Arc::default(),
            projected: watch::Sender::new(0),
            written: watch::Sender::new(0),
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Asks the projector to catch up with `store_id`'s replica.
    pub fn mark_dirty(&self, store_id: &str) {
        self.dirty.mark(store_id);
    }

    /// Closes `readmodel.db`; the PostgreSQL pool is closed by its owner.
    pub async fn close(&self) -> Result<(), CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db.close().await?),
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Counts projected batches; changes after each.
    pub fn projected(&self) -> watch::Receiver<u64> {
        self.projected.subscribe()
    }

    /// Counts the cloud's own writes to the read model; changes after each.
    pub fn written(&self) -> watch::Receiver<u64> {
        self.written.subscribe()
    }
}

impl ReadModel for Projection {
    fn project(&self, store_id: &str, _changes: &[Change]) {
        self.mark_dirty(store_id);
    }
}

/// An order intake routed, for [`Projection::record_routed`] (its lines apart, in
/// [`Projection::record_routed_with_lines`]).
#[derive(Debug, Clone)]
pub struct RoutedOrder {
    pub id: String,
    pub store_id: String,
    pub customer_id: String,
    pub at: String,
    pub placed_at: String,
    pub promised_at: String,
    pub total_minor: i64,
    pub delivery_fee_minor: i64,
    /// The currency of the amounts (the confirmation e-mail states the total in it).
    pub currency: String,
    pub lat: f64,
    pub lon: f64,
    /// The cloud's own transitions: (from, to, note).
    pub steps: Vec<(Option<&'static str>, &'static str, &'static str)>,
}

/// A line of an order intake routed, for [`Projection::record_routed_with_lines`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedLine {
    pub line_no: i64,
    pub product_id: String,
    pub qty: i64,
    pub unit_price_minor: i64,
}

/// A line of an order at one store, as routed there and as the store reported its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedLine {
    pub line_no: i64,
    pub product_id: String,
    pub qty: i64,
    pub unit_price_minor: i64,
    pub picked_qty: i64,
    pub short_qty: i64,
    pub substitute_product_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub status: String,
    pub from: Option<String>,
    pub at: String,
    pub store_id: String,
    pub source: String,
    pub actor: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub id: String,
    pub store_id: String,
    pub customer_id: Option<String>,
    pub status: String,
    pub status_at: String,
    pub placed_at: String,
    pub promised_at: Option<String>,
    pub total_minor: i64,
    pub delivery_fee_minor: i64,
    pub timeline: Vec<TimelineEntry>,
}

/// One order of a customer's history.
#[derive(Debug, Clone, Serialize)]
pub struct OrderSummary {
    pub id: String,
    pub store_id: String,
    pub status: String,
    pub status_at: String,
    pub placed_at: String,
    pub promised_at: Option<String>,
    pub total_minor: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreFigures {
    pub store_id: String,
    pub open_orders: u32,
    pub picked_up: u32,
    pub delivered: u32,
    pub delivered_on_time: u32,
    pub riders_seen: u32,
}
