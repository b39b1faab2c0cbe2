//! The riders' broker front door: the listeners devices and simulators connect to, and each
//! connection's MQTT 3.1.1 session.
//!
//! Why the edge runs its own broker (issue 6): rumqttd 0.20, embedded first, panicked and
//! poisoned its listener when a client id was reused after a connection failed before CONNACK
//! (one flaky phone took every rider of the store down), had no per-topic ACLs, no stop API and
//! no way to bind port 0, and held about 64 KiB per rider plus a commit log per subscription
//! filter and an index entry for every topic it ever saw: 500 riders grew past a Pi's 64 MB
//! budget within minutes and kept growing. The front had already taken over TLS, identity,
//! topic confinement, session takeover and last wills to work around it; what rumqttd still
//! did (keep subscriptions, route messages, keep retained offers) is the small [`super::hub`].
//!
//! Isolation: the TLS listener requires a client certificate from the store CA, reads the rider
//! id from its Organization and confines the connection to `/tenants/<rider id>/`: the will
//! topic in CONNECT, every PUBLISH topic and every SUBSCRIBE filter the device sends must start
//! with that prefix, or the connection is closed with a log line before anything acts on the
//! packet. Riders that are revoked, deactivated or unknown (and revoked certificates) are
//! refused right after the handshake, and [`Front::disconnect_all_but`] cuts the live
//! connections of riders revoked or deactivated later. The loopback listener (simulators,
//! tests) has no certificate and no prefix.
//!
//! Sessions: MQTT 3.1.1 with QoS 0 and 1 both ways and QoS 2 from clients (subscriptions are
//! granted at most QoS 1). A session lives as long as its connection: `clean_session = false`
//! is accepted but nothing is kept after the connection ends (offers are retained and
//! re-published from the database, so a reconnecting device still gets them). A new connection
//! with the same rider and client id as a live one takes it over: the old one is closed and
//! its last will published before the new one gets CONNACK. Nothing a client publishes is
//! retained; the edge is the only reader of rider topics.
//!
//! Bad input (anything but an MQTT 3.1.1 CONNECT first, a malformed or oversized packet, no
//! CONNECT within five seconds, a second CONNECT, silence past 1.5 times the keep-alive)
//! closes the connection with a log line; a CONNECT of another protocol level gets CONNACK
//! "unacceptable protocol version" first. Nothing here panics.
//!
//! The parts: [`tls`] builds the TLS listener and names the rider a certificate belongs to,
//! [`scope`] confines what a connection may name, [`session`] takes a connection from CONNECT
//! to its end (takeover, last will) and [`connection`] runs the packets in between. This file
//! binds the listeners and keeps the set of live connections.

mod connection;
mod scope;
mod session;
mod tls;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashkart_sync::StoreDb;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::hub::Hub;
use super::mqtt::Malformed;
use super::{BrokerSizing, Error};

pub use tls::start_tls;

/// The read buffer a connection starts with: MQTT packets here are small, and small buffers
/// keep 500 riders cheap (a larger packet grows the buffer while it is read).
const READ_BUFFER: usize = 1024;
/// Room in a packet besides its payload (topic, client id, will topic, user name, password).
const PACKET_OVERHEAD: usize = 4096;

/// Name of the device-facing TLS listener, in logs.
const TLS_LISTENER: &str = "riders-tls";
/// Name of the loopback listener without TLS (simulators, tests), in logs.
const PLAIN_LISTENER: &str = "riders-plain";

/// One listener of the front: TLS (rider devices) or plain (loopback: simulators, tests).
#[derive(Debug, Clone)]
pub struct Front {
    inner: Arc<Inner>,
}

