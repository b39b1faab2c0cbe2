//! Device configuration as the edge reads it from its config file.

use crate::printer::PrinterConfig;
use crate::scale::ScaleConfig;
use crate::scanner::ScannerConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Match a USB serial adapter by ids (hex strings like "0c2e").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsbMatch {
    /// Vendor id, hex.
    pub vid: String,
    /// Product id, hex.
    pub pid: String,
    /// Serial number; required when two identical devices are attached.
    #[serde(default)]
    pub serial: Option<String>,
}

/// Where a device is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceLocation {
    /// A fixed path (a udev symlink like /dev/flashkart-scanner-1, or a pty).
    Path(PathBuf),
    /// The first port whose USB ids match.
    Usb(UsbMatch),
}

/// What a device is, with its driver settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceKind {
    /// A barcode scanner in serial/CDC mode.
    Scanner(ScannerConfig),
    /// A scale.
    Scale(ScaleConfig),
    /// A label or receipt printer.
    Printer(PrinterConfig),
}

/// One device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Unique id, e.g. "scanner-1" (the edge binds a scanner id to a staff session).
    pub id: String,
    /// Where it is.
    pub location: DeviceLocation,
    /// Baud rate; defaults to the protocol's (9600).
    #[serde(default)]
    pub baud: Option<u32>,
    /// Kind and driver settings.
    pub kind: DeviceKind,
}

/// All devices and the reconnect policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerConfig {
    /// Devices.
    pub devices: Vec<DeviceConfig>,
    /// First reconnect delay.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// Status poll interval for printers.
    #[serde(default = "default_printer_poll")]
    pub printer_poll_ms: u64,
}

fn default_backoff_initial() -> u64 {
    100
}
fn default_backoff_max() -> u64 {
    5000
}
fn default_printer_poll() -> u64 {
    5000
}
