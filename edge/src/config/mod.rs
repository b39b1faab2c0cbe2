//! The daemon's configuration: TOML file, environment overrides, and defaults that run with
//! neither.
//!
//! Every field has a default, so `flashkart-edge run` works on a fresh machine. Environment
//! variables `FLASHKART_EDGE_*` override the file (containers and systemd units set them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use flashkart_sync::Synchronous;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::work::pack::PackConfig;

pub mod backup;
pub mod devices;
pub mod riders;
pub mod variable_measure;

pub use backup::BackupConfig;
pub use devices::DevicesConfig;
pub use riders::RidersSection;
pub use variable_measure::VariableMeasureConfig;

/// Everything the edge daemon can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP address for the API and the tablets (`FLASHKART_EDGE_LISTEN`).
    pub listen: SocketAddr,
    /// Where the store database lives (`FLASHKART_EDGE_DATA_DIR`); the user's data directory
    /// (or `./data`) by default.
    pub data_dir: Option<PathBuf>,
    /// This store's id (`FLASHKART_EDGE_STORE_ID`).
    pub store_id: String,
    /// `full` (default) or `normal` (`FLASHKART_EDGE_SYNCHRONOUS`).
    pub synchronous: Synchronous,
    /// PIN of the `manager` account created on first start (`FLASHKART_EDGE_MANAGER_PIN`); a
    /// random one is generated and logged once if unset.
    pub manager_pin: Option<String>,
    /// Seconds in-flight requests get to finish on shutdown (`FLASHKART_EDGE_GRACE_SECS`).
    pub shutdown_grace_secs: u64,
    /// Hours a sign-in lasts.
    pub session_hours: u32,
    /// PIN length, sign-in back-off and lockout, session bounds (`[sign_in]`).
    pub sign_in: crate::lockout::SignInConfig,
    /// Enables `/api/v1/dev/*` (catalog seeding for tests and the demo)
    /// (`FLASHKART_EDGE_DEV_ENDPOINTS`).
    pub dev_endpoints: bool,
    /// Where the cr-sqlite library is extracted; the user's cache directory by default
    /// (`FLASHKART_EDGE_EXTENSION_DIR`).
    pub extension_dir: Option<PathBuf>,
    /// Layout of the store's variable-measure (weighed goods) barcodes.
    pub variable_measure: VariableMeasureConfig,
    /// Bag weight check.
    pub pack: PackConfig,
    /// Minutes from an order's placement to READY, the store's part of the delivery promise:
    /// the tablet's queues show each order's time left against it and mark it late after.
    pub ready_within_minutes: u32,
    /// Store hardware: scanners, scales, printers (`[devices]`; none by default).
    pub devices: DevicesConfig,
    /// The riders' MQTT broker (`[riders]`); without the section no broker runs.
    pub riders: Option<RidersSection>,
    /// Sync with the cloud (`[sync]`: `cloud_url`, `token`, ...); without it the store runs
    /// alone and takes orders through the intake endpoint.
    pub sync: Option<flashkart_sync::client::ClientConfig>,
    /// Scheduled online backups of the store database (`[backup]`; on by default, every 6
    /// hours into `<data_dir>/backups`, the newest 8 kept).
    pub backup: BackupConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            data_dir: None,
            store_id: "store-1".into(),
            synchronous: Synchronous::Full,
            manager_pin: None,
            shutdown_grace_secs: 10,
            session_hours: 12,
            sign_in: crate::lockout::SignInConfig::default(),
            dev_endpoints: false,
            extension_dir: None,
            variable_measure: VariableMeasureConfig::default(),
            pack: PackConfig::default(),
            ready_within_minutes: 8,
            devices: DevicesConfig::default(),
            riders: None,
            sync: None,
            backup: BackupConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path` (if given; it must exist) and applies the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                    context: format!("reading config {}", path.display()),
                    source,
                })?;
                toml::from_str(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            None => Self::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses settings the daemon cannot run with.
    pub fn validate(&self) -> Result<(), Error> {
        self.sign_in.validate().map_err(Error::Config)?;
        self.variable_measure.layouts().map_err(Error::Config)?;
        self.backup.validate().map_err(Error::Config)?;
        if !(1..=240).contains(&self.ready_within_minutes) {
            return Err(Error::Config(format!(
                "ready_within_minutes {} is outside 1..=240",
                self.ready_within_minutes
            )));
        }
        Ok(())
    }

    /// Applies `FLASHKART_EDGE_*` overrides read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
        let bad = |name: &str, value: &str| Error::Config(format!("{name}={value} is not valid"));
        if let Some(v) = var("FLASHKART_EDGE_LISTEN") {
            self.listen = v.parse().map_err(|_| bad("FLASHKART_EDGE_LISTEN", &v))?;
        }
        if let Some(v) = var("FLASHKART_EDGE_DATA_DIR") {
            self.data_dir = Some(v.into());
        }
        if let Some(v) = var("FLASHKART_EDGE_STORE_ID") {
            self.store_id = v;
        }
        if let Some(v) = var("FLASHKART_EDGE_SYNCHRONOUS") {
            self.synchronous = match v.as_str() {
                "full" => Synchronous::Full,
                "normal" => Synchronous::Normal,
                _ => return Err(bad("FLASHKART_EDGE_SYNCHRONOUS", &v)),
            };
        }
        if let Some(v) = var("FLASHKART_EDGE_MANAGER_PIN") {
            self.manager_pin = Some(v);
        }
        if let Some(v) = var("FLASHKART_EDGE_MIN_PIN_LEN") {
            self.sign_in.min_pin_len = v
                .parse()
                .map_err(|_| bad("FLASHKART_EDGE_MIN_PIN_LEN", &v))?;
        }
        if let Some(v) = var("FLASHKART_EDGE_GRACE_SECS") {
            self.shutdown_grace_secs = v
                .parse()
                .map_err(|_| bad("FLASHKART_EDGE_GRACE_SECS", &v))?;
        }
        if let Some(v) = var("FLASHKART_EDGE_DEV_ENDPOINTS") {
            self.dev_endpoints = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = var("FLASHKART_EDGE_EXTENSION_DIR") {
            self.extension_dir = Some(v.into());
        }
        self.backup.apply_env(&var).map_err(Error::Config)?;
        Ok(())
    }

    /// The data directory in force.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            directories::ProjectDirs::from("", "FlashKart", "flashkart-edge").map_or_else(
                || PathBuf::from("data"),
                |dirs| dirs.data_dir().to_path_buf(),
            )
        })
    }

    /// The store database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("store.db")
    }

    /// Where backups of the store database are written.
    pub fn backup_dir(&self) -> PathBuf {
        self.backup.dir_in(&self.data_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file() {
        let mut config: Config = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nstore_id = \"s-9\"\n[pack]\ntolerance_g = 50\n",
        )
        .expect("valid toml");
        assert_eq!(config.pack.tolerance_g, 50);
        config
            .apply_env(|name| match name {
                "FLASHKART_EDGE_STORE_ID" => Some("s-10".into()),
                "FLASHKART_EDGE_SYNCHRONOUS" => Some("normal".into()),
                "FLASHKART_EDGE_MIN_PIN_LEN" => Some("8".into()),
                _ => None,
            })
            .expect("valid env");
        assert_eq!(config.store_id, "s-10");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.synchronous, Synchronous::Normal);
        assert_eq!(config.sign_in.min_pin_len, 8);
        config.sign_in.min_pin_len = 2;
        assert!(
            config.validate().is_err(),
            "PINs shorter than 4 digits are refused"
        );
        assert_eq!(Config::default().sign_in.min_pin_len, 6);
        assert!(
            config
                .apply_env(|n| (n == "FLASHKART_EDGE_LISTEN").then(|| "nope".into()))
                .is_err()
        );
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
    }
}
