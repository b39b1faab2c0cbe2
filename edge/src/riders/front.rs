//! The riders' front door: the listeners devices and simulators connect to, in front of the
//! embedded rumqttd, which listens on loopback only.
//!
//! Why it exists (issue 6): rumqttd 0.20 keeps one will-handler sender per client id
//! (`<tenant>.<client id>`) in a mutex-protected map. When a connection fails between reading
//! CONNECT and writing CONNACK (a phone on a flaky network hangs up, a client gives up waiting
//! for CONNACK on a loaded Pi, the router refuses it), the sender stays in the map with its
//! receiver gone; the next CONNECT with the same client id `unwrap`s a failed `try_send` while
//! holding the lock, the mutex is poisoned, and every later connection on that listener panics:
//! one flaky rider takes down every rider of the store. rumqttd cannot be patched here, so the
//! front makes sure the precondition never occurs: **every connection rumqttd sees has a client
//! id no other connection ever had**. It reads the device's CONNECT, rewrites the client id to
//! `<client id>~<connection number>` (the number is unique for the life of the process, so the
//! rewritten ids are too), and relays the rest of the conversation.
//!
//! Isolation: the TLS listener requires a client certificate from the store CA, reads the rider
//! id from its Organization and confines the connection to `/tenants/<rider id>/` itself: the
//! will topic in CONNECT, every PUBLISH topic and every SUBSCRIBE filter the device sends must
//! start with that prefix, or the connection is closed with a log line before the packet
//! reaches the broker (the rule rumqttd's `validate-tenant-prefix` applies to certificate
//! connections). Terminating TLS here and relaying plain MQTT to rumqttd on loopback keeps one
//! TLS session per rider instead of three (device-front, front-broker, and the broker's end of
//! it): the difference between fitting 500 riders in the Pi's memory budget or not. The front
//! also refuses riders that are revoked, deactivated or unknown (and revoked certificates)
//! right after the handshake, before any MQTT packet reaches the broker, and
//! [`Front::disconnect_all_but`] cuts the live connections of riders that are revoked or
//! deactivated.
//!
//! Last wills: the front takes the will out of CONNECT and publishes it itself, through a
//! short connection of its own, when a connection ends without DISCONNECT (the device went
//! away, the broker closed it, it was cut): rumqttd would keep the will as slices of the
//! connection's first 10 KiB read buffer for as long as the device stays connected.
//!
//! Since the broker no longer sees two connections with one client id, it can no longer take
//! over an old session itself; the front does it instead: a new connection with the same rider
//! and client id as a live one first closes the old one and waits (up to two seconds) until it
//! has ended and its last will (`online: false`) is published, before the new connection's
//! presence. Persistent sessions (`clean_session = false`) do not survive a reconnection;
//! offers are retained messages and re-published from the database, so a reconnecting device
//! still gets them.
//!
//! Bad input (anything but an MQTT 3.1.1 CONNECT first, a malformed or oversized packet, no
//! CONNECT within five seconds, a second CONNECT) closes the connection with a log line;
//! nothing here panics.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use flashkart_sync::StoreDb;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::Error;
use super::ca::{ServerIdentity, StoreCa};
use super::topics::{self, is_rider_id};

/// How long a device may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a device may take to send CONNECT after connecting (rumqttd's own limit).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the front waits for the broker (connecting, or closing a replaced connection).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read at a time per direction of a relayed connection: MQTT packets here are small, and
/// small buffers keep 500 riders cheap (a larger packet grows its buffer while it is read).
const RELAY_BUFFER: usize = 1024;
/// Room in a packet besides its payload (topic, client id, will topic, user name, password).
const PACKET_OVERHEAD: usize = 4096;

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
    upstream: SocketAddr,
    tls: Option<TlsAcceptor>,
    db: StoreDb,
    max_packet: usize,
    live: Mutex<HashMap<u64, Live>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("name", &self.name)
            .field("upstream", &self.upstream)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A relayed connection, for session takeover and revocation.
struct Live {
    rider: Option<String>,
    client_id: String,
    /// Cancelled to end the connection.
    cut: CancellationToken,
    /// Cancelled once the connection has ended.
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

