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

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use flashkart_sync::StoreDb;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::ca::{ServerIdentity, StoreCa};
use super::hub::{Hub, Message};
use super::mqtt::{self, ConnectCode, Malformed, Packet, QoS};
use super::topics::{self, is_rider_id};
use super::{BrokerSizing, Error};

/// How long a device may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a device may take to send CONNECT after connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a taking-over connection waits for the one it replaces to end.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(2);
/// The read buffer a connection starts with: MQTT packets here are small, and small buffers
/// keep 500 riders cheap (a larger packet grows the buffer while it is read).
const READ_BUFFER: usize = 1024;
/// Room in a packet besides its payload (topic, client id, will topic, user name, password).
const PACKET_OVERHEAD: usize = 4096;
/// QoS 1 messages sent to a device and not yet acknowledged, and QoS 2 messages from it not
/// yet released, at most; past the first the session waits for PUBACKs before sending more.
const MAX_INFLIGHT: usize = 32;

/// Name of the device-facing TLS listener, in logs.
const TLS_LISTENER: &str = "riders-tls";
/// Name of the loopback listener without TLS (simulators, tests), in logs.
const PLAIN_LISTENER: &str = "riders-plain";

/// Connection numbers, unique for the life of the process (across all listeners).
static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

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

/// The rider a TLS connection authenticated as.
struct Identity {
    rider: String,
    serial: String,
}

/// Where a connection may publish and subscribe: under its rider's prefix (TLS), or anywhere
/// (the loopback listener, whose clients are the edge's own simulators and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Rider(String),
    Trusted,
}

impl Scope {
    fn for_identity(identity: Option<&Identity>) -> Self {
        match identity {
            Some(identity) => Self::Rider(format!("{}{}/", topics::ROOT, identity.rider)),
            None => Self::Trusted,
        }
    }

    /// Whether a topic or filter is within the scope.
    fn allows(&self, topic: &str) -> bool {
        match self {
            Self::Rider(prefix) => topic.starts_with(prefix.as_str()),
            Self::Trusted => true,
        }
    }

    /// Checks what a packet from the device names: PUBLISH topics and SUBSCRIBE filters must
    /// be within the scope; a second CONNECT is refused.
    fn check(&self, packet: &Packet) -> Result<(), Refused> {
        match packet {
            Packet::Connect(_) => Err(Refused::Malformed(Malformed::Shape("a second CONNECT"))),
            Packet::Publish(publish) if !self.allows(&publish.topic) => {
                Err(Refused::OutOfScope("PUBLISH topic", publish.topic.clone()))
            }
            Packet::Subscribe { filters, .. } => {
                match filters.iter().find(|(f, _)| !self.allows(f)) {
                    Some((filter, _)) => {
                        Err(Refused::OutOfScope("SUBSCRIBE filter", filter.clone()))
                    }
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
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

/// Binds the device-facing TLS listener and serves its connections through `hub`, until
/// `shutdown`.
pub async fn start_tls(
    listen: SocketAddr,
    hub: Hub,
    server_identity: &ServerIdentity,
    ca: &StoreCa,
    db: StoreDb,
    sizing: &BrokerSizing,
    shutdown: CancellationToken,
) -> Result<Front, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca_certs = pem_certs(ca.ca_pem().as_bytes())
        .map_err(|e| Error::Broker(format!("the store CA certificate: {e}")))?;
    for cert in ca_certs {
        roots
            .add(cert)
            .map_err(|e| Error::Broker(format!("the store CA certificate: {e}")))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| Error::Broker(format!("client certificate verifier: {e}")))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_client_cert_verifier(verifier).with_single_cert(
                pem_certs(server_identity.cert_pem.as_bytes())?,
                pem_key(server_identity.key_pem.as_bytes())?,
            )
        })
        .map_err(|e| Error::Broker(format!("TLS server configuration: {e}")))?;
    // Phones reconnect often: a small resumption cache saves full handshakes without holding
    // memory for thousands of sessions.
    server.session_storage = rustls::server::ServerSessionMemoryCache::new(256);
    start(
        TLS_LISTENER,
        listen,
        hub,
        Some(TlsAcceptor::from(Arc::new(server))),
        db,
        sizing,
        shutdown,
    )
    .await
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

    async fn accept_tls(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
    ) -> Result<(tokio_rustls::server::TlsStream<TcpStream>, Identity), Refused> {
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
            .await
            .map_err(|_| Refused::HandshakeTimeout)?
            .map_err(Refused::Handshake)?;
        let der = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .ok_or_else(|| Refused::Certificate("none presented".into()))?;
        let identity = identity(der)?;
        if !self.allowed(&identity).await {
            return Err(Refused::NotAllowed(identity.rider));
        }
        Ok((stream, identity))
    }

    /// Whether the rider may connect: active, on the roster, not revoked, certificate not
    /// revoked. Fails closed when the database cannot be read.
    async fn allowed(&self, identity: &Identity) -> bool {
        let rider = identity.rider.clone();
        let serial = identity.serial.clone();
        let allowed = self
            .inner
            .db
            .read(move |conn| {
                let allowed: bool = conn
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM riders WHERE id = ?1 AND active = 1)
                         AND NOT EXISTS (SELECT 1 FROM rider_revocations WHERE rider_id = ?1)
                         AND NOT EXISTS (SELECT 1 FROM rider_certs
                                         WHERE serial = ?2 AND revoked_at IS NOT NULL)",
                    )?
                    .query_row((&rider, &serial), |row| row.get(0))?;
                Ok::<_, Error>(allowed)
            })
            .await;
        match allowed {
            Ok(allowed) => allowed,
            Err(error) => {
                tracing::error!(rider = %identity.rider, %error, "cannot check the roster; refusing");
                false
            }
        }
    }

