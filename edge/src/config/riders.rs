//! `[riders]`: where the riders' broker listens and what it puts in certificates.
//!
//! Why apart from the rider link: the section is read and checked before anything runs, and
//! lives with the other sections so `Config` depends on no running part.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[riders]` in edge.toml: the MQTT broker riders' phones connect to. Without this section
/// the daemon runs no broker (a store without riders, or tests that do not need one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RidersSection {
    /// TLS listener for rider devices; a client certificate from the store CA is required.
    pub tls_listen: SocketAddr,
    /// HTTPS listener where riders' phones enrol, with the store CA's server certificate (the
    /// one the broker presents); the phone pins the CA by the fingerprint in HQ's QR code.
    pub enrol_listen: SocketAddr,
    /// Plain listener for simulators on this machine; must be a loopback address.
    pub plain_listen: Option<SocketAddr>,
    /// Host names devices use to reach the store (put in the broker's certificate besides
    /// `localhost`; rustls refuses IP addresses as server names).
    pub server_names: Vec<String>,
    /// Radius of the arrival geofence around the store, in metres.
    pub geofence_m: f64,
    /// Lifetime of rider certificates, in days.
    pub cert_validity_days: u32,
}

impl Default for RidersSection {
    fn default() -> Self {
        Self {
            tls_listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            enrol_listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            plain_listen: None,
            server_names: Vec::new(),
            geofence_m: 75.0,
            cert_validity_days: 365,
        }
    }
}
