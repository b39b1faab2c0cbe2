//! Stock through the real server: corrections need a lead and refusals are JSON; goods in by
//! GS1-128 case label. The ledger is checked after each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_corrections_need_a_lead_and_errors_are_json() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 10, "lot": "A", "expiry": "2030-01-01"}),
    )
    .await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 5, "lot": "B", "expiry": "2030-06-01"}),
    )
    .await;

    // Roles: a picker may not adjust or count.
    let (status, body) = api
        .post(
            &t.picker,
            "/api/v1/stock/adjust",
            json!({"product_id": MILK, "bin_id": "A-01-1", "qty": -1, "reason": "damage"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden");
    let (status, _) = api
        .post(
            &t.picker,
            "/api/v1/stock/count",
            json!({"product_id": MILK, "bin_id": "A-01-1", "counted": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Damage comes from the first-expiring lot; found stock goes up.
    let damaged = api.ok(&t.lead, "/api/v1/stock/adjust",
        json!({"product_id": MILK, "bin_id": "A-01-1", "qty": -2, "reason": "damage", "note": "dropped"})).await;
    assert_eq!(damaged["level"]["on_hand"], 13);
    let (status, _) = api
        .post(
            &t.lead,
            "/api/v1/stock/adjust",
            json!({"product_id": MILK, "bin_id": "A-01-1", "qty": 2, "reason": "damage"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "damage is negative"
    );
    let (_, report) = api.get(&t.lead, &format!("/api/v1/stock/{MILK}")).await;
    assert_eq!(report["lots"][0]["on_hand"], 8);

    // A blind count of lot B finds 4 instead of 5: the difference is posted.
    let counted = api
        .ok(
            &t.lead,
            "/api/v1/stock/count",
            json!({"product_id": MILK, "bin_id": "A-01-1", "lot": "B", "counted": 4}),
        )
        .await;
    assert_eq!(counted["qty"], -1);
    assert_eq!(counted["level"]["on_hand"], 12);
    let same = api
        .ok(
            &t.lead,
            "/api/v1/stock/count",
            json!({"product_id": MILK, "bin_id": "A-01-1", "counted": 12}),
        )
        .await;
    assert_eq!(same["moves"], json!([]), "no difference, no move");

    // Reserved stock cannot be written off from under an order.
    api.ok(
        &t.manager,
        "/api/v1/intake/orders",
        json!({"id": "o-9", "lines": [{"product_id": MILK, "qty": 10}]}),
    )
    .await;
    let (status, body) = api
        .post(
            &t.lead,
            "/api/v1/stock/adjust",
            json!({"product_id": MILK, "bin_id": "A-01-1", "qty": -3, "reason": "expiry"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "insufficient_stock");
    assert!(
        body["message"].as_str().unwrap().contains("2 available"),
        "{body}"
    );
    assert_eq!(api.level(&t.lead, MILK).await, (12, 10, 2));

    // Malformed requests get JSON errors too.
    let response = api
        .http
        .post(format!("{}/api/v1/stock/receive", api.base))
        .bearer_auth(&t.picker)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "bad_json");
    let (status, body) = api
        .post(
            &t.picker,
            "/api/v1/stock/receive",
            json!({"gtin": gtin(MILK), "qty": "many"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "bad_json");
    let (status, body) = api
        .call(reqwest::Method::GET, "/api/v1/queues", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    let (status, body) = api.get(&t.picker, "/api/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    let (status, body) = api.get(&t.picker, "/api/v1/orders/o-404").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["message"].as_str().unwrap().contains("o-404"));
    let (status, body) = api
        .post(&t.picker, "/api/v1/orders/o-9/lines/x/short", json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/sign-in",
            None,
            Some(json!({"staff_id": "pia", "pin": "999999"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // No devices configured, no sync configured; health and metrics answer.
    let (_, devices) = api.get(&t.picker, "/api/v1/devices").await;
    assert_eq!(devices["connected"], false);
    assert_eq!(
        devices["configured"], false,
        "no [devices] section: {devices}"
    );
    assert!(devices["message"].as_str().unwrap().contains("[devices]"));
    let (_, sync) = api.get(&t.picker, "/api/v1/sync/status").await;
    assert_eq!(sync["configured"], false, "no [sync] section: {sync}");
    assert!(sync["message"].as_str().unwrap().contains("[sync]"));
    let (status, health) = api.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
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
        metrics.contains("flashkart_edge_stock_moves_total{kind=\"receive\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("flashkart_edge_http_requests_total"));
    daemon.stop().await;
}

/// A GS1-128 case label as a scanner sends it: AIM `]C1`, FNC1 as ASCII 29.
fn case_label(data: &str) -> String {
    format!("]C1{}", data.replace("<GS>", "\u{1d}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiving_by_gs1_128_case_label() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    let milk14 = format!("0{}", gtin(MILK));
    let case14 = gtin("milk-case");

    // AI 02 (the milk inside) with AI 37 counting it; expiry DD=00 is the month's last day.
    let received = api
        .ok(
            &t.picker,
            "/api/v1/stock/receive",
            json!({"scan": case_label(&format!("02{milk14}1730110010LOT-A<GS>3712"))}),
        )
        .await;
    assert_eq!(received["product_id"], MILK);
    assert_eq!(received["qty"], 12);
    assert_eq!(received["case_label"]["gtin"], milk14);
    assert_eq!(received["case_label"]["gtin_ai"], "02");
    assert_eq!(received["case_label"]["lot"], "LOT-A");
    assert_eq!(received["case_label"]["expiry"], "2030-11-30");
    assert_eq!(received["moves"].as_array().unwrap().len(), 1);

    // AI 01 (a case of six) with AI 30: two cases, twelve pieces; a bin besides the scan.
    let received = api
        .ok(
            &t.picker,
            "/api/v1/stock/receive",
            json!({"scan": case_label(&format!("01{case14}1730061510L9<GS>302")),
                   "bin_id": "A-01-1", "lot": "L9", "qty": 2}),
        )
        .await;
    assert_eq!(received["qty"], 12, "2 cases × 6: {received}");
    assert_eq!(received["case_label"]["pack_qty"], 6);
    assert_eq!(api.level(&t.picker, MILK).await, (24, 0, 24));
    let (_, report) = api.get(&t.picker, &format!("/api/v1/stock/{MILK}")).await;
    let lots: Vec<(String, String, i64)> = report["lots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["lot"].as_str().unwrap().to_owned(),
                l["expiry"].as_str().unwrap().to_owned(),
                l["on_hand"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lots,
        [
            ("L9".to_owned(), "2030-06-15".to_owned(), 12),
            ("LOT-A".to_owned(), "2030-11-30".to_owned(), 12)
        ]
    );

    // Refused, with nothing written: an unknown GTIN (named), unreadable GS1, a scan that is
    // no case label, and fields that disagree with the scan.
    let refusals = [
        (
            json!({"scan": case_label("01095011015300031730110010X<GS>375")}),
            StatusCode::NOT_FOUND,
            "09501101530003",
        ),
        (
            json!({"scan": case_label("0109501101530004")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "check digit",
        ),
        (
            json!({"scan": case_label("01123")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "(01)",
        ),
        (
            json!({"scan": format!("]E0{}", gtin(MILK))}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not GS1",
        ),
        (
            json!({"scan": case_label(&format!("02{milk14}10LOT-B"))}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "(37)",
        ),
        (
            json!({"scan": case_label(&format!("02{milk14}10LOT-B<GS>374")), "lot": "LOT-C"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "LOT-B",
        ),
        (
            json!({"scan": case_label(&format!("02{milk14}10LOT-B<GS>374")), "qty": 5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`qty`",
        ),
        (
            json!({"scan": case_label(&format!("02{milk14}17301100374")), "expiry": "2030-11-01"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "2030-11-30",
        ),
        (
            json!({"scan": case_label(&format!("02{milk14}374")), "gtin": gtin(BREAD)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`gtin`",
        ),
        (
            json!({"scan": case_label(&format!("02{milk14}374")), "product_id": BREAD}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`product_id`",
        ),
        (
            json!({"gtin": gtin(MILK)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "qty",
        ),
    ];
    for (body, status, names) in refusals {
        let (got, refused) = api
            .post(&t.picker, "/api/v1/stock/receive", body.clone())
            .await;
        assert_eq!(got, status, "{body} -> {refused}");
        assert!(
            refused["message"].as_str().unwrap().contains(names),
            "{names} in {refused} for {body}"
        );
    }
    assert_eq!(api.level(&t.picker, MILK).await, (24, 0, 24));
    assert_eq!(api.level(&t.picker, BREAD).await, (0, 0, 0));

    // A GTIN given besides the scan that agrees with it is fine (13 or 14 digits).
    let received = api
        .ok(
            &t.picker,
            "/api/v1/stock/receive",
            json!({"scan": case_label(&format!("02{milk14}10LOT-B<GS>374")),
                   "gtin": gtin(MILK), "product_id": MILK}),
        )
        .await;
    assert_eq!(received["qty"], 4);
    assert_eq!(api.level(&t.picker, MILK).await, (28, 0, 28));
    daemon.stop().await;
}
