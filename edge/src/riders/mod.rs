//! Riders over MQTT: the store's embedded broker, rider identity and isolation, offers,
//! replies, arrival, pickup, delivery and tracking.
//!
//! Why this shape: rider devices speak MQTT 3.1.1 to an rumqttd broker embedded in the edge
//! ([`broker`]), through a front ([`front`]) that terminates TLS, gives every connection a
//! unique client id (rumqttd 0.20 poisons a listener when a client id is reused after a failed
//! connection) and refuses revoked riders at the handshake. Isolation between riders comes from
//! per-rider client certificates issued by a small CA on the edge ([`ca`]): the front takes the
//! certificate's Organization as the rider id and confines the device to
//! `/tenants/<rider id>/` ([`topics`]). The store database is the source of truth:
//! the service ([`service`]) publishes offers from `assignments`, records replies, positions,
//! handoffs and deliveries, and asks an [`OrderDesk`] to move orders. A simulator ([`sim`])
//! drives riders for the demo, tests and benchmarks. Topic tree and device settings:
//! `README.md` beside this file.

mod broker;
pub mod ca;
pub mod clock;
mod codec;
pub mod desk;
mod error;
mod front;
mod geofence;
mod service;
pub mod sim;
pub mod topics;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashkart_sync::StoreDb;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use ca::{CertBundle, ClientKey, StoreCa};
pub use desk::{Delivery, Handoff, LocalDesk, OrderDesk};
pub use error::{DeskError, Error};

/// How much memory and how many connections the broker may use.
///
/// rumqttd keeps a commit log per subscription filter, in segments it sizes for 1024 messages
/// up front (growing them past that). The edge subscribes once per rider-to-edge leaf with a `+`
/// for the rider (all 500 riders' locations go through one filter), and each rider device
/// subscribes to its own `/tenants/<id>/edge/#` (offers, acks and errors for that rider only).
///
/// A message in a log also keeps alive the whole read buffer its connection received it in
/// (rumqttd slices messages out of a 10 KiB per-connection buffer instead of copying them):
/// a log that holds a rider's reply for two minutes holds 8-10 KiB of that rider's memory for
/// two minutes. So the logs the edge reads as they fill are sized by how much the edge may fall
/// behind, not by how much history is worth keeping: the edge has nothing to re-read in them.
#[derive(Debug, Clone, Copy)]
pub struct BrokerSizing {
    pub max_connections: usize,
    /// The location filters (`location`, `owntracks/#`): every rider's fixes, about 70 bytes
    /// each; a fix skipped when the edge falls behind is harmless (latest wins).
    pub location_log: LogSize,
    /// The command filters (`replies`, `arrival`, `pickup`, `delivered`): the edge must read
    /// every entry before the log drops it (rumqttd moves a reader that fell behind to the
    /// oldest entry it still has).
    pub command_log: LogSize,
    /// The presence filter: a few messages per connection and disconnection.
    pub presence_log: LogSize,
    /// Each rider device's filter (`/tenants/<id>/edge/#`).
    pub rider_log: LogSize,
    /// The largest MQTT payload accepted.
    pub max_payload_size: usize,
}

/// One commit log's bound: segments of `segment_bytes` (messages' topic and payload bytes; at
/// least 1 KiB) and how many of them are kept besides the one being filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSize {
    pub segment_bytes: usize,
    pub segments: usize,
}

impl Default for BrokerSizing {
    /// A Pi: 1000 devices, 16 KiB payloads. What a log costs is its entries (232 bytes each
    /// besides the message, touched as they are appended) and the read buffers its messages
    /// keep alive; a log fills up to its size and stays there.
    ///
    /// Locations, 16 KiB x 4: about 2 s of 500 riders' fixes, which the edge reads as they
    /// arrive; 16 KiB of small messages stays within a segment's first allocation, where 64 KiB
    /// made the segments of the busiest filter double.
    ///
    /// Commands, 4 KiB x 2: over a hundred replies or pickups, far more than a store sees in the
    /// few milliseconds the edge takes to read one. At 16 KiB x 4 the replies log of a 10 offers/s
    /// benchmark held two minutes of replies and, through them, one old 8 KiB read buffer per
    /// rider (4 MiB for 500 riders).
    ///
    /// Presence, 1 KiB x 2: about 70 messages. At 16 KiB x 4 it held every rider's `online`
    /// message, and with it that rider's first 10 KiB read buffer, for as long as the rider
    /// stayed connected (5 MiB for 500 riders).
    ///
    /// Rider filters, 1 KiB x 1 (rumqttd's smallest log): every segment is a mapping of its own
    /// (232 KiB reserved, a page or two touched), so each segment kept costs 500 riders about
    /// 3 MiB; 4 KiB x 2 cost 12 MiB. A rider gets a message every few minutes and reads it
    /// within milliseconds; 1 KiB still holds its last few offers and acks, and what it must
    /// not miss (its open offers) is retained and re-published from the database anyway.
    fn default() -> Self {
        Self {
            max_connections: 1000,
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
            max_payload_size: 16 * 1024,
        }
    }
}

