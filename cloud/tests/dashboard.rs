//! HQ's dashboard against a real cloud with two stores syncing through the real client: orders
//! placed through the intake API, the stores' progress written into their own databases (and
//! synced, as their staff's scans would be). The snapshot's figures equal what independent SQL
//! over the read model (and `store_figures`) says; a paused store gets no new order; a reroute
//! moves an untouched order and refuses a picked one; the event stream sends a new snapshot
//! after a change; a build over 10,000 orders is timed. The customer's own tracking stream is
//! here too, since it needs the same city: it follows an order to the door with the rider's
//! position and a fresh ETA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::api::Api;
use common::city::*;
use common::*;
use flashkart_cloud::clock;
use flashkart_cloud::projection::RoutedOrder;
use flashkart_sync::StoreDb;
use reqwest::{Method, StatusCode};
use rusqlite::params;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// An order as intake records it in the read model, with times the API cannot make: placed
/// `placed_ago` and promised `promised_in` (negative: in the past).
async fn recorded(env: &Env, id: &str, placed_ago: i64, promised_in: i64) {
    let now = clock::now();
    let placed = clock::rfc3339(now - time::Duration::minutes(placed_ago));
    env.running
        .cloud
        .projection()
        .record_routed(RoutedOrder {
            id: id.into(),
            store_id: "s1".into(),
            customer_id: "c-earlier".into(),
            at: placed.clone(),
            placed_at: placed,
            promised_at: clock::rfc3339(now + time::Duration::minutes(promised_in)),
            total_minor: 500,
            delivery_fee_minor: 100,
            currency: "EUR".into(),
            lat: ONLY_S1.0,
            lon: ONLY_S1.1,
            steps: vec![
                (None, "PENDING", "placed"),
                (Some("PENDING"), "CONFIRMED", "cash on delivery"),
                (Some("CONFIRMED"), "ROUTED", "routed"),
            ],
        })
        .await
        .unwrap();
}

/// Per hour: orders placed, (delivered, on time); and (READY at, ACCEPTED at, hour) of each
/// order READY.
type SeriesRows = (
    BTreeMap<String, u64>,
    BTreeMap<String, (u64, u64)>,
    Vec<(String, String, String)>,
);

/// The start of the UTC hour of an RFC 3339 time, as the series names its hours.
fn hour_of(at: &str) -> String {
    let at = clock::parse(at).unwrap().to_offset(time::UtcOffset::UTC);
    clock::rfc3339(at.replace_time(time::Time::from_hms(at.hour(), 0, 0).unwrap()))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.01
}

const FINISHED: &str = "('DELIVERED', 'CLOSED', 'CANCELLED', 'REFUNDED')";

