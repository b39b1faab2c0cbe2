//! The trace id an order's log lines carry at the store, so one id follows the order from the
//! cloud's intake through its arrival here and every pick, pack and handoff, and back to the
//! cloud's read model.
//!
//! The cloud makes no trace id of its own to send: an order's id is a UUIDv7 (16 bytes, the
//! size of a W3C trace-id), so the trace id is the order id as 32 lowercase hex digits, and
//! both sides derive it the same way (`flashkart_cloud::intake::trace` has the twin of this
//! function and says why no `trace_id` column travels in `orders`). Edge and cloud share no
//! crate this would belong in; the function is small enough to keep twice.

use sha2::{Digest, Sha256};

use crate::kinds::Status;

/// The trace id of the order `order_id`: its UUID as 32 lowercase hex digits; for an id that
/// is not a UUID, the first 16 bytes of its SHA-256 (stable and valid all the same).
pub fn trace_id(order_id: &str) -> String {
    match uuid::Uuid::try_parse(order_id) {
        Ok(id) if !id.is_nil() => id.simple().to_string(),
        _ => Sha256::digest(order_id.as_bytes())
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

/// Logs a committed change to an order (arrived, a status change, a scan, a short line, a
/// substitute) with the order's trace id. Called after the durable commit, so a refused or
/// rolled-back write is never logged as done.
pub fn order_changed(order_id: &str, status: Status, change: &str, actor: &str) {
    let span = tracing::info_span!("order", order_id = %order_id, trace_id = %trace_id(order_id));
    let _entered = span.enter();
    tracing::info!(status = %status.as_str(), change = %change, actor = %actor, "order changed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_the_order_id_in_hex() {
        assert_eq!(
            trace_id("0190f2c4-5b6e-7c3d-8a9b-0c1d2e3f4a5b"),
            "0190f2c45b6e7c3d8a9b0c1d2e3f4a5b"
        );
        let other = trace_id("o-1");
        assert_eq!(other.len(), 32);
        assert_eq!(other, trace_id("o-1"));
    }
}
