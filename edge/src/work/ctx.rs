//! Who and when: the context every write carries, and the changes it made.
//!
//! Domain functions take a [`Ctx`] so that every row they write names the store, the actor and
//! one timestamp, and so that the stock and order changes they make are collected as they go;
//! after the write commits those become the events of the live stream.

use std::collections::BTreeSet;

use crate::kinds::MoveKind;
use crate::kinds::Status;

/// A new row key: UUIDv7, time-ordered, unique across replicas.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Now and later, in the text every table stores (the clock is shared with the riders service).
pub use crate::clock::{hours_from_now, now};

/// A change to an order, announced on the live stream once committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChange {
    pub order_id: String,
    pub status: Status,
    /// What happened: `arrived`, `status`, `scan`, `short`, `substitute`, `tote`.
    pub change: &'static str,
    /// The status change's note, as stored in `order_events` (a weight override says who).
    pub note: Option<String>,
}

/// Cash a rider handed in (and the shift it closed), announced on the live stream once
/// committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashChange {
    pub handin_id: String,
    pub rider_id: String,
    pub amount_minor: i64,
    pub expected_minor: i64,
    pub difference_minor: i64,
    pub currency: String,
}

/// The context of one write: store, actor, time, and what it changed.
#[derive(Debug)]
pub struct Ctx {
    pub store_id: String,
    pub actor: String,
    pub at: String,
    pub(crate) orders: Vec<OrderChange>,
    pub(crate) products: BTreeSet<String>,
    pub(crate) moves: Vec<MoveKind>,
    pub(crate) cash: Vec<CashChange>,
}

impl Ctx {
    pub fn new(store_id: impl Into<String>, actor: impl Into<String>) -> Self {
        Self {
            store_id: store_id.into(),
            actor: actor.into(),
            at: now(),
            orders: Vec::new(),
            products: BTreeSet::new(),
            moves: Vec::new(),
            cash: Vec::new(),
        }
    }

    pub(crate) fn cash_handed_in(&mut self, change: CashChange) {
        self.cash.push(change);
    }

    pub(crate) fn order_changed(&mut self, order_id: &str, status: Status, change: &'static str) {
        self.orders.push(OrderChange {
            order_id: order_id.to_owned(),
            status,
            change,
            note: None,
        });
    }

    /// A status change with the note stored with it.
    pub(crate) fn order_moved(&mut self, order_id: &str, status: Status, note: Option<&str>) {
        self.orders.push(OrderChange {
            order_id: order_id.to_owned(),
            status,
            change: "status",
            note: note.map(str::to_owned),
        });
    }

    pub(crate) fn stock_moved(&mut self, product_id: &str, kind: MoveKind) {
        self.products.insert(product_id.to_owned());
        self.moves.push(kind);
    }
}
