//! HQ's dashboard over HTTP: the live snapshot (JSON and Server-Sent Events), the lists its
//! pages show (riders, coupons, products) and its two controls, pausing a store and moving an
//! order to another store. The snapshot is built by `crate::dashboard`; these handlers only
//! hand out what it published.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;

use crate::api::check_text;
use crate::dashboard::Published;
use crate::dashboard::lists;
use crate::http::auth::Admin;
use crate::http::error::{ApiError, Json, Path};
use crate::http::state::AppState;
use crate::intake::RerouteRefused;
use crate::leases::Owner;

async fn latest(state: &AppState) -> Result<Arc<Published>, ApiError> {
    state
        .dashboard
        .latest()
        .await
        .ok_or_else(|| ApiError::Unavailable("the dashboard is not built yet; retry".into()))
}

/// `GET /admin/v1/dashboard`: the current snapshot.
pub async fn snapshot(State(state): State<AppState>, _admin: Admin) -> Result<Response, ApiError> {
    let published = latest(&state).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        published.json.clone(),
    )
        .into_response())
}

/// `GET /admin/v1/dashboard/events`: `snapshot` events (the id is the version, the data the
/// whole snapshot), the current one at once and then each new one, until the cloud shuts down.
/// A client reconnecting with `Last-Event-ID` (or `?last_event_id=`) equal to the current
/// version is not sent it again.
pub async fn events(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            uri.query().and_then(|q| {
                q.split('&')
                    .find_map(|pair| pair.strip_prefix("last_event_id="))
                    .map(str::to_owned)
            })
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    latest(&state).await?;
    let mut receiver = state.dashboard.subscribe();
    let current = receiver.borrow_and_update().clone();
    let first = (last_seen != Some(current.version())).then(|| event(&current));
    let shutdown = state.shutdown.clone();
    let stream = futures::stream::unfold(
        (first, receiver, shutdown),
        |(mut first, mut receiver, shutdown)| async move {
            if let Some(event) = first.take() {
                return Some((Ok(event), (first, receiver, shutdown)));
            }
            tokio::select! {
                () = shutdown.cancelled() => None,
                changed = receiver.changed() => {
                    changed.ok()?;
                    let published = receiver.borrow_and_update().clone();
                    Some((Ok(event(&published)), (first, receiver, shutdown)))
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn event(published: &Published) -> Event {
    Event::default()
        .event("snapshot")
        .id(published.version().to_string())
        .data(published.json.as_str())
}

/// `GET /admin/v1/riders`: the roster with each rider's live state.
pub async fn riders(State(state): State<AppState>, _admin: Admin) -> Result<Response, ApiError> {
    let roster = state.hq.riders().await?;
    let published = latest(&state).await?;
    Ok(Json(lists::roster(roster, &published.snapshot.riders)).into_response())
}

/// `GET /admin/v1/coupons`
pub async fn coupons(State(state): State<AppState>, _admin: Admin) -> Result<Response, ApiError> {
    Ok(Json(state.hq.coupons().await?).into_response())
}

/// `GET /admin/v1/products`: the catalog with prices and GTINs.
pub async fn products(State(state): State<AppState>, _admin: Admin) -> Result<Response, ApiError> {
    Ok(Json(lists::catalog(state.stores.catalog()).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pause {
    paused: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /admin/v1/stores/{id}/pause`: `{"paused": true, "reason": "..."}` stops new orders to
/// a store (routing skips it as it skips a closed one; what it has goes on); `{"paused":
/// false}` resumes. Kept with the profile in HQ's database.
pub async fn pause_store(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(request): Json<Pause>,
) -> Result<Response, ApiError> {
    let reason = request
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if request.paused {
        let Some(reason) = &reason else {
            return Err(ApiError::Unprocessable(
                "a pause needs a reason (1-200 bytes)".into(),
            ));
        };
        check_text("reason", reason, 200, true)?;
    }
    let profile = state
        .hq
        .set_paused(&id, request.paused, reason)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("store {id} has no profile")))?;
    tracing::info!(store = %id, paused = profile.paused, reason = ?profile.paused_reason, "store pause");
    Ok(Json(serde_json::json!({
        "store_id": profile.id,
        "paused": profile.paused,
        "paused_reason": profile.paused_reason,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reroute {
    store_id: String,
    reason: String,
}

/// `POST /admin/v1/orders/{id}/reroute`: `{"store_id": "...", "reason": "..."}` moves an order
/// its store has not started picking to a store that can serve it now with everything in
/// stock; 409 says why not. The move's check of the store's progress and its cancellation
/// request are made in the first store's replica, which is the store's own only at the
/// instance serving the store: any other instance hands the request on to that one.
pub async fn reroute_order(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(url) = served_elsewhere(&state, &id, &headers).await? {
        let path = format!("/admin/v1/orders/{id}/reroute");
        return crate::http::sync::forward(&state, &url, &path, &headers, body).await;
    }
    let request: Reroute = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    check_text("store_id", &request.store_id, 64, true)?;
    let reason = request.reason.trim();
    check_text("reason", reason, 200, true)?;
    let store_id = state
        .intake
        .reroute_by_hq(&id, &request.store_id, reason)
        .await?;
    Ok(Json(serde_json::json!({
        "order_id": id,
        "store_id": store_id,
        "status": "ROUTED",
    }))
    .into_response())
}

/// The instance serving the store `order_id` is at, when that is another live instance and the
/// request was not forwarded here already (a forwarded request is served, never sent on).
async fn served_elsewhere(
    state: &AppState,
    order_id: &str,
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    let Some(leases) = &state.leases else {
        return Ok(None);
    };
    if headers.contains_key(crate::http::sync::FORWARDED_BY) {
        return Ok(None);
    }
    let Some(order) = state.projection.order(order_id).await? else {
        return Ok(None);
    };
    Ok(match leases.holder(&order.store_id).await? {
        Some(Owner::Other { url }) => Some(url),
        Some(Owner::Us { .. }) | None => None,
    })
}

impl From<RerouteRefused> for ApiError {
    fn from(refused: RerouteRefused) -> Self {
        match refused {
            RerouteRefused::NotFound(message) => Self::NotFound(message),
            RerouteRefused::Conflict(message) => Self::Conflict(message),
            RerouteRefused::Intake(error) => error.into(),
        }
    }
}
