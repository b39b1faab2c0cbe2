//! HQ users over real HTTP: a password sign-in sets an HttpOnly, SameSite=Strict session
//! cookie; with it the admin API answers within the user's role (viewer reads, operator runs
//! the city, admin manages credentials and users); a change without the session's CSRF token
//! is refused; every change is in the audit log with who made it and why; failed sign-ins are
//! rate-limited per address; signing out, a new password or a deactivation ends sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::Api;
use common::*;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A browser's view: the session cookie and the CSRF token from the sign-in answer.
struct Browser {
    cookie: String,
    csrf: String,
}

async fn sign_in(api: &Api, username: &str, password: &str) -> Result<Browser, StatusCode> {
    let response = api
        .http
        .post(format!("{}/hq/api/sign-in", api.base))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    if response.status() != StatusCode::OK {
        return Err(response.status());
    }
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], username);
    Ok(Browser {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    })
}

/// A request from the dashboard: the cookie, and the CSRF token unless `csrf` is false.
async fn call(
    api: &Api,
    browser: &Browser,
    method: Method,
    path: &str,
    body: Option<Value>,
    csrf: bool,
) -> (StatusCode, Value) {
    let mut request = api
        .http
        .request(method, format!("{}{path}", api.base))
        .header(COOKIE, &browser.cookie);
    if csrf {
        request = request.header("x-csrf-token", &browser.csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn put_user(api: &Api, username: &str, role: &str, password: Option<&str>) -> StatusCode {
    let mut body = json!({"name": username.to_uppercase(), "role": role});
    if let Some(password) = password {
        body["password"] = json!(password);
    }
    api.admin(Method::PUT, &format!("/admin/v1/hq-users/{username}"), body)
        .await
        .0
}

#[tokio::test]
async fn hq_users_work_within_their_roles_and_every_change_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let api = Api::new(running.addr);
    api.store_and_customer("store-1").await;

    assert_eq!(
        put_user(&api, "olga", "operator", Some("olga-password-1")).await,
        StatusCode::OK
    );
    assert_eq!(
        put_user(&api, "vik", "viewer", Some("vik-password-12")).await,
        StatusCode::OK
    );
    assert_eq!(
        put_user(&api, "shorty", "viewer", Some("short")).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        put_user(&api, "ghost", "viewer", None).await,
        StatusCode::NOT_FOUND,
        "a new user needs a password"
    );
    assert_eq!(
        put_user(&api, "Bad Name", "viewer", Some("long-enough-pw")).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    assert_eq!(
        sign_in(&api, "olga", "wrong-password").await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        sign_in(&api, "nobody", "olga-password-1").await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let olga = sign_in(&api, "olga", "olga-password-1").await.unwrap();
    let vik = sign_in(&api, "vik", "vik-password-12").await.unwrap();

    // Reads for every role; `me` gives a reloaded page its CSRF token back.
    let (status, me) = call(&api, &vik, Method::GET, "/hq/api/me", None, false).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (me["role"].as_str(), me["csrf_token"].as_str()),
        (Some("viewer"), Some(vik.csrf.as_str()))
    );
    let (status, stores) = call(&api, &vik, Method::GET, "/admin/v1/stores", None, false).await;
    assert_eq!(status, StatusCode::OK, "{stores}");

    // An operator's change needs the CSRF token, and is recorded with who made it.
    let coupon = json!({"percent_off": 10});
    let (status, body) = call(
        &api,
        &olga,
        Method::PUT,
        "/admin/v1/coupons/WINTER10",
        Some(coupon.clone()),
        false,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "without the CSRF token: {body}"
    );
    let (status, body) = call(
        &api,
        &olga,
        Method::PUT,
        "/admin/v1/coupons/WINTER10",
        Some(coupon.clone()),
        true,
    )
    .await;
    assert!(status.is_success(), "{status} {body}");

    // A viewer changes nothing, CSRF token or not; the API refuses, not only the screen.
    let (status, body) = call(
        &api,
        &vik,
        Method::PUT,
        "/admin/v1/coupons/SPRING",
        Some(coupon.clone()),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call(
        &api,
        &vik,
        Method::POST,
        "/api/v1/orders/any/cancel",
        Some(json!({"reason": "x"})),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Credentials and users are an admin's.
    let (status, _) = call(
        &api,
        &olga,
        Method::POST,
        "/admin/v1/stores",
        Some(json!({"id": "store-9"})),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&api, &olga, Method::GET, "/admin/v1/hq-users", None, false).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, log) = call(
        &api,
        &vik,
        Method::GET,
        "/admin/v1/audit?limit=10",
        None,
        false,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let entries = log.as_array().unwrap();
    let winter = entries
        .iter()
        .find(|e| e["path"] == "/admin/v1/coupons/WINTER10")
        .unwrap_or_else(|| panic!("the coupon change is not in {log}"));
    assert_eq!(winter["actor"], "olga");
    assert_eq!(winter["role"], "operator");
    assert_eq!(winter["method"], "PUT");
    assert_eq!(winter["status"], 204);
    assert_eq!(winter["reason"], Value::Null);
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "admin-token" && e["path"] == "/admin/v1/hq-users/vik"),
        "the admin token's changes are recorded too: {log}"
    );
    assert!(
        !entries
            .iter()
            .any(|e| e["path"] == "/admin/v1/coupons/SPRING"),
        "a refused change made nothing to record: {log}"
    );

    // Signing out ends the session; a new password ends the others'.
    let (status, _) = call(&api, &vik, Method::POST, "/hq/api/sign-out", None, true).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&api, &vik, Method::GET, "/admin/v1/stores", None, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        put_user(&api, "olga", "operator", Some("olga-password-2")).await,
        StatusCode::OK
    );
    let (status, _) = call(&api, &olga, Method::GET, "/hq/api/me", None, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let olga = sign_in(&api, "olga", "olga-password-2").await.unwrap();
    let (status, _) = api
        .admin(
            Method::PUT,
            "/admin/v1/hq-users/olga",
            json!({"name": "Olga", "role": "operator", "active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&api, &olga, Method::GET, "/admin/v1/stores", None, false).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a deactivated user is signed out"
    );
    assert_eq!(
        sign_in(&api, "olga", "olga-password-2").await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );

    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn failed_sign_ins_are_held_back_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let api = Api::new(running.addr);
    assert_eq!(
        put_user(&api, "ana", "admin", Some("ana-password-1")).await,
        StatusCode::OK
    );
    // The default allows 10 failures per address in 5 minutes.
    for _ in 0..10 {
        assert_eq!(
            sign_in(&api, "ana", "guess-guess").await.err(),
            Some(StatusCode::UNAUTHORIZED)
        );
    }
    let response = api
        .http
        .post(format!("{}/hq/api/sign-in", api.base))
        .json(&json!({"username": "ana", "password": "ana-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(response.headers().contains_key("retry-after"));
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("flashkart_cloud_hq_sign_ins_failed_total 10"),
        "{metrics}"
    );
    shutdown.cancel();
    running.wait().await.unwrap();
}
