//! The riders' front door: the listeners devices and simulators connect to, in front of the
//! embedded rumqttd, which now listens on loopback only.
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
//! rewritten ids are too), and relays the rest of the conversation byte for byte.
//!
//! Isolation is unchanged: on the TLS side the front requires a client certificate from the
//! store CA (the same check rumqttd made), reads the rider id from its Organization, and opens
//! the upstream TLS connection to rumqttd with a certificate for the same rider, minted by the
//! store CA for the front and cached per rider. rumqttd therefore derives the same tenant and
//! enforces `validate-tenant-prefix` exactly as before. The front also refuses riders that are
//! revoked, deactivated or unknown (and revoked certificates) right after the handshake, before
//! any MQTT packet reaches the broker, and [`Front::disconnect_rider`] cuts the live
//! connections of a rider when it is revoked.
//!
//! Since the broker no longer sees two connections with one client id, it can no longer take
//! over an old session itself; the front does it instead: a new connection with the same rider
//! and client id as a live one first closes the old one and waits (up to two seconds) until the
//! broker has closed it, so the old connection's last will (`online: false`) is published
//! before the new connection's presence. Persistent sessions (`clean_session = false`) do not
//! survive a reconnection; offers are retained messages and re-published from the database, so
//! a reconnecting device still gets them.
//!
//! Bad input (anything but an MQTT 3.1.1 CONNECT first, a malformed or oversized one, no
//! CONNECT within five seconds) closes the connection with a log line; nothing here panics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashkart_sync::StoreDb;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use super::Error;
use super::ca::{ClientKey, ServerFiles, StoreCa};
use super::topics::is_rider_id;

/// How long a device may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a device may take to send CONNECT after connecting (rumqttd's own limit).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the front waits for the broker (connecting, or closing a replaced connection).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes buffered per direction of a relayed connection.
const RELAY_BUFFER: usize = 2048;
/// Room in a CONNECT besides the will payload (client id, will topic, user name, password).
const CONNECT_OVERHEAD: usize = 4096;

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
    tls: Option<TlsSide>,
    db: StoreDb,
    max_connect: usize,
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

struct TlsSide {
    acceptor: TlsAcceptor,
    ca: Arc<StoreCa>,
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Per rider: the front's client configuration towards rumqttd.
    upstream: Mutex<HashMap<String, Arc<rustls::ClientConfig>>>,
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
}

/// Binds the device-facing TLS listener and relays its connections to rumqttd's TLS listener
/// at `upstream` (loopback), until `shutdown`.
pub async fn start_tls(
    listen: SocketAddr,
    upstream: SocketAddr,
    files: &ServerFiles,
    ca: Arc<StoreCa>,
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
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| Error::Broker(format!("client certificate verifier: {e}")))?;
    let cert_pem = read_file(&files.cert)?;
    let key_pem = read_file(&files.key)?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_client_cert_verifier(verifier).with_single_cert(
                pem_certs(cert_pem.as_bytes())?,
                pem_key(key_pem.as_bytes())?,
            )
        })
        .map_err(|e| Error::Broker(format!("TLS server configuration: {e}")))?;
    let tls = TlsSide {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        ca,
        roots,
        provider,
        upstream: Mutex::new(HashMap::new()),
    };
    start(
        super::broker::TLS_LISTENER,
        listen,
        upstream,
        Some(tls),
        db,
        max_payload_size,
        shutdown,
    )
    .await
}

