//! Riders over MQTT: the store's embedded broker, rider identity and isolation, offers,
//! replies, arrival, pickup, delivery and tracking.
//!
//! Why this shape: rider devices speak MQTT to rumqttd embedded in the edge ([`broker`]; a
//! patched copy of 0.20.0 in `edge/rumqttd/`, see its `FLASHKART.md`), and the service is a
//! client of it through rumqttd's in-process link. Isolation between riders comes from
//! per-rider client certificates issued by a small CA on the edge ([`ca`]): rumqttd takes the
//! certificate's Organization as the tenant (the rider id) and confines the device to
//! `/tenants/<rider id>/` ([`topics`]). The store database is the source of truth:
//! the service ([`service`]) publishes offers from `assignments`, records replies, positions,
//! handoffs and deliveries, and asks an [`OrderDesk`] to move orders. Riders are simulated
//! for the demo, tests and benchmarks by `flashkart-edge-sim`. Topic tree and device settings:
//! `README.md` beside this file.

mod broker;
pub mod ca;
pub use crate::clock;
mod codec;
pub mod desk;
mod error;
mod geofence;
mod service;
pub mod topics;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use flashkart_sync::StoreDb;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use broker::BrokerStats;
pub use ca::{CertBundle, ClientKey, ServerIdentity, StoreCa};
pub use desk::{Delivery, Handoff, LocalDesk, OrderDesk};
pub use error::{DeskError, Error};

/// How much memory and how many connections the broker may use.
///
/// rumqttd keeps a commit log per subscription filter. The edge subscribes once per
/// rider-to-edge leaf with a `+` for the rider (all riders' locations go through one filter),
/// and each rider device subscribes to its own `/tenants/<id>/edge/#` (offers, acks and errors
/// for that rider only; with a persistent session this log is what a phone gets back after a
/// drop). A message in a log also keeps alive the read buffer its connection received it in,
/// so the logs the edge reads as they fill are sized by how far the edge may fall behind, not
/// by how much history is worth keeping.
#[derive(Debug, Clone, Copy)]
pub struct BrokerSizing {
    /// Device connections on both listeners together.
    pub max_connections: usize,
    /// The largest MQTT payload accepted.
    pub max_payload_size: usize,
    /// QoS 1 messages in flight to one device.
    pub max_inflight: usize,
    /// Device messages waiting for the riders service; when it is full the edge's link stops
    /// reading and the router keeps them in its logs.
    pub edge_queue: usize,
    /// The location filters (`location`, `owntracks/#`): latest wins, a skipped fix is harmless.
    pub location_log: LogSize,
    /// The command filters (`replies`, `arrival`, `pickup`, `delivered`).
    pub command_log: LogSize,
    /// The presence filter.
    pub presence_log: LogSize,
    /// Each rider device's filter (`/tenants/<id>/edge/#`).
    pub rider_log: LogSize,
}

/// One commit log's bound: segments of `segment_bytes` (at least 1 KiB) and how many of them
/// are kept besides the one being filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSize {
    pub segment_bytes: usize,
    pub segments: usize,
}

impl Default for BrokerSizing {
    /// A Pi: 1000 devices, 16 KiB payloads, 16 messages in flight per device. Locations 16 KiB
    /// x 4 (about 2 s of 500 riders' fixes, read as they arrive); commands 4 KiB x 2 (over a
    /// hundred replies); presence 1 KiB x 2; each rider's own log 1 KiB x 1, which holds the
    /// few offers and acks a phone misses during a drop (a few hundred bytes each), while its
    /// open offers are also retained and re-published from the database. The riders' logs are
    /// the one allocation that grows with the number of riders: at 2 KiB x 2 the edge's RSS kept
    /// climbing for half an hour while 500 logs filled; at 1 KiB x 1 it is flat after 9 minutes
    /// (docs/benchmarks.md).
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_payload_size: 16 * 1024,
            max_inflight: 16,
            edge_queue: 4096,
            location_log: LogSize {
                segment_bytes: 16 * 1024,
                segments: 4,
            },
            command_log: LogSize {
                segment_bytes: 4 * 1024,
                segments: 2,
            },
            presence_log: LogSize {
                segment_bytes: 1024,
                segments: 2,
            },
            rider_log: LogSize {
                segment_bytes: 1024,
                segments: 1,
            },
        }
    }
}

/// The longest roster refresh period allowed: a rider deactivated by the cloud (or revoked
/// here) is disconnected within it even when no sync nudge arrives.
pub const MAX_ROSTER_REFRESH: Duration = Duration::from_secs(30);

