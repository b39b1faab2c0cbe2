//! `flashkart-cloud`: runs the cloud, or registers a store and prints its credential.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flashkart_cloud::{CloudConfig, Registration};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(version, about = "FlashKart cloud aggregator")]
struct Cli {
    /// Log lines as `text` or `json` (one object per line, for a log collector).
    #[arg(
        long,
        global = true,
        env = "FLASHKART_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: flashkart_process::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cloud (embedded defaults without a config file).
    Run {
        #[arg(long, env = "FLASHKART_CLOUD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Register a new store and print its bearer token; with --rotate, issue an existing
    /// store a new token (the old one stops working).
    RegisterStore {
        /// Store id: letters, digits, `-` or `_`.
        id: String,
        /// The store exists: issue it a new token. Its edge database stays bound.
        #[arg(long)]
        rotate: bool,
        /// With --rotate: also unbind the edge database, so a replacement edge can say hello.
        #[arg(long, requires = "rotate")]
        release_edge_site: bool,
        #[arg(long, env = "FLASHKART_CLOUD_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn load(config: Option<&PathBuf>) -> anyhow::Result<CloudConfig> {
    let config = match config {
        Some(path) => {
            CloudConfig::load(path).with_context(|| format!("loading {}", path.display()))?
        }
        None => CloudConfig::default(),
    };
    Ok(config.overrides_from_env()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Parsed first: the log format is a flag (or FLASHKART_LOG_FORMAT) and logging starts
    // before the configuration is read.
    let cli = Cli::parse();
    flashkart_process::init_logging_as(cli.log_format);
    match cli.command {
        Command::Run { config } => {
            let config = load(config.as_ref())?;
            let shutdown = CancellationToken::new();
            let signal = flashkart_process::shutdown_signal()?;
            let running = flashkart_cloud::start(config, shutdown.clone()).await?;
            tokio::spawn(async move {
                let name = signal.await;
                tracing::info!(signal = name, "shutting down");
                shutdown.cancel();
            });
            running.wait().await?;
        }
        Command::RegisterStore {
            id,
            rotate,
            release_edge_site,
            config,
        } => {
            let config = load(config.as_ref())?;
            let registration = if rotate {
                Registration::Rotate {
                    release_site: release_edge_site,
                }
            } else {
                Registration::New
            };
            let token = flashkart_cloud::register_offline(&config, &id, registration).await?;
            println!("{token}");
        }
    }
    Ok(())
}
