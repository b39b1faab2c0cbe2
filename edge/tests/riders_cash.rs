//! Cash on delivery over the riders' broker with real rider certificates: the offer of a cash
//! order tells the phone what to collect, the phone reports what it took (here 40 cents short,
//! the simulator's `cash_delta_minor`), the order desk records it with the delivery; a hand-in
//! at the store closes the rider's shift, which the broker enforces like a revocation (the
//! phone is cut and refused at CONNECT) without touching its certificate, until the rider is
//! signed on again.

#![allow(clippy::unwrap_used)]

mod riders_support;

use flashkart_edge::riders::{ClientKey, RiderEvent};
use flashkart_edge::work::cash::{self, HandInRequest};
use flashkart_edge::work::ctx::Ctx;
use flashkart_edge_sim::rider::{self as sim, SimEvent};
use riders_support::mqtt::*;
use riders_support::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_collects_what_the_offer_says_and_a_hand_in_closes_its_shift() {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    seed_rider(&db, "r1", "c1").await;
    seed_ready_order(&db, "o1", "FK-L1").await;
    exec(
        &db,
        "UPDATE orders SET payment_method = 'cash', cash_due_minor = 2340, currency = 'EUR'
         WHERE id = ?1",
        vec!["o1".into()],
    )
    .await;
    let mut edge = start_edge(&db, dir.path()).await;
    let bundle = edge
        .riders
        .enrol("r1", "c1", ClientKey::Generate)
        .await
        .unwrap();

    let (sim_tx, mut sim_rx) = mpsc::channel(1024);
    let mut config = sim_config(
        "r1",
        edge.tls_port,
        &bundle,
        labels(&[("o1", "FK-L1")]),
        sim_tx,
    );
    config.cash_delta_minor = -40;
    let stop = CancellationToken::new();
    let phone = tokio::spawn(sim::run(config, stop.clone()));
    wait_sim(&mut sim_rx, |e| {
        matches!(e, SimEvent::Ready { .. }).then_some(())
    })
    .await;

    assign(&db, "a1", "o1", "r1", 600).await;
    edge.riders.assignments_changed();
    let offer = wait_sim(&mut sim_rx, |e| match e {
        SimEvent::Offer { offer, .. } => Some(offer.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (offer.cash_due_minor, offer.currency.as_str()),
        (2340, "EUR")
    );
    wait_for(&mut edge.events, |e| match e {
        RiderEvent::Delivered { order_id, .. } if order_id == "o1" => Some(()),
        _ => None,
    })
    .await;
    let recorded = query(
        &db,
        "SELECT cash_collected_minor, cash_handin_id IS NULL FROM deliveries WHERE order_id = ?1",
        "o1",
    )
    .await;
    assert_eq!(recorded, vec![vec!["2300".to_owned(), "1".into()]]);

    // A second device of the rider's, connected now, to see the cut.
    let (_watch, mut watch_loop) = round_trip(
        options("r1-watch", edge.tls_port, Some(&bundle)),
        "/tenants/r1/echo",
    )
    .await;
    // The hand-in (the staff API's write, here straight on the database) and the roster
    // re-read the daemon asks for after it.
    let handin = db
        .write(|conn| {
            let mut ctx = Ctx::new(STORE, "lea");
            let request = HandInRequest {
                amount_minor: 2300,
                note: None,
            };
            cash::hand_in(conn, &mut ctx, "r1", &request)
        })
        .await
        .unwrap();
    assert_eq!((handin.expected_minor, handin.difference_minor), (2300, 0));
    edge.riders.roster().refresh().await;
    // The rider's connections are cut; reconnecting with the same certificate is refused at
    // CONNECT.
    assert!(closes(&mut watch_loop).await, "still connected off shift");
    stop.cancel();
    phone.await.unwrap().unwrap();
    let refused = refused_before_connack(options("r1-again", edge.tls_port, Some(&bundle))).await;
    assert!(refused.contains("NotAuthorized"), "{refused}");
    assert!(edge.riders.online_riders().is_empty());

    // Signed on again: the same certificate works.
    db.write(|conn| cash::sign_on(conn, &mut Ctx::new(STORE, "lea"), "r1"))
        .await
        .unwrap();
    edge.riders.roster().refresh().await;
    let _phone = round_trip(
        options("r1-back", edge.tls_port, Some(&bundle)),
        "/tenants/r1/echo",
    )
    .await;

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}
