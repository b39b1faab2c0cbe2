//! The riders' broker (rumqttd, patched copy in `edge/rumqttd/`) under flaky and hostile
//! devices, over real sockets with real rider certificates.
//!
//! Regression (issue 6, upstream rumqttd #1062): a rider whose connection drops between CONNECT
//! and CONNACK must not take the broker down. Unpatched rumqttd 0.20 leaves a will-handler
//! sender behind for such a connection; the next CONNECT with the same client id panics on it
//! while holding a mutex, poisoning the listener for every rider. Here several connections send
//! CONNECT with a client id and reset the connection without reading CONNACK (at various points
//! of the broker's work), over TLS and over the loopback listener; then the same client id and
//! another rider must connect and complete a publish/subscribe round trip.
//!
//! Also: a reconnecting rider takes its session over; garbage and idle sockets do not stop the
//! listener; connections beyond the limit are refused. Access (revoked, deactivated, out of
//! scope) is in `riders_access.rs`, persistent sessions in `riders_sessions.rs`.

#![allow(clippy::unwrap_used)]

mod riders_support;

use std::sync::Arc;
use std::time::Duration;

use flashkart_edge::riders::{CertBundle, ClientKey, RiderEvent};
use flashkart_proto::rider as pb;
use prost::Message;
use riders_support::mqtt::*;
use riders_support::*;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, LastWill, Packet, QoS};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
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
/// after a network switch) takes the session over: the old connection is closed and the new
/// connection's presence (online) stands. A phone that sent DISCONNECT and reconnects at once
/// is not announced offline (upstream 0.20 let the old connection's late will request publish
/// the new connection's will); one that drops without DISCONNECT is.
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

    // The old connection is left open but no longer polled; the phone reconnects. The rider
    // never went away: the old connection's will is not published (the patched router does
    // not let it fire the will the new connection registered under the same client id).
    let (new, mut new_loop) = round_trip(with_will("phoneA"), "/tenants/riderA/echo").await;
    publish_presence(&new, &mut new_loop, true).await;
    assert!(
        next_presence(&mut edge.events).await,
        "the taken-over connection's will said the rider went offline"
    );
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

    // A clean DISCONNECT: no will, also when the phone is back before the broker is done with
    // the old connection.
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

/// Raises this process's open-file limit to at least `want` (up to the hard limit).
#[allow(unsafe_code)]
fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    limit.rlim_cur
}

/// Garbage on both listeners and 1,000 idle sockets on the TLS listener (opened, never a TLS
/// byte sent) while rider B keeps being served: its live connection echoes, and a new rider
/// connection completes its TLS handshake and a round trip. Upstream rumqttd 0.20 ran the TLS
/// handshake in the accept loop, so the first idle socket stopped the listener; the garbage
/// connections are closed by the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_thousand_idle_sockets_do_not_stop_other_riders() {
    assert!(
        raise_fd_limit(4096) >= 2300,
        "the open-file limit is too low"
    );
    let (_dir, db, edge, a, b) = two_riders().await;
    let (b_client, mut b_loop) = round_trip(
        options("phoneB", edge.tls_port, Some(&b)),
        "/tenants/riderB/echo",
    )
    .await;

    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(
            TcpStream::connect(("127.0.0.1", edge.tls_port))
                .await
                .unwrap(),
        );
    }
    // Garbage: not TLS on the TLS listener, not MQTT inside TLS, not MQTT on the loopback
    // listener. Each is closed by the broker.
    let garbage: &[u8] = b"\x16\x03\x01\x00\x05hello\xff\xff\xff\xff\xff garbage";
    let mut raw = TcpStream::connect(("127.0.0.1", edge.tls_port))
        .await
        .unwrap();
    raw.write_all(garbage).await.unwrap();
    let mut plain = TcpStream::connect(("127.0.0.1", edge.plain_port))
        .await
        .unwrap();
    plain.write_all(&[0xff; 64]).await.unwrap();
    let tcp = TcpStream::connect(("localhost", edge.tls_port))
        .await
        .unwrap();
    let server = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tls_connector(&a).connect(server, tcp).await.unwrap();
    tls.write_all(&[0xff; 64]).await.unwrap();
    tls.flush().await.unwrap();
    for (name, closed) in [
        ("not TLS", closed_by_peer(&mut raw).await),
        ("not MQTT on loopback", closed_by_peer(&mut plain).await),
        ("not MQTT in TLS", closed_by_peer(&mut tls).await),
    ] {
        assert!(
            closed,
            "the broker kept a connection sending garbage ({name})"
        );
    }

    // B's live connection is served, and a new connection too, with the idle sockets open.
    b_loop_echo(&mut b_loop, &b_client).await;
    let _b2 = round_trip(
        options("phoneB2", edge.tls_port, Some(&b)),
        "/tenants/riderB/echo2",
    )
    .await;
    let _a = round_trip(
        options("phoneA", edge.tls_port, Some(&a)),
        "/tenants/riderA/echo",
    )
    .await;
    drop(idle);

    edge.riders.shutdown().await;
    // Stopped: the listeners' ports are free again.
    for port in [edge.tls_port, edge.plain_port] {
        std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} still bound after shutdown: {e}"));
    }
    db.close().await.unwrap();
}

