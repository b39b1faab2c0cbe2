//! `[devices]`: which scanners, scales and printers the store has, and which does what.
//!
//! Why apart from the devices module: the configuration is read and checked before anything
//! runs, and lives with the other sections so `Config` depends on no running part.

use flashkart_hw::device::{DeviceConfig, DeviceKind, ManagerConfig};
use flashkart_hw::gs1::rcn::RcnLayout;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The `[devices]` section of the edge configuration. No devices by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    /// The devices (`[[devices.device]]`): id, location (`path` or `usb`), baud, kind.
    #[serde(rename = "device")]
    pub list: Vec<DeviceConfig>,
    /// Id of the printer that prints bag labels when an order is marked READY.
    pub label_printer: Option<String>,
    /// Id of the scale that weighs bags at the pack station.
    pub pack_scale: Option<String>,
    /// How long pack waits for a stable weight.
    pub scale_timeout_ms: u64,
    /// First reconnect delay after a device is lost.
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay.
    pub backoff_max_ms: u64,
    /// Printer status poll interval.
    pub printer_poll_ms: u64,
    /// How long READY waits for the label printer to finish a label before answering that
    /// the label is queued.
    pub label_wait_ms: u64,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            label_printer: None,
            pack_scale: None,
            scale_timeout_ms: 5000,
            backoff_initial_ms: 100,
            backoff_max_ms: 5000,
            printer_poll_ms: 5000,
            label_wait_ms: 10_000,
        }
    }
}

impl DevicesConfig {
    /// The device manager's configuration. Scanners decode weighed-goods labels with the
    /// store's `[variable_measure]` layouts unless their own `decode` section names some.
    pub(crate) fn manager(&self, variable_measure: &[RcnLayout]) -> ManagerConfig {
        let mut devices = self.list.clone();
        for device in &mut devices {
            if let DeviceKind::Scanner(scanner) = &mut device.kind
                && scanner.decode.variable_measure.is_empty()
            {
                scanner.decode.variable_measure = variable_measure.to_vec();
            }
        }
        ManagerConfig {
            devices,
            backoff_initial_ms: self.backoff_initial_ms,
            backoff_max_ms: self.backoff_max_ms,
            printer_poll_ms: self.printer_poll_ms,
        }
    }

    pub(crate) fn kind_of(&self, id: &str) -> Option<&'static str> {
        self.list
            .iter()
            .find(|d| d.id == id)
            .map(|d| kind_name(&d.kind))
    }

    /// Refuses a configuration whose `label_printer` / `pack_scale` name no such device.
    pub fn validate(&self) -> Result<(), Error> {
        for (field, id, kind) in [
            ("label_printer", &self.label_printer, "printer"),
            ("pack_scale", &self.pack_scale, "scale"),
        ] {
            if let Some(id) = id
                && self.kind_of(id) != Some(kind)
            {
                return Err(Error::Config(format!(
                    "devices.{field} = {id:?} is not a configured {kind}"
                )));
            }
        }
        Ok(())
    }
}

pub(crate) fn kind_name(kind: &DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Scanner(_) => "scanner",
        DeviceKind::Scale(_) => "scale",
        DeviceKind::Printer(_) => "printer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_to_no_devices_and_checks_names() {
        let config: DevicesConfig = toml::from_str("").expect("empty section");
        assert!(config.list.is_empty());
        let config: DevicesConfig = toml::from_str(
            "label_printer = \"p1\"\n[[device]]\nid = \"p1\"\nlocation = { path = \"/dev/x\" }\nkind = { type = \"scanner\" }\n",
        )
        .expect("valid");
        assert!(config.validate().is_err(), "p1 is a scanner, not a printer");
    }

    #[test]
    fn the_example_config_parses() {
        let config: crate::Config =
            toml::from_str(include_str!("../../../deploy/edge.example.toml")).expect("example");
        assert_eq!(config.devices.list.len(), 4);
        config.devices.validate().expect("names real devices");
    }
}
