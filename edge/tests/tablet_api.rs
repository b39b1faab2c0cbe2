//! What the staff tablet app relies on, over real HTTP against a running daemon: the app
//! itself served at `/` under a strict content policy; the live stream resumed with
//! `Last-Event-ID` (what was missed is replayed, or the tablet is told to reload); signing out
//! and a manager's PIN reset ending sessions at once; the manager's staff list; the products
//! list goods in and substitutions choose from; and the queues' due times, bag labels and
//! handoffs (who took what).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[tokio::test]
async fn the_app_is_served_from_the_binary_under_a_strict_policy() {
    let daemon = Daemon::start().await;
    let http = &daemon.api.http;
    let page = http
        .get(format!("{}/", daemon.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = page.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("default-src 'self'") && policy.contains("script-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/ui/app.js"), "{html}");

    for (file, kind) in [
        ("app.js", "text/javascript"),
        ("strings.js", "text/javascript"),
        ("app.css", "text/css"),
    ] {
        let asset = http
            .get(format!("{}/ui/{file}", daemon.api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), StatusCode::OK, "{file}");
        assert!(
            asset.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{file}"
        );
    }
    let (status, body) = daemon
        .api
        .call(reqwest::Method::GET, "/ui/../../etc/passwd", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = daemon
        .api
        .call(reqwest::Method::GET, "/ui/other.js", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    daemon.stop().await;
}

fn seq(event: &Value) -> u64 {
    event["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn a_resumed_stream_replays_what_was_missed_or_asks_for_a_reload() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;

    let mut events = api.events(&t.picker).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 1}),
    )
    .await;
    let seen = events
        .until("the first receipt", |e| e["type"] == "stock")
        .await;
    drop(events);

    // The tablet is away while two more receipts happen.
    for qty in [2, 3] {
        api.ok(
            &t.picker,
            "/api/v1/stock/receive",
            json!({"gtin": gtin(BREAD), "qty": qty}),
        )
        .await;
    }
    let last = seq(&seen).to_string();
    let mut resumed = api.events_after(&t.picker, Some(&last)).await;
    let first = resumed.next().await.1;
    let second = resumed.next().await.1;
    assert_eq!(
        (first["product_id"].as_str(), first["on_hand"].as_i64()),
        (Some(BREAD), Some(2))
    );
    assert_eq!(
        (second["product_id"].as_str(), second["on_hand"].as_i64()),
        (Some(BREAD), Some(5))
    );
    assert!(seq(&first) > seq(&seen) && seq(&second) > seq(&first));
    // Live events follow the replay, each once.
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(OAT), "qty": 4}),
    )
    .await;
    let live = resumed.next().await.1;
    assert_eq!(live["product_id"], OAT, "{live}");

    // An id this daemon never handed out (it restarted since): reload.
    let mut stale = api.events_after(&t.picker, Some("999999")).await;
    let (name, _) = stale.next().await;
    assert_eq!(name, "reset");
    daemon.stop().await;
}

#[tokio::test]
async fn signing_out_and_a_pin_reset_end_sessions_at_once() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;

    let (status, me) = api.get(&t.picker, "/api/v1/auth/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let (status, body) = api
        .post(&t.picker, "/api/v1/auth/sign-out", json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = api.get(&t.picker, "/api/v1/auth/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Only a manager sees the staff, and never a PIN's hash.
    let picker = api.sign_in("pia", "111111").await;
    let (status, _) = api.get(&picker, "/api/v1/staff").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, staff) = api.get(&t.manager, "/api/v1/staff").await;
    assert_eq!(status, StatusCode::OK, "{staff}");
    let pia = staff
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "pia")
        .unwrap();
    assert_eq!(pia["role"], "picker");
    assert_eq!(pia["active"], true);
    assert!(!staff.to_string().contains("argon2"), "{staff}");

    // A reset PIN: the member's tablets sign in again, with the new PIN only.
    let (status, _) = api
        .post(&picker, "/api/v1/staff/pia/pin", json!({"pin": "975310"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a picker resets no PIN");
    let (status, body) = api
        .post(
            &t.manager,
            "/api/v1/staff/pia/pin",
            json!({"pin": "975310"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.get(&picker, "/api/v1/auth/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/sign-in",
            None,
            Some(json!({"staff_id": "pia", "pin": "111111"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    api.sign_in("pia", "975310").await;

    let (status, body) = api
        .post(
            &t.manager,
            "/api/v1/staff/nobody/pin",
            json!({"pin": "975310"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api
        .post(&t.manager, "/api/v1/staff/pia/pin", json!({"pin": "12"}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a PIN too short: {body}"
    );
    daemon.stop().await;
}

fn at(text: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(text.as_str().unwrap(), &Rfc3339).unwrap()
}

#[tokio::test]
async fn queues_carry_due_times_bag_labels_and_who_took_what() {
    let daemon = Daemon::start_with(tempfile::tempdir().unwrap(), |c| {
        c.ready_within_minutes = 10;
    })
    .await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 3}),
    )
    .await;

    let (_, products) = api.get(&t.picker, "/api/v1/products").await;
    let milk = products
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == MILK)
        .unwrap()
        .clone();
    assert_eq!(milk["name"], "Whole Milk 1L", "{milk}");
    assert_eq!(milk["bin_id"], "A-01-1", "{milk}");
    assert_eq!(
        (milk["on_hand"].as_i64(), milk["available"].as_i64()),
        (Some(3), Some(3))
    );
    assert!(
        milk["gtins"]
            .as_array()
            .unwrap()
            .contains(&json!(gtin(MILK))),
        "{milk}"
    );

    api.ok(
        &t.manager,
        "/api/v1/intake/orders",
        json!({"id": "o-1", "customer_first_name": "Ada", "address": "1 Main St",
               "lines": [{"product_id": MILK, "qty": 1}]}),
    )
    .await;
    let (_, queues) = api.get(&t.picker, "/api/v1/queues").await;
    assert_eq!(queues["ready_within_minutes"], 10);
    let entry = &queues["new"][0];
    assert_eq!(entry["order_id"], "o-1", "{queues}");
    assert_eq!(
        at(&entry["due_at"]) - at(&entry["placed_at"]),
        time::Duration::minutes(10)
    );
    assert!(at(&queues["now"]) >= at(&entry["placed_at"]));

    api.ok(
        &t.picker,
        "/api/v1/orders/o-1/scan",
        json!({"code": gtin(MILK)}),
    )
    .await;
    let packed = api
        .ok(
            &t.picker,
            "/api/v1/orders/o-1/pack",
            json!({"bag_weight_g": 1030}),
        )
        .await;
    let label = packed["label_id"].as_str().unwrap().to_owned();
    api.ok(&t.picker, "/api/v1/orders/o-1/ready", json!({}))
        .await;
    let (_, queues) = api.get(&t.picker, "/api/v1/queues").await;
    assert_eq!(queues["ready"][0]["label_id"], label.as_str(), "{queues}");
    assert_eq!(queues["ready"][0]["status"], "READY");

    api.ok(
        &t.picker,
        "/api/v1/orders/o-1/handoff",
        json!({"rider_id": "r-7", "label_id": label}),
    )
    .await;
    let (_, queues) = api.get(&t.picker, "/api/v1/queues").await;
    assert_eq!(queues["ready"], json!([]), "{queues}");
    let took = &queues["handed_off"][0];
    assert_eq!(took["order_id"], "o-1", "{queues}");
    assert_eq!(took["rider_id"], "r-7");
    assert_eq!(took["label_id"], label.as_str());
    assert_eq!(took["staff_id"], "pia");
    daemon.stop().await;
}
