//! The store's MQTT broker: rumqttd 0.20 (patched copy in `edge/rumqttd/`, see its
//! `FLASHKART.md`), its configuration sized for a Pi, and the edge's in-process link to it.
//!
//! Identity and isolation are rumqttd's own: the TLS listener requires a client certificate
//! from the store CA (`verify-client-cert`), and the certificate's Organization (the rider id)
//! is a tenant confined to `/tenants/<rider id>/` (`validate-tenant-prefix`): a publish, a
//! subscription or a will outside it disconnects the device. The loopback listener (simulators,
//! tests) has no certificate and no tenant.
//!
//! Deactivated and revoked riders: the patch's tenant check refuses a connection of a rider that
//! is not in the allowed set with CONNACK "not authorized", and [`Broker::disconnect`] asks the
//! router to close a rider's live connections (the service does so at every roster refresh).
//!
//! The edge reads and writes rider topics through `Broker::link` (no socket): its filters
//! `/tenants/+/<leaf>` see every tenant's topics, as tenant topics are plain topics to the
//! router.
//!
//! Memory: rumqttd keeps a commit log per subscription filter. Every log here is a few small
//! segments ([`super::BrokerSizing`]); the store database, not the broker, is the source of
//! truth, and offers are re-published from it after a restart.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{Packet, Publish};
use rumqttd::{
    Config, ConnectionSettings, Notification, RouterConfig, SegmentConfig, ServerSettings,
    TenantLink, TlsConfig,
};
use tokio::sync::mpsc;

use super::topics;
use super::{BrokerSizing, Error, LogSize, RidersConfig};

const TLS_LISTENER: &str = "riders-tls";
const PLAIN_LISTENER: &str = "riders-loopback";
/// The edge's own client id on the router.
const EDGE_CLIENT: &str = "flashkart-edge";

/// The rider-to-edge filters the edge subscribes to, and the log each gets.
pub const EDGE_FILTERS: &[(&str, EdgeLog)] = &[
    ("/tenants/+/replies", EdgeLog::Command),
    ("/tenants/+/arrival", EdgeLog::Command),
    ("/tenants/+/pickup", EdgeLog::Command),
    ("/tenants/+/delivered", EdgeLog::Command),
    ("/tenants/+/location", EdgeLog::Location),
    ("/tenants/+/presence", EdgeLog::Presence),
    ("/tenants/+/owntracks/#", EdgeLog::Location),
];

/// Each rider device's filter (`/tenants/<id>/edge/#`) matches this.
pub const RIDER_FILTERS: &str = "/tenants/+/edge/#";

/// Which of [`BrokerSizing`]'s logs an edge filter gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeLog {
    Location,
    Command,
    Presence,
}

/// A device message the riders service reads, split into the rider and the kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub topic: String,
    pub rider: String,
    pub kind: topics::Inbound,
    pub payload: Bytes,
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Live device connections (the edge's own link not counted).
    pub sessions: usize,
}

