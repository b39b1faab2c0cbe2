//! The sync endpoints (hello, push, pull) and `/metrics`: protobuf bodies, optionally
//! zstd-compressed, between a store's edge and its replica.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use flashkart_proto::sync::{HelloRequest, PullRequest, PullResponse, PushRequest};
use flashkart_sync::protocol;
use prost::Message;

use crate::http::auth::{BoundStore, StoreCaller};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::metrics::StoreLabels;

pub async fn hello(
    State(state): State<AppState>,
    StoreCaller(auth): StoreCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let _live = state.intake.liveness.enter(&auth.store_id);
    let request: HelloRequest = decode(&state, &headers, &body, sync_limit(&state))?;
    let site: [u8; 16] = request
        .edge_site_id
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::BadRequest("edge_site_id is not 16 bytes".into()))?;
    let bound = state.registry.bind(&auth.store_id, site).await?;
    let replica = state.stores.replica(&auth.store_id).await?;
    let response = replica.hello(&request, &bound).await?;
    encode(&state, &headers, &response)
}

pub async fn push(
    State(state): State<AppState>,
    BoundStore { auth, site }: BoundStore,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let _live = state.intake.liveness.enter(&auth.store_id);
    let request: PushRequest = decode(&state, &headers, &body, state.limits.max_push_body_bytes)?;
    let chunk = request
        .chunk
        .ok_or_else(|| ApiError::BadRequest("push without a chunk".into()))?;
    let replica = state.stores.replica(&auth.store_id).await?;
    // Applying and handing to the read model run on their own task: a store that hangs up
    // mid-push drops this handler, and must not cut the work between the replica's commit and
    // the projector's wake-up (the projector's cursor covers a crash there).
    let applying = {
        let state = state.clone();
        let store_id = auth.store_id.clone();
        tokio::spawn(async move {
            let labels = StoreLabels {
                store: store_id.clone(),
            };
            let pushed = replica.push(chunk, &site).await;
            match &pushed {
                Ok(pushed) => {
                    if let Some(applied) = &pushed.applied {
                        state
                            .metrics
                            .changes_received
                            .get_or_create(&labels)
                            .inc_by(applied.changes.len() as u64);
                        state
                            .metrics
                            .changes_applied
                            .get_or_create(&labels)
                            .inc_by(pushed.response.applied);
                        state.read_model.project(&store_id, &applied.changes);
                    }
                }
                Err(flashkart_sync::server::ServerError::Forbidden(_)) => {
                    state.metrics.batches_refused.get_or_create(&labels).inc();
                }
                Err(_) => {}
            }
            pushed
        })
    };
    let pushed = applying
        .await
        .map_err(|e| ApiError::Internal(format!("push task: {e}")))??;
    encode(&state, &headers, &pushed.response)
}

pub async fn pull(
    State(state): State<AppState>,
    BoundStore { auth, site }: BoundStore,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let _live = state.intake.liveness.enter(&auth.store_id);
    let request: PullRequest = decode(&state, &headers, &body, sync_limit(&state))?;
    let replica = state.stores.replica(&auth.store_id).await?;
    // A long-poll must not hold up a shutdown.
    let response = tokio::select! {
        response = replica.pull(request, &site) => response?,
        () = state.shutdown.cancelled() => PullResponse::default(),
    };
    encode(&state, &headers, &response)
}

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.prometheus)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// The body limit of hello and pull (a push has its own, larger one).
fn sync_limit(state: &AppState) -> usize {
    state.limits.max_sync_request_body_bytes
}

/// Decodes a sync body; the route's body limit holds for it decompressed too, so a small
/// zstd bomb cannot inflate past what the route would take plain.
fn decode<M: Message + Default>(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    max_bytes: usize,
) -> Result<M, ApiError> {
    state.metrics.bytes_in.inc_by(body.len() as u64);
    let compressed = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == protocol::ZSTD.as_bytes());
    Ok(protocol::decode_limited(body, compressed, max_bytes)?)
}

fn encode<M: Message>(
    state: &AppState,
    headers: &HeaderMap,
    message: &M,
) -> Result<Response, ApiError> {
    let accepts_zstd = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|c| c.trim() == protocol::ZSTD));
    let threshold = if accepts_zstd {
        state.compress_min_bytes
    } else {
        usize::MAX
    };
    let body =
        protocol::encode(message, threshold).map_err(|e| ApiError::Internal(e.to_string()))?;
    state.metrics.bytes_out.inc_by(body.bytes.len() as u64);
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(protocol::CONTENT_TYPE),
        )],
        body.bytes,
    )
        .into_response();
    if body.compressed {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(protocol::ZSTD),
        );
    }
    Ok(response)
}
