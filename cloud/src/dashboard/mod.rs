//! HQ's live dashboard: one snapshot of every store, open order and rider, built by one task
//! and shared by every client.
//!
//! Operators keep the dashboard open all day, several at a time, so a client never makes the
//! cloud read anything: the [`Dashboard`] builds a [`Snapshot`] from the read model, HQ's
//! database and the intake's liveness, serialises it once, and publishes it through a `watch`
//! channel that the JSON and SSE handlers only borrow from. It rebuilds after each projection
//! step and each of the cloud's own writes to the read model (a new order, a reroute), after
//! HQ changes a profile, a pause, a rider or a coupon, and every 5 seconds (ages pass, riders
//! fall silent), but at most every 500 ms; a build whose content equals the last one is not
//! published again, so clients hear of changes only.
//!
//! The parts: `snapshot` (the shape and the rules, pure), `queries` (the read model, in one
//! read transaction, every query bounded), `detail` (HQ's view of one order) and `lists` (the
//! catalog and the roster for the dashboard's pages).

pub mod detail;
pub mod lists;
mod queries;
pub mod snapshot;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::hq::Hq;
use crate::intake::Intake;
use crate::projection::{Backend, Projection};
use crate::stores::Stores;

pub use snapshot::Snapshot;

use snapshot::Facts;

/// The fastest the dashboard rebuilds, however busy the read model is.
const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// The slowest: ages and riders going offline change with time alone.
const REFRESH: Duration = Duration::from_secs(5);

/// The window of a store's customer-rating figure.
pub const RATINGS_WINDOW: time::Duration = time::Duration::days(7);

/// How long a request waits for the first snapshot after the cloud starts.
const FIRST_BUILD_WAIT: Duration = Duration::from_secs(10);

/// A snapshot and its JSON, as every client gets it.
#[derive(Debug)]
pub struct Published {
    pub snapshot: Snapshot,
    pub json: String,
}

impl Published {
    pub fn version(&self) -> u64 {
        self.snapshot.version
    }
}

/// What the dashboard reads from, and what it publishes.
#[derive(Debug, Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hq: Hq,
    projection: Projection,
    stores: Arc<Stores>,
    intake: Arc<Intake>,
    /// The intake's offline grace: a store is online as routing sees it.
    grace: Duration,
    /// The first version this process publishes.
    first_version: u64,
    published: watch::Sender<Arc<Published>>,
    /// One build at a time, so versions follow the order of builds.
    building: tokio::sync::Mutex<()>,
    past_hours: std::sync::Mutex<Option<PastHours>>,
}

/// The series' figures of the hours before the current one, as last read: reused while the
/// read model's fingerprint of those hours stays the same (reading 24 hours of orders is most
/// of a build's cost; a finished hour changes only when a store catches up on old events).
#[derive(Debug, Clone)]
struct PastHours {
    /// The hour that was current then (RFC 3339).
    current_hour: String,
    fingerprint: queries::PastFingerprint,
    placed: BTreeMap<String, u32>,
    delivered: BTreeMap<String, (u32, u32)>,
    pick: BTreeMap<String, f64>,
}

impl PastHours {
    /// The hours before `current_hour` of a whole series just read.
    fn of(current_hour: String, fingerprint: queries::PastFingerprint, facts: &Facts) -> Self {
        let key = snapshot::hour_key(&current_hour).to_owned();
        fn before<V: Copy>(hours: &BTreeMap<String, V>, key: &str) -> BTreeMap<String, V> {
            hours
                .range::<str, _>((Bound::Unbounded, Bound::Excluded(key)))
                .map(|(hour, v)| (hour.clone(), *v))
                .collect()
        }
        Self {
            placed: before(&facts.placed, &key),
            delivered: before(&facts.delivered, &key),
            pick: before(&facts.pick, &key),
            current_hour,
            fingerprint,
        }
    }

    /// Adds these hours to a read of the current hour.
    fn fill(self, facts: &mut Facts) {
        facts.placed.extend(self.placed);
        facts.delivered.extend(self.delivered);
        facts.pick.extend(self.pick);
    }
}