    /// Whether a topic or filter (raw bytes, as on the wire) is within the scope.
    fn allows(&self, topic: &[u8]) -> bool {
        match self {
            Self::Rider(prefix) => topic.starts_with(prefix.as_bytes()),
            Self::Trusted => true,
        }
    }
}

/// Why a connection was refused before it reached the broker.
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
    #[error("bad CONNECT: {0}")]
    Malformed(&'static str),
    #[error("unsupported protocol {name:?} level {level} (MQTT 3.1.1, level 4, only)")]
    Protocol { name: String, level: u8 },
    #[error("CONNECT of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("cannot reach the broker: {0}")]
    Upstream(String),
    #[error("{0} `{1}` is outside the rider's topics")]
    OutOfScope(&'static str, String),
}

/// Binds the device-facing TLS listener and relays its connections to rumqttd's loopback
/// listener at `upstream`, until `shutdown`.
pub async fn start_tls(
    listen: SocketAddr,
    upstream: SocketAddr,
    server_identity: &ServerIdentity,
    ca: &StoreCa,
    db: StoreDb,
    max_payload_size: usize,
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
        upstream,
        Some(TlsAcceptor::from(Arc::new(server))),
        db,
        max_payload_size,
        shutdown,
    )
    .await
}

/// Binds the loopback listener without TLS (simulators, tests) and relays its connections to
/// rumqttd's loopback listener at `upstream`, until `shutdown`.
pub async fn start_plain(
    listen: SocketAddr,
    upstream: SocketAddr,
    db: StoreDb,
    max_payload_size: usize,
    shutdown: CancellationToken,
) -> Result<Front, Error> {
    start(
        PLAIN_LISTENER,
        listen,
        upstream,
        None,
        db,
        max_payload_size,
        shutdown,
    )
    .await
}

async fn start(
    name: &'static str,
    listen: SocketAddr,
    upstream: SocketAddr,
    tls: Option<TlsAcceptor>,
    db: StoreDb,
    max_payload_size: usize,
    shutdown: CancellationToken,
) -> Result<Front, Error> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Broker(format!("cannot listen on {listen} ({name}): {e}")))?;
    let front = Front {
        inner: Arc::new(Inner {
            name,
            upstream,
            tls,
            db,
            max_packet: max_payload_size.saturating_add(PACKET_OVERHEAD),
            live: Mutex::new(HashMap::new()),
        }),
    };
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
                tracing::warn!(listener = name, %peer, %refused, "refused a rider connection");
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
    /// client id), connects to the broker and relays.
    async fn session<C>(
        &self,
        mut client: C,
        peer: SocketAddr,
        identity: Option<Identity>,
    ) -> Result<(), Refused>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let connect = tokio::time::timeout(
            CONNECT_TIMEOUT,
            read_connect(&mut client, self.inner.max_packet),
        )
        .await
        .map_err(|_| Refused::ConnectTimeout(CONNECT_TIMEOUT))??;
        let scope = Scope::for_identity(identity.as_ref());
        if let Some(will) = &connect.will
            && !scope.allows(&will.topic)
        {
            return Err(Refused::OutOfScope(
                "will topic",
                String::from_utf8_lossy(&will.topic).into_owned(),
            ));
        }
        let number = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let unique_id = format!("{}~{number}", connect.client_id);
        let rider = identity.as_ref().map(|i| i.rider.clone());
        let (cut, done, replaced) = self.register(number, rider.clone(), &connect.client_id);
        let _done = done.drop_guard();
        let _registered = Deregister {
            front: self,
            number,
        };
        for old in replaced {
            old.cut.cancel();
            if tokio::time::timeout(UPSTREAM_TIMEOUT, old.done.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(client_id = %connect.client_id, "the replaced connection did not close in time");
            }
        }
        let packet = connect.encode(&unique_id)?;
        tracing::debug!(listener = self.inner.name, %peer, rider = ?rider, client_id = %connect.client_id, %unique_id, "relaying");
        let upstream =
            tokio::time::timeout(UPSTREAM_TIMEOUT, TcpStream::connect(self.inner.upstream))
                .await
                .map_err(|_| Refused::Upstream("connect timed out".into()))?
                .map_err(|e| Refused::Upstream(e.to_string()))?;
        let _ = upstream.set_nodelay(true);
        let relayed = relay(
            client,
            upstream,
            &packet,
            &scope,
            self.inner.max_packet,
            &cut,
        )
        .await;
        // Before `_done` is dropped: a connection taking this one over waits for the will.
        if let Some(will) = &connect.will
            && !matches!(relayed, Ok(Ending::Disconnected))
        {
            let will_id = format!("{unique_id}~will");
            if let Err(error) = publish_will(self.inner.upstream, &will_id, will).await {
                tracing::warn!(%error, client_id = %connect.client_id, "the last will was not published");
            }
        }
        relayed.map(|_| ())
    }

    /// Records a live connection and returns its tokens and the live connections it replaces.
    fn register(
        &self,
        number: u64,
        rider: Option<String>,
        client_id: &str,
    ) -> (CancellationToken, CancellationToken, Vec<Live>) {
        let cut = CancellationToken::new();
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

/// How a relayed connection ended: whether its will is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The device sent DISCONNECT: no will.
    Disconnected,
    /// Anything else (the device went away, the broker closed the connection, it was cut).
    Dropped,
}

