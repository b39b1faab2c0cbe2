//! The cloud's web apps (the HQ dashboard at `/hq/`, the customer app at `/`): files embedded
//! in the binary with `include_str!` and served with the headers every one of them needs.
//!
//! Why embedded: an app must speak the API of the cloud that serves it, in that cloud's
//! version, with nothing else to deploy; the apps are hand-written HTML, CSS and JavaScript
//! with no build step, so what is in the repository is what runs. Each app passes its own
//! content security policy; the other headers are the same for all.

use axum::http::HeaderName;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::http::ApiError;

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

pub const HTML: &str = "text/html; charset=utf-8";
pub const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
pub const CSS: &str = "text/css; charset=utf-8";

/// `asset` under `policy`.
pub fn serve(asset: &Asset, policy: HeaderValue) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (CONTENT_SECURITY_POLICY, policy),
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

/// The file of `assets` named `name` under `policy`, or 404.
pub fn serve_named(
    assets: &[Asset],
    name: &str,
    policy: HeaderValue,
) -> Result<Response, ApiError> {
    assets
        .iter()
        .find(|a| a.name == name)
        .map(|asset| serve(asset, policy))
        .ok_or_else(|| ApiError::NotFound("no such file".into()))
}

/// What every app's own test checks of its files: `index` loads each of `assets` from
/// `prefix` and nothing else, with no inline script, style or handler (the policies block
/// them), no address outside the cloud, and no script writing a style attribute.
#[cfg(test)]
pub fn check_app(index: &Asset, assets: &[Asset], prefix: &str) {
    for asset in assets {
        let path = format!("{prefix}{}", asset.name);
        assert!(
            index.body.contains(&path),
            "index.html does not load {path}"
        );
    }
    assert!(
        !index.body.contains("<script>"),
        "inline script in index.html"
    );
    assert!(
        !index.body.contains("style=\"") && !index.body.contains("<style"),
        "inline style in index.html"
    );
    assert!(
        !index.body.contains(" onclick="),
        "inline handler in index.html"
    );
    // The SVG namespace is a name, not a fetch.
    for asset in std::iter::once(index).chain(assets) {
        let body = asset.body.replace("'http://www.w3.org/2000/svg'", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{} reaches outside the cloud",
            asset.name
        );
    }
    for asset in assets {
        assert!(
            !asset.body.contains("setAttribute('style'"),
            "{} sets a style attribute",
            asset.name
        );
    }
}

/// What every app's own test checks of its routes: each of `paths` answers 200 under
/// `policy` with the common headers.
#[cfg(test)]
pub async fn check_served(app: axum::Router, paths: &[&str], policy: &str) {
    use tower::ServiceExt;
    for path in paths {
        let response = app
            .clone()
            .oneshot(
                axum::http::Request::get(*path)
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers[CONTENT_SECURITY_POLICY], policy, "{path}");
        assert_eq!(headers[CACHE_CONTROL], "no-cache", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
}
