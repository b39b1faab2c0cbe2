//! The cloud's HTTP API: the sync endpoints, store registration, `/metrics` and `/healthz`, and
//! the routes of the JSON API for customers and HQ (handlers in `api.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use axum::{Extension, Router};
use flashkart_proto::sync::{HelloRequest, PullRequest, PullResponse, PushRequest};
use flashkart_sync::protocol;
use prometheus_client::registry::Registry as PromRegistry;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::HttpLimits;
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
    pub limits: Arc<HttpLimits>,
}

/// Every route that reads a body is [`guard`]ed: its caller is authenticated from the headers
/// and its body read up to the route's limit before the handler runs. Routes without a body
/// never read one.
pub fn router(state: AppState) -> Router {
    let limits = state.limits.clone();
    let guarded = |route: MethodRouter<AppState>, caller, limit, endpoint| {
        guard(route, &state, caller, limit, endpoint)
    };
    let (sync, admin, profile) = (
        limits.max_sync_request_body_bytes,
        limits.max_admin_body_bytes,
        limits.max_profile_body_bytes,
    );
    Router::new()
        .route(
            protocol::HELLO_PATH,
            guarded(post(hello), Caller::Store, sync, "hello"),
        )
        .route(
            protocol::PUSH_PATH,
            guarded(
                post(push),
                Caller::Store,
                limits.max_push_body_bytes,
                "push",
            ),
        )
        .route(
            protocol::PULL_PATH,
            guarded(post(pull), Caller::Store, sync, "pull"),
        )
        .route(
            "/admin/v1/stores",
            guarded(post(register_store), Caller::Admin, admin, "register_store")
                .get(api::list_stores),
        )
        .route(
            "/admin/v1/stores/{id}/token",
            guarded(
                post(rotate_store_token),
                Caller::Admin,
                admin,
                "rotate_store_token",
            ),
        )
        .route(
            "/admin/v1/stores/{id}/profile",
            guarded(
                put(api::put_store_profile),
                Caller::Admin,
                profile,
                "put_store_profile",
            ),
        )
        .route(
            "/admin/v1/products/{id}",
            guarded(put(api::put_product), Caller::Admin, admin, "put_product"),
        )
        .route(
            "/admin/v1/coupons/{code}",
            guarded(put(api::put_coupon), Caller::Admin, admin, "put_coupon"),
        )
        .route(
            "/admin/v1/riders/{id}",
            guarded(put(api::put_rider), Caller::Admin, admin, "put_rider"),
        )
        .route(
            "/admin/v1/customers",
            guarded(
                post(api::create_customer),
                Caller::Admin,
                admin,
                "create_customer",
            ),
        )
        .route("/admin/v1/orders/{id}", get(api::get_order))
        .route("/admin/v1/stock/{product_id}", get(api::stock))
        .route(
            "/api/v1/orders",
            guarded(
                post(api::place_order),
                Caller::Customer,
                limits.max_order_body_bytes,
                "place_order",
            ),
        )
        .route("/api/v1/orders/{id}", get(api::get_order))
        .route("/api/v1/products", get(api::products))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        // The guard has read each body already; this only keeps an unguarded route that
        // takes `Bytes` from buffering more than the largest guarded one.
        .layer(DefaultBodyLimit::max(limits.max_body_bytes()))
        .with_state(state)
}

/// Who may call a guarded route.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// A store's credential (not the admin's).
    Store,
    /// HQ's admin credential.
    Admin,
    /// A customer's credential.
    Customer,
}

/// What [`check`] needs to know about one route.
#[derive(Debug, Clone)]
struct Guard {
    state: AppState,
    caller: Caller,
    limit: usize,
    endpoint: &'static str,
}

fn guard(
    route: MethodRouter<AppState>,
    state: &AppState,
    caller: Caller,
    limit: usize,
    endpoint: &'static str,
) -> MethodRouter<AppState> {
    route.layer(axum::middleware::from_fn_with_state(
        Guard {
            state: state.clone(),
            caller,
            limit,
            endpoint,
        },
        check,
    ))
}

/// Authenticates from the headers, then reads the body within the route's limit and time,
/// and only then runs the handler (with the authenticated caller in the request extensions).
/// Nothing of a body is read for a caller without a valid credential, and a declared length
/// over the limit is refused before a byte of it is read.
async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let state = &guard.state;
    let result = async {
        match guard.caller {
            Caller::Store => {
                let auth = authenticate_store(state, &parts.headers).await?;
                parts.extensions.insert(auth);
            }
            Caller::Admin => require_admin(state, &parts.headers).await?,
            Caller::Customer => {
                let customer = api::customer(state, &parts.headers).await?;
                parts.extensions.insert(customer);
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
        Err(error) => finish(state, guard.endpoint, Err(error)),
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

/// HQ's admin credential. A store's credential gets 403 (it is a credential, just not this
/// one), anything else 401.
pub(crate) async fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    if token_hash(token) == state.admin_token_sha256 {
        return Ok(());
    }
    Err(if state.registry.authenticate(token).await?.is_some() {
        ApiError::Forbidden("a store credential cannot use the admin API".into())
    } else {
        ApiError::Unauthorized
    })
}

async fn hello(
    State(state): State<AppState>,
    auth: Option<Extension<StoreAuth>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let auth = match auth {
            Some(Extension(auth)) => auth,
            None => authenticate_store(&state, &headers).await?,
        };
        let _live = state.intake.liveness.enter(&auth.store_id);
        let request: HelloRequest = decode(
            &state,
            &headers,
            &body,
            state.limits.max_sync_request_body_bytes,
        )?;
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
        let request: PushRequest =
            decode(&state, &headers, &body, state.limits.max_push_body_bytes)?;
        let chunk = request
            .chunk
            .ok_or_else(|| ApiError::BadRequest("push without a chunk".into()))?;
        let replica = state.stores.replica(&auth.store_id).await?;
        // Applying and handing to the read model run on their own task: a store that hangs
        // up mid-push drops this handler, and must not cut the work between the replica's
        // commit and the projector's wake-up (the projector's cursor covers a crash there).
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
        Ok(encode(&state, &headers, &pushed.response))
    }
    .await;
    finish(&state, "push", result)
}

async fn pull(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let (auth, site) = bound_store(&state, &headers).await?;
        let _live = state.intake.liveness.enter(&auth.store_id);
        let request: PullRequest = decode(
            &state,
            &headers,
            &body,
            state.limits.max_sync_request_body_bytes,
        )?;
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
        require_admin(&state, &headers).await?;
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

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateToken {
    /// Also unbind the edge database (it was replaced); the next one to say hello binds.
    #[serde(default)]
    release_edge_site: bool,
}

/// `POST /admin/v1/stores/{id}/token`: a new token for a registered store; the old one stops
/// working at once. The edge database stays bound unless the (optional) body says
/// `{"release_edge_site": true}`.
async fn rotate_store_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        require_admin(&state, &headers).await?;
        let request: RotateToken = if body.iter().all(u8::is_ascii_whitespace) {
            RotateToken::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::BadRequest(format!(
                    "expected nothing or {{\"release_edge_site\": true}}: {e}"
                ))
            })?
        };
        let token = state
            .registry
            .rotate(&id, request.release_edge_site)
            .await?;
        Ok((
            StatusCode::CREATED,
            axum::Json(Registered {
                store_id: id,
                token,
            }),
        )
            .into_response())
    }
    .await;
    finish(&state, "rotate_store_token", result)
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
