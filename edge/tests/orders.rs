//! Whole orders through the real server: arrival with reservation (and a line short on
//! arrival), pick by scan with a wrong item refused, FEFO, a weighed item, a short, a
//! substitution, pack with the weight check, READY, handoff; a batch walk and a cancelled
//! order. The ledger is checked at every step, and so is the live event stream.
//!
//! Stock corrections and goods in are in `stock.rs`, the lead's weight override in `pack.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_order_from_arrival_to_handoff() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    let mut events = api.events(&t.picker).await;

    // Goods in: milk in two lots (the later-received one expires first), a case of six by its
    // case GTIN, oat milk, bread, weighed cheese. No yogurt.
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 5, "lot": "L2", "expiry": "2030-02-01"}),
    )
    .await;
    events.stock(MILK, 5, 0).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 3, "lot": "L1", "expiry": "2030-01-01"}),
    )
    .await;
    events.stock(MILK, 8, 0).await;
    let case = api
        .ok(
            &t.picker,
            "/api/v1/stock/receive",
            json!({"gtin": gtin("milk-case"), "qty": 1, "lot": "L3", "expiry": "2030-03-01"}),
        )
        .await;
    assert_eq!(case["qty"], 6, "a case GTIN receives its pieces");
    events.stock(MILK, 14, 0).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"product_id": OAT, "qty": 4}),
    )
    .await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(BREAD), "qty": 2}),
    )
    .await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"product_id": CHEESE, "qty": 3, "lot": "C7"}),
    )
    .await;
    events.stock(CHEESE, 3, 0).await;
    assert_eq!(api.level(&t.picker, MILK).await, (14, 0, 14));
    assert_eq!(api.level(&t.picker, YOGURT).await, (0, 0, 0));

    // The order arrives: every line reserved at once, yogurt short on arrival.
    let (status, arrival) = api
        .post(
            &t.manager,
            "/api/v1/intake/orders",
            json!({
                "id": "o-1", "customer_first_name": "Ada", "address": "1 Main St",
                "lines": [
                    {"product_id": MILK, "qty": 2},
                    {"product_id": BREAD, "qty": 1},
                    {"product_id": CHEESE, "qty": 1},
                    {"product_id": YOGURT, "qty": 2}
                ]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{arrival}");
    assert_eq!(arrival["status"], "ACCEPTED");
    assert_eq!(arrival["lines"][3]["short"], 2);
    assert_eq!(arrival["lines"][0]["reserved"], 2);
    events.order("o-1", "ROUTED", "arrived").await;
    events.order("o-1", "ACCEPTED", "status").await;
    events.stock(MILK, 14, 2).await;
    assert_eq!(api.level(&t.picker, MILK).await, (14, 2, 12));
    assert_eq!(api.level(&t.picker, BREAD).await, (2, 1, 1));

    // It is in the "new" queue, and its pick list walks the bins in sequence, milk from the
    // first-expiring lot.
    let (_, queues) = api.get(&t.picker, "/api/v1/queues").await;
    assert_eq!(queues["new"][0]["order_id"], "o-1");
    let (_, list) = api.get(&t.picker, "/api/v1/orders/o-1/pick-list").await;
    let bins: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bin_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        bins,
        ["C-01-1", "A-01-1", "B-02-1"],
        "the short yogurt line is not walked"
    );
    assert_eq!(list[1]["lot"], "L1", "FEFO suggests the earliest expiry");

    // A wrong item is refused, naming both products, and changes nothing.
    let (status, refused) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-1/scan",
            json!({"code": gtin(OAT), "line_no": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["error"], "wrong_item");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("Oat Milk 1L") && message.contains("Whole Milk 1L"),
        "{message}"
    );
    let (status, refused) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-1/scan",
            json!({"code": gtin(OAT)}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(refused["message"].as_str().unwrap().contains("Oat Milk 1L"));
    let (_, order) = api.get(&t.picker, "/api/v1/orders/o-1").await;
    assert_eq!(
        order["status"], "ACCEPTED",
        "a refused scan does not start picking"
    );
    assert_eq!(api.level(&t.picker, MILK).await, (14, 2, 12));
    // A code that is not a barcode at all.
    let (status, refused) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-1/scan",
            json!({"code": "4006381333932"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");

    // Pick milk: FEFO lot L1, reservation consumed, available unchanged.
    let scan = api
        .ok(
            &t.picker,
            "/api/v1/orders/o-1/scan",
            json!({"code": gtin(MILK)}),
        )
        .await;
    assert_eq!(scan["status"], "PICKING");
    assert_eq!(scan["taken"][0]["lot"], "L1");
    assert_eq!(scan["line_open_qty"], 1);
    events.order("o-1", "PICKING", "status").await;
    events.order("o-1", "PICKING", "scan").await;
    events.stock(MILK, 13, 1).await;
    assert_eq!(api.level(&t.picker, MILK).await, (13, 1, 12));
    api.ok(
        &t.picker,
        "/api/v1/orders/o-1/scan",
        json!({"code": gtin(MILK)}),
    )
    .await;
    events.stock(MILK, 12, 0).await;
    let (status, _) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-1/scan",
            json!({"code": gtin(MILK)}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "line 1 is complete");
    assert_eq!(api.level(&t.picker, MILK).await, (12, 0, 12));

    // Bread is not on the shelf: short it.
    let short = api
        .ok(&t.picker, "/api/v1/orders/o-1/lines/2/short", json!({}))
        .await;
    assert_eq!(short["released"], 1);
    assert_eq!(short["line"]["short_qty"], 1);
    events.order("o-1", "PICKING", "short").await;
    events.stock(BREAD, 2, 0).await;

    // Yogurt is substituted: not with bread (another category), with oat milk.
    let (status, refused) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-1/lines/4/substitute",
            json!({"product_id": BREAD}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("same category")
    );
    let sub = api
        .ok(
            &t.picker,
            "/api/v1/orders/o-1/lines/4/substitute",
            json!({"gtin": gtin(OAT)}),
        )
        .await;
    assert_eq!(sub["reserved"], 2);
    assert_eq!(sub["line"]["substitute_product_id"], OAT);
    assert_eq!(sub["line"]["short_qty"], 0);
    events.order("o-1", "PICKING", "substitute").await;
    events.stock(OAT, 4, 2).await;
    let (status, _) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-1/scan",
            json!({"code": gtin(YOGURT), "line_no": 4}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the line now expects the substitute"
    );
    api.ok(
        &t.picker,
        "/api/v1/orders/o-1/scan",
        json!({"code": gtin(OAT)}),
    )
    .await;
    api.ok(
        &t.picker,
        "/api/v1/orders/o-1/scan",
        json!({"code": gtin(OAT)}),
    )
    .await;
    events.stock(OAT, 2, 0).await;

    // Packing too early is refused: the cheese is still open.
    let (status, refused) = api
        .post(&t.picker, "/api/v1/orders/o-1/pack", json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(refused["message"].as_str().unwrap().contains("line 3"));

    // Cheese by weight: a counted GTIN cannot stand in for the weighed label.
    let weighed = api
        .ok(
            &t.picker,
            "/api/v1/orders/o-1/scan",
            json!({"code": cheese_label(1250)}),
        )
        .await;
    assert_eq!(weighed["weight_g"], 1250);
    assert_eq!(weighed["taken"][0]["lot"], "C7");
    assert_eq!(weighed["order_open_qty"], 0);
    events.stock(CHEESE, 2, 0).await;

    // Pack: 2 x 1030 + 2 x 1050 + 1250 = 5410 g expected.
    let (status, refused) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-1/pack",
            json!({"bag_weight_g": 4000}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        refused["message"].as_str().unwrap().contains("5410 g"),
        "{refused}"
    );
    let packed = api
        .ok(
            &t.picker,
            "/api/v1/orders/o-1/pack",
            json!({"bag_weight_g": 5390, "bags": 2}),
        )
        .await;
    assert_eq!(packed["status"], "PACKED");
    assert_eq!(packed["expected_weight_g"], 5410);
    let label = packed["label_id"].as_str().unwrap().to_owned();
    events.order("o-1", "PACKED", "status").await;

    // Handoff before READY is an invalid transition naming the state.
    let (status, refused) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-1/handoff",
            json!({"rider_id": "r-1", "label_id": label}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["error"], "invalid_transition");
    assert!(
        refused["message"].as_str().unwrap().contains("PACKED"),
        "{refused}"
    );
    api.ok(&t.picker, "/api/v1/orders/o-1/ready", json!({}))
        .await;
    events.order("o-1", "READY", "status").await;
    let (_, queues) = api.get(&t.picker, "/api/v1/queues").await;
    assert_eq!(queues["ready"][0]["order_id"], "o-1");
    let (status, _) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-1/handoff",
            json!({"rider_id": "r-1", "label_id": "FK-WRONG"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "another bag's label");
    let handed = api
        .ok(
            &t.picker,
            "/api/v1/orders/o-1/handoff",
            json!({"rider_id": "r-1", "label_id": label}),
        )
        .await;
    assert_eq!(handed["status"], "PICKED_UP");
    events.order("o-1", "PICKED_UP", "status").await;

    // Too late to cancel now.
    let (status, refused) = api
        .post(
            &t.manager,
            "/api/v1/intake/orders/o-1/cancel",
            json!({"reason": "late"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(refused["message"].as_str().unwrap().contains("PICKED_UP"));

    // Every transition is stored with its actor.
    let (_, order) = api.get(&t.picker, "/api/v1/orders/o-1").await;
    let trail: Vec<(String, String)> = order["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["to"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("ROUTED", "manager"),
        ("ACCEPTED", "manager"),
        ("PICKING", "pia"),
        ("PACKED", "pia"),
        ("READY", "pia"),
        ("PICKED_UP", "pia"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(trail, expected);
    assert_eq!(order["holds"], json!([]), "nothing is still reserved");

    // Final levels, and the ledger itself agrees with them.
    assert_eq!(api.level(&t.picker, MILK).await, (12, 0, 12));
    assert_eq!(api.level(&t.picker, OAT).await, (2, 0, 2));
    assert_eq!(api.level(&t.picker, BREAD).await, (2, 0, 2));
    assert_eq!(api.level(&t.picker, CHEESE).await, (2, 0, 2));
    let dir = daemon.stop().await;
    let db = open_db(dir.path()).await;
    let (sums, problems) = db
        .read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT product_id, sum(CASE WHEN kind NOT IN ('reserve','release') THEN qty ELSE 0 END),
                        sum(CASE WHEN kind IN ('reserve','release') THEN qty ELSE 0 END)
                 FROM stock_moves GROUP BY product_id ORDER BY product_id")?;
            let sums: Vec<(String, i64, i64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let problems = flashkart_edge::work::stock::check_summary(conn)
                .map_err(|e| flashkart_sync::Error::Commit(e.to_string()))?;
            Ok::<_, flashkart_sync::Error>((sums, problems))
        })
        .await
        .unwrap();
    assert_eq!(
        sums,
        vec![
            (BREAD.to_owned(), 2, 0),
            (CHEESE.to_owned(), 2, 0),
            (MILK.to_owned(), 12, 0),
            (OAT.to_owned(), 2, 0)
        ]
    );
    assert!(problems.is_empty(), "{problems:?}");
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_walk_and_a_cancelled_order() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 10, "lot": "L1", "expiry": "2030-01-01"}),
    )
    .await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(OAT), "qty": 5}),
    )
    .await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(BREAD), "qty": 5}),
    )
    .await;
    for (id, lines) in [
        (
            "o-2",
            json!([{"product_id": MILK, "qty": 3}, {"product_id": OAT, "qty": 1}]),
        ),
        (
            "o-3",
            json!([{"product_id": BREAD, "qty": 1}, {"product_id": MILK, "qty": 1}]),
        ),
    ] {
        let (status, body) = api
            .post(
                &t.manager,
                "/api/v1/intake/orders",
                json!({"id": id, "lines": lines}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(api.level(&t.picker, MILK).await, (10, 4, 6));
    let mut events = api.events(&t.picker).await;

    // One walk, two totes, stops in bin sequence across both orders.
    let batch = api
        .ok(
            &t.picker,
            "/api/v1/pick-batches",
            json!({"order_ids": ["o-2", "o-3"]}),
        )
        .await;
    assert_eq!(batch["totes"], json!([["o-2", "T1"], ["o-3", "T2"]]));
    let stops: Vec<(String, String)> = batch["stops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["bin_id"].as_str().unwrap().to_owned(),
                s["tote"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("A-01-1", "T1"),
        ("A-01-1", "T2"),
        ("A-01-2", "T1"),
        ("B-02-1", "T2"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(stops, expected);
    events.order("o-2", "PICKING", "status").await;
    events.order("o-3", "PICKING", "status").await;

    // Pick one milk for o-2, then the customer cancels it.
    api.ok(
        &t.picker,
        "/api/v1/orders/o-2/scan",
        json!({"code": gtin(MILK)}),
    )
    .await;
    assert_eq!(api.level(&t.picker, MILK).await, (9, 3, 6));
    let cancelled = api
        .ok(
            &t.manager,
            "/api/v1/intake/orders/o-2/cancel",
            json!({"reason": "customer changed mind"}),
        )
        .await;
    assert_eq!(cancelled["previous"], "PICKING");
    assert_eq!(cancelled["released"], 3, "2 milk + 1 oat still held");
    assert_eq!(cancelled["returned"], 1, "the picked milk goes back");
    events.order("o-2", "CANCELLED", "status").await;
    events.stock(MILK, 10, 1).await;
    assert_eq!(api.level(&t.picker, MILK).await, (10, 1, 9));
    assert_eq!(api.level(&t.picker, OAT).await, (5, 0, 5));
    let (_, report) = api.get(&t.picker, &format!("/api/v1/stock/{MILK}")).await;
    assert_eq!(
        report["lots"][0]["lot"], "L1",
        "returned to the lot it came from"
    );
    assert_eq!(report["lots"][0]["on_hand"], 10);

    // A cancelled order takes no more scans, and says why.
    let (status, refused) = api
        .post(
            &t.picker,
            "/api/v1/orders/o-2/scan",
            json!({"code": gtin(MILK)}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        refused["message"].as_str().unwrap().contains("cancelled"),
        "{refused}"
    );

    // o-3 carries on.
    api.ok(
        &t.picker,
        "/api/v1/orders/o-3/scan",
        json!({"code": gtin(MILK)}),
    )
    .await;
    api.ok(
        &t.picker,
        "/api/v1/orders/o-3/scan",
        json!({"code": gtin(BREAD)}),
    )
    .await;
    api.ok(&t.picker, "/api/v1/orders/o-3/pack", json!({}))
        .await;
    assert_eq!(api.level(&t.picker, MILK).await, (9, 0, 9));
    let (_, detail) = api.get(&t.picker, "/api/v1/orders/o-2").await;
    let trail: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(trail, ["ROUTED", "ACCEPTED", "PICKING", "CANCELLED"]);
    daemon.stop().await;
}
