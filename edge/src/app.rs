//! The running store: database, live stream, metrics and sessions, shared by every request.
//!
//! [`App::write`] is how every change happens: it runs a domain function on the store
//! database's single writer with a fresh [`Ctx`], turns what the function changed into
//! numbered events inside the same transaction, and publishes them only once the transaction is
//! durably committed. A refused write publishes nothing and changes nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use flashkart_sync::StoreDb;
use rusqlite::Connection;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::barcode::VariableMeasureLayout;
use crate::config::Config;
use crate::ctx::{Ctx, now};
use crate::devices::Devices;
use crate::events::{Event, Hub};
use crate::metrics::Metrics;
use crate::pack::PackConfig;
use crate::staff::{self, NewStaff, Role, Session};
use crate::stock;

/// Shared state of the daemon.
#[derive(Debug)]
pub struct App {
    pub db: StoreDb,
    pub hub: Hub,
    pub metrics: Metrics,
    pub store_id: String,
    pub layout: VariableMeasureLayout,
    pub pack: PackConfig,
    pub dev_endpoints: bool,
    /// Scanners, scales and printers (none unless configured).
    pub devices: Devices,
    /// Cancelled when the daemon shuts down (ends live streams).
    pub shutdown: CancellationToken,
    /// The sync client's status, once sync with the cloud runs (`[sync]` configured).
    pub sync: std::sync::OnceLock<tokio::sync::watch::Receiver<flashkart_sync::client::SyncStatus>>,
    /// The riders' broker figures for `/metrics`, once the broker runs (`[riders]` configured).
    pub riders: std::sync::OnceLock<crate::riders::BrokerGauge>,
    session_hours: u32,
    /// Sessions already checked, by token hash.
    sessions: Mutex<HashMap<String, Session>>,
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
            dev_endpoints: config.dev_endpoints,
            devices: Devices::new(&config.devices),
            shutdown,
            sync: std::sync::OnceLock::new(),
            riders: std::sync::OnceLock::new(),
            session_hours: config.session_hours.max(1),
            sessions: Mutex::new(HashMap::new()),
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
                Ok::<_, Error>((value, events, ctx.moves))
            })
            .await?;
        for kind in moves {
            self.metrics.stock_move(kind.as_str());
        }
        for event in &events {
            if let Event::Order { change, .. } = event {
                self.metrics.order_change(change);
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
            .and_then(|sessions| sessions.get(&hash).cloned());
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

    /// Checks a PIN and opens a session.
    pub async fn sign_in(&self, staff_id: String, pin: String) -> Result<SignedIn, Error> {
        let id = staff_id.clone();
        let (name, role) = self
            .read(move |conn| staff::verify_pin(conn, &id, &pin))
            .await?;
        let (token, hash) = staff::new_token();
        let hours = self.session_hours;
        let id = staff_id.clone();
        let expires_at = self
            .write(&staff_id, move |conn, _| {
                staff::start_session(conn, &hash, &id, hours)
            })
            .await?;
        tracing::info!(staff_id = %staff_id, role = role.as_str(), "signed in");
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

    /// Adds or updates a member of staff.
    pub async fn add_staff(&self, actor: &str, new: NewStaff) -> Result<(), Error> {
        let pin = new.pin.clone();
        let hash = tokio::task::spawn_blocking(move || staff::hash_pin(&pin))
            .await
            .map_err(|e| Error::PinHash(e.to_string()))??;
        self.write(actor, move |conn, _| staff::upsert(conn, &new, &hash))
            .await
    }

    /// On a store with no staff, creates the `manager` account.
    pub async fn bootstrap_manager(&self, pin: Option<String>) -> Result<(), Error> {
        if self.read(staff::active_count).await? > 0 {
            return Ok(());
        }
        let generated = pin.is_none();
        let pin = pin.unwrap_or_else(|| format!("{:06}", rand::random::<u32>() % 1_000_000));
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
