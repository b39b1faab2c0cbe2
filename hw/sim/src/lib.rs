//! Device simulators that speak the real bytes over a pty pair, for tests and
//! the demo (`flashkart-edge sim scanner|scale|printer`).

pub mod printer;
pub mod pty;
pub mod scale;
pub mod scanner;

pub use pty::PtyPort;
