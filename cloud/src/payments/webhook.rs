//! Stripe's webhooks: checking that a delivery really comes from Stripe, and reading its event.
//!
//! Anyone can POST to the webhook URL, so an event is believed only when its
//! `Stripe-Signature` header carries an HMAC-SHA256 of `"{t}.{raw body}"` made with the
//! endpoint's signing secret, and `t` is close to now (a recorded delivery replayed later is
//! refused). The header is `t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]`: while a secret is
//! being rolled Stripe signs with both, so any matching `v1` is enough, and the receiver may
//! hold more than one secret for the same reason. Other schemes (`v0`, test-mode only) are
//! ignored. The body must be verified exactly as received, before any parsing.
//!
//! Even a verified event is only a hint that something changed: the payments service reads the
//! object back from the gateway before acting on it, so [`Event`] keeps the object as JSON and
//! checks only what is needed to route it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header Stripe puts the signature in.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";

/// How far the signature's timestamp may be from now, in seconds (Stripe's libraries' default).
pub const DEFAULT_TOLERANCE_S: i64 = 300;

/// Longest `Stripe-Signature` header accepted: a few signatures, never kilobytes.
const MAX_HEADER_BYTES: usize = 4096;

/// Most `v1` signatures looked at (Stripe sends one, two while a secret is rolled).
const MAX_SIGNATURES: usize = 8;

/// Largest event body [`Event::parse`] reads; Stripe's events are a few kilobytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Longest id or event type accepted (Stripe's ids are well under this).
const MAX_ID_LEN: usize = 255;

type HmacSha256 = Hmac<Sha256>;

/// Why a webhook delivery is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No `Stripe-Signature` header, or an empty one.
    #[error("no Stripe-Signature header")]
    MissingHeader,
    /// The header is not `t=...,v1=...`.
    #[error("malformed Stripe-Signature header: {0}")]
    MalformedHeader(&'static str),
    /// The header has a timestamp but no `v1` signature.
    #[error("no v1 signature in the Stripe-Signature header")]
    NoSignature,
    /// No `v1` signature matches the body with any of the secrets: forged, altered, or signed
    /// with a secret this endpoint does not have.
    #[error("no signature matches the payload")]
    Mismatch,
    /// Correctly signed, but longer ago than the tolerance (a replay, or a clock far off).
    #[error("signed {age_s}s ago, beyond the tolerance of {tolerance_s}s")]
    Stale { age_s: i64, tolerance_s: i64 },
    /// Correctly signed, with a timestamp further ahead than the tolerance.
    #[error("signed {ahead_s}s in the future, beyond the tolerance of {tolerance_s}s")]
    Future { ahead_s: i64, tolerance_s: i64 },
    /// No (non-empty) signing secret to check with: a configuration error, never the sender's.
    #[error("no webhook signing secret configured")]
    NoSecret,
    /// The verified body is not an event this module can read.
    #[error("malformed event: {0}")]
    MalformedEvent(String),
}

/// Checks a delivery: `header` is the `Stripe-Signature` value, `payload` the raw body as
/// received, `secret` the endpoint's signing secret (`whsec_...`, used as given). Accepted when
/// any `v1` signature matches and the timestamp is within `tolerance_s` of `now_unix` either
/// way.
pub fn verify(
    header: &str,
    payload: &[u8],
    secret: &str,
    now_unix: i64,
    tolerance_s: i64,
) -> Result<(), WebhookError> {
    verify_any(header, payload, &[secret], now_unix, tolerance_s)
}

