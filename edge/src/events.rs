//! The live stream of queue and stock changes that tablets follow.
//!
//! Each committed write becomes events: one per order change, one per product whose stock
//! moved (with its new levels), one per cash hand-in. They are numbered inside the writer, in commit order, so a
//! client that sees them out of order (they are published after the commit, by the task that
//! asked for the write) keeps the highest `seq` per order or product. A tokio broadcast channel
//! fans them out; a client too slow for its buffer is told how many it missed and should
//! reload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::kinds::Status;
use crate::work::stock::Level;

/// A change, as the stream sends it (JSON, `type` tells which).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Order {
        seq: u64,
        order_id: String,
        status: Status,
        /// `arrived`, `status`, `scan`, `short`, `substitute`, `tote`.
        change: String,
        /// Who made the change (staff id, or `system`).
        #[serde(default)]
        actor: String,
        /// The note stored with a status change (the label id; who overrode a weight check).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    Stock {
        seq: u64,
        #[serde(flatten)]
        level: Level,
    },
    /// Store hardware: a device's health, a printer's faults, a print job, or what a scan from
    /// a bound scanner did (applied, or refused with the reason in `message`).
    Device {
        seq: u64,
        device: String,
        /// `health`, `printer`, `print`, `scan`.
        change: String,
        /// False for a refusal, a fault or a lost device.
        ok: bool,
        /// What the tablet shows ("printer label-1: paper out").
        message: String,
        /// The details (the scan result, the job outcome...).
        #[serde(default)]
        detail: serde_json::Value,
    },
    /// A rider handed cash in at the store, which closed the rider's shift here.
    Cash {
        seq: u64,
        handin_id: String,
        rider_id: String,
        amount_minor: i64,
        expected_minor: i64,
        /// Handed in minus expected: negative when cash is missing.
        difference_minor: i64,
        currency: String,
        /// The member of staff who took it.
        staff_id: String,
        shift_closed: bool,
    },
}

impl Event {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Order { .. } => "order",
            Self::Stock { .. } => "stock",
            Self::Device { .. } => "device",
            Self::Cash { .. } => "cash",
        }
    }
}

/// Numbers and fans out events.
#[derive(Debug, Clone)]
pub struct Hub {
    sender: broadcast::Sender<Event>,
    seq: Arc<AtomicU64>,
}

impl Hub {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(16));
        Self {
            sender,
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The next sequence number (call inside the writer, so numbers follow commit order).
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The last number handed out.
    pub fn current_seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    pub fn publish(&self, events: Vec<Event>) {
        for event in events {
            // No subscriber is not an error: nobody is watching.
            let _ = self.sender.send(event);
        }
    }
}
