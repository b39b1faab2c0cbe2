//! Authentication before the body, and per-route body limits.
//!
//! Every route that reads a body is guarded: its caller is authenticated from the headers and
//! its body read up to the route's limit and within the body timeout before the handler runs.
//! Nothing of a body is read for a caller without a valid credential, and a declared length
//! over the limit is refused before a byte of it is read. The caller is left in the request
//! extensions for the extractors in `auth.rs`.
//!
//! HQ's changes are also checked against the caller's role here and recorded in the audit log
//! (who, what path, the outcome, the `reason` given) once the handler has answered: one place
//! for every control, whichever handler makes it.

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use crate::hq::users::{AuditEntry, HqRole};
use crate::http::auth;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Who may call a guarded route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A store's credential (not the admin's).
    Store,
    /// HQ changing something: an operator or above (the admin token, or a dashboard session
    /// with its CSRF token). Recorded in the audit log with who did it.
    Admin,
    /// HQ changing credentials, HQ users or money: an HQ admin. Recorded like `Admin`.
    HqAdmin,
    /// Anyone: the handler authenticates (HQ sign-in); the guard only bounds the body.
    Public,
    /// A customer's credential: an HQ-issued token, or an account session (its bearer token,
    /// or its cookie with the session's CSRF token on a change).
    Customer,
    /// HQ (an operator or above) or a customer (the handler decides what each may do).
    Viewer,
    /// The payment provider: no credential in the headers, only a signature over the body
    /// that the handler verifies; the guard still bounds the body and its time.
    Provider,
}

/// What [`check`] needs to know about one route.
#[derive(Debug, Clone)]
struct Guard {
    state: AppState,
    caller: Caller,
    limit: usize,
}

/// `route` behind a guard for `caller` taking bodies of at most `limit` bytes.
pub fn guard(
    route: MethodRouter<AppState>,
    state: &AppState,
    caller: Caller,
    limit: usize,
) -> MethodRouter<AppState> {
    route.layer(axum::middleware::from_fn_with_state(
        Guard {
            state: state.clone(),
            caller,
            limit,
        },
        check,
    ))
}

async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let state = &guard.state;
    let mut hq: Option<auth::Admin> = None;
    let result = async {
        match guard.caller {
            Caller::Store => {
                let caller = auth::store(state, &parts.headers).await?;
                parts.extensions.insert(caller);
            }
            Caller::Admin | Caller::HqAdmin => {
                let admin = auth::admin(state, &parts.method, &parts.headers).await?;
                admin.require(if guard.caller == Caller::HqAdmin {
                    HqRole::Admin
                } else {
                    HqRole::Operator
                })?;
                hq = Some(admin.clone());
                parts.extensions.insert(admin);
            }
            Caller::Customer => {
                let customer = auth::customer(state, &parts.method, &parts.headers).await?;
                auth::keep_customer(&mut parts.extensions, customer);
            }
            Caller::Viewer => {
                if let Ok(admin) = auth::admin(state, &parts.method, &parts.headers).await {
                    admin.require(HqRole::Operator)?;
                    hq = Some(admin.clone());
                    parts.extensions.insert(admin);
                } else {
                    let customer = auth::customer(state, &parts.method, &parts.headers).await?;
                    auth::keep_customer(&mut parts.extensions, customer);
                }
            }
            Caller::Provider => {
                if !parts.headers.contains_key("stripe-signature") {
                    return Err(ApiError::BadRequest(
                        "the Stripe-Signature header is required".into(),
                    ));
                }
            }
            Caller::Public => {}
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > guard.limit as u64) {
            return Err(too_large(guard.limit));
        }
        let timeout = Duration::from_millis(state.limits.body_timeout_ms);
        tokio::time::timeout(timeout, read_body(body, guard.limit))
            .await
            .map_err(|_| {
                ApiError::Timeout(format!(
                    "the body did not arrive within {} ms",
                    state.limits.body_timeout_ms
                ))
            })?
    }
    .await;
    match result {
        Ok(bytes) => {
            let audit = hq.map(|admin| (admin, reason_in(&bytes)));
            let method = parts.method.to_string();
            let path = parts.uri.path().to_owned();
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            if let Some((admin, reason)) = audit {
                let entry = AuditEntry {
                    at: crate::clock::now_rfc3339(),
                    actor: admin.actor,
                    role: admin.role,
                    method,
                    path,
                    status: response.status().as_u16(),
                    reason,
                };
                if let Err(error) = state.hq.audit(entry.clone()).await {
                    // The change is made; losing its record is logged loudly, not undone.
                    tracing::error!(%error, ?entry, "recording an HQ change in the audit log");
                }
            }
            response
        }
        Err(error) => error.into_response(),
    }
}

/// Most characters of a request's `reason` the audit log keeps.
const MAX_AUDIT_REASON: usize = 500;

/// The `reason` a JSON body gives for a change (cancellations, pauses, reroutes), if any.
fn reason_in(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let reason = value.get("reason")?.as_str()?.trim();
    (!reason.is_empty()).then(|| reason.chars().take(MAX_AUDIT_REASON).collect())
}

fn too_large(limit: usize) -> ApiError {
    ApiError::TooLarge(format!("this route takes bodies of at most {limit} bytes"))
}

/// The whole body, or 413 as soon as it grows past `limit` (a chunked body is cut there).
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len().saturating_add(data.len()) > limit {
                return Err(too_large(limit));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

#[cfg(test)]
mod tests {
    use super::reason_in;

    #[test]
    fn the_audit_log_keeps_a_bounded_reason_and_nothing_else() {
        assert_eq!(
            reason_in(br#"{"reason": " store flooded ", "password": "x"}"#).as_deref(),
            Some("store flooded")
        );
        assert_eq!(reason_in(br#"{"reason": "   "}"#), None);
        assert_eq!(reason_in(br#"{"reason": 5}"#), None);
        assert_eq!(reason_in(b"not json"), None);
        let long = format!(r#"{{"reason": "{}"}}"#, "é".repeat(900));
        let kept = reason_in(long.as_bytes()).expect("a long reason is cut, not dropped");
        assert_eq!(kept.chars().count(), 500);
    }
}