struct Inner {
    name: &'static str,
    /// The address the listener is bound to (its port, when port 0 was asked for).
    local: SocketAddr,
    hub: Hub,
    tls: Option<TlsAcceptor>,
    db: StoreDb,
    max_packet: usize,
    max_connections: usize,
    queue: usize,
    live: Mutex<HashMap<u64, Live>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("name", &self.name)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A live connection, for session takeover and revocation.
struct Live {
    rider: Option<String>,
    client_id: String,
    /// Cancelled to end the connection.
    cut: CancellationToken,
    /// Cancelled once the connection has ended (and its will is published).
    done: CancellationToken,
}

/// Why a connection was refused or closed.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    #[error("client certificate: {0}")]
    Certificate(String),
    #[error("rider {0} is revoked, inactive or not on this store's roster")]
    NotAllowed(String),
    #[error("no CONNECT within {0:?}")]
    ConnectTimeout(Duration),
    #[error("the client closed the connection before CONNECT")]
    Closed,
    #[error("reading CONNECT: {0}")]
    Io(std::io::Error),
    #[error("bad packet: {0}")]
    Malformed(#[from] Malformed),
    #[error("the first packet is not CONNECT")]
    NotConnect,
    #[error("an empty client id needs a clean session")]
    EmptyClientId,
    #[error("the broker already serves {0} connections")]
    Full(usize),
    #[error("{0} `{1}` is outside the rider's topics")]
    OutOfScope(&'static str, String),
    #[error("{0}")]
    Protocol(&'static str),
}

/// Binds the loopback listener without TLS (simulators, tests) and serves its connections
/// through `hub`, until `shutdown`.
pub async fn start_plain(
    listen: SocketAddr,
    hub: Hub,
    db: StoreDb,
    sizing: &BrokerSizing,
    shutdown: CancellationToken,
) -> Result<Front, Error> {
    start(PLAIN_LISTENER, listen, hub, None, db, sizing, shutdown).await
}

async fn start(
    name: &'static str,
    listen: SocketAddr,
    hub: Hub,
    tls: Option<TlsAcceptor>,
    db: StoreDb,
    sizing: &BrokerSizing,
    shutdown: CancellationToken,
) -> Result<Front, Error> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Broker(format!("cannot listen on {listen} ({name}): {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Broker(format!("the address of {name}: {e}")))?;
    let front = Front {
        inner: Arc::new(Inner {
            name,
            local,
            hub,
            tls,
            db,
            max_packet: sizing.max_payload_size.saturating_add(PACKET_OVERHEAD),
            max_connections: sizing.max_connections,
            queue: sizing.connection_queue.max(1),
            live: Mutex::new(HashMap::new()),
            shutdown: shutdown.clone(),
        }),
    };
    tracing::debug!(listener = name, %local, "riders listener bound");
    let accepting = front.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let front = accepting.clone();
                    tokio::spawn(async move { front.serve(stream, peer).await });
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(front)
}

impl Front {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Closes the live connections of riders not in `allowed` (revoked, deactivated); returns
    /// the riders cut, once per connection. Connections without a rider (the loopback
    /// listener's) are left alone.
    pub fn disconnect_all_but(&self, allowed: &HashSet<String>) -> Vec<String> {
        let Ok(live) = self.inner.live.lock() else {
            return Vec::new();
        };
        live.values()
            .filter_map(|entry| {
                let rider = entry.rider.as_ref()?;
                (!allowed.contains(rider)).then(|| {
                    entry.cut.cancel();
                    rider.clone()
                })
            })
            .collect()
    }

    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let name = self.inner.name;
        let result = match &self.inner.tls {
            Some(tls) => match self.accept_tls(tls, stream).await {
                Ok((stream, identity)) => self.session(stream, peer, Some(identity)).await,
                Err(refused) => Err(refused),
            },
            None => self.session(stream, peer, None).await,
        };
        match result {
            Ok(()) => {}
            // Devices on flaky networks do this all the time.
            Err(
                refused @ (Refused::Closed | Refused::Handshake(_) | Refused::HandshakeTimeout),
            ) => {
                tracing::info!(listener = name, %peer, %refused, "connection ended before CONNECT");
            }
            Err(refused) => {
                tracing::warn!(listener = name, %peer, %refused, "closed a rider connection");
            }
        }
    }
}