/// Sends the rewritten CONNECT upstream, then relays both ways until either side closes, the
/// device steps out of its scope or sends a bad packet, the device sends DISCONNECT, or the
/// connection is cut. Device to broker, whole packets are checked against the scope before they
/// are forwarded; broker to device, bytes are copied as they come. A cut connection is closed
/// towards the broker first, waiting (bounded) until the broker has closed it too.
async fn relay<C>(
    client: C,
    upstream: TcpStream,
    connect: &[u8],
    scope: &Scope,
    max_packet: usize,
    cut: &CancellationToken,
) -> Result<Ending, Refused>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut up_rx, mut up_tx) = upstream.into_split();
    if let Err(error) = async {
        up_tx.write_all(connect).await?;
        up_tx.flush().await
    }
    .await
    {
        tracing::warn!(%error, "the broker closed the connection at CONNECT");
        return Ok(Ending::Dropped);
    }
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let inbound = async {
        let mut buf = BytesMut::with_capacity(RELAY_BUFFER);
        loop {
            let checked = checked_packets(&mut buf, scope, max_packet)?;
            if checked.len > 0 {
                let packets = buf.split_to(checked.len);
                up_tx.write_all(&packets).await.map_err(Refused::Io)?;
                if checked.disconnect {
                    return Ok(Ending::Disconnected);
                }
            }
            if buf.is_empty() && buf.capacity() > 4 * RELAY_BUFFER {
                // A large packet went through: do not keep its buffer for the connection's life.
                buf = BytesMut::with_capacity(RELAY_BUFFER);
            } else if buf.capacity() - buf.len() < RELAY_BUFFER / 4 {
                buf.reserve(RELAY_BUFFER);
            }
            if client_rx.read_buf(&mut buf).await.map_err(Refused::Io)? == 0 {
                return Ok(Ending::Dropped);
            }
        }
    };
    let outbound = async {
        let mut buf = vec![0; RELAY_BUFFER];
        loop {
            let read = up_rx.read(&mut buf).await?;
            if read == 0 {
                return Ok::<_, std::io::Error>(());
            }
            client_tx.write_all(&buf[..read]).await?;
            client_tx.flush().await?;
        }
    };
    let ended = tokio::select! {
        ended = inbound => ended,
        ended = outbound => {
            if let Err(error) = ended {
                tracing::debug!(%error, "relayed connection ended");
            }
            Ok(Ending::Dropped)
        }
        () = cut.cancelled() => {
            drop((client_rx, client_tx));
            let _ = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
                let _ = up_tx.shutdown().await;
                let mut sink = [0u8; 1024];
                while matches!(up_rx.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
            Ok(Ending::Dropped)
        }
    };
    match ended {
        // A device that hangs up mid-packet is not worth a warning.
        Err(Refused::Io(error)) => {
            tracing::debug!(%error, "relayed connection ended");
            Ok(Ending::Dropped)
        }
        ended => ended,
    }
}

