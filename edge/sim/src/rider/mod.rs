//! A rider simulator: one rumqttc client that behaves like a rider's phone.
//!
//! It wanders along a path at a set speed, reports its position every tick, answers offers by
//! a policy, rides to the store, reports arrival, scans the bag label, rides to the customer
//! and reports delivery (with the cash it collected, for an order paid in cash), reacting to the edge's acknowledgements like a real app would. The
//! demo (`flashkart-edge-sim rider`, see [`args`]), the edge's acceptance tests and its riders
//! benchmark all use it, over the loopback listener or over TLS with a rider certificate.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use flashkart_proto::rider as pb;
use geo::{Bearing, Destination, Distance, Haversine, Point};
use prost::Message;
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use flashkart_edge::clock;
use flashkart_edge::riders::topics;

pub mod args;
pub mod phone;

/// Finds what the rider reads at the store: the label on an order's bag, or the customer's
/// PIN at the door.
pub type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The rider's device credentials for the TLS listener.
#[derive(Debug, Clone)]
pub struct SimTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// How the simulated rider answers offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptPolicy {
    Always,
    Never,
    /// Accepts every n-th offer, declines the others.
    EveryNth(u32),
}

/// What the simulator saw, for tests and the benchmark.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// Connected and subscribed: offers published from now on reach this rider.
    Ready {
        rider_id: String,
    },
    Offer {
        rider_id: String,
        offer: pb::Offer,
        received_at_ms: i64,
    },
    Ack {
        rider_id: String,
        ack: pb::Ack,
    },
    Refusal {
        rider_id: String,
        refusal: pb::Refusal,
    },
}

/// One simulated rider.
#[derive(Clone)]
pub struct SimConfig {
    pub rider_id: String,
    /// Host name (a name, not an IP, for TLS: rustls refuses IP SNI) and port of the broker.
    pub host: String,
    pub port: u16,
    pub tls: Option<SimTls>,
    /// Where the rider wanders while idle (a loop); the first point is the start.
    pub path: Vec<(f64, f64)>,
    pub speed_mps: f64,
    /// Time between position reports (and movement steps).
    pub tick: Duration,
    pub accept: AcceptPolicy,
    /// order id -> the label on its bag.
    pub labels: Lookup,
    /// order id -> the PIN the customer reads out at the door, if any; without one the rider
    /// sends a photo reference (a contactless delivery).
    pub pins: Option<Lookup>,
    /// Metres from the store or the customer that count as "there".
    pub arrive_within_m: f64,
    /// At the door of a cash order the rider reports collecting the amount due plus this
    /// (0: exactly what is due; negative: short, as when a customer pays less), for tests of
    /// what the store and HQ do with a difference.
    pub cash_delta_minor: i64,
    /// What the simulator sees, for tests and benchmarks. Bounded: a simulator whose reader
    /// falls behind waits for it (as a phone's app would stall) instead of buffering without
    /// limit; readers drain it, and a dropped reader makes sending a no-op.
    pub events: Option<mpsc::Sender<SimEvent>>,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("rider_id", &self.rider_id)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("speed_mps", &self.speed_mps)
            .finish_non_exhaustive()
    }
}

impl SimConfig {
    /// A rider on the loopback listener at `port` that accepts every offer, starting at
    /// `(lat, lon)`, moving at 10 m/s and reporting every second.
    pub fn new(rider_id: impl Into<String>, port: u16, start: (f64, f64), labels: Lookup) -> Self {
        Self {
            rider_id: rider_id.into(),
            host: "localhost".into(),
            port,
            tls: None,
            path: vec![start],
            speed_mps: 10.0,
            tick: Duration::from_secs(1),
            accept: AcceptPolicy::Always,
            labels,
            pins: None,
            arrive_within_m: 10.0,
            cash_delta_minor: 0,
            events: None,
        }
    }
}

/// What a simulator run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub offers: u32,
    pub accepted: u32,
    pub delivered: u32,
    pub locations: u64,
}

/// Why the simulator stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("mqtt: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("the rider id `{0}` is not alphanumeric")]
    RiderId(String),
}