/// Configuration of the riders service.
#[derive(Debug, Clone)]
pub struct RidersConfig {
    /// This store's id (`stores.id`): offers are published for its assignments, and its
    /// coordinates are the arrival geofence's centre.
    pub store_id: String,
    /// The TLS listener for riders' devices (client certificate required); port 0 picks a
    /// free one ([`Riders::tls_addr`]).
    pub tls_listen: SocketAddr,
    /// A listener without TLS for simulators and tests; must be a loopback address. A
    /// reconnecting simulator with a fixed client id takes its old session over, as on the
    /// TLS listener.
    pub plain_listen: Option<SocketAddr>,
    /// Where the store CA and the broker's server certificate live.
    pub ca_dir: PathBuf,
    /// Host names devices use to reach the broker, besides `localhost` (server cert SANs).
    pub server_names: Vec<String>,
    /// Lifetime of rider certificates.
    pub cert_validity_days: u32,
    /// Radius of the arrival geofence around the store.
    pub geofence_m: f64,
    /// How often the latest positions are written to `rider_positions`.
    pub position_interval: Duration,
    /// How often `assignments` is scanned for new and expired offers (besides
    /// [`Riders::assignments_changed`]).
    pub offer_scan_interval: Duration,
    /// How often the roster (active riders, revocations) is re-read; a rider no longer
    /// allowed is disconnected at the latest then. At most [`MAX_ROSTER_REFRESH`].
    pub roster_refresh: Duration,
    pub sizing: BrokerSizing,
}

impl RidersConfig {
    /// Defaults: TLS on 0.0.0.0:8883, no plain listener, 75 m geofence, positions every 5 s,
    /// offer scan every second, roster every 10 s, certificates for a year.
    pub fn new(store_id: impl Into<String>, ca_dir: impl Into<PathBuf>) -> Self {
        Self {
            store_id: store_id.into(),
            tls_listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            plain_listen: None,
            ca_dir: ca_dir.into(),
            server_names: Vec::new(),
            cert_validity_days: 365,
            geofence_m: 75.0,
            position_interval: Duration::from_secs(5),
            offer_scan_interval: Duration::from_secs(1),
            roster_refresh: Duration::from_secs(10),
            sizing: BrokerSizing::default(),
        }
    }
}

/// What the riders service did, for the daemon's live stream, metrics and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum RiderEvent {
    Offered {
        assignment_id: String,
        rider_id: String,
    },
    /// `reply` is accepted, declined or expired.
    Replied {
        assignment_id: String,
        rider_id: String,
        reply: String,
    },
    Arrived {
        rider_id: String,
        order_id: String,
    },
    PickedUp {
        order_id: String,
        rider_id: String,
    },
    Delivered {
        order_id: String,
        rider_id: String,
        pin_ok: Option<bool>,
    },
    /// A message was refused and answered on the rider's error topic.
    Refused {
        rider_id: String,
        command: String,
        code: String,
    },
    /// A message was dropped with a log line (unknown or revoked rider, unknown topic).
    Dropped {
        topic: String,
        reason: String,
    },
    Presence {
        rider_id: String,
        online: bool,
    },
    PositionsWritten {
        count: usize,
    },
}

/// Commands from the [`Riders`] handle to its service task that someone waits on.
#[derive(Debug)]
enum Command {
    /// Re-read the roster (disconnecting riders no longer allowed), then answer.
    RefreshRoster(tokio::sync::oneshot::Sender<()>),
}

/// Commands whose caller waits for them (a revocation) are few and come from a manager, one
/// at a time; 16 is room for a burst, and a caller beyond it waits for the service (back-
/// pressure) rather than being dropped.
const COMMAND_QUEUE: usize = 16;

/// Fire-and-forget requests from sync ("the roster / the assignments changed"). Each is a
/// `Notify`, which holds at most one pending wake-up: any number of requests before the service
/// looks coalesce into one re-read, which sees all of them, so nothing queues up and nothing is
/// lost.
#[derive(Debug, Default)]
struct Nudges {
    scan: tokio::sync::Notify,
    roster: tokio::sync::Notify,
}

/// Reads the broker's figures without holding the [`Riders`] handle: the daemon's `App` keeps
/// one for `/metrics`, and the riders service holds the `App` (through its order desk).
#[derive(Debug, Clone)]
pub struct BrokerGauge {
    broker: broker::Broker,
    online: Arc<Mutex<BTreeSet<String>>>,
}

impl BrokerGauge {
    /// The broker's figures and how many riders are online.
    pub fn read(&self) -> (BrokerStats, usize) {
        let online = self.online.lock().map(|set| set.len()).unwrap_or(0);
        (self.broker.stats(), online)
    }
}

/// Re-reads the roster in the running service without holding the [`Riders`] handle: the
/// daemon's `App` keeps one (the service holds the `App` through its order desk, so the handle
/// itself would be a cycle).
#[derive(Debug, Clone)]
pub struct Roster {
    commands: mpsc::Sender<Command>,
}

impl Roster {
    /// Asks the service to re-read the roster (revocations, deactivations, sign-offs) and
    /// waits until it has: riders no longer allowed are disconnected and their offers
    /// withdrawn when this returns. After shutdown there is nothing to refresh and it returns
    /// at once.
    pub async fn refresh(&self) {
        let (done, refreshed) = tokio::sync::oneshot::channel();
        if self
            .commands
            .send(Command::RefreshRoster(done))
            .await
            .is_ok()
        {
            let _ = refreshed.await;
        }
    }
}

