//! A hostile LAN user (issue 15): PIN brute force, out-of-range numbers, impossible dates and
//! oversized text, and the sync lag while the cloud is away. All over the real HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn try_sign_in(api: &Api, staff_id: &str, pin: &str) -> (StatusCode, Value) {
    api.call(
        Method::POST,
        "/api/v1/auth/sign-in",
        None,
        Some(json!({ "staff_id": staff_id, "pin": pin })),
    )
    .await
}

async fn metrics(api: &Api) -> String {
    api.http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_brute_force_is_locked_out_and_a_manager_unlocks() {
    // Long enough that the lock is certainly in force for the whole test.
    let daemon = Daemon::start_with(tempfile::tempdir().unwrap(), |c| {
        c.sign_in.lock_ms = 600_000;
    })
    .await;
    let api = daemon.api.clone();
    let t = seed(&api).await;

    // An unknown id is refused exactly like a wrong PIN.
    let unknown = try_sign_in(&api, "ghost", "000000").await;
    let wrong = try_sign_in(&api, "lea", "000000").await;
    assert_eq!(unknown.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown, wrong,
        "unknown id and wrong PIN must look the same"
    );
    // Lea's one failure is forgotten when she signs in.
    api.sign_in("lea", "222222").await;

    // Guessing Pia's PIN: stopped well within 10 tries.
    let mut tries = 0;
    let locked = loop {
        assert!(tries < 10, "still guessing after {tries} tries");
        tries += 1;
        let (status, body) = try_sign_in(&api, "pia", &format!("{:06}", 900_000 + tries)).await;
        if status != StatusCode::UNAUTHORIZED {
            break (status, body);
        }
    };
    assert_eq!(locked.0, StatusCode::TOO_MANY_REQUESTS, "{}", locked.1);
    assert_eq!(locked.1["error"], "locked");
    assert!(tries <= 6, "locked after {tries} tries");

    // Locked: even the right PIN is refused, with a clear message and Retry-After.
    let response = api
        .http
        .post(format!("{}/api/v1/auth/sign-in", api.base))
        .json(&json!({"staff_id": "pia", "pin": "111111"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 500, "{retry_after}");
    let body: Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("pia") && message.contains("locked") && message.contains("manager"),
        "{message}"
    );
    // Her open session still works; the lock is on signing in.
    assert_eq!(
        api.get(&t.picker, "/api/v1/auth/me").await.0,
        StatusCode::OK
    );

    // Unknown ids lock the same way (a lockout does not tell which ids exist).
    for _ in 0..5 {
        try_sign_in(&api, "ghost", "000000").await;
    }
    assert_eq!(
        try_sign_in(&api, "ghost", "000000").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Every failure is counted on /metrics, both refusals under one reason.
    let text = metrics(&api).await;
    assert!(
        counter(
            &text,
            "flashkart_edge_sign_in_failures_total{reason=\"bad_credentials\"}"
        ) >= 7,
        "{text}"
    );
    assert!(
        counter(
            &text,
            "flashkart_edge_sign_in_failures_total{reason=\"account_locked\"}"
        ) >= 3,
        "{text}"
    );

    // Only a manager lists and clears locks.
    let (status, _) = api
        .post(&t.lead, "/api/v1/staff/pia/unlock", json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, locks) = api.get(&t.manager, "/api/v1/auth/lockouts").await;
    assert_eq!(status, StatusCode::OK, "{locks}");
    assert!(
        locks
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "account" && l["key"] == "pia"),
        "{locks}"
    );
    let unlocked = api
        .ok(&t.manager, "/api/v1/staff/pia/unlock", json!({}))
        .await;
    assert_eq!(unlocked["was_locked"], true);
    api.sign_in("pia", "111111").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_spraying_ids_is_locked_out() {
    let daemon = Daemon::start_with(tempfile::tempdir().unwrap(), |c| {
        c.sign_in.client_lock_after = 4;
        c.sign_in.lock_ms = 600_000;
    })
    .await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    for i in 0..4 {
        let (status, _) = try_sign_in(&api, &format!("id-{i}"), "123456").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = try_sign_in(&api, "lea", "222222").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("127.0.0.1"),
        "{body}"
    );
    let unlocked = api
        .ok(
            &t.manager,
            "/api/v1/auth/clients/127.0.0.1/unlock",
            json!({}),
        )
        .await;
    assert_eq!(unlocked["was_locked"], true);
    api.sign_in("lea", "222222").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_have_a_minimum_length_and_sessions_per_member_are_bounded() {
    let daemon = Daemon::start_with(tempfile::tempdir().unwrap(), |c| {
        c.sign_in.max_sessions_per_staff = 2;
    })
    .await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    let (status, body) = api
        .post(
            &t.manager,
            "/api/v1/staff",
            json!({"id": "sam", "name": "Sam", "role": "picker", "pin": "1234"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("6 to"), "{body}");
    let (status, body) = api
        .post(
            &t.manager,
            "/api/v1/staff",
            json!({"id": "sam", "name": "x".repeat(10_000), "role": "picker", "pin": "123456"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        try_sign_in(&api, "sam", "123456").await.0,
        StatusCode::UNAUTHORIZED
    );

    // A third sign-in ends the oldest of Pia's sessions.
    let second = api.sign_in("pia", "111111").await;
    let third = api.sign_in("pia", "111111").await;
    assert_eq!(
        api.get(&t.picker, "/api/v1/auth/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(api.get(&second, "/api/v1/auth/me").await.0, StatusCode::OK);
    assert_eq!(api.get(&third, "/api/v1/auth/me").await.0, StatusCode::OK);
    daemon.stop().await;

    // A manager PIN below the minimum stops a fresh store from starting.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.manager_pin = Some("1234".into());
    let error = flashkart_edge::start(config, tokio_util::sync::CancellationToken::new())
        .await
        .expect_err("a 4-digit manager PIN is refused");
    assert!(error.to_string().contains("6 to"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_numbers_are_refused_and_change_nothing() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    api.ok(
        &t.lead,
        "/api/v1/stock/receive",
        json!({"product_id": MILK, "qty": 10, "bin_id": "A-01-1"}),
    )
    .await;
    let before = api.level(&t.lead, MILK).await;
    for qty in [i64::MIN, i64::MAX, i64::MIN + 1, -1_000_001, 1_000_001] {
        for (path, body) in [
            (
                "/api/v1/stock/adjust",
                json!({"product_id": MILK, "bin_id": "A-01-1", "qty": qty, "reason": "correction"}),
            ),
            (
                "/api/v1/stock/count",
                json!({"product_id": MILK, "bin_id": "A-01-1", "counted": qty}),
            ),
            (
                "/api/v1/stock/receive",
                json!({"product_id": MILK, "bin_id": "A-01-1", "qty": qty}),
            ),
            (
                "/api/v1/intake/orders",
                json!({"id": "o-big", "lines": [{"product_id": MILK, "qty": qty}]}),
            ),
        ] {
            let (status, reply) = api.post(&t.manager, path, body).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {qty}: {reply}"
            );
            assert_eq!(reply["error"], "invalid", "{path} {qty}: {reply}");
        }
    }
    // A case whose pieces overflow: count × pack_qty.
    let (status, reply) = api
        .post(
            &t.lead,
            "/api/v1/stock/receive",
            json!({"gtin": gtin("milk-case"), "bin_id": "A-01-1", "qty": 999_999}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(api.level(&t.lead, MILK).await, before);
    // The writer is alive and well.
    let adjusted = api
        .ok(
            &t.lead,
            "/api/v1/stock/adjust",
            json!({"product_id": MILK, "bin_id": "A-01-1", "qty": -1, "reason": "damage"}),
        )
        .await;
    assert_eq!(adjusted["level"]["on_hand"], 9);
    daemon.stop().await;
}

/// A GS1-128 case label as a scanner sends it: AIM `]C1`, FNC1 as ASCII 29.
fn case_label(data: &str) -> String {
    format!("]C1{}", data.replace("<GS>", "\u{1d}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiving_refuses_impossible_dates_and_oversized_text() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    let case14 = gtin("milk-case");
    let cases = [
        json!({"product_id": MILK, "qty": 1, "bin_id": "A-01-1", "expiry": "1900-02-30"}),
        json!({"product_id": MILK, "qty": 1, "bin_id": "A-01-1", "expiry": "2026-13-01"}),
        json!({"product_id": MILK, "qty": 1, "bin_id": "A-01-1", "lot": "L".repeat(100_000)}),
        json!({"product_id": MILK, "qty": 1, "bin_id": "A-01-1", "lot": "bad\nlot"}),
        json!({"product_id": MILK, "qty": 1, "bin_id": "B".repeat(10_000)}),
        // The same through a case label: 30 February, AI (17).
        json!({"scan": case_label(&format!("01{case14}1726023010LOT-A<GS>302"))}),
        json!({"scan": "x".repeat(100_000)}),
    ];
    for body in cases {
        let (status, reply) = api.post(&t.picker, "/api/v1/stock/receive", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    }
    let (status, reply) = api
        .post(
            &t.lead,
            "/api/v1/stock/adjust",
            json!({"product_id": MILK, "bin_id": "A-01-1", "qty": 1, "reason": "found",
                   "note": "n".repeat(10_000)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(api.level(&t.picker, MILK).await, (0, 0, 0));
    // A real date and a sane lot are fine.
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"product_id": MILK, "qty": 1, "bin_id": "A-01-1", "expiry": "2028-02-29",
               "lot": "L-2028/02"}),
    )
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_lag_counts_local_changes_while_the_cloud_is_unreachable() {
    let daemon = Daemon::start().await;
    let t = seed(&daemon.api).await;
    let dir = daemon.stop().await;

    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = Daemon::start_with(dir, |c| {
        c.sync = Some(flashkart_sync::client::ClientConfig::new(
            format!("http://127.0.0.1:{port}"),
            "token",
        ));
    })
    .await;
    let api = daemon.api.clone();
    const N: u64 = 25;
    for _ in 0..N {
        api.ok(
            &t.lead,
            "/api/v1/stock/receive",
            json!({"product_id": MILK, "qty": 1, "bin_id": "A-01-1"}),
        )
        .await;
    }
    let (status, body) = api.get(&t.lead, "/api/v1/sync/status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["online"], false, "{body}");
    let lag = body["status"]["lag_changes"].as_u64().unwrap();
    assert!(lag >= N, "lag_changes {lag} with {N} moves waiting: {body}");
    daemon.stop().await;
}
