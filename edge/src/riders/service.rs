//! The riders service: one task that reads what rider devices send the edge and turns it into
//! database rows and order moves, and assignments into offers.
//!
//! One task, so the in-memory state (roster, published offers, accepted assignments, pending
//! positions) needs no locks and every rider message is handled in arrival order. Commands
//! that must be durable (replies, expiries) are written before they are acknowledged; positions
//! are buffered and written in one transaction per interval, latest per rider only, because
//! 500 riders at 1 fix/s would otherwise be 500 commits a second on a Pi's SD card.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flashkart_proto::rider as pb;
use flashkart_sync::StoreDb;
use prost::Message;
use rusqlite::OptionalExtension;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::codec::{self, Fix};
use super::desk::{Delivery, Handoff, OrderDesk};
use super::front::Front;
use super::geofence::Geofence;
use super::hub::{self, EdgeLink, Hub};
use super::topics::{self, Inbound};
use super::{Command, Error, Nudges, RiderEvent, RidersConfig, clock};

/// Unanswered assignments older than this are left alone (bounds the offer scan).
const SCAN_WINDOW_S: i64 = 7 * 24 * 3600;

pub struct Service<D> {
    config: RidersConfig,
    db: StoreDb,
    desk: D,
    hub: Hub,
    inbox: mpsc::Receiver<hub::Inbound>,
    events: broadcast::Sender<RiderEvent>,
    online: Arc<Mutex<BTreeSet<String>>>,
    /// The device-facing listeners, to disconnect riders that are no longer allowed.
    fronts: Vec<Front>,
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
}

