//! `flashkart-edge`: the store daemon's command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "flashkart-edge", version, about = "FlashKart store daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (defaults work with no config file at all).
    Run {
        /// TOML configuration file; FLASHKART_EDGE_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the store database lives (overrides config and environment).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// HTTP address (overrides config and environment).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Decode what a scanner sends.
    Scan {
        #[command(subcommand)]
        scan: flashkart_edge::tools::ScanCommand,
    },
    /// Bag labels.
    Label {
        #[command(subcommand)]
        label: flashkart_edge::tools::LabelCommand,
    },
    /// List serial ports with their USB ids (one JSON object per line).
    Devices,
}

fn main() -> anyhow::Result<()> {
    let allocator_tuned = flashkart_edge::allocator::tune();
    flashkart_edge::lifecycle::init_logging();
    tracing::debug!(allocator_tuned, "allocator settings");
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            data_dir,
            listen,
        } => {
            let mut config = flashkart_edge::Config::load(config.as_deref())?;
            if let Some(dir) = data_dir {
                config.data_dir = Some(dir);
            }
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(run(config))
        }
        Command::Scan { scan } => {
            if !flashkart_edge::tools::scan(scan)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Label { label } => flashkart_edge::tools::label(label),
        Command::Devices => flashkart_edge::tools::devices(),
    }
}

async fn run(config: flashkart_edge::Config) -> anyhow::Result<()> {
    tracing::info!(data_dir = %config.data_dir().display(), "starting flashkart-edge");
    let shutdown = CancellationToken::new();
    let signal =
        flashkart_edge::lifecycle::shutdown_signal().context("installing signal handlers")?;
    tokio::pin!(signal);
    let running = flashkart_edge::start(config, shutdown.clone())
        .await
        .context("starting the daemon")?;
    let wait = running.wait();
    tokio::pin!(wait);
    tokio::select! {
        result = &mut wait => return result.context("the daemon stopped"),
        name = &mut signal => tracing::info!(signal = name, "shutdown requested"),
    }
    shutdown.cancel();
    wait.await.context("shutting down")
}
