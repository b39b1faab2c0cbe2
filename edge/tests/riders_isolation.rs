//! Acceptance: rider isolation on the store's broker (rumqttd) with a real independent client
//! (mosquitto, MQTT 3.1.1 over TLS with client certificates). Rider A can neither read rider
//! B's offers (nor `#`, nor `$SYS`) nor publish or leave a will as B; wrong credentials (another
//! CA's certificate, no certificate, a revoked or deactivated rider) are refused;
//! malformed payloads are answered on the rider's error topic and change nothing; enrolment
//! codes work once.

#![allow(clippy::unwrap_used)]

mod riders_support;

use flashkart_edge::riders::{ClientKey, Error, RiderEvent, StoreCa};
use flashkart_proto::rider as pb;
use prost::Message;
use riders_support::*;

async fn replies_count(db: &flashkart_sync::StoreDb) -> Vec<Vec<String>> {
    query(
        db,
        "SELECT count(*) FROM assignment_replies WHERE ?1 = ?1",
        "",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn riders_are_confined_to_their_own_topics() {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    seed_rider(&db, "riderA", "code-a").await;
    seed_rider(&db, "riderB", "code-b").await;
    seed_ready_order(&db, "o1", "FK-L1").await;
    let mut edge = start_edge(&db, dir.path()).await;

    // Enrolment: a wrong code is refused, the right one works once (and then no code is pending).
    assert!(matches!(
        edge.riders
            .enrol("riderA", "nope", ClientKey::Generate)
            .await,
        Err(Error::BadEnrolmentCode)
    ));
    let a = edge
        .riders
        .enrol("riderA", "code-a", ClientKey::Generate)
        .await
        .unwrap();
    assert!(matches!(
        edge.riders
            .enrol("riderA", "code-a", ClientKey::Generate)
            .await,
        Err(Error::NoPendingCode)
    ));
    let b = edge
        .riders
        .enrol("riderB", "code-b", ClientKey::Generate)
        .await
        .unwrap();
    let creds_a = write_creds(dir.path(), "a", &a);
    let creds_b = write_creds(dir.path(), "b", &b);

    assign(&db, "b1", "o1", "riderB", 600).await;
    edge.riders.assignments_changed();
    wait_for(&mut edge.events, |e| {
        matches!(e, RiderEvent::Offered { assignment_id, .. } if assignment_id == "b1")
            .then_some(())
    })
    .await;

    // B reads its own offer (the set-up works).
    let mut own = subscribe(
        edge.tls_port,
        &creds_b,
        "b-phone",
        "/tenants/riderB/edge/offers/#",
    )
    .await
    .expect("B may subscribe to its subtree");
    let (topic, _) = own.next(WAIT).await.expect("B's retained offer");
    assert_eq!(topic, "/tenants/riderB/edge/offers/b1");

    // A cannot read B's offers, nor everything, nor the broker's own topics: rumqttd
    // disconnects it at the SUBSCRIBE (no SUBACK).
    for filter in [
        "/tenants/riderB/edge/offers/#",
        "#",
        "/tenants/+/edge/offers/#",
        "$SYS/#",
        "+/tenants/riderB/#",
    ] {
        assert!(
            subscribe(edge.tls_port, &creds_a, "a-snoop", filter)
                .await
                .is_none(),
            "A could subscribe to {filter}"
        );
    }
    // Nor leave a will on B's topics: refused at CONNECT.
    assert!(
        subscribe_with(
            edge.tls_port,
            &creds_a,
            "a-will",
            "/tenants/riderA/edge/offers/#",
            &[
                "--will-topic",
                "/tenants/riderB/presence",
                "--will-payload",
                "x"
            ],
        )
        .await
        .is_none(),
        "A could leave a will on B's presence"
    );

    // A cannot answer as B.
    let before = replies_count(&db).await;
    let reply = pb::Reply {
        assignment_id: "b1".into(),
        accept: true,
    };
    publish(
        edge.tls_port,
        &creds_a,
        "a-forge",
        "/tenants/riderB/replies",
        &reply.encode_to_vec(),
    )
    .await;
    // A's own well-formed reply about B's assignment is refused by the edge as not A's.
    assert!(
        publish(
            edge.tls_port,
            &creds_a,
            "a-try",
            "/tenants/riderA/replies",
            &reply.encode_to_vec()
        )
        .await
    );
    let code = wait_for(&mut edge.events, |e| match e {
        RiderEvent::Refused { rider_id, code, .. } if rider_id == "riderA" => Some(code.clone()),
        _ => None,
    })
    .await;
    assert_eq!(code, "not_yours");
    assert_eq!(replies_count(&db).await, before);

    // Malformed payloads: answered on the rider's error topic, nothing changes.
    let mut errors = subscribe(
        edge.tls_port,
        &creds_b,
        "b-errors",
        "/tenants/riderB/edge/errors",
    )
    .await
    .unwrap();
    assert!(
        publish(
            edge.tls_port,
            &creds_b,
            "b-bad",
            "/tenants/riderB/replies",
            b"\xff\xff\xffgarbage"
        )
        .await
    );
    let (_, payload) = errors.next(WAIT).await.expect("a refusal");
    let refusal = pb::Refusal::decode(payload.as_slice()).unwrap();
    assert_eq!(
        (refusal.command.as_str(), refusal.code.as_str()),
        ("replies", "malformed")
    );
    assert!(
        publish(
            edge.tls_port,
            &creds_b,
            "b-bad2",
            "/tenants/riderB/owntracks/b/phone",
            br#"{"_type":"location","lat":"x"}"#
        )
        .await
    );
    let (_, payload) = errors.next(WAIT).await.expect("a refusal");
    assert_eq!(
        pb::Refusal::decode(payload.as_slice()).unwrap().code,
        "malformed"
    );
    assert_eq!(replies_count(&db).await, before);
    let positions = query(
        &db,
        "SELECT count(*) FROM rider_positions WHERE rider_id = ?1",
        "riderB",
    )
    .await;
    assert_eq!(positions, vec![vec!["0".to_owned()]]);

    // OwnTracks (protocol level 4) locations are taken.
    assert!(publish(edge.tls_port, &creds_b, "b-ot", "/tenants/riderB/owntracks/b/phone",
        format!(r#"{{"_type":"location","lat":{STORE_LAT},"lon":{STORE_LON},"acc":8,"tst":1700000000}}"#).as_bytes()).await);
    wait_for(&mut edge.events, |e| {
        matches!(e, RiderEvent::PositionsWritten { .. }).then_some(())
    })
    .await;
    let positions = query(
        &db,
        "SELECT lat, at FROM rider_positions WHERE rider_id = ?1",
        "riderB",
    )
    .await;
    assert_eq!(
        positions,
        vec![vec![
            STORE_LAT.to_string(),
            "2023-11-14T22:13:20.000Z".into()
        ]]
    );

    // B's offer subscription is still up; the cloud deactivates B: its live connection is
    // closed and it is refused at its next connection.
    exec(
        &db,
        "UPDATE riders SET active = 0 WHERE id = ?1",
        vec!["riderB".into()],
    )
    .await;
    edge.riders.roster_changed();
    assert!(
        own.exited_within(WAIT).await,
        "the deactivated rider's subscription is still connected"
    );
    assert!(
        subscribe(edge.tls_port, &creds_b, "b-again", "/tenants/riderB/edge/#")
            .await
            .is_none(),
        "a deactivated rider could connect"
    );

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused() {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    seed_rider(&db, "riderA", "code-a").await;
    seed_ready_order(&db, "o1", "FK-L1").await;
    seed_ready_order(&db, "o2", "FK-L2").await;
    let mut edge = start_edge(&db, dir.path()).await;
    let a = edge
        .riders
        .enrol("riderA", "code-a", ClientKey::Generate)
        .await
        .unwrap();
    let creds_a = write_creds(dir.path(), "a", &a);
    assign(&db, "a1", "o1", "riderA", 600).await;
    edge.riders.assignments_changed();
    wait_for(&mut edge.events, |e| {
        matches!(e, RiderEvent::Offered { assignment_id, .. } if assignment_id == "a1")
            .then_some(())
    })
    .await;

    // A certificate for riderA from another store's CA: refused in the handshake.
    let other = StoreCa::load_or_create(&dir.path().join("other-ca"), "S9", 30).unwrap();
    let mut forged = other.issue("riderA", &ClientKey::Generate).unwrap();
    forged.ca_pem = a.ca_pem.clone();
    let creds_forged = write_creds(dir.path(), "forged", &forged);
    assert!(
        subscribe(
            edge.tls_port,
            &creds_forged,
            "forged",
            "/tenants/riderA/edge/offers/#"
        )
        .await
        .is_none()
    );
    assert!(
        !publish(
            edge.tls_port,
            &creds_forged,
            "forged",
            "/tenants/riderA/replies",
            b"x"
        )
        .await
    );

    // No certificate: refused in the handshake.
    let anonymous = Creds {
        ca: creds_a.ca.clone(),
        cert: None,
        key: None,
    };
    assert!(
        subscribe(
            edge.tls_port,
            &anonymous,
            "anon",
            "/tenants/riderA/edge/offers/#"
        )
        .await
        .is_none()
    );

    // Revoked: its offers are withdrawn, new ones are not published, and its connection is
    // refused at CONNECT (CONNACK "not authorized", the patched broker's tenant check).
    edge.riders
        .revoke("riderA", "left the company")
        .await
        .unwrap();
    assign(&db, "a2", "o2", "riderA", 600).await;
    edge.riders.assignments_changed();
    let reply = pb::Reply {
        assignment_id: "a1".into(),
        accept: true,
    };
    assert!(
        subscribe(
            edge.tls_port,
            &creds_a,
            "revoked",
            "/tenants/riderA/edge/offers/#",
        )
        .await
        .is_none(),
        "a revoked rider could subscribe"
    );
    assert!(
        !publish(
            edge.tls_port,
            &creds_a,
            "revoked2",
            "/tenants/riderA/replies",
            &reply.encode_to_vec(),
        )
        .await,
        "a revoked rider could publish"
    );
    while let Ok(event) = edge.events.try_recv() {
        assert!(
            !matches!(&event, RiderEvent::Offered { assignment_id, .. } if assignment_id == "a2"),
            "a revoked rider was offered a2"
        );
    }
    assert_eq!(replies_count(&db).await, vec![vec!["0".to_owned()]]);
    let certs = query(
        &db,
        "SELECT count(*) FROM rider_certs WHERE rider_id = ?1 AND revoked_at IS NOT NULL",
        "riderA",
    )
    .await;
    assert_eq!(certs, vec![vec!["1".to_owned()]]);
    assert!(matches!(
        edge.riders
            .enrol("riderA", "code-a", ClientKey::Generate)
            .await,
        Err(Error::Revoked(_))
    ));

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}
