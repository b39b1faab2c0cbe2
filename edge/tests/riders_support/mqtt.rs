//! rumqttc helpers of the riders broker tests: a phone's options, polling until an event, a
//! publish/subscribe round trip, and an edge with two enrolled riders.

use std::time::Duration;

use flashkart_edge::riders::{CertBundle, ClientKey, RiderEvent};
use flashkart_proto::rider as pb;
use prost::Message;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::broadcast;

use super::*;

pub fn options(client_id: &str, port: u16, bundle: Option<&CertBundle>) -> MqttOptions {
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
pub async fn until<T>(
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

/// Publishes rider A's presence, retained as phones do, and waits
/// for the broker's PUBACK.
pub async fn publish_presence(client: &AsyncClient, eventloop: &mut EventLoop, online: bool) {
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
pub async fn next_presence(events: &mut broadcast::Receiver<RiderEvent>) -> bool {
    wait_for(events, |e| match e {
        RiderEvent::Presence { rider_id, online } if rider_id == "riderA" => Some(*online),
        _ => None,
    })
    .await
}

/// Connects (CONNACK accepted), subscribes to `topic`, publishes to it and receives it back.
pub async fn round_trip(options: MqttOptions, topic: &str) -> (AsyncClient, EventLoop) {
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

/// An edge with two enrolled riders, riderA and riderB: the database (in a temporary directory
/// that lives as long as the first value), the edge, and their certificates.
pub async fn two_riders() -> (
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
pub async fn refused_before_connack(options: MqttOptions) -> String {
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
pub async fn closes(eventloop: &mut EventLoop) -> bool {
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

/// B publishes to its echo topic and must receive exactly that (not A's forged message).
pub async fn b_loop_echo(b_loop: &mut EventLoop, b: &AsyncClient) {
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
