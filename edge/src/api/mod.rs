//! The HTTP API under `/api/v1`, plus `/healthz`, `/metrics` and the staff tablet app at `/`.
//!
//! Handlers are thin: they check the caller's role, hand a domain function to
//! [`App::write`](crate::app::App::write) or [`App::read`](crate::app::App::read), and return
//! its result as JSON. All SQL lives in the domain modules; every error becomes a JSON
//! `{error, message}` in one place ([`error::ApiError`]).

mod auth;
mod cash;
mod error;
pub mod https;
mod orders;
mod riders;
mod stock;
mod system;
mod tablet;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};

use crate::app::App;
pub use error::ApiError;

/// The daemon's router on its plain listener. Rider enrolment is not on it (see
/// [`enrolment_router`]); its path answers where to go instead.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/auth/sign-in", post(system::sign_in))
        .route("/auth/me", get(system::me))
        .route("/auth/sign-out", post(system::sign_out))
        .route("/auth/lockouts", get(system::lockouts))
        .route("/auth/clients/{ip}/unlock", post(system::unlock_client))
        .route("/staff", get(system::list_staff).post(system::add_staff))
        .route("/staff/{id}/pin", post(system::reset_pin))
        .route("/staff/{id}/unlock", post(system::unlock_staff))
        .route("/queues", get(orders::queues))
        .route("/intake/orders", post(orders::intake))
        .route("/intake/orders/{id}/cancel", post(orders::cancel))
        .route("/orders/{id}", get(orders::detail))
        .route("/orders/{id}/pick-list", get(orders::pick_list))
        .route("/orders/{id}/scan", post(orders::scan))
        .route("/orders/{id}/lines/{line_no}/short", post(orders::short))
        .route(
            "/orders/{id}/lines/{line_no}/substitute",
            post(orders::substitute),
        )
        .route("/orders/{id}/pack", post(orders::pack))
        .route("/orders/{id}/ready", post(orders::ready))
        .route("/orders/{id}/labels/reprint", post(orders::reprint_labels))
        .route("/orders/{id}/handoff", post(orders::handoff))
        .route("/pick-batches", post(orders::batch))
        .route("/catalog/lookup", get(stock::lookup))
        .route("/products", get(stock::products))
        .route("/bins", get(stock::bins))
        .route("/bins/{id}", put(stock::put_bin))
        .route("/products/{id}/bins/{bin_id}", put(stock::slot))
        .route("/stock", get(stock::levels))
        .route("/stock/receive", post(stock::receive))
        .route("/stock/adjust", post(stock::adjust))
        .route("/stock/count", post(stock::count))
        .route("/stock/{product_id}", get(stock::report))
        .route("/devices", get(system::devices))
        .route(
            "/devices/{id}/bind",
            post(system::bind_device).delete(system::unbind_device),
        )
        .route("/sync/status", get(system::sync_status))
        .route("/events", get(system::events))
        .route("/dev/catalog", post(system::seed_catalog))
        .route("/riders/{id}/enrol", post(riders::https_only))
        .route("/riders/{id}/cash-handin", post(cash::hand_in))
        .route("/riders/{id}/cash", get(cash::holding))
        .route("/riders/{id}/sign-on", post(cash::sign_on));
    Router::new()
        .nest("/api/v1", api)
        .merge(tablet::routes())
        .route("/healthz", get(system::healthz))
        .route("/metrics", get(system::metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), track))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .with_state(app)
}

/// The router of the riders' enrolment listener ([`https`]): enrolment, the store CA a
/// phone pins, and `/healthz`; nothing that takes a staff session.
pub fn enrolment_router(app: Arc<App>, riders: Arc<crate::riders::Riders>) -> Router {
    let api = riders::routes(riders, app.sign_in_config().clone());
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(system::healthz))
        .route_layer(middleware::from_fn_with_state(app.clone(), track))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .with_state(app)
}

/// Counts and times every routed request.
async fn track(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    app.metrics.http(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