/// Configuration of the riders service.
#[derive(Debug, Clone)]
pub struct RidersConfig {
    /// This store's id (`stores.id`): offers are published for its assignments, and its
    /// coordinates are the arrival geofence's centre.
    pub store_id: String,
    /// The TLS listener for riders' devices (client certificate required).
    pub tls_listen: SocketAddr,
    /// A listener without TLS for simulators and tests; must be a loopback address.
    /// Simulators may reconnect with a fixed client id: the front makes each connection's id
    /// unique before the broker sees it, like on the TLS listener.
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
    /// How often the roster (active riders, revocations) is re-read.
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

/// Commands from the [`Riders`] handle to its service task.
#[derive(Debug)]
enum Command {
    ScanAssignments,
    /// Re-read the roster (disconnecting riders no longer allowed), then answer if asked.
    RefreshRoster(Option<tokio::sync::oneshot::Sender<()>>),
}

/// The running riders service: the broker, the edge's link to it, and the service task.
#[derive(Debug)]
pub struct Riders {
    db: StoreDb,
    ca: Arc<StoreCa>,
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<RiderEvent>,
    online: Arc<Mutex<BTreeSet<String>>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Riders {
    /// Loads (or creates) the store CA, starts the broker and the service over `db`, and
    /// returns once the listeners accept connections.
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
        let ca = Arc::new(ca);
        if let Some(plain) = config.plain_listen
            && !plain.ip().is_loopback()
        {
            return Err(Error::Config(format!(
                "the listener without client certificates must be bound to loopback, not {plain}"
            )));
        }
        let internal = front::free_loopback_port()?;
        let link = broker::start(&config, internal)?;
        broker::wait_listening(internal, Duration::from_secs(5)).await?;
        let shutdown = CancellationToken::new();
        let max_payload = config.sizing.max_payload_size;
        let mut fronts = vec![
            front::start_tls(
                config.tls_listen,
                internal,
                &server,
                &ca,
                db.clone(),
                max_payload,
                shutdown.child_token(),
            )
            .await?,
        ];
        if let Some(listen) = config.plain_listen {
            fronts.push(
                front::start_plain(
                    listen,
                    internal,
                    db.clone(),
                    max_payload,
                    shutdown.child_token(),
                )
                .await?,
            );
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let online = Arc::new(Mutex::new(BTreeSet::new()));
        let service = service::Service::new(
            config,
            db.clone(),
            desk,
            link,
            events.clone(),
            online.clone(),
            fronts,
        )
        .await?;
        let task = tokio::spawn(service.run(command_rx, shutdown.clone()));
        Ok(Self {
            db,
            ca,
            commands,
            events,
            online,
            shutdown,
            task,
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
        // Wait until the service has taken it in. It stops only at shutdown; then there is
        // nothing to refresh.
        let (done, refreshed) = tokio::sync::oneshot::channel();
        if self
            .commands
            .send(Command::RefreshRoster(Some(done)))
            .is_ok()
        {
            let _ = refreshed.await;
        }
        Ok(())
    }

    /// The roster changed (a sync merge brought riders from the cloud): re-read it now rather
    /// than at the next refresh, so a deactivated rider is disconnected at once.
    pub fn roster_changed(&self) {
        let _ = self.commands.send(Command::RefreshRoster(None));
    }

    /// Assignments changed (a sync merge, or the test endpoint created one): publish new
    /// offers now rather than at the next scan.
    pub fn assignments_changed(&self) {
        let _ = self.commands.send(Command::ScanAssignments);
    }

    /// Riders whose devices said they are online (presence, cleared by their last will).
    pub fn online_riders(&self) -> Vec<String> {
        self.online
            .lock()
            .map(|online| online.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops the front's listeners and the service and writes the last positions. The broker's
    /// threads cannot be stopped (rumqttd has no stop API) and end with the process.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the riders service task failed");
        }
    }
}
