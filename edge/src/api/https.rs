//! The riders' enrolment listener: HTTPS on the store LAN with the store CA's server
//! certificate, serving only what a phone needs before it has a certificate of its own.
//!
//! Why a listener of its own: the enrolment code is a secret and the answer is the rider's
//! identity, so neither may cross the Wi-Fi in clear, and a phone must be able to tell the
//! store from an impostor. The phone pins the CA by the fingerprint in HQ's QR code (it fetches
//! `GET /api/v1/riders/ca`, checks the hash, then verifies this listener's certificate against
//! it), which needs TLS under a certificate from that CA; the staff API stays on its own
//! listener.
//!
//! What a client can hold without sending requests is bounded: the TLS handshake and the first
//! request head must finish within [`HANDSHAKE_TIMEOUT`], at most [`MAX_HANDSHAKES`] may be in
//! that phase (a further connection is closed at once), at most [`MAX_CONNECTIONS`] are open
//! (the rest wait in the listen backlog), and the handshake runs in the connection's task so one
//! stalled client cannot stop the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::Error;
use crate::riders::ServerIdentity;

/// Time for the TLS handshake and the first request head.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections still in their handshake at once.
pub const MAX_HANDSHAKES: usize = 64;
/// Open connections at once.
pub const MAX_CONNECTIONS: usize = 256;

/// Serves `router` over TLS on `listener` with `identity` until `shutdown`; open connections
/// are asked to finish their request and close.
pub fn serve(
    listener: TcpListener,
    identity: &ServerIdentity,
    router: Router,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, Error> {
    let acceptor = acceptor(identity)?;
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let Ok(open) = connections.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors, mostly: back off instead of spinning.
                        tracing::warn!(%error, "enrolment listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(handshaking) = handshakes.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "enrolment listener: too many handshakes, closing");
                continue;
            };
            let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
            tokio::spawn(async move {
                let _open = open;
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "enrolment listener: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "enrolment listener: TLS handshake timed out");
                        return;
                    }
                };
                drop(handshaking);
                serve_connection(tls, peer, router, shutdown).await;
            });
        }
    }))
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The handlers count failed enrolments per client address, as with a plain listener.
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "enrolment listener: connection ended with an error");
    }
}

fn acceptor(identity: &ServerIdentity) -> Result<TlsAcceptor, Error> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        Error::Config(format!("the enrolment listener's {what}: {e}"))
    };
    let certs = rustls_pemfile::certs(&mut identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", &e))?;
    let key = rustls_pemfile::private_key(&mut identity.key_pem.as_bytes())
        .map_err(|e| bad("key", &e))?
        .ok_or_else(|| bad("key", &"no private key in the PEM"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
