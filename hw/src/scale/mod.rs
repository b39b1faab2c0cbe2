//! Scales: Toledo 8217, Mettler Toledo MT-SICS and CAS 22-byte protocols,
//! stable vs moving weight, zero and tare, "await stable" and a heartbeat
//! (an unplugged USB serial scale is usually silent, not failing).

pub mod driver;
pub mod protocol;

pub use driver::{Scale, ScaleConfig, ScaleError};
pub use protocol::{Reading, ScaleProtocol, SerialSettings};
