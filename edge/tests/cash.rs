//! Cash on delivery through the real daemon: a cash order taken in locally, offered to a
//! simulated rider (the offer says what to collect), delivered through the riders' broker and
//! the daemon's order desk with the cash collected, then handed in at the desk by a lead for a
//! different amount. The reply and the live stream show expected and difference, the hand-in
//! is stored, the rider's shift is closed (off shift, not online, no offers) until a lead signs
//! it on, a second hand-in finds nothing open, and wrong callers and bad bodies change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use flashkart_edge::config::RidersSection;
use flashkart_edge_sim::rider::{self as sim, SimConfig, SimEvent};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const STORE: &str = "store-1";
const RIDER: &str = "r1";
const STORE_LAT: f64 = 48.137;
const STORE_LON: f64 = 11.575;
const WAIT: Duration = Duration::from_secs(20);

/// A data directory whose store database already has the store's place and rider r1 on its
/// roster (cloud-owned rows, as sync would have brought them).
async fn data_dir_with_roster() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    db.write(|conn| {
        conn.execute(
            "INSERT INTO stores (id, name, lat, lon) VALUES (?1, 'Test store', ?2, ?3)",
            rusqlite::params![STORE, STORE_LAT, STORE_LON],
        )?;
        conn.execute(
            "INSERT INTO riders (id, home_store_id, name) VALUES (?1, ?2, 'Rita')",
            [RIDER, STORE],
        )?;
        Ok::<_, flashkart_sync::Error>(())
    })
    .await
    .unwrap();
    db.close().await.unwrap();
    dir
}

/// Takes an order in locally and works it to READY; returns its bag label.
async fn ready_order(api: &Api, t: &Tokens, id: &str, payment: Value) -> String {
    let mut order = json!({
        "id": id,
        "customer_first_name": "Ada",
        "address": "Main St 1",
        "lat": STORE_LAT + 0.009,
        "lon": STORE_LON,
        "lines": [{"product_id": MILK, "qty": 1}],
    });
    if let (Some(order), Some(payment)) = (order.as_object_mut(), payment.as_object()) {
        order.extend(payment.clone());
    }
    let (status, body) = api.post(&t.manager, "/api/v1/intake/orders", order).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    api.ok(
        &t.picker,
        &format!("/api/v1/orders/{id}/scan"),
        json!({"code": gtin(MILK)}),
    )
    .await;
    api.ok(
        &t.picker,
        &format!("/api/v1/orders/{id}/pack"),
        json!({"bag_weight_g": 1030}),
    )
    .await;
    api.ok(&t.picker, &format!("/api/v1/orders/{id}/ready"), json!({}))
        .await;
    let (_, detail) = api.get(&t.picker, &format!("/api/v1/orders/{id}")).await;
    detail["label_id"]
        .as_str()
        .expect("a label at READY")
        .to_owned()
}

/// The cloud's offer of `order` to r1, written into the daemon's database as sync would.
async fn offer(dir: &std::path::Path, assignment: &'static str, order: &'static str) {
    let db = open_db(dir).await;
    db.write(move |conn| {
        conn.execute(
            "INSERT INTO assignments (id, store_id, order_id, rider_id, offered_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            [
                assignment,
                STORE,
                order,
                RIDER,
                flashkart_edge::clock::now().as_str(),
                flashkart_edge::clock::seconds_from_now(600).as_str(),
            ],
        )?;
        Ok::<_, flashkart_sync::Error>(())
    })
    .await
    .unwrap();
    db.close().await.unwrap();
}

