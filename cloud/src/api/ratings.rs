//! Customers rating their delivered orders: `POST /api/v1/orders/{id}/rating`
//! `{delivery_stars, order_stars, comment?}` and `GET /api/v1/orders/{id}/rating`.
//!
//! Only the order's own customer may rate it or read its rating: another customer's order is
//! 404, as `GET /api/v1/orders/{id}` answers. An order is rated once it is DELIVERED (or CLOSED
//! after that) in the read model, 409 before; once only, a second rating is 409 and the first
//! stands (`hq/ratings.rs` says why). Stars are integers 1-5 and the comment at most 500
//! characters once trimmed (422 otherwise). The rider rated is the one who accepted the order
//! (the read model's latest acceptance), kept with the rating for dispatch; the customer's
//! answer does not name them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::hq::ratings::{OrderRating, Stars};
use crate::http::error::{ApiError, Json, Path};
use crate::http::state::AppState;
use crate::intake::Customer;
use crate::projection::OrderView;

/// The body of `POST /api/v1/orders/{id}/rating`. Stars are taken as any JSON value so a
/// wrong one is 422 with what is expected, not 400 malformed JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateOrder {
    delivery_stars: serde_json::Value,
    order_stars: serde_json::Value,
    #[serde(default)]
    comment: Option<String>,
}

/// What the customer sees of their rating (here and in their order's view).
#[derive(Debug, Serialize)]
pub(crate) struct RatingView {
    order_id: String,
    delivery_stars: u8,
    order_stars: u8,
    comment: Option<String>,
    created_at: String,
}

impl From<OrderRating> for RatingView {
    fn from(r: OrderRating) -> Self {
        Self {
            order_id: r.order_id,
            delivery_stars: r.delivery_stars,
            order_stars: r.order_stars,
            comment: r.comment,
            created_at: r.created_at,
        }
    }
}

/// The statuses an order can be rated in: delivered.
const RATEABLE: &[&str] = &["DELIVERED", "CLOSED"];

/// The caller's own order, or 404 (another customer's included).
async fn own_order(state: &AppState, customer: &Customer, id: &str) -> Result<OrderView, ApiError> {
    state
        .projection
        .order(id)
        .await?
        .filter(|o| o.customer_id.as_deref() == Some(customer.id.as_str()))
        .ok_or_else(|| ApiError::NotFound(format!("no order {id}")))
}

/// `POST /api/v1/orders/{id}/rating`: 201 with the rating.
pub async fn rate_order(
    State(state): State<AppState>,
    customer: Customer,
    Path(id): Path<String>,
    Json(body): Json<RateOrder>,
) -> Result<Response, ApiError> {
    let order = own_order(&state, &customer, &id).await?;
    let stars = Stars::new(
        &body.delivery_stars,
        &body.order_stars,
        body.comment.as_deref(),
    )?;
    if !RATEABLE.contains(&order.status.as_str()) {
        return Err(ApiError::Conflict(format!(
            "order {id} is {}: an order can be rated once it is delivered",
            order.status
        )));
    }
    let rider_id = crate::dashboard::detail::order_rider(&state.projection, &id).await?;
    let rating = state
        .hq
        .add_rating(OrderRating {
            order_id: order.id,
            customer_id: customer.id,
            store_id: order.store_id,
            rider_id,
            delivery_stars: stars.delivery_stars,
            order_stars: stars.order_stars,
            comment: stars.comment,
            created_at: crate::clock::now_rfc3339(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(RatingView::from(rating))).into_response())
}

/// `GET /api/v1/orders/{id}/rating`: the caller's rating of their order, or 404.
pub async fn get_rating(
    State(state): State<AppState>,
    customer: Customer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    own_order(&state, &customer, &id).await?;
    let rating = state
        .hq
        .rating(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("order {id} is not rated")))?;
    Ok(Json(RatingView::from(rating)).into_response())
}
