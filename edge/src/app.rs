//! The running store: database, live stream, metrics and sessions, shared by every request.
//!
//! [`App::write`] is how every change happens: it runs a domain function on the store
//! database's single writer with a fresh [`Ctx`], turns what the function changed into
//! numbered events inside the same transaction, and publishes them only once the transaction is
//! durably committed. A refused write publishes nothing and changes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use flashkart_sync::StoreDb;
use rusqlite::Connection;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::{Config, VariableMeasureConfig};
use crate::devices::{Devices, Host};
use crate::events::{Event, Hub};
use crate::limits;
use crate::lockout::{LockInfo, Locked, SignInConfig, Throttle};
use crate::metrics::Metrics;
use crate::work::ctx::{Ctx, now};
use crate::work::pack::PackConfig;
use crate::work::staff::{self, NewStaff, Role, Session};
use crate::work::stock;

/// Shared state of the daemon.
#[derive(Debug)]
pub struct App {
    pub db: StoreDb,
    pub hub: Hub,
    pub metrics: Metrics,
    pub store_id: String,
    pub layout: VariableMeasureConfig,
    pub pack: PackConfig,
    /// The store's promise from placement to READY, in minutes (the queues' due times).
    pub ready_within_minutes: u32,
    pub dev_endpoints: bool,
    /// Scanners, scales and printers (none unless configured).
    pub devices: Devices,
    /// Cancelled when the daemon shuts down (ends live streams).
    pub shutdown: CancellationToken,
    /// The sync client's status, once sync with the cloud runs (`[sync]` configured).
    pub sync: std::sync::OnceLock<tokio::sync::watch::Receiver<flashkart_sync::client::SyncStatus>>,
    /// The riders' broker figures for `/metrics`, once the broker runs (`[riders]` configured).
    pub riders: std::sync::OnceLock<crate::riders::BrokerGauge>,
    /// Tells the riders service to re-read the roster (a hand-in closed a rider's shift), once
    /// the broker runs.
    pub rider_roster: std::sync::OnceLock<crate::riders::Roster>,
    session_hours: u32,
    /// Sessions already checked, by token hash.
    sessions: Mutex<SessionCache>,
    /// Sign-in back-off and lockout.
    pub throttle: Throttle,
}

/// Checked sessions, bounded. When full, an expired entry goes first, else the one cached
/// longest ago; an evicted session is still valid in the database and is read from it again
/// at its next request, so eviction costs a read, never a sign-in.
#[derive(Debug)]
struct SessionCache {
    entries: HashMap<String, (Session, u64)>,
    next: u64,
    cap: usize,
}