    /// Reads CONNECT, registers the connection (taking over a live one with the same rider and
    /// client id) and serves it until it ends; then publishes its will unless it ended with
    /// DISCONNECT.
    async fn session<C>(
        &self,
        client: C,
        peer: SocketAddr,
        identity: Option<Identity>,
    ) -> Result<(), Refused>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut reader, mut writer) = tokio::io::split(client);
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        let read = read_connect(&mut reader, &mut buf, self.inner.max_packet);
        let connect = match tokio::time::timeout(CONNECT_TIMEOUT, read).await {
            Err(_) => return Err(Refused::ConnectTimeout(CONNECT_TIMEOUT)),
            Ok(Err(Refused::Malformed(protocol @ Malformed::Protocol { .. }))) => {
                let refusal = mqtt::connack(ConnectCode::UnacceptableProtocol);
                let _ = write(&mut writer, &refusal).await;
                return Err(protocol.into());
            }
            Ok(connect) => connect?,
        };
        let scope = Scope::for_identity(identity.as_ref());
        if let Some(will) = &connect.will
            && !scope.allows(&will.topic)
        {
            return Err(Refused::OutOfScope("will topic", will.topic.clone()));
        }
        if connect.client_id.is_empty() && !connect.clean_session {
            let _ = write(&mut writer, &mqtt::connack(ConnectCode::IdentifierRejected)).await;
            return Err(Refused::EmptyClientId);
        }
        let number = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let rider = identity.as_ref().map(|i| i.rider.clone());
        let (cut, done, replaced) = self.register(number, rider.clone(), &connect.client_id);
        // Dropped last: a connection taking this one over waits for it, and so for the will.
        let _done = done.drop_guard();
        let _registered = Deregister {
            front: self,
            number,
        };
        for old in replaced {
            old.cut.cancel();
            if tokio::time::timeout(TAKEOVER_TIMEOUT, old.done.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(client_id = %connect.client_id, "the replaced connection did not close in time");
            }
        }
        let hub = &self.inner.hub;
        let (queue_tx, mut queue) = mpsc::channel(self.inner.queue);
        if !hub.open(number, queue_tx, cut.clone()) {
            let _ = write(&mut writer, &mqtt::connack(ConnectCode::ServerUnavailable)).await;
            return Err(Refused::Full(self.inner.max_connections));
        }
        let _opened = Opened { hub, number };
        tracing::debug!(listener = self.inner.name, %peer, rider = ?rider, client_id = %connect.client_id, number, "connected");
        let mut connection = Connection {
            hub,
            number,
            scope,
            max_packet: self.inner.max_packet,
            next_id: 1,
            inflight: HashSet::new(),
            unreleased: HashSet::new(),
        };
        // 1.5 times the keep-alive, as MQTT 3.1.1 section 3.1.2.10 says.
        let keep_alive = (connect.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
        let ended = connection
            .run(&mut reader, &mut writer, buf, &mut queue, keep_alive, &cut)
            .await;
        let ended = match ended {
            // A device that hangs up, even mid-packet, is not worth a warning.
            Err(Refused::Io(error)) => {
                tracing::debug!(%error, number, "connection ended");
                Ok(Ending::Dropped)
            }
            ended => ended,
        };
        if let Some(will) = connect.will
            && !matches!(ended, Ok(Ending::Disconnected))
        {
            hub.publish_from_client(&will.topic, will.payload, will.qos)
                .await;
        }
        ended.map(|_| ())
    }

    /// Records a live connection and returns its tokens and the live connections it replaces.
    fn register(
        &self,
        number: u64,
        rider: Option<String>,
        client_id: &str,
    ) -> (CancellationToken, CancellationToken, Vec<Live>) {
        let cut = self.inner.shutdown.child_token();
        let done = CancellationToken::new();
        let mut replaced = Vec::new();
        if let Ok(mut live) = self.inner.live.lock() {
            if !client_id.is_empty() {
                for entry in live.values() {
                    if entry.rider == rider && entry.client_id == client_id {
                        replaced.push(Live {
                            rider: entry.rider.clone(),
                            client_id: entry.client_id.clone(),
                            cut: entry.cut.clone(),
                            done: entry.done.clone(),
                        });
                    }
                }
            }
            live.insert(
                number,
                Live {
                    rider,
                    client_id: client_id.to_owned(),
                    cut: cut.clone(),
                    done: done.clone(),
                },
            );
        }
        (cut, done, replaced)
    }
}

