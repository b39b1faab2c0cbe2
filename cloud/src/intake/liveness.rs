//! When each store's edge was last heard from: routing sends orders only to stores that are
//! online or were within the grace period, so an order does not wait on a store that is away.
//!
//! With several instances, a store's requests reach only the instance holding its lease
//! (`leases.rs`; the others forward them), so this instance's own view is not enough: once
//! [`Liveness::share`]d with the leases, the contacts the holders record in the lease table
//! (as of the last renewal, in memory: no query per routing decision) count as well. The
//! shared view lags by up to two thirds of the lease time, so the grace must be longer than
//! that or a connected store served elsewhere would flicker offline. Without leases (one
//! instance) only the own view counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::leases::{ContactSource, Leases};

/// When each store's edge was last heard from, and whether one is waiting on a long-poll now.
#[derive(Debug)]
pub struct Liveness {
    started: Instant,
    local: Arc<Local>,
    /// The contacts the lease holders record, once shared.
    shared: OnceLock<Arc<dyn ContactSource>>,
}

/// This instance's own view: per store, requests in flight and when the latest began or ended.
#[derive(Debug, Default)]
struct Local {
    seen: Mutex<HashMap<String, (u32, Instant)>>,
}

impl ContactSource for Local {
    fn since_contact(&self, store_id: &str) -> Option<Duration> {
        let seen = self.seen.lock().ok()?;
        seen.get(store_id).map(|(in_flight, last)| {
            if *in_flight > 0 {
                Duration::ZERO
            } else {
                last.elapsed()
            }
        })
    }
}

impl ContactSource for Leases {
    fn since_contact(&self, store_id: &str) -> Option<Duration> {
        self.contact(store_id)?.since()
    }
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
            local: Arc::new(Local::default()),
            shared: OnceLock::new(),
        }
    }
}

impl Liveness {
    /// Shares liveness with the other instances through the store leases: the leases record
    /// this instance's contacts with their renewals, and this instance counts what every
    /// holder recorded. Call once, after both are built; a later call is ignored.
    pub fn share(&self, leases: Arc<Leases>) {
        leases.set_contact_source(self.local.clone());
        self.share_view(leases);
    }

    fn share_view(&self, shared: Arc<dyn ContactSource>) {
        if self.shared.set(shared).is_err() {
            tracing::warn!("liveness already shared");
        }
    }