impl SessionCache {
    fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            next: 0,
            cap: cap.max(1),
        }
    }

    fn get(&self, hash: &str) -> Option<Session> {
        self.entries.get(hash).map(|(s, _)| s.clone())
    }

    fn insert(&mut self, hash: String, session: Session) {
        if !self.entries.contains_key(&hash) && self.entries.len() >= self.cap {
            let now = now();
            let victim = self
                .entries
                .iter()
                .min_by_key(|(_, (s, seq))| (s.expires_at > now, *seq))
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                self.entries.remove(&victim);
            }
        }
        self.next += 1;
        self.entries.insert(hash, (session, self.next));
    }

    fn remove(&mut self, hash: &str) {
        self.entries.remove(hash);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A successful sign-in.
#[derive(Debug, Clone, Serialize)]
pub struct SignedIn {
    pub token: String,
    #[serde(flatten)]
    pub session: Session,
}

impl App {
    pub fn new(db: StoreDb, config: &Config, shutdown: CancellationToken) -> Self {
        Self {
            db,
            hub: Hub::new(4096),
            metrics: Metrics::default(),
            store_id: config.store_id.clone(),
            layout: config.variable_measure.clone(),
            pack: config.pack.clone(),
            ready_within_minutes: config.ready_within_minutes,
            dev_endpoints: config.dev_endpoints,
            devices: Devices::new(&config.devices),
            shutdown,
            sync: std::sync::OnceLock::new(),
            riders: std::sync::OnceLock::new(),
            rider_roster: std::sync::OnceLock::new(),
            session_hours: config.session_hours.max(1),
            sessions: Mutex::new(SessionCache::new(config.sign_in.max_cached_sessions)),
            throttle: Throttle::new(config.sign_in.clone()),
        }
    }

    /// Runs `change` on the writer as `actor`; publishes its events after the durable commit.
    pub async fn write<T, F>(&self, actor: &str, change: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Ctx) -> Result<T, Error> + Send + 'static,
    {
        let hub = self.hub.clone();
        let store_id = self.store_id.clone();
        let actor = actor.to_owned();
        let (value, events, moves) = self
            .db
            .write(move |conn| {
                let mut ctx = Ctx::new(store_id, actor);
                let value = change(conn, &mut ctx)?;
                let mut events = Vec::with_capacity(ctx.orders.len() + ctx.products.len());
                for order in &ctx.orders {
                    events.push(Event::Order {
                        seq: hub.next_seq(),
                        order_id: order.order_id.clone(),
                        status: order.status,
                        change: order.change.to_owned(),
                        actor: ctx.actor.clone(),
                        note: order.note.clone(),
                    });
                }
                for product_id in &ctx.products {
                    events.push(Event::Stock {
                        seq: hub.next_seq(),
                        level: stock::level(conn, product_id)?,
                    });
                }
                for cash in &ctx.cash {
                    events.push(Event::Cash {
                        seq: hub.next_seq(),
                        handin_id: cash.handin_id.clone(),
                        rider_id: cash.rider_id.clone(),
                        amount_minor: cash.amount_minor,
                        expected_minor: cash.expected_minor,
                        difference_minor: cash.difference_minor,
                        currency: cash.currency.clone(),
                        staff_id: ctx.actor.clone(),
                        shift_closed: true,
                    });
                }
                Ok::<_, Error>((value, events, ctx.moves))
            })
            .await?;
        for kind in moves {
            self.metrics.stock_move(kind.as_str());
        }
        for event in &events {
            if let Event::Order {
                order_id,
                status,
                change,
                actor,
                ..
            } = event
            {
                self.metrics.order_change(change);
                crate::work::trace::order_changed(order_id, *status, change, actor);
            }
        }
        self.hub.publish(events);
        Ok(value)
    }

    /// Refuses local writes of cloud-owned rows (order intake, catalog seeding) once the store
    /// syncs with the cloud: the cloud would refuse to take them and sync would stall.
    pub fn require_no_cloud_sync(&self, what: &str) -> Result<(), Error> {
        if self.sync.get().is_some() {
            return Err(Error::Conflict(format!(
                "{what} comes from the cloud while this store syncs with it"
            )));
        }
        Ok(())
    }

    /// Runs `query` on a reader connection.
    pub async fn read<T, F>(&self, query: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        self.db.read(query).await
    }

    /// The session a bearer token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<Session, Error> {
        let hash = staff::token_hash(token);
        let cached = self
            .sessions
            .lock()
            .ok()
            .and_then(|sessions| sessions.get(&hash));
        if let Some(session) = cached.filter(|s| s.expires_at > now()) {
            return Ok(session);
        }
        let lookup = hash.clone();
        let session = self
            .read(move |conn| staff::session(conn, &lookup))
            .await?
            .ok_or_else(|| {
                Error::Unauthorized("sign in again: the token is unknown or expired".into())
            })?;
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(hash, session.clone());
        }
        Ok(session)
    }

    /// Sessions held in memory (bounded by `sign_in.max_cached_sessions`).
    pub fn cached_sessions(&self) -> usize {
        self.sessions.lock().map_or(0, |s| s.len())
    }

    /// The sign-in rules in force.
    pub fn sign_in_config(&self) -> &SignInConfig {
        self.throttle.config()
    }

    /// Checks a PIN and opens a session. `client` is the caller's address: failures count
    /// against it as well as against the account, and either being locked refuses the attempt
    /// before the PIN is checked.
    pub async fn sign_in(
        &self,
        staff_id: String,
        pin: String,
        client: Option<IpAddr>,
    ) -> Result<SignedIn, Error> {
        // Bounded before anything is tracked under these names.
        limits::id("staff_id", &staff_id)?;
        if pin.len() > 64 {
            return Err(Error::Invalid("`pin` is too long".into()));
        }
        let attempt = self.throttle.begin(&staff_id, client).map_err(|locked| {
            self.metrics.sign_in_failure(locked.reason());
            tracing::warn!(staff_id = ?staff_id, client = ?client, reason = locked.reason(),
                retry_after_secs = locked.retry_after().as_secs(), "sign-in refused: locked");
            locked_error(&staff_id, client, &locked)
        })?;
        let id = staff_id.clone();
        let checked = self
            .read(move |conn| staff::check_pin(conn, &id, &pin))
            .await?;
        let (name, role) = match checked {
            Ok(found) => found,
            Err(refusal) => {
                // Logged apart (the log is the store's own); the caller and /metrics hear the
                // same for both, so neither tells which ids exist.
                self.metrics.sign_in_failure("bad_credentials");
                tracing::warn!(staff_id = ?staff_id, client = ?client, reason = refusal.as_str(),
                    "sign-in refused");
                drop(attempt);
                return Err(staff::refused());
            }
        };
        self.throttle.succeeded(attempt);
        let (token, hash) = staff::new_token();
        let hours = self.session_hours;
        let per_staff = self.throttle.config().max_sessions_per_staff;
        let id = staff_id.clone();
        let (expires_at, ended) = self
            .write(&staff_id, move |conn, _| {
                staff::start_session(conn, &hash, &id, hours, per_staff)
            })
            .await?;
        self.forget_sessions(&ended);
        tracing::info!(staff_id = %staff_id, role = role.as_str(), client = ?client, "signed in");
        Ok(SignedIn {
            token,
            session: Session {
                staff_id,
                name,
                role,
                expires_at,
            },
        })
    }

    /// A manager clears an account's failed sign-ins and lock.
    pub fn unlock_account(&self, actor: &str, staff_id: &str) -> bool {
        let was_locked = self.throttle.unlock_account(staff_id);
        tracing::info!(staff_id = ?staff_id, by = actor, was_locked, "sign-in lock cleared");
        was_locked
    }

    /// A manager clears a client address's failed sign-ins and lock.
    pub fn unlock_client(&self, actor: &str, client: IpAddr) -> bool {
        let was_locked = self.throttle.unlock_client(client);
        tracing::info!(%client, by = actor, was_locked, "sign-in lock cleared");
        was_locked
    }

    /// Sign-in locks in force.
    pub fn locks(&self) -> Vec<LockInfo> {
        self.throttle.locks()
    }

    /// Adds or updates a member of staff.
    pub async fn add_staff(&self, actor: &str, new: NewStaff) -> Result<(), Error> {
        let pin = new.pin.clone();
        let min_len = self.throttle.config().min_pin_len;
        let hash = tokio::task::spawn_blocking(move || staff::hash_pin(&pin, min_len))
            .await
            .map_err(|e| Error::PinHash(e.to_string()))??;
        let id = new.id.clone();
        self.write(actor, move |conn, _| staff::upsert(conn, &new, &hash))
            .await?;
        // A new PIN is a fresh start for the account.
        self.throttle.unlock_account(&id);
        Ok(())
    }

    /// A manager sets a new PIN for a member of staff; their open sessions end.
    pub async fn reset_pin(&self, actor: &str, staff_id: String, pin: String) -> Result<(), Error> {
        limits::id("staff_id", &staff_id)?;
        let min_len = self.throttle.config().min_pin_len;
        let hash = tokio::task::spawn_blocking(move || staff::hash_pin(&pin, min_len))
            .await
            .map_err(|e| Error::PinHash(e.to_string()))??;
        let id = staff_id.clone();
        let ended = self
            .write(actor, move |conn, _| staff::set_pin(conn, &id, &hash))
            .await?;
        self.forget_sessions(&ended);
        self.throttle.unlock_account(&staff_id);
        tracing::info!(staff_id = %staff_id, by = actor, sessions_ended = ended.len(), "PIN reset");
        Ok(())
    }

    /// Ends the session `token` opened.
    pub async fn sign_out(&self, token: &str) -> Result<(), Error> {
        let session = self.authenticate(token).await?;
        let hash = staff::token_hash(token);
        let ended = hash.clone();
        self.write(&session.staff_id, move |conn, _| {
            staff::end_session(conn, &ended)
        })
        .await?;
        self.forget_sessions(&[hash]);
        tracing::info!(staff_id = %session.staff_id, "signed out");
        Ok(())
    }

    fn forget_sessions(&self, hashes: &[String]) {
        if let Ok(mut sessions) = self.sessions.lock() {
            for hash in hashes {
                sessions.remove(hash);
            }
        }
    }

    /// On a store with no staff, creates the `manager` account.
    pub async fn bootstrap_manager(&self, pin: Option<String>) -> Result<(), Error> {
        if self.read(staff::active_count).await? > 0 {
            return Ok(());
        }
        let generated = pin.is_none();
        let digits = self.throttle.config().min_pin_len.max(6);
        let pin = pin.unwrap_or_else(|| {
            (0..digits)
                .map(|_| char::from(b'0' + rand::random::<u8>() % 10))
                .collect()
        });
        self.add_staff(
            "system",
            NewStaff {
                id: "manager".into(),
                name: "Store manager".into(),
                role: Role::Manager,
                pin: pin.clone(),
            },
        )
        .await?;
        if generated {
            tracing::warn!(
                staff_id = "manager",
                pin = %pin,
                "first start: created the manager account with this generated PIN (shown once)"
            );
        } else {
            tracing::info!(
                staff_id = "manager",
                "first start: created the manager account"
            );
        }
        Ok(())
    }
}

