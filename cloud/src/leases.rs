//! Which cloud instance serves which store, when several share one PostgreSQL database.
//!
//! A store's replica is a file of the instance that serves its sync sessions, so exactly one
//! instance may apply its changes and acknowledge them. That instance holds the store's lease:
//! a row in `store_leases` with an expiry it renews every third of the lease time, and an
//! epoch that grows each time the lease changes hands. Every time comparison is PostgreSQL's
//! `now()`, one clock for all instances.
//!
//! An instance asked about a store leased to another forwards the request to the owner's
//! address (`http/sync.rs`). An instance that dies stops renewing, and its stores go to
//! whichever instance an edge reaches next once the lease runs out; a clean stop releases
//! them at once. The epoch fences a stale owner (one that was paused past its lease, say): a
//! push is acknowledged only after the instance has checked, after applying it, that the lease
//! is still its own at the epoch it took, so an edge never holds an acknowledgement from an
//! instance that had lost the store. The new owner's replica lacks what the old one applied;
//! the edge's next hello learns the new replica's position and pushes from there, so nothing
//! acknowledged is lost and replaying what the replica has is a no-op.
//!
//! The lease row also carries when the store was last heard from (`last_contact`): only the
//! holder sees a store's requests, yet every instance routes orders to it and shows HQ when
//! it was last heard from. The holder writes the contact it knows of with each renewal (a
//! [`ContactSource`], the intake's liveness, handed in after both are built so this module
//! does not depend on the intake), and every instance reads all stores' contacts back in the
//! same loop into memory, so a routing decision asks no database. A contact is thus up to
//! two renewal periods (two thirds of the lease time) old when another instance reads it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::postgres::{self, Postgres};

const MIGRATIONS: &[postgres::Migration] = &[
    postgres::Migration {
        version: 1,
        name: "store leases",
        sql: "CREATE TABLE store_leases (
            store_id TEXT PRIMARY KEY NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
            owner TEXT NOT NULL,
            owner_url TEXT NOT NULL,
            epoch BIGINT NOT NULL CHECK (epoch > 0),
            expires_at TIMESTAMPTZ NOT NULL
        )",
    },
    postgres::Migration {
        version: 2,
        name: "store last contact",
        sql: "ALTER TABLE store_leases ADD COLUMN last_contact TIMESTAMPTZ",
    },
];

/// When stores were last heard from, as one source knows it.
pub trait ContactSource: Send + Sync + std::fmt::Debug {
    /// How long ago `store_id` was last heard from: zero while one of its requests is in
    /// flight, `None` if never as far as this source knows.
    fn since_contact(&self, store_id: &str) -> Option<Duration>;
}

/// A store's row of the lease table as last read.
#[derive(Debug, Clone, Copy)]
pub struct SharedContact {
    /// How long before `read` the store was last heard from (by PostgreSQL's clock, so no two
    /// hosts' clocks are compared); `None` if never.
    age: Option<Duration>,
    read: Instant,
    /// Whether its lease was unexpired then: some instance was serving it.
    pub leased: bool,
}

impl SharedContact {
    /// How long ago the store was last heard from, by the holder's account.
    pub fn since(&self) -> Option<Duration> {
        self.age.map(|age| age + self.read.elapsed())
    }
}

/// Who serves a store right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This instance, at this epoch.
    Us { epoch: i64 },
    /// Another live instance, reachable at this base URL.
    Other { url: String },
}

/// This instance's leases.
#[derive(Debug)]
pub struct Leases {
    pg: Postgres,
    /// This instance's id, new at every start: a restarted instance is a new owner.
    instance: String,
    /// Where the other instances reach this one.
    url: String,
    ttl: Duration,
    /// The stores this instance believes it holds, with their epochs.
    held: Mutex<HashMap<String, i64>>,
    /// True once the leases are given up at shutdown: requests still arriving while the server
    /// drains must not take them back. Claims hold it shared for their whole statement, so the
    /// release (exclusive) waits for a claim already under way instead of being undone by it.
    released: tokio::sync::RwLock<bool>,
    /// This instance's own view of contacts, written to the rows of the leases it holds.
    local: OnceLock<Arc<dyn ContactSource>>,
    /// Every store's row as of the latest refresh.
    shared: RwLock<HashMap<String, SharedContact>>,
}

