//! The route table: which path goes to which handler, behind which guard and body limit. It
//! sits above both `http/` (plumbing, sync endpoints) and `api/` (JSON handlers), so neither
//! of those needs the other.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, get, post, put};
use flashkart_sync::protocol;

use crate::api::{admin, catalog, customer, payments};
use crate::http::guard::{Caller, guard};
use crate::http::state::AppState;
use crate::http::{observe, sync};

/// Every route that reads a body is guarded (`http/guard.rs`); routes without a body never read
/// one. Every matched request gets an id and is counted (`http/observe.rs`).
pub fn router(state: AppState) -> Router {
    let limits = state.limits.clone();
    let guarded =
        |route: MethodRouter<AppState>, caller, limit| guard(route, &state, caller, limit);
    let (sync_limit, admin_limit, profile) = (
        limits.max_sync_request_body_bytes,
        limits.max_admin_body_bytes,
        limits.max_profile_body_bytes,
    );
    Router::new()
        .route(
            protocol::HELLO_PATH,
            guarded(post(sync::hello), Caller::Store, sync_limit),
        )
        .route(
            protocol::PUSH_PATH,
            guarded(post(sync::push), Caller::Store, limits.max_push_body_bytes),
        )
        .route(
            protocol::PULL_PATH,
            guarded(post(sync::pull), Caller::Store, sync_limit),
        )
        .route(
            "/admin/v1/stores",
            guarded(post(admin::register_store), Caller::Admin, admin_limit)
                .get(admin::list_stores),
        )
        .route(
            "/admin/v1/stores/{id}/token",
            guarded(post(admin::rotate_store_token), Caller::Admin, admin_limit),
        )
        .route(
            "/admin/v1/stores/{id}/profile",
            guarded(put(admin::put_store_profile), Caller::Admin, profile),
        )
        .route(
            "/admin/v1/products/{id}",
            guarded(put(catalog::put_product), Caller::Admin, admin_limit),
        )
        .route(
            "/admin/v1/coupons/{code}",
            guarded(put(admin::put_coupon), Caller::Admin, admin_limit),
        )
        .route(
            "/admin/v1/riders/{id}",
            guarded(put(admin::put_rider), Caller::Admin, admin_limit),
        )
        .route(
            "/admin/v1/riders/{id}/enrolment-code",
            guarded(
                post(admin::issue_enrolment_code),
                Caller::Admin,
                admin_limit,
            ),
        )
        .route(
            "/admin/v1/customers",
            guarded(post(admin::create_customer), Caller::Admin, admin_limit),
        )
        .route("/admin/v1/orders/{id}", get(customer::get_order))
        .route("/admin/v1/stock/{product_id}", get(admin::stock))
        .route(
            "/api/v1/orders",
            guarded(
                post(customer::place_order),
                Caller::Customer,
                limits.max_order_body_bytes,
            ),
        )
        .route("/api/v1/orders/{id}", get(customer::get_order))
        .route(
            "/api/v1/orders/{id}/cancel",
            guarded(post(payments::cancel_order), Caller::Viewer, admin_limit),
        )
        .route(
            "/admin/v1/orders/{id}/refund",
            guarded(post(payments::refund_order), Caller::Admin, admin_limit),
        )
        .route(
            "/api/v1/payments/stripe/webhook",
            guarded(
                post(payments::stripe_webhook),
                Caller::Provider,
                limits.max_webhook_body_bytes,
            ),
        )
        .route(
            "/admin/v1/ledger/trial-balance",
            get(payments::trial_balance),
        )
        .route("/admin/v1/ledger/balances", get(payments::balances))
        .route("/admin/v1/payments/flags", get(payments::flags))
        .route(
            "/admin/v1/statements/stores/{id}",
            get(payments::store_statement),
        )
        .route(
            "/admin/v1/statements/riders/{id}",
            get(payments::rider_statement),
        )
        .route("/api/v1/products", get(customer::products))
        .route("/metrics", get(sync::metrics))
        .route("/healthz", get(|| async { "ok" }))
        // The guard has read each body already; this only keeps an unguarded route that
        // takes `Bytes` from buffering more than the largest guarded one.
        .layer(DefaultBodyLimit::max(limits.max_body_bytes()))
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            observe::observe,
        ))
        .with_state(state)
}
