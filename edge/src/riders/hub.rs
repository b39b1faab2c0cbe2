//! The broker's routing: who is subscribed to what, the retained offers, and the edge's own
//! inbound queue.
//!
//! Why it is this small: every rider device is confined to `/tenants/<rider id>/` and the edge
//! is the only reader of what devices publish and the only writer of what they receive, so
//! routing is a lookup by rider, not a general topic tree. Subscriptions are indexed by the
//! rider id their filter names (a device's filters always do; only loopback clients may hold
//! filters that span riders), so a location from one of 500 riders is matched against that
//! rider's filters and the edge's, not against everyone's. What the hub holds is bounded by
//! what is live: a session's subscriptions go with its connection, a retained message is kept
//! only for the edge's open offers (removed when the offer is answered or expires), and each
//! connection's queue has a fixed length. There is no log of past messages: the store
//! database is the source of truth, and offers are re-published from it after a restart.
//!
//! The state sits behind one synchronous mutex that is never held across an await; delivering
//! to a connection is a `try_send` on its bounded queue. Messages for the edge go through a
//! bounded queue too, with `send().await` outside the lock, so a busy edge slows the devices'
//! connections down (TCP back-pressure) instead of dropping their commands.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::mqtt::{self, QoS};
use super::topics;

/// A message on its way to a connection or to the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    /// Set on retained messages sent because of a new subscription, not on live ones.
    pub retain: bool,
}

/// A device message the riders service reads: its topic is one of the rider-to-edge leaves
/// ([`topics::parse`]), already split into the rider and the kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub topic: Arc<str>,
    pub rider: String,
    pub kind: topics::Inbound,
    pub payload: Bytes,
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    pub sessions: usize,
    pub retained: usize,
    /// QoS 0 messages not delivered because a connection's queue was full.
    pub dropped: u64,
    /// Connections cut because their queue was full with a QoS 1 message to deliver.
    pub overflowed: u64,
}

/// The routing table, shared by the front's connections and the riders service.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Mutex<State>>,
    edge: mpsc::Sender<Inbound>,
    max_sessions: usize,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<u64, Session>,
    /// Sessions with a filter under `/tenants/<rider id>/`, by rider id.
    by_rider: HashMap<String, HashSet<u64>>,
    /// Sessions with a filter that is not under one rider (loopback clients only).
    broad: HashSet<u64>,
    /// Retained messages by rider id ("" for topics outside `/tenants/<id>/`), then topic.
    retained: HashMap<String, BTreeMap<Arc<str>, Bytes>>,
    dropped: u64,
    overflowed: u64,
}

#[derive(Debug)]
struct Session {
    queue: mpsc::Sender<Message>,
    filters: Vec<(String, QoS)>,
    /// Cancelled to close the connection when its queue overflows.
    cut: CancellationToken,
}

/// The edge's end of the hub: every device message on a topic the edge reads, and the hub to
/// publish offers, acks and errors to.
#[derive(Debug)]
pub struct EdgeLink {
    pub hub: Hub,
    pub messages: mpsc::Receiver<Inbound>,
}

/// The rider id a topic or filter is confined to, when its first levels are
/// `/tenants/<rider id>/` with a literal id.
fn rider_of(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(topics::ROOT)?;
    let (rider, _) = rest.split_once('/')?;
    topics::is_rider_id(rider).then_some(rider)
}

