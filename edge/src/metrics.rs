//! Prometheus metrics: HTTP traffic and latency, stock moves and order changes, live stream
//! clients. Served as text on `/metrics`.

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceLabels {
    device: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceResultLabels {
    device: String,
    result: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The edge's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    stock_moves: Family<KindLabels, Counter>,
    order_changes: Family<KindLabels, Counter>,
    stream_clients: Gauge,
    device_up: Family<DeviceLabels, Gauge>,
    device_scans: Family<DeviceResultLabels, Counter>,
    printer_faults: Family<DeviceLabels, Gauge>,
    print_jobs: Family<DeviceResultLabels, Counter>,
    rider_connections: Gauge,
    riders_online: Gauge,
    sign_in_failures: Family<ReasonLabels, Counter>,
    backups: Family<ResultLabels, Counter>,
    backup_last_success: Gauge,
    backup_last_bytes: Gauge,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flashkart_edge");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_seconds: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let stock_moves = Family::<KindLabels, Counter>::default();
        let order_changes = Family::<KindLabels, Counter>::default();
        let stream_clients = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_seconds",
            "HTTP request latency by route",
            http_seconds.clone(),
        );
        registry.register(
            "stock_moves",
            "Stock ledger rows written, by kind",
            stock_moves.clone(),
        );
        registry.register(
            "order_changes",
            "Committed order changes, by kind",
            order_changes.clone(),
        );
        registry.register(
            "stream_clients",
            "Clients following the live event stream",
            stream_clients.clone(),
        );
        let device_up = Family::<DeviceLabels, Gauge>::default();
        let device_scans = Family::<DeviceResultLabels, Counter>::default();
        let printer_faults = Family::<DeviceLabels, Gauge>::default();
        let print_jobs = Family::<DeviceResultLabels, Counter>::default();
        registry.register(
            "device_up",
            "1 while a store device is connected and answering, else 0",
            device_up.clone(),
        );
        registry.register(
            "device_scans",
            "Scans from store scanners, by result (applied, refused, unbound)",
            device_scans.clone(),
        );
        registry.register(
            "printer_faults",
            "Faults a printer reports (paper out, head open...), 0 when ready",
            printer_faults.clone(),
        );
        registry.register(
            "print_jobs",
            "Print jobs by outcome (printed, duplicate, failed, uncertain)",
            print_jobs.clone(),
        );
        let rider_connections = Gauge::default();
        let riders_online = Gauge::default();
        registry.register(
            "rider_connections",
            "Open MQTT connections to the riders' broker (rumqttd) of rider devices and loopback clients",
            rider_connections.clone(),
        );
        registry.register(
            "riders_online",
            "Riders whose device last said it is online",
            riders_online.clone(),
        );
        let sign_in_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "sign_in_failures",
            "Refused sign-ins, by reason (bad_credentials: unknown id or wrong PIN alike, so the \
             figures do not tell which ids exist; account_locked; client_locked)",
            sign_in_failures.clone(),
        );
        let backups = Family::<ResultLabels, Counter>::default();
        let backup_last_success = Gauge::default();
        let backup_last_bytes = Gauge::default();
        registry.register(
            "backups",
            "Scheduled backups of the store database, by result (ok, failed)",
            backups.clone(),
        );
        registry.register(
            "backup_last_success_unixtime",
            "When the last verified backup was written, in seconds since the Unix epoch (0: none \
             since start)",
            backup_last_success.clone(),
        );
        registry.register(
            "backup_last_bytes",
            "Size of the last verified backup, in bytes",
            backup_last_bytes.clone(),
        );
        Self {
            registry,
            backups,
            backup_last_success,
            backup_last_bytes,
            sign_in_failures,
            rider_connections,
            riders_online,
            device_up,
            device_scans,
            printer_faults,
            print_jobs,
            http_requests,
            http_seconds,
            stock_moves,
            order_changes,
            stream_clients,
        }
    }
}

impl Metrics {
    pub fn http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn stock_move(&self, kind: &str) {
        self.stock_moves
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn order_change(&self, change: &str) {
        self.order_changes
            .get_or_create(&KindLabels {
                kind: change.to_owned(),
            })
            .inc();
    }

    /// A device's health: up (connected) or not.
    pub fn device_health(&self, device: &str, kind: &str, up: bool) {
        self.device_up
            .get_or_create(&DeviceLabels {
                device: device.to_owned(),
                kind: kind.to_owned(),
            })
            .set(i64::from(up));
    }

    /// A scan from a store scanner and what became of it.
    pub fn device_scan(&self, device: &str, result: &str) {
        self.device_scans
            .get_or_create(&DeviceResultLabels {
                device: device.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// The number of faults a printer reports.
    pub fn printer_faults(&self, device: &str, faults: usize) {
        self.printer_faults
            .get_or_create(&DeviceLabels {
                device: device.to_owned(),
                kind: "printer".to_owned(),
            })
            .set(i64::try_from(faults).unwrap_or(i64::MAX));
    }

    /// A refused sign-in.
    pub fn sign_in_failure(&self, reason: &str) {
        self.sign_in_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A finished print job.
    pub fn print_job(&self, device: &str, outcome: &str) {
        self.print_jobs
            .get_or_create(&DeviceResultLabels {
                device: device.to_owned(),
                result: outcome.to_owned(),
            })
            .inc();
    }

    /// Takes in the riders' broker figures (read when `/metrics` is scraped).
    pub fn riders(&self, stats: &crate::riders::BrokerStats, online: usize) {
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        self.rider_connections.set(gauge(stats.sessions));
        self.riders_online.set(gauge(online));
    }

    /// A scheduled backup that failed.
    pub fn backup_failed(&self) {
        self.backups
            .get_or_create(&ResultLabels {
                result: "failed".to_owned(),
            })
            .inc();
    }

    /// A scheduled backup written and verified: its size and when it finished.
    pub fn backup_succeeded(&self, bytes: u64, unix_secs: i64) {
        self.backups
            .get_or_create(&ResultLabels {
                result: "ok".to_owned(),
            })
            .inc();
        self.backup_last_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.backup_last_success.set(unix_secs);
    }

    /// Counts a stream client for as long as the returned guard lives.
    pub fn stream_client(&self) -> StreamClient {
        self.stream_clients.inc();
        StreamClient(self.stream_clients.clone())
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Decrements the stream client gauge when dropped.
#[derive(Debug)]
pub struct StreamClient(Gauge);

impl Drop for StreamClient {
    fn drop(&mut self) {
        self.0.dec();
    }
}