/// The whole packets at the start of a device's buffer that passed [`checked_packets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked {
    /// Their length in bytes.
    len: usize,
    /// Whether the last of them is a DISCONNECT (the device is done; no will).
    disconnect: bool,
}

/// How many bytes at the start of `buf` are whole packets within `scope`; an error for a
/// packet out of scope, malformed or larger than `max_packet`, even if it has not fully
/// arrived yet. Clears the RETAIN flag of the checked PUBLISH packets (see [`unretained`]).
fn checked_packets(buf: &mut [u8], scope: &Scope, max_packet: usize) -> Result<Checked, Refused> {
    let mut checked = Checked {
        len: 0,
        disconnect: false,
    };
    while let Some((header, len)) = packet_length(&buf[checked.len..], max_packet)? {
        let at = checked.len;
        let Some(packet) = buf.get(at..at + header + len) else {
            break;
        };
        check_packet(packet[0], &packet[header..], scope)?;
        buf[at] = unretained(buf[at]);
        checked = Checked {
            len: at + header + len,
            disconnect: buf[at] == 0xe0,
        };
    }
    Ok(checked)
}

/// A device's PUBLISH fixed-header byte without RETAIN (other packets' unchanged).
///
/// Everything a device publishes is for the edge, which reads it as it arrives; a retained copy
/// would serve nobody. rumqttd would keep one per topic in memory for the life of the process
/// (a device inventing topics under its prefix could grow that without bound), and every copy
/// keeps alive the 8-10 KiB read buffer its connection received it in. Apps that retain by
/// default (OwnTracks retains its locations) need no setting changed for this.
fn unretained(first: u8) -> u8 {
    if first >> 4 == 3 {
        first & !0x01
    } else {
        first
    }
}

/// The fixed header's length and the remaining length of the packet at the start of `buf`,
/// once they have arrived.
fn packet_length(buf: &[u8], max_packet: usize) -> Result<Option<(usize, usize)>, Refused> {
    let mut len: usize = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if len > max_packet {
                return Err(Refused::TooLarge(len));
            }
            return Ok(Some((2 + i, len)));
        }
    }
    Err(Refused::Malformed("remaining length longer than 4 bytes"))
}