    /// Marks `store_id` seen now and in flight until the guard drops.
    pub fn enter(&self, store_id: &str) -> InFlight<'_> {
        if let Ok(mut seen) = self.local.seen.lock() {
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

    /// Whether `store_id` is connected now or was within `grace`, here or (shared) at the
    /// instance serving it (since the cloud started, a store not yet heard from here gets the
    /// same grace).
    pub fn online(&self, store_id: &str, grace: Duration) -> bool {
        let Ok(seen) = self.local.seen.lock() else {
            return false;
        };
        let here = match seen.get(store_id) {
            Some((in_flight, last)) => *in_flight > 0 || last.elapsed() <= grace,
            None => self.started.elapsed() <= grace,
        };
        drop(seen);
        here || self.shared(store_id).is_some_and(|since| since <= grace)
    }

    /// How long ago `store_id`'s latest request began or ended (here or, shared, at the
    /// instance serving it), or `None` if none has since the cloud started: HQ's dashboard
    /// shows when a store was last heard from.
    pub fn last_contact(&self, store_id: &str) -> Option<Duration> {
        let here = {
            let seen = self.local.seen.lock().ok()?;
            seen.get(store_id).map(|(_, last)| last.elapsed())
        };
        match (here, self.shared(store_id)) {
            (Some(here), Some(shared)) => Some(here.min(shared)),
            (here, shared) => here.or(shared),
        }
    }

    fn shared(&self, store_id: &str) -> Option<Duration> {
        self.shared.get()?.since_contact(store_id)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut seen) = self.liveness.local.seen.lock()
            && let Some(entry) = seen.get_mut(&self.store_id)
        {
            entry.0 = entry.0.saturating_sub(1);
            entry.1 = Instant::now();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A lease table's view: each store heard from this long before `at`.
    #[derive(Debug)]
    struct Table {
        at: Instant,
        ago: HashMap<String, Duration>,
    }

    impl ContactSource for Table {
        fn since_contact(&self, store_id: &str) -> Option<Duration> {
            self.ago.get(store_id).map(|ago| *ago + self.at.elapsed())
        }
    }

    fn table(stores: &[(&str, Duration)]) -> Arc<Table> {
        Arc::new(Table {
            at: Instant::now(),
            ago: stores
                .iter()
                .map(|(store, ago)| ((*store).to_owned(), *ago))
                .collect(),
        })
    }

    /// A liveness started `ago`.
    fn started(ago: Duration) -> Liveness {
        Liveness {
            started: Instant::now().checked_sub(ago).unwrap_or_else(Instant::now),
            ..Liveness::default()
        }
    }

    fn seen(liveness: &Liveness, store_id: &str, ago: Duration) {
        let at = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
        if let Ok(mut seen) = liveness.local.seen.lock() {
            seen.insert(store_id.to_owned(), (0, at));
        }
    }

    const GRACE: Duration = Duration::from_secs(60);
    const LONG: Duration = Duration::from_secs(600);
    const SHORT: Duration = Duration::from_secs(5);

    #[test]
    fn without_sharing_only_this_instance_counts() {
        let liveness = started(LONG);
        assert!(!liveness.online("never", GRACE), "the start grace is over");
        assert_eq!(liveness.last_contact("never"), None);
        seen(&liveness, "recent", SHORT);
        assert!(liveness.online("recent", GRACE));
        seen(&liveness, "away", LONG);
        assert!(!liveness.online("away", GRACE));
        let guard = liveness.enter("away");
        assert!(liveness.online("away", Duration::ZERO), "in flight");
        assert_eq!(liveness.local.since_contact("away"), Some(Duration::ZERO));
        drop(guard);
        assert!(liveness.local.since_contact("away").unwrap() < SHORT);

        let fresh = started(Duration::ZERO);
        assert!(fresh.online("never", GRACE), "within the start grace");
    }

    #[test]
    fn a_store_heard_from_by_another_instance_is_online_here() {
        let liveness = started(LONG);
        liveness.share_view(table(&[
            ("elsewhere", SHORT),
            ("gone", LONG),
            ("both", LONG),
            ("here", LONG),
        ]));
        assert!(liveness.online("elsewhere", GRACE));
        let since = liveness.last_contact("elsewhere").unwrap();
        assert!((SHORT..GRACE).contains(&since), "{since:?}");

        assert!(
            !liveness.online("gone", GRACE),
            "silent longer than the grace"
        );
        assert!(
            liveness.last_contact("gone").unwrap() >= LONG,
            "but heard from"
        );
        assert!(!liveness.online("unknown", GRACE));
        assert_eq!(liveness.last_contact("unknown"), None);

        // Seen here recently and long ago elsewhere: the latest contact counts.
        seen(&liveness, "here", SHORT);
        assert!(liveness.online("here", GRACE));
        assert!(liveness.last_contact("here").unwrap() < GRACE);
        // In flight here outweighs the table.
        let _guard = liveness.enter("both");
        assert!(liveness.online("both", GRACE));
        assert!(liveness.last_contact("both").unwrap() < SHORT);
    }

    #[test]
    fn the_table_only_adds_to_what_this_instance_saw() {
        // Just started and the table says long gone: the start grace still holds, as without
        // sharing (the table may predate a restart of every instance).
        let liveness = started(Duration::ZERO);
        liveness.share_view(table(&[("gone", LONG)]));
        assert!(liveness.online("gone", GRACE));
        // Seen here within the grace, the table's older contact does not make it offline.
        let liveness = started(LONG);
        liveness.share_view(table(&[("gone", LONG)]));
        seen(&liveness, "gone", SHORT);
        assert!(liveness.online("gone", GRACE));
    }
}