/// Reads until the peer closes (EOF or an error); false if it is still open after [`WAIT`].
async fn closed_by_peer(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// `BrokerSizing::max_connections` bounds the device connections (both listeners): one more is
/// closed without CONNACK, and once a device leaves the next one gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused() {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    let edge = start_edge_with(&db, dir.path(), |config| {
        config.sizing.max_connections = 2;
    })
    .await;
    let first = round_trip(options("sim1", edge.plain_port, None), "test/1").await;
    let _second = round_trip(options("sim2", edge.plain_port, None), "test/2").await;
    assert_eq!(edge.riders.broker_stats().sessions, 2);
    let refused = refused_before_connack(options("sim3", edge.plain_port, None)).await;
    tracing::info!(%refused, "the third connection");
    // One leaves (DISCONNECT, then its connection closes): the next gets in.
    let (client, mut eventloop) = first;
    client.disconnect().await.unwrap();
    assert!(closes(&mut eventloop).await);
    let _third = tokio::time::timeout(WAIT, async {
        loop {
            let (client, mut eventloop) =
                AsyncClient::new(options("sim3", edge.plain_port, None), 4);
            // The router may not have processed the departure yet: try again until admitted.
            if let Ok(Event::Incoming(Packet::ConnAck(ack))) = eventloop.poll().await {
                assert_eq!(ack.code, ConnectReturnCode::Success);
                return (client, eventloop);
            }
        }
    })
    .await
    .expect("no connection admitted after one left");

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

/// The will-handler regression (upstream #1062) made deterministic: a CONNECT that the router
/// turns away (the broker is full) fails after the listener registered its will handler and
/// before CONNACK, exactly like a phone hanging up in that window. Unpatched, the next CONNECT
/// with that client id panics on the stale handler with the listener's mutex held, and every
/// later connection on the listener panics on the poisoned mutex.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_failing_before_connack_leaves_the_listener_working() {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    seed_rider(&db, "riderA", "code-a").await;
    seed_rider(&db, "riderB", "code-b").await;
    let edge = start_edge_with(&db, dir.path(), |config| {
        config.sizing.max_connections = 1;
    })
    .await;
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
    let (b_client, mut b_loop) = round_trip(
        options("phoneB", edge.tls_port, Some(&b)),
        "/tenants/riderB/echo",
    )
    .await;
    // Full: A's CONNECT fails before CONNACK.
    let refused = refused_before_connack(options("phoneA", edge.tls_port, Some(&a))).await;
    tracing::info!(%refused, "A's connection while the broker is full");
    // B leaves; A connects with the same client id, then B again: both are served.
    b_client.disconnect().await.unwrap();
    assert!(closes(&mut b_loop).await);
    let a_connected = tokio::time::timeout(WAIT, async {
        loop {
            let (client, mut eventloop) =
                AsyncClient::new(options("phoneA", edge.tls_port, Some(&a)), 4);
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    assert_eq!(ack.code, ConnectReturnCode::Success);
                    return (client, eventloop);
                }
                // The router may not have processed B's departure yet: the broker is still
                // full, or (unpatched) the listener is poisoned and this never succeeds.
                other => tracing::info!(?other, "A's connection"),
            }
        }
    })
    .await;
    let (a_client, a_loop) = a_connected.expect("A could not connect again");
    drop((a_client, a_loop));
    let _b = tokio::time::timeout(WAIT, async {
        loop {
            let (client, mut eventloop) =
                AsyncClient::new(options("phoneB", edge.tls_port, Some(&b)), 4);
            if let Ok(Event::Incoming(Packet::ConnAck(ack))) = eventloop.poll().await {
                assert_eq!(ack.code, ConnectReturnCode::Success);
                return (client, eventloop);
            }
        }
    })
    .await
    .expect("B could not connect after A");

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}