/// [`verify`] with several secrets, any of which may match: while an endpoint's secret is
/// rolled, deliveries signed with the old one are still in flight.
pub fn verify_any<S: AsRef<str>>(
    header: &str,
    payload: &[u8],
    secrets: &[S],
    now_unix: i64,
    tolerance_s: i64,
) -> Result<(), WebhookError> {
    let parsed = parse_header(header)?;
    let mut keys = secrets
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| !s.is_empty())
        .peekable();
    if keys.peek().is_none() {
        return Err(WebhookError::NoSecret);
    }
    let matched = keys.any(|secret| {
        // verify_slice compares in constant time: a timing side channel would let a forger
        // find the signature byte by byte.
        signed_payload_mac(secret, parsed.timestamp_text, payload).is_some_and(|mac| {
            parsed
                .signatures
                .iter()
                .any(|signature| mac.clone().verify_slice(signature).is_ok())
        })
    });
    if !matched {
        return Err(WebhookError::Mismatch);
    }
    // Checked after the signature, so a forgery is reported as such whatever its timestamp.
    let age_s = now_unix.saturating_sub(parsed.timestamp);
    let tolerance_s = tolerance_s.max(0);
    if age_s > tolerance_s {
        return Err(WebhookError::Stale { age_s, tolerance_s });
    }
    if age_s < -tolerance_s {
        return Err(WebhookError::Future {
            ahead_s: age_s.saturating_neg(),
            tolerance_s,
        });
    }
    Ok(())
}

/// The `Stripe-Signature` value Stripe would send for `payload` signed at `timestamp`
/// (`t=<timestamp>,v1=<hex>`): for tests and stand-ins.
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let text = timestamp.to_string();
    let tag = signed_payload_mac(secret, &text, payload)
        .map(|mac| hex(&mac.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={text},v1={tag}")
}

/// The MAC state after `"{t}.{payload}"`, keyed with the secret's bytes as given (Stripe does
/// not decode the `whsec_` secret). HMAC takes keys of any length, so `None` never happens in
/// practice; callers treat it as "no match" rather than fall back to some fixed key.
fn signed_payload_mac(secret: &str, timestamp_text: &str, payload: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(timestamp_text.as_bytes());
    mac.update(b".");
    mac.update(payload);
    Some(mac)
}

struct ParsedHeader<'a> {
    timestamp: i64,
    /// The timestamp exactly as sent: it is what was signed.
    timestamp_text: &'a str,
    signatures: Vec<[u8; 32]>,
}

fn parse_header(header: &str) -> Result<ParsedHeader<'_>, WebhookError> {
    let header = header.trim();
    if header.is_empty() {
        return Err(WebhookError::MissingHeader);
    }
    if header.len() > MAX_HEADER_BYTES {
        return Err(WebhookError::MalformedHeader("too long"));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(WebhookError::MalformedHeader("an item is not key=value"))?;
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(WebhookError::MalformedHeader("more than one timestamp"));
                }
                if value.is_empty()
                    || value.len() > 18
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(WebhookError::MalformedHeader("timestamp is not a number"));
                }
                let parsed = value
                    .parse::<i64>()
                    .map_err(|_| WebhookError::MalformedHeader("timestamp is not a number"))?;
                timestamp = Some((parsed, value));
            }
            "v1" => {
                let signature = decode_hex_32(value)
                    .ok_or(WebhookError::MalformedHeader("v1 is not 64 hex digits"))?;
                if signatures.len() == MAX_SIGNATURES {
                    return Err(WebhookError::MalformedHeader("too many signatures"));
                }
                signatures.push(signature);
            }
            // v0 (test mode's SHA-1 scheme) and whatever Stripe adds later.
            _ => {}
        }
    }
    let (timestamp, timestamp_text) =
        timestamp.ok_or(WebhookError::MalformedHeader("no timestamp"))?;
    if signatures.is_empty() {
        return Err(WebhookError::NoSignature);
    }
    Ok(ParsedHeader {
        timestamp,
        timestamp_text,
        signatures,
    })
}