enum ReplyOutcome {
    Recorded { order_id: String },
    Refused(&'static str, String),
    Expired,
}

impl<D: OrderDesk> Service<D> {
    pub async fn new(
        config: RidersConfig,
        db: StoreDb,
        desk: D,
        link: EdgeLink,
        events: broadcast::Sender<RiderEvent>,
        online: Arc<Mutex<BTreeSet<String>>>,
        fronts: Vec<Front>,
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
            hub: link.hub,
            inbox: link.messages,
            events,
            online,
            fronts,
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

    async fn inbound(&mut self, message: hub::Inbound) {
        let hub::Inbound {
            topic,
            rider,
            kind,
            payload,
        } = message;
        if !self.allowed.contains(&rider) {
            self.dropped(&topic, "the rider is not active here or was revoked");
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
            } => self.delivered(&rider, order_id, fix, customer_pin).await,
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

    async fn reply(&mut self, rider: &str, assignment_id: &str, accept: bool) {
        let (rider_id, assignment) = (rider.to_owned(), assignment_id.to_owned());
        let written = self
            .db
            .write(move |conn| {
                let found: Option<(String, String, String, Option<String>)> = conn
                    .query_row(
                        "SELECT a.rider_id, a.order_id, a.expires_at, r.reply FROM assignments a
                         LEFT JOIN assignment_replies r ON r.assignment_id = a.id
                         WHERE a.id = ?1",
                        [&assignment],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                    )
                    .optional()?;
                let Some((owner, order_id, expires_at, previous)) = found else {
                    return Ok(ReplyOutcome::Refused(
                        "unknown_assignment",
                        format!("no assignment {assignment}"),
                    ));
                };
                if owner != rider_id {
                    return Ok(ReplyOutcome::Refused(
                        "not_yours",
                        format!("assignment {assignment} is not offered to you"),
                    ));
                }
                if let Some(previous) = previous {
                    return Ok(ReplyOutcome::Refused(
                        "already_answered",
                        format!("assignment {assignment} is already {previous}"),
                    ));
                }
                let now = clock::now();
                let (reply, outcome) = if expires_at <= now {
                    ("expired", ReplyOutcome::Expired)
                } else if accept {
                    ("accepted", ReplyOutcome::Recorded { order_id })
                } else {
                    ("declined", ReplyOutcome::Recorded { order_id })
                };
                conn.execute(
                    "INSERT INTO assignment_replies (assignment_id, store_id, rider_id, reply, at)
                     SELECT id, store_id, rider_id, ?2, ?3 FROM assignments WHERE id = ?1",
                    (&assignment, reply, &now),
                )?;
                Ok::<_, Error>(outcome)
            })
            .await;
        let reply = if accept { "accepted" } else { "declined" };
        match written {
            Ok(ReplyOutcome::Recorded { order_id }) => {
                self.withdraw_offer(rider, assignment_id);
                if accept {
                    self.accepted.insert(rider.to_owned(), order_id.clone());
                    self.arrived.remove(rider);
                }
                tracing::info!(rider, assignment_id, reply, "offer answered");
                self.ack(
                    rider,
                    pb::Ack {
                        command: "replies".into(),
                        assignment_id: assignment_id.to_owned(),
                        order_id,
                        status: reply.into(),
                    },
                );
                self.emit(RiderEvent::Replied {
                    assignment_id: assignment_id.to_owned(),
                    rider_id: rider.to_owned(),
                    reply: reply.into(),
                });
            }
            Ok(ReplyOutcome::Expired) => {
                self.withdraw_offer(rider, assignment_id);
                self.emit(RiderEvent::Replied {
                    assignment_id: assignment_id.to_owned(),
                    rider_id: rider.to_owned(),
                    reply: "expired".into(),
                });
                self.refuse(rider, Inbound::Reply, "expired", "the offer expired");
            }
            Ok(ReplyOutcome::Refused(code, message)) => {
                self.refuse(rider, Inbound::Reply, code, &message);
            }
            Err(error) => {
                tracing::error!(%error, rider, assignment_id, "recording a reply");
                self.refuse(
                    rider,
                    Inbound::Reply,
                    "internal",
                    "not recorded; send again",
                );
            }
        }
    }

    async fn arrived(&mut self, rider: &str, explicit: bool) {
        let order_id = self.accepted.get(rider).cloned().unwrap_or_default();
        self.arrived.insert(rider.to_owned());
        tracing::info!(rider, order_id, explicit, "rider at the store");
        self.ack(
            rider,
            pb::Ack {
                command: "arrival".into(),
                assignment_id: String::new(),
                order_id: order_id.clone(),
                status: "arrived".into(),
            },
        );
        self.emit(RiderEvent::Arrived {
            rider_id: rider.to_owned(),
            order_id,
        });
    }

    async fn pickup(&mut self, rider: &str, label_id: String) {
        let (rider_id, label) = (rider.to_owned(), label_id.clone());
        let order = self
            .db
            .read(move |conn| {
                let order_id: Option<String> = conn
                    .query_row(
                        "SELECT order_id FROM order_progress WHERE label_id = ?1",
                        [&label],
                        |row| row.get(0),
                    )
                    .optional()?;
                let Some(order_id) = order_id else {
                    return Ok::<_, Error>(None);
                };
                let accepted: bool = conn.query_row(
                    "SELECT count(*) > 0 FROM assignments a
                     JOIN assignment_replies r ON r.assignment_id = a.id
                     WHERE a.order_id = ?1 AND a.rider_id = ?2 AND r.reply = 'accepted'",
                    (&order_id, &rider_id),
                    |row| row.get(0),
                )?;
                Ok(Some((order_id, accepted)))
            })
            .await;
        let order_id = match order {
            Ok(Some((order_id, true))) => order_id,
            Ok(Some((order_id, false))) => {
                let message = format!("order {order_id} is not assigned to you");
                self.refuse(rider, Inbound::Pickup, "not_assigned", &message);
                return;
            }
            Ok(None) => {
                let message = format!("no order has label {label_id}");
                self.refuse(rider, Inbound::Pickup, "wrong_label", &message);
                return;
            }
            Err(error) => {
                tracing::error!(%error, rider, "looking up a scanned label");
                self.refuse(rider, Inbound::Pickup, "internal", "scan again");
                return;
            }
        };
        let handoff = Handoff {
            order_id: order_id.clone(),
            rider_id: rider.to_owned(),
            label_id,
            at: clock::now(),
        };
        match self.desk.handoff(handoff).await {
            Ok(()) => {
                self.accepted.remove(rider);
                self.arrived.remove(rider);
                tracing::info!(rider, order_id, "order handed to the rider");
                self.ack(
                    rider,
                    pb::Ack {
                        command: "pickup".into(),
                        assignment_id: String::new(),
                        order_id: order_id.clone(),
                        status: "PICKED_UP".into(),
                    },
                );
                self.emit(RiderEvent::PickedUp {
                    order_id,
                    rider_id: rider.to_owned(),
                });
            }
            Err(refused) => {
                self.refuse(rider, Inbound::Pickup, refused.code(), &refused.to_string());
            }
        }
    }

    async fn delivered(
        &mut self,
        rider: &str,
        order_id: String,
        fix: Option<Fix>,
        customer_pin: Option<String>,
    ) {
        if let Some(fix) = fix {
            self.positions.insert(rider.to_owned(), fix);
        }
        let delivery = Delivery {
            order_id: order_id.clone(),
            rider_id: rider.to_owned(),
            at: fix.map_or_else(clock::now, |f| clock::from_unix_ms(f.at_ms)),
            lat: fix.map(|f| f.lat),
            lon: fix.map(|f| f.lon),
            customer_pin,
        };
        match self.desk.delivered(delivery).await {
            Ok(pin_ok) => {
                tracing::info!(rider, order_id, ?pin_ok, "order delivered");
                self.ack(
                    rider,
                    pb::Ack {
                        command: "delivered".into(),
                        assignment_id: String::new(),
                        order_id: order_id.clone(),
                        status: "DELIVERED".into(),
                    },
                );
                self.emit(RiderEvent::Delivered {
                    order_id,
                    rider_id: rider.to_owned(),
                    pin_ok,
                });
            }
            Err(refused) => {
                self.refuse(
                    rider,
                    Inbound::Delivered,
                    refused.code(),
                    &refused.to_string(),
                );
            }
        }
    }

    // ---- offers ----

    /// Publishes offers for unanswered assignments not yet published by this run (so after a
    /// restart every open offer is published again), and expires overdue ones.
    async fn scan_assignments(&mut self) {
        let store_id = self.config.store_id.clone();
        let open = self
            .db
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT a.id, a.order_id, a.rider_id, a.expires_at,
                            coalesce(o.lat, 0), coalesce(o.lon, 0),
                            coalesce(o.address, ''), coalesce(o.customer_first_name, '')
                     FROM assignments a
                     LEFT JOIN assignment_replies r ON r.assignment_id = a.id
                     LEFT JOIN orders o ON o.id = a.order_id
                     WHERE a.store_id = ?1 AND a.expires_at >= ?2 AND r.assignment_id IS NULL",
                )?;
                let rows = statement
                    .query_map(
                        (&store_id, clock::seconds_from_now(-SCAN_WINDOW_S)),
                        |row| {
                            Ok(Open {
                                assignment_id: row.get(0)?,
                                order_id: row.get(1)?,
                                rider_id: row.get(2)?,
                                expires_at: row.get(3)?,
                                drop_lat: row.get(4)?,
                                drop_lon: row.get(5)?,
                                address: row.get(6)?,
                                customer: row.get(7)?,
                            })
                        },
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, Error>(rows)
            })
            .await;
        let open = match open {
            Ok(open) => open,
            Err(error) => {
                tracing::error!(%error, "scanning assignments");
                return;
            }
        };
        let now = clock::now();
        let (overdue, current): (Vec<Open>, Vec<Open>) =
            open.into_iter().partition(|o| o.expires_at <= now);
        if !overdue.is_empty() {
            self.expire(overdue).await;
        }
        for offer in current {
            let allowed = self.allowed.contains(&offer.rider_id);
            if allowed && !self.published.contains_key(&offer.assignment_id) {
                self.publish_offer(offer);
            }
        }
    }

