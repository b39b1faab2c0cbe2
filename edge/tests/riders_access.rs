//! Who may use the riders' broker, over real sockets with real rider certificates: a revoked
//! rider and one the cloud deactivates are cut and refused, a rider leaving its topics is
//! disconnected, and a device's retained messages are not kept by the broker.

#![allow(clippy::unwrap_used)]

mod riders_support;

use std::time::Duration;

use flashkart_edge::riders::ClientKey;
use flashkart_proto::rider as pb;
use prost::Message;
use riders_support::mqtt::*;
use riders_support::*;
use rumqttc::{Event, LastWill, Packet, QoS};

/// Revoking a rider closes its live connections at once; it cannot connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_rider_disconnects_it() {
    let (_dir, db, edge, a, b) = two_riders().await;
    let (_a, mut a_loop) = round_trip(
        options("phoneA", edge.tls_port, Some(&a)),
        "/tenants/riderA/echo",
    )
    .await;
    edge.riders.revoke("riderA", "test").await.unwrap();
    assert!(
        closes(&mut a_loop).await,
        "the revoked rider is still connected"
    );
    // Refused at CONNECT (the tenant check), whichever client id it uses.
    let refused = refused_before_connack(options("phoneA2", edge.tls_port, Some(&a))).await;
    assert!(refused.contains("NotAuthorized"), "{refused}");
    // Other riders are unaffected.
    let _b = round_trip(
        options("phoneB", edge.tls_port, Some(&b)),
        "/tenants/riderB/echo",
    )
    .await;

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

/// A rider the cloud deactivates (the roster arrives by sync) is disconnected as soon as the
/// edge re-reads the roster, not at its device's next reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rider_deactivated_by_the_cloud_is_disconnected() {
    let (_dir, db, edge, a, b) = two_riders().await;
    let (_a, mut a_loop) = round_trip(
        options("phoneA", edge.tls_port, Some(&a)),
        "/tenants/riderA/echo",
    )
    .await;
    let (b_client, mut b_loop) = round_trip(
        options("phoneB", edge.tls_port, Some(&b)),
        "/tenants/riderB/echo",
    )
    .await;

    exec(
        &db,
        "UPDATE riders SET active = 0 WHERE id = ?1",
        vec!["riderA".into()],
    )
    .await;
    edge.riders.roster_changed();
    assert!(
        closes(&mut a_loop).await,
        "the deactivated rider is still connected"
    );
    let refused = refused_before_connack(options("phoneA", edge.tls_port, Some(&a))).await;
    assert!(refused.contains("NotAuthorized"), "{refused}");
    // B's connection was not touched.
    b_client
        .publish(
            "/tenants/riderB/echo",
            QoS::AtLeastOnce,
            false,
            "still here",
        )
        .await
        .unwrap();
    until(&mut b_loop, "B's echo after A was cut", |e| match e {
        Event::Incoming(Packet::Publish(p)) if p.payload == "still here" => Some(()),
        _ => None,
    })
    .await;

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

/// A rider's device steps outside `/tenants/<rider id>/`: a will topic elsewhere is refused at
/// CONNECT, a publish or a subscription elsewhere closes the connection (rumqttd's
/// `validate-tenant-prefix`); nothing reaches the other rider, whose connection is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rider_leaving_its_topics_is_disconnected() {
    let (_dir, db, edge, a, b) = two_riders().await;
    let (b_client, mut b_loop) = round_trip(
        options("phoneB", edge.tls_port, Some(&b)),
        "/tenants/riderB/echo",
    )
    .await;

    // A will on B's presence: refused at CONNECT (the patched broker; upstream accepts it and
    // drops the will when it fires).
    let mut forged_will = options("phoneA-will", edge.tls_port, Some(&a));
    forged_will.set_last_will(LastWill::new(
        "/tenants/riderB/presence",
        pb::Presence { online: false }.encode_to_vec(),
        QoS::AtLeastOnce,
        true,
    ));
    let refused = refused_before_connack(forged_will).await;
    assert!(refused.contains("NotAuthorized"), "{refused}");

    // A publish to B's echo topic, then a subscription to everything: each closes A's
    // connection.
    let (a_client, mut a_loop) = round_trip(
        options("phoneA", edge.tls_port, Some(&a)),
        "/tenants/riderA/echo",
    )
    .await;
    a_client
        .publish("/tenants/riderB/echo", QoS::AtLeastOnce, false, "forged")
        .await
        .unwrap();
    assert!(closes(&mut a_loop).await, "a publish outside did not close");
    let (a_client, mut a_loop) = round_trip(
        options("phoneA", edge.tls_port, Some(&a)),
        "/tenants/riderA/echo",
    )
    .await;
    a_client
        .subscribe_many([
            rumqttc::SubscribeFilter::new("/tenants/riderA/more".into(), QoS::AtLeastOnce),
            rumqttc::SubscribeFilter::new("#".into(), QoS::AtLeastOnce),
        ])
        .await
        .unwrap();
    assert!(
        closes(&mut a_loop).await,
        "a subscription outside did not close"
    );

    // B got nothing forged and still works.
    b_loop_echo(&mut b_loop, &b_client).await;

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

