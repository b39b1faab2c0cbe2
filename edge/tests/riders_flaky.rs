//! Regression (issue 6): a rider whose connection drops between CONNECT and CONNACK must not
//! take the broker down. rumqttd 0.20, the broker the edge embedded first, left a will-handler
//! sender behind for such a connection; the next CONNECT with the same client id panicked on it
//! while holding a mutex, poisoning the listener for every rider. Here several connections send CONNECT with a client id and reset
//! the connection without reading CONNACK (at various points of the broker's work), over TLS
//! with a real rider certificate and over the loopback listener; then the same client id and
//! another rider must connect and complete a publish/subscribe round trip, and a rider that
//! reconnects with a live client id takes its session over. Also the front's other duties
//! towards live connections: revoked, deactivated and out-of-scope riders are cut.

#![allow(clippy::unwrap_used)]

mod riders_support;

use std::sync::Arc;
use std::time::Duration;

use flashkart_edge::riders::{CertBundle, ClientKey, RiderEvent};
use flashkart_proto::rider as pb;
use prost::Message;
use riders_support::*;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Packet, QoS,
    TlsConfiguration, Transport,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_rustls::rustls;

/// Delays between sending CONNECT and resetting the connection, to hit the window between the
/// broker reading CONNECT and writing CONNACK on a fast or a slow machine.
const HANG_UP_AFTER_MS: [u64; 10] = [0, 0, 0, 1, 1, 2, 3, 5, 8, 13];

fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
    body.extend_from_slice(&u16::try_from(client_id.len()).unwrap().to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, u8::try_from(body.len()).unwrap()];
    packet.extend(body);
    packet
}

/// Resets the connection (RST, like a phone losing its network) instead of closing it.
#[allow(deprecated)]
fn reset(stream: &TcpStream) {
    stream.set_linger(Some(Duration::ZERO)).unwrap();
}

fn tls_connector(bundle: &CertBundle) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut bundle.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let certs = rustls_pemfile::certs(&mut bundle.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut bundle.key_pem.as_deref().unwrap().as_bytes())
        .unwrap()
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A device that sends CONNECT over TLS and loses its connection before reading CONNACK.
async fn flaky_tls(port: u16, bundle: &CertBundle, client_id: &str, after: Duration) {
    let tcp = TcpStream::connect(("localhost", port)).await.unwrap();
    let server = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tls_connector(bundle).connect(server, tcp).await.unwrap();
    tls.write_all(&connect_packet(client_id)).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(after).await;
    reset(tls.get_ref().0);
}

/// The same over the loopback listener.
async fn flaky_plain(port: u16, client_id: &str, after: Duration) {
    let mut tcp = TcpStream::connect(("localhost", port)).await.unwrap();
    tcp.write_all(&connect_packet(client_id)).await.unwrap();
    tcp.flush().await.unwrap();
    tokio::time::sleep(after).await;
    reset(&tcp);
}

fn options(client_id: &str, port: u16, bundle: Option<&CertBundle>) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "localhost", port);
    options.set_keep_alive(Duration::from_secs(30));
    if let Some(bundle) = bundle {
        options.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca: bundle.ca_pem.clone().into_bytes(),
            alpn: None,
            client_auth: Some((
                bundle.cert_pem.clone().into_bytes(),
                bundle.key_pem.clone().unwrap().into_bytes(),
            )),
        }));
    }
    options
}

