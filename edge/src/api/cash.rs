//! Riders' cash at the store's desk: a lead or manager takes a rider's cash in (which closes the
//! rider's shift here), looks at what a rider holds, and signs a rider on again.
//!
//! Why apart from `riders.rs`: that module is the enrolment listener's (no staff session);
//! these endpoints are the staff API's, with its sign-in and roles. The rules are in
//! [`crate::work::cash`]; what "closing the shift" means is written there.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use super::auth::Staff;
use super::error::{ApiError, Json, Path};
use crate::app::App;
use crate::work::cash::{self, HandIn, HandInRequest, Holding, SignOn};
use crate::work::staff::Role;

/// `POST /riders/{id}/cash-handin`: records the cash counted against what the rider's cash
/// deliveries here add up to, and closes the rider's shift. Leads and managers only.
pub async fn hand_in(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(rider_id): Path<String>,
    Json(request): Json<HandInRequest>,
) -> Result<(StatusCode, Json<HandIn>), ApiError> {
    staff.require(Role::Lead)?;
    let handin = app
        .write(&staff.staff_id, move |conn, ctx| {
            cash::hand_in(conn, ctx, &rider_id, &request)
        })
        .await?;
    // Committed: the rider is signed off in the database whatever happens next. Asking the
    // riders service now disconnects it at once rather than at the next roster refresh.
    if let Some(roster) = app.rider_roster.get() {
        roster.refresh().await;
    }
    Ok((StatusCode::CREATED, Json(handin)))
}

/// `GET /riders/{id}/cash`: what the rider holds now (what a hand-in would expect), whether it
/// is on shift here, and its last hand-ins. Leads and managers only.
pub async fn holding(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(rider_id): Path<String>,
) -> Result<Json<Holding>, ApiError> {
    staff.require(Role::Lead)?;
    let store_id = app.store_id.clone();
    Ok(Json(
        app.read(move |conn| cash::holding(conn, &store_id, &rider_id))
            .await?,
    ))
}

/// `POST /riders/{id}/sign-on`: a rider whose shift a hand-in closed comes on shift again.
/// Leads and managers only.
pub async fn sign_on(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(rider_id): Path<String>,
) -> Result<Json<SignOn>, ApiError> {
    staff.require(Role::Lead)?;
    let signed_on = app
        .write(&staff.staff_id, move |conn, ctx| {
            cash::sign_on(conn, ctx, &rider_id)
        })
        .await?;
    if let Some(roster) = app.rider_roster.get() {
        roster.refresh().await;
    }
    Ok(Json(signed_on))
}
