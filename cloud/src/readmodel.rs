//! Where applied store changes go next: the read model's entry point.
//!
//! Every batch a store pushes is handed, once committed to its replica, to a [`ReadModel`].
//! The cloud issue builds the real projection (orders, stock per store, riders, SLAs); until
//! then [`ChangeCounter`] counts what arrives per table, which `/metrics` shows.

use flashkart_proto::sync::Change;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Receives every change applied from a store, after it is committed. Called on the request's
/// task: keep it quick (queue work elsewhere if it is not).
pub trait ReadModel: Send + Sync + std::fmt::Debug + 'static {
    fn project(&self, store_id: &str, changes: &[Change]);
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: String,
}

/// Counts projected changes per table.
#[derive(Debug, Clone, Default)]
pub struct ChangeCounter {
    pub per_table: Family<TableLabels, Counter>,
}

impl ReadModel for ChangeCounter {
    fn project(&self, store_id: &str, changes: &[Change]) {
        for change in changes {
            self.per_table
                .get_or_create(&TableLabels {
                    table: change.table.clone(),
                })
                .inc();
        }
        tracing::debug!(store = store_id, changes = changes.len(), "projected");
    }
}
