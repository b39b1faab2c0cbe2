//! Customer accounts over real HTTP against a cloud on a free port: sign-up and sign-in answer
//! with a bearer token (mobile) and set an HttpOnly, SameSite=Strict cookie (web) whose changes
//! need the session's CSRF token; wrong credentials get one 401; failed sign-ins are held back
//! per client address and per e-mail (429 even for the right password); duplicates and bad input
//! change nothing; signing out or expiry ends a session; saved addresses are each customer's
//! own; an account customer orders through the same intake and nobody else reads the order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;

use common::api::{Api, order_of};
use common::{ADMIN, cloud_config, hq_sql};
use flashkart_cloud::{CloudConfig, RunningCloud};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A signed-in customer as both apps hold them: the bearer token (mobile) and the cookie with
/// its CSRF token (web).
#[derive(Debug, Clone)]
struct Session {
    customer_id: String,
    token: String,
    cookie: String,
    csrf: String,
}

/// `base`'s API called from another client address (any of 127.0.0.0/8 reaches the loopback
/// listener), so each address's failures count on their own.
fn from_address(base: &Api, ip: &str) -> Api {
    Api {
        http: reqwest::Client::builder()
            .local_address(ip.parse::<IpAddr>().unwrap())
            .build()
            .unwrap(),
        base: base.base.clone(),
    }
}