    fn publish_offer(&mut self, offer: Open) {
        let store = self.fence.map(|f| pb::Position {
            lat: f.lat,
            lon: f.lon,
            accuracy_m: None,
            at_ms: 0,
        });
        let message = pb::Offer {
            assignment_id: offer.assignment_id.clone(),
            order_id: offer.order_id,
            store_id: self.config.store_id.clone(),
            store,
            drop: Some(pb::Position {
                lat: offer.drop_lat,
                lon: offer.drop_lon,
                accuracy_m: None,
                at_ms: 0,
            }),
            address: offer.address,
            customer_first_name: offer.customer,
            expires_at: offer.expires_at,
            sent_at_ms: clock::now_ms(),
        };
        let topic = topics::offer(&offer.rider_id, &offer.assignment_id);
        self.publish(topic, message.encode_to_vec(), true);
        tracing::info!(rider = %offer.rider_id, assignment = %offer.assignment_id, "offer published");
        self.published
            .insert(offer.assignment_id.clone(), offer.rider_id.clone());
        self.emit(RiderEvent::Offered {
            assignment_id: offer.assignment_id,
            rider_id: offer.rider_id,
        });
    }

    /// Unanswered offers past their expiry count as declined: `expired` replies.
    async fn expire(&mut self, overdue: Vec<Open>) {
        let ids: Vec<String> = overdue.iter().map(|o| o.assignment_id.clone()).collect();
        let written = self
            .db
            .write(move |conn| {
                let now = clock::now();
                let mut expired = Vec::new();
                for id in ids {
                    let inserted = conn.execute(
                        "INSERT INTO assignment_replies (assignment_id, store_id, rider_id, reply, at)
                         SELECT id, store_id, rider_id, 'expired', ?2 FROM assignments WHERE id = ?1
                         ON CONFLICT (assignment_id) DO NOTHING",
                        (&id, &now),
                    )?;
                    if inserted > 0 {
                        expired.push(id);
                    }
                }
                Ok::<_, Error>(expired)
            })
            .await;
        let expired: HashSet<String> = match written {
            Ok(expired) => expired.into_iter().collect(),
            Err(error) => {
                tracing::error!(%error, "expiring offers");
                return;
            }
        };
        for offer in overdue
            .into_iter()
            .filter(|o| expired.contains(&o.assignment_id))
        {
            tracing::info!(rider = %offer.rider_id, assignment = %offer.assignment_id, "offer expired");
            self.withdraw_offer(&offer.rider_id, &offer.assignment_id);
            self.emit(RiderEvent::Replied {
                assignment_id: offer.assignment_id,
                rider_id: offer.rider_id,
                reply: "expired".into(),
            });
        }
    }

