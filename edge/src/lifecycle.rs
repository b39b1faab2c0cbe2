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

/// Waits for SIGTERM or SIGINT and names the one that came.
pub async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
