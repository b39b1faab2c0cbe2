//! Order endpoints: queues, detail, intake (the cloud's stand-in), picking, packing, handoff.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::Staff;
use super::error::{ApiError, Json, Path};
use crate::app::App;
use crate::devices::Labels;
use crate::work::catalog::ProductRef;
use crate::work::orders::{self, Arrival, Cancelled, Detail, OrderIntake, Queues, Status};
use crate::work::pack::{self, Handoff, Moved, Pack, Packed};
use crate::work::pick::{self, Batch, LineChange, Scan, Scanned, Stop};
use crate::work::staff::Role;

type Reply<T> = Result<Json<T>, ApiError>;

pub async fn queues(State(app): State<Arc<App>>, _staff: Staff) -> Reply<Queues> {
    let within = app.ready_within_minutes;
    Ok(Json(
        app.read(move |conn| orders::queues(conn, within)).await?,
    ))
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
    // Decoded once, here; then the path of a serial scanner's scan.
    let scan = scan.decode(&app.layout)?;
    let scanned = app
        .write(&staff.staff_id, move |conn, ctx| {
            pick::scan(conn, ctx, &id, &scan)
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

/// Packs: without `bag_weight_g`, the pack scale (if configured) weighs the bags. Bags outside
/// the tolerance are refused (409) unless a lead or manager sends `"override": true`.
/// Nothing prints here: the label prints at READY.
pub async fn pack(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
    Json(mut input): Json<Pack>,
) -> Reply<Packed> {
    if input.override_weight {
        staff.require(Role::Lead).map_err(|_| {
            crate::Error::Forbidden(format!(
                "{} is a {}: overriding the bag weight check needs a lead or a manager",
                staff.staff_id,
                staff.role.as_str()
            ))
        })?;
    }
    if input.bag_weight_g.is_none() {
        input.bag_weight_g = app.devices.pack_weight_g().await?;
    }
    let config = app.pack.clone();
    let role = staff.role;
    let packed = app
        .write(&staff.staff_id, move |conn, ctx| {
            pack::pack(conn, ctx, &config, &id, &input, role)
        })
        .await?;
    if let Some(o) = &packed.weight_override {
        tracing::warn!(
            order_id = %packed.order_id, by = %o.by, measured_g = o.measured_g,
            expected_g = o.expected_g, tolerance_g = o.tolerance_g, "bag weight check overridden"
        );
    }
    Ok(Json(packed))
}

/// An order marked READY, its bag labels and the label printer's state.
#[derive(Debug, Serialize)]
pub struct ReadyReply {
    #[serde(flatten)]
    moved: Moved,
    #[serde(flatten)]
    labels: Labels,
}

/// READY: the bags are on the pickup shelf; their labels print now. The order is READY
/// whatever the printer does; the reply says what it did.
pub async fn ready(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
) -> Reply<ReadyReply> {
    let order_id = id.clone();
    let moved = app
        .write(&staff.staff_id, move |conn, ctx| {
            pack::ready(conn, ctx, &order_id)
        })
        .await?;
    let labels = app.devices.print_order_labels(&*app, &id, false).await;
    Ok(Json(ReadyReply { moved, labels }))
}

/// A reprint of an order's bag labels, for a lead once the printer is fixed.
#[derive(Debug, Serialize)]
pub struct ReprintReply {
    order_id: String,
    status: Status,
    #[serde(flatten)]
    labels: Labels,
}

/// Reprints the bag labels of a READY (or ASSIGNED) order: a lead or manager.
pub async fn reprint_labels(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
) -> Reply<ReprintReply> {
    staff.require(Role::Lead)?;
    if app.devices.printer_state().is_none() {
        return Err(crate::Error::Conflict(
            "no label printer is configured: write the label id on the bags".into(),
        )
        .into());
    }
    let order_id = id.clone();
    let status = app
        .read(move |conn| orders::status(conn, &order_id))
        .await?;
    if !matches!(status, Status::Ready | Status::Assigned) {
        return Err(crate::Error::InvalidTransition {
            order_id: id,
            status,
            action: "reprint its label (labels print at READY)",
        }
        .into());
    }
    tracing::info!(order_id = %id, staff_id = %staff.staff_id, "bag labels reprinted");
    let labels = app.devices.print_order_labels(&*app, &id, true).await;
    Ok(Json(ReprintReply {
        order_id: id,
        status,
        labels,
    }))
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
