//! The cloud's HTTP API: the sync endpoints, store registration, `/metrics` and `/healthz`, and
//! the routes of the JSON API for customers and HQ (handlers in `api.rs`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use flashkart_proto::sync::{HelloRequest, PullRequest, PullResponse, PushRequest};
use flashkart_sync::protocol;
use prometheus_client::registry::Registry as PromRegistry;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::error::ApiError;
use crate::hq::Hq;
use crate::intake::Intake;
use crate::metrics::{Metrics, RequestLabels, StoreLabels};
use crate::projection::Projection;
use crate::readmodel::ReadModel;
use crate::registry::{Registry, StoreAuth, token_hash};
use crate::stores::Stores;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Registry,
    pub stores: Arc<Stores>,
    pub read_model: Arc<dyn ReadModel>,
    pub metrics: Arc<Metrics>,
    pub prometheus: Arc<PromRegistry>,
    pub admin_token_sha256: String,
    pub compress_min_bytes: usize,
    pub shutdown: CancellationToken,
    pub hq: Hq,
    pub projection: Projection,
    pub intake: Arc<Intake>,
    pub intake_grace_ms: u64,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(protocol::HELLO_PATH, post(hello))
        .route(protocol::PUSH_PATH, post(push))
        .route(protocol::PULL_PATH, post(pull))
        .route(
            "/admin/v1/stores",
            post(register_store).get(api::list_stores),
        )
        .route("/admin/v1/stores/{id}/profile", put(api::put_store_profile))
        .route("/admin/v1/products/{id}", put(api::put_product))
        .route("/admin/v1/coupons/{code}", put(api::put_coupon))
        .route("/admin/v1/riders/{id}", put(api::put_rider))
        .route("/admin/v1/customers", post(api::create_customer))
        .route("/admin/v1/orders/{id}", get(api::get_order))
        .route("/admin/v1/stock/{product_id}", get(api::stock))
        .route("/api/v1/orders", post(api::place_order))
        .route("/api/v1/orders/{id}", get(api::get_order))
        .route("/api/v1/products", get(api::products))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(protocol::MAX_BODY_BYTES))
        .with_state(state)
}

async fn hello(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let auth = authenticate_store(&state, &headers).await?;
        let _live = state.intake.liveness.enter(&auth.store_id);
        let request: HelloRequest = decode(&state, &headers, &body)?;
        let site: [u8; 16] = request
            .edge_site_id
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::BadRequest("edge_site_id is not 16 bytes".into()))?;
        let bound = state.registry.bind(&auth.store_id, site).await?;
        let replica = state.stores.replica(&auth.store_id).await?;
        let response = replica.hello(&request, &bound).await?;
        Ok(encode(&state, &headers, &response))
    }
    .await;
    finish(&state, "hello", result)
}

async fn push(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let (auth, site) = bound_store(&state, &headers).await?;
        let _live = state.intake.liveness.enter(&auth.store_id);
        let request: PushRequest = decode(&state, &headers, &body)?;
        let chunk = request
            .chunk
            .ok_or_else(|| ApiError::BadRequest("push without a chunk".into()))?;
        let replica = state.stores.replica(&auth.store_id).await?;
        let labels = StoreLabels {
            store: auth.store_id.clone(),
        };
        let pushed = match replica.push(chunk, &site).await {
            Ok(pushed) => pushed,
            Err(error) => {
                if matches!(error, flashkart_sync::server::ServerError::Forbidden(_)) {
                    state.metrics.batches_refused.get_or_create(&labels).inc();
                }
                return Err(error.into());
            }
        };
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
            state.read_model.project(&auth.store_id, &applied.changes);
        }
        Ok(encode(&state, &headers, &pushed.response))
    }
    .await;
    finish(&state, "push", result)
}

async fn pull(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let (auth, site) = bound_store(&state, &headers).await?;
        let _live = state.intake.liveness.enter(&auth.store_id);
        let request: PullRequest = decode(&state, &headers, &body)?;
        let replica = state.stores.replica(&auth.store_id).await?;
        // A long-poll must not hold up a shutdown.
        let response = tokio::select! {
            response = replica.pull(request, &site) => response?,
            () = state.shutdown.cancelled() => PullResponse::default(),
        };
        Ok(encode(&state, &headers, &response))
    }
    .await;
    finish(&state, "pull", result)
}

#[derive(Debug, serde::Deserialize)]
struct RegisterStore {
    id: String,
}

#[derive(Debug, serde::Serialize)]
struct Registered {
    store_id: String,
    token: String,
}

async fn register_store(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let token = bearer(&headers).ok_or(ApiError::Unauthorized)?;
        if token_hash(token) != state.admin_token_sha256 {
            return Err(if state.registry.authenticate(token).await?.is_some() {
                ApiError::Forbidden("a store credential cannot register stores".into())
            } else {
                ApiError::Unauthorized
            });
        }
        let request: RegisterStore = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("expected {{\"id\": \"...\"}}: {e}")))?;
        let token = state.registry.register(&request.id).await?;
        state.stores.replica(&request.id).await?;
        Ok((
            StatusCode::CREATED,
            axum::Json(Registered {
                store_id: request.id,
                token,
            }),
        )
            .into_response())
    }
    .await;
    finish(&state, "register_store", result)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.prometheus) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

pub(crate) fn finish(
    state: &AppState,
    endpoint: &'static str,
    result: Result<Response, ApiError>,
) -> Response {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            if matches!(error, ApiError::Forbidden(_)) {
                tracing::warn!(endpoint, %error, "refused");
            }
            error.into_response()
        }
    };
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            endpoint,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

async fn authenticate_store(state: &AppState, headers: &HeaderMap) -> Result<StoreAuth, ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    if token_hash(token) == state.admin_token_sha256 {
        return Err(ApiError::Forbidden(
            "the admin credential cannot sync as a store".into(),
        ));
    }
    state
        .registry
        .authenticate(token)
        .await?
        .ok_or(ApiError::Unauthorized)
}

/// A store whose edge database is bound (it said hello).
async fn bound_store(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(StoreAuth, [u8; 16]), ApiError> {
    let auth = authenticate_store(state, headers).await?;
    let site = auth.edge_site_id.ok_or_else(|| {
        ApiError::Forbidden("no edge database bound to this store: say hello first".into())
    })?;
    Ok((auth, site))
}

fn decode<M: Message + Default>(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<M, ApiError> {
    state.metrics.bytes_in.inc_by(body.len() as u64);
    let compressed = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() == protocol::ZSTD.as_bytes());
    Ok(protocol::decode(body, compressed)?)
}

fn encode<M: Message>(state: &AppState, headers: &HeaderMap, message: &M) -> Response {
    let accepts_zstd = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|c| c.trim() == protocol::ZSTD));
    let threshold = if accepts_zstd {
        state.compress_min_bytes
    } else {
        usize::MAX
    };
    match protocol::encode(message, threshold) {
        Ok(body) => {
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
            response
        }
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}