fn locked_error(staff_id: &str, client: Option<IpAddr>, locked: &Locked) -> Error {
    let secs = locked.retry_after().as_secs_f64().ceil() as u64;
    let message = match locked {
        Locked::Account { .. } => format!(
            "too many failed sign-ins for `{staff_id}`: it is locked; try again in {secs} s, \
             or ask a manager to unlock it"
        ),
        Locked::Client { .. } => format!(
            "too many failed sign-ins from this device ({}): try again in {secs} s, or ask a \
             manager to unlock it",
            client.map_or_else(|| "unknown address".to_owned(), |c| c.to_string())
        ),
    };
    Error::Locked {
        message,
        retry_after_secs: secs.max(1),
    }
}

/// The devices reach the store through [`Host`]; `App` is the one host.
impl Host for App {
    fn devices(&self) -> &Devices {
        &self.devices
    }

    fn hub(&self) -> &Hub {
        &self.hub
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn store_id(&self) -> &str {
        &self.store_id
    }

    fn layout(&self) -> &VariableMeasureConfig {
        &self.layout
    }

    fn read<T, F>(&self, query: F) -> impl Future<Output = Result<T, Error>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        App::read(self, query)
    }

    fn write<T, F>(&self, actor: &str, change: F) -> impl Future<Output = Result<T, Error>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Ctx) -> Result<T, Error> + Send + 'static,
    {
        App::write(self, actor, change)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn session(id: &str, expires_at: &str) -> Session {
        Session {
            staff_id: id.into(),
            name: id.into(),
            role: Role::Picker,
            expires_at: expires_at.into(),
        }
    }

    #[test]
    fn the_session_cache_is_bounded_and_evicts_expired_then_oldest() {
        let mut cache = SessionCache::new(2);
        cache.insert("a".into(), session("a", "2999-01-01T00:00:00.000Z"));
        cache.insert("b".into(), session("b", "2000-01-01T00:00:00.000Z"));
        // Full: the expired one goes, although it is newer.
        cache.insert("c".into(), session("c", "2999-01-01T00:00:00.000Z"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("b").is_none() && cache.get("a").is_some());
        // Full of live ones: the oldest goes.
        cache.insert("d".into(), session("d", "2999-01-01T00:00:00.000Z"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a").is_none() && cache.get("c").is_some() && cache.get("d").is_some());
        for i in 0..1000 {
            cache.insert(format!("k{i}"), session("x", "2999-01-01T00:00:00.000Z"));
        }
        assert_eq!(cache.len(), 2);
    }
}