    /// Clears the retained offer (an empty retained payload); devices drop it.
    fn withdraw_offer(&mut self, rider: &str, assignment_id: &str) {
        self.published.remove(assignment_id);
        self.publish(topics::offer(rider, assignment_id), Vec::new(), true);
    }

    // ---- roster and positions ----

    async fn refresh_roster(&mut self) -> Result<(), Error> {
        let store_id = self.config.store_id.clone();
        let (allowed, centre) = self
            .db
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT id FROM riders WHERE active = 1
                     AND id NOT IN (SELECT rider_id FROM rider_revocations)",
                )?;
                let allowed = statement
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<HashSet<String>, _>>()?;
                let centre: Option<(f64, f64)> = conn
                    .query_row(
                        "SELECT lat, lon FROM stores WHERE id = ?1",
                        [&store_id],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?;
                Ok::<_, Error>((allowed, centre))
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
                "withdrawing the offer of a revoked rider"
            );
            self.withdraw_offer(&rider, &assignment);
        }
        self.accepted.retain(|rider, _| allowed.contains(rider));
        // Revoked here or deactivated by the cloud: the front refuses their new connections;
        // live ones end now rather than at the device's next reconnection.
        for front in &self.fronts {
            for rider in front.disconnect_all_but(&allowed) {
                tracing::info!(
                    rider,
                    "disconnected a rider that is revoked or no longer active"
                );
            }
        }
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
        self.hub
            .publish_from_edge(&topic, Bytes::from(payload), retain);
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
