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
    // Live dispatch (`dispatch/live.rs`).
    pub dispatch_offers: Family<StoreLabels, Counter>,
    pub dispatch_replies: Family<DispatchReplyLabels, Counter>,
    pub dispatch_offers_pending: Family<StoreLabels, Gauge>,
    // Store leases between instances (`leases.rs`, `http/sync.rs`).
    pub store_leases_held: Gauge,
    pub sync_forwarded: Family<OpLabels, Counter>,
    pub sync_pushes_fenced: Counter,
    pub dispatch_fenced: Family<StoreLabels, Counter>,
    /// What the business and the process look like right now: set at scrape time
    /// ([`Metrics::set_business`], [`Metrics::set_runtime`]) from the dashboard's snapshot,
    /// the read model's last hour and `/proc`.
    pub scraped: ScrapeGauges,
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
            dispatch_offers: Family::default(),
            dispatch_replies: Family::default(),
            dispatch_offers_pending: Family::default(),
            store_leases_held: Gauge::default(),
            sync_forwarded: Family::default(),
            sync_pushes_fenced: Counter::default(),
            dispatch_fenced: Family::default(),
            scraped: ScrapeGauges::default(),
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
            "dispatch_offers",
            "Offers sent to riders (one per trip, however many orders it carries), by store",
            self.dispatch_offers.clone(),
        );
        registry.register(
            "dispatch_replies",
            "Offers ended by the rider's answer (accepted, declined) or by running out (expired)",
            self.dispatch_replies.clone(),
        );
        registry.register(
            "dispatch_offers_pending",
            "Offers waiting on the rider's answer, by store",
            self.dispatch_offers_pending.clone(),
        );
        registry.register(
            "store_leases_held",
            "Stores whose lease this instance holds (several instances on PostgreSQL)",
            self.store_leases_held.clone(),
        );
        registry.register(
            "sync_forwarded",
            "Requests about a store (sync, HQ's reroutes) sent on to the instance holding the store's lease, by op",
            self.sync_forwarded.clone(),
        );
        registry.register(
            "sync_pushes_fenced",
            "Pushes applied but not acknowledged because the store's lease had moved on",
            self.sync_pushes_fenced.clone(),
        );
        registry.register(
            "dispatch_fenced",
            "Offers not made because the store's lease had moved to another instance, by store",
            self.dispatch_fenced.clone(),
        );
        registry.register(
            "readmodel_changes",
            "Changes handed to the read model, per table",
            projected.per_table.clone(),
        );
        self.scraped.register(&mut registry);
        registry
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispatchReplyLabels {
    pub store: String,
    /// `accepted`, `declined`, `expired`
    pub answer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreStateLabels {
    pub store: String,
    pub state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreQuantileLabels {
    pub store: String,
    /// `0.5`, `0.95`, `1` (the slowest).
    pub quantile: String,
}

/// A gauge holding a fraction or seconds.
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The quantiles of pick time exported per store.
pub const PICK_QUANTILES: &[(f64, &str)] = &[(0.5, "0.5"), (0.95, "0.95"), (1.0, "1")];

/// Gauges set when `/metrics` is scraped, not as things happen: each is a figure of the read
/// model (or of the process) at that moment, read with bounded queries once per scrape.
/// Families are cleared before they are set, so a store that drops out (no packs in the last
/// hour, say) loses its series instead of keeping a stale value; `refreshing` makes one scrape
/// at a time clear, set and encode.
#[derive(Debug, Default)]
pub struct ScrapeGauges {
    pub refreshing: tokio::sync::Mutex<()>,
    pub orders: Family<StoreStateLabels, Gauge>,
    pub pick_seconds: Family<StoreQuantileLabels, FloatGauge>,
    pub packed_1h: Family<StoreLabels, Gauge>,
    pub delivered_1h: Family<StoreLabels, Gauge>,
    pub on_time_share_1h: Family<StoreLabels, FloatGauge>,
    pub stock_outs: Family<StoreLabels, Gauge>,
    pub low_stock: Family<StoreLabels, Gauge>,
    pub sync_lag_seconds: Family<StoreLabels, FloatGauge>,
    pub process_resident_memory_bytes: Gauge,
    pub process_open_fds: Gauge,
    pub process_cpu_seconds: FloatGauge,
    pub tokio_workers: Gauge,
    pub tokio_alive_tasks: Gauge,
    pub tokio_global_queue_depth: Gauge,
}

impl ScrapeGauges {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "orders",
            "Open orders by store and state (the dashboard's figures: every open state, zeros \
             included, for every profiled store)",
            self.orders.clone(),
        );
        registry.register(
            "pick_seconds",
            "Seconds from ACCEPTED to PACKED of the orders each store packed in the last hour, \
             at quantiles 0.5, 0.95 and 1 (nearest rank)",
            self.pick_seconds.clone(),
        );
        registry.register(
            "packed_1h",
            "Orders each store packed in the last hour (what pick_seconds is over)",
            self.packed_1h.clone(),
        );
        registry.register(
            "delivered_1h",
            "Orders delivered from each store in the last hour",
            self.delivered_1h.clone(),
        );
        registry.register(
            "on_time_share_1h",
            "Share (0-1) of the last hour's deliveries from each store at the door by their \
             promise; no series for a store without deliveries",
            self.on_time_share_1h.clone(),
        );
        registry.register(
            "stock_outs",
            "Active catalog products with nothing available at each store",
            self.stock_outs.clone(),
        );
        registry.register(
            "low_stock",
            "Active catalog products with 1-3 available at each store",
            self.low_stock.clone(),
        );
        registry.register(
            "sync_lag_seconds",
            "Seconds from a store's newest fact to its projection here, in the latest step \
             that carried one",
            self.sync_lag_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the cloud process (Linux /proc)",
            self.process_resident_memory_bytes.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors of the cloud process (Linux /proc)",
            self.process_open_fds.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "User and system CPU seconds the cloud process has used (Linux /proc; only rises)",
            self.process_cpu_seconds.clone(),
        );
        registry.register(
            "tokio_workers",
            "Worker threads of the async runtime",
            self.tokio_workers.clone(),
        );
        registry.register(
            "tokio_alive_tasks",
            "Tasks alive on the async runtime",
            self.tokio_alive_tasks.clone(),
        );
        registry.register(
            "tokio_global_queue_depth",
            "Tasks waiting in the async runtime's global queue",
            self.tokio_global_queue_depth.clone(),
        );
    }
}