/// Binds the loopback listener without TLS (simulators, tests) and relays its connections to
/// rumqttd's plain listener at `upstream`, until `shutdown`.
pub async fn start_plain(
    listen: SocketAddr,
    upstream: SocketAddr,
    db: StoreDb,
    max_payload_size: usize,
    shutdown: CancellationToken,
) -> Result<Front, Error> {
    start(
        super::broker::PLAIN_LISTENER,
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
    tls: Option<TlsSide>,
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
            max_connect: max_payload_size.saturating_add(CONNECT_OVERHEAD),
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
    /// Closes every live connection of `rider` (it was revoked); returns how many.
    pub fn disconnect_rider(&self, rider: &str) -> usize {
        let Ok(live) = self.inner.live.lock() else {
            return 0;
        };
        let mut cut = 0;
        for entry in live.values() {
            if entry.rider.as_deref() == Some(rider) {
                entry.cut.cancel();
                cut += 1;
            }
        }
        cut
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
        tls: &TlsSide,
        stream: TcpStream,
    ) -> Result<(tokio_rustls::server::TlsStream<TcpStream>, Identity), Refused> {
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream))
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
            read_connect(&mut client, self.inner.max_connect),
        )
        .await
        .map_err(|_| Refused::ConnectTimeout(CONNECT_TIMEOUT))??;
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
        match (&self.inner.tls, &identity) {
            (Some(tls), Some(identity)) => {
                let config = self.upstream_config(tls, &identity.rider)?;
                let server = ServerName::try_from("localhost")
                    .map_err(|e| Refused::Upstream(e.to_string()))?;
                let upstream = tokio::time::timeout(
                    UPSTREAM_TIMEOUT,
                    TlsConnector::from(config).connect(server, upstream),
                )
                .await
                .map_err(|_| Refused::Upstream("TLS handshake timed out".into()))?
                .map_err(|e| Refused::Upstream(format!("TLS handshake: {e}")))?;
                relay(client, upstream, &packet, &cut).await;
            }
            _ => relay(client, upstream, &packet, &cut).await,
        }
        Ok(())
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

    /// The front's TLS client configuration towards rumqttd for `rider`: a certificate for the
    /// same rider from the store CA, so the broker derives the same tenant. Minted once per
    /// rider and process.
    fn upstream_config(
        &self,
        tls: &TlsSide,
        rider: &str,
    ) -> Result<Arc<rustls::ClientConfig>, Refused> {
        if let Some(config) = tls
            .upstream
            .lock()
            .ok()
            .and_then(|configs| configs.get(rider).cloned())
        {
            return Ok(config);
        }
        let fail = |e: String| Refused::Upstream(format!("front certificate for {rider}: {e}"));
        let bundle = tls
            .ca
            .issue(rider, &ClientKey::Generate)
            .map_err(|e| fail(e.to_string()))?;
        let key_pem = bundle.key_pem.unwrap_or_default();
        let certs = pem_certs(bundle.cert_pem.as_bytes()).map_err(|e| fail(e.to_string()))?;
        let key = pem_key(key_pem.as_bytes()).map_err(|e| fail(e.to_string()))?;
        let config = rustls::ClientConfig::builder_with_provider(tls.provider.clone())
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_root_certificates(tls.roots.clone())
                    .with_client_auth_cert(certs, key)
            })
            .map_err(|e| fail(e.to_string()))?;
        let config = Arc::new(config);
        if let Ok(mut configs) = tls.upstream.lock() {
            configs.insert(rider.to_owned(), config.clone());
        }
        Ok(config)
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

