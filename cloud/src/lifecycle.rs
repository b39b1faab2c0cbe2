//! How a cloud process starts its logging and learns that it should stop.
//!
//! The aggregator and the shopper simulator (`flashkart-cloud-sim`) log alike (plain text unless
//! stderr is a terminal, so log files and collectors get no colour codes) and stop alike: on
//! SIGTERM from Kubernetes or systemd, or Ctrl-C.

/// Logs to stderr at `RUST_LOG`'s levels, `info` when it is unset.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves at SIGINT, or SIGTERM on Unix; with no SIGTERM handler, at SIGINT alone.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
