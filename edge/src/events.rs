//! The live stream of queue and stock changes that tablets follow.
//!
//! Each committed write becomes events: one per order change, one per product whose stock
//! moved (with its new levels), one per cash hand-in. They are numbered inside the writer, in commit order, so a
//! client that sees them out of order (they are published after the commit, by the task that
//! asked for the write) keeps the highest `seq` per order or product. A tokio broadcast channel
//! fans them out; a client too slow for its buffer is told how many it missed and should
//! reload.
//!
//! A tablet on the store's Wi-Fi drops its connection often. The hub keeps the last
//! [`REPLAY`] events so a client that reconnects with the SSE `Last-Event-ID` gets what it
//! missed; if some of that has already left the ring, it is told to reload instead
//! ([`Hub::since`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    /// The link to the cloud came up or went down (the tablet's offline banner).
    Sync {
        seq: u64,
        online: bool,
        #[serde(default)]
        last_error: Option<String>,
        #[serde(default)]
        last_success_unix_ms: Option<u64>,
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
            Self::Sync { .. } => "sync",
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            Self::Order { seq, .. }
            | Self::Stock { seq, .. }
            | Self::Device { seq, .. }
            | Self::Cash { seq, .. }
            | Self::Sync { seq, .. } => *seq,
        }
    }
}

/// Events kept for clients that reconnect.
pub const REPLAY: usize = 1024;

/// What a reconnecting client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Every event it missed that is still held, in publication order.
    Replay(Vec<Event>),
    /// Some of what it missed is gone: it must reload its state.
    Reload,
}

/// The recent events, in publication order, and the highest seq that has left them.
#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Event>,
    evicted_max_seq: u64,
}

/// Numbers and fans out events.
#[derive(Debug, Clone)]
pub struct Hub {
    sender: broadcast::Sender<Event>,
    seq: Arc<AtomicU64>,
    recent: Arc<Mutex<Ring>>,
}

impl Hub {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(16));
        Self {
            sender,
            seq: Arc::new(AtomicU64::new(0)),
            recent: Arc::default(),
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
        // Kept before it is sent, so a client that subscribes and then asks `since` cannot
        // miss an event in between (it may see one twice; `seq` tells).
        if let Ok(mut ring) = self.recent.lock() {
            for event in &events {
                if ring.events.len() == REPLAY
                    && let Some(old) = ring.events.pop_front()
                {
                    ring.evicted_max_seq = ring.evicted_max_seq.max(old.seq());
                }
                ring.events.push_back(event.clone());
            }
        }
        for event in events {
            // No subscriber is not an error: nobody is watching.
            let _ = self.sender.send(event);
        }
    }

    /// The events after `last_seq` that a client reconnecting with it missed. Seqs are handed
    /// out before commit and published after, so they arrive slightly out of order and some
    /// are never published (a write that failed): what decides is whether any event with a
    /// seq above `last_seq` has already left the ring.
    pub fn since(&self, last_seq: u64) -> Resume {
        let Ok(ring) = self.recent.lock() else {
            return Resume::Reload;
        };
        if last_seq > self.current_seq() || ring.evicted_max_seq > last_seq {
            return Resume::Reload;
        }
        Resume::Replay(
            ring.events
                .iter()
                .filter(|e| e.seq() > last_seq)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync_event(seq: u64) -> Event {
        Event::Sync {
            seq,
            online: true,
            last_error: None,
            last_success_unix_ms: None,
        }
    }

    fn seqs(resume: Resume) -> Option<Vec<u64>> {
        match resume {
            Resume::Replay(events) => Some(events.iter().map(Event::seq).collect()),
            Resume::Reload => None,
        }
    }

    #[test]
    fn replays_what_a_client_missed_including_late_publications() {
        let hub = Hub::new(16);
        let seqs_out: Vec<u64> = (0..4).map(|_| hub.next_seq()).collect();
        // Published out of order, as two writers' publications may be.
        hub.publish(vec![sync_event(seqs_out[0]), sync_event(seqs_out[2])]);
        hub.publish(vec![sync_event(seqs_out[1]), sync_event(seqs_out[3])]);
        assert_eq!(seqs(hub.since(1)), Some(vec![3, 2, 4]));
        assert_eq!(seqs(hub.since(4)), Some(vec![]));
        // A seq this hub never handed out (the daemon restarted): reload.
        assert_eq!(seqs(hub.since(99)), None);
    }

    #[test]
    fn a_gap_that_left_the_ring_asks_for_a_reload() {
        let hub = Hub::new(16);
        for _ in 0..REPLAY + 10 {
            let seq = hub.next_seq();
            hub.publish(vec![sync_event(seq)]);
        }
        assert_eq!(seqs(hub.since(5)), None);
        assert_eq!(
            seqs(hub.since(10)),
            Some((11..=(REPLAY as u64 + 10)).collect())
        );
    }
}
