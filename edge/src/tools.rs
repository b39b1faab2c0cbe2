//! Support commands for the people who install and debug stores: `flashkart-edge scan decode`,
//! `label zpl` and `devices`. (The device simulators are `flashkart-edge-sim`'s.)
//!
//! They live in the library (not in `main.rs`) so the command line stays a thin dispatcher and
//! the outputs can be tested; each one wraps a `flashkart-hw` function.

use std::io::Read;

use clap::Subcommand;
use flashkart_hw::device::{PortEnumerator, SystemPorts};
use flashkart_hw::printer::BagLabel;
use serde_json::{Value, json};

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