/// Checks one device-to-broker packet: no second CONNECT, and PUBLISH topics and SUBSCRIBE
/// filters within the scope. Other packets (acknowledgements, pings, unsubscribes,
/// DISCONNECT) pass; the broker validates the rest of their shape.
fn check_packet(first: u8, body: &[u8], scope: &Scope) -> Result<(), Refused> {
    match first >> 4 {
        1 => Err(Refused::Malformed("a second CONNECT")),
        3 => {
            let (topic, _) = string(body).ok_or(Refused::Malformed("truncated PUBLISH topic"))?;
            if scope.allows(topic) {
                Ok(())
            } else {
                Err(Refused::OutOfScope(
                    "PUBLISH topic",
                    String::from_utf8_lossy(topic).into_owned(),
                ))
            }
        }
        8 => {
            // Packet identifier, then (filter, options) pairs.
            let mut rest = body
                .get(2..)
                .ok_or(Refused::Malformed("truncated SUBSCRIBE"))?;
            if rest.is_empty() {
                return Err(Refused::Malformed("SUBSCRIBE without a filter"));
            }
            while !rest.is_empty() {
                let (filter, after) =
                    string(rest).ok_or(Refused::Malformed("truncated SUBSCRIBE filter"))?;
                if !scope.allows(filter) {
                    return Err(Refused::OutOfScope(
                        "SUBSCRIBE filter",
                        String::from_utf8_lossy(filter).into_owned(),
                    ));
                }
                rest = after
                    .get(1..)
                    .ok_or(Refused::Malformed("SUBSCRIBE filter without options"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An MQTT length-prefixed string at the start of `buf`, and what follows it.
fn string(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = usize::from(u16::from_be_bytes(buf.get(0..2)?.try_into().ok()?));
    Some((buf.get(2..2 + len)?, buf.get(2 + len..)?))
}

/// A CONNECT packet, split around its client id, without its will.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Connect {
    /// The variable header: protocol name, level, flags (the will's cleared), keep alive.
    head: Vec<u8>,
    client_id: String,
    /// The device's last will, which the front publishes itself (see [`publish_will`]).
    will: Option<Will>,
    /// The rest of the payload (user name, password), unchanged.
    rest: Vec<u8>,
}

/// A device's last will.
///
/// The front keeps it instead of the broker because rumqttd keeps a will as slices of the read
/// buffer the CONNECT arrived in: a 10 KiB buffer per connection, kept for as long as the
/// device stays connected (5 MiB for 500 riders).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Will {
    topic: Vec<u8>,
    message: Vec<u8>,
}

/// The CONNECT flags that describe the will: Will Flag, Will QoS, Will Retain.
const WILL_FLAGS: u8 = 0x04 | 0x18 | 0x20;

impl Connect {
    /// The packet with `client_id` instead of the device's, and no will.
    fn encode(&self, client_id: &str) -> Result<Vec<u8>, Refused> {
        let id_len =
            u16::try_from(client_id.len()).map_err(|_| Refused::Malformed("client id too long"))?;
        let len = self.head.len() + 2 + client_id.len() + self.rest.len();
        let mut packet = Vec::with_capacity(len + 5);
        packet.push(0x10);
        push_remaining_length(&mut packet, len)?;
        packet.extend_from_slice(&self.head);
        packet.extend_from_slice(&id_len.to_be_bytes());
        packet.extend_from_slice(client_id.as_bytes());
        packet.extend_from_slice(&self.rest);
        Ok(packet)
    }
}

/// Appends MQTT's variable-length encoding of a packet's remaining length.
fn push_remaining_length(packet: &mut Vec<u8>, len: usize) -> Result<(), Refused> {
    if len > 268_435_455 {
        return Err(Refused::TooLarge(len));
    }
    let mut remaining = len;
    loop {
        let mut byte = (remaining % 128) as u8;
        remaining /= 128;
        if remaining > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if remaining == 0 {
            return Ok(());
        }
    }
}

/// Publishes `will` through a connection of its own, as the broker would have when the device's
/// connection ended without DISCONNECT. QoS 1 whatever the device asked for, so that it is in
/// the broker's log (and before anything a replacing connection sends) when this returns; not
/// retained, for the reasons of [`unretained`].
async fn publish_will(upstream: SocketAddr, client_id: &str, will: &Will) -> Result<(), Refused> {
    let upstream_error = |e: std::io::Error| Refused::Upstream(format!("publishing the will: {e}"));
    let connect = Connect {
        head: vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10],
        client_id: String::new(),
        will: None,
        rest: Vec::new(),
    }
    .encode(client_id)?;
    let topic_len =
        u16::try_from(will.topic.len()).map_err(|_| Refused::Malformed("will topic too long"))?;
    let mut publish = vec![0x32];
    push_remaining_length(&mut publish, 2 + will.topic.len() + 2 + will.message.len())?;
    publish.extend_from_slice(&topic_len.to_be_bytes());
    publish.extend_from_slice(&will.topic);
    publish.extend_from_slice(&1u16.to_be_bytes());
    publish.extend_from_slice(&will.message);
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await.map_err(upstream_error)?;
        // Each answer is four bytes: CONNACK (accepted, either session flag), then PUBACK 1.
        for (packet, accepted) in [
            (&connect[..], &[[0x20, 2, 0, 0], [0x20, 2, 1, 0]][..]),
            (&publish[..], &[[0x40, 2, 0, 1]][..]),
        ] {
            stream.write_all(packet).await.map_err(upstream_error)?;
            let mut answer = [0u8; 4];
            stream
                .read_exact(&mut answer)
                .await
                .map_err(upstream_error)?;
            if !accepted.contains(&answer) {
                return Err(Refused::Upstream(format!(
                    "the broker did not accept the will: {answer:?}"
                )));
            }
        }
        stream.write_all(&[0xe0, 0]).await.map_err(upstream_error)
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| Refused::Upstream("publishing the will timed out".into()))?
}

/// Reads exactly one packet, which must be an MQTT 3.1.1 CONNECT of at most `max` bytes.
async fn read_connect<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Connect, Refused> {
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Refused::Closed
        } else {
            Refused::Io(e)
        }
    };
    let mut header = vec![reader.read_u8().await.map_err(io)?];
    if header[0] != 0x10 {
        return Err(Refused::Malformed("the first packet is not CONNECT"));
    }
    let len = loop {
        header.push(reader.read_u8().await.map_err(io)?);
        if let Some((_, len)) = packet_length(&header, max)? {
            break len;
        }
    };
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await.map_err(io)?;
    parse_connect(&body)
}