/// Ticks a rider waits at the store for a bag that is not ready yet (10 minutes at 1 s ticks).
const BAG_WAIT_TICKS: u32 = 600;

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Idle,
    ToStore {
        order_id: String,
        store: Point,
    },
    AwaitArrival {
        order_id: String,
    },
    AwaitPickup {
        order_id: String,
    },
    /// At the store, the bag not ready yet: scan again each tick, as a rider at the shelf does.
    WaitForBag {
        order_id: String,
    },
    ToDrop {
        order_id: String,
        drop: Point,
    },
    AwaitDelivered,
}

struct Rider {
    config: SimConfig,
    client: AsyncClient,
    position: Point,
    waypoint: usize,
    phase: Phase,
    /// Ticks left to wait at the store for the current bag.
    bag_wait_left: u32,
    stats: SimStats,
    offers_seen: u32,
    /// The offers answered lately, oldest first: a persistent session delivers an offer again
    /// when the phone's acknowledgement of it was lost in a drop, and the app answers an offer
    /// once, like a person would.
    answered: VecDeque<String>,
    /// Drop points of accepted offers, by order.
    drops: HashMap<String, Point>,
    /// Cash to collect at the door of accepted cash orders, by order (what the app shows).
    cash_due: HashMap<String, i64>,
}

/// How many answered offers a phone remembers.
const ANSWERED_KEPT: usize = 64;

/// Runs one simulated rider until `shutdown`; connection errors are retried (like a phone).
pub async fn run(config: SimConfig, shutdown: CancellationToken) -> Result<SimStats, SimError> {
    if !topics::is_rider_id(&config.rider_id) {
        return Err(SimError::RiderId(config.rider_id));
    }
    let (client, mut eventloop) = connect(&config);
    let start = config.path.first().copied().unwrap_or((0.0, 0.0));
    let mut rider = Rider {
        position: Point::new(start.1, start.0),
        waypoint: 0,
        phase: Phase::Idle,
        bag_wait_left: 0,
        stats: SimStats::default(),
        offers_seen: 0,
        answered: VecDeque::new(),
        drops: HashMap::new(),
        cash_due: HashMap::new(),
        client,
        config,
    };
    let mut ticks = tokio::time::interval(rider.config.tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => rider.step().await?,
            event = eventloop.poll() => match event {
                Ok(event) => rider.on_event(event).await?,
                Err(error) => {
                    tracing::debug!(rider = %rider.config.rider_id, %error, "connection lost; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
    // Best effort: say goodbye so the broker does not fire the last will.
    let _ = rider.client.try_disconnect();
    Ok(rider.stats)
}

/// The client id is fixed (`<rider id>sim`) and reused by rumqttc's reconnections: a new
/// connection with a live connection's client id takes its session over (the edge's broker,
/// rumqttd, does so), on the TLS and the loopback listener alike.
fn connect(config: &SimConfig) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(
        format!("{}sim", config.rider_id),
        config.host.clone(),
        config.port,
    );
    options.set_keep_alive(Duration::from_secs(30));
    // A persistent session, as the riders' README asks of phones: what the broker sends while
    // the phone is away (an offer, an acknowledgement) waits for it, and rumqttc sends again
    // what the broker had not acknowledged (an accept sent into a dropped connection).
    options.set_clean_session(false);
    options.set_last_will(LastWill::new(
        topics::leaf(&config.rider_id, "presence"),
        pb::Presence { online: false }.encode_to_vec(),
        QoS::AtLeastOnce,
        false,
    ));
    if let Some(tls) = &config.tls {
        options.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca: tls.ca_pem.clone().into_bytes(),
            alpn: None,
            client_auth: Some((
                tls.cert_pem.clone().into_bytes(),
                tls.key_pem.clone().into_bytes(),
            )),
        }));
    }
    AsyncClient::new(options, 64)
}

impl Rider {
    fn id(&self) -> &str {
        &self.config.rider_id
    }

    async fn emit(&self, event: SimEvent) {
        if let Some(events) = &self.config.events {
            let _ = events.send(event).await;
        }
    }

    async fn send(&self, leaf: &str, payload: Vec<u8>, qos: QoS) -> Result<(), SimError> {
        self.client
            .publish(topics::leaf(self.id(), leaf), qos, false, payload)
            .await?;
        Ok(())
    }