fn decode_hex_32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0_u8; 32];
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A verified webhook event, as far as routing it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_...`: deliveries are at least once, so the receiver dedups on it.
    pub id: String,
    /// The event type (`payment_intent.succeeded`, `charge.refunded`, ...).
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    /// The id of the object the event is about (`pi_...`, `re_...`); empty for the few
    /// events about an object without one (`balance.available`), which a receiver should
    /// acknowledge and ignore rather than refuse (a refused delivery is retried for days).
    pub object_id: String,
    /// The object as the event carried it (`data.object`); a snapshot, possibly outdated.
    pub object: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct WireEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: WireData,
}

#[derive(serde::Deserialize)]
struct WireData {
    object: serde_json::Value,
}

impl Event {
    /// Reads a body that [`verify`] accepted. Refuses bodies over [`MAX_EVENT_BYTES`], and
    /// ids or types that are empty, longer than 255 bytes or not printable ASCII (they end up
    /// in logs and database keys).
    pub fn parse(payload: &[u8]) -> Result<Self, WebhookError> {
        if payload.len() > MAX_EVENT_BYTES {
            return Err(WebhookError::MalformedEvent(format!(
                "{} bytes, more than {MAX_EVENT_BYTES}",
                payload.len()
            )));
        }
        let wire: WireEvent = serde_json::from_slice(payload)
            .map_err(|e| WebhookError::MalformedEvent(e.to_string()))?;
        check_token("id", &wire.id)?;
        check_token("type", &wire.kind)?;
        if !wire.data.object.is_object() {
            return Err(WebhookError::MalformedEvent(
                "data.object is not an object".into(),
            ));
        }
        let object_id = match wire.data.object.get("id") {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(id)) => {
                check_token("data.object.id", id)?;
                id.clone()
            }
            Some(_) => {
                return Err(WebhookError::MalformedEvent(
                    "data.object.id is not a string".into(),
                ));
            }
        };
        Ok(Self {
            id: wire.id,
            kind: wire.kind,
            created: wire.created,
            object_id,
            object: wire.data.object,
        })
    }
}

fn check_token(what: &str, value: &str) -> Result<(), WebhookError> {
    if value.is_empty() || value.len() > MAX_ID_LEN || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(WebhookError::MalformedEvent(format!(
            "{what} is empty, longer than {MAX_ID_LEN} bytes or not printable ASCII"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_0123456789abcdef";
    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded","created":1700000000,"data":{"object":{"id":"pi_1","object":"payment_intent"}}}"#;

    #[test]
    fn a_good_signature_is_accepted() {
        let header = sign(SECRET, NOW - 10, BODY);
        assert_eq!(verify(&header, BODY, SECRET, NOW, 300), Ok(()));
    }

    #[test]
    fn matches_a_known_vector() {
        // Computed independently: printf '%s' '1700000000.{}' | openssl dgst -sha256 -hmac whsec_x
        let header = sign("whsec_x", 1_700_000_000, b"{}");
        assert_eq!(
            header,
            "t=1700000000,v1=be8cb8325f2202445260a855532f967e30ad2a9394ce28da66ee02880ddcb661"
        );
    }

    #[test]
    fn any_v1_may_match_and_other_schemes_are_ignored() {
        let good = sign(SECRET, NOW, BODY);
        let good_v1 = good.split_once(",v1=").map(|(_, v)| v).unwrap_or_default();
        let forged = "0".repeat(64);
        let header = format!("t={NOW},v1={forged},v1={good_v1},v0={forged}");
        assert_eq!(verify(&header, BODY, SECRET, NOW, 300), Ok(()));
    }

    #[test]
    fn the_second_secret_may_match() {
        let header = sign(SECRET, NOW, BODY);
        assert_eq!(
            verify_any(&header, BODY, &["whsec_old", SECRET], NOW, 300),
            Ok(())
        );
        let owned = vec![String::from("whsec_old"), SECRET.to_owned()];
        assert_eq!(verify_any(&header, BODY, &owned, NOW, 300), Ok(()));
    }

    #[test]
    fn forgeries_are_refused() {
        let header = sign("whsec_someone_else", NOW, BODY);
        assert_eq!(
            verify(&header, BODY, SECRET, NOW, 300),
            Err(WebhookError::Mismatch)
        );
        // The right secret, but the body or the timestamp changed after signing.
        let header = sign(SECRET, NOW, BODY);
        let mut altered = BODY.to_vec();
        altered[10] ^= 1;
        assert_eq!(
            verify(&header, &altered, SECRET, NOW, 300),
            Err(WebhookError::Mismatch)
        );
        let moved = header.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 1), 1);
        assert_eq!(
            verify(&moved, BODY, SECRET, NOW, 300),
            Err(WebhookError::Mismatch)
        );
        // The same number, spelled differently, is not what was signed.
        let padded = header.replacen("t=", "t=0", 1);
        assert_eq!(
            verify(&padded, BODY, SECRET, NOW, 300),
            Err(WebhookError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_signatures_are_refused() {
        let old = sign(SECRET, NOW - 301, BODY);
        assert_eq!(
            verify(&old, BODY, SECRET, NOW, 300),
            Err(WebhookError::Stale {
                age_s: 301,
                tolerance_s: 300
            })
        );
        let edge = sign(SECRET, NOW - 300, BODY);
        assert_eq!(verify(&edge, BODY, SECRET, NOW, 300), Ok(()));
        let ahead = sign(SECRET, NOW + 301, BODY);
        assert_eq!(
            verify(&ahead, BODY, SECRET, NOW, 300),
            Err(WebhookError::Future {
                ahead_s: 301,
                tolerance_s: 300
            })
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let sig = "ab".repeat(32);
        let cases: &[(&str, WebhookError)] = &[
            ("", WebhookError::MissingHeader),
            ("   ", WebhookError::MissingHeader),
            (&format!("t={NOW}"), WebhookError::NoSignature),
            (&format!("t={NOW},v0={sig}"), WebhookError::NoSignature),
            (
                &format!("v1={sig}"),
                WebhookError::MalformedHeader("no timestamp"),
            ),
            (
                &format!("t=abc,v1={sig}"),
                WebhookError::MalformedHeader("timestamp is not a number"),
            ),
            (
                &format!("t=-5,v1={sig}"),
                WebhookError::MalformedHeader("timestamp is not a number"),
            ),
            (
                &format!("t={NOW},t={NOW},v1={sig}"),
                WebhookError::MalformedHeader("more than one timestamp"),
            ),
            (
                &format!("t={NOW},v1=xyz"),
                WebhookError::MalformedHeader("v1 is not 64 hex digits"),
            ),
            (
                &format!("t={NOW},v1={}", "g".repeat(64)),
                WebhookError::MalformedHeader("v1 is not 64 hex digits"),
            ),
            (
                &format!("t={NOW},garbage,v1={sig}"),
                WebhookError::MalformedHeader("an item is not key=value"),
            ),
            (
                &format!("t={NOW}{}", format!(",v1={sig}").repeat(9)),
                WebhookError::MalformedHeader("too many signatures"),
            ),
            (
                &"x".repeat(MAX_HEADER_BYTES + 1),
                WebhookError::MalformedHeader("too long"),
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                verify(header, BODY, SECRET, NOW, 300).as_ref(),
                Err(expected),
                "header {header:?}"
            );
        }
    }

    #[test]
    fn no_secret_is_a_configuration_error() {
        let header = sign("", NOW, BODY);
        let none: &[&str] = &[];
        assert_eq!(
            verify_any(&header, BODY, none, NOW, 300),
            Err(WebhookError::NoSecret)
        );
        assert_eq!(
            verify(&header, BODY, "", NOW, 300),
            Err(WebhookError::NoSecret)
        );
    }

    #[test]
    fn events_are_parsed_and_validated() {
        let event = Event::parse(BODY).expect("event");
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.kind, "payment_intent.succeeded");
        assert_eq!(event.created, NOW);
        assert_eq!(event.object_id, "pi_1");
        assert_eq!(event.object["object"], "payment_intent");

        let balance = br#"{"id":"evt_2","type":"balance.available","created":1,"data":{"object":{"available":{}}}}"#;
        assert_eq!(Event::parse(balance).expect("event").object_id, "");

        for bad in [
            &br#"{"id":"","type":"x","created":1,"data":{"object":{}}}"#[..],
            br#"{"id":"evt 1","type":"x","created":1,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"x\u0000","created":1,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"x","created":1,"data":{"object":{"id":5}}}"#,
            br#"{"id":"evt_1","type":"x","created":1,"data":{"object":[]}}"#,
            br#"{"id":"evt_1","type":"x","created":"1","data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"x","created":1}"#,
            b"not json",
            b"",
        ] {
            assert!(
                matches!(Event::parse(bad), Err(WebhookError::MalformedEvent(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_id = format!(
            r#"{{"id":"{}","type":"x","created":1,"data":{{"object":{{}}}}}}"#,
            "e".repeat(256)
        );
        assert!(Event::parse(long_id.as_bytes()).is_err());
        assert!(Event::parse(&vec![b' '; MAX_EVENT_BYTES + 1]).is_err());
    }
}