/// Polls until `pick` matches an event; a connection error fails the test.
async fn until<T>(
    eventloop: &mut EventLoop,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(error) => panic!("{what}: connection failed: {error}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Publishes rider A's presence, retained as phones do (the front clears the flag), and waits
/// for the broker's PUBACK.
async fn publish_presence(client: &AsyncClient, eventloop: &mut EventLoop, online: bool) {
    client
        .publish(
            "/tenants/riderA/presence",
            QoS::AtLeastOnce,
            true,
            pb::Presence { online }.encode_to_vec(),
        )
        .await
        .unwrap();
    until(eventloop, "PUBACK of the presence", |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await;
}

/// The next presence (online or not) the edge reports for rider A.
async fn next_presence(events: &mut broadcast::Receiver<RiderEvent>) -> bool {
    wait_for(events, |e| match e {
        RiderEvent::Presence { rider_id, online } if rider_id == "riderA" => Some(*online),
        _ => None,
    })
    .await
}

/// Connects (CONNACK accepted), subscribes to `topic`, publishes to it and receives it back.
async fn round_trip(options: MqttOptions, topic: &str) -> (AsyncClient, EventLoop) {
    let client_id = options.client_id();
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let code = until(
        &mut eventloop,
        &format!("CONNACK for {client_id}"),
        |e| match e {
            Event::Incoming(Packet::ConnAck(ack)) => Some(ack.code),
            _ => None,
        },
    )
    .await;
    assert_eq!(code, ConnectReturnCode::Success, "{client_id}");
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    until(&mut eventloop, &format!("SUBACK for {client_id}"), |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;
    let payload = format!("hello from {client_id}");
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.clone())
        .await
        .unwrap();
    until(
        &mut eventloop,
        &format!("the echo for {client_id}"),
        |e| match e {
            Event::Incoming(Packet::Publish(p)) if p.topic == topic && p.payload == payload => {
                Some(())
            }
            _ => None,
        },
    )
    .await;
    (client, eventloop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_lost_before_connack_do_not_take_the_broker_down() {
    let (_dir, db, edge, a, b) = two_riders().await;

    for _ in 0..3 {
        for ms in HANG_UP_AFTER_MS {
            let after = Duration::from_millis(ms);
            flaky_tls(edge.tls_port, &a, "phoneA", after).await;
            flaky_plain(edge.plain_port, "simA", after).await;
        }
    }

    // The same client ids again, then another rider: all connect and work.
    let _a = round_trip(
        options("phoneA", edge.tls_port, Some(&a)),
        "/tenants/riderA/echo",
    )
    .await;
    let _sim = round_trip(options("simA", edge.plain_port, None), "test/echo").await;
    let _b = round_trip(
        options("phoneB", edge.tls_port, Some(&b)),
        "/tenants/riderB/echo",
    )
    .await;
    // And once more after the round trips (nothing was left poisoned by them either).
    for ms in HANG_UP_AFTER_MS {
        flaky_tls(edge.tls_port, &b, "phoneB", Duration::from_millis(ms)).await;
    }
    let _b2 = round_trip(
        options("phoneB2", edge.tls_port, Some(&b)),
        "/tenants/riderB/echo2",
    )
    .await;

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

/// A phone that reconnects while its old connection is still open (a half-open TCP connection
/// after a network switch) takes the session over: the old connection is closed, its last will
/// (offline) comes first, and the new connection's presence (online) stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_rider_takes_its_session_over() {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    seed_rider(&db, "riderA", "code-a").await;
    let mut edge = start_edge(&db, dir.path()).await;
    let a = edge
        .riders
        .enrol("riderA", "code-a", ClientKey::Generate)
        .await
        .unwrap();
    let presence = |online: bool| pb::Presence { online }.encode_to_vec();
    let with_will = |client_id: &str| {
        let mut options = options(client_id, edge.tls_port, Some(&a));
        options.set_last_will(LastWill::new(
            "/tenants/riderA/presence",
            presence(false),
            QoS::AtLeastOnce,
            true,
        ));
        options
    };

    let (old, mut old_loop) = round_trip(with_will("phoneA"), "/tenants/riderA/echo").await;
    publish_presence(&old, &mut old_loop, true).await;
    wait_for(&mut edge.events, |e| match e {
        RiderEvent::Presence { rider_id, online } if rider_id == "riderA" => online.then_some(()),
        _ => None,
    })
    .await;

    // The old connection is left open but no longer polled; the phone reconnects.
    let (new, mut new_loop) = round_trip(with_will("phoneA"), "/tenants/riderA/echo").await;
    wait_for(&mut edge.events, |e| match e {
        RiderEvent::Presence { rider_id, online } if rider_id == "riderA" => {
            (!online).then_some(())
        }
        _ => None,
    })
    .await;
    publish_presence(&new, &mut new_loop, true).await;
    wait_for(&mut edge.events, |e| match e {
        RiderEvent::Presence { rider_id, online } if rider_id == "riderA" => online.then_some(()),
        _ => None,
    })
    .await;
    assert_eq!(edge.riders.online_riders(), vec!["riderA".to_owned()]);
    // The old connection was closed by the edge.
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            if old_loop.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the replaced connection is still open");
    drop(old);

    // A clean DISCONNECT: no will. The next connection with the same client id would wait for
    // the will of this one (takeover), so its presence would come after an `offline`.
    new.disconnect().await.unwrap();
    let ended = tokio::time::timeout(WAIT, async { while new_loop.poll().await.is_ok() {} }).await;
    assert!(ended.is_ok(), "the disconnected connection is still open");
    let (third, mut third_loop) = round_trip(with_will("phoneA"), "/tenants/riderA/echo").await;
    publish_presence(&third, &mut third_loop, true).await;
    assert!(
        next_presence(&mut edge.events).await,
        "a connection that sent DISCONNECT had its will published"
    );

    // Gone without DISCONNECT (the phone lost its network): the will is published.
    drop((third, third_loop));
    assert!(
        !next_presence(&mut edge.events).await,
        "the will of a dropped connection"
    );
    assert!(edge.riders.online_riders().is_empty());

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

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
    // Refused at once after the handshake, whichever client id it uses.
    let refused = refused_before_connack(options("phoneA2", edge.tls_port, Some(&a))).await;
    tracing::info!(%refused, "the revoked rider's reconnection failed");
    // Other riders are unaffected.
    let _b = round_trip(
        options("phoneB", edge.tls_port, Some(&b)),
        "/tenants/riderB/echo",
    )
    .await;

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

/// An edge with two enrolled riders, riderA and riderB: the database (in a temporary directory
/// that lives as long as the first value), the edge, and their certificates.
async fn two_riders() -> (
    tempfile::TempDir,
    flashkart_sync::StoreDb,
    Edge,
    CertBundle,
    CertBundle,
) {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    seed_rider(&db, "riderA", "code-a").await;
    seed_rider(&db, "riderB", "code-b").await;
    let edge = start_edge(&db, dir.path()).await;
    let a = edge
        .riders
        .enrol("riderA", "code-a", ClientKey::Generate)
        .await
        .unwrap();
    let b = edge
        .riders
        .enrol("riderB", "code-b", ClientKey::Generate)
        .await
        .unwrap();
    (dir, db, edge, a, b)
}

/// Connects and expects the connection to fail before any CONNACK; returns the error.
async fn refused_before_connack(options: MqttOptions) -> String {
    let client_id = options.client_id();
    let (_client, mut eventloop) = AsyncClient::new(options, 4);
    tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Err(error) => return error.to_string(),
                // rumqttd refuses a rider it no longer allows with CONNACK "not authorized".
                Ok(Event::Incoming(Packet::ConnAck(ack)))
                    if ack.code != ConnectReturnCode::Success =>
                {
                    return format!("{:?}", ack.code);
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    panic!("{client_id} should have been refused, got {ack:?}")
                }
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{client_id}: neither refused nor accepted"))
}

/// Polls until the connection ends; false if it is still up after [`WAIT`].
async fn closes(eventloop: &mut EventLoop) -> bool {
    tokio::time::timeout(WAIT, async {
        loop {
            if eventloop.poll().await.is_err() {
                return;
            }
        }
    })
    .await
    .is_ok()
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
/// CONNECT, a publish or a subscription elsewhere closes the connection before the broker sees
/// the packet; nothing reaches the other rider, whose connection is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rider_leaving_its_topics_is_disconnected() {
    let (_dir, db, edge, a, b) = two_riders().await;
    let (b_client, mut b_loop) = round_trip(
        options("phoneB", edge.tls_port, Some(&b)),
        "/tenants/riderB/echo",
    )
    .await;

    // A will on B's presence: no CONNACK.
    let mut forged_will = options("phoneA-will", edge.tls_port, Some(&a));
    forged_will.set_last_will(LastWill::new(
        "/tenants/riderB/presence",
        pb::Presence { online: false }.encode_to_vec(),
        QoS::AtLeastOnce,
        true,
    ));
    let refused = refused_before_connack(forged_will).await;
    tracing::info!(%refused, "the forged will was refused");

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

/// B publishes to its echo topic and must receive exactly that (not A's forged message).
async fn b_loop_echo(b_loop: &mut EventLoop, b: &AsyncClient) {
    b.publish("/tenants/riderB/echo", QoS::AtLeastOnce, false, "from B")
        .await
        .unwrap();
    let payload = until(b_loop, "B's echo", |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.payload.clone()),
        _ => None,
    })
    .await;
    assert_eq!(payload, "from B");
}
