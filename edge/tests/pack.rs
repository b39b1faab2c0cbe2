//! Packing through the real server: a lead overrides the bag weight check, and the override
//! is recorded in the reply, the order's events and the live stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_overrides_the_bag_weight_check_and_it_is_recorded() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 2}),
    )
    .await;
    let (status, body) = api
        .post(
            &t.manager,
            "/api/v1/intake/orders",
            json!({"id": "o-9", "lines": [{"product_id": MILK, "qty": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    api.ok(
        &t.picker,
        "/api/v1/orders/o-9/scan",
        json!({"code": gtin(MILK)}),
    )
    .await;
    let mut events = api.events(&t.picker).await;

    // 1030 g expected, ± 52 g (5 %): 2000 g is refused, naming all three.
    let (status, refused) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-9/pack",
            json!({"bag_weight_g": 2000}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let message = refused["message"].as_str().unwrap();
    for part in ["2000 g", "1030 g", "± 52 g", "lead"] {
        assert!(message.contains(part), "{part} in {refused}");
    }

    // A picker cannot override; the refusal names the role needed. Nothing changed.
    let (status, refused) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-9/pack",
            json!({"bag_weight_g": 2000, "override": true}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"], "forbidden");
    assert!(
        refused["message"].as_str().unwrap().contains("lead"),
        "{refused}"
    );
    let (_, detail) = api.get(&t.picker, "/api/v1/orders/o-9").await;
    assert_eq!(detail["status"], "PICKING");

    // A lead overrides: packed, and who did it is recorded with the weights.
    let packed = api
        .ok(
            &t.lead,
            "/api/v1/orders/o-9/pack",
            json!({"bag_weight_g": 2000, "override": true, "override_reason": "ice pack added"}),
        )
        .await;
    assert_eq!(packed["status"], "PACKED");
    assert_eq!(packed["bag_weight_g"], 2000);
    assert_eq!(
        packed["weight_override"],
        json!({"by": "lea", "role": "lead", "measured_g": 2000, "expected_g": 1030,
               "tolerance_g": 52, "reason": "ice pack added"})
    );
    let streamed = events
        .until("PACKED event", |e| {
            e["type"] == "order" && e["order_id"] == "o-9" && e["status"] == "PACKED"
        })
        .await;
    assert_eq!(streamed["actor"], "lea", "{streamed}");
    let note = streamed["note"].as_str().unwrap();
    assert!(
        note.contains("overridden by lea (lead)") && note.contains("ice pack added"),
        "{streamed}"
    );
    let (_, detail) = api.get(&t.picker, "/api/v1/orders/o-9").await;
    let last = detail["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["to"], "PACKED");
    assert_eq!(last["actor"], "lea");
    assert_eq!(last["note"], streamed["note"]);
    assert_eq!(detail["bag_weight_g"], 2000);

    // Within the tolerance no override is needed and none is recorded.
    let (status, body) = api
        .post(
            &t.manager,
            "/api/v1/intake/orders",
            json!({"id": "o-10", "lines": [{"product_id": MILK, "qty": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    api.ok(
        &t.picker,
        "/api/v1/orders/o-10/scan",
        json!({"code": gtin(MILK)}),
    )
    .await;
    let packed = api
        .ok(
            &t.lead,
            "/api/v1/orders/o-10/pack",
            json!({"bag_weight_g": 1040, "override": true}),
        )
        .await;
    assert!(packed.get("weight_override").is_none(), "{packed}");
    daemon.stop().await;
}