async fn wait_sim<T>(
    events: &mut mpsc::Receiver<SimEvent>,
    what: &str,
    mut pick: impl FnMut(&SimEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("the simulator stopped");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn riders_online(api: &Api) -> String {
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("flashkart_edge_riders_online "))
        .unwrap_or_default()
        .to_owned()
}

async fn until_online(api: &Api, expected: &str) {
    let line = format!("flashkart_edge_riders_online {expected}");
    tokio::time::timeout(WAIT, async {
        while riders_online(api).await != line {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never `{line}`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cash_is_collected_handed_in_and_the_shift_closed() {
    let dir = data_dir_with_roster().await;
    let daemon = Daemon::start_with(dir, |config| {
        config.riders = Some(RidersSection {
            tls_listen: "127.0.0.1:0".parse().unwrap(),
            enrol_listen: "127.0.0.1:0".parse().unwrap(),
            plain_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..RidersSection::default()
        });
    })
    .await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 5}),
    )
    .await;

    // The local intake checks what it is told about payment.
    for (bad, why) in [
        (
            json!({"payment_method": "cash"}),
            "a cash order names its currency",
        ),
        (json!({"payment_method": "bitcoin"}), "card or cash"),
        (
            json!({"cash_due_minor": 100}),
            "a card order has nothing due",
        ),
        (
            json!({"payment_method": "cash", "currency": "eur"}),
            "an ISO 4217 code",
        ),
        (
            json!({"payment_method": "cash", "currency": "EUR", "cash_due_minor": -1}),
            "money is not negative",
        ),
    ] {
        let mut order = json!({"id": "o-bad", "lines": [{"product_id": MILK, "qty": 1}]});
        order
            .as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let (status, body) = api.post(&t.manager, "/api/v1/intake/orders", order).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {body}");
    }
    let (status, _) = api.get(&t.picker, "/api/v1/orders/o-bad").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let label = ready_order(
        &api,
        &t,
        "o-cash",
        json!({"payment_method": "cash", "cash_due_minor": 2340, "currency": "EUR"}),
    )
    .await;

    // The rider's phone, on the broker's loopback listener.
    let (sim_tx, mut sim_rx) = mpsc::channel(256);
    let labels: sim::Lookup = {
        let label = label.clone();
        Arc::new(move |order: &str| (order == "o-cash").then(|| label.clone()))
    };
    let mut config = SimConfig::new(
        RIDER,
        daemon
            .riders_plain_addr
            .expect("a loopback listener")
            .port(),
        (STORE_LAT - 0.003, STORE_LON),
        labels,
    );
    config.speed_mps = 2000.0;
    config.tick = Duration::from_millis(50);
    config.events = Some(sim_tx);
    let stop = CancellationToken::new();
    let phone = tokio::spawn(sim::run(config, stop.clone()));
    wait_sim(&mut sim_rx, "the phone subscribed", |e| {
        matches!(e, SimEvent::Ready { .. }).then_some(())
    })
    .await;
    until_online(&api, "1").await;

    // The offer tells the rider what to collect; the phone collects it and delivers.
    offer(daemon.dir.path(), "a1", "o-cash").await;
    let offered = wait_sim(&mut sim_rx, "the offer", |e| match e {
        SimEvent::Offer { offer, .. } if offer.assignment_id == "a1" => Some(offer.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (offered.cash_due_minor, offered.currency.as_str()),
        (2340, "EUR")
    );
    wait_sim(&mut sim_rx, "the delivery acknowledged", |e| match e {
        SimEvent::Ack { ack, .. } if ack.command == "delivered" => Some(()),
        SimEvent::Refusal { refusal, .. } if refusal.command == "delivered" => {
            panic!("refused: {refusal:?}")
        }
        _ => None,
    })
    .await;
    let (_, detail) = api.get(&t.picker, "/api/v1/orders/o-cash").await;
    assert_eq!(detail["status"], "DELIVERED", "{detail}");

    let (status, held) = api.get(&t.lead, "/api/v1/riders/r1/cash").await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(held["expected_minor"], 2340, "{held}");
    assert_eq!(held["currency"], "EUR");
    assert_eq!(held["on_shift"], true);
    assert_eq!(
        held["open"],
        json!([{"currency": "EUR", "amount_minor": 2340, "deliveries": 1}])
    );
    assert_eq!(held["handins"], json!([]));

    // Only leads and managers take cash in; a picker gets 403 and nothing changes.
    let (status, body) = api
        .post(
            &t.picker,
            "/api/v1/riders/r1/cash-handin",
            json!({"amount_minor": 2300}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = api.get(&t.picker, "/api/v1/riders/r1/cash").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Bad bodies: 422, nothing written.
    for bad in [
        json!({"amount_minor": -1}),
        json!({"amount_minor": 10_000_000_001_i64}),
        json!({"amount_minor": "2300"}),
        json!({"amount_minor": 2.5}),
        json!({}),
        json!({"amount_minor": 2300, "note": "x".repeat(501)}),
        json!({"amount_minor": 2300, "note": "two\nlines"}),
        json!({"amount_minor": 2300, "tip_minor": 5}),
    ] {
        let (status, body) = api
            .post(&t.lead, "/api/v1/riders/r1/cash-handin", bad.clone())
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (_, unchanged) = api.get(&t.lead, "/api/v1/riders/r1/cash").await;
    assert_eq!(unchanged, held, "a refused hand-in changed something");

    // The lead counts 23.00 EUR of the 23.40 EUR collected.
    let mut events = api.events(&t.lead).await;
    let (status, handin) = api
        .post(
            &t.lead,
            "/api/v1/riders/r1/cash-handin",
            json!({"amount_minor": 2300, "note": "40 cents short"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{handin}");
    let handin_id = handin["handin_id"].as_str().unwrap().to_owned();
    assert_eq!(
        handin,
        json!({
            "handin_id": handin_id,
            "rider_id": "r1",
            "amount_minor": 2300,
            "expected_minor": 2340,
            "difference_minor": -40,
            "currency": "EUR",
            "deliveries": 1,
            "shift_closed": true,
        })
    );
    let streamed = events
        .until("the cash event", |e| e["type"] == "cash")
        .await;
    assert_eq!(streamed["handin_id"], handin_id.as_str());
    assert_eq!(
        (
            &streamed["difference_minor"],
            &streamed["staff_id"],
            &streamed["shift_closed"]
        ),
        (&json!(-40), &json!("lea"), &json!(true))
    );

    // The shift is closed: off shift here, no longer online, and offered nothing.
    let (_, held) = api.get(&t.lead, "/api/v1/riders/r1/cash").await;
    assert_eq!(held["on_shift"], false, "{held}");
    assert!(held["signed_off_at"].is_string(), "{held}");
    assert_eq!(held["expected_minor"], 0);
    assert_eq!(held["open"], json!([]));
    let last = &held["handins"][0];
    assert_eq!(
        (
            &last["handin_id"],
            &last["amount_minor"],
            &last["expected_minor"],
            &last["difference_minor"],
            &last["staff_id"],
            &last["note"]
        ),
        (
            &json!(handin_id),
            &json!(2300),
            &json!(2340),
            &json!(-40),
            &json!("lea"),
            &json!("40 cents short")
        )
    );
    assert_eq!(riders_online(&api).await, "flashkart_edge_riders_online 0");
    ready_order(&api, &t, "o-card", json!({})).await;
    offer(daemon.dir.path(), "a2", "o-card").await;
    // Offers are scanned every second: three scans pass without it.
    let early = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Some(SimEvent::Offer { offer, .. }) = sim_rx.recv().await
                && offer.assignment_id == "a2"
            {
                return;
            }
        }
    })
    .await;
    assert!(early.is_err(), "a rider off shift was offered an order");

    // Nothing is open now: a second hand-in is 409 and writes nothing.
    let (status, body) = api
        .post(
            &t.lead,
            "/api/v1/riders/r1/cash-handin",
            json!({"amount_minor": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = api
        .post(
            &t.manager,
            "/api/v1/riders/r1/cash-handin",
            json!({"amount_minor": 2300}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A lead signs the rider on again: the waiting offer reaches the phone, with nothing to
    // collect (a card order).
    let (status, _) = api
        .post(&t.picker, "/api/v1/riders/r1/sign-on", json!({}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, signed_on) = api
        .post(&t.lead, "/api/v1/riders/r1/sign-on", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{signed_on}");
    assert_eq!(
        signed_on,
        json!({"rider_id": "r1", "on_shift": true, "was_signed_off": true})
    );
    let offered = wait_sim(&mut sim_rx, "the offer after signing on", |e| match e {
        SimEvent::Offer { offer, .. } if offer.assignment_id == "a2" => Some(offer.clone()),
        _ => None,
    })
    .await;
    assert_eq!(offered.cash_due_minor, 0);
    let (_, held) = api.get(&t.lead, "/api/v1/riders/r1/cash").await;
    assert_eq!(held["on_shift"], true, "{held}");
    let (status, _) = api.get(&t.lead, "/api/v1/riders/nobody/cash").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    stop.cancel();
    phone.await.unwrap().unwrap();
    let dir = daemon.stop().await;

    // What sync will push: one hand-in, and the delivery it covered.
    let db = open_db(dir.path()).await;
    let handin_row = handin_id.clone();
    let (stored, covered): (Vec<Value>, Value) = db
        .read(move |conn| {
            let stored = conn
                .prepare(
                    "SELECT id, store_id, rider_id, amount_minor, expected_minor, currency,
                        staff_id, note FROM cash_handins",
                )?
                .query_map([], |r| {
                    Ok(json!([
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?
                    ]))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let covered = conn.query_row(
                "SELECT cash_collected_minor, cash_handin_id FROM deliveries
                 WHERE order_id = 'o-cash'",
                [],
                |r| {
                    Ok(json!([
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)? == handin_row
                    ]))
                },
            )?;
            Ok::<_, flashkart_sync::Error>((stored, covered))
        })
        .await
        .unwrap();
    assert_eq!(
        stored,
        vec![json!([
            handin_id,
            STORE,
            "r1",
            2300,
            2340,
            "EUR",
            "lea",
            "40 cents short"
        ])]
    );
    assert_eq!(covered, json!([2340, true]));
    db.close().await.unwrap();
}
