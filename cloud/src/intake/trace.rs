//! The trace id that follows an order from intake to its store and back.
//!
//! **The order id is the trace id.** An order's id is a UUIDv7: 16 bytes, unique per order,
//! never all zero, exactly the size of a W3C trace-id. So the trace id of an order is its id as
//! 32 lowercase hex digits (`0190f2c4-...` becomes `0190f2c4...`), and every log line about the
//! order's journey carries it as `trace_id`: intake and routing and the write into the store's
//! replica here, the order's arrival and every status change at the store (the edge derives the
//! same id from the same order id, `flashkart_edge::work::trace`), and the store's events as
//! the projector folds them back into the read model.
//!
//! Why not a `trace_id` column in the store's `orders` table, carrying whatever trace-id the
//! customer's `traceparent` named: a store database refuses a change to a column it does not
//! know (`changes::validate`), so a cloud that wrote the new column before every store ran the
//! new schema would stop every order reaching the stores still on the old one. The order id
//! needs no schema change and no rollout order, already travels with every row of the order on
//! both sides, and stays the same across an idempotent retry and a reroute (the order keeps its
//! id when it moves to another store).
//!
//! The customer's own `traceparent` is not thrown away: a valid one's trace-id is logged on
//! the intake span as `client_trace_id`, which joins the caller's trace to the order's. The
//! answer to `POST /api/v1/orders` carries `traceparent: 00-<order's trace id>-<span id>-01`,
//! the span id derived from the order id too, so a retried request gets the same header.

use sha2::{Digest, Sha256};

/// The trace id of the order `order_id`: its UUID as 32 lowercase hex digits. An id that is
/// not a UUID (none is made so, but rows written by hand or by old tests may be) gets the
/// first 16 bytes of its SHA-256 instead, so every order has a stable, valid trace id.
pub fn trace_id(order_id: &str) -> String {
    match uuid::Uuid::try_parse(order_id) {
        Ok(id) if !id.is_nil() => id.simple().to_string(),
        _ => hex_prefix(order_id, 16),
    }
}

/// The `traceparent` returned with an order: version 00, the order's trace id, a span id
/// derived from the order id (8 bytes of its SHA-256), sampled.
pub fn traceparent(order_id: &str) -> String {
    let span = hex_prefix(&format!("span:{order_id}"), 8);
    format!("00-{}-{span}-01", trace_id(order_id))
}

/// The trace-id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), if it is one:
/// lowercase hex, neither id all zeros, version not `ff`. A later version may append fields
/// after the flags; anything else is not a traceparent and is ignored.
pub fn client_trace_id(header: &str) -> Option<String> {
    let mut parts = header.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    let is_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let all_zero = |s: &str| s.bytes().all(|b| b == b'0');
    if !is_hex(version, 2) || version == "ff" || !is_hex(flags, 2) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !is_hex(trace, 32) || all_zero(trace) || !is_hex(span, 16) || all_zero(span) {
        return None;
    }
    Some(trace.to_owned())
}

fn hex_prefix(text: &str, bytes: usize) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orders_trace_id_is_its_uuid_in_hex() {
        let id = "0190f2c4-5b6e-7c3d-8a9b-0c1d2e3f4a5b";
        assert_eq!(trace_id(id), "0190f2c45b6e7c3d8a9b0c1d2e3f4a5b");
        let header = traceparent(id);
        assert_eq!(
            client_trace_id(&header).as_deref(),
            Some(trace_id(id).as_str())
        );
        assert_eq!(header, traceparent(id), "the same order, the same header");
        assert!(header.ends_with("-01"));
    }

    #[test]
    fn ids_that_are_not_uuids_still_get_a_valid_trace_id() {
        let id = trace_id("o-1");
        assert_eq!(id.len(), 32);
        assert_eq!(id, trace_id("o-1"));
        assert_ne!(id, trace_id("o-2"));
        assert!(client_trace_id(&format!("00-{id}-00f067aa0ba902b7-01")).is_some());
    }

    #[test]
    fn only_valid_traceparents_are_taken() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            client_trace_id(good).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert!(
            client_trace_id("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(client_trace_id(bad), None, "{bad}");
        }
    }
}
