//! The cloud's configuration: a TOML file, or an embedded default that runs out of the box.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use flashkart_sync::Synchronous;

use crate::CloudError;

/// Everything `flashkart-cloud run` needs. Every field has a default.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudConfig {
    /// Address of the HTTP listener (sync, admin, metrics). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the registry, the catalog and the store replicas live.
    pub data_dir: PathBuf,
    /// Bearer token for HQ's admin endpoints; when unset one is generated on first start and
    /// kept in `<data_dir>/admin_token`.
    pub admin_token: Option<String>,
    /// Serve HTTPS (HTTP/2 over TLS) with this certificate; plain HTTP (h2c and HTTP/1.1)
    /// without.
    pub tls: Option<TlsConfig>,
    /// Durability of the replicas' commits.
    pub synchronous: Synchronous,
    /// Where the cr-sqlite library is extracted; the user's cache directory when unset.
    pub extension_dir: Option<PathBuf>,
    pub sync: SyncLimits,
    pub intake: IntakeConfig,
    pub dispatch: DispatchSettings,
}

/// The live dispatch loop.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchSettings {
    /// Time between dispatch ticks.
    pub tick_ms: u64,
    /// Seconds a rider has to answer an offer.
    pub offer_timeout_s: f64,
    /// A rider whose last position is older than this is offline.
    pub rider_stale_s: u64,
    /// Rider speed for travel times.
    pub rider_speed_kmh: f64,
    /// Click-to-door target the dispatcher plans against, in minutes.
    pub target_minutes: f64,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            tick_ms: 2_000,
            offer_timeout_s: 60.0,
            rider_stale_s: 120,
            rider_speed_kmh: 18.0,
            target_minutes: 30.0,
        }
    }
}

/// Order intake: limits, pricing of the delivery fee, routing estimates.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// Most lines one order may have.
    pub max_lines: usize,
    /// Most pieces one line may ask for.
    pub max_qty_per_line: i64,
    /// Delivery fee before distance and surge, in minor units.
    pub base_fee_minor: i64,
    /// Delivery fee per km from the store.
    pub fee_per_km_minor: i64,
    /// Highest surge factor (open orders per rider seen at the store).
    pub surge_cap: f64,
    /// Rider speed for ETAs.
    pub rider_speed_kmh: f64,
    /// Minutes to pick and pack an order with no queue.
    pub prep_minutes: f64,
    /// Extra minutes per order already open at the store.
    pub minutes_per_queued_order: f64,
    /// A store not heard from for this long gets no new orders.
    pub offline_grace_ms: u64,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            max_lines: 50,
            max_qty_per_line: 100,
            base_fee_minor: 199,
            fee_per_km_minor: 50,
            surge_cap: 2.0,
            rider_speed_kmh: 18.0,
            prep_minutes: 4.0,
            minutes_per_queued_order: 1.5,
            offline_grace_ms: 60_000,
        }
    }
}

/// PEM files of the server certificate chain and its private key.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Limits of the sync endpoints.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncLimits {
    /// Longest long-poll granted, in milliseconds.
    pub max_wait_ms: u64,
    /// Largest pull answer, in encoded change bytes.
    pub max_pull_bytes: usize,
    /// Largest transaction held while its chunks arrive.
    pub max_pending_bytes: usize,
    /// Answers from this size on are zstd-compressed (when the edge accepts it).
    pub compress_min_bytes: usize,
    /// Chunk size of the catalog fan-out into store replicas.
    pub fanout_chunk_bytes: usize,
}

impl Default for SyncLimits {
    fn default() -> Self {
        Self {
            max_wait_ms: 30_000,
            max_pull_bytes: 4 << 20,
            max_pending_bytes: 256 << 20,
            compress_min_bytes: 1024,
            fanout_chunk_bytes: 1 << 20,
        }
    }
}

impl Default for CloudConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7800)),
            data_dir: default_data_dir(),
            admin_token: None,
            tls: None,
            synchronous: Synchronous::Full,
            extension_dir: None,
            sync: SyncLimits::default(),
            intake: IntakeConfig::default(),
            dispatch: DispatchSettings::default(),
        }
    }
}

impl CloudConfig {
    /// Reads a TOML file; missing fields take their defaults.
    pub fn load(path: &Path) -> Result<Self, CloudError> {
        let text = std::fs::read_to_string(path).map_err(|source| CloudError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| CloudError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Defaults with the data under `data_dir` and the listener on a free loopback port: what
    /// tests and benchmarks use.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }
}

/// The user's data directory (`~/.local/share/flashkart-cloud`), or `./data/cloud`.
fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "flashkart-cloud").map_or_else(
        || PathBuf::from("data/cloud"),
        |d| d.data_dir().to_path_buf(),
    )
}
