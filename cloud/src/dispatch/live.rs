//! The dispatcher on live data: every tick, the read model's open orders and online riders go
//! through [`Dispatcher::tick`](crate::dispatch::Dispatcher::tick), and its offers are written
//! as `assignments` rows into the store's replica, which the store relays to the rider over
//! MQTT.
//!
//! A rider can only hear offers from the store whose broker the phone is connected to (the
//! store its latest position came through), so each store has its own dispatcher over the
//! riders at that store; HQ's roster adds vehicle, capacity, rating and shift (customers'
//! ratings replace the roster's rating once there are enough, `hq/ratings.rs`). Answers come
//! back as `assignment_replies` rows through the read model: an acceptance takes the orders out
//! of the pool, a decline or an expiry bars that rider from them and the next tick cascades to
//! the next best, and a rider whose positions stop coming is treated as offline (their pending
//! offer is withdrawn and re-planned). The store takes the first acceptance of an order and
//! refuses later ones, so an acceptance recorded there in time stands even when it reaches the
//! cloud after the cloud expired its offer and cascaded: the cascaded offer is withdrawn. Orders are planned from ACCEPTED on, with a ready time
//! estimated from their status, so a rider can be on the way while the bag is packed.
//!
//! The dispatcher's state survives a restart: its pending offers and refusals are rows in the
//! read model (`durable`), written before the book in memory changes, and the book is rebuilt
//! from them before the first tick. An offer still running after a restart stays pending (the
//! rider's accept is honoured), one that ran out meanwhile expires and cascades at the first
//! tick, and refusals stand. The rest is derived from the read model: replies count while their
//! offer is pending (so each is handled once, with no cursor), and a rider is busy while an
//! order they accepted is unfinished. Times in rows are wall-clock (`crate::clock`); the
//! planner's minutes are counted from this process's start, converted both ways by
//! `Minutes`.
//!
//! With several instances (PostgreSQL and store leases) the rows are shared, and a store's book
//! is kept only by the instance holding its lease: a store's saved offers and refusals are
//! loaded when this instance gains it (at the first tick it is among the leases held, as a
//! restart would), and a store it lost leaves its books with its rows untouched, for the new
//! holder to carry on from. Replies, expiries and withdrawals are handled for held stores
//! only. Without leases there is one instance, and every store's book is restored at the
//! first tick.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::config::DispatchSettings;
use crate::dispatch::durable::{Closed, NewOffer, Rows};
use crate::dispatch::offers::Offer;
use crate::dispatch::{
    DispatchConfig, Dispatcher, Haversine, Order, OrderId, Point, Rider, RiderId, StoreId, Vehicle,
};
use crate::hq::Hq;
use crate::leases::Leases;
use crate::metrics::{DispatchReplyLabels, Metrics, StoreLabels};
use crate::projection::{Backend, Projection};
use crate::store_writes::{StoreWrite, StoreWrites};

/// Stable small ids for the dispatcher's string keys.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }

    fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }
}

/// The planner's clock: minutes since `epoch` (this process's start), so that the pure core's
/// `f64` minutes stay small while the rows hold wall-clock times that outlive the process.
#[derive(Debug, Clone, Copy)]
struct Minutes {
    epoch: OffsetDateTime,
}

impl Minutes {
    fn of(self, at: OffsetDateTime) -> f64 {
        (at - self.epoch).as_seconds_f64() / 60.0
    }

    fn now(self) -> f64 {
        self.of(crate::clock::now())
    }

    /// A stored timestamp in minutes; `None` for one that is not RFC 3339.
    fn parse(self, text: &str) -> Option<f64> {
        crate::clock::parse(text).map(|at| self.of(at))
    }

    fn wall(self, minutes: f64) -> OffsetDateTime {
        self.epoch + time::Duration::seconds_f64(minutes * 60.0)
    }
}

/// An open order as the read model has it.
struct OpenOrder {
    id: String,
    store_id: String,
    status: String,
    placed_at: String,
    lat: f64,
    lon: f64,
}