/// One store's figures for [`Metrics::set_business`], as the dashboard's snapshot has them
/// (its queries compute them; they are not computed twice).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreFiguresNow {
    pub store: String,
    pub orders_by_state: Vec<(String, u32)>,
    pub delivered_1h: u32,
    pub on_time_share_1h: Option<f64>,
    pub stock_outs: u32,
    pub low_stock: u32,
    pub sync_lag_s: Option<f64>,
}

impl Metrics {
    /// Sets the business gauges: each store's figures, and the pick times (seconds) of the
    /// orders each store packed in the last hour. Call with `scraped.refreshing` held.
    pub fn set_business(
        &self,
        stores: &[StoreFiguresNow],
        picks: &std::collections::BTreeMap<String, Vec<f64>>,
    ) {
        let g = &self.scraped;
        g.orders.clear();
        g.delivered_1h.clear();
        g.on_time_share_1h.clear();
        g.stock_outs.clear();
        g.low_stock.clear();
        g.sync_lag_seconds.clear();
        g.pick_seconds.clear();
        g.packed_1h.clear();
        for figures in stores {
            let store = StoreLabels {
                store: figures.store.clone(),
            };
            for (state, n) in &figures.orders_by_state {
                g.orders
                    .get_or_create(&StoreStateLabels {
                        store: figures.store.clone(),
                        state: state.clone(),
                    })
                    .set(i64::from(*n));
            }
            g.delivered_1h
                .get_or_create(&store)
                .set(i64::from(figures.delivered_1h));
            if let Some(share) = figures.on_time_share_1h {
                g.on_time_share_1h.get_or_create(&store).set(share);
            }
            g.stock_outs
                .get_or_create(&store)
                .set(i64::from(figures.stock_outs));
            g.low_stock
                .get_or_create(&store)
                .set(i64::from(figures.low_stock));
            if let Some(lag) = figures.sync_lag_s {
                g.sync_lag_seconds.get_or_create(&store).set(lag);
            }
        }
        for (store, seconds) in picks {
            let mut sorted: Vec<f64> = seconds.iter().copied().filter(|s| s.is_finite()).collect();
            sorted.sort_by(f64::total_cmp);
            let labels = StoreLabels {
                store: store.clone(),
            };
            g.packed_1h
                .get_or_create(&labels)
                .set(i64::try_from(sorted.len()).unwrap_or(i64::MAX));
            for (q, label) in PICK_QUANTILES {
                if let Some(value) = nearest_rank(&sorted, *q) {
                    g.pick_seconds
                        .get_or_create(&StoreQuantileLabels {
                            store: store.clone(),
                            quantile: (*label).to_owned(),
                        })
                        .set(value);
                }
            }
        }
    }

