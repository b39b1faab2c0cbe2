//! Serving the router: plain HTTP (HTTP/1.1 and h2c) or HTTPS with HTTP/2 via rustls, both
//! stopping gracefully when shut down.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::config::TlsConfig;

/// How long open connections get to finish after shutdown.
const GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<&TlsConfig>,
    shutdown: CancellationToken,
) -> Result<(), CloudError> {
    let acceptor = tls.map(acceptor).transpose()?;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
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
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "set_nodelay");
        }
        let service = TowerToHyperService::new(router.clone());
        match &acceptor {
            None => {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "connection ended");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match acceptor.accept(stream).await {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                    };
                    let connection = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%peer, %error, "connection ended");
                    }
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
