//! Twenty clients picking, receiving and adjusting the same product at once: available stock
//! never goes below zero (not in any committed state the event stream shows, not at the end),
//! and every move a client was told about is in the ledger, and nothing else is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[derive(Debug, Default)]
struct Tally {
    /// Move ids the server acknowledged, with their kind.
    moves: Vec<(String, &'static str)>,
    received: i64,
    damaged: i64,
    picked: i64,
    reserves: i64,
    refused_adjusts: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_never_oversell_and_lose_no_move() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    let first = api
        .ok(
            &t.picker,
            "/api/v1/stock/receive",
            json!({"product_id": MILK, "qty": 40, "lot": "L0", "expiry": "2030-01-01"}),
        )
        .await;
    let tally = Arc::new(Mutex::new(Tally {
        moves: vec![(first["moves"][0].as_str().unwrap().to_owned(), "receive")],
        received: 40,
        ..Tally::default()
    }));

    // Every committed stock level of the milk, as the stream reports it, until the sentinel.
    let mut events = api.events(&t.picker).await;
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let (_, e) = events.next().await;
            if e["type"] == "stock" && e["product_id"] == BREAD {
                return seen;
            }
            if e["type"] == "stock" && e["product_id"] == MILK {
                seen.push((e["seq"].as_u64().unwrap(), e["available"].as_i64().unwrap()));
            }
        }
    });

    let mut clients = Vec::new();
    for i in 0..8 {
        let (api, t, tally) = (api.clone(), t.clone(), tally.clone());
        clients.push(tokio::spawn(async move {
            for k in 0..4 {
                let id = format!("c-{i}-{k}");
                let (status, arrival) = api
                    .post(
                        &t.manager,
                        "/api/v1/intake/orders",
                        json!({"id": id, "lines": [{"product_id": MILK, "qty": 3}]}),
                    )
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{arrival}");
                let reserved = arrival["lines"][0]["reserved"].as_i64().unwrap();
                if reserved > 0 {
                    tally.lock().unwrap().reserves += 1;
                }
                for _ in 0..reserved {
                    let scan = api
                        .ok(
                            &t.picker,
                            &format!("/api/v1/orders/{id}/scan"),
                            json!({"code": gtin(MILK)}),
                        )
                        .await;
                    let mut tally = tally.lock().unwrap();
                    tally
                        .moves
                        .push((scan["release_move"].as_str().unwrap().to_owned(), "release"));
                    for taken in scan["taken"].as_array().unwrap() {
                        tally
                            .moves
                            .push((taken["move_id"].as_str().unwrap().to_owned(), "pick"));
                    }
                    tally.picked += 1;
                }
            }
        }));
    }
    for i in 0..6 {
        let (api, t, tally) = (api.clone(), t.clone(), tally.clone());
        clients.push(tokio::spawn(async move {
            for j in 0..10 {
                let qty = 1 + j % 3;
                let body = api.ok(&t.picker, "/api/v1/stock/receive",
                    json!({"product_id": MILK, "qty": qty, "lot": format!("R{i}"), "expiry": "2030-02-01"})).await;
                let mut tally = tally.lock().unwrap();
                tally.moves.push((body["moves"][0].as_str().unwrap().to_owned(), "receive"));
                tally.received += qty;
            }
        }));
    }
    for _ in 0..6 {
        let (api, t, tally) = (api.clone(), t.clone(), tally.clone());
        clients.push(tokio::spawn(async move {
            for _ in 0..10 {
                let (status, body) = api.post(&t.lead, "/api/v1/stock/adjust",
                    json!({"product_id": MILK, "bin_id": "A-01-1", "qty": -2, "reason": "damage"})).await;
                let mut tally = tally.lock().unwrap();
                if status.is_success() {
                    for id in body["moves"].as_array().unwrap() {
                        tally.moves.push((id.as_str().unwrap().to_owned(), "damage"));
                    }
                    tally.damaged += 2;
                } else {
                    assert_eq!(status, StatusCode::CONFLICT, "{body}");
                    assert_eq!(body["error"], "insufficient_stock", "{body}");
                    tally.refused_adjusts += 1;
                }
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    // Sentinel: ends the watcher.
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"product_id": BREAD, "qty": 1}),
    )
    .await;
    let seen = watcher.await.unwrap();

    let tally = Arc::try_unwrap(tally).unwrap().into_inner().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|(_, available)| *available >= 0),
        "{seen:?}"
    );
    let on_hand = tally.received - tally.damaged - tally.picked;
    let (level_on_hand, reserved, available) = api.level(&t.picker, MILK).await;
    assert_eq!(level_on_hand, on_hand);
    assert_eq!(available, on_hand - reserved);
    assert!(available >= 0);
    // The last committed level the stream showed is the final one.
    let last = seen.iter().max_by_key(|(seq, _)| *seq).unwrap();
    assert_eq!(last.1, available);

    // The ledger holds exactly the acknowledged moves, plus the arrivals' reservations.
    let dir = daemon.stop().await;
    let db = open_db(dir.path()).await;
    let (rows, problems) = db
        .read(|conn| {
            let mut stmt =
                conn.prepare("SELECT id, kind FROM stock_moves WHERE product_id = ?1")?;
            let rows: HashMap<String, String> = stmt
                .query_map([MILK], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let problems = flashkart_edge::work::stock::check_summary(conn)
                .map_err(|e| flashkart_sync::Error::Commit(e.to_string()))?;
            Ok::<_, flashkart_sync::Error>((rows, problems))
        })
        .await
        .unwrap();
    db.close().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    for (id, kind) in &tally.moves {
        assert_eq!(
            rows.get(id).map(String::as_str),
            Some(*kind),
            "move {id} lost"
        );
    }
    let reserves = rows.values().filter(|k| *k == "reserve").count();
    assert_eq!(i64::try_from(reserves).unwrap(), tally.reserves);
    assert_eq!(
        rows.len(),
        tally.moves.len() + reserves,
        "no move beyond the acknowledged ones"
    );
    assert!(tally.picked > 0 && tally.damaged > 0);

    // A restart rebuilds the summary from the ledger: same levels.
    let daemon = Daemon::start_in(dir).await;
    let manager = daemon.api.sign_in("manager", "123456").await;
    assert_eq!(
        daemon.api.level(&manager, MILK).await,
        (level_on_hand, reserved, available)
    );
    daemon.stop().await;
}