impl Dashboard {
    pub fn new(
        hq: Hq,
        projection: Projection,
        stores: Arc<Stores>,
        intake: Arc<Intake>,
        grace: Duration,
    ) -> Self {
        let started_ms = crate::clock::now().unix_timestamp_nanos() / 1_000_000;
        let empty = Snapshot {
            version: 0,
            at: String::new(),
            stores: Vec::new(),
            orders: Vec::new(),
            orders_omitted: 0,
            riders: Vec::new(),
            series: snapshot::Series {
                hours: Vec::new(),
                orders: Vec::new(),
                delivered: Vec::new(),
                on_time_share: Vec::new(),
                pick_time_s: Vec::new(),
            },
        };
        Self {
            inner: Arc::new(Inner {
                hq,
                projection,
                stores,
                intake,
                grace,
                first_version: u64::try_from(started_ms).unwrap_or(0).saturating_add(1),
                published: watch::Sender::new(Arc::new(Published {
                    snapshot: empty,
                    json: String::new(),
                })),
                building: tokio::sync::Mutex::new(()),
                past_hours: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Every published snapshot, newest only (a slow client skips versions, never lags).
    /// Version 0 means none has been built yet.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.inner.published.subscribe()
    }

    /// The latest snapshot, waiting for the first build after start; `None` if it does not
    /// come in time.
    pub async fn latest(&self) -> Option<Arc<Published>> {
        let mut receiver = self.subscribe();
        let ready = tokio::time::timeout(
            FIRST_BUILD_WAIT,
            receiver.wait_for(|published| published.version() > 0),
        )
        .await;
        match ready {
            Ok(Ok(published)) => Some(published.clone()),
            _ => None,
        }
    }

    /// Rebuilds until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut projected = self.inner.projection.projected();
        let mut written = self.inner.projection.written();
        let mut hq = self.inner.hq.changed();
        loop {
            let started = tokio::time::Instant::now();
            // Marked seen before the build reads: a change during the build triggers the next.
            projected.borrow_and_update();
            written.borrow_and_update();
            hq.borrow_and_update();
            if let Err(error) = self.rebuild().await {
                tracing::warn!(%error, "dashboard build failed; the last snapshot stays");
            }
            tokio::select! {
                () = tokio::time::sleep_until(started + REFRESH) => {}
                _ = projected.changed() => {}
                _ = written.changed() => {}
                _ = hq.changed() => {}
                () = shutdown.cancelled() => return,
            }
            // Changes arriving meanwhile are folded into the next build.
            tokio::select! {
                () = tokio::time::sleep_until(started + MIN_INTERVAL) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Builds a snapshot now and publishes it if it differs from the last one; returns what is
    /// published. The loop calls this; tests and benchmarks call it to read a fresh one.
    pub async fn rebuild(&self) -> Result<Arc<Published>, CloudError> {
        let _one_at_a_time = self.inner.building.lock().await;
        let now = crate::clock::now();
        let mut snapshot = self.build(now).await?;
        let current = self.inner.published.borrow().clone();
        if current.version() > 0 && current.snapshot.same_content(&snapshot) {
            return Ok(current);
        }
        snapshot.version = if current.version() > 0 {
            current.version().saturating_add(1)
        } else {
            self.inner.first_version
        };
        let json = serde_json::to_string(&snapshot)
            .map_err(|e| CloudError::Task(format!("dashboard snapshot: {e}")))?;
        let published = Arc::new(Published { snapshot, json });
        self.inner.published.send_replace(published.clone());
        Ok(published)
    }

    async fn build(&self, now: time::OffsetDateTime) -> Result<Snapshot, CloudError> {
        let inner = &self.inner;
        let stores = inner.hq.stores();
        // Customers' ratings live in hq.db, beside the roster, not in the read model.
        let week_ago = crate::clock::rfc3339(now - RATINGS_WINDOW);
        let (roster, catalog_ids, ratings) = tokio::try_join!(
            inner.hq.riders(),
            self.catalog_ids(),
            inner.hq.store_ratings(&week_ago)
        )?;
        let hours = snapshot::series_hours(now);
        let (first_hour, current_hour) = match (hours.first(), hours.last()) {
            (Some(first), Some(last)) => {
                (crate::clock::rfc3339(*first), crate::clock::rfc3339(*last))
            }
            _ => return Err(CloudError::Task("the series has no hours".into())),
        };
        let past = inner
            .past_hours
            .lock()
            .ok()
            .and_then(|cached| cached.clone())
            .filter(|p| p.current_hour == current_hour);
        let window = queries::Window {
            now: crate::clock::rfc3339(now),
            hour_ago: crate::clock::rfc3339(now - time::Duration::hours(1)),
            half_hour_ago: crate::clock::rfc3339(now - time::Duration::minutes(30)),
            first_hour,
            current_hour: current_hour.clone(),
            known_past: past.as_ref().map(|p| p.fingerprint),
            max_orders: snapshot::MAX_ORDERS,
            catalog_ids,
        };
        let queries::Read {
            mut facts,
            whole_series,
        } = match inner.projection.backend() {
            Backend::Sqlite(db) => db.read(move |conn| queries::facts(conn, &window)).await?,
            Backend::Postgres(pg) => queries::pg::facts(pg, &window).await?,
        };
        match (whole_series, past) {
            (Some(fingerprint), _) => {
                let read = PastHours::of(current_hour, fingerprint, &facts);
                if let Ok(mut cached) = inner.past_hours.lock() {
                    *cached = Some(read);
                }
            }
            // The read covered the current hour only; the finished ones are as last read.
            (None, Some(past)) => past.fill(&mut facts),
            (None, None) => {}
        }
        facts.ratings = ratings;
        let liveness = &inner.intake.liveness;
        let contact = |store_id: &str| snapshot::Contact {
            online: liveness.online(store_id, inner.grace),
            last_contact_at: liveness.last_contact(store_id).and_then(|ago| {
                let ago = time::Duration::try_from(ago).ok()?;
                Some(crate::clock::rfc3339(now - ago))
            }),
        };
        Ok(snapshot::assemble(facts, &stores, &roster, &contact, now))
    }

    /// The active products of the catalog.
    async fn catalog_ids(&self) -> Result<Vec<String>, CloudError> {
        Ok(self
            .inner
            .stores
            .catalog()
            .read(|conn| {
                conn.prepare_cached("SELECT id FROM products WHERE active = 1 ORDER BY id")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(flashkart_sync::Error::from)
            })
            .await?)
    }
}
