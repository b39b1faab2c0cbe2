//! The riders service: one task that reads what rider devices send the edge and turns it into
//! database rows and order moves, and assignments into offers.
//!
//! One task, so the in-memory state (roster, published offers, accepted assignments, pending
//! positions) needs no locks and every rider message is handled in arrival order. Commands
//! that must be durable (replies, expiries) are written before they are acknowledged; positions
//! are buffered and written in one transaction per interval, latest per rider only, because
//! 500 riders at 1 fix/s would otherwise be 500 commits a second on a Pi's SD card.
//!
//! The loop, the roster and positions are here; what riders send (replies, arrival, pickup,
//! delivery) is handled in `commands.rs`, and offers going out in `offers.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use flashkart_proto::rider as pb;
use flashkart_sync::StoreDb;
use prost::Message;
use rusqlite::OptionalExtension;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::riders::broker::{self, Broker, EdgeLink, Publisher};
use crate::riders::codec::{self, Fix};
use crate::riders::desk::OrderDesk;
use crate::riders::geofence::Geofence;
use crate::riders::topics::{self, Inbound};
use crate::riders::{Command, Error, Nudges, RiderEvent, RidersConfig, clock};

mod commands;
mod offers;

/// Unanswered assignments older than this are left alone (bounds the offer scan).
const SCAN_WINDOW_S: i64 = 7 * 24 * 3600;

pub struct Service<D> {
    config: RidersConfig,
    db: StoreDb,
    desk: D,
    publisher: Publisher,
    inbox: mpsc::Receiver<broker::Inbound>,
    events: broadcast::Sender<RiderEvent>,
    online: Arc<Mutex<BTreeSet<String>>>,
    /// The broker, told who may connect and whom to disconnect.
    broker: Broker,
    /// Active riders not revoked here.
    allowed: HashSet<String>,
    fence: Option<Geofence>,
    /// Offers published by this run, by assignment id: the rider.
    published: HashMap<String, String>,
    /// Accepted, not yet picked up: rider -> order.
    accepted: HashMap<String, String>,
    /// Riders reported at the store for their accepted order.
    arrived: HashSet<String>,
    positions: HashMap<String, Fix>,
}

/// An assignment without a reply.
struct Open {
    assignment_id: String,
    order_id: String,
    rider_id: String,
    expires_at: String,
    drop_lat: f64,
    drop_lon: f64,
    address: String,
    customer: String,
    /// What the rider collects at the door; 0 unless the order is paid in cash.
    cash_due_minor: i64,
    currency: String,
}

enum ReplyOutcome {
    Recorded {
        order_id: String,
    },
    /// The rider sent the answer already recorded (a QoS 1 resend after a drop).
    Repeated {
        order_id: String,
    },
    Refused(&'static str, String),
    Expired,
}

impl<D: OrderDesk> Service<D> {
    pub async fn new(
        config: RidersConfig,
        db: StoreDb,
        desk: D,
        link: EdgeLink,
        broker: Broker,
        events: broadcast::Sender<RiderEvent>,
        online: Arc<Mutex<BTreeSet<String>>>,
    ) -> Result<Self, Error> {
        let store_id = config.store_id.clone();
        let accepted = db
            .read(move |conn| {
                let mut statement = conn.prepare(
                    "SELECT a.rider_id, a.order_id FROM assignments a
                     JOIN assignment_replies r ON r.assignment_id = a.id
                     WHERE a.store_id = ?1 AND r.reply = 'accepted'
                       AND a.order_id NOT IN (SELECT order_id FROM handoffs)",
                )?;
                let rows = statement
                    .query_map([&store_id], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<HashMap<String, String>, _>>()?;
                Ok::<_, Error>(rows)
            })
            .await?;
        let mut service = Self {
            config,
            db,
            desk,
            publisher: link.publisher,
            inbox: link.inbox,
            events,
            online,
            broker,
            allowed: HashSet::new(),
            fence: None,
            published: HashMap::new(),
            accepted,
            arrived: HashSet::new(),
            positions: HashMap::new(),
        };
        service.refresh_roster().await?;
        Ok(service)
    }

    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        nudges: Arc<Nudges>,
        shutdown: CancellationToken,
    ) {
        let mut offers = tokio::time::interval(self.config.offer_scan_interval);
        let mut positions = tokio::time::interval(self.config.position_interval);
        let mut roster = tokio::time::interval(self.config.roster_refresh);
        for tick in [&mut offers, &mut positions, &mut roster] {
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(message) = self.inbox.recv() => self.inbound(message).await,
                Some(command) = commands.recv() => match command {
                    Command::RefreshRoster(done) => {
                        let refreshed = self.refresh_roster().await;
                        self.log(refreshed);
                        let _ = done.send(());
                    }
                },
                () = nudges.scan.notified() => self.scan_assignments().await,
                () = nudges.roster.notified() => {
                    let refreshed = self.refresh_roster().await;
                    self.log(refreshed);
                }
                _ = offers.tick() => self.scan_assignments().await,
                _ = positions.tick() => self.write_positions(),
                _ = roster.tick() => {
                    let refreshed = self.refresh_roster().await;
                    self.log(refreshed);
                }
            }
        }
        // The last positions, written before the daemon closes the database.
        let pending = std::mem::take(&mut self.positions);
        if let Err(error) = write_positions(&self.db, &self.config.store_id, pending).await {
            tracing::error!(%error, "writing the last rider positions");
        }
        tracing::info!("riders service stopped");
    }

