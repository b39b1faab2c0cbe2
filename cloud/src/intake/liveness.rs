//! When each store's edge was last heard from: routing sends orders only to stores that are
//! online or were within the grace period, so an order does not wait on a store that is away.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When each store's edge was last heard from, and whether one is waiting on a long-poll now.
#[derive(Debug)]
pub struct Liveness {
    started: Instant,
    seen: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Held while a store's request is in flight (a long-poll may last many seconds).
#[derive(Debug)]
pub struct InFlight<'a> {
    liveness: &'a Liveness,
    store_id: String,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl Liveness {
    /// Marks `store_id` seen now and in flight until the guard drops.
    pub fn enter(&self, store_id: &str) -> InFlight<'_> {
        if let Ok(mut seen) = self.seen.lock() {
            let entry = seen
                .entry(store_id.to_owned())
                .or_insert((0, Instant::now()));
            entry.0 += 1;
            entry.1 = Instant::now();
        }
        InFlight {
            liveness: self,
            store_id: store_id.to_owned(),
        }
    }

    /// Whether `store_id` is connected now or was within `grace` (since the cloud started,
    /// a store not yet heard from gets the same grace).
    pub fn online(&self, store_id: &str, grace: Duration) -> bool {
        let Ok(seen) = self.seen.lock() else {
            return false;
        };
        match seen.get(store_id) {
            Some((in_flight, last)) => *in_flight > 0 || last.elapsed() <= grace,
            None => self.started.elapsed() <= grace,
        }
    }

    /// How long ago `store_id`'s latest request began or ended, or `None` if none has since the
    /// cloud started: HQ's dashboard shows when a store was last heard from.
    pub fn last_contact(&self, store_id: &str) -> Option<Duration> {
        let seen = self.seen.lock().ok()?;
        seen.get(store_id).map(|(_, last)| last.elapsed())
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut seen) = self.liveness.seen.lock()
            && let Some(entry) = seen.get_mut(&self.store_id)
        {
            entry.0 = entry.0.saturating_sub(1);
            entry.1 = Instant::now();
        }
    }
}
