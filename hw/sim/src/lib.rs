//! Device simulators that speak the real bytes over a pty pair: a barcode scanner, a scale
//! (Toledo 8217, MT-SICS, CAS) and a label or receipt printer (ZPL, ESC/POS).
//!
//! Why a crate of its own: the simulators are test and demo equipment, not part of the product.
//! The drivers in `flashkart-hw` never need them, so the store daemon does not link them; the
//! hw and edge tests take them as a dev-dependency and the demo runs them through
//! `flashkart-edge-sim scanner|scale|printer`.

pub mod printer;
pub mod pty;
pub mod scale;
pub mod scanner;

pub use pty::PtyPort;
