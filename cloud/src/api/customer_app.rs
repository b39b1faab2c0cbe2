//! The customer web app: shop, check out, follow the rider, rate; served at `/` with its files
//! under `/ui/`, embedded as `http/embedded.rs` says.
//!
//! Mobile-first (a 375 px wide phone), hand-written (`cloud/customer-ui/`), and it calls only
//! the public customer API (`/api/v1/...`) any other client calls: the account's cookie
//! session with its CSRF token, the storefront, the delivery areas, intake, history, tracking
//! over SSE, ratings and password reset. Pages are hash routes (`#/orders/{id}`,
//! `#/reset/{token}`) so the links in e-mails open the right page from a file served at `/`.
//! Payment is by card or cash at the door. A card is registered by the page at the provider
//! itself (a SetupIntent the cloud starts, confirmed by the browser with the publishable key),
//! so card numbers never reach FlashKart; the page's policy lets it reach that one origin.

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderValue;
use axum::routing::get;

use crate::http::embedded::{Asset, CSS, HTML, JAVASCRIPT, serve, serve_named};

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: HTML,
    body: include_str!("../../customer-ui/index.html"),
};

/// The files under `/ui/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../customer-ui/app.js"),
    },
    Asset {
        name: "strings.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../customer-ui/strings.js"),
    },
    Asset {
        name: "app.css",
        content_type: CSS,
        body: include_str!("../../customer-ui/app.css"),
    },
];

/// Nothing from elsewhere, no framing, no inline code; the app reads its position from the
/// browser (`navigator.geolocation`), which needs no source. `{connect}` is the cloud itself
/// and, when cards are taken, the card provider's API, where the page registers a card (the
/// card goes there and never to the cloud).
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                      img-src 'self' data:; connect-src {connect}; frame-ancestors 'none'; \
                      base-uri 'none'; form-action 'self'";

/// The policy with the page allowed to reach `card_origin` (`https://api.stripe.com`) too.
fn policy(card_origin: Option<&str>) -> HeaderValue {
    let connect = match card_origin {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    HeaderValue::from_str(&POLICY.replace("{connect}", &connect)).unwrap_or_else(|_| {
        // An origin is scheme, host and port, which a header always holds; should one ever
        // not, the page keeps to the cloud (and cash) rather than going without a policy.
        HeaderValue::from_str(&POLICY.replace("{connect}", "'self'"))
            .unwrap_or(HeaderValue::from_static("default-src 'none'"))
    })
}

/// `/` and `/ui/{file}`, for the cloud's router (state-free, so any state type fits); the page
/// may reach `card_origin`, the card provider's API, when cards are taken.
pub fn routes<S: Clone + Send + Sync + 'static>(card_origin: Option<&str>) -> Router<S> {
    let policy = policy(card_origin);
    let for_assets = policy.clone();
    Router::new()
        .route("/", get(move || async move { serve(&INDEX, policy) }))
        .route(
            "/ui/{file}",
            get(move |Path(file): Path<String>| async move {
                serve_named(ASSETS, &file, for_assets)
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::embedded::{check_app, check_served};

    #[test]
    fn the_page_loads_only_embedded_files() {
        check_app(&INDEX, ASSETS, "/ui/");
    }

    #[tokio::test]
    async fn every_file_is_served_with_the_policy() {
        use tower::ServiceExt;
        let app: Router = routes(None);
        let own = POLICY.replace("{connect}", "'self'");
        check_served(
            app.clone(),
            &["/", "/ui/app.js", "/ui/strings.js", "/ui/app.css"],
            &own,
        )
        .await;
        let with_cards: Router = routes(Some("http://127.0.0.1:8420"));
        check_served(
            with_cards,
            &["/", "/ui/app.js"],
            &POLICY.replace("{connect}", "'self' http://127.0.0.1:8420"),
        )
        .await;
        let missing = app
            .oneshot(
                axum::http::Request::get("/ui/index.html")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(missing.status(), 404);
    }
}
