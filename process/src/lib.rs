//! How every FlashKart process starts its logging and learns that it should stop.
//!
//! The edge daemon, the cloud aggregator and their simulators run side by side (on a store's
//! machine, under the demo, in Kubernetes) and must behave alike there: the same log formats
//! chosen the same way, the same clean stop on SIGTERM or Ctrl-C. Edge and cloud never depend
//! on each other, so what they share about being a process lives here.

mod logging;
mod signal;

pub use logging::{LOG_FORMAT_ENV, LogFormat, init_logging, init_logging_as, subscriber};
pub use signal::shutdown_signal;