async fn post_json(api: &Api, path: &str, body: Value) -> reqwest::Response {
    api.http
        .post(format!("{}{path}", api.base))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Checks a sign-up or sign-in answer and its cookie.
async fn session_of(response: reqwest::Response) -> (Session, Value) {
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["fk_customer=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "off by default: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("fks_"), "{body}");
    assert_eq!(cookie, format!("fk_customer={token}"));
    let session = Session {
        customer_id: body["customer_id"].as_str().unwrap().to_owned(),
        token,
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    };
    assert_eq!(session.csrf.len(), 64, "{body}");
    (session, body)
}

async fn sign_up(api: &Api, email: &str, password: &str, first_name: &str) -> Session {
    let response = post_json(
        api,
        "/api/v1/account/sign-up",
        json!({"email": email, "password": password, "first_name": first_name}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    session_of(response).await.0
}

async fn sign_in(api: &Api, email: &str, password: &str) -> Result<Session, (StatusCode, Value)> {
    let response = post_json(
        api,
        "/api/v1/account/sign-in",
        json!({"email": email, "password": password}),
    )
    .await;
    let status = response.status();
    if status != StatusCode::OK {
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
        }
        return Err((status, response.json().await.unwrap_or(Value::Null)));
    }
    Ok(session_of(response).await.0)
}

/// A request from the web app: the cookie, and the CSRF token when `csrf` is given.
async fn web(
    api: &Api,
    session: &Session,
    method: Method,
    path: &str,
    body: Option<Value>,
    csrf: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = api
        .http
        .request(method, format!("{}{path}", api.base))
        .header(COOKIE, &session.cookie);
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn start(config: CloudConfig) -> (RunningCloud, CancellationToken, Api) {
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .expect("cloud starts");
    let api = Api::new(running.addr);
    (running, shutdown, api)
}

#[tokio::test]
async fn sign_up_sign_in_and_sessions_by_cookie_and_bearer() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown, api) = start(cloud_config(dir.path())).await;

    let response = post_json(
        &api,
        "/api/v1/account/sign-up",
        json!({"email": "  Ada@Example.COM ", "password": "correct horse 1", "first_name": " Ada "}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let (ada, body) = session_of(response).await;
    assert_eq!(body["email"], "ada@example.com", "trimmed and lower-cased");
    assert_eq!(body["first_name"], "Ada");
    assert!(body["expires_at"].is_string(), "{body}");
    assert_eq!(
        (
            hq_sql::rows(dir.path(), "customers").await,
            hq_sql::rows(dir.path(), "customer_accounts").await
        ),
        (1, 1)
    );

    // The same e-mail again (any case) is 409; input of the wrong shape is 400/422; neither
    // writes anything.
    let response = post_json(
        &api,
        "/api/v1/account/sign-up",
        json!({"email": "ADA@example.com", "password": "another password", "first_name": "Eve"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["message"],
        "an account with this e-mail exists; sign in instead"
    );
    let long_email = format!("{}@example.com", "a".repeat(250));
    for (bad, status) in [
        (
            json!({"email": "ada", "password": "correct horse 1", "first_name": "A"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"email": "a b@example.com", "password": "correct horse 1", "first_name": "A"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"email": "a@b@example.com", "password": "correct horse 1", "first_name": "A"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"email": long_email, "password": "correct horse 1", "first_name": "A"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"email": "bo@example.com", "password": "too short", "first_name": "Bo"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"email": "bo@example.com", "password": "x".repeat(129), "first_name": "Bo"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"email": "bo@example.com", "password": "correct horse 1", "first_name": " "}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"email": "bo@example.com", "password": "correct horse 1", "first_name": "B".repeat(61)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"email": "bo@example.com", "password": "correct horse 1"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"email": "bo@example.com", "password": "correct horse 1", "first_name": "Bo", "admin": true}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = post_json(&api, "/api/v1/account/sign-up", bad.clone()).await;
        assert_eq!(response.status(), status, "{bad}");
        assert!(!response.headers().contains_key(SET_COOKIE));
    }
    let response = api
        .http
        .post(format!("{}/api/v1/account/sign-up", api.base))
        .body(vec![b'{'; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        (
            hq_sql::rows(dir.path(), "customers").await,
            hq_sql::rows(dir.path(), "customer_accounts").await
        ),
        (1, 1),
        "nothing written"
    );

    // One answer whether the e-mail is unknown or the password wrong.
    let (status, wrong_password) = sign_in(&api, "ada@example.com", "wrong horse 1")
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, unknown) = sign_in(&api, "nobody@example.com", "correct horse 1")
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password, unknown);
    let mobile = sign_in(&api, " ADA@example.com", "correct horse 1")
        .await
        .unwrap();
    assert_eq!(mobile.customer_id, ada.customer_id);
    assert_ne!(
        mobile.token, ada.token,
        "each sign-in is a session of its own"
    );

    // Reads: the bearer (no CSRF ever) and the cookie (no CSRF on a read).
    let (status, me) = api
        .call(Method::GET, "/api/v1/account", &mobile.token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["customer_id"], ada.customer_id.as_str());
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["first_name"], "Ada");
    let (status, me) = web(&api, &ada, Method::GET, "/api/v1/account", None, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        me["csrf_token"],
        ada.csrf.as_str(),
        "a reloaded page gets its CSRF token back"
    );

    // A change by cookie needs the session's CSRF token; by bearer it does not.
    let home = json!({"label": "Home", "text": "Somewhere 1, Berlin", "lat": 52.5, "lon": 13.4});
    let path = "/api/v1/account/addresses";
    let (status, body) = web(&api, &ada, Method::POST, path, Some(home.clone()), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = web(
        &api,
        &ada,
        Method::POST,
        path,
        Some(home.clone()),
        Some(&mobile.csrf),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "another session's token: {body}"
    );
    let (status, body) = web(
        &api,
        &ada,
        Method::POST,
        path,
        Some(home.clone()),
        Some(&ada.csrf),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .call(Method::POST, path, &mobile.token, Some(home.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(hq_sql::rows(dir.path(), "customer_addresses").await, 2);

    // No credential, an unknown session, an HQ-issued token on the account routes.
    let (status, _) = api.call(Method::GET, "/api/v1/account", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let forged = format!("fks_{}", "0".repeat(64));
    let (status, _) = api
        .call(Method::GET, "/api/v1/account", &forged, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let stranger = Session {
        cookie: format!("fk_customer={forged}"),
        ..ada.clone()
    };
    let (status, _) = web(&api, &stranger, Method::GET, "/api/v1/account", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, hq_customer) = api
        .admin(
            Method::POST,
            "/admin/v1/customers",
            json!({"first_name": "Hal"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let hq_token = hq_customer["token"].as_str().unwrap();
    let (status, body) = api
        .call(Method::GET, "/api/v1/account", hq_token, None)
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "no account behind it: {body}"
    );
    let (status, _) = api.call(Method::GET, "/api/v1/account", ADMIN, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "HQ is not a customer");

    // Signing out (the cookie's needs its CSRF token) ends that session only.
    let (status, _) = web(
        &api,
        &ada,
        Method::POST,
        "/api/v1/account/sign-out",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let response = api
        .http
        .post(format!("{}/api/v1/account/sign-out", api.base))
        .header(COOKIE, &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cleared = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("fk_customer=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let (status, _) = web(&api, &ada, Method::GET, "/api/v1/account", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call(Method::GET, "/api/v1/account", &ada.token, None)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the same session by bearer"
    );
    let (status, _) = api
        .call(Method::GET, "/api/v1/account", &mobile.token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "the other session goes on");
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v1/account/sign-out",
            &mobile.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .call(Method::GET, "/api/v1/account", &mobile.token, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An expired session is over too.
    let late = sign_in(&api, "ada@example.com", "correct horse 1")
        .await
        .unwrap();
    let (status, _) = api
        .call(Method::GET, "/api/v1/account", &late.token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    hq_sql::execute(
        dir.path(),
        "UPDATE customer_sessions SET expires_at = '2020-01-01T00:00:00.000Z'",
    )
    .await;
    let (status, _) = api
        .call(Method::GET, "/api/v1/account", &late.token, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = web(&api, &late, Method::GET, "/api/v1/account", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn failed_sign_ins_are_held_back_per_address_and_per_email() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloud_config(dir.path());
    config.customers.max_sign_ups_per_window = 3;
    let (running, shutdown, base) = start(config).await;
    sign_up(&base, "ada@example.com", "ada password 1", "Ada").await;
    sign_up(&base, "bo@example.com", "bo password 12", "Bo").await;

    // A guesser at one address: the default allows 10 failures in 5 minutes.
    let guesser = from_address(&base, "127.0.0.2");
    for _ in 0..10 {
        assert_eq!(
            sign_in(&guesser, "ada@example.com", "guess guess")
                .await
                .unwrap_err()
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, body) = sign_in(&guesser, "ada@example.com", "ada password 1")
        .await
        .unwrap_err();
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits: {body}"
    );

    // The same e-mail from a fresh address waits too: its failures are counted on their own...
    let fresh = from_address(&base, "127.0.0.3");
    let (status, body) = sign_in(&fresh, "ADA@example.com", "ada password 1")
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("this e-mail"),
        "{body}"
    );
    // ...and another account from that address is not held back.
    sign_in(&fresh, "bo@example.com", "bo password 12")
        .await
        .unwrap();

    // One address trying many e-mails (unknown ones count the same) is held back too.
    let sprayer = from_address(&base, "127.0.0.4");
    for i in 0..10 {
        assert_eq!(
            sign_in(&sprayer, &format!("guess{i}@example.com"), "guess guess")
                .await
                .unwrap_err()
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, body) = sign_in(&sprayer, "bo@example.com", "bo password 12")
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    sign_in(&base, "bo@example.com", "bo password 12")
        .await
        .unwrap();

    let metrics = base
        .http
        .get(format!("{}/metrics", base.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("flashkart_cloud_customer_sign_ins_failed_total 20"),
        "{metrics}"
    );

    // Sign-ups are bounded per address (3 in this config; the two above were from 127.0.0.1).
    let signer = from_address(&base, "127.0.0.5");
    for i in 0..3 {
        sign_up(
            &signer,
            &format!("new{i}@example.com"),
            "new password 1",
            "New",
        )
        .await;
    }
    let response = post_json(
        &signer,
        "/api/v1/account/sign-up",
        json!({"email": "new9@example.com", "password": "new password 1", "first_name": "New"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(hq_sql::rows(dir.path(), "customer_accounts").await, 5);

    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn saved_addresses_are_each_customers_own() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown, api) = start(cloud_config(dir.path())).await;
    let ada = sign_up(&api, "ada@example.com", "ada password 1", "Ada").await;
    let bo = sign_up(&api, "bo@example.com", "bo password 12", "Bo").await;
    let path = "/api/v1/account/addresses";

    let (status, saved) = api
        .call(
            Method::POST,
            path,
            &ada.token,
            Some(
                json!({"label": " Home ", "text": "Somewhere 1, Berlin", "lat": 52.5, "lon": 13.4}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    assert_eq!(saved["label"], "Home");
    assert_eq!(
        (saved["lat"].as_f64(), saved["lon"].as_f64()),
        (Some(52.5), Some(13.4))
    );
    let id = saved["id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    // Out of range or of the wrong shape: refused, nothing saved.
    for (bad, status) in [
        (
            json!({"label": "X", "text": "t", "lat": 90.5, "lon": 0.0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"label": "X", "text": "t", "lat": 0.0, "lon": -181.0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"label": "", "text": "t", "lat": 0.0, "lon": 0.0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"label": "X".repeat(61), "text": "t", "lat": 0.0, "lon": 0.0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"label": "X", "text": "t".repeat(501), "lat": 0.0, "lon": 0.0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"label": "X", "text": "a\u{1}b", "lat": 0.0, "lon": 0.0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"label": "X", "text": "t", "lat": "north", "lon": 0.0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"label": "X", "text": "t", "lat": 0.0}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, body) = api
            .call(Method::POST, path, &ada.token, Some(bad.clone()))
            .await;
        assert_eq!(got, status, "{bad}: {body}");
    }
    assert_eq!(hq_sql::rows(dir.path(), "customer_addresses").await, 1);

    // Bo sees none of Ada's and cannot delete hers.
    let (status, list) = api.call(Method::GET, path, &bo.token, None).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));
    let (status, _) = api
        .call(Method::DELETE, &format!("{path}/{id}"), &bo.token, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, list) = web(&api, &ada, Method::GET, path, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());

    // At most 20 each; deleting makes room. A cookie's delete needs the CSRF token.
    for i in 1..20 {
        let (status, body) = api
            .call(
                Method::POST,
                path,
                &ada.token,
                Some(json!({"label": format!("Place {i}"), "text": "Somewhere", "lat": 52.0, "lon": 13.0})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let twenty_first = json!({"label": "One more", "text": "Somewhere", "lat": 52.0, "lon": 13.0});
    let (status, body) = api
        .call(Method::POST, path, &ada.token, Some(twenty_first.clone()))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api
        .call(Method::POST, path, &bo.token, Some(twenty_first.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "Bo's own room: {body}");
    let (status, _) = web(
        &api,
        &ada,
        Method::DELETE,
        &format!("{path}/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = web(
        &api,
        &ada,
        Method::DELETE,
        &format!("{path}/{id}"),
        None,
        Some(&ada.csrf),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .call(Method::DELETE, &format!("{path}/{id}"), &ada.token, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "gone already");
    let (status, _) = api
        .call(Method::POST, path, &ada.token, Some(twenty_first))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, list) = api.call(Method::GET, path, &ada.token, None).await;
    assert_eq!(status, StatusCode::OK);
    let labels: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 20);
    assert_eq!(
        (labels[0], labels[19]),
        ("Place 1", "One more"),
        "oldest first"
    );

    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test]
async fn an_account_customer_orders_and_nobody_else_reads_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown, api) = start(cloud_config(dir.path())).await;
    let hq_customer = api.store_and_customer("store-1").await;
    let (status, body) = api
        .admin(
            Method::PUT,
            "/admin/v1/products/milk",
            json!({"name": "milk", "price_minor": 129}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let ada = sign_up(&api, "ada@example.com", "ada password 1", "Ada").await;
    let bo = sign_up(&api, "bo@example.com", "bo password 12", "Bo").await;

    // By bearer, like the mobile app.
    let (status, placed) = api.order(&ada.token, "ada-1", order_of("milk", 2)).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order_id = placed["order_id"].as_str().unwrap().to_owned();
    assert_eq!(placed["store_id"], "store-1");

    // By cookie, like the web app: the CSRF token is required.
    let place_by_cookie = |csrf: Option<String>| {
        let mut request = api
            .http
            .post(format!("{}/api/v1/orders", api.base))
            .header(COOKIE, &ada.cookie)
            .header("idempotency-key", "ada-2")
            .json(&order_of("milk", 1));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    assert_eq!(
        place_by_cookie(None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let response = place_by_cookie(Some(ada.csrf.clone())).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    // Ada reads her order either way; Bo, an HQ-issued customer and nobody do not.
    let path = format!("/api/v1/orders/{order_id}");
    let (status, view) = api.call(Method::GET, &path, &ada.token, None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["order"]["customer_id"], ada.customer_id.as_str());
    let (status, _) = web(&api, &ada, Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::GET, &path, &bo.token, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = web(&api, &bo, Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call(Method::GET, &path, &hq_customer, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call(Method::GET, &path, "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/admin/v1/orders/{order_id}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Nor may Bo cancel it.
    let (status, _) = api
        .call(
            Method::POST,
            &format!("{path}/cancel"),
            &bo.token,
            Some(json!({"reason": "not mine"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Ada's history: her two orders, newest first; Bo's is empty; nobody has none.
    let (status, history) = api
        .call(Method::GET, "/api/v1/orders", &ada.token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let listed: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{history}");
    assert_eq!(
        listed[1], order_id,
        "the first order is the older: {history}"
    );
    let (status, newest) = web(
        &api,
        &ada,
        Method::GET,
        "/api/v1/orders?limit=1",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(newest.as_array().map(Vec::len), Some(1), "{newest}");
    assert_eq!(newest[0]["id"], listed[0]);
    let (status, none) = api
        .call(Method::GET, "/api/v1/orders", &bo.token, None)
        .await;
    assert_eq!((status, none), (StatusCode::OK, json!([])));
    let (status, _) = api.call(Method::GET, "/api/v1/orders", "", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call(Method::GET, "/api/v1/orders?limit=lots", &ada.token, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The HQ-issued token goes on working for its own orders.
    let (status, placed) = api.order(&hq_customer, "hq-1", order_of("milk", 1)).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");

    shutdown.cancel();
    running.wait().await.unwrap();
}