    fn log(&self, result: Result<(), Error>) {
        if let Err(error) = result {
            tracing::error!(%error, "riders service");
        }
    }

    fn emit(&self, event: RiderEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    // ---- inbound ----

    async fn inbound(&mut self, message: broker::Inbound) {
        let broker::Inbound {
            topic,
            rider,
            kind,
            payload,
        } = message;
        if !self.allowed.contains(&rider) {
            self.dropped(
                &topic,
                "the rider is not active here, was revoked or is signed off",
            );
            return;
        }
        let command = match codec::decode(kind, &payload) {
            Ok(command) => command,
            Err(malformed) => {
                self.refuse(&rider, kind, "malformed", &malformed.0);
                return;
            }
        };
        match command {
            codec::Command::Reply {
                assignment_id,
                accept,
            } => self.reply(&rider, &assignment_id, accept).await,
            codec::Command::Arrival(fix) => {
                let at_store = self.fence.is_some_and(|f| f.contains(fix.lat, fix.lon));
                if at_store {
                    self.arrived(&rider, true).await;
                } else {
                    let message = match self.fence {
                        Some(fence) => format!(
                            "{:.0} m from the store (geofence {:.0} m)",
                            fence.distance_m(fix.lat, fix.lon),
                            fence.radius_m
                        ),
                        None => "the store's position is not known".to_owned(),
                    };
                    self.refuse(&rider, kind, "not_at_store", &message);
                }
                self.positions.insert(rider, fix);
            }
            codec::Command::Location(fix) => {
                if self.fence.is_some_and(|f| f.contains(fix.lat, fix.lon))
                    && self.accepted.contains_key(&rider)
                    && !self.arrived.contains(&rider)
                {
                    self.arrived(&rider, false).await;
                }
                self.positions.insert(rider, fix);
            }
            codec::Command::Pickup { label_id } => self.pickup(&rider, label_id).await,
            codec::Command::Delivered {
                order_id,
                fix,
                customer_pin,
                photo_ref,
                cash_collected_minor,
            } => {
                self.delivered(
                    &rider,
                    order_id,
                    fix,
                    customer_pin,
                    photo_ref,
                    cash_collected_minor,
                )
                .await;
            }
            codec::Command::Presence { online } => {
                if let Ok(mut set) = self.online.lock() {
                    if online {
                        set.insert(rider.clone());
                    } else {
                        set.remove(&rider);
                    }
                }
                tracing::info!(rider = %rider, online, "rider presence");
                self.emit(RiderEvent::Presence {
                    rider_id: rider,
                    online,
                });
            }
            codec::Command::Ignored => {
                tracing::debug!(%topic, "ignored an OwnTracks message that is not a location");
            }
        }
    }

    fn dropped(&self, topic: &str, reason: &str) {
        tracing::warn!(%topic, reason, "dropped a rider message");
        self.emit(RiderEvent::Dropped {
            topic: topic.to_owned(),
            reason: reason.to_owned(),
        });
    }

    fn refuse(&mut self, rider: &str, kind: Inbound, code: &str, message: &str) {
        tracing::info!(
            rider,
            command = kind.name(),
            code,
            message,
            "refused a rider message"
        );
        let refusal = pb::Refusal {
            command: kind.name().to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
        };
        self.publish(topics::errors(rider), refusal.encode_to_vec(), false);
        self.emit(RiderEvent::Refused {
            rider_id: rider.to_owned(),
            command: kind.name().to_owned(),
            code: code.to_owned(),
        });
    }

    fn ack(&mut self, rider: &str, ack: pb::Ack) {
        self.publish(topics::acks(rider), ack.encode_to_vec(), false);
    }

    // ---- roster and positions ----

    async fn refresh_roster(&mut self) -> Result<(), Error> {
        let store_id = self.config.store_id.clone();
        let (allowed, refused, centre) = self
            .db
            .read(move |conn| {
                // Signed off: a cash hand-in closed the rider's shift here (`work::cash`);
                // treated like a revocation until a lead signs the rider on, but the rider's
                // certificates stay valid.
                let mut statement = conn.prepare_cached(
                    "SELECT id FROM riders WHERE active = 1
                     AND id NOT IN (SELECT rider_id FROM rider_revocations)
                     AND id NOT IN (SELECT rider_id FROM rider_sign_offs)",
                )?;
                let allowed = statement
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<HashSet<String>, _>>()?;
                let mut statement = conn.prepare_cached(
                    "SELECT id FROM riders WHERE active = 0
                     UNION SELECT rider_id FROM rider_revocations
                     UNION SELECT rider_id FROM rider_sign_offs",
                )?;
                let refused = statement
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<HashSet<String>, _>>()?;
                let centre: Option<(f64, f64)> = conn
                    .query_row(
                        "SELECT lat, lon FROM stores WHERE id = ?1",
                        [&store_id],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?;
                Ok::<_, Error>((allowed, refused, centre))
            })
            .await?;
        if centre.is_none() {
            tracing::warn!(store = %self.config.store_id, "the store's position is unknown: no arrival geofence");
        }
        self.fence = centre.map(|(lat, lon)| Geofence {
            lat,
            lon,
            radius_m: self.config.geofence_m,
        });
        let withdrawn: Vec<(String, String)> = self
            .published
            .iter()
            .filter(|(_, rider)| !allowed.contains(*rider))
            .map(|(assignment, rider)| (rider.clone(), assignment.clone()))
            .collect();
        for (rider, assignment) in withdrawn {
            tracing::info!(
                rider,
                assignment,
                "withdrawing the offer of a rider no longer allowed"
            );
            self.withdraw_offer(&rider, &assignment);
        }
        self.accepted.retain(|rider, _| allowed.contains(rider));
        // Revoked here or deactivated by the cloud: the broker refuses their new connections
        // (its tenant check reads `allowed`), and live ones are closed now rather than at the
        // device's next reconnection. Every refresh asks again for every refused rider, so a
        // connection that raced past the check before the set changed is closed at the next
        // refresh at the latest.
        let refused: HashSet<String> = refused
            .into_iter()
            .filter(|rider| !allowed.contains(rider))
            .collect();
        for rider in self.allowed.iter().filter(|r| !allowed.contains(*r)) {
            tracing::info!(
                rider,
                "disconnecting a rider that is revoked, no longer active or signed off"
            );
        }
        // Its presence is no longer heard (its messages are dropped), so it is not counted
        // online until it is allowed and says so again.
        if let Ok(mut online) = self.online.lock() {
            online.retain(|rider| allowed.contains(rider));
        }
        self.broker.set_allowed(allowed.clone(), &refused);
        self.allowed = allowed;
        Ok(())
    }

    fn write_positions(&mut self) {
        if self.positions.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.positions);
        let (db, store_id, events) = (
            self.db.clone(),
            self.config.store_id.clone(),
            self.events.clone(),
        );
        tokio::spawn(async move {
            match write_positions(&db, &store_id, pending).await {
                Ok(count) => {
                    let _ = events.send(RiderEvent::PositionsWritten { count });
                }
                Err(error) => tracing::error!(%error, "writing rider positions"),
            }
        });
    }

    /// Publishes at QoS 1 (devices subscribe at QoS 1); the retained copy covers devices that
    /// subscribe later.
    fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) {
        self.publisher.publish(topic, payload, retain);
    }
}

/// Upserts the latest fix of each rider in one transaction.
async fn write_positions(
    db: &StoreDb,
    store_id: &str,
    pending: HashMap<String, Fix>,
) -> Result<usize, Error> {
    if pending.is_empty() {
        return Ok(0);
    }
    let store_id = store_id.to_owned();
    db.write(move |conn| {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO rider_positions (rider_id, store_id, lat, lon, accuracy_m, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (rider_id) DO UPDATE SET store_id = excluded.store_id,
                lat = excluded.lat, lon = excluded.lon, accuracy_m = excluded.accuracy_m,
                at = excluded.at",
        )?;
        for (rider, fix) in &pending {
            upsert.execute((
                rider,
                &store_id,
                fix.lat,
                fix.lon,
                fix.accuracy_m,
                clock::from_unix_ms(fix.at_ms),
            ))?;
        }
        Ok::<_, Error>(pending.len())
    })
    .await
}
