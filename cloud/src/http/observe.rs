//! Per-request bookkeeping as one middleware, so no handler has to remember it: a request id
//! (UUIDv7, returned in `x-request-id` and carried by every log line of the request), and the
//! `requests` counter by route and status.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::{Metrics, RequestLabels};

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled (`-` outside one), for errors to name.
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// Runs `work` as the request `id`.
pub async fn scoped<F: std::future::Future>(id: String, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}

/// Runs one matched request under its id and counts its outcome by `METHOD /route/{param}`.
pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let id = uuid::Uuid::now_v7().to_string();
    let endpoint = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("-", MatchedPath::as_str)
    );
    let span = tracing::info_span!("request", request_id = %id, %endpoint);
    let mut response = scoped(id.clone(), next.run(request)).instrument(span).await;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint,
            status: response.status().as_u16(),
        })
        .inc();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
