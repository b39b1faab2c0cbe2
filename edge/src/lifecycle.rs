//! How an edge process starts its logging and learns that it should stop.
//!
//! The daemon and the store simulators (`flashkart-edge-sim`) run side by side on a store's
//! machine and under the demo; they log alike (plain text unless stderr is a terminal, so log
//! files and journald get no colour codes) and stop alike on SIGTERM (systemd) or SIGINT (Ctrl-C).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logs to stderr at `RUST_LOG`'s levels, `info` when it is unset.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// Installs the SIGTERM and SIGINT handlers now and returns the wait for either, naming the
/// one that came. Installed before the daemon starts serving, a signal sent the moment it is
/// ready (a supervisor, a test) is a clean stop, not the default action that kills it.
pub fn shutdown_signal()
-> std::io::Result<impl std::future::Future<Output = &'static str> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}
