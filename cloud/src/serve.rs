//! Serving the router: plain HTTP (HTTP/1.1 and h2c) or HTTPS with HTTP/2 via rustls, both
//! stopping gracefully when shut down.
//!
//! A connection costs a task, a socket and, over TLS, a handshake's state before it has
//! proven anything, so what a client can hold without sending requests is bounded (see
//! [`HttpLimits`]): a new connection must finish its TLS handshake and send its first request
//! head within `handshake_timeout_ms`, at most `max_pending_connections` may be in that phase
//! (a further one is closed at once, so stalled handshakes cannot queue up the real ones behind
//! them), at most `max_connections` are open (the rest wait in the listen backlog), and an
//! HTTP/1 connection waiting for its next request head is closed after `idle_timeout_ms`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::config::{HttpLimits, TlsConfig};

/// How long open connections get to finish after shutdown.
const GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<&TlsConfig>,
    limits: &HttpLimits,
    shutdown: CancellationToken,
) -> Result<(), CloudError> {
    let acceptor = tls.map(acceptor).transpose()?;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.idle_timeout_ms));
    let handshake = Duration::from_millis(limits.handshake_timeout_ms);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let pending = Arc::new(Semaphore::new(limits.max_pending_connections.max(1)));
    loop {
        let open = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(unproven) = pending.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many connections without a request yet; closing");
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "set_nodelay");
        }
        let connection = Connection {
            router: router.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            deadline: tokio::time::Instant::now() + handshake,
            peer,
            _open: open,
        };
        match &acceptor {
            None => {
                tokio::spawn(connection.serve(stream, unproven));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout_at(connection.deadline, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out; closing");
                                return;
                            }
                        };
                    connection.serve(stream, unproven).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; closing them");
    }
    Ok(())
}

/// One accepted connection and what it holds.
struct Connection {
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    /// When the first request head must have arrived (the TLS handshake counts against it).
    deadline: tokio::time::Instant,
    peer: std::net::SocketAddr,
    _open: OwnedSemaphorePermit,
}

impl Connection {
    /// Serves HTTP on `io`. `unproven` is released as soon as the first request head is in;
    /// a connection that has sent none by the deadline is closed.
    async fn serve<I>(self, io: I, unproven: OwnedSemaphorePermit)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            router,
            builder,
            watcher,
            deadline,
            peer,
            _open,
        } = self;
        let started = Arc::new(Notify::new());
        let unproven = Arc::new(Mutex::new(Some(unproven)));
        let service = {
            let started = started.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                // Handlers that bound something per client read the address from here.
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                // Released before the request runs, so the slot is free by the time a client
                // sees the answer.
                if let Ok(mut slot) = unproven.lock() {
                    slot.take();
                }
                started.notify_one();
                tower::ServiceExt::oneshot(router.clone(), request)
            })
        };
        let connection = watcher.watch(
            builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned(),
        );
        tokio::pin!(connection);
        let ended = tokio::select! {
            ended = &mut connection => ended,
            () = started.notified() => connection.await,
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!(%peer, "no request within the handshake timeout; closing");
                return;
            }
        };
        if let Err(error) = ended {
            tracing::debug!(%peer, %error, "connection ended");
        }
    }
}

fn acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, CloudError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| CloudError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let certs = rustls_pemfile::certs(&mut read(&tls.cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CloudError::Tls(format!("{}: {e}", tls.cert.display())))?;
    let key = rustls_pemfile::private_key(&mut read(&tls.key)?.as_slice())
        .map_err(|e| CloudError::Tls(format!("{}: {e}", tls.key.display())))?
        .ok_or_else(|| CloudError::Tls(format!("{}: no private key", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CloudError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| CloudError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
