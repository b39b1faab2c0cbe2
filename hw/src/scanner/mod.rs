//! Barcode scanners in serial/CDC mode: line framing, AIM symbology
//! identifiers, decoding into typed [`ScanEvent`]s, and the async read loop.
//!
//! Keyboard-wedge (HID keyboard) scanners garble GS1 data under non-US
//! keyboard layouts and cannot transmit ASCII 29 reliably: configure
//! scanners in serial/CDC mode with AIM identifiers enabled.

pub mod decode;
pub mod driver;
pub mod framing;
pub mod symbology;

pub use decode::{
    ScanContent, ScanContext, ScanError, ScanEvent, decode_entered, decode_raw_scan, decode_scan,
};
pub use driver::{ScannerConfig, read_scans};
pub use framing::{FrameError, LineFramer};
pub use symbology::Symbology;
