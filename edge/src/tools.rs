//! Support commands for the people who install and debug stores, and the device simulators:
//! `flashkart-edge scan decode`, `label zpl`, `devices` and `sim scanner|scale|printer`.
//!
//! They live in the library (not in `main.rs`) so the command line stays a thin dispatcher and
//! the outputs can be tested; each one wraps a `flashkart-hw` function.

use std::io::Read;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use flashkart_hw::device::{PortEnumerator, SystemPorts};
use flashkart_hw::printer::{BagLabel, PrinterLanguage};
use flashkart_hw::scale::ScaleProtocol;
use flashkart_hw::sim::scanner::ScannerSimConfig;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// `flashkart-edge scan ...`
#[derive(Debug, Subcommand)]
pub enum ScanCommand {
    /// Decode one raw scan (argument or stdin; `\x1d` or `<GS>` stand for ASCII 29) and print
    /// it as one JSON object: symbology, GTIN, every AI with its value, or the error.
    Decode {
        /// The scan as the scanner sends it, with its AIM identifier (e.g. `]E09506000134352`).
        data: Option<String>,
    },
}

/// `flashkart-edge label ...`
#[derive(Debug, Subcommand)]
pub enum LabelCommand {
    /// Print the ZPL of a sample bag label.
    Zpl {
        /// Order id (printed as Code 128).
        #[arg(long)]
        order_id: String,
        /// Number of bags: one label per bag.
        #[arg(long, default_value_t = 1)]
        bags: u8,
        /// Store name on the label.
        #[arg(long, default_value = "FlashKart")]
        store: String,
    },
}

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

/// `flashkart-edge sim scanner|scale|printer`: each opens a pty and points `--link` at it.
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

/// The JSON `scan decode` prints and whether the scan was valid.
pub fn decode(data: &str) -> (Value, bool) {
    match flashkart_hw::decode_raw_scan(data) {
        Ok(scan) => (
            serde_json::to_value(&scan).unwrap_or_else(|e| json!({ "error": e.to_string() })),
            true,
        ),
        Err(error) => (json!({ "error": error.to_string() }), false),
    }
}

/// Runs `scan ...`; returns the process's success.
pub fn scan(command: ScanCommand) -> anyhow::Result<bool> {
    let ScanCommand::Decode { data } = command;
    let data = match data {
        Some(data) => data,
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
    };
    let (value, ok) = decode(&data);
    println!("{value}");
    Ok(ok)
}

/// The ZPL of the sample bag labels of `label zpl`.
pub fn sample_labels(order_id: &str, bags: u8, store: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    for bag in 1..=bags.max(1) {
        let label = BagLabel {
            store_name: store.to_owned(),
            order_id: order_id.to_owned(),
            handoff_code: format!("FK-HANDOFF-{order_id}"),
            bag,
            bags: bags.max(1),
            customer_first_name: "Sample".into(),
            delivery_slot: "18:00-18:30".into(),
        };
        out.push_str(&label.to_zpl()?);
    }
    Ok(out)
}

/// Runs `label ...`.
pub fn label(command: LabelCommand) -> anyhow::Result<()> {
    let LabelCommand::Zpl {
        order_id,
        bags,
        store,
    } = command;
    print!("{}", sample_labels(&order_id, bags, &store)?);
    Ok(())
}

/// Runs `devices`: one JSON object per serial port, with USB ids.
pub fn devices() -> anyhow::Result<()> {
    let ports = SystemPorts.ports();
    if ports.is_empty() {
        eprintln!("no serial ports found (ptys never appear here: configure them by path)");
    }
    for port in ports {
        println!("{}", serde_json::to_string(&port)?);
    }
    Ok(())
}

/// Runs a simulator until `shutdown`.
pub async fn sim(command: DeviceSim, shutdown: CancellationToken) -> anyhow::Result<()> {
    match command {
        DeviceSim::Scanner {
            link,
            scans,
            interval_ms,
        } => {
            flashkart_hw::sim::scanner::run(
                ScannerSimConfig {
                    link,
                    scans,
                    interval_ms,
                },
                shutdown,
            )
            .await?;
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
            flashkart_hw::sim::scale::run(&link, protocol, grams * 1000, shutdown).await?;
        }
        DeviceSim::Printer { link, language } => {
            let language = match language {
                SimPrinterLanguage::Zpl => PrinterLanguage::Zpl,
                SimPrinterLanguage::EscPos => PrinterLanguage::EscPos,
            };
            flashkart_hw::sim::printer::run(&link, language, shutdown).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_prints_one_object() {
        let (value, ok) = decode("]C101095060001343521012AB");
        assert!(ok);
        assert_eq!(value["content"]["gtin"], "09506000134352");
        let (value, ok) = decode("no identifier");
        assert!(!ok);
        assert!(value["error"].is_string());
    }

    #[test]
    fn sample_label_per_bag() {
        let zpl = sample_labels("FK-1", 2, "Store").expect("zpl");
        assert_eq!(zpl.matches("^XA").count(), 2);
        assert!(zpl.contains("^FDFK-1^FS"));
    }
}
