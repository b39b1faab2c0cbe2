//! Order endpoints: queues, detail, intake (the cloud's stand-in), picking, packing, handoff.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::Staff;
use super::error::{ApiError, Json, Path};
use crate::app::App;
use crate::catalog::ProductRef;
use crate::devices::LabelPrint;
use crate::orders::{self, Arrival, Cancelled, Detail, OrderIntake, Queues};
use crate::pack::{self, Handoff, Moved, Pack, Packed};
use crate::pick::{self, Batch, LineChange, Scan, Scanned, Stop};
use crate::staff::Role;

type Reply<T> = Result<Json<T>, ApiError>;

pub async fn queues(State(app): State<Arc<App>>, _staff: Staff) -> Reply<Queues> {
    Ok(Json(app.read(orders::queues).await?))
}

/// Writes an order as the cloud would (until sync lands) and runs its arrival.
pub async fn intake(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Json(order): Json<OrderIntake>,
) -> Result<(StatusCode, Json<Arrival>), ApiError> {
    staff.require(Role::Manager)?;
    app.require_no_cloud_sync("order intake")?;
    let arrival = app
        .write(&staff.staff_id, move |conn, ctx| {
            orders::intake(conn, ctx, &order)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(arrival)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    reason: String,
}

/// Records the cloud's cancellation request (until sync lands) and honours it.
pub async fn cancel(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
    Json(request): Json<CancelRequest>,
) -> Reply<Cancelled> {
    staff.require(Role::Manager)?;
    app.require_no_cloud_sync("cancellation")?;
    let cancelled = app
        .write(&staff.staff_id, move |conn, ctx| {
            orders::request_cancel(conn, ctx, &id, &request.reason)
        })
        .await?;
    Ok(Json(cancelled))
}

pub async fn detail(
    State(app): State<Arc<App>>,
    _staff: Staff,
    Path(id): Path<String>,
) -> Reply<Detail> {
    Ok(Json(app.read(move |conn| orders::detail(conn, &id)).await?))
}

pub async fn pick_list(
    State(app): State<Arc<App>>,
    _staff: Staff,
    Path(id): Path<String>,
) -> Reply<Vec<Stop>> {
    Ok(Json(
        app.read(move |conn| pick::pick_list(conn, &id)).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    order_ids: Vec<String>,
}

pub async fn batch(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Json(request): Json<BatchRequest>,
) -> Reply<Batch> {
    let batch = app
        .write(&staff.staff_id, move |conn, ctx| {
            pick::batch(conn, ctx, &request.order_ids)
        })
        .await?;
    Ok(Json(batch))
}

pub async fn scan(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
    Json(scan): Json<Scan>,
) -> Reply<Scanned> {
    let layout = app.layout.clone();
    let scanned = app
        .write(&staff.staff_id, move |conn, ctx| {
            pick::scan(conn, ctx, &layout, &id, &scan)
        })
        .await?;
    Ok(Json(scanned))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShortRequest {
    qty: Option<i64>,
}

pub async fn short(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path((id, line_no)): Path<(String, i64)>,
    Json(request): Json<ShortRequest>,
) -> Reply<LineChange> {
    let change = app
        .write(&staff.staff_id, move |conn, ctx| {
            pick::short(conn, ctx, &id, line_no, request.qty)
        })
        .await?;
    Ok(Json(change))
}

pub async fn substitute(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path((id, line_no)): Path<(String, i64)>,
    Json(with): Json<ProductRef>,
) -> Reply<LineChange> {
    let layout = app.layout.clone();
    let change = app
        .write(&staff.staff_id, move |conn, ctx| {
            pick::substitute(conn, ctx, &layout, &id, line_no, &with)
        })
        .await?;
    Ok(Json(change))
}

/// A packed order and its bag labels (empty without a label printer).
#[derive(Debug, Serialize)]
pub struct PackReply {
    #[serde(flatten)]
    packed: Packed,
    labels: Vec<LabelPrint>,
    /// Why the labels did not print, if they did not (the order is packed regardless).
    #[serde(skip_serializing_if = "Option::is_none")]
    label_error: Option<String>,
}

/// Packs: without `bag_weight_g`, the pack scale (if configured) weighs the bags; once PACKED
/// the bag labels print on the label printer.
pub async fn pack(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
    Json(mut input): Json<Pack>,
) -> Reply<PackReply> {
    if input.bag_weight_g.is_none() {
        input.bag_weight_g = app.devices.pack_weight_g().await?;
    }
    let config = app.pack.clone();
    let packed = app
        .write(&staff.staff_id, move |conn, ctx| {
            pack::pack(conn, ctx, &config, &id, &input)
        })
        .await?;
    let (labels, label_error) = match app.devices.print_labels(&app, &packed).await {
        Ok(labels) => (labels, None),
        Err(error) => {
            tracing::warn!(order_id = %packed.order_id, %error, "bag labels not printed");
            (Vec::new(), Some(error.to_string()))
        }
    };
    Ok(Json(PackReply {
        packed,
        labels,
        label_error,
    }))
}

pub async fn ready(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
) -> Reply<Moved> {
    let moved = app
        .write(&staff.staff_id, move |conn, ctx| {
            pack::ready(conn, ctx, &id)
        })
        .await?;
    Ok(Json(moved))
}

pub async fn handoff(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
    Json(input): Json<Handoff>,
) -> Reply<Moved> {
    let moved = app
        .write(&staff.staff_id, move |conn, ctx| {
            pack::handoff(conn, ctx, &id, &input)
        })
        .await?;
    Ok(Json(moved))
}