impl Leases {
    pub async fn open(pg: Postgres, url: String, ttl: Duration) -> Result<Self, CloudError> {
        pg.migrate("leases", MIGRATIONS).await?;
        let instance = uuid::Uuid::now_v7().to_string();
        // Leases held at this address belong to an earlier run of this instance: this one has
        // the address now, so that run is gone. Expire them rather than have its stores wait
        // out the lease time after a crash and restart.
        let inherited = pg
            .client()
            .await?
            .execute(
                "UPDATE store_leases SET expires_at = now()
                 WHERE owner_url = $1 AND owner <> $2 AND expires_at > now()",
                &[&url, &instance],
            )
            .await?;
        if inherited > 0 {
            tracing::info!(inherited, "leases of this address's previous run expired");
        }
        tracing::info!(%instance, %url, ttl_ms = ttl.as_millis() as u64, "store leases");
        Ok(Self {
            pg,
            instance,
            url,
            ttl,
            held: Mutex::new(HashMap::new()),
            released: tokio::sync::RwLock::new(false),
            local: OnceLock::new(),
            shared: RwLock::new(HashMap::new()),
        })
    }

    /// Where this instance learns when its stores were last heard from; set once (a later
    /// call is ignored). Without it the renewals record only the contacts of claims.
    pub fn set_contact_source(&self, source: Arc<dyn ContactSource>) {
        if self.local.set(source).is_err() {
            tracing::warn!("store leases: a second contact source ignored");
        }
    }

