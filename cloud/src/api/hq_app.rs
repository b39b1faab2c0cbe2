//! The HQ dashboard: a few static files embedded in the binary and served at `/hq/`.
//!
//! The app is hand-written HTML, CSS and JavaScript (`cloud/hq-ui/`), embedded and served as
//! `http/embedded.rs` says (the same approach as the staff tablet app, `edge/src/api/tablet.rs`).
//! Every response forbids scripts and styles from anywhere but here, and framing; the app talks
//! to `/hq/api/*` (sign-in, the session cookie) and `/admin/v1/*` with that cookie.

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderValue;
use axum::response::{Redirect, Response};
use axum::routing::get;

use crate::http::ApiError;
use crate::http::embedded::{Asset, CSS, HTML, JAVASCRIPT, serve, serve_named};

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: HTML,
    body: include_str!("../../hq-ui/index.html"),
};

/// The files under `/hq/ui/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../hq-ui/app.js"),
    },
    Asset {
        name: "strings.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../hq-ui/strings.js"),
    },
    Asset {
        name: "app.css",
        content_type: CSS,
        body: include_str!("../../hq-ui/app.css"),
    },
];

const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                      base-uri 'none'; form-action 'self'";

/// `/hq` (a redirect), `/hq/` and `/hq/ui/{file}`, for the cloud's router (state-free, so any
/// state type fits).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/hq", get(|| async { Redirect::permanent("/hq/") }))
        .route(
            "/hq/",
            get(|| async { serve(&INDEX, HeaderValue::from_static(POLICY)) }),
        )
        .route("/hq/ui/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    serve_named(ASSETS, &file, HeaderValue::from_static(POLICY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::embedded::{check_app, check_served};

    #[test]
    fn the_page_loads_only_embedded_files() {
        check_app(&INDEX, ASSETS, "/hq/ui/");
    }

    #[tokio::test]
    async fn every_file_is_served_with_the_policy() {
        use tower::ServiceExt;
        let app: Router = routes();
        check_served(
            app.clone(),
            &[
                "/hq/",
                "/hq/ui/app.js",
                "/hq/ui/strings.js",
                "/hq/ui/app.css",
            ],
            POLICY,
        )
        .await;
        let redirect = app
            .clone()
            .oneshot(
                axum::http::Request::get("/hq")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert!(redirect.status().is_redirection());
        assert_eq!(redirect.headers()[axum::http::header::LOCATION], "/hq/");
        let missing = app
            .oneshot(
                axum::http::Request::get("/hq/ui/other.js")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(missing.status(), 404);
    }
}
