//! Persistent sessions on the riders' broker, over real sockets with real rider certificates: a
//! phone whose connection is cut (by a relay that can freeze and cut it) gets what it missed
//! when it reconnects, and an accept resent after the drop counts once.

#![allow(clippy::unwrap_used)]

mod riders_support;

use std::sync::Arc;

use flashkart_edge::riders::RiderEvent;
use flashkart_proto::rider as pb;
use prost::Message;
use riders_support::mqtt::*;
use riders_support::*;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, Packet, QoS};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A TCP relay between a phone and the broker that the test controls like a flaky mobile
/// network: [`Relay::freeze`] loses everything the broker sends from then on, [`Relay::cut`]
/// drops the phone's connection (both sides closed, no MQTT DISCONNECT).
struct Relay {
    port: u16,
    frozen: Arc<std::sync::atomic::AtomicBool>,
    cut: Arc<std::sync::Mutex<tokio_util::sync::CancellationToken>>,
}

impl Relay {
    async fn start(to: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cut = Arc::new(std::sync::Mutex::new(
            tokio_util::sync::CancellationToken::new(),
        ));
        let (frozen2, cut2) = (frozen.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((phone, _)) = listener.accept().await {
                let broker = TcpStream::connect(("127.0.0.1", to)).await.unwrap();
                let token = cut2.lock().unwrap().clone();
                let frozen = frozen2.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let (mut phone_rx, mut phone_tx) = phone.into_split();
                    let (mut broker_rx, mut broker_tx) = broker.into_split();
                    let up = tokio::io::copy(&mut phone_rx, &mut broker_tx);
                    let down = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = broker_rx.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            if !frozen.load(std::sync::atomic::Ordering::SeqCst) {
                                phone_tx.write_all(&buf[..n]).await?;
                            }
                        }
                    };
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        Self { port, frozen, cut }
    }

    fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drops the live connections; later ones are relayed normally again.
    fn cut(&self) {
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = tokio_util::sync::CancellationToken::new();
        self.frozen
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Polls until the connection fails (the relay was cut), then until it is back: the CONNACK's
/// session-present flag.
async fn reconnect(eventloop: &mut EventLoop) -> bool {
    tokio::time::timeout(WAIT, async {
        while eventloop.poll().await.is_ok() {}
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    assert_eq!(ack.code, ConnectReturnCode::Success);
                    return ack.session_present;
                }
                Ok(_) => {}
                Err(error) => tracing::info!(%error, "reconnecting"),
            }
        }
    })
    .await
    .expect("the phone did not reconnect")
}

/// Awaits `wait` while polling the phone's event loop (rumqttc sends only while polled).
async fn while_polling<T>(
    eventloop: &mut EventLoop,
    wait: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(wait);
    loop {
        tokio::select! {
            found = &mut wait => return found,
            polled = eventloop.poll() => {
                if let Err(error) = polled {
                    panic!("the phone's connection failed: {error}");
                }
            }
        }
    }
}

async fn replies_for(db: &flashkart_sync::StoreDb, assignment: &str) -> Vec<Vec<String>> {
    query(
        db,
        "SELECT reply FROM assignment_replies WHERE assignment_id = ?1",
        assignment,
    )
    .await
}

/// A phone with a persistent session (clean_session = false, fixed client id) that loses its
/// network: the offer published while it was away reaches it at reconnection without a new
/// subscription, and an accept whose acknowledgement is lost in a drop is resent by the phone,
/// recorded exactly once and acknowledged again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_gets_what_it_missed_and_an_accept_counts_once() {
    let (_dir, db, mut edge, a, _b) = two_riders().await;
    seed_ready_order(&db, "o1", "FK-L1").await;
    seed_ready_order(&db, "o2", "FK-L2").await;
    assign(&db, "a1", "o1", "riderA", 600).await;
    edge.riders.assignments_changed();
    let relay = Relay::start(edge.tls_port).await;
    let mut phone = options("phoneA", relay.port, Some(&a));
    phone.set_clean_session(false);
    phone.set_last_will(LastWill::new(
        "/tenants/riderA/presence",
        pb::Presence { online: false }.encode_to_vec(),
        QoS::AtLeastOnce,
        false,
    ));
    let (client, mut eventloop) = AsyncClient::new(phone, 16);
    client
        .subscribe("/tenants/riderA/edge/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let offered = |wanted: &'static str| {
        move |e: &Event| match e {
            Event::Incoming(Packet::Publish(p))
                if p.topic.ends_with(&format!("/offers/{wanted}")) =>
            {
                Some(pb::Offer::decode(p.payload.clone()).unwrap())
            }
            _ => None,
        }
    };
    until(&mut eventloop, "the offer of a1", offered("a1")).await;

    // The network goes; the broker notices (the will) and keeps the session.
    relay.cut();
    assert!(!next_presence(&mut edge.events).await);
    assign(&db, "a2", "o2", "riderA", 600).await;
    edge.riders.assignments_changed();
    wait_for(&mut edge.events, |e| {
        matches!(e, RiderEvent::Offered { assignment_id, .. } if assignment_id == "a2")
            .then_some(())
    })
    .await;
    assert!(reconnect(&mut eventloop).await, "the session was not kept");
    // No new subscription: the session's own.
    let offer = until(&mut eventloop, "the offer missed while away", offered("a2")).await;
    assert_eq!(offer.assignment_id, "a2");

    // The accept reaches the edge, its PUBACK and the edge's ack are lost, the network goes.
    relay.freeze();
    let accept = pb::Reply {
        assignment_id: "a2".into(),
        accept: true,
    }
    .encode_to_vec();
    client
        .publish(
            "/tenants/riderA/replies",
            QoS::AtLeastOnce,
            false,
            accept.clone(),
        )
        .await
        .unwrap();
    // The phone's client sends only while polled.
    let replied = wait_for(&mut edge.events, |e| match e {
        RiderEvent::Replied {
            assignment_id,
            reply,
            ..
        } if assignment_id == "a2" => Some(reply.clone()),
        _ => None,
    });
    let reply = while_polling(&mut eventloop, replied).await;
    assert_eq!(reply, "accepted");
    relay.cut();
    let acked = |e: &Event| match e {
        Event::Incoming(Packet::Publish(p)) if p.topic == "/tenants/riderA/edge/acks" => {
            let ack = pb::Ack::decode(p.payload.clone()).unwrap();
            (ack.assignment_id == "a2").then_some(ack.status)
        }
        _ => None,
    };
    // Reconnected, the phone resends the unacknowledged accept; the edge acknowledges it.
    assert!(reconnect(&mut eventloop).await);
    assert_eq!(
        until(&mut eventloop, "the ack of the accept", acked).await,
        "accepted"
    );
    // The app asks once more (it never saw the first ack): acknowledged, not recorded again.
    client
        .publish("/tenants/riderA/replies", QoS::AtLeastOnce, false, accept)
        .await
        .unwrap();
    assert_eq!(
        until(&mut eventloop, "the ack of the repeat", acked).await,
        "accepted"
    );
    assert_eq!(
        replies_for(&db, "a2").await,
        vec![vec!["accepted".to_owned()]]
    );
    while let Ok(event) = edge.events.try_recv() {
        assert!(
            !matches!(&event, RiderEvent::Replied { assignment_id, .. } if assignment_id == "a2"),
            "the accept was recorded twice: {event:?}"
        );
    }

    edge.riders.shutdown().await;
    db.close().await.unwrap();
}