/// The live dispatch loop.
#[derive(Debug)]
pub struct LiveDispatch {
    settings: DispatchSettings,
    hq: Hq,
    projection: Projection,
    /// Offers go to the store's replica through these.
    writes: Arc<StoreWrites>,
    metrics: Arc<Metrics>,
    /// With several instances: a store's offers are made only by the holder of its lease.
    leases: Option<Arc<Leases>>,
    /// The dispatcher's own rows (`durable`) on the read model's engine.
    rows: Rows,
    dispatchers: BTreeMap<String, Dispatcher<Haversine>>,
    riders: Interner,
    orders: Interner,
    clock: Minutes,
    /// Without leases: whether the offer books were rebuilt from their rows (before the first
    /// tick).
    restored: bool,
    /// With leases: the stores whose books were loaded from their rows, at the lease epoch
    /// they were loaded under. A store held at another epoch changed hands meanwhile, and its
    /// rows may have changed with it.
    booked: BTreeMap<String, i64>,
    /// Riders online at the last tick, by store.
    online: BTreeMap<String, BTreeSet<String>>,
    /// Open orders at the last tick.
    open: BTreeSet<String>,
}

impl LiveDispatch {
    pub fn new(
        settings: DispatchSettings,
        hq: Hq,
        projection: Projection,
        writes: Arc<StoreWrites>,
        metrics: Arc<Metrics>,
        leases: Option<Arc<Leases>>,
    ) -> Self {
        let rows = Rows::new(projection.backend().clone());
        Self {
            settings,
            hq,
            projection,
            writes,
            metrics,
            leases,
            rows,
            dispatchers: BTreeMap::new(),
            riders: Interner::default(),
            orders: Interner::default(),
            clock: Minutes {
                epoch: crate::clock::now(),
            },
            restored: false,
            booked: BTreeMap::new(),
            online: BTreeMap::new(),
            open: BTreeSet::new(),
        }
    }

