//! Offers going out: publishing unanswered assignments to their riders, expiring overdue
//! ones, withdrawing answered ones.
//!
//! Why apart from the loop: an offer is a retained message whose life (published once per run,
//! expired as `declined`, cleared when answered) is its own small protocol.

use std::collections::HashSet;

use flashkart_proto::rider as pb;
use prost::Message;

use super::{Open, SCAN_WINDOW_S, Service};
use crate::riders::desk::OrderDesk;
use crate::riders::topics;
use crate::riders::{Error, RiderEvent, clock};

impl<D: OrderDesk> Service<D> {
    /// Publishes offers for unanswered assignments not yet published by this run (so after a
    /// restart every open offer is published again), and expires overdue ones. An offer of an
    /// order another rider has taken is neither: the cloud withdraws it once it hears of the
    /// acceptance.
    pub(super) async fn scan_assignments(&mut self) {
        let store_id = self.config.store_id.clone();
        let open = self
            .db
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT a.id, a.order_id, a.rider_id, a.expires_at,
                            coalesce(o.lat, 0), coalesce(o.lon, 0),
                            coalesce(o.address, ''), coalesce(o.customer_first_name, ''),
                            CASE WHEN o.payment_method = 'cash' THEN o.cash_due_minor ELSE 0 END,
                            coalesce(o.currency, '')
                     FROM assignments a
                     LEFT JOIN assignment_replies r ON r.assignment_id = a.id
                     LEFT JOIN orders o ON o.id = a.order_id
                     WHERE a.store_id = ?1 AND a.expires_at >= ?2 AND r.assignment_id IS NULL
                       AND NOT EXISTS (SELECT 1 FROM assignments t
                                       JOIN assignment_replies tr ON tr.assignment_id = t.id
                                       WHERE t.order_id = a.order_id AND tr.reply = 'accepted')",
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
                                cash_due_minor: row.get::<_, Option<i64>>(8)?.unwrap_or(0),
                                currency: row.get(9)?,
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

    pub(super) fn publish_offer(&mut self, offer: Open) {
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
            cash_due_minor: offer.cash_due_minor,
            currency: offer.currency,
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
    pub(super) async fn expire(&mut self, overdue: Vec<Open>) {
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
    pub(super) fn withdraw_offer(&mut self, rider: &str, assignment_id: &str) {
        self.published.remove(assignment_id);
        self.publish(topics::offer(rider, assignment_id), Vec::new(), true);
    }
}
