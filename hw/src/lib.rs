//! FlashKart store hardware: barcode scanners, scales and label printers over
//! serial, GS1 parsing and a device manager. The protocol simulators live in
//! `flashkart-hw-sim` (`hw/sim`).
//!
//! Drivers work over any `AsyncRead + AsyncWrite`, so tests hand them a pty or
//! an in-memory pipe. See `hw/README.md` for how the edge wires this in.

pub mod gs1;
pub mod scanner;

pub use scanner::{ScanError, ScanEvent, decode_raw_scan};
pub mod device;
pub mod printer;
pub mod scale;

pub use device::{DeviceEvent, DeviceHandle, DeviceManager, Health, ManagerConfig};