/// The running broker: its listeners' addresses and the handles the edge keeps.
#[derive(Debug, Clone)]
pub struct Broker {
    pub tls_addr: SocketAddr,
    pub plain_addr: Option<SocketAddr>,
    tenants: TenantLink,
    allowed: Arc<RwLock<HashSet<String>>>,
    stop: rumqttd::BrokerStop,
    /// The thread running `rumqttd::Broker::start`, taken by the first [`Broker::stop`].
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// The edge's end of the broker: publish with `publisher`, read device messages from `inbox`.
#[derive(Debug)]
pub struct EdgeLink {
    pub publisher: Publisher,
    pub inbox: mpsc::Receiver<Inbound>,
}

impl Broker {
    /// Starts the router and the listeners on threads of their own, subscribes the edge's link
    /// and returns once every listener is bound. `allowed` is the set of riders that may
    /// connect (read at every CONNECT that carries a certificate).
    pub async fn start(
        config: &RidersConfig,
        allowed: Arc<RwLock<HashSet<String>>>,
    ) -> Result<(Self, EdgeLink), Error> {
        let broker_config = broker_config(config, &allowed)?;
        let listeners = broker_config.v4.as_ref().map_or(0, HashMap::len);
        let mut broker = rumqttd::Broker::new(broker_config);
        let (mut tx, rx) = broker
            .link(EDGE_CLIENT)
            .map_err(|e| Error::Broker(format!("local link: {e}")))?;
        for (filter, _) in EDGE_FILTERS {
            tx.subscribe(*filter)
                .map_err(|e| Error::Broker(format!("subscribing to {filter}: {e}")))?;
        }
        let bound = broker.bound_listeners();
        let tenants = broker.tenants();
        // `start` returns once the patch's stop (`BrokerStop`) has ended the listeners.
        let stop = broker.stopper();
        let thread = std::thread::Builder::new()
            .name("riders-broker".into())
            .spawn(move || {
                if let Err(error) = broker.start() {
                    tracing::error!(%error, "the riders' MQTT broker failed");
                }
            })
            .map_err(|e| Error::Broker(format!("cannot spawn the broker thread: {e}")))?;
        let mut addrs = HashMap::new();
        for _ in 0..listeners {
            let listener = tokio::time::timeout(Duration::from_secs(10), bound.recv_async())
                .await
                .map_err(|_| Error::Broker("the broker's listeners did not bind".into()))?
                .map_err(|_| Error::Broker("the broker stopped before binding".into()))?;
            let addr = listener
                .addr
                .map_err(|e| Error::Broker(format!("listener {}: {e}", listener.name)))?;
            addrs.insert(listener.name, addr);
        }
        let tls_addr = *addrs
            .get(TLS_LISTENER)
            .ok_or_else(|| Error::Broker("the TLS listener did not bind".into()))?;
        let plain_addr = addrs.get(PLAIN_LISTENER).copied();
        let (inbound, inbox) = mpsc::channel(config.sizing.edge_queue.max(1));
        tokio::spawn(read_link(rx, inbound));
        let (publisher, outbox) = mpsc::unbounded_channel();
        tokio::spawn(write_link(tx, outbox));
        Ok((
            Self {
                tls_addr,
                plain_addr,
                tenants,
                allowed,
                stop,
                thread: Arc::new(Mutex::new(Some(thread))),
            },
            EdgeLink {
                publisher: Publisher(publisher),
                inbox,
            },
        ))
    }

    /// Replaces the riders allowed to connect and closes the live connections of `revoked`.
    pub fn set_allowed(&self, allowed: HashSet<String>, revoked: &HashSet<String>) {
        if let Ok(mut set) = self.allowed.write() {
            *set = allowed;
        }
        for rider in revoked {
            if !self.tenants.disconnect(rider) {
                tracing::error!(rider, "the riders' broker is gone: cannot disconnect");
            }
        }
    }

    /// Stops the listeners (their ports are free when this returns), closes every device
    /// connection and stops the router. Later calls return at once.
    pub async fn stop(&self) {
        self.stop.stop();
        let thread = self.thread.lock().ok().and_then(|mut thread| thread.take());
        if let Some(thread) = thread {
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(())) => tracing::info!("the riders' MQTT broker stopped"),
                Ok(Err(_)) => tracing::error!("the riders' MQTT broker thread panicked"),
                Err(error) => tracing::error!(%error, "waiting for the riders' MQTT broker"),
            }
        }
    }

    /// The broker's figures.
    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            sessions: self.tenants.connections().saturating_sub(1),
        }
    }
}

/// Reads what the router forwards to the edge's link and queues the rider messages for the
/// service (waiting when the queue is full, so the router holds the rest in its logs).
async fn read_link(mut rx: LinkRx, inbound: mpsc::Sender<Inbound>) {
    loop {
        match rx.next().await {
            Ok(Some(Notification::Forward(forward))) => {
                let publish = forward.publish;
                let Ok(topic) = std::str::from_utf8(&publish.topic) else {
                    continue;
                };
                let Some((rider, kind)) = topics::parse(topic) else {
                    tracing::debug!(topic, "a message on a topic the edge does not read");
                    continue;
                };
                let message = Inbound {
                    topic: topic.to_owned(),
                    rider: rider.to_owned(),
                    kind,
                    payload: publish.payload,
                };
                if inbound.send(message).await.is_err() {
                    return;
                }
            }
            // The router paused the link (its outgoing queue was full); ask for more.
            Ok(Some(Notification::Unschedule)) => {
                if rx.wake().await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            // After the service stopped (its inbox is closed) this is the broker's stop.
            Err(error) if inbound.is_closed() => {
                tracing::debug!(%error, "the edge's link to the riders' broker closed");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "the edge's link to the riders' broker closed");
                return;
            }
        }
    }
}

