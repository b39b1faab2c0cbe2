//! The cloud's Prometheus metrics, served as text on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayCallLabels {
    pub op: String,
    /// `ok`, `declined`, `refused`, `unavailable`
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub store: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `email`, `webhook`
    pub channel: String,
    pub kind: String,
    /// `sent`, `failed`, `skipped`, `uncertain`
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

/// Every metric the cloud exports.
#[derive(Debug)]
pub struct Metrics {
    pub orders_placed: Counter,
    pub intake_seconds: Histogram,
    pub requests: Family<RequestLabels, Counter>,
    pub changes_received: Family<StoreLabels, Counter>,
    pub changes_applied: Family<StoreLabels, Counter>,
    pub batches_refused: Family<StoreLabels, Counter>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub catalog_fanout_changes: Counter,
    pub open_replicas: Gauge,
    pub gateway_calls: Family<GatewayCallLabels, Counter>,
    pub payment_backlog: Family<OpLabels, Gauge>,
    pub webhooks_refused: Counter,
    pub hq_sign_ins_failed: Counter,
    pub customer_sign_ins_failed: Counter,
    pub notifications: Family<NotificationLabels, Counter>,
    pub notifications_pending: Family<ChannelLabels, Gauge>,
    pub password_resets: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            orders_placed: Counter::default(),
            // 1 ms .. ~4 s
            intake_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 12),
            ),
            requests: Family::default(),
            changes_received: Family::default(),
            changes_applied: Family::default(),
            batches_refused: Family::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            catalog_fanout_changes: Counter::default(),
            open_replicas: Gauge::default(),
            gateway_calls: Family::default(),
            payment_backlog: Family::default(),
            webhooks_refused: Counter::default(),
            hq_sign_ins_failed: Counter::default(),
            customer_sign_ins_failed: Counter::default(),
            notifications: Family::default(),
            notifications_pending: Family::default(),
            password_resets: Counter::default(),
        }
    }
}

impl Metrics {
    /// Registers the metrics, plus the read model's per-table counter.
    pub fn registry(&self, projected: &crate::readmodel::ChangeCounter) -> Registry {
        let mut registry = Registry::with_prefix("flashkart_cloud");
        registry.register(
            "sync_requests",
            "Sync and admin requests by endpoint and status",
            self.requests.clone(),
        );
        registry.register(
            "sync_changes_received",
            "Changes pushed by each store (in complete transactions)",
            self.changes_received.clone(),
        );
        registry.register(
            "sync_changes_applied",
            "Pushed changes that altered the store's replica",
            self.changes_applied.clone(),
        );
        registry.register(
            "sync_batches_refused",
            "Pushed batches refused whole by authorisation",
            self.batches_refused.clone(),
        );
        registry.register(
            "sync_body_bytes_in",
            "Request body bytes on the wire",
            self.bytes_in.clone(),
        );
        registry.register(
            "sync_body_bytes_out",
            "Response body bytes on the wire",
            self.bytes_out.clone(),
        );
        registry.register(
            "catalog_fanout_changes",
            "Catalog changes merged into store replicas",
            self.catalog_fanout_changes.clone(),
        );
        registry.register(
            "orders_placed",
            "Orders placed through intake (replays not counted)",
            self.orders_placed.clone(),
        );
        registry.register(
            "intake_seconds",
            "Time to validate, price, route and durably write an order",
            self.intake_seconds.clone(),
        );
        registry.register(
            "open_replicas",
            "Store replicas open",
            self.open_replicas.clone(),
        );
        registry.register(
            "gateway_calls",
            "Payment gateway calls by operation and result",
            self.gateway_calls.clone(),
        );
        registry.register(
            "payment_backlog",
            "Gateway calls (captures, voids, refunds) waiting to be made or retried",
            self.payment_backlog.clone(),
        );
        registry.register(
            "hq_sign_ins_failed",
            "Refused HQ dashboard sign-ins (unknown user, wrong password)",
            self.hq_sign_ins_failed.clone(),
        );
        registry.register(
            "customer_sign_ins_failed",
            "Refused customer account sign-ins (unknown e-mail, wrong password)",
            self.customer_sign_ins_failed.clone(),
        );
        registry.register(
            "webhooks_refused",
            "Webhook deliveries refused (bad signature, stale, replayed, malformed)",
            self.webhooks_refused.clone(),
        );
        registry.register(
            "notifications",
            "Notifications by channel, kind and outcome (sent; failed after the last retry; \
             skipped: no one to send to; uncertain: the cloud stopped mid-send, not resent)",
            self.notifications.clone(),
        );
        registry.register(
            "notifications_pending",
            "Notifications waiting in the outboxes, by channel",
            self.notifications_pending.clone(),
        );
        registry.register(
            "password_resets",
            "Password reset requests taken (known e-mails or not: the count must not tell which)",
            self.password_resets.clone(),
        );
        registry.register(
            "readmodel_changes",
            "Changes handed to the read model, per table",
            projected.per_table.clone(),
        );
        registry
    }
}
