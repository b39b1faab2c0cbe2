//! Webhooks for the push provider: each notification POSTed as JSON, signed so the provider
//! can tell it came from us and is fresh, and carrying the outbox row's id so a delivery
//! sent again after a crash is recognised and dropped there.
//!
//! `FlashKart-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the
//! time is inside the MAC so a captured delivery cannot be replayed later under a new time.
//! `FlashKart-Event-Id: <outbox id>` is the idempotency key.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::config::WebhookConfig;
use super::outbox::Row;

/// Why a delivery did not go through (it is retried).
#[derive(Debug, thiserror::Error)]
pub(super) enum WebhookError {
    #[error("webhook: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("webhook answered {0}")]
    Status(reqwest::StatusCode),
}

/// The `FlashKart-Signature` value for `body` sent at `t` (unix seconds).
fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={t},v1={}",
        crate::registry::hex(&mac.finalize().into_bytes())
    )
}

/// The JSON body of a row's delivery.
pub(super) fn body(row: &Row, customer_id: Option<&str>) -> Vec<u8> {
    serde_json::json!({
        "id": row.id,
        "kind": row.kind_text,
        "order_id": row.order_id,
        "customer_id": customer_id,
        "at": row.created_at,
        "data": row.payload,
    })
    .to_string()
    .into_bytes()
}

/// POSTs `body`; any 2xx is delivered.
pub(super) async fn post(
    http: &reqwest::Client,
    config: &WebhookConfig,
    event_id: &str,
    body: Vec<u8>,
) -> Result<(), WebhookError> {
    let t = crate::clock::now().unix_timestamp();
    let response = http
        .post(&config.url)
        .timeout(Duration::from_millis(config.timeout_ms))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            "FlashKart-Signature",
            signature(config.secret.expose(), t, &body),
        )
        .header("FlashKart-Event-Id", event_id)
        .body(body)
        .send()
        .await?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(WebhookError::Status(response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_time_and_body() {
        // What a provider computes: the MAC over "<t>.<body>" with the shared secret.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").expect("key");
        mac.update(b"1700000000.{\"a\":1}");
        let expected = crate::registry::hex(&mac.finalize().into_bytes());
        assert_eq!(
            signature("whsec_test", 1_700_000_000, b"{\"a\":1}"),
            format!("t=1700000000,v1={expected}")
        );
        assert_ne!(
            signature("whsec_test", 1_700_000_001, b"{\"a\":1}"),
            signature("whsec_test", 1_700_000_000, b"{\"a\":1}")
        );
    }
}
