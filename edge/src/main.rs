//! `flashkart-edge`: the store daemon's command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "flashkart-edge", version, about = "FlashKart store daemon")]
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
    /// Take one backup of the store database now (the daemon may be running); prints its path.
    Backup {
        /// TOML configuration file; FLASHKART_EDGE_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the store database lives (overrides config and environment).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Put a backup back as the store database. Stop the daemon first. The current database
    /// is kept as store.db.before-restore-<time>; the restored one gets a new sync site id.
    Restore {
        /// The backup file (store-<time>.db from the backup directory).
        file: PathBuf,
        /// TOML configuration file; FLASHKART_EDGE_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the store database lives (overrides config and environment).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// The configuration in force: the file, the environment, then `--data-dir`.
fn load_config(
    path: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<flashkart_edge::Config> {
    let mut config = flashkart_edge::Config::load(path)?;
    if let Some(dir) = data_dir {
        config.data_dir = Some(dir);
    }
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let allocator_tuned = flashkart_edge::allocator::tune();
    // Parsed first: the log format is a flag (or FLASHKART_LOG_FORMAT) and logging starts
    // before the configuration is read.
    let cli = Cli::parse();
    flashkart_process::init_logging_as(cli.log_format);
    tracing::debug!(allocator_tuned, "allocator settings");
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
        Command::Backup { config, data_dir } => {
            let config = load_config(config.as_deref(), data_dir)?;
            let settings = flashkart_edge::backup::BackupSettings::from_config(&config);
            let taken = flashkart_edge::backup::take(&settings).context("taking a backup")?;
            println!("{}", taken.file.path.display());
            Ok(())
        }
        Command::Restore {
            file,
            config,
            data_dir,
        } => {
            let config = load_config(config.as_deref(), data_dir)?;
            let restored = flashkart_edge::backup::restore(
                &file,
                &config.data_dir(),
                config.extension_dir.as_deref(),
            )
            .with_context(|| format!("restoring {}", file.display()))?;
            println!(
                "Restored {} as {} (schema version {}).",
                file.display(),
                restored.db_path.display(),
                restored.schema_version
            );
            if let Some(aside) = &restored.moved_aside {
                println!("The database it replaced is kept as {}.", aside.display());
            }
            println!(
                "Site id: {} (was {}).\n",
                hex(&restored.new_site_id),
                hex(&restored.old_site_id)
            );
            println!("{}", flashkart_edge::backup::next_steps(&config.store_id));
            Ok(())
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn run(config: flashkart_edge::Config) -> anyhow::Result<()> {
    tracing::info!(data_dir = %config.data_dir().display(), "starting flashkart-edge");
    let shutdown = CancellationToken::new();
    let signal = flashkart_process::shutdown_signal().context("installing signal handlers")?;
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
