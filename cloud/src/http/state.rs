//! What every handler shares. It lives apart from the router so the JSON handlers in `api/`
//! and the HTTP plumbing in `http/` can both depend on it without depending on each other.

use std::sync::Arc;

use prometheus_client::registry::Registry as PromRegistry;
use tokio_util::sync::CancellationToken;

use crate::config::HttpLimits;
use crate::hq::Hq;
use crate::http::throttle::FailureThrottle;
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::payments::Payments;
use crate::projection::Projection;
use crate::readmodel::ReadModel;
use crate::registry::Registry;
use crate::stores::Stores;

/// The cloud's databases, limits and metrics, cloned into every request.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Registry,
    pub stores: Arc<Stores>,
    /// The cloud's writes into stores' replicas (directly, or through the journal).
    pub store_writes: Arc<crate::store_writes::StoreWrites>,
    /// HQ's catalog writes (directly, or through the journal every instance applies).
    pub catalog_writes: Arc<crate::catalog_writes::CatalogWrites>,
    pub read_model: Arc<dyn ReadModel>,
    pub metrics: Arc<Metrics>,
    pub prometheus: Arc<PromRegistry>,
    pub admin_token_sha256: String,
    pub compress_min_bytes: usize,
    pub shutdown: CancellationToken,
    pub hq: Hq,
    pub projection: Projection,
    pub intake: Arc<Intake>,
    pub payments: Arc<Payments>,
    pub dashboard: crate::dashboard::Dashboard,
    pub storefront: crate::storefront::Storefront,
    /// Riders' speed for the customer's ETA from the rider's position (dispatch's setting).
    pub rider_speed_kmh: f64,
    /// Refused webhook signatures per client address.
    pub webhook_throttle: Arc<FailureThrottle>,
    /// Failed HQ sign-ins per client address.
    pub sign_in_throttle: Arc<FailureThrottle>,
    pub hq_settings: crate::config::HqSettings,
    /// Customer accounts' settings and the bounds on their sign-ins and sign-ups.
    pub customers: Arc<CustomerGate>,
    pub intake_grace_ms: u64,
    /// How long an enrolment code stays valid unless the request says less.
    pub enrolment_code_ttl: time::Duration,
    pub limits: Arc<HttpLimits>,
    /// Which instance serves which store, when instances share PostgreSQL.
    pub leases: Option<Arc<crate::leases::Leases>>,
    /// Sends sync requests on to the instance serving their store.
    pub forwarder: reqwest::Client,
}

/// What customer sign-ins and sign-ups may cost: failures counted per client address and per
/// e-mail tried (a guesser spread over many addresses still gets few tries at one account, one
/// address few tries across many), and sign-ups per address.
#[derive(Debug)]
pub struct CustomerGate {
    pub settings: crate::config::CustomersSettings,
    /// Failed sign-ins per client address.
    pub sign_ins_by_address: FailureThrottle,
    /// Failed sign-ins per e-mail tried (trimmed and lower-cased, known or not).
    pub sign_ins_by_email: FailureThrottle<String>,
    /// Sign-ups per client address (each one counts: each costs an argon2 hash and a row).
    pub sign_ups: FailureThrottle,
    /// Password reset requests per client address and per e-mail (each one counts: each may
    /// send an e-mail).
    pub resets_by_address: FailureThrottle,
    pub resets_by_email: FailureThrottle<String>,
    /// Refused reset confirmations (unknown, used or expired tokens) per client address.
    pub reset_confirms_by_address: FailureThrottle,
}

impl CustomerGate {
    pub fn new(settings: crate::config::CustomersSettings) -> Self {
        let window = std::time::Duration::from_secs(settings.sign_in_window_s.max(1));
        let failures = settings.max_failed_sign_ins.max(1);
        Self {
            sign_ins_by_address: FailureThrottle::new(failures, window),
            sign_ins_by_email: FailureThrottle::new(failures, window),
            sign_ups: FailureThrottle::new(
                settings.max_sign_ups_per_window.max(1),
                std::time::Duration::from_secs(settings.sign_up_window_s.max(1)),
            ),
            resets_by_address: FailureThrottle::new(
                settings.max_password_resets.max(1),
                std::time::Duration::from_secs(settings.password_reset_window_s.max(1)),
            ),
            resets_by_email: FailureThrottle::new(
                settings.max_password_resets.max(1),
                std::time::Duration::from_secs(settings.password_reset_window_s.max(1)),
            ),
            reset_confirms_by_address: FailureThrottle::new(failures, window),
            settings,
        }
    }
}
