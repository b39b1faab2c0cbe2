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
use crate::leases::Owner;
use crate::metrics::{OpLabels, StoreFiguresNow, StoreLabels};

pub async fn hello(
    State(state): State<AppState>,
    StoreCaller(auth): StoreCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Serve::There(url) = serve_where(&state, &auth.store_id, &headers, true).await? {
        return forward(&state, &url, protocol::HELLO_PATH, &headers, body).await;
    }
    let _live = state.intake.liveness.enter(&auth.store_id);
    let request: HelloRequest = decode(&state, &headers, &body, sync_limit(&state))?;
    let site: [u8; 16] = request
        .edge_site_id
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::BadRequest("edge_site_id is not 16 bytes".into()))?;
    let bound = state.registry.bind(&auth.store_id, site).await?;
    // A new holder's replica gets the cloud's writes for the store first: the store's pushes
    // refer to its orders and offers, and are believed only about those the replica holds.
    state.store_writes.catch_up(&auth.store_id).await?;
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
    let epoch = match serve_where(&state, &auth.store_id, &headers, false).await? {
        Serve::There(url) => {
            return forward(&state, &url, protocol::PUSH_PATH, &headers, body).await;
        }
        Serve::Here(epoch) => epoch,
    };
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
    // The fence: acknowledge only while the lease is still ours at the epoch we served under.
    // An instance that lost the store meanwhile applied to a replica nobody reads any more;
    // the edge pushes again at the new owner.
    if let (Some(leases), Some(epoch)) = (&state.leases, epoch)
        && !leases.still_ours(&auth.store_id, epoch).await?
    {
        state.metrics.sync_pushes_fenced.inc();
        return Err(ApiError::Unavailable(format!(
            "store {} moved to another cloud instance; push again",
            auth.store_id
        )));
    }
    encode(&state, &headers, &pushed.response)
}

pub async fn pull(
    State(state): State<AppState>,
    BoundStore { auth, site }: BoundStore,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Serve::There(url) = serve_where(&state, &auth.store_id, &headers, false).await? {
        return forward(&state, &url, protocol::PULL_PATH, &headers, body).await;
    }
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

/// `/metrics`. The business gauges (orders by state, pick time, on-time share, stock-outs,
/// sync lag) are figures of the read model, not events, so they are read here, at scrape time:
/// the store figures from a fresh dashboard snapshot (its bounded queries, one build at a
/// time, off the runtime), the pick times from the last hour of PACKED events; then the
/// process and runtime gauges. A read that fails is logged and leaves the other series
/// standing: a busy read model must not blank the whole scrape.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let _one_scrape = state.metrics.scraped.refreshing.lock().await;
    refresh_business(&state).await;
    state.metrics.set_runtime();
    if let Some(leases) = &state.leases {
        let held = i64::try_from(leases.held().len()).unwrap_or(i64::MAX);
        state.metrics.store_leases_held.set(held);
    }
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

async fn refresh_business(state: &AppState) {
    let snapshot = match state.dashboard.rebuild().await {
        Ok(published) => Some(published),
        Err(error) => {
            tracing::warn!(%error, "metrics: dashboard figures not read; using the last ones");
            state.dashboard.latest().await
        }
    };
    let hour_ago = crate::clock::rfc3339(crate::clock::now() - time::Duration::HOUR);
    let picks = match state.projection.pick_seconds_since(hour_ago).await {
        Ok(picks) => picks,
        Err(error) => {
            tracing::warn!(%error, "metrics: pick times not read");
            Default::default()
        }
    };
    let stores: Vec<StoreFiguresNow> = snapshot
        .map(|published| {
            published
                .snapshot
                .stores
                .iter()
                .map(|s| StoreFiguresNow {
                    store: s.id.clone(),
                    orders_by_state: s
                        .orders_by_state
                        .iter()
                        .map(|(state, n)| (state.clone(), *n))
                        .collect(),
                    delivered_1h: s.delivered_1h,
                    on_time_share_1h: s.on_time_share_1h,
                    stock_outs: s.stock_outs,
                    low_stock: s.low_stock,
                    sync_lag_s: s.sync_lag_s,
                })
                .collect()
        })
        .unwrap_or_default();
    state.metrics.set_business(&stores, &picks);
}

/// The header of a forwarded sync request, naming the instance that forwarded it. The instance
/// it reaches serves it or refuses it, never forwards it again, so two instances that disagree
/// for a moment about a store's owner cannot bounce a request between them.
pub(crate) const FORWARDED_BY: &str = "x-flashkart-forwarded-by";

/// Where a store's sync request is served.
enum Serve {
    /// Here, with the lease epoch a push is fenced with (none on a single instance).
    Here(Option<i64>),
    /// By the instance at this base URL.
    There(String),
}

/// Asks the leases who serves the store: a hello takes or renews the lease (`claim`), a push or
/// pull goes by what this instance holds.
async fn serve_where(
    state: &AppState,
    store_id: &str,
    headers: &HeaderMap,
    claim: bool,
) -> Result<Serve, ApiError> {
    let Some(leases) = &state.leases else {
        return Ok(Serve::Here(None));
    };
    let owner = if claim {
        leases.claim(store_id).await?
    } else {
        leases.owner(store_id).await?
    };
    match owner {
        Owner::Us { epoch } => Ok(Serve::Here(Some(epoch))),
        Owner::Other { .. } if headers.contains_key(FORWARDED_BY) => Err(ApiError::Unavailable(
            format!("store {store_id} is moving between cloud instances; try again"),
        )),
        Owner::Other { url } => Ok(Serve::There(url)),
    }
}

/// Sends a request about a store (a sync request, or HQ's reroute of one of its orders) on to
/// the instance serving the store and hands its answer back as it came (status, body,
/// encoding): the owner authenticates and decides everything again.
pub(crate) async fn forward(
    state: &AppState,
    url: &str,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let op = path.rsplit('/').next().unwrap_or(path).to_owned();
    state
        .metrics
        .sync_forwarded
        .get_or_create(&OpLabels { op })
        .inc();
    let mut request = state.forwarder.post(format!("{url}{path}")).body(body);
    for name in [
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::ACCEPT_ENCODING,
    ] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value.clone());
        }
    }
    if let Some(leases) = &state.leases {
        request = request.header(FORWARDED_BY, leases.instance());
    }
    let answer = request.send().await.map_err(|e| {
        ApiError::Unavailable(format!(
            "the cloud instance serving this store did not answer: {e}"
        ))
    })?;
    let mut response = Response::builder().status(answer.status());
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::WWW_AUTHENTICATE,
        header::RETRY_AFTER,
    ] {
        if let Some(value) = answer.headers().get(&name) {
            response = response.header(name, value.clone());
        }
    }
    let body = answer.bytes().await.map_err(|e| {
        ApiError::Unavailable(format!(
            "the cloud instance serving this store broke off: {e}"
        ))
    })?;
    state.metrics.bytes_out.inc_by(body.len() as u64);
    response
        .body(axum::body::Body::from(body))
        .map_err(|e| ApiError::Internal(format!("forwarded answer: {e}")))
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
