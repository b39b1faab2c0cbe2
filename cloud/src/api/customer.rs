//! What customers call: placing an order, reading their own orders, and the product list.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::ratings::RatingView;
use crate::http::auth::Viewer;
use crate::http::error::{ApiError, IdempotencyKey, Json, Path, Query};
use crate::http::state::AppState;
use crate::intake::{Customer, OrderRequest, trace};

/// `POST /api/v1/orders`
pub async fn place_order(
    State(state): State<AppState>,
    customer: Customer,
    IdempotencyKey(key): IdempotencyKey,
    headers: axum::http::HeaderMap,
    Json(request): Json<OrderRequest>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    // The caller's trace joins the order's here (intake::trace says why the order id is the
    // trace id); the answer's `traceparent` names the order's trace.
    let client_trace_id = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace::client_trace_id);
    let span = tracing::info_span!(
        "intake",
        client_trace_id = client_trace_id.as_deref().unwrap_or("")
    );
    let (order, replayed) =
        tracing::Instrument::instrument(state.intake.place(&customer, &key, request), span).await?;
    state
        .metrics
        .intake_seconds
        .observe(started.elapsed().as_secs_f64());
    let traceparent = HeaderValue::from_str(&trace::traceparent(&order.order_id));
    let mut response = (StatusCode::CREATED, Json(order)).into_response();
    if let Ok(value) = traceparent {
        response.headers_mut().insert("traceparent", value);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    } else {
        state.metrics.orders_placed.inc();
    }
    Ok(response)
}

/// `GET /api/v1/orders/{id}` (the customer's own orders) and `GET /admin/v1/orders/{id}`
/// (any order, with what support needs besides: PIN failures and the rider).
pub async fn get_order(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let customer_id = match &viewer {
        Viewer::Admin => None,
        Viewer::Customer(customer) => Some(customer.id.clone()),
    };
    let order = state
        .projection
        .order(&id)
        .await?
        .filter(|o| customer_id.is_none() || o.customer_id == customer_id)
        .ok_or_else(|| ApiError::NotFound(format!("no order {id}")))?;
    let eta_minutes = eta_minutes(&order);
    // The customer tells the rider the PIN at the door; support reads it to help.
    let delivery_pin = state.hq.delivery_pin(&id).await?;
    let payment = state.payments.payment(&id).await?;
    // The basket as its store has it (as ordered, with what was picked, short or substituted):
    // the customer's order page and re-order show it, HQ's support view too. And the rating,
    // once the customer gave one (`api/ratings.rs`).
    let lines = crate::dashboard::detail::order_lines(
        &state.stores,
        &state.projection,
        &order.store_id,
        &id,
    )
    .await?;
    let rating = state.hq.rating(&id).await?;
    // HQ sees the rider rated; the customer's view does not name them.
    let rating = match &viewer {
        Viewer::Admin => serde_json::to_value(rating),
        Viewer::Customer(_) => serde_json::to_value(rating.map(RatingView::from)),
    }
    .map_err(|e| ApiError::Internal(format!("rating: {e}")))?;
    let mut view = serde_json::json!({
        "order": order,
        "eta_minutes": eta_minutes,
        "delivery_pin": delivery_pin,
        "payment": payment,
        "lines": serde_json::to_value(lines)
            .map_err(|e| ApiError::Internal(format!("order lines: {e}")))?,
        "rating": rating,
    });
    if matches!(viewer, Viewer::Admin) {
        let failures = pin_failures(&state, &order.store_id, &id).await?;
        view["pin_failures"] = failures.into();
        view["flagged_for_support"] = (failures >= PIN_STRIKES).into();
        // Who rode it is HQ's business (dispatch, support), not the customer's.
        view["rider_id"] = crate::dashboard::detail::order_rider(&state.projection, &id)
            .await?
            .into();
    }
    Ok(Json(view).into_response())
}

/// Orders a history page lists when the request does not say, and at most.
const HISTORY_DEFAULT: u32 = 20;
const HISTORY_MAX: u32 = 100;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/v1/orders[?limit=N]`: the customer's own orders, newest first (20 unless `limit`
/// says, at most 100).
pub async fn my_orders(
    State(state): State<AppState>,
    customer: Customer,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(HISTORY_DEFAULT).clamp(1, HISTORY_MAX);
    let orders = state
        .projection
        .customer_orders(&customer.id, limit)
        .await?;
    Ok(Json(orders).into_response())
}

/// Wrong PINs after which the store locks an order for support (the edge's rule too).
const PIN_STRIKES: u32 = 3;

/// Wrong delivery PINs the order's store recorded (its `delivery_attempts`, as projected into
/// the read model: any instance answers, not only the one holding the store).
async fn pin_failures(state: &AppState, store_id: &str, order_id: &str) -> Result<u32, ApiError> {
    Ok(state.projection.pin_failures(order_id, store_id).await?)
}

/// Minutes until the promised time (0 once due), `None` once delivered or cancelled.
fn eta_minutes(order: &crate::projection::OrderView) -> Option<i64> {
    if matches!(
        order.status.as_str(),
        "DELIVERED" | "CLOSED" | "CANCELLED" | "REFUNDED"
    ) {
        return None;
    }
    let promised = crate::clock::parse(order.promised_at.as_deref()?)?;
    let left = promised - crate::clock::now();
    Some(left.whole_minutes().max(0))
}

#[derive(Debug, Serialize)]
struct ProductListing {
    id: String,
    name: String,
    unit: String,
    unit_price_minor: i64,
    currency: String,
}

/// `GET /api/v1/products`: what customers can order.
pub async fn products(State(state): State<AppState>) -> Result<Response, ApiError> {
    let listing = state
        .stores
        .catalog()
        .read(
            |conn| -> Result<Vec<ProductListing>, flashkart_sync::Error> {
                let rows = conn
                    .prepare_cached(
                        "SELECT p.id, p.name, p.unit, pr.unit_price_minor, pr.currency
                     FROM products p JOIN prices pr ON pr.product_id = p.id
                     WHERE p.active = 1 ORDER BY p.name",
                    )?
                    .query_map([], |r| {
                        Ok(ProductListing {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            unit: r.get(2)?,
                            unit_price_minor: r.get(3)?,
                            currency: r.get(4)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            },
        )
        .await
        .map_err(crate::CloudError::from)?;
    Ok(Json(listing).into_response())
}
