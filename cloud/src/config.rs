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
    /// PostgreSQL for the parts of the cloud that can share it between instances (today the
    /// store registry); SQLite files in `data_dir` when unset. `FLASHKART_DATABASE_URL`
    /// overrides it, so a password need not be written into the file.
    pub database_url: Option<crate::postgres::DatabaseUrl>,
    pub sync: SyncLimits,
    pub intake: IntakeConfig,
    pub dispatch: DispatchSettings,
    pub riders: RidersSettings,
    pub http: HttpLimits,
    pub payments: crate::payments::PaymentsConfig,
    pub hq: HqSettings,
    pub customers: CustomersSettings,
    /// Several instances on one PostgreSQL (`[cluster]`); read only with `database_url`.
    pub cluster: ClusterSettings,
    /// E-mail and push notifications to customers (`[notifications]`).
    pub notifications: crate::notify::NotificationsConfig,
}

/// Instances sharing one PostgreSQL database (`[cluster]`): each store is served by the one
/// instance holding its lease (see `leases.rs`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Where the other instances reach this one, e.g. `http://10.1.2.3:7800` (a pod's own
    /// address); the bound listener's address when unset, which must then not be 0.0.0.0.
    pub advertise_url: Option<String>,
    /// How long a store's lease lasts unrenewed: how soon the stores of an instance that died
    /// move to the others. Renewed every third of it.
    pub lease_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            advertise_url: None,
            lease_ms: 15_000,
        }
    }
}

impl ClusterSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(300..=600_000).contains(&self.lease_ms) {
            return Err("cluster.lease_ms must be 300..=600000".into());
        }
        if let Some(url) = &self.advertise_url {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| format!("cluster.advertise_url `{url}`: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(format!(
                    "cluster.advertise_url `{url}` must be an http(s) URL with a host"
                ));
            }
        }
        Ok(())
    }

    /// The URL other instances forward to: the configured one, else the bound address.
    pub fn advertised(&self, bound: SocketAddr, scheme: &str) -> Result<String, String> {
        if let Some(url) = &self.advertise_url {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        if bound.ip().is_unspecified() {
            return Err(format!(
                "the cloud listens on {bound}, which other instances cannot dial: set \
                 cluster.advertise_url (or FLASHKART_ADVERTISE_URL) to this instance's address"
            ));
        }
        Ok(format!("{scheme}://{bound}"))
    }
}

/// HQ users' sign-in to the dashboard (`[hq]`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HqSettings {
    /// Hours a dashboard sign-in lasts.
    pub session_hours: u32,
    /// Mark the session cookie `Secure` (browsers then send it over HTTPS only). On wherever
    /// the dashboard is reached over TLS (the cloud's own `[tls]` or a terminating ingress);
    /// off for plain HTTP on loopback (the demo, tests).
    pub secure_cookie: bool,
    /// Failed sign-ins allowed per client address in `sign_in_window_s` before it is answered
    /// 429 without a check.
    pub max_failed_sign_ins: u32,
    pub sign_in_window_s: u64,
}

impl Default for HqSettings {
    fn default() -> Self {
        Self {
            session_hours: 12,
            secure_cookie: false,
            max_failed_sign_ins: 10,
            sign_in_window_s: 300,
        }
    }
}

/// Customer accounts: sign-up, sign-in and their sessions (`[customers]`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CustomersSettings {
    /// Mark the session cookie `Secure`: on wherever the customer web app is reached over TLS,
    /// off for plain HTTP on loopback (the demo, tests). As `[hq] secure_cookie`.
    pub secure_cookie: bool,
    /// Days a sign-in (cookie or bearer token) lasts.
    pub session_days: u32,
    /// Failed sign-ins allowed in `sign_in_window_s`, counted both per client address and per
    /// e-mail tried; past either the sign-in is answered 429 without a check.
    pub max_failed_sign_ins: u32,
    pub sign_in_window_s: u64,
    /// Sign-ups allowed per client address in `sign_up_window_s` (each costs an argon2 hash
    /// and a row).
    pub max_sign_ups_per_window: u32,
    pub sign_up_window_s: u64,
    /// Password reset requests allowed in `password_reset_window_s`, counted both per client
    /// address and per e-mail (each may send an e-mail); past either the request is answered
    /// 429. Failed reset confirmations are bounded like failed sign-ins.
    pub max_password_resets: u32,
    pub password_reset_window_s: u64,
}

impl Default for CustomersSettings {
    fn default() -> Self {
        Self {
            secure_cookie: false,
            session_days: 30,
            max_failed_sign_ins: 10,
            sign_in_window_s: 300,
            max_sign_ups_per_window: 20,
            sign_up_window_s: 3600,
            max_password_resets: 5,
            password_reset_window_s: 3600,
        }
    }
}