    /// Ticks until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticker =
            tokio::time::interval(Duration::from_millis(self.settings.tick_ms.max(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "dispatch tick failed");
            }
        }
    }

    fn dispatch_config(&self) -> DispatchConfig {
        DispatchConfig {
            offer_timeout: self.settings.offer_timeout_s / 60.0,
            ..DispatchConfig::default()
        }
    }

    /// The store's dispatcher, created on first use.
    fn dispatcher(&mut self, store_id: &str) -> &mut Dispatcher<Haversine> {
        let config = self.dispatch_config();
        let speed = self.settings.rider_speed_kmh * 1000.0 / 60.0;
        self.dispatchers
            .entry(store_id.to_owned())
            .or_insert_with(|| {
                Dispatcher::new(
                    config,
                    Haversine {
                        metres_per_minute: speed,
                    },
                )
            })
    }

    /// Rebuilds the offer books of every store, or of `stores` only, from their rows. Offers
    /// that ran out while the cloud was down (or while another instance held the store) stay
    /// in the book for now: the tick takes the answers the stores recorded in time, then
    /// expires the rest (and cascades them).
    async fn restore(&mut self, stores: Option<&BTreeSet<String>>) -> Result<(), CloudError> {
        let saved = self.rows.load(stores).await?;
        let (pending, refusals) = (saved.pending.len(), saved.refusals.len());
        let mut offers: BTreeMap<(String, String), Offer> = BTreeMap::new();
        for row in saved.pending {
            let rider = RiderId(self.riders.id(&row.rider_id));
            let order = OrderId(self.orders.id(&row.order_id));
            // Our own timestamps; one that does not parse makes the offer expire at once.
            let offered_at = self.clock.parse(&row.offered_at).unwrap_or(f64::MIN);
            let expires_at = self.clock.parse(&row.expires_at).unwrap_or(f64::MIN);
            // Not marked online: right after a start the read model's positions may be older
            // than the riders' phones, and an offer must not be withdrawn for that.
            self.open.insert(row.order_id.clone());
            offers
                .entry((row.store_id, row.rider_id))
                .or_insert_with(|| Offer {
                    rider,
                    orders: Vec::new(),
                    offered_at,
                    expires_at,
                })
                .orders
                .push(order);
        }
        for ((store_id, _), offer) in offers {
            self.dispatcher(&store_id).restore_offer(offer);
        }
        for refusal in saved.refusals {
            let rider = RiderId(self.riders.id(&refusal.rider_id));
            let order = OrderId(self.orders.id(&refusal.order_id));
            // Orders finished while the cloud was down are forgotten at the first tick.
            self.open.insert(refusal.order_id);
            self.dispatcher(&refusal.store_id)
                .restore_refusal(rider, order);
        }
        self.publish_pending();
        match stores {
            None => tracing::info!(pending, refusals, "dispatch state restored"),
            Some(stores) => {
                tracing::info!(
                    pending,
                    refusals,
                    ?stores,
                    "dispatch state of stores taken over"
                );
            }
        }
        Ok(())
    }

    /// Brings the books in line with the leases held (`held`, `None` without leases): restores
    /// every book once without leases; with them loads the books of stores gained and drops
    /// those of stores lost, whose rows are the new holder's now.
    async fn follow_leases(
        &mut self,
        held: Option<&HashMap<String, i64>>,
    ) -> Result<(), CloudError> {
        let Some(held) = held else {
            if !self.restored {
                self.restore(None).await?;
                self.restored = true;
            }
            return Ok(());
        };
        let (lost, gained) = lease_changes(&self.booked, held);
        for store_id in lost {
            self.booked.remove(&store_id);
            if let Some(dispatcher) = self.dispatchers.remove(&store_id) {
                let pending = dispatcher.offers().pending_offers().count();
                tracing::info!(
                    store = store_id,
                    pending,
                    "store's lease lost; its offers are left to the new holder"
                );
            }
            self.metrics
                .dispatch_offers_pending
                .get_or_create(&StoreLabels { store: store_id })
                .set(0);
        }
        if gained.is_empty() {
            return Ok(());
        }
        let stores: BTreeSet<String> = gained.keys().cloned().collect();
        // Whatever this instance kept of them from an earlier holding is stale.
        for store_id in &stores {
            self.dispatchers.remove(store_id);
        }
        self.restore(Some(&stores)).await?;
        self.booked.extend(gained);
        Ok(())
    }

    /// Whether this instance keeps `store_id`'s book: always without leases, else while it
    /// holds the store's lease (as of this tick).
    fn serves(&self, store_id: &str) -> bool {
        self.leases.is_none() || self.booked.contains_key(store_id)
    }

    /// One tick: replies, expiries, riders, orders, plan, offers.
    pub async fn tick(&mut self) -> Result<usize, CloudError> {
        // One view of the leases for the whole tick: the books follow it before anything
        // reads them, and the stores planned below are the ones whose books were loaded.
        let leased = self.leases.as_ref().map(|leases| leases.held());
        self.follow_leases(leased.as_ref()).await?;
        let now = self.clock.now();
        self.handle_replies().await?;
        self.expire(now).await?;
        let taken: Vec<(String, String)> = self
            .rows
            .taken_elsewhere()
            .await?
            .into_iter()
            .filter(|(store, _)| self.serves(store))
            .collect();
        self.withdraw(&taken, "order taken by another rider; offer withdrawn")
            .await?;

        let roster = self.hq.riders().await?;
        let stale = crate::clock::rfc3339(
            crate::clock::now() - time::Duration::seconds(self.settings.rider_stale_s as i64),
        );
        let positions = self.positions(stale).await?;
        let (open_orders, held) = self.open_orders().await?;
        // Customers' ratings take over from the roster's once a rider has enough of them
        // (`hq::ratings::effective_rating`): one bounded query a tick, for the riders online.
        let around: Vec<&crate::hq::RosterRider> = roster
            .iter()
            .filter(|r| !open_orders.is_empty() && positions.contains_key(&r.id))
            .collect();
        let ratings = self
            .hq
            .effective_ratings(&around)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "riders' ratings unread; the roster's stand");
                HashMap::new()
            });

        // Riders who went offline since the last tick: their pending offers are re-planned.
        let mut online: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (rider, (store, _, _)) in &positions {
            online
                .entry(store.clone())
                .or_default()
                .insert(rider.clone());
        }
        let mut gone_riders: Vec<(String, String)> = Vec::new();
        for (store, riders) in &self.online {
            for rider in riders {
                if !online
                    .get(store)
                    .is_some_and(|now_online| now_online.contains(rider))
                {
                    gone_riders.push((store.clone(), rider.clone()));
                }
            }
        }
        self.withdraw(&gone_riders, "rider offline; offer withdrawn")
            .await?;
        self.online = online;

        // Orders that left the pool are finished for the dispatcher.
        let now_open: BTreeSet<String> = open_orders.iter().map(|o| o.id.clone()).collect();
        let gone: Vec<String> = self.open.difference(&now_open).cloned().collect();
        if !gone.is_empty() {
            // With leases, only the refusals at the stores held: every holder sees the same
            // orders leave the pool, and one that gains a store later forgets them then.
            let booked: Option<BTreeSet<String>> = self
                .leases
                .as_ref()
                .map(|_| self.booked.keys().cloned().collect());
            self.rows
                .forget_orders(gone.clone(), booked.as_ref())
                .await?;
            for order in &gone {
                let id = OrderId(self.orders.id(order));
                for dispatcher in self.dispatchers.values_mut() {
                    dispatcher.order_finished(id);
                }
            }
        }
        self.open = now_open;

        let busy = if open_orders.is_empty() {
            HashMap::new()
        } else {
            self.busy().await?
        };
        let now_unix = crate::clock::now().unix_timestamp();
        let store_points: HashMap<String, Point> = self
            .hq
            .stores()
            .iter()
            .map(|s| {
                (
                    s.profile.id.clone(),
                    Point {
                        x: s.profile.lon,
                        y: s.profile.lat,
                    },
                )
            })
            .collect();
        let mut offers_sent = 0;
        let stores: BTreeSet<String> = open_orders.iter().map(|o| o.store_id.clone()).collect();
        for store_id in stores {
            // Another instance serves this store (its replica is the one the store pulls).
            let epoch = match &leased {
                Some(leased) => match leased.get(&store_id) {
                    Some(epoch) => Some(*epoch),
                    None => continue,
                },
                None => None,
            };
            let Some(pickup) = store_points.get(&store_id).copied() else {
                continue;
            };
            let store_key = StoreId(self.orders.id(&format!("store:{store_id}")));
            let riders: Vec<Rider> = roster
                .iter()
                .filter(|r| r.active && r.shift.as_ref().is_none_or(|s| s.is_open(now_unix)))
                .filter_map(|r| {
                    let (store, lat, lon) = positions.get(&r.id)?;
                    (store == &store_id).then(|| Rider {
                        id: RiderId(self.riders.id(&r.id)),
                        vehicle: match r.vehicle.as_str() {
                            "car" => Vehicle::Car,
                            "scooter" => Vehicle::Scooter,
                            _ => Vehicle::Bicycle,
                        },
                        capacity: r.capacity,
                        rating: ratings.get(&r.id).copied().unwrap_or(r.rating),
                        home_store: Some(StoreId(
                            self.orders.id(&format!("store:{}", r.home_store_id)),
                        )),
                        guaranteed_orders_left: 0,
                        shift_end: now + 24.0 * 60.0,
                        position: Point { x: *lon, y: *lat },
                        free_at: busy.get(&r.id).copied().unwrap_or(now).max(now),
                    })
                })
                .collect();
            if riders.is_empty() {
                continue;
            }
            let orders: Vec<Order> = open_orders
                .iter()
                .filter(|o| o.store_id == store_id && !held.contains(&o.id))
                .map(|o| Order {
                    id: OrderId(self.orders.id(&o.id)),
                    store: store_key,
                    pickup,
                    dropoff: Point { x: o.lon, y: o.lat },
                    placed_at: self.clock.parse(&o.placed_at).unwrap_or(now),
                    ready_at: now + ready_in_minutes(&o.status),
                    target_minutes: self.settings.target_minutes,
                })
                .collect();
            if orders.is_empty() {
                continue;
            }
            let plan = self.dispatcher(&store_id).tick(now, &riders, &orders);
            let mut unsent = plan.offers.iter();
            while let Some(assignment) = unsent.next() {
                let rider = self.riders.name(assignment.rider.0).map(str::to_owned);
                let order_ids: Vec<String> = assignment
                    .orders
                    .iter()
                    .filter_map(|o| self.orders.name(o.0).map(str::to_owned))
                    .collect();
                // Interned names, always there; an offer without them is not sent, so not kept.
                let Some(rider) = rider.filter(|_| order_ids.len() == assignment.orders.len())
                else {
                    self.dispatcher(&store_id).rider_offline(assignment.rider);
                    continue;
                };
                if let Err(error) = self.offer(&store_id, &rider, &order_ids, now, epoch).await {
                    // The book holds an offer iff its rows exist: this one and the rest of
                    // the plan were not written, so they leave the book and are re-planned.
                    let dispatcher = self.dispatcher(&store_id);
                    dispatcher.rider_offline(assignment.rider);
                    for rest in unsent {
                        dispatcher.rider_offline(rest.rider);
                    }
                    self.publish_pending();
                    return Err(error);
                }
                offers_sent += order_ids.len();
            }
        }
        self.publish_pending();
        Ok(offers_sent)
    }

    /// Writes one offer: first its rows in the read model (the offer and its pending rows, one
    /// transaction), then one `assignments` row per order of the trip into the store's
    /// replica. In that order, because a crash between the two then leaves an offer the rider
    /// never heard of, which expires; the other way round the rider could accept an offer the
    /// cloud does not know and the order would go to a second rider too. A replica write that
    /// fails takes the read model's rows back.
    ///
    /// With several instances the store's lease is checked first, at the `epoch` this tick
    /// planned under: an instance that lost the store (paused past its lease, say) makes no
    /// offer into a replica the store no longer pulls. The lease can still move between the
    /// check and the write; such an offer is never seen by the store (it pulls from the new
    /// holder) and has expired by the time the lease could come back.
    async fn offer(
        &self,
        store_id: &str,
        rider: &str,
        orders: &[String],
        now: f64,
        epoch: Option<i64>,
    ) -> Result<(), CloudError> {
        if let (Some(leases), Some(epoch)) = (&self.leases, epoch)
            && !leases.still_ours(store_id, epoch).await?
        {
            self.metrics
                .dispatch_fenced
                .get_or_create(&StoreLabels {
                    store: store_id.to_owned(),
                })
                .inc();
            return Err(CloudError::Unavailable(format!(
                "store {store_id} moved to another cloud instance: no offer made here"
            )));
        }
        let offer = NewOffer {
            store_id: store_id.to_owned(),
            rider_id: rider.to_owned(),
            rows: orders
                .iter()
                .map(|order| (uuid::Uuid::now_v7().to_string(), order.clone()))
                .collect(),
            offered_at: crate::clock::rfc3339(self.clock.wall(now)),
            expires_at: crate::clock::rfc3339(
                self.clock.wall(now + self.settings.offer_timeout_s / 60.0),
            ),
        };
        self.rows.record_offer(&offer).await?;
        let writes = sent_writes(&offer);
        let written = self.writes.write(store_id, writes).await;
        if let Err(error) = written {
            let undone = self.rows.unrecord_offer(&offer).await;
            if let Err(undo) = undone {
                // The rows stay, and so does the offer in the book: it expires like an offer
                // the rider never heard of.
                tracing::error!(%undo, %error, store = store_id, rider, "an unsent offer stays recorded");
                return Ok(());
            }
            return Err(error);
        }
        self.metrics
            .dispatch_offers
            .get_or_create(&StoreLabels {
                store: store_id.to_owned(),
            })
            .inc();
        tracing::info!(store = store_id, rider, orders = ?orders, "offered");
        Ok(())
    }

    /// Folds riders' answers to pending offers into the books: the stores' replies, each
    /// handled once (its offer's pending rows go in the same transaction). With leases, the
    /// replies at stores held: the others are their holders' to handle.
    async fn handle_replies(&mut self) -> Result<(), CloudError> {
        let answers = self.rows.answers().await?;
        let mut closed: Vec<(Closed, &'static str)> = Vec::new();
        for answer in answers {
            if !self.serves(&answer.store_id) {
                continue;
            }
            let rider = RiderId(self.riders.id(&answer.rider_id));
            let Some(offer) = self
                .dispatchers
                .get(&answer.store_id)
                .and_then(|d| d.offers().pending(rider))
            else {
                continue;
            };
            let kind = match answer.reply.as_str() {
                "accepted" => "accepted",
                "declined" => "declined",
                _ => "expired",
            };
            let barred = if kind == "accepted" {
                Vec::new()
            } else {
                self.order_names(offer)
            };
            closed.push((
                Closed {
                    store_id: answer.store_id,
                    rider_id: answer.rider_id,
                    barred,
                },
                kind,
            ));
        }
        self.close(closed).await
    }

    /// Ends the offers not answered in time, as declines (the next tick cascades them). The
    /// books are the stores served (with leases, held) only.
    async fn expire(&mut self, now: f64) -> Result<(), CloudError> {
        let mut closed: Vec<(Closed, &'static str)> = Vec::new();
        for (store_id, dispatcher) in &self.dispatchers {
            if !self.serves(store_id) {
                continue;
            }
            for offer in dispatcher.offers().overdue(now) {
                let Some(rider_id) = self.riders.name(offer.rider.0) else {
                    continue;
                };
                closed.push((
                    Closed {
                        store_id: store_id.clone(),
                        rider_id: rider_id.to_owned(),
                        barred: self.order_names(&offer),
                    },
                    "expired",
                ));
            }
        }
        self.close(closed).await
    }

    /// Takes offers out of the books: rows first, then memory, then the counts.
    async fn close(&mut self, closed: Vec<(Closed, &'static str)>) -> Result<(), CloudError> {
        if closed.is_empty() {
            return Ok(());
        }
        let rows: Vec<Closed> = closed.iter().map(|(c, _)| c.clone()).collect();
        self.rows
            .close_offers(rows, crate::clock::now_rfc3339())
            .await?;
        for (offer, answer) in closed {
            let rider = RiderId(self.riders.id(&offer.rider_id));
            let Some(dispatcher) = self.dispatchers.get_mut(&offer.store_id) else {
                continue;
            };
            let ended = match answer {
                "accepted" => dispatcher.accepted(rider).is_ok(),
                _ => dispatcher.decline(rider).is_ok(),
            };
            if !ended {
                continue;
            }
            self.metrics
                .dispatch_replies
                .get_or_create(&DispatchReplyLabels {
                    store: offer.store_id.clone(),
                    answer: answer.to_owned(),
                })
                .inc();
            match answer {
                "accepted" => {
                    tracing::info!(
                        store = offer.store_id,
                        rider = offer.rider_id,
                        "offer accepted"
                    );
                }
                _ => tracing::info!(
                    store = offer.store_id,
                    rider = offer.rider_id,
                    answer,
                    "offer refused; cascading"
                ),
            }
        }
        self.publish_pending();
        Ok(())
    }

    /// Withdraws the pending offers of `(store, rider)`s: riders who went offline, or whose
    /// offer holds an order another rider took. Not refusals: the rider may get the orders
    /// again (once back, or when the trip is re-planned without the taken order).
    async fn withdraw(
        &mut self,
        riders: &[(String, String)],
        why: &'static str,
    ) -> Result<(), CloudError> {
        let withdrawn: Vec<Closed> = riders
            .iter()
            .filter(|(store, rider)| {
                let id = self.riders.ids.get(rider.as_str()).copied();
                self.serves(store)
                    && id.is_some_and(|id| {
                        self.dispatchers
                            .get(store)
                            .is_some_and(|d| d.offers().pending(RiderId(id)).is_some())
                    })
            })
            .map(|(store, rider)| Closed {
                store_id: store.clone(),
                rider_id: rider.clone(),
                barred: Vec::new(),
            })
            .collect();
        if withdrawn.is_empty() {
            return Ok(());
        }
        self.rows
            .close_offers(withdrawn.clone(), crate::clock::now_rfc3339())
            .await?;
        for offer in withdrawn {
            let rider = RiderId(self.riders.id(&offer.rider_id));
            if let Some(dispatcher) = self.dispatchers.get_mut(&offer.store_id) {
                dispatcher.rider_offline(rider);
                tracing::info!(store = offer.store_id, rider = offer.rider_id, "{why}");
            }
        }
        self.publish_pending();
        Ok(())
    }

    fn order_names(&self, offer: &Offer) -> Vec<String> {
        offer
            .orders
            .iter()
            .filter_map(|o| self.orders.name(o.0).map(str::to_owned))
            .collect()
    }

    /// Sets the pending-offers gauge of every store with a dispatcher.
    fn publish_pending(&self) {
        for (store_id, dispatcher) in &self.dispatchers {
            self.metrics
                .dispatch_offers_pending
                .get_or_create(&StoreLabels {
                    store: store_id.clone(),
                })
                .set(
                    i64::try_from(dispatcher.offers().pending_offers().count()).unwrap_or(i64::MAX),
                );
        }
    }

    /// When each rider carrying accepted orders is free again, in planner minutes: half the
    /// target time after their latest acceptance, or as soon as those orders are delivered or
    /// cancelled (then they are not here). Accepted in the last day: no trip takes longer, and
    /// the time bound keeps the query on its index.
    async fn busy(&self) -> Result<HashMap<String, f64>, CloudError> {
        let since = crate::clock::rfc3339(crate::clock::now() - time::Duration::days(1));
        let accepted: Vec<(String, String)> = match self.projection.backend() {
            Backend::Sqlite(db) => {
                db.read(move |conn| -> Result<_, flashkart_sync::Error> {
                    let riders = conn
                        .prepare_cached(
                            "SELECT r.rider_id, max(r.at) FROM rm_replies r
                             JOIN rm_offers f ON f.assignment_id = r.assignment_id
                             JOIN rm_orders o ON o.id = f.order_id
                             WHERE r.at >= ?1 AND r.reply = 'accepted'
                               AND o.status NOT IN ('DELIVERED', 'CLOSED', 'CANCELLED', 'REFUNDED')
                             GROUP BY r.rider_id",
                        )?
                        .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(riders)
                })
                .await?
            }
            // The latest time bytewise, as SQLite compares text.
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query(
                    "SELECT r.rider_id, max(r.at COLLATE \"C\") FROM rm_replies r
                     JOIN rm_offers f ON f.assignment_id = r.assignment_id
                     JOIN rm_orders o ON o.id = f.order_id
                     WHERE r.at >= $1 AND r.reply = 'accepted'
                       AND o.status NOT IN ('DELIVERED', 'CLOSED', 'CANCELLED', 'REFUNDED')
                     GROUP BY r.rider_id",
                    &[&since],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        };
        let trip = self.settings.target_minutes / 2.0;
        Ok(accepted
            .into_iter()
            .filter_map(|(rider, at)| Some((rider, self.clock.parse(&at)? + trip)))
            .collect())
    }

    /// Latest position of every rider seen since `since`: rider -> (store, lat, lon).
    async fn positions(
        &self,
        since: String,
    ) -> Result<HashMap<String, (String, f64, f64)>, CloudError> {
        match self.projection.backend() {
            Backend::Sqlite(db) => Ok(db
                .read(move |conn| -> Result<_, flashkart_sync::Error> {
                    let rows = conn
                        .prepare_cached(
                            "SELECT rider_id, store_id, lat, lon FROM rm_riders WHERE at >= ?1",
                        )?
                        .query_map([since], |r| {
                            Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
                        })?
                        .collect::<Result<_, _>>()?;
                    Ok(rows)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    "SELECT rider_id, store_id, lat, lon FROM rm_riders WHERE at >= $1",
                    &[&since],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
                .collect()),
        }
    }

    /// Orders to plan (not yet taken by a rider), and those held by an offer still running.
    async fn open_orders(&self) -> Result<(Vec<OpenOrder>, BTreeSet<String>), CloudError> {
        let now = crate::clock::now_rfc3339();
        match self.projection.backend() {
            Backend::Sqlite(db) => Ok(db
                .read(move |conn| -> Result<_, flashkart_sync::Error> {
                    let orders = conn
                        .prepare_cached(
                            "SELECT o.id, o.store_id, o.status, o.placed_at, o.lat, o.lon FROM rm_orders o
                             WHERE o.open = 1 AND o.status IN ('ACCEPTED', 'PICKING', 'PACKED', 'READY')
                               AND NOT EXISTS (SELECT 1 FROM rm_offers f JOIN rm_replies r
                                                 ON r.assignment_id = f.assignment_id
                                               WHERE f.order_id = o.id AND r.reply = 'accepted')",
                        )?
                        .query_map([], |r| {
                            Ok(OpenOrder {
                                id: r.get(0)?,
                                store_id: r.get(1)?,
                                status: r.get(2)?,
                                placed_at: r.get(3)?,
                                lat: r.get(4)?,
                                lon: r.get(5)?,
                            })
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    let held = conn
                        .prepare_cached(
                            "SELECT f.order_id FROM rm_offers f
                             LEFT JOIN rm_replies r ON r.assignment_id = f.assignment_id
                             WHERE r.assignment_id IS NULL AND f.expires_at > ?1",
                        )?
                        .query_map([now], |r| r.get(0))?
                        .collect::<Result<BTreeSet<String>, _>>()?;
                    Ok((orders, held))
                })
                .await?),
            Backend::Postgres(pg) => {
                let client = pg.client().await?;
                let orders = client
                    .query(
                        "SELECT o.id, o.store_id, o.status, o.placed_at, o.lat, o.lon FROM rm_orders o
                         WHERE o.open = 1 AND o.status IN ('ACCEPTED', 'PICKING', 'PACKED', 'READY')
                           AND NOT EXISTS (SELECT 1 FROM rm_offers f JOIN rm_replies r
                                             ON r.assignment_id = f.assignment_id
                                           WHERE f.order_id = o.id AND r.reply = 'accepted')",
                        &[],
                    )
                    .await?
                    .iter()
                    .map(|r| OpenOrder {
                        id: r.get(0),
                        store_id: r.get(1),
                        status: r.get(2),
                        placed_at: r.get(3),
                        lat: r.get(4),
                        lon: r.get(5),
                    })
                    .collect();
                let held = client
                    .query(
                        "SELECT f.order_id FROM rm_offers f
                         LEFT JOIN rm_replies r ON r.assignment_id = f.assignment_id
                         WHERE r.assignment_id IS NULL AND f.expires_at > $1",
                        &[&now],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                Ok((orders, held))
            }
        }
    }
}

/// How the leases held (`held`: store -> epoch) differ from the books loaded (`booked`): the
/// stores to drop (no longer held, or held at another epoch, so changed hands meanwhile) and
/// those to load, with their epochs. A store lost and regained between two ticks is in both.
fn lease_changes(
    booked: &BTreeMap<String, i64>,
    held: &HashMap<String, i64>,
) -> (Vec<String>, BTreeMap<String, i64>) {
    let lost = booked
        .iter()
        .filter(|(store, epoch)| held.get(*store) != Some(*epoch))
        .map(|(store, _)| store.clone())
        .collect();
    let gained = held
        .iter()
        .filter(|(store, epoch)| booked.get(*store) != Some(*epoch))
        .map(|(store, epoch)| (store.clone(), *epoch))
        .collect();
    (lost, gained)
}

/// Minutes until the bag is ready, estimated from where the order is at the store.
fn ready_in_minutes(status: &str) -> f64 {
    match status {
        "READY" => 0.0,
        "PACKED" => 1.0,
        "PICKING" => 3.0,
        _ => 5.0,
    }
}

/// The offer's rows in the store's replica, one per order of the trip.
fn sent_writes(offer: &NewOffer) -> Vec<StoreWrite> {
    offer
        .rows
        .iter()
        .map(|(id, order)| StoreWrite::Assignment {
            id: id.clone(),
            order_id: order.clone(),
            rider_id: offer.rider_id.clone(),
            offered_at: offer.offered_at.clone(),
            expires_at: offer.expires_at.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map<M: FromIterator<(String, i64)>>(entries: &[(&str, i64)]) -> M {
        entries
            .iter()
            .map(|(store, epoch)| ((*store).to_owned(), *epoch))
            .collect()
    }

    #[test]
    fn books_follow_the_leases_held() {
        // Loaded: s1 and s2 at epoch 1, s3 at 4. Held now: s1 as before, s2 at a later epoch
        // (lost and taken back between two ticks), s4 new; s3 went to another instance.
        let booked: BTreeMap<String, i64> = map(&[("s1", 1), ("s2", 1), ("s3", 4)]);
        let held: HashMap<String, i64> = map(&[("s1", 1), ("s2", 3), ("s4", 1)]);
        let (lost, gained) = lease_changes(&booked, &held);
        assert_eq!(lost, ["s2", "s3"]);
        assert_eq!(gained, map::<BTreeMap<_, _>>(&[("s2", 3), ("s4", 1)]));
        // Nothing changes while the same leases are held.
        let (lost, gained) = lease_changes(&map(&[("s1", 1)]), &map(&[("s1", 1)]));
        assert!(lost.is_empty() && gained.is_empty());
    }
}
