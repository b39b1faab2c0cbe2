//! The device manager: finds configured devices (by path or USB VID:PID and
//! serial number), opens them with tokio-serial (exclusive), reconnects with
//! exponential backoff, tracks health, and turns driver output into
//! [`DeviceEvent`]s on one channel.

pub mod config;
pub mod enumerate;
pub mod manager;

pub use config::{DeviceConfig, DeviceKind, DeviceLocation, ManagerConfig, UsbMatch};
pub use enumerate::{PortEnumerator, PortInfo, SystemPorts};
pub use manager::{DeviceEvent, DeviceHandle, DeviceManager, Health, ManagerError};
