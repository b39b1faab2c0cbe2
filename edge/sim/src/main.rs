//! `flashkart-edge-sim`: the store simulators on the command line, for the demo.

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

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
    flashkart_process::init_logging();
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
        let signal = flashkart_process::shutdown_signal().context("installing signal handlers")?;
        tokio::spawn(async move {
            let name = signal.await;
            tracing::info!(signal = name, "stopping the {what}");
            stop.cancel();
        });
        Ok(simulate(shutdown).await?)
    })
}