/// A rider deactivated by the cloud while no sync nudge arrives (the nudge was lost, or the
/// roster came another way) is disconnected at the next roster refresh (at most
/// `MAX_ROSTER_REFRESH`, 30 s; 1 s here), and refused with CONNACK "not authorized" when its
/// phone reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_rider_is_cut_at_the_next_roster_refresh_and_refused() {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    seed_rider(&db, "riderA", "code-a").await;
    let edge = start_edge_with(&db, dir.path(), |config| {
        config.roster_refresh = Duration::from_secs(1);
    })
    .await;
    let a = edge
        .riders
        .enrol("riderA", "code-a", ClientKey::Generate)
        .await
        .unwrap();
    let (_a, mut a_loop) = round_trip(
        options("phoneA", edge.tls_port, Some(&a)),
        "/tenants/riderA/echo",
    )
    .await;
    exec(
        &db,
        "UPDATE riders SET active = 0 WHERE id = ?1",
        vec!["riderA".into()],
    )
    .await;
    // No `roster_changed()`: the periodic refresh alone must cut it.
    assert!(
        closes(&mut a_loop).await,
        "the deactivated rider is still connected"
    );
    let refused = refused_before_connack(options("phoneA", edge.tls_port, Some(&a))).await;
    assert!(refused.contains("NotAuthorized"), "{refused}");
    assert_eq!(edge.riders.broker_stats().sessions, 0);

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

/// A device's RETAIN is not kept: the broker holds no retained message of a phone's (a phone
/// could otherwise leave one on every topic of its own, memory without bound), and a phone's
/// empty publish does not clear the edge's retained offers. A second connection of the same
/// rider that subscribes after the retained publishes gets only the live message sent after
/// its subscription (retained messages would come first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_retained_messages_are_not_kept() {
    let (_dir, db, edge, a, _b) = two_riders().await;
    let (a_client, mut a_loop) = round_trip(
        options("phoneA", edge.tls_port, Some(&a)),
        "/tenants/riderA/echo",
    )
    .await;
    for n in 0..3 {
        a_client
            .publish(
                format!("/tenants/riderA/echo/{n}"),
                QoS::AtLeastOnce,
                true,
                format!("retained {n}"),
            )
            .await
            .unwrap();
        until(&mut a_loop, "the PUBACK", |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
        })
        .await;
    }

    let (later, mut later_loop) = round_trip(
        options("phoneA-2", edge.tls_port, Some(&a)),
        "/tenants/riderA/later",
    )
    .await;
    later
        .subscribe("/tenants/riderA/echo/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    until(&mut later_loop, "the SUBACK", |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;
    a_client
        .publish("/tenants/riderA/echo/live", QoS::AtLeastOnce, false, "live")
        .await
        .unwrap();
    let first = tokio::select! {
        first = until(&mut later_loop, "the first message", |e| match e {
            Event::Incoming(Packet::Publish(p)) => Some((p.topic.clone(), p.retain)),
            _ => None,
        }) => first,
        // Keeps phone A's connection polled so its publish leaves.
        () = async { loop { let _ = a_loop.poll().await; } } => unreachable!(),
    };
    assert_eq!(first, ("/tenants/riderA/echo/live".to_owned(), false));

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}
