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

/// Installs the SIGTERM and SIGINT handlers now and returns the wait for either. Installed
/// before the process starts serving, a signal sent the moment it is ready (Kubernetes, a test)
/// is a clean stop, not the default action that kills it.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static>
{
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Ctrl-C where there is no SIGTERM.
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static>
{
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