/// The running riders service: the broker's listeners and the service task.
#[derive(Debug)]
pub struct Riders {
    db: StoreDb,
    gauge: BrokerGauge,
    tls_addr: SocketAddr,
    plain_addr: Option<SocketAddr>,
    ca: Arc<StoreCa>,
    server: ServerIdentity,
    commands: mpsc::Sender<Command>,
    nudges: Arc<Nudges>,
    events: broadcast::Sender<RiderEvent>,
    shutdown: CancellationToken,
    /// The service task, taken by the first [`Riders::shutdown`].
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Riders {
    /// Loads (or creates) the store CA, starts the broker and the service over `db`, and
    /// returns once the listeners are bound.
    pub async fn start<D: OrderDesk>(
        config: RidersConfig,
        db: StoreDb,
        desk: D,
    ) -> Result<Self, Error> {
        let ca = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || -> Result<_, Error> {
                let ca = StoreCa::load_or_create(
                    &config.ca_dir,
                    &config.store_id,
                    config.cert_validity_days,
                )?;
                let server = ca.issue_server_identity(&config.server_names)?;
                Ok((ca, server))
            })
            .await
            .map_err(|e| Error::Broker(format!("CA set-up panicked: {e}")))??
        };
        let (ca, server) = ca;
        let ca_sha256 = ca.ca_sha256()?;
        ca::record_fingerprint(&db, &config.store_id, &ca_sha256).await?;
        let ca = Arc::new(ca);
        let allowed = Arc::new(RwLock::new(HashSet::new()));
        let (broker, link) = broker::Broker::start(&config, allowed).await?;
        let tls_addr = broker.tls_addr;
        let plain_addr = broker.plain_addr;
        let shutdown = CancellationToken::new();
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let nudges = Arc::new(Nudges::default());
        let (events, _) = broadcast::channel(1024);
        let online = Arc::new(Mutex::new(BTreeSet::new()));
        let service = service::Service::new(
            config,
            db.clone(),
            desk,
            link,
            broker.clone(),
            events.clone(),
            online.clone(),
        )
        .await?;
        let task = tokio::spawn(service.run(command_rx, nudges.clone(), shutdown.clone()));
        Ok(Self {
            db,
            gauge: BrokerGauge { broker, online },
            tls_addr,
            plain_addr,
            ca,
            server,
            commands,
            nudges,
            events,
            shutdown,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// What the service does from now on.
    pub fn events(&self) -> broadcast::Receiver<RiderEvent> {
        self.events.subscribe()
    }

    /// The store CA certificate (PEM) devices verify the broker with.
    pub fn ca_pem(&self) -> &str {
        self.ca.ca_pem()
    }

    /// The certificate and key of the store's TLS listeners (the broker's and the enrolment
    /// listener's), issued by the store CA for `localhost` and the configured server names.
    pub fn server_identity(&self) -> &ServerIdentity {
        &self.server
    }

    /// Enrols a rider's device with its one-time code (see [`ca::enrol`]).
    pub async fn enrol(
        &self,
        rider_id: &str,
        code: &str,
        key: ClientKey,
    ) -> Result<CertBundle, Error> {
        ca::enrol(&self.db, &self.ca, rider_id, code, key).await
    }

    /// Revokes a rider (see [`ca::revoke`]); once this returns its devices are disconnected
    /// and refused at the handshake, its messages dropped and its offers withdrawn.
    pub async fn revoke(&self, rider_id: &str, reason: &str) -> Result<(), Error> {
        ca::revoke(&self.db, rider_id, reason).await?;
        self.roster().refresh().await;
        Ok(())
    }

    /// A handle that makes the service re-read the roster and waits for it, for parts of the
    /// daemon that change who may ride here (a cash hand-in closing a rider's shift).
    pub fn roster(&self) -> Roster {
        Roster {
            commands: self.commands.clone(),
        }
    }

    /// The roster changed (a sync merge brought riders from the cloud): re-read it now rather
    /// than at the next refresh, so a deactivated rider is disconnected at once.
    pub fn roster_changed(&self) {
        self.nudges.roster.notify_one();
    }

    /// Assignments changed (a sync merge, or the test endpoint created one): publish new
    /// offers now rather than at the next scan.
    pub fn assignments_changed(&self) {
        self.nudges.scan.notify_one();
    }

    /// Where the TLS listener is bound (the port, when `tls_listen` asked for port 0).
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr
    }

    /// Where the loopback listener is bound, if there is one.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// The broker's connections.
    pub fn broker_stats(&self) -> BrokerStats {
        self.gauge.broker.stats()
    }

    /// A handle that reads [`Self::broker_stats`] and the online riders, for `/metrics`.
    pub fn gauge(&self) -> BrokerGauge {
        self.gauge.clone()
    }

    /// Riders whose devices said they are online (presence, cleared by their last will).
    pub fn online_riders(&self) -> Vec<String> {
        self.gauge
            .online
            .lock()
            .map(|online| online.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops the service, writes the last positions, then stops the broker: once this returns
    /// its listeners' ports are free and every device connection is closed.
    ///
    /// Takes `&self`: the daemon stops the service even while an HTTP connection that is still
    /// closing holds a clone of the handle. Later calls return at once.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let task = self.task.lock().await.take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::error!(%error, "the riders service task failed");
        }
        self.gauge.broker.stop().await;
    }
}