/// Whether an open order (placed, promised) is at risk at `at`: not late, under a quarter of
/// its SLA left.
fn at_risk(at: OffsetDateTime, placed: &str, promised: &str) -> bool {
    let (placed, promised) = (
        clock::parse(placed).unwrap(),
        clock::parse(promised).unwrap(),
    );
    let left = promised - at;
    left >= time::Duration::ZERO && left * 4 < promised - placed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_equals_the_read_model() {
    // Store 2 promises delivery in one minute, so a delivery 100 s after its order is late.
    let env = two_stores(None, 1).await;
    let mut s1 = Vec::new();
    for n in 0..5 {
        s1.push(env.order_at(&format!("s1-{n}"), ONLY_S1, "s1").await);
    }
    let s2 = [
        env.order_at("s2-0", ONLY_S2, "s2").await,
        env.order_at("s2-1", ONLY_S2, "s2").await,
    ];
    edge_has(&env, "s1", "SELECT count(*) FROM orders".into(), 5).await;
    edge_has(&env, "s2", "SELECT count(*) FROM orders".into(), 2).await;

    let base = clock::now();
    let (e1, e2) = (env.edge("s1").clone(), env.edge("s2").clone());
    progress(&e1, "s1", &s1[0], "ROUTED", base, &[("ACCEPTED", 1)]).await;
    progress(
        &e1,
        "s1",
        &s1[1],
        "ROUTED",
        base,
        &[("ACCEPTED", 1), ("PICKING", 5)],
    )
    .await;
    // READY 60 s after ACCEPTED.
    let to_ready = [
        ("ACCEPTED", 1),
        ("PICKING", 5),
        ("PACKED", 30),
        ("READY", 61),
    ];
    progress(&e1, "s1", &s1[2], "ROUTED", base, &to_ready).await;
    // READY 40 s after ACCEPTED, delivered on time.
    let delivered = [
        ("ACCEPTED", 1),
        ("PICKING", 5),
        ("PACKED", 20),
        ("READY", 41),
        ("PICKED_UP", 50),
        ("DELIVERED", 70),
    ];
    progress(&e1, "s1", &s1[3], "ROUTED", base, &delivered).await;
    // Store 2: one delivered late (READY 3 s after ACCEPTED), one cancelled.
    let late = [
        ("ACCEPTED", 1),
        ("PICKING", 2),
        ("PACKED", 3),
        ("READY", 4),
        ("PICKED_UP", 5),
        ("DELIVERED", 100),
    ];
    progress(&e2, "s2", &s2[0], "ROUTED", base, &late).await;
    progress(
        &e2,
        "s2",
        &s2[1],
        "ROUTED",
        base,
        &[("ACCEPTED", 1), ("CANCELLED", 2)],
    )
    .await;
    // Earlier orders at store 1: one late, one at risk, one placed three hours ago.
    recorded(&env, "earlier-late", 40, -10).await;
    recorded(&env, "earlier-at-risk", 25, 5).await;
    recorded(&env, "earlier-old", 180, -150).await;
    projected(
        &env,
        &[
            (s1[0].as_str(), "ACCEPTED"),
            (s1[1].as_str(), "PICKING"),
            (s1[2].as_str(), "READY"),
            (s1[3].as_str(), "DELIVERED"),
            (s1[4].as_str(), "ROUTED"),
            (s2[0].as_str(), "DELIVERED"),
            (s2[1].as_str(), "CANCELLED"),
        ],
    )
    .await;

    let snapshot = env.rebuild().await;
    let at_text = snapshot["at"].as_str().unwrap().to_owned();
    let at = clock::parse(&at_text).unwrap();
    let hour_ago = clock::rfc3339(at - time::Duration::hours(1));

    // Open orders by state, late and at risk, per store: independent SQL at the snapshot's time.
    let open: Vec<(String, String, String, String, Option<String>)> = rm_sql::rows(
        &env.running.cloud,
        &format!(
            "SELECT id, store_id, status, placed_at, promised_at FROM rm_orders
             WHERE status NOT IN {FINISHED}"
        ),
    )
    .await
    .into_iter()
    .map(|r| {
        let text = |i: usize| r[i].clone().unwrap();
        (text(0), text(1), text(2), text(3), r[4].clone())
    })
    .collect();
    assert_eq!(open.len(), 7, "{open:?}");
    let figures = env
        .running
        .cloud
        .projection()
        .store_figures(hour_ago.clone())
        .await
        .unwrap();
    for id in ["s1", "s2"] {
        let tile = store(&snapshot, id);
        let mine: Vec<_> = open.iter().filter(|o| o.1 == id).collect();
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        for o in &mine {
            *by_state.entry(o.2.clone()).or_default() += 1;
        }
        let shown: BTreeMap<String, u64> = tile["orders_by_state"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(shown, by_state, "{id}");
        assert_eq!(tile["open_orders"], mine.len());
        let late = mine
            .iter()
            .filter(|o| o.4.as_deref().is_some_and(|p| p < at_text.as_str()))
            .count();
        let risky = mine
            .iter()
            .filter(|o| o.4.as_deref().is_some_and(|p| at_risk(at, &o.3, p)))
            .count();
        assert_eq!(tile["late"], late, "{id}");
        assert_eq!(tile["at_risk"], risky, "{id}");
        let f = figures.iter().find(|f| f.store_id == id).unwrap();
        assert_eq!(tile["backlog"], f.open_orders, "{id}");
        assert_eq!(tile["delivered_1h"], f.delivered, "{id}");
        assert_eq!(tile["picked_up_1h"], f.picked_up, "{id}");
        let share = f64::from(f.delivered_on_time) / f64::from(f.delivered);
        assert!(
            close(tile["on_time_share_1h"].as_f64().unwrap(), share),
            "{id}"
        );
        assert_eq!(tile["online"], true);
        assert!(tile["last_contact_at"].is_string(), "{tile}");
        assert_eq!(tile["paused"], false);
    }
    // What those figures are, worked out by hand.
    let (t1, t2) = (store(&snapshot, "s1"), store(&snapshot, "s2"));
    assert_eq!(t1["open_orders"], 7);
    assert_eq!(t1["orders_by_state"]["ROUTED"], 4);
    assert_eq!(t1["orders_by_state"]["PICKED_UP"], 0);
    assert_eq!(
        (t1["late"].as_u64(), t1["at_risk"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(t1["health"], "late");
    assert_eq!(t2["open_orders"], 0);
    assert_eq!(t2["health"], "ok");
    assert_eq!(
        (t1["delivered_1h"].as_u64(), t2["delivered_1h"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(t1["on_time_share_1h"], 1.0);
    assert_eq!(t2["on_time_share_1h"], 0.0);
    assert!(
        close(t1["pick_to_ready_s_1h"].as_f64().unwrap(), 50.0),
        "{t1}"
    );
    assert!(
        close(t2["pick_to_ready_s_1h"].as_f64().unwrap(), 3.0),
        "{t2}"
    );
    // Stock: p1 10 at s1, 2 at s2 (low); p2 nowhere.
    assert_eq!(
        (t1["stock_outs"].as_u64(), t1["low_stock"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        (t2["stock_outs"].as_u64(), t2["low_stock"].as_u64()),
        (Some(1), Some(1))
    );
    let low = rm_sql::count(
        &env.running.cloud,
        "SELECT count(*) FROM rm_stock WHERE store_id = 's2'
         AND on_hand - reserved BETWEEN 1 AND 3",
    )
    .await;
    assert_eq!(low, 1);

    // The orders: every open one and those finished in the last half hour, flagged as above.
    let half_hour_ago = clock::rfc3339(at - time::Duration::minutes(30));
    let finished: Vec<String> = rm_sql::rows(
        &env.running.cloud,
        &format!(
            "SELECT id FROM rm_orders WHERE status IN {FINISHED} AND status_at >= '{half_hour_ago}'"
        ),
    )
    .await
    .into_iter()
    .map(|mut r| r.remove(0).unwrap())
    .collect();
    assert_eq!(finished.len(), 3);
    let orders = snapshot["orders"].as_array().unwrap();
    assert_eq!(orders.len(), open.len() + finished.len());
    assert_eq!(snapshot["orders_omitted"], 0);
    // The most urgent first.
    assert_eq!(orders[0]["id"], "earlier-old");
    for o in &open {
        let shown = orders.iter().find(|s| s["id"] == o.0.as_str()).unwrap();
        let promised = o.4.as_deref().unwrap();
        assert_eq!(shown["late"], promised < at_text.as_str(), "{shown}");
        assert_eq!(shown["at_risk"], at_risk(at, &o.3, promised), "{shown}");
        assert_eq!(shown["status"], o.2.as_str());
        assert_eq!(shown["rider_id"], Value::Null);
    }
    for id in &finished {
        let shown = orders.iter().find(|s| s["id"] == id.as_str()).unwrap();
        assert_eq!(
            (&shown["late"], &shown["at_risk"]),
            (&json!(false), &json!(false))
        );
    }

    // The series: hour buckets by independent SQL and parsed times (not the dashboard's
    // prefixes).
    let hours: Vec<String> = snapshot["series"]["hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hours.len(), 24);
    assert!(
        hours[23] <= at_text
            && at_text
                < clock::rfc3339(clock::parse(&hours[23]).unwrap() + time::Duration::hours(1))
    );
    let first = hours[0].clone();
    // Buckets by each row's time, parsed here: SQL has no hour function both engines know.
    let cloud = &env.running.cloud;
    let mut placed: BTreeMap<String, u64> = BTreeMap::new();
    for r in rm_sql::rows(
        cloud,
        &format!("SELECT placed_at FROM rm_orders WHERE placed_at >= '{first}'"),
    )
    .await
    {
        *placed.entry(hour_of(r[0].as_deref().unwrap())).or_default() += 1;
    }
    let mut delivered: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in rm_sql::rows(
        cloud,
        &format!(
            "SELECT t.at, CAST(CASE WHEN t.at <= o.promised_at THEN 1 ELSE 0 END AS TEXT)
             FROM rm_timeline t JOIN rm_orders o ON o.id = t.order_id
             WHERE t.status = 'DELIVERED' AND t.at >= '{first}'"
        ),
    )
    .await
    {
        let hour = delivered
            .entry(hour_of(r[0].as_deref().unwrap()))
            .or_default();
        hour.0 += 1;
        hour.1 += r[1].as_deref().unwrap().parse::<u64>().unwrap();
    }
    let ready: Vec<(String, String, String)> = rm_sql::rows(
        cloud,
        &format!(
            "SELECT r.at, a.at
             FROM rm_timeline r JOIN rm_timeline a
               ON a.order_id = r.order_id AND a.store_id = r.store_id
                  AND a.status = 'ACCEPTED'
             WHERE r.status = 'READY' AND r.at >= '{first}'"
        ),
    )
    .await
    .into_iter()
    .map(|r| {
        let (ready_at, accepted_at) = (r[0].clone().unwrap(), r[1].clone().unwrap());
        let hour = hour_of(&ready_at);
        (ready_at, accepted_at, hour)
    })
    .collect();
    let (placed, delivered, ready): SeriesRows = (placed, delivered, ready);
    let series = &snapshot["series"];
    for (i, hour) in hours.iter().enumerate() {
        assert_eq!(
            series["orders"][i],
            placed.get(hour).copied().unwrap_or(0),
            "{hour}"
        );
        let (n, on_time) = delivered.get(hour).copied().unwrap_or((0, 0));
        assert_eq!(series["delivered"][i], n, "{hour}");
        match series["on_time_share"][i].as_f64() {
            Some(share) => assert!(close(share, on_time as f64 / n as f64), "{hour}"),
            None => assert_eq!(n, 0, "{hour}"),
        }
        let picks: Vec<f64> = ready
            .iter()
            .filter(|(_, _, h)| h == hour)
            .map(|(r, a, _)| (clock::parse(r).unwrap() - clock::parse(a).unwrap()).as_seconds_f64())
            .collect();
        match series["pick_time_s"][i].as_f64() {
            Some(mean) => {
                assert!(
                    close(mean, picks.iter().sum::<f64>() / picks.len() as f64),
                    "{hour}"
                )
            }
            None => assert!(picks.is_empty(), "{hour}"),
        }
    }
    assert_eq!(
        series["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>(),
        10,
        "7 placed now, 2 earlier this hour or the last, 1 three hours ago"
    );

    // Over HTTP: the same content, maybe a newer version.
    let (code, served) = env
        .api
        .call(Method::GET, "/admin/v1/dashboard", ADMIN, None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(served["version"].as_u64() >= snapshot["version"].as_u64());
    assert_eq!(served["stores"].as_array().unwrap().len(), 2);

    // HQ's view of an order has its lines, payment, rider and timeline; the customer's has the
    // same lines (their order page and re-order show them) but not the rider.
    let path = format!("/admin/v1/orders/{}", s1[3]);
    let (code, hq) = env.api.call(Method::GET, &path, ADMIN, None).await;
    assert_eq!(code, StatusCode::OK, "{hq}");
    assert_eq!(
        hq["lines"],
        json!([{"line_no": 1, "product_id": "p1", "name": "p1", "qty": 1,
                "unit_price_minor": 100, "line_minor": 100, "picked_qty": 0, "short_qty": 0,
                "substitute_product_id": null, "substitute_name": null}])
    );
    assert_eq!(hq["payment"]["method"], "cash");
    assert_eq!(hq["rider_id"], Value::Null);
    assert!(
        hq["order"]["timeline"].as_array().unwrap().len() >= 9,
        "{hq}"
    );
    let path = format!("/api/v1/orders/{}", s1[3]);
    let (code, mine) = env.api.call(Method::GET, &path, &env.customer, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(mine["lines"], hq["lines"], "{mine}");
    assert!(
        mine.get("rider_id").is_none() && mine.get("pin_failures").is_none(),
        "{mine}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_store_gets_no_new_orders() {
    let env = two_stores(None, 30).await;
    let api = &env.api;
    let pause = |store: &str, body: Value| {
        let path = format!("/admin/v1/stores/{store}/pause");
        async move { api.admin(Method::POST, &path, body).await }
    };
    // Bad input changes nothing.
    let (code, body) = pause("s1", json!({"paused": true})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (code, _) = pause("s1", json!({"paused": true, "reason": "x", "until": 5})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = pause("nowhere", json!({"paused": true, "reason": "x"})).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    env.order_at("before", BOTH, "s1").await;

    let (code, body) = pause("s1", json!({"paused": true, "reason": "stocktake"})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"store_id": "s1", "paused": true, "paused_reason": "stocktake"})
    );
    // The next order in both areas goes to the other store; one only s1 serves is refused, saying
    // why.
    env.order_at("during", BOTH, "s2").await;
    let (code, body) = env.order("only-s1", ONLY_S1, 1).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("s1 is paused"),
        "{body}"
    );

    // HQ sees the pause; a profile edit that does not mention it keeps it.
    let (_, stores) = env
        .api
        .call(Method::GET, "/admin/v1/stores", ADMIN, None)
        .await;
    let s1 = stores
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["profile"]["id"] == "s1")
        .unwrap();
    assert_eq!(s1["profile"]["paused"], true);
    assert_eq!(s1["profile"]["paused_reason"], "stocktake");
    let (code, stored) = env
        .api
        .admin(
            Method::PUT,
            "/admin/v1/stores/s1/profile",
            profile("s1 renamed", 13.42, 13.30, 13.50, 30),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{stored}");
    assert_eq!(
        (&stored["paused"], &stored["name"]),
        (&json!(true), &json!("s1 renamed"))
    );
    let snapshot = env.rebuild().await;
    let tile = store(&snapshot, "s1");
    assert_eq!(
        (&tile["paused"], &tile["health"]),
        (&json!(true), &json!("paused"))
    );
    assert_eq!(tile["paused_reason"], "stocktake");
    assert_eq!(store(&snapshot, "s2")["health"], "ok");

    // Resumed: orders come back.
    let (code, body) = pause("s1", json!({"paused": false})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["paused_reason"], Value::Null);
    env.order_at("after", BOTH, "s1").await;
    // A profile that says so pauses too.
    let mut paused = profile("s1", 13.42, 13.30, 13.50, 30);
    paused["paused"] = json!(true);
    paused["paused_reason"] = json!("flooded");
    let (code, stored) = env
        .api
        .admin(Method::PUT, "/admin/v1/stores/s1/profile", paused)
        .await;
    assert_eq!(code, StatusCode::OK, "{stored}");
    env.order_at("after-put", BOTH, "s2").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reroute_moves_an_untouched_order_and_refuses_a_picked_one() {
    let env = two_stores(None, 30).await;
    let untouched = env.order_at("untouched", BOTH, "s1").await;
    let picked = env.order_at("picked", BOTH, "s1").await;
    let big = {
        let (code, body) = env.order("big", BOTH, 5).await;
        assert_eq!(
            (code, body["store_id"].as_str()),
            (StatusCode::CREATED, Some("s1"))
        );
        body["order_id"].as_str().unwrap().to_owned()
    };
    edge_has(&env, "s1", "SELECT count(*) FROM orders".into(), 3).await;
    let base = clock::now();
    let e1 = env.edge("s1").clone();
    progress(&e1, "s1", &untouched, "ROUTED", base, &[("ACCEPTED", 1)]).await;
    progress(
        &e1,
        "s1",
        &picked,
        "ROUTED",
        base,
        &[("ACCEPTED", 1), ("PICKING", 2)],
    )
    .await;
    projected(
        &env,
        &[
            (untouched.as_str(), "ACCEPTED"),
            (picked.as_str(), "PICKING"),
        ],
    )
    .await;

    let api = &env.api;
    let reroute = |order: &str, body: Value| {
        let path = format!("/admin/v1/orders/{order}/reroute");
        async move { api.admin(Method::POST, &path, body).await }
    };
    // Bad input and impossible moves change nothing.
    let (code, _) = reroute(&untouched, json!({"store_id": "s2"})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = reroute(&untouched, json!({"store_id": "s2", "reason": " "})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    let (code, _) = reroute(&untouched, json!({"store_id": "nowhere", "reason": "x"})).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = reroute("no-such-order", json!({"store_id": "s2", "reason": "x"})).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, body) = reroute(&untouched, json!({"store_id": "s1", "reason": "x"})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let (code, body) = reroute(&picked, json!({"store_id": "s2", "reason": "x"})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(
        body["message"].as_str().unwrap().contains("PICKING"),
        "{body}"
    );
    // Store 2 has 2 of p1, not 5.
    let (code, body) = reroute(&big, json!({"store_id": "s2", "reason": "x"})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(
        body["message"].as_str().unwrap().contains("stock"),
        "{body}"
    );
    let cancels = "SELECT count(*) FROM orders WHERE cancel_requested_at IS NOT NULL";
    assert_eq!(
        count(env.running.cloud.replica("s1").await.unwrap().db(), cancels).await,
        0
    );

    let (code, body) = reroute(
        &untouched,
        json!({"store_id": "s2", "reason": "s1 short-staffed"}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["store_id"], "s2");
    // Cancelled at the first store, written to the second, the payment following it.
    edge_has(
        &env,
        "s1",
        format!("SELECT count(*) FROM orders WHERE id = '{untouched}' AND cancel_requested_at IS NOT NULL"),
        1,
    )
    .await;
    edge_has(
        &env,
        "s2",
        format!("SELECT count(*) FROM order_lines WHERE order_id = '{untouched}' AND qty = 1"),
        1,
    )
    .await;
    let (_, hq) = env
        .api
        .call(
            Method::GET,
            &format!("/admin/v1/orders/{untouched}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(
        (&hq["order"]["store_id"], &hq["order"]["status"]),
        (&json!("s2"), &json!("ROUTED"))
    );
    assert_eq!(hq["payment"]["store_id"], "s2");
    assert_eq!(hq["lines"][0]["product_id"], "p1");
    let note = hq["order"]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] == "REROUTED")
        .unwrap_or_else(|| panic!("a REROUTED entry: {hq}"));
    assert_eq!(note["note"], "HQ rerouted to s2: s1 short-staffed");
    // Not back to a store that cancelled it.
    let (code, body) = reroute(&untouched, json!({"store_id": "s1", "reason": "x"})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let snapshot = env.rebuild().await;
    assert_eq!(store(&snapshot, "s2")["orders_by_state"]["ROUTED"], 1);
    env.stop().await;
}

fn rider<'a>(snapshot: &'a Value, id: &str) -> &'a Value {
    snapshot["riders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn riders_show_offers_declines_and_deliveries() {
    let env = two_stores(Some(100), 30).await;
    for id in ["r1", "r2"] {
        let (code, body) = env
            .api
            .admin(
                Method::PUT,
                &format!("/admin/v1/riders/{id}"),
                json!({"home_store_id": "s1", "name": id}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    let order = env.order_at("ride", ONLY_S1, "s1").await;
    edge_has(&env, "s1", "SELECT count(*) FROM orders".into(), 1).await;
    let e1 = env.edge("s1").clone();
    let base = clock::now();
    let ready = [("ACCEPTED", 1), ("PICKING", 2), ("PACKED", 3), ("READY", 4)];
    progress(&e1, "s1", &order, "ROUTED", base, &ready).await;
    projected(&env, &[(order.as_str(), "READY")]).await;

    // Only r1 is around: offered, declines; r2 turns up: offered, accepts.
    position(&e1, "r1").await;
    let first = offer_to(&env, "r1").await;
    reply(&e1, &first, "r1", "declined").await;
    position(&e1, "r2").await;
    let second = offer_to(&env, "r2").await;
    reply(&e1, &second, "r2", "accepted").await;
    let cloud = &env.running.cloud;
    until(&env, "both replies projected", || async move {
        rm_sql::count(cloud, "SELECT count(*) FROM rm_replies").await == 2
    })
    .await;
    // Nobody is offered an accepted order again, so these figures hold still.
    let snapshot = env.rebuild().await;
    let (r1, r2) = (rider(&snapshot, "r1"), rider(&snapshot, "r2"));
    assert_eq!(
        (&r1["state"], &r2["state"]),
        (&json!("idle"), &json!("busy"))
    );
    assert_eq!(
        (r1["offers_1h"].as_u64(), r1["declines_1h"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (r2["offers_1h"].as_u64(), r2["declines_1h"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(r2["deliveries_1h"], 0);
    assert_eq!(
        (r1["lat"].as_f64(), r1["home_store_id"].as_str()),
        (Some(52.5), Some("s1"))
    );
    // The same as the read model's offers and replies.
    let offers: Vec<(String, i64)> = rm_sql::rows(
        &env.running.cloud,
        "SELECT rider_id, CAST(count(*) AS TEXT) FROM rm_offers GROUP BY rider_id ORDER BY 1",
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap(),
            r[1].as_deref().unwrap().parse().unwrap(),
        )
    })
    .collect();
    assert_eq!(offers, [("r1".to_owned(), 1), ("r2".to_owned(), 1)]);
    let shown = snapshot["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == order.as_str())
        .unwrap();
    assert_eq!(shown["rider_id"], "r2");

    // Delivered: r2 is free again with one delivery.
    // Times after the READY event's (a status moves only forward in time).
    let later = clock::now().max(base + time::Duration::seconds(4));
    progress(
        &e1,
        "s1",
        &order,
        "READY",
        later,
        &[("PICKED_UP", 1), ("DELIVERED", 2)],
    )
    .await;
    projected(&env, &[(order.as_str(), "DELIVERED")]).await;
    let snapshot = env.rebuild().await;
    let r2 = rider(&snapshot, "r2");
    assert_eq!(
        (&r2["state"], r2["deliveries_1h"].as_u64()),
        (&json!("idle"), Some(1))
    );
    assert_eq!(store(&snapshot, "s1")["delivered_1h"], 1);
    let (_, hq) = env
        .api
        .call(
            Method::GET,
            &format!("/admin/v1/orders/{order}"),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(hq["rider_id"], "r2");

    // The lists beside the snapshot.
    let (code, roster) = env
        .api
        .call(Method::GET, "/admin/v1/riders", ADMIN, None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let entry = roster
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "r2")
        .unwrap();
    assert_eq!(
        (&entry["vehicle"], &entry["state"]),
        (&json!("bicycle"), &json!("idle"))
    );
    assert_eq!(entry["deliveries_1h"], 1);
    let (code, body) = env
        .api
        .admin(
            Method::PUT,
            "/admin/v1/coupons/WELCOME",
            json!({"percent_off": 10}),
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    let (_, coupons) = env
        .api
        .call(Method::GET, "/admin/v1/coupons", ADMIN, None)
        .await;
    assert_eq!(
        coupons,
        json!([{"code": "WELCOME", "percent_off": 10, "amount_off_minor": 0,
                "min_basket_minor": 0, "active": true}])
    );
    let (_, products) = env
        .api
        .call(Method::GET, "/admin/v1/products", ADMIN, None)
        .await;
    let products = products.as_array().unwrap();
    assert_eq!(products.len(), 2);
    assert_eq!(
        (&products[1]["id"], &products[1]["price_minor"]),
        (&json!("p2"), &json!(250))
    );
    assert_eq!(products[0]["gtins"], json!([]));
    // Without HQ's credential there is no dashboard.
    let (code, _) = env
        .api
        .call(Method::GET, "/admin/v1/dashboard", "nonsense", None)
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    env.stop().await;
}

/// One Server-Sent Event: (event, id, data).
type SseEvent = (String, String, Value);

/// Reads events off a response body.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(base: &str, last_event_id: Option<u64>) -> Self {
        Self::connect(base, "/admin/v1/dashboard/events", ADMIN, last_event_id).await
    }

    async fn connect(base: &str, path: &str, token: &str, last_event_id: Option<u64>) -> Self {
        let mut request = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// Waits (at most 30 s) for the server to end the stream.
    async fn ended(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Some(chunk) = tokio::time::timeout_at(deadline, self.response.chunk())
            .await
            .expect("the stream ends within 30 s")
            .unwrap()
        {
            let text = String::from_utf8_lossy(&chunk);
            assert!(
                text.lines().all(|l| l.is_empty() || l.starts_with(':')),
                "no event after the last: {text}"
            );
        }
    }

    /// The next event (keep-alive comments skipped), at most 30 s away.
    async fn next(&mut self) -> SseEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if !event.is_empty() {
                    return (event, id, serde_json::from_str(&data).unwrap());
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event within 30 s")
                .unwrap()
                .expect("the stream is open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_sends_a_new_snapshot_after_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let api = Api::new(running.addr);
    let customer = api.store_and_customer("s1").await;
    let (code, _) = api
        .admin(
            Method::PUT,
            "/admin/v1/products/p1",
            json!({"name": "p1", "price_minor": 100}),
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT);

    let mut events = Events::open(&api.base, None).await;
    let (event, id, mut first) = events.next().await;
    assert_eq!(event, "snapshot");
    assert_eq!(id, first["version"].to_string());
    // The first snapshot may be from before the store was profiled; one with it follows.
    while first["stores"][0]["id"] != "s1" {
        let (_, id, next) = events.next().await;
        assert!(next["version"].as_u64() > first["version"].as_u64());
        assert_eq!(id, next["version"].to_string());
        first = next;
    }
    // An order placed: a snapshot that has it follows.
    let (code, placed) = api
        .order(&customer, "k-1", common::api::order_of("p1", 1))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{placed}");
    let with_order = loop {
        let (_, _, snapshot) = events.next().await;
        assert!(snapshot["version"].as_u64() > first["version"].as_u64());
        if snapshot["orders"].as_array().unwrap().len() == 1 {
            break snapshot;
        }
    };
    assert_eq!(with_order["orders"][0]["id"], placed["order_id"]);

    // A client that has the current version is not sent it again: its first event is newer.
    let current = running.cloud.dashboard().rebuild().await.unwrap().version();
    let mut resumed = Events::open(&api.base, Some(current)).await;
    let (code, _) = api
        .admin(
            Method::POST,
            "/admin/v1/stores/s1/pause",
            json!({"paused": true, "reason": "test"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (_, id, snapshot) = resumed.next().await;
    assert!(id.parse::<u64>().unwrap() > current, "{id} after {current}");
    let mut snapshot = snapshot;
    while snapshot["stores"][0]["paused"] != true {
        snapshot = resumed.next().await.2;
    }
    assert_eq!(snapshot["stores"][0]["health"], "paused");

    // The stream ends when the cloud shuts down.
    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(_)) = events.response.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end on shutdown");
    running.wait().await.unwrap();
}

/// How long a build takes with 10,000 orders of the last 24 hours in the read model (9,000
/// delivered, 500 cancelled, 500 open), 10 stores with 500 products each, 50 riders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_over_ten_thousand_orders_is_cheap() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloud_config(dir.path());
    // No dispatcher planning over the open orders while the builds are timed.
    config.dispatch.tick_ms = 3_600_000;
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .unwrap();
    let api = Api::new(running.addr);
    let stores: Vec<String> = (0..10).map(|n| format!("s{n}")).collect();
    for (n, id) in stores.iter().enumerate() {
        running.cloud.register_store(id).await.unwrap();
        let lon = 13.30 + 0.02 * n as f64;
        let (code, body) = api
            .admin(
                Method::PUT,
                &format!("/admin/v1/stores/{id}/profile"),
                profile(id, lon, 13.2, 13.6, 30),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    for n in 0..50 {
        let (code, body) = api
            .admin(
                Method::PUT,
                &format!("/admin/v1/riders/r{n}"),
                json!({"home_store_id": stores[n % 10], "name": format!("rider {n}")}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    running
        .cloud
        .write_catalog(|conn| {
            for n in 0..500 {
                conn.execute(
                    "INSERT INTO products (id, name) VALUES (?1, ?1)",
                    [format!("p{n}")],
                )?;
                conn.execute(
                    "INSERT INTO prices (product_id, unit_price_minor) VALUES (?1, 100)",
                    [format!("p{n}")],
                )?;
            }
            Ok::<_, flashkart_sync::Error>(())
        })
        .await
        .unwrap();
    let now = clock::now();
    // The rows as literals, a thousand to an INSERT, in one transaction: statements both
    // engines take.
    let at = |seconds_ago: i64| clock::rfc3339(now - time::Duration::seconds(seconds_ago));
    let (mut orders, mut timeline, mut offers, mut replies) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..10_000_i64 {
        let id = format!("order-{i:05}");
        let store = &stores[(i % 10) as usize];
        // Placed between 22.8 and 0.6 hours ago: all inside the series' 24 hours.
        let placed = 82_000 - i * 8;
        let (status, open, last) = match i % 20 {
            0 => ("PICKING", 1, placed - 120),
            1 => ("CANCELLED", 0, placed - 60),
            _ => ("DELIVERED", 0, placed - 1_500),
        };
        orders.push(format!(
            "('{id}', '{store}', 'c', '{status}', '{}', '{}', '{}', 1234, 52.5, 13.4, {open})",
            at(last),
            at(placed),
            at(placed - 1_800),
        ));
        let steps: &[(&str, i64)] = match status {
            "PICKING" => &[("ACCEPTED", 30), ("PICKING", 120)],
            "CANCELLED" => &[("ACCEPTED", 30), ("CANCELLED", 60)],
            _ => &[
                ("ACCEPTED", 30),
                ("PICKING", 60),
                ("PACKED", 200),
                ("READY", 260),
                ("PICKED_UP", 400),
                ("DELIVERED", 1_500),
            ],
        };
        for (n, (step, after)) in [("PENDING", 0), ("CONFIRMED", 0), ("ROUTED", 0)]
            .iter()
            .chain(steps.iter())
            .enumerate()
        {
            let source = if n < 3 { "cloud" } else { "edge" };
            timeline.push(format!(
                "('{id}/{n}', '{id}', '{store}', '{step}', '{}', '{source}')",
                at(placed - after)
            ));
        }
        if status == "DELIVERED" {
            let rider = format!("r{}", i % 50);
            let assignment = format!("a-{id}");
            let offered = at(placed - 260);
            offers.push(format!(
                "('{assignment}', '{store}', '{id}', '{rider}', '{offered}', '{offered}')"
            ));
            replies.push(format!(
                "('{assignment}', '{store}', '{rider}', 'accepted', '{}')",
                at(placed - 270)
            ));
        }
    }
    let mut stock = Vec::new();
    for store in &stores {
        for n in 0..500 {
            stock.push(format!("('{store}', 'p{n}', {}, 0)", n % 7));
        }
    }
    let riders: Vec<String> = (0..50)
        .map(|n| {
            format!(
                "('r{n}', '{}', 52.5, 13.4, '{}')",
                stores[n % 10],
                at(n as i64 * 5)
            )
        })
        .collect();
    let mut sql = String::new();
    for (insert, rows) in [
        (
            "INSERT INTO rm_orders (id, store_id, customer_id, status, status_at, placed_at,
                promised_at, total_minor, lat, lon, open) VALUES ",
            &orders,
        ),
        (
            "INSERT INTO rm_timeline (event_id, order_id, store_id, status, at, source) VALUES ",
            &timeline,
        ),
        (
            "INSERT INTO rm_offers (assignment_id, store_id, order_id, rider_id, offered_at,
                expires_at) VALUES ",
            &offers,
        ),
        (
            "INSERT INTO rm_replies (assignment_id, store_id, rider_id, reply, at) VALUES ",
            &replies,
        ),
        (
            "INSERT INTO rm_stock (store_id, product_id, on_hand, reserved) VALUES ",
            &stock,
        ),
        (
            "INSERT INTO rm_riders (rider_id, store_id, lat, lon, at) VALUES ",
            &riders,
        ),
    ] {
        for chunk in rows.chunks(1_000) {
            sql.push_str(insert);
            sql.push_str(&chunk.join(", "));
            sql.push_str(";\n");
        }
    }
    rm_sql::execute(&running.cloud, sql).await;

    let dashboard = running.cloud.dashboard();
    // A build that reads the whole series: an order placed in a finished hour changes it.
    let mut whole = Vec::new();
    for n in 0..5 {
        let placed = clock::rfc3339(now - time::Duration::hours(5));
        rm_sql::execute(
            &running.cloud,
            format!(
                "INSERT INTO rm_orders (id, store_id, status, status_at, placed_at, open)
                 VALUES ('extra-{n}', 's0', 'CANCELLED', '{placed}', '{placed}', 0)"
            ),
        )
        .await;
        let started = Instant::now();
        dashboard.rebuild().await.unwrap();
        whole.push(started.elapsed());
    }
    // The usual build: only the current hour of the series is read again.
    let mut usual = Vec::new();
    let mut published = None;
    for _ in 0..9 {
        let started = Instant::now();
        published = Some(dashboard.rebuild().await.unwrap());
        usual.push(started.elapsed());
    }
    whole.sort();
    usual.sort();
    let published = published.unwrap();
    let snapshot: Value = serde_json::from_str(&published.json).unwrap();
    println!(
        "dashboard build over 10,000 orders: usual median {:?} (min {:?}, max {:?}), reading the \
         whole series median {:?} (min {:?}, max {:?}); {} KiB of JSON, {} orders listed",
        usual[4],
        usual[0],
        usual[8],
        whole[2],
        whole[0],
        whole[4],
        published.json.len() / 1024,
        snapshot["orders"].as_array().unwrap().len()
    );
    assert_eq!(snapshot["stores"].as_array().unwrap().len(), 10);
    assert_eq!(snapshot["riders"].as_array().unwrap().len(), 50);
    let open: u64 = snapshot["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["open_orders"].as_u64().unwrap())
        .sum();
    assert_eq!(open, 500);
    assert_eq!(
        snapshot["series"]["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>(),
        10_005
    );
    // Generous: a shared two-core machine.
    assert!(usual[4] < Duration::from_secs(1), "{usual:?}");
    assert!(whole[2] < Duration::from_secs(2), "{whole:?}");
    shutdown.cancel();
    running.wait().await.unwrap();
}

/// The store writes its devices' rows, as its device feed does; `rows` are (id, kind, health,
/// reason, faults), all changed `ago` seconds before now.
async fn devices(db: &StoreDb, rows: &[(&str, &str, &str, String, &str)], ago: i64) {
    let at = clock::rfc3339(clock::now() - time::Duration::seconds(ago));
    let rows: Vec<(String, String, String, String, String)> = rows
        .iter()
        .map(|(id, kind, health, reason, faults)| {
            (
                (*id).to_owned(),
                (*kind).to_owned(),
                (*health).to_owned(),
                reason.clone(),
                (*faults).to_owned(),
            )
        })
        .collect();
    db.write(move |conn| {
        for (id, kind, health, reason, faults) in &rows {
            conn.execute(
                "INSERT INTO device_status
                    (device_id, store_id, kind, health, reason, faults, changed_at)
                 VALUES (?1, 's1', ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (device_id) DO UPDATE SET health = excluded.health,
                    reason = excluded.reason, faults = excluded.faults,
                    changed_at = excluded.changed_at",
                params![id, kind, health, reason, faults, at],
            )?;
        }
        Ok::<_, flashkart_sync::Error>(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stores_devices_and_sync_lag_show_as_the_store_reports_them() {
    let env = two_stores(None, 30).await;
    let e1 = env.edge("s1").clone();
    let cloud = &env.running.cloud;
    let devices_projected = |n: i64| {
        move || async move { rm_sql::count(cloud, "SELECT count(*) FROM rm_devices").await == n }
    };
    // A printer out of paper and a working scanner, changed 5 s ago; and two rows HQ will not
    // show: a health nobody knows and a reason of 5,000 characters.
    devices(
        &e1,
        &[
            (
                "printer-1",
                "printer",
                "connected",
                String::new(),
                "paper out",
            ),
            ("scanner-1", "scanner", "connected", String::new(), ""),
            ("scale-1", "scale", "on fire", String::new(), ""),
            ("scale-2", "scale", "unhealthy", "x".repeat(5_000), ""),
        ],
        5,
    )
    .await;
    until(&env, "two device rows projected", devices_projected(2)).await;
    let snapshot = env.rebuild().await;
    let s1 = store(&snapshot, "s1");
    assert_eq!(s1["health"], "degraded", "{s1}");
    assert_eq!(s1["devices_down"], 1, "{s1}");
    let listed: Vec<(&str, &str, Value)> = s1["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap(),
                d["health"].as_str().unwrap(),
                d["faults"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("printer-1", "connected", json!(["paper out"])),
            ("scanner-1", "connected", json!([])),
        ]
    );
    // The newest fact was 5 s old when it was projected (at most a few seconds more here).
    let lag = s1["sync_lag_s"].as_f64().expect("a sync lag");
    assert!((5.0..30.0).contains(&lag), "{s1}");
    assert!(s1["sync_lag_at"].is_string(), "{s1}");
    // Store s2 reported no timestamped fact yet: no lag figure, no devices.
    let s2 = store(&snapshot, "s2");
    assert!(s2["sync_lag_s"].is_null(), "{s2}");
    assert_eq!(s2["devices"], json!([]), "{s2}");
    assert_eq!(s2["health"], "ok", "{s2}");

    // Paper loaded, the scanner taken out of the configuration: the store is healthy again.
    devices(
        &e1,
        &[("printer-1", "printer", "connected", String::new(), "")],
        0,
    )
    .await;
    e1.write(|conn| {
        conn.execute(
            "DELETE FROM device_status WHERE device_id = 'scanner-1'",
            [],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
    until(&env, "the scanner's row gone", devices_projected(1)).await;
    let healthy = move || async move {
        rm_sql::count(cloud, "SELECT count(*) FROM rm_devices WHERE faults = ''").await == 1
    };
    until(&env, "the printer's faults cleared", healthy).await;
    let snapshot = env.rebuild().await;
    let s1 = store(&snapshot, "s1");
    assert_eq!(
        (s1["health"].as_str(), s1["devices_down"].as_u64()),
        (Some("ok"), Some(0)),
        "{s1}"
    );
    assert!(s1["sync_lag_s"].as_f64().unwrap() < 5.0, "{s1}");
    env.stop().await;
}

/// Minutes from `from` to the door at the default rider speed (18 km/h).
fn minutes_to(from: (f64, f64), door: (f64, f64)) -> i64 {
    (flashkart_cloud::area::distance_m(from, door) / 300.0).ceil() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_follows_the_order_to_the_door() {
    let env = two_stores(Some(100), 30).await;
    let (code, body) = env
        .api
        .admin(
            Method::PUT,
            "/admin/v1/riders/r1",
            json!({"home_store_id": "s1", "name": "Rita"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let order = env.order_at("track", ONLY_S1, "s1").await;
    let path = format!("/api/v1/orders/{order}/events");

    // Nobody else follows it.
    let (code, other) = env
        .api
        .admin(
            Method::POST,
            "/admin/v1/customers",
            json!({"first_name": "Bo"}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let other = other["token"].as_str().unwrap();
    for (token, status) in [
        (other, StatusCode::NOT_FOUND),
        ("", StatusCode::UNAUTHORIZED),
    ] {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", env.api.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
    }

    let mut events = Events::connect(&env.api.base, &path, &env.customer, None).await;
    let (event, id, first) = events.next().await;
    assert_eq!((event.as_str(), id.as_str()), ("order", "1"));
    assert_eq!(first["status"], "ROUTED", "{first}");
    assert_eq!(
        first["delivery_pin"].as_str().map(str::len),
        Some(4),
        "{first}"
    );
    assert!(first["rider"].is_null(), "{first}");
    assert!(
        (29..=30).contains(&first["eta_minutes"].as_i64().unwrap()),
        "{first}"
    );

    // The store works it: each step is pushed.
    let e1 = env.edge("s1").clone();
    let base = clock::now();
    let ready = [("ACCEPTED", 1), ("PICKING", 2), ("PACKED", 3), ("READY", 4)];
    progress(&e1, "s1", &order, "ROUTED", base, &ready).await;
    let mut seen = vec!["ROUTED".to_owned()];
    while seen.last().map(String::as_str) != Some("READY") {
        let (_, _, view) = events.next().await;
        let status = view["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
    }

    // Rita takes it: once it is picked up, her position and an ETA from it.
    let start = (52.50, 13.42);
    fix(&e1, "r1", start).await;
    let offer = offer_to(&env, "r1").await;
    reply(&e1, &offer, "r1", "accepted").await;
    progress(&e1, "s1", &order, "READY", base, &[("PICKED_UP", 5)]).await;
    let on_its_way = loop {
        let (_, _, view) = events.next().await;
        if view["status"] == "PICKED_UP" && !view["rider"].is_null() {
            break view;
        }
    };
    assert_eq!(
        (
            on_its_way["rider"]["lat"].as_f64(),
            on_its_way["rider"]["lon"].as_f64()
        ),
        (Some(start.0), Some(start.1))
    );
    assert_eq!(
        on_its_way["eta_minutes"].as_i64(),
        Some(minutes_to(start, ONLY_S1)),
        "{on_its_way}"
    );
    // She rides on: the dot moves and the ETA shrinks.
    let nearer = (52.50, 13.37);
    fix(&e1, "r1", nearer).await;
    let moved = loop {
        let (_, _, view) = events.next().await;
        if view["rider"]["lon"].as_f64() == Some(nearer.1) {
            break view;
        }
    };
    let eta = moved["eta_minutes"].as_i64().unwrap();
    assert_eq!(eta, minutes_to(nearer, ONLY_S1));
    assert!(eta < on_its_way["eta_minutes"].as_i64().unwrap());

    // Delivered: the last event, then the stream ends.
    progress(&e1, "s1", &order, "PICKED_UP", base, &[("DELIVERED", 6)]).await;
    let last = loop {
        let (_, _, view) = events.next().await;
        if view["finished"] == true {
            break view;
        }
    };
    assert_eq!(last["status"], "DELIVERED");
    assert!(
        last["delivery_pin"].is_null() && last["eta_minutes"].is_null(),
        "{last}"
    );
    let statuses: Vec<&str> = last["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    for status in ["ACCEPTED", "READY", "PICKED_UP", "DELIVERED"] {
        assert!(statuses.contains(&status), "{statuses:?}");
    }
    events.ended().await;
    env.stop().await;
}