/// Removes a connection from the live set when its task ends, however it ends.
struct Deregister<'a> {
    front: &'a Front,
    number: u64,
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        if let Ok(mut live) = self.front.inner.live.lock() {
            live.remove(&self.number);
        }
    }
}

/// Removes a connection and its subscriptions from the hub when its task ends.
struct Opened<'a> {
    hub: &'a Hub,
    number: u64,
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        self.hub.close(self.number);
    }
}

/// How a connection ended: whether its will is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The device sent DISCONNECT: no will.
    Disconnected,
    /// Anything else (the device went away or fell silent, the edge cut it).
    Dropped,
}

/// After CONNECT / CONNACK, what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Disconnect,
}

/// One accepted connection's MQTT state.
struct Connection<'a> {
    hub: &'a Hub,
    number: u64,
    scope: Scope,
    max_packet: usize,
    /// The next packet identifier to try for a QoS 1 message to the device.
    next_id: u16,
    /// QoS 1 messages sent and not yet acknowledged.
    inflight: HashSet<u16>,
    /// QoS 2 messages received (and delivered) whose PUBREL has not come yet.
    unreleased: HashSet<u16>,
}

impl Connection<'_> {
    /// Sends CONNACK, then reads and answers the device's packets and writes what the hub
    /// queues for it, until DISCONNECT, the device goes away or falls silent, a bad packet, or
    /// `cut`. Packets are acted on whole and in order; a packet's scope is checked before
    /// anything else sees it.
    async fn run<R, W>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        mut buf: BytesMut,
        queue: &mut mpsc::Receiver<Message>,
        keep_alive: Option<Duration>,
        cut: &CancellationToken,
    ) -> Result<Ending, Refused>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        write(writer, &mqtt::connack(ConnectCode::Accepted)).await?;
        let mut deadline = keep_alive.map(|k| tokio::time::Instant::now() + k);
        loop {
            while let Some((header, len)) = mqtt::frame(&buf, self.max_packet)? {
                if buf.len() < header + len {
                    break;
                }
                let packet = mqtt::decode(buf[0], &buf[header..header + len])?;
                buf.advance(header + len);
                if let Some(keep_alive) = keep_alive {
                    deadline = Some(tokio::time::Instant::now() + keep_alive);
                }
                if self.handle(packet, writer).await? == Flow::Disconnect {
                    return Ok(Ending::Disconnected);
                }
            }
            if buf.is_empty() && buf.capacity() > 4 * READ_BUFFER {
                // A large packet went through: do not keep its buffer for the connection's life.
                buf = BytesMut::with_capacity(READ_BUFFER);
            } else if buf.capacity() - buf.len() < READ_BUFFER / 4 {
                buf.reserve(READ_BUFFER);
            }
            let silence = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cut.cancelled() => return Ok(Ending::Dropped),
                read = reader.read_buf(&mut buf) => {
                    if read.map_err(Refused::Io)? == 0 {
                        return Ok(Ending::Dropped);
                    }
                }
                Some(message) = queue.recv(), if self.inflight.len() < MAX_INFLIGHT => {
                    self.send(writer, &message).await?;
                }
                () = silence => {
                    return Err(Refused::Protocol("no packet within 1.5 times the keep-alive"));
                }
            }
        }
    }

    async fn handle<W: AsyncWrite + Unpin>(
        &mut self,
        packet: Packet,
        writer: &mut W,
    ) -> Result<Flow, Refused> {
        self.scope.check(&packet)?;
        match packet {
            Packet::Connect(_) => return Err(Malformed::Shape("a second CONNECT").into()),
            Packet::Publish(publish) => match (publish.qos, publish.packet_id) {
                (QoS::ExactlyOnce, Some(id)) => {
                    // Delivered once, at the first copy; a resent copy before PUBREL is not.
                    if !self.unreleased.contains(&id) {
                        if self.unreleased.len() >= MAX_INFLIGHT {
                            return Err(Refused::Protocol(
                                "too many QoS 2 messages awaiting PUBREL",
                            ));
                        }
                        self.unreleased.insert(id);
                        self.forward(&publish.topic, publish.payload, publish.qos)
                            .await?;
                    }
                    write(writer, &mqtt::ack(mqtt::PUBREC, id)).await?;
                }
                (QoS::AtLeastOnce, Some(id)) => {
                    self.forward(&publish.topic, publish.payload, publish.qos)
                        .await?;
                    write(writer, &mqtt::ack(mqtt::PUBACK, id)).await?;
                }
                _ => {
                    self.forward(&publish.topic, publish.payload, publish.qos)
                        .await?;
                }
            },
            Packet::PubAck(id) => {
                self.inflight.remove(&id);
            }
            Packet::PubRec(_) | Packet::PubComp(_) => {
                return Err(Refused::Protocol(
                    "PUBREC or PUBCOMP, but the broker sends nothing at QoS 2",
                ));
            }
            Packet::PubRel(id) => {
                self.unreleased.remove(&id);
                write(writer, &mqtt::ack(mqtt::PUBCOMP, id)).await?;
            }
            Packet::Subscribe { packet_id, filters } => {
                let (granted, retained) = self.hub.subscribe(self.number, &filters);
                write(writer, &mqtt::suback(packet_id, &granted)).await?;
                for message in &retained {
                    self.send(writer, message).await?;
                }
            }
            Packet::Unsubscribe { packet_id, filters } => {
                self.hub.unsubscribe(self.number, &filters);
                write(writer, &mqtt::ack(mqtt::UNSUBACK, packet_id)).await?;
            }
            Packet::PingReq => write(writer, &mqtt::PINGRESP).await?,
            Packet::Disconnect => return Ok(Flow::Disconnect),
        }
        Ok(Flow::Continue)
    }

    async fn forward(&self, topic: &str, payload: Bytes, qos: QoS) -> Result<(), Refused> {
        if self.hub.publish_from_client(topic, payload, qos).await {
            Ok(())
        } else {
            Err(Refused::Protocol("the edge is shutting down"))
        }
    }

    async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        message: &Message,
    ) -> Result<(), Refused> {
        let packet_id = (message.qos != QoS::AtMostOnce).then(|| self.next_packet_id());
        if let Some(id) = packet_id {
            self.inflight.insert(id);
        }
        let packet = mqtt::encode_publish(
            &message.topic,
            &message.payload,
            message.qos,
            message.retain,
            packet_id,
        );
        write(writer, &packet).await
    }

    /// A packet identifier (1..=65535) not in flight.
    fn next_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_id;
            self.next_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.contains(&id) {
                return id;
            }
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> Result<(), Refused> {
    writer.write_all(bytes).await.map_err(Refused::Io)?;
    writer.flush().await.map_err(Refused::Io)
}

