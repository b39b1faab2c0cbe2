//! `flashkart-edge-sim scanner|scale|printer`: the `flashkart-hw-sim` device simulators on the
//! command line. Each opens a pty and points `--link` at it, for the edge to configure as the
//! device's path.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use flashkart_hw::printer::PrinterLanguage;
use flashkart_hw::scale::ScaleProtocol;
use flashkart_hw_sim::scanner::ScannerSimConfig;
use tokio_util::sync::CancellationToken;

/// A scale protocol on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SimScaleProtocol {
    Toledo8217,
    MtSics,
    Cas,
}

/// A printer language on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SimPrinterLanguage {
    Zpl,
    EscPos,
}

/// `flashkart-edge-sim scanner|scale|printer`.
#[derive(Debug, Subcommand)]
pub enum DeviceSim {
    /// A barcode scanner: sends `--scan`s (AIM identifier + data), then idles.
    Scanner {
        /// Symlink to create for the pty (configure the edge with this path).
        #[arg(long)]
        link: PathBuf,
        /// A scan to send (repeatable), e.g. `]E09506000134352`.
        #[arg(long = "scan")]
        scans: Vec<String>,
        /// Delay before each scan, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// A scale showing a stable weight.
    Scale {
        #[arg(long)]
        link: PathBuf,
        #[arg(long, value_enum, default_value = "toledo8217")]
        protocol: SimScaleProtocol,
        /// The weight on the platter, in grams.
        #[arg(long, default_value_t = 0)]
        grams: i64,
    },
    /// A label (ZPL) or receipt (ESC/POS) printer that logs what it receives.
    Printer {
        #[arg(long)]
        link: PathBuf,
        #[arg(long, value_enum, default_value = "zpl")]
        language: SimPrinterLanguage,
    },
}

/// Runs a device simulator until `shutdown`.
pub async fn run(command: DeviceSim, shutdown: CancellationToken) -> std::io::Result<()> {
    match command {
        DeviceSim::Scanner {
            link,
            scans,
            interval_ms,
        } => {
            flashkart_hw_sim::scanner::run(
                ScannerSimConfig {
                    link,
                    scans,
                    interval_ms,
                },
                shutdown,
            )
            .await
        }
        DeviceSim::Scale {
            link,
            protocol,
            grams,
        } => {
            let protocol = match protocol {
                SimScaleProtocol::Toledo8217 => ScaleProtocol::Toledo8217,
                SimScaleProtocol::MtSics => ScaleProtocol::MtSics,
                SimScaleProtocol::Cas => ScaleProtocol::Cas,
            };
            flashkart_hw_sim::scale::run(&link, protocol, grams * 1000, shutdown).await
        }
        DeviceSim::Printer { link, language } => {
            let language = match language {
                SimPrinterLanguage::Zpl => PrinterLanguage::Zpl,
                SimPrinterLanguage::EscPos => PrinterLanguage::EscPos,
            };
            flashkart_hw_sim::printer::run(&link, language, shutdown).await
        }
    }
}
