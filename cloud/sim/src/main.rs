//! `flashkart-cloud-sim`: the cloud's simulators on the command line, for the demo.

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "flashkart-cloud-sim",
    version,
    about = "Simulated shoppers for a FlashKart cloud"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Customers placing orders continuously through the intake API.
    Shoppers(flashkart_cloud_sim::shoppers::ShoppersArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flashkart_process::init_logging();
    match Cli::parse().command {
        Command::Shoppers(args) => {
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            let signal = flashkart_process::shutdown_signal()?;
            tokio::spawn(async move {
                let name = signal.await;
                tracing::info!(signal = name, "stopping the shoppers");
                stop.cancel();
            });
            flashkart_cloud_sim::shoppers::run(args, shutdown).await?;
        }
    }
    Ok(())
}