/// Reads until `buf` starts with a whole packet, which must be an MQTT 3.1.1 CONNECT of at
/// most `max` bytes; what follows it stays in `buf`.
async fn read_connect<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<mqtt::Connect, Refused> {
    loop {
        if buf.first().is_some_and(|&first| first != 0x10) {
            return Err(Refused::NotConnect);
        }
        if let Some((header, len)) = mqtt::frame(buf, max)?
            && buf.len() >= header + len
        {
            let packet = mqtt::decode(buf[0], &buf[header..header + len])?;
            buf.advance(header + len);
            return match packet {
                Packet::Connect(connect) => Ok(connect),
                _ => Err(Refused::NotConnect),
            };
        }
        if buf.capacity() - buf.len() < READ_BUFFER / 4 {
            buf.reserve(READ_BUFFER);
        }
        match reader.read_buf(buf).await {
            Ok(0) => return Err(Refused::Closed),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Refused::Closed);
            }
            Err(error) => return Err(Refused::Io(error)),
        }
    }
}

/// The rider id (Organization) and hex serial of a verified client certificate.
fn identity(der: &CertificateDer<'_>) -> Result<Identity, Refused> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| Refused::Certificate(format!("unparsable: {e}")))?;
    let rider = cert
        .subject()
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok())
        .ok_or_else(|| Refused::Certificate("no Organization (rider id)".into()))?
        .to_owned();
    if !is_rider_id(&rider) {
        return Err(Refused::Certificate(format!("`{rider}` is not a rider id")));
    }
    let serial = cert
        .tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Identity { rider, serial })
}