    /// `store_id`'s lease row as of the latest refresh, if it has one.
    pub fn contact(&self, store_id: &str) -> Option<SharedContact> {
        self.shared
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(store_id)
            .copied()
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The stores held now, with their epochs.
    pub fn held(&self) -> HashMap<String, i64> {
        self.lock_held().clone()
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // A panic while holding this lock cannot leave the map half-changed (single inserts
        // and removes), so a poisoned lock is still a correct map.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes or renews the store's lease unless another instance holds it unexpired. Only a
    /// store's request asks, so a lease taken is also a contact.
    pub async fn claim(&self, store_id: &str) -> Result<Owner, CloudError> {
        let released = self.released.read().await;
        if *released {
            return Err(CloudError::Unavailable(
                "this cloud instance is stopping; try again".into(),
            ));
        }
        let client = self.pg.client().await?;
        let ttl = self.ttl.as_secs_f64();
        let taken = client
            .query_opt(
                "INSERT INTO store_leases
                    (store_id, owner, owner_url, epoch, expires_at, last_contact)
                 VALUES ($1, $2, $3, 1, now() + make_interval(secs => $4), now())
                 ON CONFLICT (store_id) DO UPDATE SET
                    owner = EXCLUDED.owner,
                    owner_url = EXCLUDED.owner_url,
                    epoch = CASE WHEN store_leases.owner = EXCLUDED.owner
                                 THEN store_leases.epoch ELSE store_leases.epoch + 1 END,
                    expires_at = EXCLUDED.expires_at,
                    last_contact = EXCLUDED.last_contact
                 WHERE store_leases.owner = EXCLUDED.owner OR store_leases.expires_at <= now()
                 RETURNING epoch",
                &[&store_id, &self.instance, &self.url, &ttl],
            )
            .await?;
        if let Some(row) = taken {
            let epoch: i64 = row.get(0);
            let previous = self.lock_held().insert(store_id.to_owned(), epoch);
            if previous != Some(epoch) {
                tracing::info!(store = store_id, epoch, "store lease taken");
            }
            return Ok(Owner::Us { epoch });
        }
        self.lock_held().remove(store_id);
        let url = client
            .query_opt(
                "SELECT owner_url FROM store_leases WHERE store_id = $1",
                &[&store_id],
            )
            .await?
            .map(|row| row.get::<_, String>(0))
            .ok_or_else(|| CloudError::UnknownStore(store_id.to_owned()))?;
        Ok(Owner::Other { url })
    }

    /// The owner as this instance last knew it: held means ours without asking PostgreSQL
    /// (for reads, where serving a store just lost does no harm); else a [`claim`](Self::claim).
    pub async fn owner(&self, store_id: &str) -> Result<Owner, CloudError> {
        let held = self.lock_held().get(store_id).copied();
        match held {
            Some(epoch) => Ok(Owner::Us { epoch }),
            None => self.claim(store_id).await,
        }
    }

    /// Who holds the store's lease now, without taking it: `None` when nobody does.
    pub async fn holder(&self, store_id: &str) -> Result<Option<Owner>, CloudError> {
        if let Some(epoch) = self.lock_held().get(store_id).copied() {
            return Ok(Some(Owner::Us { epoch }));
        }
        let row = self
            .pg
            .client()
            .await?
            .query_opt(
                "SELECT owner, owner_url, epoch FROM store_leases
                 WHERE store_id = $1 AND expires_at > now()",
                &[&store_id],
            )
            .await?;
        Ok(row.map(|row| {
            if row.get::<_, &str>(0) == self.instance {
                Owner::Us { epoch: row.get(2) }
            } else {
                Owner::Other { url: row.get(1) }
            }
        }))
    }

    /// The fence: whether the store's lease is still this instance's at `epoch` and unexpired.
    pub async fn still_ours(&self, store_id: &str, epoch: i64) -> Result<bool, CloudError> {
        let row = self
            .pg
            .client()
            .await?
            .query_opt(
                "SELECT 1 FROM store_leases
                 WHERE store_id = $1 AND owner = $2 AND epoch = $3 AND expires_at > now()",
                &[&store_id, &self.instance, &epoch],
            )
            .await?;
        if row.is_none() {
            self.lose(store_id);
        }
        Ok(row.is_some())
    }

    fn lose(&self, store_id: &str) {
        if self.lock_held().remove(store_id).is_some() {
            tracing::warn!(store = store_id, "store lease lost to another instance");
        }
    }

    /// Extends every lease held, recording when each store was last heard from here (never
    /// moving it back); those another instance took meanwhile are dropped.
    pub async fn renew(&self) -> Result<(), CloudError> {
        let held = self.held();
        if held.is_empty() {
            return Ok(());
        }
        let stores: Vec<String> = held.keys().cloned().collect();
        let since: Vec<Option<f64>> = stores
            .iter()
            .map(|store| {
                self.local
                    .get()
                    .and_then(|local| local.since_contact(store))
                    .map(|since| since.as_secs_f64())
            })
            .collect();
        let ttl = self.ttl.as_secs_f64();
        let renewed: HashMap<String, i64> = self
            .pg
            .client()
            .await?
            .query(
                "UPDATE store_leases AS l SET
                    expires_at = now() + make_interval(secs => $3),
                    last_contact = CASE WHEN c.since IS NULL THEN l.last_contact
                        ELSE GREATEST(l.last_contact, now() - make_interval(secs => c.since)) END
                 FROM unnest($2::text[], $4::float8[]) AS c (store_id, since)
                 WHERE l.owner = $1 AND l.store_id = c.store_id
                 RETURNING l.store_id, l.epoch",
                &[&self.instance, &stores, &ttl, &since],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        for (store, epoch) in held {
            if renewed.get(&store) != Some(&epoch) {
                self.lose(&store);
            }
        }
        Ok(())
    }

    /// Reads every store's last contact and lease into memory, for [`contact`](Self::contact).
    /// The age is taken by PostgreSQL's clock and kept with this instance's instant of the
    /// read, so no two hosts' clocks are compared.
    pub async fn refresh(&self) -> Result<(), CloudError> {
        let client = self.pg.client().await?;
        // Before the query, so the age is never taken for younger than it is.
        let read = Instant::now();
        let rows = client
            .query(
                "SELECT store_id,
                    EXTRACT(EPOCH FROM now() - last_contact)::float8,
                    expires_at > now()
                 FROM store_leases",
                &[],
            )
            .await?;
        let shared: HashMap<String, SharedContact> = rows
            .iter()
            .map(|row| {
                let age: Option<f64> = row.get(1);
                let contact = SharedContact {
                    // A contact written by a transaction that started after this one read
                    // `now()` is a little in the future: it is now.
                    age: age.map(|age| Duration::try_from_secs_f64(age).unwrap_or_default()),
                    read,
                    leased: row.get(2),
                };
                (row.get(0), contact)
            })
            .collect();
        *self
            .shared
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = shared;
        Ok(())
    }

    /// Gives every lease up, so other instances take the stores at once. The rows stay, expired,
    /// so the next owner's epoch is still higher than this one's.
    pub async fn release_all(&self) -> Result<(), CloudError> {
        *self.released.write().await = true;
        self.lock_held().clear();
        let released = self
            .pg
            .client()
            .await?
            .execute(
                "UPDATE store_leases SET expires_at = now()
                 WHERE owner = $1 AND expires_at > now()",
                &[&self.instance],
            )
            .await?;
        self.lock_held().clear();
        tracing::info!(released, "store leases released");
        Ok(())
    }

    /// Renews (and reads every store's contact) every third of the lease time until shutdown,
    /// then releases.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.ttl / 3);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => break,
            }
            if let Err(error) = self.renew().await {
                // Not renewed, the leases run out and other instances take the stores; pushes
                // here are fenced meanwhile, so a failing database costs availability only.
                tracing::warn!(%error, "store leases not renewed");
            }
            if let Err(error) = self.refresh().await {
                // The copy ages meanwhile: stores heard from only elsewhere go offline here
                // after the grace, as they would with no shared contacts at all.
                tracing::warn!(%error, "stores' last contacts not read");
            }
        }
        if let Err(error) = self.release_all().await {
            tracing::warn!(%error, "store leases not released; they run out instead");
        }
    }
}
