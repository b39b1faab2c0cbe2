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
        Self {
            registry,
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