fn pem_certs(mut pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, rustls::Error> {
    rustls_pemfile::certs(&mut pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| rustls::Error::General(format!("PEM certificate: {e}")))
}

fn pem_key(mut pem: &[u8]) -> Result<PrivateKeyDer<'static>, rustls::Error> {
    rustls_pemfile::private_key(&mut pem)
        .map_err(|e| rustls::Error::General(format!("PEM key: {e}")))?
        .ok_or_else(|| rustls::Error::General("no private key in the PEM".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str) -> Packet {
        Packet::Publish(mqtt::Publish {
            topic: topic.into(),
            payload: Bytes::from_static(b"payload"),
            qos: QoS::AtMostOnce,
            retain: false,
            packet_id: None,
        })
    }

    fn subscribe(filters: &[&str]) -> Packet {
        Packet::Subscribe {
            packet_id: 1,
            filters: filters
                .iter()
                .map(|f| ((*f).to_owned(), QoS::AtLeastOnce))
                .collect(),
        }
    }

    #[test]
    fn a_rider_publishes_and_subscribes_under_its_prefix_only() {
        let a = Scope::Rider("/tenants/riderA/".into());
        for good in [
            publish("/tenants/riderA/location"),
            subscribe(&["/tenants/riderA/edge/#"]),
            Packet::PingReq,
            Packet::Unsubscribe {
                packet_id: 1,
                filters: vec!["#".into()],
            },
        ] {
            assert!(a.check(&good).is_ok(), "{good:?}");
        }
        for bad in [
            publish("/tenants/riderB/replies"),
            publish("/tenants/riderA"),
            publish("/tenants/riderAB/replies"),
            subscribe(&["/tenants/riderA/edge/#", "#"]),
            subscribe(&["/tenants/+/edge/#"]),
            subscribe(&["$share/g/tenants/riderA/edge/#"]),
        ] {
            assert!(
                matches!(a.check(&bad), Err(Refused::OutOfScope(..))),
                "{bad:?}"
            );
            assert!(Scope::Trusted.check(&bad).is_ok(), "{bad:?}");
        }
    }

    fn connect_packet(client_id: &str) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
        body.extend_from_slice(&u16::try_from(client_id.len()).unwrap_or(0).to_be_bytes());
        body.extend_from_slice(client_id.as_bytes());
        let mut packet = vec![0x10, u8::try_from(body.len()).unwrap_or(0)];
        packet.extend(body);
        packet
    }

    #[tokio::test]
    async fn read_connect_leaves_what_follows_and_refuses_other_first_packets() {
        let mut stream = connect_packet("phone");
        stream.extend([0xc0, 0]);
        let mut buf = BytesMut::new();
        let connect = read_connect(&mut &stream[..], &mut buf, 100).await;
        assert_eq!(connect.ok().map(|c| c.client_id), Some("phone".to_owned()));
        assert_eq!(&buf[..], &[0xc0, 0], "the PINGREQ after CONNECT is kept");

        for (bytes, refused) in [
            (&[0x30, 2, 0, 0][..], "NotConnect"),
            (&[0x10, 0xff, 0xff, 0xff, 0x7f][..], "TooLarge"),
            (&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01][..], "Shape"),
            (&[0x10, 20, 0, 4][..], "Closed"),
            (&[0x10, 2, 0, 4][..], "Shape"),
        ] {
            let mut buf = BytesMut::new();
            let error = read_connect(&mut &bytes[..], &mut buf, 100)
                .await
                .err()
                .map(|e| format!("{e:?}"));
            assert!(
                error.as_deref().is_some_and(|e| e.contains(refused)),
                "{bytes:?}: {error:?}"
            );
        }
    }
}