/// Publishes from the edge, in order, through the edge's link (owned by a task, because
/// rumqttd's `LinkTx::send` is async while the service publishes from plain functions).
#[derive(Debug, Clone)]
pub struct Publisher(mpsc::UnboundedSender<Publish>);

impl Publisher {
    /// Local links publish at QoS 0; devices receive at their subscription's QoS (1), and a
    /// persistent session keeps what its device missed while away.
    pub fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) {
        let publish = Publish::new(Bytes::from(topic), Bytes::from(payload), retain);
        if self.0.send(publish).is_err() {
            tracing::error!("the edge's link to the riders' broker is closed: not published");
        }
    }
}

async fn write_link(mut tx: LinkTx, mut outbox: mpsc::UnboundedReceiver<Publish>) {
    while let Some(publish) = outbox.recv().await {
        if let Err(error) = tx.send(Packet::Publish(publish, None)).await {
            tracing::error!(%error, "publishing to the riders' broker");
            return;
        }
    }
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).to_string_lossy().into_owned()
}

fn broker_config(
    config: &RidersConfig,
    allowed: &Arc<RwLock<HashSet<String>>>,
) -> Result<Config, Error> {
    let sizing = &config.sizing;
    for (name, log) in [
        ("location", sizing.location_log),
        ("command", sizing.command_log),
        ("presence", sizing.presence_log),
        ("rider", sizing.rider_log),
    ] {
        // rumqttd panics on smaller logs, in the router thread, at the first subscription.
        if log.segment_bytes < 1024 || log.segments == 0 {
            return Err(Error::Config(format!(
                "the {name} log needs segments of at least 1024 bytes and at least one segment, \
                 not {} x {}",
                log.segment_bytes, log.segments
            )));
        }
    }
    // A deactivated rider's live connection is closed at the next roster refresh at the
    // latest (the cloud's sync also nudges one): that bound is the refresh period.
    if config.roster_refresh.is_zero() || config.roster_refresh > super::MAX_ROSTER_REFRESH {
        return Err(Error::Config(format!(
            "the roster refresh must be above zero and at most {:?} (a deactivated rider is \
             disconnected within it), not {:?}",
            super::MAX_ROSTER_REFRESH,
            config.roster_refresh
        )));
    }
    if let Some(plain) = config.plain_listen
        && !plain.ip().is_loopback()
    {
        return Err(Error::Config(format!(
            "the listener without client certificates must be bound to loopback, not {plain}"
        )));
    }
    let check = allowed.clone();
    let tenant_check: rumqttd::TenantCheck = Arc::new(move |rider: &str| {
        check
            .read()
            .map(|allowed| allowed.contains(rider))
            .unwrap_or(false)
    });
    let connections = |tenant_check: Option<rumqttd::TenantCheck>| ConnectionSettings {
        connection_timeout_ms: 5000,
        max_payload_size: sizing.max_payload_size,
        max_inflight_count: sizing.max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
        tenant_check,
    };
    let mut servers = HashMap::new();
    servers.insert(
        TLS_LISTENER.to_owned(),
        ServerSettings {
            name: TLS_LISTENER.to_owned(),
            listen: config.tls_listen,
            tls: Some(TlsConfig::Rustls {
                capath: Some(path(&config.ca_dir, super::ca::CA_CERT)),
                certpath: path(&config.ca_dir, super::ca::SERVER_CERT),
                keypath: path(&config.ca_dir, super::ca::SERVER_KEY),
            }),
            next_connection_delay_ms: 0,
            connections: connections(Some(tenant_check)),
        },
    );
    if let Some(listen) = config.plain_listen {
        servers.insert(
            PLAIN_LISTENER.to_owned(),
            ServerSettings {
                name: PLAIN_LISTENER.to_owned(),
                listen,
                tls: None,
                next_connection_delay_ms: 0,
                connections: connections(None),
            },
        );
    }
    Ok(Config {
        id: 0,
        router: RouterConfig {
            // The edge's own link is one more.
            max_connections: sizing.max_connections + 1,
            max_outgoing_packet_count: 200,
            // For filters other than the edge's and the riders' (a loopback client's own).
            max_segment_size: sizing.command_log.segment_bytes,
            max_segment_count: sizing.command_log.segments,
            custom_segment: Some(log_sizes(sizing)),
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(servers),
        ..Config::default()
    })
}

/// The commit-log bound of every filter the edge and the riders subscribe to, by filter.
fn log_sizes(sizing: &BrokerSizing) -> HashMap<String, SegmentConfig> {
    let segment = |log: LogSize| SegmentConfig {
        max_segment_size: log.segment_bytes,
        max_segment_count: log.segments,
    };
    let mut sizes: HashMap<String, SegmentConfig> = EDGE_FILTERS
        .iter()
        .map(|(filter, log)| {
            let size = match log {
                EdgeLog::Location => sizing.location_log,
                EdgeLog::Command => sizing.command_log,
                EdgeLog::Presence => sizing.presence_log,
            };
            ((*filter).to_owned(), segment(size))
        })
        .collect();
    sizes.insert(RIDER_FILTERS.to_owned(), segment(sizing.rider_log));
    sizes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> RidersConfig {
        RidersConfig::new("s1", "/nonexistent")
    }

    #[test]
    fn every_filter_gets_the_log_of_its_kind() {
        let sizing = BrokerSizing::default();
        let sizes = log_sizes(&sizing);
        let bytes = |filter: &str| sizes[filter].max_segment_size;
        assert_eq!(
            bytes("/tenants/+/location"),
            sizing.location_log.segment_bytes
        );
        assert_eq!(
            bytes("/tenants/+/replies"),
            sizing.command_log.segment_bytes
        );
        assert_eq!(
            bytes("/tenants/+/presence"),
            sizing.presence_log.segment_bytes
        );
        assert_eq!(bytes(RIDER_FILTERS), sizing.rider_log.segment_bytes);
        assert_eq!(sizes.len(), EDGE_FILTERS.len() + 1);
    }

    #[test]
    fn the_sizing_is_the_brokers_configuration() {
        let mut riders = config();
        riders.plain_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let sizing = riders.sizing;
        let broker = broker_config(&riders, &Arc::default()).unwrap();
        // The edge's own link is one more connection.
        assert_eq!(broker.router.max_connections, sizing.max_connections + 1);
        let custom = broker.router.custom_segment.as_ref().map(HashMap::len);
        assert_eq!(custom, Some(EDGE_FILTERS.len() + 1));
        let servers = broker.v4.unwrap();
        assert_eq!(servers.len(), 2);
        for server in servers.values() {
            let connections = &server.connections;
            assert_eq!(connections.max_payload_size, sizing.max_payload_size);
            assert_eq!(connections.max_inflight_count, sizing.max_inflight);
            // Only the TLS listener has tenants to check.
            assert_eq!(
                connections.tenant_check.is_some(),
                server.name == TLS_LISTENER
            );
        }
    }

    #[test]
    fn a_log_rumqttd_would_panic_on_is_a_config_error() {
        let allowed = Arc::default();
        assert!(broker_config(&config(), &allowed).is_ok());
        for log in [
            LogSize {
                segment_bytes: 1023,
                segments: 2,
            },
            LogSize {
                segment_bytes: 4096,
                segments: 0,
            },
        ] {
            let mut bad = config();
            bad.sizing.presence_log = log;
            let error = broker_config(&bad, &allowed).err().map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|e| e.contains("presence log")),
                "{error:?}"
            );
        }
        let mut outside = config();
        outside.plain_listen = Some(SocketAddr::from(([0, 0, 0, 0], 1)));
        assert!(broker_config(&outside, &allowed).is_err());
        assert!(config().roster_refresh <= crate::riders::MAX_ROSTER_REFRESH);
        for refresh in [Duration::ZERO, Duration::from_secs(31)] {
            let mut slow = config();
            slow.roster_refresh = refresh;
            let error = broker_config(&slow, &allowed).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("roster refresh")),
                "{error:?}"
            );
        }
    }
}
