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
//! offer is withdrawn and re-planned). Orders are planned from ACCEPTED on, with a ready time
//! estimated from their status, so a rider can be on the way while the bag is packed.
//!
//! The dispatcher's own state (pending offers, refusals) lives in memory; after a restart,
//! orders with an unanswered offer still running are left alone until it expires.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashkart_sync::cloud_writes;
use rusqlite::params;
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::config::DispatchSettings;
use crate::dispatch::{
    DispatchConfig, Dispatcher, Haversine, Order, OrderId, Point, Rider, RiderId, StoreId, Vehicle,
};
use crate::hq::Hq;
use crate::projection::Projection;
use crate::stores::Stores;

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
    stores: Arc<Stores>,
    dispatchers: BTreeMap<String, Dispatcher<Haversine>>,
    riders: Interner,
    orders: Interner,
    started: Instant,
    /// Replies already handled (rowid in `rm_replies`).
    replies_seen: i64,
    /// Riders online at the last tick, by store.
    online: BTreeMap<String, BTreeSet<String>>,
    /// Open orders at the last tick.
    open: BTreeSet<String>,
    /// Riders on a trip, free again at this tick time.
    busy_until: HashMap<String, f64>,
}

impl LiveDispatch {
    pub fn new(
        settings: DispatchSettings,
        hq: Hq,
        projection: Projection,
        stores: Arc<Stores>,
    ) -> Self {
        Self {
            settings,
            hq,
            projection,
            stores,
            dispatchers: BTreeMap::new(),
            riders: Interner::default(),
            orders: Interner::default(),
            started: Instant::now(),
            replies_seen: 0,
            online: BTreeMap::new(),
            open: BTreeSet::new(),
            busy_until: HashMap::new(),
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

    fn minutes(&self) -> f64 {
        self.started.elapsed().as_secs_f64() / 60.0
    }

    fn dispatch_config(&self) -> DispatchConfig {
        DispatchConfig {
            offer_timeout: self.settings.offer_timeout_s / 60.0,
            ..DispatchConfig::default()
        }
    }

    /// One tick: replies, riders, orders, plan, offers.
    pub async fn tick(&mut self) -> Result<usize, CloudError> {
        let now = self.minutes();
        self.handle_replies(now).await?;
        // A rider whose orders are all delivered (or cancelled) is free now, not when the
        // estimate made at acceptance runs out: otherwise a quick trip idles the rider for
        // the rest of it while orders wait.
        if !self.busy_until.is_empty() {
            let carrying = self.carrying().await?;
            self.busy_until.retain(|rider, _| carrying.contains(rider));
        }

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
        for (store, riders) in &self.online {
            for rider in riders {
                if !online
                    .get(store)
                    .is_some_and(|now_online| now_online.contains(rider))
                {
                    let id = RiderId(self.riders.id(rider));
                    if let Some(dispatcher) = self.dispatchers.get_mut(store) {
                        dispatcher.rider_offline(id);
                    }
                }
            }
        }
        self.online = online;

        // Orders that left the pool are finished for the dispatcher.
        let now_open: BTreeSet<String> = open_orders.iter().map(|o| o.id.clone()).collect();
        for gone in self.open.difference(&now_open) {
            let id = OrderId(self.orders.id(gone));
            for dispatcher in self.dispatchers.values_mut() {
                dispatcher.order_finished(id);
            }
        }
        self.open = now_open;

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
                        free_at: self.busy_until.get(&r.id).copied().unwrap_or(now).max(now),
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
                    placed_at: now
                        - crate::clock::parse(&o.placed_at).map_or(0.0, |placed| {
                            (crate::clock::now() - placed).as_seconds_f64() / 60.0
                        }),
                    ready_at: now + ready_in_minutes(&o.status),
                    target_minutes: self.settings.target_minutes,
                })
                .collect();
            if orders.is_empty() {
                continue;
            }
            let config = self.dispatch_config();
            let speed = self.settings.rider_speed_kmh * 1000.0 / 60.0;
            let dispatcher = self.dispatchers.entry(store_id.clone()).or_insert_with(|| {
                Dispatcher::new(
                    config,
                    Haversine {
                        metres_per_minute: speed,
                    },
                )
            });
            let plan = dispatcher.tick(now, &riders, &orders);
            for assignment in plan.offers {
                let Some(rider) = self.riders.name(assignment.rider.0).map(str::to_owned) else {
                    continue;
                };
                let order_ids: Vec<String> = assignment
                    .orders
                    .iter()
                    .filter_map(|o| self.orders.name(o.0).map(str::to_owned))
                    .collect();
                self.offer(&store_id, &rider, &order_ids).await?;
                offers_sent += order_ids.len();
            }
        }
        Ok(offers_sent)
    }

    /// Writes one offer (one assignment row per order of the trip) into the store's replica.
    async fn offer(
        &self,
        store_id: &str,
        rider: &str,
        orders: &[String],
    ) -> Result<(), CloudError> {
        let offered = crate::clock::now();
        let expires =
            offered + time::Duration::milliseconds((self.settings.offer_timeout_s * 1000.0) as i64);
        let rows: Vec<(String, String)> = orders
            .iter()
            .map(|order| (uuid::Uuid::now_v7().to_string(), order.clone()))
            .collect();
        let (store, rider_id) = (store_id.to_owned(), rider.to_owned());
        let (offered_at, expires_at) = (
            crate::clock::rfc3339(offered),
            crate::clock::rfc3339(expires),
        );
        let replica = self.stores.replica(store_id).await?;
        {
            let (rows, store, rider_id, offered_at, expires_at) = (
                rows.clone(),
                store.clone(),
                rider_id.clone(),
                offered_at.clone(),
                expires_at.clone(),
            );
            replica
                .write(move |conn| -> Result<(), flashkart_sync::Error> {
                    for (id, order) in &rows {
                        cloud_writes::insert_assignment(
                            conn,
                            &cloud_writes::AssignmentRow {
                                id,
                                store_id: &store,
                                order_id: order,
                                rider_id: &rider_id,
                                offered_at: &offered_at,
                                expires_at: &expires_at,
                            },
                        )?;
                    }
                    Ok(())
                })
                .await?;
        }
        self.projection
            .db()
            .write(move |conn| -> Result<(), flashkart_sync::Error> {
                for (id, order) in &rows {
                    conn.prepare_cached(
                        "INSERT OR IGNORE INTO rm_offers
                            (assignment_id, store_id, order_id, rider_id, offered_at, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![id, store, order, rider_id, offered_at, expires_at])?;
                }
                Ok(())
            })
            .await?;
        tracing::info!(store = store_id, rider, orders = ?orders, "offered");
        Ok(())
    }

    /// Folds riders' answers into the dispatchers.
    async fn handle_replies(&mut self, now: f64) -> Result<(), CloudError> {
        let after = self.replies_seen;
        let replies: Vec<(i64, String, String, String)> = self
            .projection
            .db()
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let rows = conn
                    .prepare_cached(
                        "SELECT r.rowid, r.store_id, r.rider_id, r.reply FROM rm_replies r
                         JOIN rm_offers o ON o.assignment_id = r.assignment_id
                         WHERE r.rowid > ?1 ORDER BY r.rowid",
                    )?
                    .query_map([after], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await?;
        for (rowid, store, rider, reply) in replies {
            self.replies_seen = self.replies_seen.max(rowid);
            let id = RiderId(self.riders.id(&rider));
            let Some(dispatcher) = self.dispatchers.get_mut(&store) else {
                continue;
            };
            match reply.as_str() {
                "accepted" => {
                    if dispatcher.accept(id, now).is_ok() {
                        // Busy for a trip's worth of time; the next position reports say more.
                        self.busy_until
                            .insert(rider.clone(), now + self.settings.target_minutes / 2.0);
                        tracing::info!(store, rider, "offer accepted");
                    }
                }
                _ => {
                    if dispatcher.decline(id).is_ok() {
                        tracing::info!(store, rider, reply, "offer refused; cascading");
                    }
                }
            }
        }
        Ok(())
    }

    /// Riders with an accepted order not yet finished (accepted in the last day: no trip
    /// takes longer, and the time bound keeps the query on its index).
    async fn carrying(&self) -> Result<BTreeSet<String>, CloudError> {
        let since = crate::clock::rfc3339(crate::clock::now() - time::Duration::days(1));
        Ok(self
            .projection
            .db()
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let riders = conn
                    .prepare_cached(
                        "SELECT DISTINCT r.rider_id FROM rm_replies r
                         JOIN rm_offers f ON f.assignment_id = r.assignment_id
                         JOIN rm_orders o ON o.id = f.order_id
                         WHERE r.at >= ?1 AND r.reply = 'accepted'
                           AND o.status NOT IN ('DELIVERED', 'CLOSED', 'CANCELLED', 'REFUNDED')",
                    )?
                    .query_map([since], |r| r.get(0))?
                    .collect::<Result<BTreeSet<String>, _>>()?;
                Ok(riders)
            })
            .await?)
    }

    /// Latest position of every rider seen since `since`: rider -> (store, lat, lon).
    async fn positions(
        &self,
        since: String,
    ) -> Result<HashMap<String, (String, f64, f64)>, CloudError> {
        Ok(self
            .projection
            .db()
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
            .await?)
    }

    /// Orders to plan (not yet taken by a rider), and those held by an offer still running.
    async fn open_orders(&self) -> Result<(Vec<OpenOrder>, BTreeSet<String>), CloudError> {
        let now = crate::clock::now_rfc3339();
        Ok(self
            .projection
            .db()
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
            .await?)
    }
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
