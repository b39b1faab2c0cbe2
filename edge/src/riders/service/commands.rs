//! What riders send the edge: replies to offers, arrival, pickup and delivery.
//!
//! Why apart from the loop: each command is checked against who the broker authenticated and
//! what the rider holds, moved through the order desk, then acknowledged or refused; that is
//! most of the service's rules, and none of it is about the loop or the roster.

use flashkart_proto::rider as pb;
use rusqlite::OptionalExtension;

use super::{ReplyOutcome, Service};
use crate::riders::codec::Fix;
use crate::riders::desk::{Delivery, Handoff, OrderDesk};
use crate::riders::topics::Inbound;
use crate::riders::{Error, RiderEvent, clock};

impl<D: OrderDesk> Service<D> {
    pub(super) async fn reply(&mut self, rider: &str, assignment_id: &str, accept: bool) {
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
                // The same answer again (a phone resending its QoS 1 accept after a drop):
                // recorded once, acknowledged again.
                let asked = if accept { "accepted" } else { "declined" };
                if previous.as_deref() == Some(asked) {
                    return Ok(ReplyOutcome::Repeated { order_id });
                }
                if let Some(previous) = previous {
                    return Ok(ReplyOutcome::Refused(
                        "already_answered",
                        format!("assignment {assignment} is already {previous}"),
                    ));
                }
                let now = clock::now();
                // One rider per order. The cloud cascades an offer it saw expire to the next
                // rider, and an acceptance recorded here just in time may reach it only
                // after that: the later acceptance is the one refused, here, where both land.
                if accept && expires_at > now {
                    let taken: Option<String> = conn
                        .query_row(
                            "SELECT a.rider_id FROM assignments a
                             JOIN assignment_replies r ON r.assignment_id = a.id
                             WHERE a.order_id = ?1 AND a.id <> ?2 AND r.reply = 'accepted'",
                            [&order_id, &assignment],
                            |row| row.get(0),
                        )
                        .optional()?;
                    if taken.is_some() {
                        return Ok(ReplyOutcome::Refused(
                            "taken",
                            format!("order {order_id} is already taken by another rider"),
                        ));
                    }
                }
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
            Ok(ReplyOutcome::Repeated { order_id }) => {
                tracing::info!(
                    rider,
                    assignment_id,
                    reply,
                    "the same answer again: acknowledged"
                );
                self.ack(
                    rider,
                    pb::Ack {
                        command: "replies".into(),
                        assignment_id: assignment_id.to_owned(),
                        order_id,
                        status: reply.into(),
                    },
                );
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
                if code == "taken" {
                    // Off the phone too; the scan does not publish it again.
                    self.withdraw_offer(rider, assignment_id);
                }
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

    pub(super) async fn arrived(&mut self, rider: &str, explicit: bool) {
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

    pub(super) async fn pickup(&mut self, rider: &str, label_id: String) {
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

    pub(super) async fn delivered(
        &mut self,
        rider: &str,
        order_id: String,
        fix: Option<Fix>,
        customer_pin: Option<String>,
        photo_ref: Option<String>,
        cash_collected_minor: Option<i64>,
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
            photo_ref,
            cash_collected_minor,
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
}
