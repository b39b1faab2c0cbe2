//! The HQ dashboard: a few static files embedded in the binary and served at `/hq/`.
//!
//! Why embedded: the dashboard must speak the API of the cloud that serves it, in that
//! cloud's version, with nothing else to deploy. The app is hand-written HTML, CSS and
//! JavaScript (`cloud/hq-ui/`), with no build step, so what is in the repository is what runs
//! (the same approach as the staff tablet app, `edge/src/api/tablet.rs`). Every response
//! forbids scripts and styles from anywhere but here, and framing; the app talks to
//! `/hq/api/*` (sign-in, the session cookie) and `/admin/v1/*` with that cookie.

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderName;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::http::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../hq-ui/index.html"),
};

/// The files under `/hq/ui/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../hq-ui/app.js"),
    },
    Asset {
        name: "strings.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../hq-ui/strings.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
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
        .route("/hq/", get(|| async { serve(&INDEX) }))
        .route("/hq/ui/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == file)
        .map(serve)
        .ok_or_else(|| ApiError::NotFound("no such file".into()))
}

fn serve(asset: &Asset) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
            // The app is as new as the cloud: a browser left open all day must not keep an
            // old copy after an upgrade (it revalidates on every load).
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
            (
                HeaderName::from_static("referrer-policy"),
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_files() {
        for name in ["/hq/ui/app.js", "/hq/ui/strings.js", "/hq/ui/app.css"] {
            assert!(INDEX.body.contains(name), "index.html does not load {name}");
        }
        // No inline script, style or handler: the policy would block them.
        assert!(
            !INDEX.body.contains("<script>"),
            "inline script in index.html"
        );
        assert!(
            !INDEX.body.contains("style=\"") && !INDEX.body.contains("<style"),
            "inline style in index.html"
        );
        assert!(
            !INDEX.body.contains(" onclick="),
            "inline handler in index.html"
        );
        // Nothing is fetched from anywhere else (the SVG namespace is a name, not a fetch).
        for asset in std::iter::once(&INDEX).chain(ASSETS) {
            let body = asset.body.replace("'http://www.w3.org/2000/svg'", "");
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{} reaches outside the cloud",
                asset.name
            );
        }
        // The script never writes a style attribute (blocked by `style-src 'self'`).
        for asset in ASSETS {
            assert!(
                !asset.body.contains("setAttribute('style'"),
                "{} sets a style attribute",
                asset.name
            );
        }
    }

    #[tokio::test]
    async fn every_file_is_served_with_the_policy() {
        use tower::ServiceExt;
        let app: Router = routes();
        for path in [
            "/hq/",
            "/hq/ui/app.js",
            "/hq/ui/strings.js",
            "/hq/ui/app.css",
        ] {
            let response = app
                .clone()
                .oneshot(
                    axum::http::Request::get(path)
                        .body(axum::body::Body::empty())
                        .expect("request"),
                )
                .await
                .expect("response");
            assert_eq!(response.status(), 200, "{path}");
            let headers = response.headers();
            assert_eq!(headers[CONTENT_SECURITY_POLICY], POLICY, "{path}");
            assert_eq!(headers[CACHE_CONTROL], "no-cache", "{path}");
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        }
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
