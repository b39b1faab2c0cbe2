//! Serial port enumeration behind a trait: the real one asks `serialport`
//! (built without libudev, so it reads sysfs), tests supply their own since
//! ptys never appear in enumeration.

use serde::Serialize;
use std::path::PathBuf;

/// One serial port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortInfo {
    /// Device path.
    pub path: PathBuf,
    /// USB vendor id (hex), for USB ports.
    pub vid: Option<String>,
    /// USB product id (hex).
    pub pid: Option<String>,
    /// USB serial number.
    pub serial: Option<String>,
    /// Manufacturer / product text.
    pub description: Option<String>,
}

/// Lists serial ports.
pub trait PortEnumerator: Send + Sync + std::fmt::Debug {
    /// Current ports; errors are logged and give an empty list.
    fn ports(&self) -> Vec<PortInfo>;
}

/// The operating system's ports (for `flashkart-edge devices` too).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemPorts;

impl PortEnumerator for SystemPorts {
    fn ports(&self) -> Vec<PortInfo> {
        match serialport::available_ports() {
            Ok(ports) => ports
                .into_iter()
                .map(|p| {
                    let (vid, pid, serial, description) = match p.port_type {
                        serialport::SerialPortType::UsbPort(u) => (
                            Some(format!("{:04x}", u.vid)),
                            Some(format!("{:04x}", u.pid)),
                            u.serial_number,
                            u.product.or(u.manufacturer),
                        ),
                        _ => (None, None, None, None),
                    };
                    PortInfo {
                        path: PathBuf::from(p.port_name),
                        vid,
                        pid,
                        serial,
                        description,
                    }
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "serial port enumeration failed");
                Vec::new()
            }
        }
    }
}