/// Splits a CONNECT body (after the fixed header).
fn parse_connect(body: &[u8]) -> Result<Connect, Refused> {
    let short = Refused::Malformed;
    let (name, after_name) = string(body).ok_or(short("truncated protocol name"))?;
    let level = *after_name.first().ok_or(short("no protocol level"))?;
    if name != b"MQTT" || level != 4 {
        return Err(Refused::Protocol {
            name: String::from_utf8_lossy(name).into_owned(),
            level,
        });
    }
    let flags = *after_name.get(1).ok_or(short("no connect flags"))?;
    if flags & 0x01 != 0 {
        return Err(short("reserved connect flag set"));
    }
    let head_end = body.len() - after_name.len() + 4;
    let head = body.get(..head_end).ok_or(short("no keep alive"))?;
    let (id, rest) = string(&body[head_end..]).ok_or(short("truncated client id"))?;
    let client_id = std::str::from_utf8(id)
        .map_err(|_| short("client id is not UTF-8"))?
        .to_owned();
    let (will, rest) = if flags & 0x04 != 0 {
        if (flags >> 3) & 0x03 == 3 {
            return Err(short("will QoS 3"));
        }
        let (topic, after_topic) = string(rest).ok_or(short("truncated will topic"))?;
        let (message, after_will) = string(after_topic).ok_or(short("truncated will message"))?;
        let will = Will {
            topic: topic.to_vec(),
            message: message.to_vec(),
        };
        (Some(will), after_will)
    } else {
        (None, rest)
    };
    let mut head = head.to_vec();
    head[head_end - 3] &= !WILL_FLAGS;
    Ok(Connect {
        head,
        client_id,
        will,
        rest: rest.to_vec(),
    })
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

/// A free port on loopback for one of rumqttd's internal listeners (rumqttd cannot report the
/// port it bound, so it cannot be given port 0).
pub fn free_loopback_port() -> Result<SocketAddr, Error> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| Error::Broker(format!("no free loopback port: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_body(client_id: &str, rest: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
        body.extend_from_slice(&u16::try_from(client_id.len()).unwrap_or(0).to_be_bytes());
        body.extend_from_slice(client_id.as_bytes());
        body.extend_from_slice(rest);
        body
    }

    #[test]
    fn rewrites_the_client_id_and_keeps_the_rest() {
        let rest = [0, 3, b'a', b'/', b'b', 0, 1, b'x'];
        let body = connect_body("phone", &rest);
        let connect = parse_connect(&body).map_err(|e| e.to_string());
        assert_eq!(connect.as_ref().map(|c| c.client_id.as_str()), Ok("phone"));
        let Ok(connect) = connect else { return };
        let packet = connect.encode("phone~7").map_err(|e| e.to_string());
        let mut expected = vec![0x10, 0];
        expected.extend(connect_body("phone~7", &rest));
        expected[1] = u8::try_from(expected.len() - 2).unwrap_or(0);
        assert_eq!(packet, Ok(expected));
    }

    #[test]
    fn long_packets_get_a_multi_byte_length() {
        let rest = vec![7u8; 300];
        let Ok(connect) = parse_connect(&connect_body("", &rest)) else {
            panic!("parse failed")
        };
        let Ok(packet) = connect.encode("x~1") else {
            panic!("encode failed")
        };
        let len = 10 + 2 + 3 + 300;
        assert_eq!(
            &packet[..3],
            &[0x10, (len % 128) as u8 | 0x80, (len / 128) as u8]
        );
        assert_eq!(packet.len(), 3 + len);
    }

    #[test]
    fn bad_connects_are_errors_not_panics() {
        for body in [
            &b""[..],
            &[0, 4, b'M', b'Q'][..],
            &[0, 4, b'M', b'Q', b'T', b'T'][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 5, b'a'][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x03, 0, 30, 0, 0][..],
            &[
                0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 30, 0, 0,
            ][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 0, 0][..],
            &[
                0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 2, 0xff, 0xfe,
            ][..],
            &[0xff, 0xff, 0, 0][..],
        ] {
            assert!(parse_connect(body).is_err(), "{body:?}");
        }
    }

    fn packet(first: u8, body: &[u8]) -> Vec<u8> {
        let mut packet = vec![first, u8::try_from(body.len()).unwrap_or(0)];
        packet.extend_from_slice(body);
        packet
    }

    fn publish(topic: &str) -> Vec<u8> {
        let mut body = u16::try_from(topic.len())
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec();
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(b"payload");
        packet(0x30, &body)
    }

    fn subscribe(filters: &[&str]) -> Vec<u8> {
        let mut body = vec![0, 1];
        for filter in filters {
            body.extend_from_slice(&u16::try_from(filter.len()).unwrap_or(0).to_be_bytes());
            body.extend_from_slice(filter.as_bytes());
            body.push(1);
        }
        packet(0x82, &body)
    }

    fn rider(id: &str) -> Scope {
        Scope::Rider(format!("/tenants/{id}/"))
    }

    #[test]
    fn a_rider_publishes_and_subscribes_under_its_prefix_only() {
        let a = rider("riderA");
        let mut stream = publish("/tenants/riderA/location");
        stream.extend(subscribe(&["/tenants/riderA/edge/#"]));
        stream.extend(packet(0xc0, &[]));
        assert_eq!(
            checked_packets(&mut stream, &a, 100).ok().map(|c| c.len),
            Some(stream.len())
        );
        for mut bad in [
            publish("/tenants/riderB/replies"),
            publish("/tenants/riderA"),
            publish("/tenants/riderAB/replies"),
            publish("/tenants/+/replies"),
            subscribe(&["/tenants/riderA/edge/#", "#"]),
            subscribe(&["/tenants/+/edge/#"]),
            subscribe(&["$share/g/tenants/riderA/edge/#"]),
        ] {
            assert!(
                matches!(
                    checked_packets(&mut bad, &a, 100),
                    Err(Refused::OutOfScope(..))
                ),
                "{bad:?}"
            );
            assert_eq!(
                checked_packets(&mut bad, &Scope::Trusted, 100)
                    .ok()
                    .map(|c| c.len),
                Some(bad.len())
            );
        }
    }

    #[test]
    fn packets_are_checked_only_once_whole_and_bad_ones_refused() {
        let a = rider("riderA");
        let mut stream = publish("/tenants/riderA/location");
        let first = stream.len();
        stream.extend(publish("/tenants/riderB/location"));
        // The second packet is out of scope, but has not fully arrived: the first goes on.
        assert_eq!(
            checked_packets(&mut stream[..first + 3], &a, 100)
                .ok()
                .map(|c| c.len),
            Some(first)
        );
        assert!(checked_packets(&mut stream, &a, 100).is_err());
        for mut bad in [
            packet(0x10, &[0, 4]),
            packet(0x30, &[0, 9, b'/']),
            packet(0x82, &[0, 1]),
            packet(0x82, &[0, 1, 0, 1, b'#']),
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        ] {
            assert!(
                matches!(
                    checked_packets(&mut bad, &Scope::Trusted, 100),
                    Err(Refused::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            checked_packets(&mut [0x30, 0xff, 0x01], &a, 100),
            Err(Refused::TooLarge(255))
        ));
        assert_eq!(
            checked_packets(&mut [0x30], &a, 100).ok().map(|c| c.len),
            Some(0)
        );
    }

    #[test]
    fn devices_publish_nothing_retained() {
        let mut retained = publish("/tenants/riderA/presence");
        retained[0] |= 0x01;
        let second = retained.len();
        let mut at_least_once = publish("/tenants/riderA/replies");
        at_least_once[0] = 0x33;
        retained.extend(at_least_once);
        let mut stream = retained.clone();
        stream.extend(subscribe(&["/tenants/riderA/edge/#"]));
        let checked = checked_packets(&mut stream, &rider("riderA"), 100)
            .ok()
            .map(|c| c.len);
        assert_eq!(checked, Some(stream.len()));
        assert_eq!(stream[0], 0x30);
        assert_eq!(stream[second], 0x32, "QoS kept, RETAIN cleared");
        assert_eq!(stream[retained.len()], 0x82, "not a PUBLISH: unchanged");
        assert_eq!(
            stream[1..second],
            retained[1..second],
            "only the flag changes"
        );
    }

    #[test]
    fn the_will_is_taken_out_of_connect() {
        let rest = [0, 3, b'a', b'/', b'b', 0, 1, b'x', 0, 2, b'u', b's'];
        let mut body = connect_body("phone", &rest);
        body[7] |= 0x80;
        let without = parse_connect(&body).ok();
        assert_eq!(without.as_ref().and_then(|c| c.will.clone()), None);
        assert_eq!(without.map(|c| c.rest), Some(rest.to_vec()));

        body[7] |= 0x04 | 0x08 | 0x20;
        let Ok(connect) = parse_connect(&body) else {
            panic!("a CONNECT with a will")
        };
        assert_eq!(
            connect.will,
            Some(Will {
                topic: b"a/b".to_vec(),
                message: b"x".to_vec(),
            })
        );
        assert_eq!(connect.rest, [0, 2, b'u', b's'], "the user name stays");
        assert_eq!(
            connect.head[7],
            0x80 | 0x02,
            "will flags cleared, the rest kept"
        );

        body[7] |= 0x18;
        assert!(matches!(parse_connect(&body), Err(Refused::Malformed(_))));
        body[7] &= !0x18;
        body.truncate(body.len() - rest.len() + 3);
        assert!(parse_connect(&body).is_err(), "truncated will topic");
        let mut body = connect_body("phone", &[0, 3, b'a', b'/', b'b', 0, 5, b'x']);
        body[7] |= 0x04;
        assert!(parse_connect(&body).is_err(), "truncated will message");
    }

    #[test]
    fn a_disconnect_is_seen_only_as_the_last_packet() {
        let trusted = &Scope::Trusted;
        let disconnect = |stream: &mut Vec<u8>| {
            checked_packets(stream, trusted, 100)
                .ok()
                .map(|c| c.disconnect)
        };
        let mut stream = publish("/tenants/riderA/location");
        assert_eq!(disconnect(&mut stream), Some(false));
        stream.extend(packet(0xe0, &[]));
        assert_eq!(disconnect(&mut stream), Some(true));
        stream.extend(packet(0xc0, &[]));
        assert_eq!(disconnect(&mut stream), Some(false));
    }

    #[tokio::test]
    async fn read_connect_refuses_other_packets_and_oversized_ones() {
        let mut publish: &[u8] = &[0x30, 2, 0, 0];
        assert!(matches!(
            read_connect(&mut publish, 100).await,
            Err(Refused::Malformed(_))
        ));
        let mut huge: &[u8] = &[0x10, 0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(
            read_connect(&mut huge, 100).await,
            Err(Refused::TooLarge(_))
        ));
        let mut endless: &[u8] = &[0x10, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(
            read_connect(&mut endless, 100).await,
            Err(Refused::Malformed(_))
        ));
        let mut cut: &[u8] = &[0x10, 20, 0, 4];
        assert!(matches!(
            read_connect(&mut cut, 100).await,
            Err(Refused::Closed)
        ));
    }
}
