//! The route table: which path goes to which handler, behind which guard and body limit. It
//! sits above both `http/` (plumbing, sync endpoints) and `api/` (JSON handlers), so neither
//! of those needs the other.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, delete, get, post, put};
use flashkart_sync::protocol;

use crate::api::{admin, catalog, customer, customer_account, hq_auth, payments};
use crate::http::guard::{Caller, guard};
use crate::http::state::AppState;
use crate::http::{observe, sync};

/// A sign-in body: a username and a password.
const SIGN_IN_BODY_BYTES: usize = 4096;
/// A customer account's bodies: sign-up (an e-mail, a password, a name), sign-in, a saved
/// address (a label, at most 500 bytes of text, a position), a password reset.
const ACCOUNT_BODY_BYTES: usize = 4096;
/// A rating: two stars and a comment of at most 500 characters (up to 2,000 bytes of UTF-8).
const RATING_BODY_BYTES: usize = 4096;

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
        .merge(crate::api::hq_app::routes())
        .merge(crate::api::customer_app::routes(
            state
                .payments
                .card_form()
                .and_then(|form| form.origin())
                .as_deref(),
        ))
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
            "/hq/api/sign-in",
            guarded(post(hq_auth::sign_in), Caller::Public, SIGN_IN_BODY_BYTES),
        )
        .route("/hq/api/me", get(hq_auth::me))
        .route(
            "/hq/api/sign-out",
            guarded(post(hq_auth::sign_out), Caller::Public, SIGN_IN_BODY_BYTES),
        )
        .route("/admin/v1/hq-users", get(hq_auth::list_users))
        .route(
            "/admin/v1/hq-users/{username}",
            guarded(put(hq_auth::put_user), Caller::HqAdmin, admin_limit),
        )
        .route("/admin/v1/audit", get(hq_auth::audit))
        .route(
            "/admin/v1/stores",
            guarded(post(admin::register_store), Caller::HqAdmin, admin_limit)
                .get(admin::list_stores),
        )
        .route(
            "/admin/v1/stores/{id}/token",
            guarded(
                post(admin::rotate_store_token),
                Caller::HqAdmin,
                admin_limit,
            ),
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
            )
            .get(customer::my_orders),
        )
        .route("/api/v1/orders/{id}", get(customer::get_order))
        .route(
            "/api/v1/orders/{id}/events",
            get(crate::api::tracking::order_events),
        )
        .route(
            "/api/v1/orders/{id}/rating",
            guarded(
                post(crate::api::ratings::rate_order),
                Caller::Customer,
                RATING_BODY_BYTES,
            )
            .get(crate::api::ratings::get_rating),
        )
        .route(
            "/api/v1/orders/{id}/cancel",
            guarded(post(payments::cancel_order), Caller::Viewer, admin_limit),
        )
        // Customer accounts: sign-up and sign-in are public, the rest a signed-in customer's.
        .route(
            "/api/v1/account/sign-up",
            guarded(
                post(customer_account::sign_up),
                Caller::Public,
                ACCOUNT_BODY_BYTES,
            ),
        )
        .route(
            "/api/v1/account/sign-in",
            guarded(
                post(customer_account::sign_in),
                Caller::Public,
                ACCOUNT_BODY_BYTES,
            ),
        )
        .route(
            "/api/v1/account/password-reset",
            guarded(
                post(customer_account::request_password_reset),
                Caller::Public,
                ACCOUNT_BODY_BYTES,
            ),
        )
        .route(
            "/api/v1/account/password-reset/confirm",
            guarded(
                post(customer_account::confirm_password_reset),
                Caller::Public,
                ACCOUNT_BODY_BYTES,
            ),
        )
        .route(
            "/api/v1/account/sign-out",
            guarded(
                post(customer_account::sign_out),
                Caller::Customer,
                ACCOUNT_BODY_BYTES,
            ),
        )
        .route("/api/v1/account", get(customer_account::me))
        .route(
            "/api/v1/account/addresses",
            guarded(
                post(customer_account::add_address),
                Caller::Customer,
                ACCOUNT_BODY_BYTES,
            )
            .get(customer_account::addresses),
        )
        .route(
            "/api/v1/account/addresses/{id}",
            guarded(
                delete(customer_account::delete_address),
                Caller::Customer,
                ACCOUNT_BODY_BYTES,
            ),
        )
        .route(
            "/admin/v1/orders/{id}/refund",
            guarded(post(payments::refund_order), Caller::HqAdmin, admin_limit),
        )
        .route("/api/v1/payments/config", get(payments::payment_options))
        .route(
            "/api/v1/payments/card-setup",
            guarded(
                post(payments::card_setup),
                Caller::Customer,
                ACCOUNT_BODY_BYTES,
            ),
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
        .route(
            "/api/v1/storefront",
            get(crate::api::storefront::storefront),
        )
        .route("/api/v1/areas", get(crate::api::areas::areas))
        // The HQ dashboard's data and controls.
        .route("/admin/v1/dashboard", get(crate::api::dashboard::snapshot))
        .route(
            "/admin/v1/dashboard/events",
            get(crate::api::dashboard::events),
        )
        .route("/admin/v1/riders", get(crate::api::dashboard::riders))
        .route("/admin/v1/coupons", get(crate::api::dashboard::coupons))
        .route("/admin/v1/products", get(crate::api::dashboard::products))
        .route(
            "/admin/v1/stores/{id}/pause",
            guarded(
                post(crate::api::dashboard::pause_store),
                Caller::Admin,
                admin_limit,
            ),
        )
        .route(
            "/admin/v1/orders/{id}/reroute",
            guarded(
                post(crate::api::dashboard::reroute_order),
                Caller::Admin,
                admin_limit,
            ),
        )
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