    /// Sets the process and runtime gauges from `/proc/self` and the current tokio runtime;
    /// what cannot be read (not Linux, no runtime) keeps its last value.
    pub fn set_runtime(&self) {
        let g = &self.scraped;
        if let Some(bytes) = proc_status_kib("VmRSS:").and_then(|kib| kib.checked_mul(1024)) {
            g.process_resident_memory_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle read_dir holds is one of the entries; it is not counted.
            let open = entries.count().saturating_sub(1);
            g.process_open_fds
                .set(i64::try_from(open).unwrap_or(i64::MAX));
        }
        if let Some(seconds) = proc_cpu_seconds() {
            g.process_cpu_seconds.set(seconds);
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let runtime = handle.metrics();
            let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            g.tokio_workers.set(as_i64(runtime.num_workers()));
            g.tokio_alive_tasks.set(as_i64(runtime.num_alive_tasks()));
            g.tokio_global_queue_depth
                .set(as_i64(runtime.global_queue_depth()));
        }
    }
}

/// The text `/metrics` serves for `registry` (OpenMetrics), for tests that check names
/// against it (the Grafana dashboard's, say) without starting a cloud.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// The nearest-rank quantile `q` (0-1) of ascending `sorted`: the smallest value with at least
/// `q` of the values at or below it.
pub fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let n = sorted.len();
    // ceil(q * n) as a rank from 1; n is bounded by the query, so the float is exact.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = (q * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// A `kB` line of `/proc/self/status` (`VmRSS:`), in KiB.
fn proc_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.get(key.len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User plus system CPU seconds from `/proc/self/stat` (fields 14 and 15, in clock ticks of
/// USER_HZ, which Linux fixes at 100 for user space).
fn proc_cpu_seconds() -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let rest = stat.get(stat.rfind(')')?.checked_add(1)?..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state).
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)]
    let ticks = utime.checked_add(stime)? as f64;
    Some(ticks / USER_HZ)
}

#[cfg(test)]
mod scrape_tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let sorted = [10.0, 20.0, 30.0, 40.0];
        assert_eq!(nearest_rank(&sorted, 0.5), Some(20.0));
        assert_eq!(nearest_rank(&sorted, 0.95), Some(40.0));
        assert_eq!(nearest_rank(&sorted, 1.0), Some(40.0));
        assert_eq!(nearest_rank(&sorted, 0.0), Some(10.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }

    #[test]
    fn runtime_gauges_read_proc() {
        let metrics = Metrics::default();
        metrics.set_runtime();
        if cfg!(target_os = "linux") {
            assert!(metrics.scraped.process_resident_memory_bytes.get() > 0);
            assert!(metrics.scraped.process_open_fds.get() > 0);
            assert!(metrics.scraped.process_cpu_seconds.get() >= 0.0);
        }
    }
}