impl Hub {
    /// A hub for at most `max_sessions` connections whose edge queue holds `edge_queue`
    /// messages.
    pub fn new(max_sessions: usize, edge_queue: usize) -> (Self, EdgeLink) {
        let (edge, messages) = mpsc::channel(edge_queue.max(1));
        let hub = Self {
            inner: Arc::new(Mutex::new(State::default())),
            edge,
            max_sessions,
        };
        let link = EdgeLink {
            hub: hub.clone(),
            messages,
        };
        (hub, link)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the routing table is still
        // consistent (every change is a single insert or remove), so keep serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection with its delivery queue; false when the hub is full.
    pub fn open(&self, id: u64, queue: mpsc::Sender<Message>, cut: CancellationToken) -> bool {
        let mut state = self.state();
        if state.sessions.len() >= self.max_sessions {
            return false;
        }
        state.sessions.insert(
            id,
            Session {
                queue,
                filters: Vec::new(),
                cut,
            },
        );
        true
    }

    /// Forgets a connection and its subscriptions.
    pub fn close(&self, id: u64) {
        let mut state = self.state();
        if let Some(session) = state.sessions.remove(&id) {
            for (filter, _) in &session.filters {
                state.unindex(id, filter);
            }
        }
    }

    /// Adds (or replaces the QoS of) a connection's subscriptions and returns the QoS granted
    /// for each (at most 1) and the retained messages they match, to be sent after SUBACK.
    pub fn subscribe(&self, id: u64, filters: &[(String, QoS)]) -> (Vec<QoS>, Vec<Message>) {
        let mut state = self.state();
        let mut granted = Vec::with_capacity(filters.len());
        let mut retained = Vec::new();
        for (filter, asked) in filters {
            let qos = (*asked).min(QoS::AtLeastOnce);
            granted.push(qos);
            let Some(session) = state.sessions.get_mut(&id) else {
                continue;
            };
            match session.filters.iter_mut().find(|(f, _)| f == filter) {
                Some(existing) => existing.1 = qos,
                None => session.filters.push((filter.clone(), qos)),
            }
            match rider_of(filter) {
                Some(rider) => {
                    state
                        .by_rider
                        .entry(rider.to_owned())
                        .or_default()
                        .insert(id);
                }
                None => {
                    state.broad.insert(id);
                }
            }
            let scopes: Vec<&BTreeMap<Arc<str>, Bytes>> = match rider_of(filter) {
                Some(rider) => state.retained.get(rider).into_iter().collect(),
                None => state.retained.values().collect(),
            };
            for scope in scopes {
                for (topic, payload) in scope {
                    if mqtt::matches(filter, topic) {
                        retained.push(Message {
                            topic: topic.clone(),
                            payload: payload.clone(),
                            qos,
                            retain: true,
                        });
                    }
                }
            }
        }
        (granted, retained)
    }

    /// Removes a connection's subscriptions to `filters`.
    pub fn unsubscribe(&self, id: u64, filters: &[String]) {
        let mut state = self.state();
        let Some(session) = state.sessions.get_mut(&id) else {
            return;
        };
        session.filters.retain(|(f, _)| !filters.contains(f));
        for filter in filters {
            state.unindex(id, filter);
        }
    }

    /// Delivers a device's (or a loopback client's) message: to the edge if it is one the edge
    /// reads (waiting for room in the edge's queue), and to every matching subscription.
    /// Nothing a client publishes is retained. Returns false once the edge has stopped.
    pub async fn publish_from_client(&self, topic: &str, payload: Bytes, qos: QoS) -> bool {
        let topic: Arc<str> = Arc::from(topic);
        self.deliver(&topic, &payload, qos);
        let Some((rider, kind)) = topics::parse(&topic) else {
            return true;
        };
        let message = Inbound {
            rider: rider.to_owned(),
            kind,
            topic: topic.clone(),
            payload,
        };
        self.edge.send(message).await.is_ok()
    }

    /// Publishes one of the edge's messages (offers, acks, errors) at QoS 1. `retain` keeps it
    /// for later subscribers; an empty retained payload removes the retained message.
    pub fn publish_from_edge(&self, topic: &str, payload: Bytes, retain: bool) {
        let topic: Arc<str> = Arc::from(topic);
        if retain {
            let mut state = self.state();
            let scope = rider_of(&topic).unwrap_or_default().to_owned();
            if payload.is_empty() {
                if let Some(kept) = state.retained.get_mut(&scope) {
                    kept.remove(&topic);
                    if kept.is_empty() {
                        state.retained.remove(&scope);
                    }
                }
            } else {
                state
                    .retained
                    .entry(scope)
                    .or_default()
                    .insert(topic.clone(), payload.clone());
            }
        }
        self.deliver(&topic, &payload, QoS::AtLeastOnce);
    }

    /// Queues a live message on every connection with a matching subscription, once per
    /// connection at the highest QoS of its matching filters (capped by the message's).
    fn deliver(&self, topic: &Arc<str>, payload: &Bytes, qos: QoS) {
        let mut guard = self.state();
        let state = &mut *guard;
        let riders = rider_of(topic).and_then(|rider| state.by_rider.get(rider));
        let targets = state.broad.iter().chain(
            riders
                .into_iter()
                .flatten()
                .filter(|id| !state.broad.contains(id)),
        );
        let (mut dropped, mut overflowed) = (0, 0);
        for id in targets {
            let Some(session) = state.sessions.get(id) else {
                continue;
            };
            let Some(granted) = session
                .filters
                .iter()
                .filter(|(filter, _)| mqtt::matches(filter, topic))
                .map(|(_, granted)| *granted)
                .max()
            else {
                continue;
            };
            let message = Message {
                topic: topic.clone(),
                payload: payload.clone(),
                qos: qos.min(granted),
                retain: false,
            };
            let at_least_once = message.qos != QoS::AtMostOnce;
            match session.queue.try_send(message) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) if at_least_once => {
                    // The connection does not keep up: close it rather than lose the message
                    // silently; the device reconnects and gets its open offers again.
                    tracing::warn!(%topic, "a rider connection's queue is full; closing it");
                    session.cut.cancel();
                    overflowed += 1;
                }
                Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        state.dropped += dropped;
        state.overflowed += overflowed;
    }

    pub fn stats(&self) -> HubStats {
        let state = self.state();
        HubStats {
            sessions: state.sessions.len(),
            retained: state.retained.values().map(BTreeMap::len).sum(),
            dropped: state.dropped,
            overflowed: state.overflowed,
        }
    }
}

impl State {
    /// Drops `id` from the index entry of `filter` unless another of its filters needs it.
    fn unindex(&mut self, id: u64, filter: &str) {
        let remaining = self
            .sessions
            .get(&id)
            .map(|s| &s.filters[..])
            .unwrap_or(&[]);
        match rider_of(filter) {
            Some(rider) => {
                if remaining.iter().any(|(f, _)| rider_of(f) == Some(rider)) {
                    return;
                }
                if let Some(ids) = self.by_rider.get_mut(rider) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.by_rider.remove(rider);
                    }
                }
            }
            None => {
                if !remaining.iter().any(|(f, _)| rider_of(f).is_none()) {
                    self.broad.remove(&id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(hub: &Hub, id: u64, queue: usize) -> (mpsc::Receiver<Message>, CancellationToken) {
        let (tx, rx) = mpsc::channel(queue);
        let cut = CancellationToken::new();
        assert!(hub.open(id, tx, cut.clone()));
        (rx, cut)
    }

    fn topics_of(rx: &mut mpsc::Receiver<Message>) -> Vec<(String, QoS, bool)> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push((m.topic.to_string(), m.qos, m.retain));
        }
        out
    }

    #[tokio::test]
    async fn a_rider_gets_its_own_messages_and_the_edge_reads_the_rest() {
        let (hub, mut link) = Hub::new(4, 8);
        let (mut a, _) = session(&hub, 1, 8);
        let (mut b, _) = session(&hub, 2, 8);
        let (granted, _) = hub.subscribe(1, &[("/tenants/a/edge/#".into(), QoS::ExactlyOnce)]);
        assert_eq!(granted, vec![QoS::AtLeastOnce]);
        hub.subscribe(2, &[("/tenants/b/edge/#".into(), QoS::AtMostOnce)]);
        hub.publish_from_edge("/tenants/a/edge/acks", Bytes::from_static(b"x"), false);
        hub.publish_from_edge("/tenants/b/edge/acks", Bytes::from_static(b"y"), false);
        assert_eq!(
            topics_of(&mut a),
            vec![("/tenants/a/edge/acks".into(), QoS::AtLeastOnce, false)]
        );
        assert_eq!(
            topics_of(&mut b),
            vec![("/tenants/b/edge/acks".into(), QoS::AtMostOnce, false)]
        );
        assert!(
            hub.publish_from_client("/tenants/a/replies", Bytes::new(), QoS::AtLeastOnce)
                .await
        );
        assert!(
            hub.publish_from_client("/tenants/a/notes", Bytes::new(), QoS::AtLeastOnce)
                .await
        );
        let read = link.messages.try_recv().map(|m| (m.rider, m.kind));
        assert_eq!(read, Ok(("a".to_owned(), topics::Inbound::Reply)));
        assert!(
            link.messages.try_recv().is_err(),
            "not a topic the edge reads"
        );
        assert!(topics_of(&mut a).is_empty() && topics_of(&mut b).is_empty());
    }

    #[test]
    fn retained_offers_reach_later_subscribers_until_withdrawn() {
        let (hub, _link) = Hub::new(4, 8);
        hub.publish_from_edge("/tenants/a/edge/offers/1", Bytes::from_static(b"o1"), true);
        hub.publish_from_edge("/tenants/a/edge/offers/2", Bytes::from_static(b"o2"), true);
        hub.publish_from_edge("/tenants/b/edge/offers/3", Bytes::from_static(b"o3"), true);
        assert_eq!(hub.stats().retained, 3);
        let (_a, _) = session(&hub, 1, 8);
        let (_, retained) = hub.subscribe(1, &[("/tenants/a/edge/#".into(), QoS::AtLeastOnce)]);
        let kept: Vec<&str> = retained.iter().map(|m| &*m.topic).collect();
        assert_eq!(
            kept,
            ["/tenants/a/edge/offers/1", "/tenants/a/edge/offers/2"]
        );
        assert!(retained.iter().all(|m| m.retain));
        hub.publish_from_edge("/tenants/a/edge/offers/1", Bytes::new(), true);
        hub.publish_from_edge("/tenants/b/edge/offers/3", Bytes::new(), true);
        assert_eq!(hub.stats().retained, 1);
        let (_, retained) = hub.subscribe(1, &[("/tenants/a/edge/#".into(), QoS::AtLeastOnce)]);
        assert_eq!(retained.len(), 1);
        let (_watcher, _) = session(&hub, 2, 8);
        let (_, everything) = hub.subscribe(2, &[("/tenants/+/edge/#".into(), QoS::AtMostOnce)]);
        assert_eq!(everything.len(), 1);
        assert_eq!(everything[0].qos, QoS::AtMostOnce);
    }

    #[tokio::test]
    async fn closed_sessions_leave_nothing_behind() {
        let (hub, _link) = Hub::new(4, 8);
        let (mut a, _) = session(&hub, 1, 8);
        hub.subscribe(
            1,
            &[
                ("/tenants/a/edge/#".into(), QoS::AtLeastOnce),
                ("/tenants/a/echo".into(), QoS::AtLeastOnce),
                ("#".into(), QoS::AtMostOnce),
            ],
        );
        hub.unsubscribe(1, &["#".into(), "/tenants/a/echo".into()]);
        hub.publish_from_client("/tenants/a/echo", Bytes::new(), QoS::AtLeastOnce)
            .await;
        hub.publish_from_client("elsewhere", Bytes::new(), QoS::AtLeastOnce)
            .await;
        assert!(topics_of(&mut a).is_empty());
        hub.publish_from_edge("/tenants/a/edge/acks", Bytes::new(), false);
        assert_eq!(topics_of(&mut a).len(), 1);
        hub.close(1);
        let state = hub.state();
        assert!(state.sessions.is_empty() && state.by_rider.is_empty() && state.broad.is_empty());
    }

    #[test]
    fn a_full_queue_drops_qos0_and_cuts_the_connection_for_qos1() {
        let (hub, _link) = Hub::new(4, 8);
        let (_slow, cut) = session(&hub, 1, 1);
        hub.subscribe(1, &[("#".into(), QoS::AtLeastOnce)]);
        hub.deliver(&Arc::from("a"), &Bytes::new(), QoS::AtMostOnce);
        hub.deliver(&Arc::from("a"), &Bytes::new(), QoS::AtMostOnce);
        assert_eq!(hub.stats().dropped, 1);
        assert!(!cut.is_cancelled());
        hub.publish_from_edge("/tenants/a/edge/acks", Bytes::new(), false);
        assert!(cut.is_cancelled());
        assert_eq!(hub.stats().overflowed, 1);
    }
}
