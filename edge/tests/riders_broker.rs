//! The edge's MQTT broker at the byte level, over real sockets on the loopback listener: what
//! MQTT 3.1.1 asks of a server in the corners the rider tests do not reach (protocol levels,
//! QoS 2 from a client, keep-alive and wills, retained offers, unsubscribe, the connection
//! limit, garbage). Every byte the test sends and expects is written out here, so the broker is
//! checked against the protocol, not against a client library.

#![allow(clippy::unwrap_used)]

mod riders_support;

use std::time::Duration;

use flashkart_edge::riders::RiderEvent;
use flashkart_proto::rider as pb;
use prost::Message;
use riders_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An MQTT string: two length bytes, then the text.
fn string(text: &str) -> Vec<u8> {
    let mut out = u16::try_from(text.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// A packet with a one-byte remaining length (every packet here is short).
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first, u8::try_from(body.len()).unwrap()];
    out.extend_from_slice(body);
    out
}

fn connect(client_id: &str, keep_alive: u16, will: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut flags = 0x02;
    if will.is_some() {
        flags |= 0x04 | 0x08;
    }
    let mut body = string("MQTT");
    body.extend([4, flags]);
    body.extend(keep_alive.to_be_bytes());
    body.extend(string(client_id));
    if let Some((topic, message)) = will {
        body.extend(string(topic));
        body.extend(u16::try_from(message.len()).unwrap().to_be_bytes());
        body.extend_from_slice(message);
    }
    packet(0x10, &body)
}

fn subscribe(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(string(filter));
    body.push(qos);
    packet(0x82, &body)
}