    async fn on_event(&mut self, event: Event) -> Result<(), SimError> {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                let id = self.id().to_owned();
                self.client
                    .subscribe(topics::edge_filter(&id), QoS::AtLeastOnce)
                    .await?;
                self.client
                    .publish(
                        topics::leaf(&id, "presence"),
                        QoS::AtLeastOnce,
                        false,
                        pb::Presence { online: true }.encode_to_vec(),
                    )
                    .await?;
            }
            Event::Incoming(Packet::SubAck(_)) => {
                // Subscribed to offers, acks and errors: offers reach us from now on.
                self.emit(SimEvent::Ready {
                    rider_id: self.id().to_owned(),
                })
                .await;
            }
            Event::Incoming(Packet::Publish(publish)) => {
                self.on_publish(&publish.topic, &publish.payload).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_publish(&mut self, topic: &str, payload: &[u8]) -> Result<(), SimError> {
        let id = self.id().to_owned();
        if topics::offer_assignment(&id, topic).is_some() {
            // An empty payload withdraws an answered or expired offer.
            if payload.is_empty() {
                return Ok(());
            }
            match pb::Offer::decode(payload) {
                Ok(offer) => self.on_offer(offer).await?,
                Err(error) => tracing::warn!(rider = %id, %error, "undecodable offer"),
            }
        } else if topic == topics::acks(&id) {
            if let Ok(ack) = pb::Ack::decode(payload) {
                self.on_ack(&ack).await?;
                self.emit(SimEvent::Ack { rider_id: id, ack }).await;
            }
        } else if topic == topics::errors(&id)
            && let Ok(refusal) = pb::Refusal::decode(payload)
        {
            tracing::info!(rider = %id, code = %refusal.code, message = %refusal.message, "refused");
            match (&self.phase, refusal.command.as_str()) {
                (_, "location" | "arrival") => {}
                (Phase::AwaitPickup { order_id }, "pickup") => {
                    self.phase = Phase::WaitForBag {
                        order_id: order_id.clone(),
                    };
                }
                _ => self.phase = Phase::Idle,
            }
            self.emit(SimEvent::Refusal {
                rider_id: id,
                refusal,
            })
            .await;
        }
        Ok(())
    }

    async fn on_offer(&mut self, offer: pb::Offer) -> Result<(), SimError> {
        let received_at_ms = clock::now_ms();
        if self.answered.contains(&offer.assignment_id) {
            tracing::debug!(rider = %self.id(), assignment = %offer.assignment_id,
                "an offer already answered, delivered again after a drop");
            return Ok(());
        }
        if self.answered.len() == ANSWERED_KEPT {
            self.answered.pop_front();
        }
        self.answered.push_back(offer.assignment_id.clone());
        self.stats.offers += 1;
        self.offers_seen += 1;
        let accept = self.phase == Phase::Idle
            && match self.config.accept {
                AcceptPolicy::Always => true,
                AcceptPolicy::Never => false,
                AcceptPolicy::EveryNth(n) => n > 0 && self.offers_seen.is_multiple_of(n),
            };
        let reply = pb::Reply {
            assignment_id: offer.assignment_id.clone(),
            accept,
        };
        self.send("replies", reply.encode_to_vec(), QoS::AtLeastOnce)
            .await?;
        if accept {
            self.stats.accepted += 1;
            let store = offer
                .store
                .as_ref()
                .map_or(self.position, |p| Point::new(p.lon, p.lat));
            if let Some(drop) = &offer.drop {
                self.drops
                    .insert(offer.order_id.clone(), Point::new(drop.lon, drop.lat));
            }
            if offer.cash_due_minor > 0 {
                self.cash_due
                    .insert(offer.order_id.clone(), offer.cash_due_minor);
            }
            self.phase = Phase::ToStore {
                order_id: offer.order_id.clone(),
                store,
            };
        }
        self.emit(SimEvent::Offer {
            rider_id: self.id().to_owned(),
            offer,
            received_at_ms,
        })
        .await;
        Ok(())
    }

    async fn on_ack(&mut self, ack: &pb::Ack) -> Result<(), SimError> {
        match (&self.phase, ack.command.as_str()) {
            (Phase::ToStore { order_id, .. } | Phase::AwaitArrival { order_id }, "arrival") => {
                let order_id = order_id.clone();
                let label = (self.config.labels)(&order_id).unwrap_or_default();
                self.bag_wait_left = BAG_WAIT_TICKS;
                self.send(
                    "pickup",
                    pb::Pickup { label_id: label }.encode_to_vec(),
                    QoS::AtLeastOnce,
                )
                .await?;
                self.phase = Phase::AwaitPickup { order_id };
            }
            (Phase::AwaitPickup { .. }, "pickup") => {
                let drop = self.drop_point(ack);
                self.drops.remove(&ack.order_id);
                self.phase = Phase::ToDrop {
                    order_id: ack.order_id.clone(),
                    drop,
                };
            }
            (Phase::AwaitDelivered, "delivered") => {
                self.stats.delivered += 1;
                self.phase = Phase::Idle;
            }
            _ => {}
        }
        Ok(())
    }

    /// Where the order of `ack` goes: the offer's drop point, or 500 m north of here (a
    /// stand-in customer) when the order has no coordinates.
    fn drop_point(&self, ack: &pb::Ack) -> Point {
        match self.drops.get(&ack.order_id) {
            Some(drop) if drop.x() != 0.0 || drop.y() != 0.0 => *drop,
            _ => Haversine.destination(self.position, 0.0, 500.0),
        }
    }

    /// One tick: move, report the position, and act on arriving.
    async fn step(&mut self) -> Result<(), SimError> {
        let step_m = self.config.speed_mps * self.config.tick.as_secs_f64();
        match self.phase.clone() {
            Phase::Idle => {
                if self.config.path.len() > 1 {
                    let (lat, lon) = self.config.path[self.waypoint];
                    let target = Point::new(lon, lat);
                    if self.advance(target, step_m) {
                        self.waypoint = (self.waypoint + 1) % self.config.path.len();
                    }
                }
            }
            Phase::ToStore { order_id, store } => {
                if self.advance(store, step_m) {
                    let arrival = pb::Arrival {
                        position: Some(self.fix()),
                    };
                    self.send("arrival", arrival.encode_to_vec(), QoS::AtLeastOnce)
                        .await?;
                    self.phase = Phase::AwaitArrival { order_id };
                }
            }
            Phase::ToDrop { order_id, drop } => {
                if self.advance(drop, step_m) {
                    let customer_pin = self.config.pins.as_ref().and_then(|pins| pins(&order_id));
                    // No PIN to hear (a contactless order, or no way to ask): a photo of the
                    // parcel at the door instead.
                    let photo_ref = customer_pin
                        .is_none()
                        .then(|| format!("sim-photo/{order_id}.jpg"));
                    // The offer said what to collect; the rider reports what it took.
                    let cash_collected_minor = self
                        .cash_due
                        .remove(&order_id)
                        .map(|due| due.saturating_add(self.config.cash_delta_minor));
                    let delivered = pb::Delivered {
                        order_id,
                        position: Some(self.fix()),
                        customer_pin,
                        photo_ref,
                        cash_collected_minor,
                    };
                    self.send("delivered", delivered.encode_to_vec(), QoS::AtLeastOnce)
                        .await?;
                    self.phase = Phase::AwaitDelivered;
                }
            }
            Phase::WaitForBag { order_id } => {
                self.bag_wait_left = self.bag_wait_left.saturating_sub(1);
                if self.bag_wait_left == 0 {
                    tracing::info!(rider = %self.id(), %order_id, "gave up waiting for the bag");
                    self.phase = Phase::Idle;
                } else if let Some(label) = (self.config.labels)(&order_id) {
                    self.send(
                        "pickup",
                        pb::Pickup { label_id: label }.encode_to_vec(),
                        QoS::AtLeastOnce,
                    )
                    .await?;
                    self.phase = Phase::AwaitPickup { order_id };
                }
            }
            Phase::AwaitArrival { .. } | Phase::AwaitPickup { .. } | Phase::AwaitDelivered => {}
        }
        self.stats.locations += 1;
        self.send("location", self.fix().encode_to_vec(), QoS::AtMostOnce)
            .await
    }

    /// Moves up to `step_m` towards `target`; true once within `arrive_within_m` of it.
    fn advance(&mut self, target: Point, step_m: f64) -> bool {
        let remaining = Haversine.distance(self.position, target);
        if remaining <= step_m {
            self.position = target;
        } else {
            let bearing = Haversine.bearing(self.position, target);
            self.position = Haversine.destination(self.position, bearing, step_m);
        }
        Haversine.distance(self.position, target) <= self.config.arrive_within_m
    }

    fn fix(&self) -> pb::Position {
        pb::Position {
            lat: self.position.y(),
            lon: self.position.x(),
            accuracy_m: Some(5.0),
            at_ms: clock::now_ms(),
        }
    }
}
