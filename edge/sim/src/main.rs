//! `flashkart-edge-sim`: the store simulators on the command line, for the demo.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "flashkart-edge-sim",
    version,
    about = "Simulated store devices, riders and staff for a FlashKart store daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scanner, scale and printer simulators over a pty (flashkart-hw-sim).
    #[command(flatten)]
    Device(flashkart_edge_sim::devices::DeviceSim),
    /// A rider's phone: connects to the store's broker, moves, accepts offers, picks up and
    /// delivers.
    Rider(flashkart_edge_sim::rider::args::RiderArgs),
    /// A member of staff: stocks the store if empty, then picks, packs and readies every
    /// accepted order through the store's API.
    Staff(flashkart_edge_sim::staff::StaffSimArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Device(sim) => until_signal("simulator", |shutdown| {
            flashkart_edge_sim::devices::run(sim, shutdown)
        }),
        Command::Rider(args) => until_signal("rider simulator", |shutdown| async move {
            let stats = flashkart_edge_sim::rider::args::run(args, shutdown).await?;
            tracing::info!(?stats, "rider simulator stopped");
            Ok::<_, flashkart_edge_sim::rider::args::RiderError>(())
        }),
        Command::Staff(args) => until_signal("staff simulator", |shutdown| async move {
            flashkart_edge_sim::staff::run(args, shutdown)
                .await
                .map(|_| ())
        }),
    }
}

/// Runs a simulator on a fresh (multi-threaded) runtime until it ends or SIGINT/SIGTERM
/// cancels it.
fn until_signal<F, Fut, E>(what: &'static str, simulate: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    anyhow::Error: From<E>,
{
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            match wait_for_signal().await {
                Ok(name) => tracing::info!(signal = name, "stopping the {what}"),
                Err(error) => tracing::warn!(%error, "no signal handlers"),
            }
            stop.cancel();
        });
        Ok(simulate(shutdown).await?)
    })
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