fn publish(topic: &str, payload: &[u8], qos: u8, packet_id: u16) -> Vec<u8> {
    let mut body = string(topic);
    if qos > 0 {
        body.extend(packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(0x30 | qos << 1, &body)
}

struct Client {
    stream: TcpStream,
}

impl Client {
    async fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream }
    }

    /// Connects and expects CONNACK accepted.
    async fn connected(port: u16, client_id: &str) -> Self {
        let mut client = Self::open(port).await;
        client.send(&connect(client_id, 30, None)).await;
        assert_eq!(client.read().await, Some(vec![0x20, 2, 0, 0]));
        client
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next whole packet (fixed header included), or `None` once the broker closed the
    /// connection.
    async fn read(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(WAIT, async {
            let mut first = [0u8; 1];
            if self.stream.read_exact(&mut first).await.is_err() {
                return None;
            }
            let mut out = first.to_vec();
            let mut len = 0usize;
            for shift in [0, 7, 14, 21] {
                let byte = self.stream.read_u8().await.ok()?;
                out.push(byte);
                len |= usize::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            let mut body = vec![0; len];
            self.stream.read_exact(&mut body).await.ok()?;
            out.extend(body);
            Some(out)
        })
        .await
        .expect("the broker neither answered nor closed the connection")
    }

    async fn subscribed(&mut self, filter: &str, qos: u8, granted: u8) {
        self.send(&subscribe(1, filter, qos)).await;
        assert_eq!(self.read().await, Some(vec![0x90, 3, 0, 1, granted]));
    }
}

async fn edge() -> (tempfile::TempDir, flashkart_sync::StoreDb, Edge) {
    tracing();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    seed_store(&db).await;
    let edge = start_edge_with(&db, dir.path(), |config| config.sizing.max_connections = 4).await;
    (dir, db, edge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocol_levels_get_connack_refused_and_garbage_is_closed() {
    let (_dir, db, edge) = edge().await;
    let port = edge.plain_port;
    // OwnTracks' default, MQTT 3.1 ("MQIsdp", level 3), and MQTT 5.
    for (name, level) in [("MQIsdp", 3), ("MQTT", 5)] {
        let mut body = string(name);
        body.extend([level, 0x02, 0, 30]);
        body.extend(string("phone"));
        let mut client = Client::open(port).await;
        client.send(&packet(0x10, &body)).await;
        assert_eq!(
            client.read().await,
            Some(vec![0x20, 2, 0, 1]),
            "{name} {level}"
        );
        assert_eq!(client.read().await, None, "closed after the refusal");
    }
    // An empty client id needs a clean session.
    let mut body = string("MQTT");
    body.extend([4, 0x00, 0, 30]);
    body.extend(string(""));
    let mut client = Client::open(port).await;
    client.send(&packet(0x10, &body)).await;
    assert_eq!(client.read().await, Some(vec![0x20, 2, 0, 2]));
    // Not CONNECT first, a PUBLISH of QoS 3, a second CONNECT: closed without an answer.
    let mut client = Client::open(port).await;
    client.send(&[0x30, 3, 0, 1, b'a']).await;
    assert_eq!(client.read().await, None);
    for garbage in [vec![0x36, 4, 0, 1, b'a', 0], connect("again", 30, None)] {
        let mut client = Client::connected(port, "garbage").await;
        client.send(&garbage).await;
        assert_eq!(client.read().await, None, "{garbage:?}");
    }
    // The broker still serves everyone else.
    let mut client = Client::connected(port, "after").await;
    client.send(&[0xc0, 0]).await;
    assert_eq!(client.read().await, Some(vec![0xd0, 0]));

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_from_a_client_is_delivered_exactly_once() {
    let (_dir, db, edge) = edge().await;
    let port = edge.plain_port;
    let mut reader = Client::connected(port, "reader").await;
    reader.subscribed("q/#", 2, 1).await;
    let mut writer = Client::connected(port, "writer").await;

    let first = publish("q/two", b"once", 2, 7);
    writer.send(&first).await;
    assert_eq!(writer.read().await, Some(vec![0x50, 2, 0, 7]), "PUBREC");
    // The same message again (DUP), before PUBREL: acknowledged, not delivered again.
    let mut again = first.clone();
    again[0] |= 0x08;
    writer.send(&again).await;
    assert_eq!(
        writer.read().await,
        Some(vec![0x50, 2, 0, 7]),
        "PUBREC again"
    );
    writer.send(&[0x62, 2, 0, 7]).await;
    assert_eq!(writer.read().await, Some(vec![0x70, 2, 0, 7]), "PUBCOMP");
    writer.send(&publish("q/end", b"", 0, 0)).await;

    // The reader gets it once, at the QoS granted (1), then the marker that came after it.
    let delivered = reader.read().await.unwrap();
    assert_eq!(delivered[0], 0x32, "QoS 1, not retained");
    assert!(delivered.ends_with(b"q/two\0\x01once"), "{delivered:?}");
    reader.send(&[0x40, 2, 0, 1]).await;
    assert_eq!(reader.read().await, Some(packet(0x30, &string("q/end"))));

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_its_keep_alive_and_its_will_published() {
    let (_dir, db, edge) = edge().await;
    let port = edge.plain_port;
    let mut watcher = Client::connected(port, "watcher").await;
    watcher.subscribed("wills/#", 0, 0).await;

    let mut quiet = Client::open(port).await;
    quiet
        .send(&connect("quiet", 1, Some(("wills/quiet", b"gone"))))
        .await;
    assert_eq!(quiet.read().await, Some(vec![0x20, 2, 0, 0]));
    quiet.send(&[0xc0, 0]).await;
    assert_eq!(quiet.read().await, Some(vec![0xd0, 0]), "PINGRESP");
    let started = tokio::time::Instant::now();
    // No packet for 1.5 times the keep-alive of 1 s: closed, and the will goes out.
    assert_eq!(quiet.read().await, None);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    let mut will = string("wills/quiet");
    will.extend(b"gone");
    assert_eq!(watcher.read().await, Some(packet(0x30, &will)));

    // A client that says DISCONNECT leaves no will.
    let mut polite = Client::open(port).await;
    polite
        .send(&connect("polite", 30, Some(("wills/polite", b"gone"))))
        .await;
    assert_eq!(polite.read().await, Some(vec![0x20, 2, 0, 0]));
    polite.send(&[0xe0, 0]).await;
    assert_eq!(polite.read().await, None);
    watcher.send(&publish("wills/marker", b"", 0, 0)).await;
    assert_eq!(
        watcher.read().await,
        Some(packet(0x30, &string("wills/marker"))),
        "the marker, and no will before it"
    );

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_offers_wait_for_the_rider_and_unsubscribe_stops_delivery() {
    let (_dir, db, mut edge) = edge().await;
    let port = edge.plain_port;
    seed_rider(&db, "r1", "code").await;
    edge.riders.roster_changed();
    seed_ready_order(&db, "o1", "L1").await;
    assign(&db, "a1", "o1", "r1", 60).await;
    edge.riders.assignments_changed();
    wait_for(&mut edge.events, |e| {
        matches!(e, RiderEvent::Offered { .. }).then_some(())
    })
    .await;
    assert_eq!(edge.riders.broker_stats().retained, 1);

    // Subscribing after the offer was published: it arrives, marked retained.
    let mut rider = Client::connected(port, "r1phone").await;
    rider.subscribed("/tenants/r1/edge/#", 1, 1).await;
    let offer = rider.read().await.unwrap();
    assert_eq!(offer[0], 0x33, "QoS 1, retained");
    let topic = string("/tenants/r1/edge/offers/a1");
    assert!(offer.windows(topic.len()).any(|w| w == topic));
    let packet_id = [offer[2 + topic.len()], offer[3 + topic.len()]];
    rider.send(&[0x40, 2, packet_id[0], packet_id[1]]).await;

    // Unsubscribed, the rider gets nothing more; its own echo topic still works.
    rider
        .send(&packet(
            0xa2,
            &[&[0, 9][..], &string("/tenants/r1/edge/#")].concat(),
        ))
        .await;
    assert_eq!(rider.read().await, Some(vec![0xb0, 2, 0, 9]), "UNSUBACK");
    rider.subscribed("/tenants/r1/echo", 0, 0).await;
    let decline = pb::Reply {
        assignment_id: "a1".into(),
        accept: false,
    };
    rider
        .send(&publish(
            "/tenants/r1/replies",
            &decline.encode_to_vec(),
            1,
            3,
        ))
        .await;
    assert_eq!(rider.read().await, Some(vec![0x40, 2, 0, 3]), "PUBACK");
    wait_for(&mut edge.events, |e| match e {
        RiderEvent::Replied { reply, .. } => Some(reply.clone()),
        _ => None,
    })
    .await;
    // Neither the withdrawal of the offer nor the ack reaches the unsubscribed filter.
    rider.send(&publish("/tenants/r1/echo", b"", 0, 0)).await;
    assert_eq!(
        rider.read().await,
        Some(packet(0x30, &string("/tenants/r1/echo")))
    );
    assert_eq!(
        edge.riders.broker_stats().retained,
        0,
        "the expired offer is withdrawn"
    );

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused_until_one_closes() {
    let (_dir, db, edge) = edge().await;
    let port = edge.plain_port;
    let mut open = Vec::new();
    for i in 0..4 {
        open.push(Client::connected(port, &format!("c{i}")).await);
    }
    let mut fifth = Client::open(port).await;
    fifth.send(&connect("c4", 30, None)).await;
    assert_eq!(
        fifth.read().await,
        Some(vec![0x20, 2, 0, 3]),
        "server unavailable"
    );
    assert_eq!(fifth.read().await, None);
    assert_eq!(edge.riders.broker_stats().sessions, 4);

    let mut leaving = open.pop().unwrap();
    leaving.send(&[0xe0, 0]).await;
    assert_eq!(leaving.read().await, None);
    // The broker forgets a connection before it closes the socket.
    assert_eq!(edge.riders.broker_stats().sessions, 3);
    let _fifth = Client::connected(port, "c4").await;

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}
