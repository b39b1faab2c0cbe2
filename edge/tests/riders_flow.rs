//! Acceptance: an edge riders service over a real store database, three simulated riders over
//! TLS with their certificates, and an independent MQTT client (mosquitto_sub): offer ->
//! accept -> arrival -> pickup scan -> delivered with the order states matching; declines,
//! expiries, throttled positions, offers re-published after a restart, and one rider per order
//! when two offers of it meet at the store.

#![allow(clippy::unwrap_used)]

mod riders_support;

use flashkart_edge::riders::{ClientKey, RiderEvent};
use flashkart_edge_sim::rider::{self as sim, AcceptPolicy, SimEvent};
use flashkart_proto::rider as pb;
use prost::Message;
use riders_support::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_riders_offer_accept_arrive_pick_up_deliver() {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    for (rider, code) in [("r1", "c1"), ("r2", "c2"), ("r3", "c3")] {
        seed_rider(&db, rider, code).await;
    }
    seed_ready_order(&db, "o1", "FK-L1").await;
    let mut edge = start_edge(&db, dir.path()).await;

    let mut bundles = Vec::new();
    for (rider, code) in [("r1", "c1"), ("r2", "c2"), ("r3", "c3")] {
        bundles.push(
            edge.riders
                .enrol(rider, code, ClientKey::Generate)
                .await
                .unwrap(),
        );
    }
    let (sim_tx, mut sim_rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    let mut sims = Vec::new();
    for (bundle, policy) in bundles.iter().zip([
        AcceptPolicy::Always,
        AcceptPolicy::Never,
        AcceptPolicy::Always,
    ]) {
        let mut config = sim_config(
            &bundle.rider_id,
            edge.tls_port,
            bundle,
            labels(&[("o1", "FK-L1")]),
            sim_tx.clone(),
        );
        config.accept = policy;
        sims.push(tokio::spawn(sim::run(config, stop.clone())));
    }
    let mut ready = std::collections::BTreeSet::new();
    while ready.len() < 3 {
        ready.insert(
            wait_sim(&mut sim_rx, |e| match e {
                SimEvent::Ready { rider_id } => Some(rider_id.clone()),
                _ => None,
            })
            .await,
        );
    }

    // r2 declines.
    assign(&db, "a1", "o1", "r2", 600).await;
    edge.riders.assignments_changed();
    let reply = wait_for(&mut edge.events, |e| match e {
        RiderEvent::Replied {
            assignment_id,
            reply,
            ..
        } if assignment_id == "a1" => Some(reply.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reply, "declined");

    // r1 gets the order; an independent client holding r1's certificate sees the offer too
    // (retained until answered).
    let creds = write_creds(dir.path(), "r1", &bundles[0]);
    assign(&db, "a2", "o1", "r1", 600).await;
    edge.riders.assignments_changed();
    let (rider, pin_ok) = wait_for(&mut edge.events, |e| match e {
        RiderEvent::Delivered {
            order_id,
            rider_id,
            pin_ok,
        } if order_id == "o1" => Some((rider_id.clone(), *pin_ok)),
        _ => None,
    })
    .await;
    assert_eq!((rider.as_str(), pin_ok), ("r1", None));

    let status = query(
        &db,
        "SELECT status FROM order_progress WHERE order_id = ?1",
        "o1",
    )
    .await;
    assert_eq!(status, vec![vec!["DELIVERED".to_owned()]]);
    let replies = query(
        &db,
        "SELECT assignment_id, rider_id, reply FROM assignment_replies WHERE assignment_id >= ?1 ORDER BY 1",
        "a",
    )
    .await;
    assert_eq!(
        replies,
        vec![
            vec!["a1".to_owned(), "r2".into(), "declined".into()],
            vec!["a2".to_owned(), "r1".into(), "accepted".into()],
        ]
    );
    let handoff = query(
        &db,
        "SELECT rider_id, label_id FROM handoffs WHERE order_id = ?1",
        "o1",
    )
    .await;
    assert_eq!(handoff, vec![vec!["r1".to_owned(), "FK-L1".into()]]);
    let delivery = query(
        &db,
        "SELECT rider_id, lat IS NOT NULL FROM deliveries WHERE order_id = ?1",
        "o1",
    )
    .await;
    assert_eq!(delivery, vec![vec!["r1".to_owned(), "1".into()]]);
    let moves = query(
        &db,
        "SELECT from_status, to_status, actor FROM order_events WHERE order_id = ?1 ORDER BY at, to_status DESC",
        "o1",
    )
    .await;
    assert_eq!(
        moves,
        vec![
            vec!["READY".to_owned(), "PICKED_UP".into(), "rider:r1".into()],
            vec![
                "PICKED_UP".to_owned(),
                "DELIVERED".into(),
                "rider:r1".into()
            ],
        ]
    );
    // The simulator saw every step acknowledged.
    let mut acks = Vec::new();
    while acks.len() < 4 {
        let ack = wait_sim(&mut sim_rx, |e| match e {
            SimEvent::Ack { rider_id, ack } if rider_id == "r1" => Some(ack.status.clone()),
            _ => None,
        })
        .await;
        if acks.last() != Some(&ack) {
            acks.push(ack);
        }
    }
    assert_eq!(acks, ["accepted", "arrived", "PICKED_UP", "DELIVERED"]);

    // An offer to r3 that expires before anyone answers counts as declined.
    seed_ready_order(&db, "o2", "FK-L2").await;
    assign(&db, "a3", "o2", "r3", -1).await;
    edge.riders.assignments_changed();
    wait_for(&mut edge.events, |e| match e {
        RiderEvent::Replied {
            assignment_id,
            reply,
            ..
        } if assignment_id == "a3" && reply == "expired" => Some(()),
        _ => None,
    })
    .await;

    // A new offer for r1, with the simulators gone: an independent client holding r1's
    // certificate finds it retained.
    seed_ready_order(&db, "o3", "FK-L3").await;
    assign(&db, "a4", "o3", "r1", 600).await;
    stop.cancel();
    for sim in sims {
        let stats = sim.await.unwrap().unwrap();
        assert!(stats.locations > 0);
    }
    edge.riders.assignments_changed();
    wait_for(&mut edge.events, |e| match e {
        RiderEvent::Offered { assignment_id, .. } if assignment_id == "a4" => Some(()),
        _ => None,
    })
    .await;
    let mut sub = subscribe(edge.tls_port, &creds, "watch", "/tenants/r1/edge/offers/#")
        .await
        .expect("r1's certificate is accepted");
    let (topic, payload) = sub.next(WAIT).await.expect("the retained offer");
    assert_eq!(topic, "/tenants/r1/edge/offers/a4");
    let offer = pb::Offer::decode(payload.as_slice()).unwrap();
    assert_eq!(
        (offer.order_id.as_str(), offer.store_id.as_str()),
        ("o3", STORE)
    );

    // Positions: one row per rider, the latest.
    wait_for(&mut edge.events, |e| {
        matches!(e, RiderEvent::PositionsWritten { .. }).then_some(())
    })
    .await;
    let positions = query(
        &db,
        "SELECT rider_id FROM rider_positions WHERE store_id = ?1 ORDER BY 1",
        STORE,
    )
    .await;
    assert_eq!(
        positions,
        vec![vec!["r1".to_owned()], vec!["r2".into()], vec!["r3".into()]]
    );

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_offers_are_published_again_after_a_restart() {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    seed_rider(&db, "r1", "c1").await;
    seed_ready_order(&db, "o1", "FK-L1").await;
    let mut edge = start_edge(&db, dir.path()).await;
    let bundle = edge
        .riders
        .enrol("r1", "c1", ClientKey::Generate)
        .await
        .unwrap();
    assign(&db, "a1", "o1", "r1", 600).await;
    edge.riders.assignments_changed();
    wait_for(&mut edge.events, |e| {
        matches!(e, RiderEvent::Offered { assignment_id, .. } if assignment_id == "a1")
            .then_some(())
    })
    .await;
    edge.riders.shutdown().await;

    // A new broker (its retained messages are in memory only) on the same ports, as a
    // restarted daemon binds 8883 again (the stopped broker let go of them), same database.
    let (tls_port, plain_port) = (edge.tls_port, edge.plain_port);
    let mut edge = start_edge_with(&db, dir.path(), |config| {
        config.tls_listen = ([127, 0, 0, 1], tls_port).into();
        config.plain_listen = Some(([127, 0, 0, 1], plain_port).into());
    })
    .await;
    assert_eq!((edge.tls_port, edge.plain_port), (tls_port, plain_port));
    wait_for(&mut edge.events, |e| {
        matches!(e, RiderEvent::Offered { assignment_id, .. } if assignment_id == "a1")
            .then_some(())
    })
    .await;
    let creds = write_creds(dir.path(), "r1", &bundle);
    let mut sub = subscribe(edge.tls_port, &creds, "phone", "/tenants/r1/edge/offers/#")
        .await
        .expect("the certificate from before the restart is still valid");
    let (topic, _) = sub.next(WAIT).await.expect("the offer, published again");
    assert_eq!(topic, "/tenants/r1/edge/offers/a1");

    // Answered over the independent client: recorded, and the retained offer is withdrawn.
    answer(edge.tls_port, &creds, "r1", "a1", true).await;
    replied(&mut edge.events, "a1", "accepted").await;
    let (topic, payload) = sub.next(WAIT).await.expect("the withdrawal");
    assert_eq!(
        (topic.as_str(), payload.len()),
        ("/tenants/r1/edge/offers/a1", 0)
    );
    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

/// The cloud cascades an offer it saw expire, and an acceptance the store recorded just in
/// time can reach it after that: the store then holds two offers of one order. The first
/// acceptance stands; the second rider's is refused as `taken` and records nothing, while a
/// decline of the second offer is still recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rider_cannot_accept_an_order_another_rider_took() {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    seed_rider(&db, "r1", "c1").await;
    seed_rider(&db, "r2", "c2").await;
    seed_ready_order(&db, "o1", "FK-L1").await;
    let mut edge = start_edge(&db, dir.path()).await;
    let mut creds = Vec::new();
    for (rider, code) in [("r1", "c1"), ("r2", "c2")] {
        let bundle = edge
            .riders
            .enrol(rider, code, ClientKey::Generate)
            .await
            .unwrap();
        creds.push(write_creds(dir.path(), rider, &bundle));
    }
    assign(&db, "a1", "o1", "r1", 600).await;
    assign(&db, "b1", "o1", "r2", 600).await;
    edge.riders.assignments_changed();

    answer(edge.tls_port, &creds[0], "r1", "a1", true).await;
    replied(&mut edge.events, "a1", "accepted").await;

    answer(edge.tls_port, &creds[1], "r2", "b1", true).await;
    let code = wait_for(&mut edge.events, |e| match e {
        RiderEvent::Refused { rider_id, code, .. } if rider_id == "r2" => Some(code.clone()),
        _ => None,
    })
    .await;
    assert_eq!(code, "taken");
    let accepted = "SELECT a.rider_id FROM assignments a
         JOIN assignment_replies r ON r.assignment_id = a.id
         WHERE a.order_id = ?1 AND r.reply = 'accepted'";
    assert_eq!(
        query(&db, accepted, "o1").await,
        vec![vec!["r1".to_owned()]]
    );

    answer(edge.tls_port, &creds[1], "r2", "b1", false).await;
    replied(&mut edge.events, "b1", "declined").await;
    assert_eq!(
        query(&db, accepted, "o1").await,
        vec![vec!["r1".to_owned()]]
    );
    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

/// Publishes `rider`'s answer to `assignment` over an independent MQTT client, as the phone
/// would.
async fn answer(port: u16, creds: &Creds, rider: &str, assignment: &str, accept: bool) {
    let reply = pb::Reply {
        assignment_id: assignment.into(),
        accept,
    };
    assert!(
        publish(
            port,
            creds,
            &format!("{rider}-answer"),
            &format!("/tenants/{rider}/replies"),
            &reply.encode_to_vec()
        )
        .await
    );
}

/// Waits until the desk recorded `reply` to `assignment`.
async fn replied(
    events: &mut tokio::sync::broadcast::Receiver<RiderEvent>,
    assignment: &str,
    reply: &str,
) {
    wait_for(events, |e| {
        matches!(e, RiderEvent::Replied { assignment_id, reply: r, .. }
            if assignment_id == assignment && r == reply)
        .then_some(())
    })
    .await;
}
