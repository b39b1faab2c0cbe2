//! The staff tablet app: a few static files embedded in the binary and served at `/`.
//!
//! Why embedded: the store's LAN may have no internet, and a tablet must get the app from the
//! daemon it talks to, in the version that daemon's API speaks. The app is hand-written HTML,
//! CSS and JavaScript (`edge/ui/`), with no build step, so what is in the repository is what
//! runs. Every response forbids scripts and styles from anywhere but here, and framing.

use axum::Router;
use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../ui/index.html"),
};

/// The files under `/ui/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../ui/app.js"),
    },
    Asset {
        name: "strings.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../ui/strings.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../ui/app.css"),
    },
];

const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                      base-uri 'none'; form-action 'self'";

/// `/` and `/ui/{file}`, for the daemon's router (state-free, so any state type fits).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { serve(&INDEX) }))
        .route("/ui/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == file)
        .map(serve)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file"))
}

fn serve(asset: &Asset) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
            // The app is as new as the daemon: a tablet must not keep an old copy after an
            // upgrade, and the files are small on a LAN.
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
        for name in ["/ui/app.js", "/ui/strings.js", "/ui/app.css"] {
            assert!(INDEX.body.contains(name), "index.html does not load {name}");
        }
        // No inline script or style: the policy would block them.
        assert!(
            !INDEX.body.contains("<script>"),
            "inline script in index.html"
        );
        assert!(
            !INDEX.body.contains("style=\""),
            "inline style in index.html"
        );
        assert!(!INDEX.body.contains("http://") && !INDEX.body.contains("https://"));
    }
}