/// What one client may cost the HTTP server: body sizes per route, how long a body and a new
/// connection may take, and how many connections may be open.
///
/// Every route that reads a body authenticates from the headers first and then reads at most
/// its limit, so a caller without a credential cannot make the cloud buffer anything, and one
/// with a credential cannot make it buffer more than its route needs.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// `POST /api/v1/orders` (at most `intake.max_lines` lines, an address, a coupon).
    pub max_order_body_bytes: usize,
    /// The admin JSON bodies but a store profile: stores, tokens, products, coupons, riders,
    /// customers.
    pub max_admin_body_bytes: usize,
    /// `PUT /admin/v1/stores/{id}/profile`: room for a GeoJSON service area.
    pub max_profile_body_bytes: usize,
    /// The payment provider's webhook events.
    pub max_webhook_body_bytes: usize,
    /// Sync hello and pull requests (an id and a few cursors).
    pub max_sync_request_body_bytes: usize,
    /// A sync push as sent (compressed or not). One chunk is the edge's `sync.max_chunk_bytes`
    /// (1 MiB by default) plus the change that crossed it, so keep this well above that.
    pub max_push_body_bytes: usize,
    /// Time a client gets to send a whole body once its headers are in.
    pub body_timeout_ms: u64,
    /// Time a new connection gets to finish its TLS handshake and send its first request
    /// head; one that has not is closed.
    pub handshake_timeout_ms: u64,
    /// Connections still in that phase, at most; a new connection beyond it is closed at once.
    pub max_pending_connections: usize,
    /// Open connections, at most; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// An HTTP/1 connection is closed when the next request head has not arrived within
    /// this long (idle keep-alive included).
    pub idle_timeout_ms: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_order_body_bytes: 32 << 10,
            max_admin_body_bytes: 16 << 10,
            max_profile_body_bytes: 128 << 10,
            max_webhook_body_bytes: 64 << 10,
            max_sync_request_body_bytes: 64 << 10,
            max_push_body_bytes: 8 << 20,
            body_timeout_ms: 30_000,
            handshake_timeout_ms: 10_000,
            max_pending_connections: 256,
            max_connections: 4_096,
            idle_timeout_ms: 60_000,
        }
    }
}

impl HttpLimits {
    /// The largest body any route takes.
    pub fn max_body_bytes(&self) -> usize {
        [
            self.max_order_body_bytes,
            self.max_admin_body_bytes,
            self.max_profile_body_bytes,
            self.max_sync_request_body_bytes,
            self.max_push_body_bytes,
            self.max_webhook_body_bytes,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}

/// The rider roster.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RidersSettings {
    /// Hours an enrolment code from `POST /admin/v1/riders/{id}/enrolment-code` stays valid.
    pub enrolment_code_ttl_hours: u32,
}

impl Default for RidersSettings {
    fn default() -> Self {
        Self {
            enrolment_code_ttl_hours: 72,
        }
    }
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
            database_url: None,
            sync: SyncLimits::default(),
            intake: IntakeConfig::default(),
            dispatch: DispatchSettings::default(),
            riders: RidersSettings::default(),
            http: HttpLimits::default(),
            payments: crate::payments::PaymentsConfig::default(),
            hq: HqSettings::default(),
            customers: CustomersSettings::default(),
            cluster: ClusterSettings::default(),
            notifications: crate::notify::NotificationsConfig::default(),
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
        let config: Self = toml::from_str(&text).map_err(|e| CloudError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config
            .notifications
            .validate()
            .and_then(|()| config.cluster.validate())
            .map_err(|message| CloudError::Config {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(config)
    }

    /// Takes what the environment sets over the file: the secrets, so they need not be written
    /// into a config file (`FLASHKART_DATABASE_URL`, `FLASHKART_ADMIN_TOKEN`, which several
    /// instances must share where the token file in each data directory would differ,
    /// `FLASHKART_STRIPE_SECRET_KEY` with the default API base unless the file names one,
    /// `FLASHKART_STRIPE_WEBHOOK_SECRET`), and `FLASHKART_ADVERTISE_URL`, known only once a pod
    /// runs.
    pub fn overrides_from_env(mut self) -> Result<Self, CloudError> {
        use crate::payments::gateway::stripe::Secret;
        if let Some(token) = std::env::var("FLASHKART_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
        {
            self.admin_token = Some(token);
        }
        if let Some(url) = std::env::var("FLASHKART_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            let url = crate::postgres::DatabaseUrl::parse(&url).map_err(|message| {
                CloudError::Config {
                    path: "FLASHKART_DATABASE_URL".into(),
                    message,
                }
            })?;
            self.database_url = Some(url);
        }
        // Not a secret, but known only once the pod runs (its own IP).
        if let Some(url) = std::env::var("FLASHKART_ADVERTISE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            self.cluster.advertise_url = Some(url);
            self.cluster
                .validate()
                .map_err(|message| CloudError::Config {
                    path: "FLASHKART_ADVERTISE_URL".into(),
                    message,
                })?;
        }
        if let Some(key) = std::env::var("FLASHKART_STRIPE_SECRET_KEY")
            .ok()
            .filter(|k| !k.is_empty())
        {
            let mut stripe = self.payments.stripe.take().unwrap_or_default();
            stripe.secret_key = Secret::new(key);
            self.payments.stripe = Some(stripe);
        }
        if let Some(secret) = std::env::var("FLASHKART_STRIPE_WEBHOOK_SECRET")
            .ok()
            .filter(|k| !k.is_empty())
        {
            self.payments.webhook_secret = Some(Secret::new(secret));
        }
        Ok(self)
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

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../deploy/cloud.example.toml");

    #[test]
    fn the_example_config_loads_and_names_every_section() {
        let config: CloudConfig = toml::from_str(EXAMPLE).expect("the example parses");
        config
            .notifications
            .validate()
            .expect("the example's notifications are valid");
        config
            .payments
            .economics
            .validate()
            .expect("the example's economics are valid");
        // A section added to the code must be shown to operators too.
        let defaults = toml::Table::try_from(CloudConfig::default()).expect("defaults as TOML");
        for (section, value) in &defaults {
            if value.is_table() {
                assert!(
                    EXAMPLE.contains(&format!("[{section}]")),
                    "deploy/cloud.example.toml has no [{section}]"
                );
            }
        }
        for section in ["tls", "payments.stripe", "notifications.webhook"] {
            assert!(
                EXAMPLE.contains(&format!("[{section}]")),
                "deploy/cloud.example.toml does not show [{section}]"
            );
        }
    }
}
