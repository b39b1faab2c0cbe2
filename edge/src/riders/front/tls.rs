//! The TLS listener's side of identity: the server configuration that requires a client
//! certificate from the store CA, and the check right after the handshake that names the rider
//! (the certificate's Organization) and refuses riders who are revoked, deactivated or not on
//! the roster. Apart from the MQTT session so that who is connecting is settled in one place,
//! before any packet is read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flashkart_sync::StoreDb;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::{Front, Refused, TLS_LISTENER, start};
use crate::riders::ca::{ServerIdentity, StoreCa};
use crate::riders::hub::Hub;
use crate::riders::topics::is_rider_id;
use crate::riders::{BrokerSizing, Error};

/// How long a device may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rider a TLS connection authenticated as.
pub(super) struct Identity {
    pub(super) rider: String,
    serial: String,
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

impl Front {
    pub(super) async fn accept_tls(
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
