//! Authentication before the body, and per-route body limits.
//!
//! Every route that reads a body is guarded: its caller is authenticated from the headers and
//! its body read up to the route's limit and within the body timeout before the handler runs.
//! Nothing of a body is read for a caller without a valid credential, and a declared length
//! over the limit is refused before a byte of it is read. The caller is left in the request
//! extensions for the extractors in `auth.rs`.

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use crate::http::auth;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Who may call a guarded route.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    /// A store's credential (not the admin's).
    Store,
    /// HQ's admin credential.
    Admin,
    /// A customer's credential.
    Customer,
    /// HQ's admin credential or a customer's (the handler decides what each may do).
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
    let result = async {
        match guard.caller {
            Caller::Store => {
                let caller = auth::store(state, &parts.headers).await?;
                parts.extensions.insert(caller);
            }
            Caller::Admin => {
                let admin = auth::admin(state, &parts.headers).await?;
                parts.extensions.insert(admin);
            }
            Caller::Customer => {
                let customer = auth::customer(state, &parts.headers).await?;
                parts.extensions.insert(customer);
            }
            Caller::Viewer => {
                if auth::admin(state, &parts.headers).await.is_ok() {
                    parts.extensions.insert(auth::Admin);
                } else {
                    let customer = auth::customer(state, &parts.headers).await?;
                    parts.extensions.insert(customer);
                }
            }
            Caller::Provider => {
                if !parts.headers.contains_key("stripe-signature") {
                    return Err(ApiError::BadRequest(
                        "the Stripe-Signature header is required".into(),
                    ));
                }
            }
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
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(error) => error.into_response(),
    }
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