/// Sends the rewritten CONNECT upstream, then copies bytes both ways until either side closes
/// or the connection is cut; a cut connection is closed towards the broker first, waiting
/// (bounded) until the broker has closed it too, so its last will is out before anything the
/// replacing connection sends.
async fn relay<C, U>(mut client: C, mut upstream: U, connect: &[u8], cut: &CancellationToken)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(error) = async {
        upstream.write_all(connect).await?;
        upstream.flush().await
    }
    .await
    {
        tracing::warn!(%error, "the broker closed the connection at CONNECT");
        return;
    }
    let was_cut = {
        // MQTT packets here are small (16 KiB at most): small buffers keep 500 riders cheap.
        let copy = tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut upstream,
            RELAY_BUFFER,
            RELAY_BUFFER,
        );
        tokio::select! {
            copied = copy => {
                if let Err(error) = copied {
                    tracing::debug!(%error, "relayed connection ended");
                }
                false
            }
            () = cut.cancelled() => true,
        }
    };
    if was_cut {
        drop(client);
        let _ = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            let _ = upstream.shutdown().await;
            let mut sink = [0u8; 1024];
            while matches!(upstream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

/// A CONNECT packet, split around its client id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Connect {
    /// The variable header: protocol name, level, flags, keep alive.
    head: Vec<u8>,
    client_id: String,
    /// The rest of the payload (will topic and message, user name, password), unchanged.
    rest: Vec<u8>,
}

impl Connect {
    /// The packet with `client_id` instead of the device's.
    fn encode(&self, client_id: &str) -> Result<Vec<u8>, Refused> {
        let id_len =
            u16::try_from(client_id.len()).map_err(|_| Refused::Malformed("client id too long"))?;
        let len = self.head.len() + 2 + client_id.len() + self.rest.len();
        let mut packet = Vec::with_capacity(len + 5);
        packet.push(0x10);
        let mut remaining = len;
        if remaining > 268_435_455 {
            return Err(Refused::TooLarge(len));
        }
        loop {
            let mut byte = (remaining % 128) as u8;
            remaining /= 128;
            if remaining > 0 {
                byte |= 0x80;
            }
            packet.push(byte);
            if remaining == 0 {
                break;
            }
        }
        packet.extend_from_slice(&self.head);
        packet.extend_from_slice(&id_len.to_be_bytes());
        packet.extend_from_slice(client_id.as_bytes());
        packet.extend_from_slice(&self.rest);
        Ok(packet)
    }
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
    let first = reader.read_u8().await.map_err(io)?;
    if first != 0x10 {
        return Err(Refused::Malformed("the first packet is not CONNECT"));
    }
    let mut len: usize = 0;
    for i in 0..4 {
        let byte = reader.read_u8().await.map_err(io)?;
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(Refused::Malformed("remaining length longer than 4 bytes"));
        }
    }
    if len > max {
        return Err(Refused::TooLarge(len));
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await.map_err(io)?;
    parse_connect(&body)
}

/// Splits a CONNECT body (after the fixed header).
fn parse_connect(body: &[u8]) -> Result<Connect, Refused> {
    let short = Refused::Malformed;
    let name_len = usize::from(u16::from_be_bytes(
        body.get(0..2)
            .and_then(|b| b.try_into().ok())
            .ok_or(short("truncated protocol name"))?,
    ));
    let name = body
        .get(2..2 + name_len)
        .ok_or(short("truncated protocol name"))?;
    let at = 2 + name_len;
    let level = *body.get(at).ok_or(short("no protocol level"))?;
    if name != b"MQTT" || level != 4 {
        return Err(Refused::Protocol {
            name: String::from_utf8_lossy(name).into_owned(),
            level,
        });
    }
    let flags = *body.get(at + 1).ok_or(short("no connect flags"))?;
    if flags & 0x01 != 0 {
        return Err(short("reserved connect flag set"));
    }
    let head_end = at + 4;
    let head = body.get(..head_end).ok_or(short("no keep alive"))?;
    let id_len = usize::from(u16::from_be_bytes(
        body.get(head_end..head_end + 2)
            .and_then(|b| b.try_into().ok())
            .ok_or(short("truncated client id"))?,
    ));
    let id = body
        .get(head_end + 2..head_end + 2 + id_len)
        .ok_or(short("truncated client id"))?;
    let client_id = std::str::from_utf8(id)
        .map_err(|_| short("client id is not UTF-8"))?
        .to_owned();
    let rest = body.get(head_end + 2 + id_len..).unwrap_or_default();
    Ok(Connect {
        head: head.to_vec(),
        client_id,
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

fn read_file(path: &std::path::Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
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
