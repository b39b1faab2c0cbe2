//! What the HQ dashboard shows, and how it is put together from what the read model, HQ's
//! database and the intake's liveness say. Pure (no database, no clock of its own), so the
//! rules (a store's health, a rider's state, the hourly buckets) are tested without a cloud.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use time::OffsetDateTime;

use crate::hq::ratings::StoreRatings;
use crate::hq::{RosterRider, RoutableStore};

/// Statuses of an order that is not finished: from routed until the customer has it. An order
/// on its way (PICKED_UP) is out of its store's backlog but still HQ's concern.
pub const OPEN_STATUSES: &[&str] = &[
    "ROUTED",
    "ACCEPTED",
    "PICKING",
    "PACKED",
    "READY",
    "ASSIGNED",
    "PICKED_UP",
];

/// Statuses after which nothing more happens to an order but a refund.
pub const FINISHED_STATUSES: &[&str] = &["DELIVERED", "CLOSED", "CANCELLED", "REFUNDED"];

/// Most orders a snapshot lists: every client gets the whole snapshot on each change, so it
/// must stay small however many orders are open. The store figures count all of them.
pub const MAX_ORDERS: u32 = 2_000;

/// A rider whose last position is older than this is offline.
pub const RIDER_OFFLINE_AFTER: time::Duration = time::Duration::minutes(2);

/// Hours in the series, the current one last.
pub const SERIES_HOURS: usize = 24;

/// The whole dashboard at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Grows by one with each snapshot whose content differs from the one before. It starts at
    /// the cloud's start time in Unix milliseconds, so a version seen before a restart is never
    /// taken for a current one.
    pub version: u64,
    /// When the read model was read for this content (RFC 3339).
    pub at: String,
    pub stores: Vec<StoreSummary>,
    /// Every open order and those finished in the last 30 minutes, the most urgent first, at
    /// most [`MAX_ORDERS`].
    pub orders: Vec<OrderSummary>,
    /// Orders left out of `orders` by the bound.
    pub orders_omitted: u32,
    pub riders: Vec<RiderSummary>,
    pub series: Series,
}

impl Snapshot {
    /// Whether two snapshots show the same (version and time aside): an unchanged one is not
    /// sent to every client again. A store's `last_contact_at` moves with every sync request
    /// of a connected store, so it does not count: `online` and `health` change when it
    /// matters, and the contact time goes out with the next change.
    pub fn same_content(&self, other: &Self) -> bool {
        self.stores.len() == other.stores.len()
            && self
                .stores
                .iter()
                .zip(&other.stores)
                .all(|(a, b)| a.same_but_contact(b))
            && self.orders == other.orders
            && self.orders_omitted == other.orders_omitted
            && self.riders == other.riders
            && self.series == other.series
    }
}

/// How a store is doing, worst first: paused by HQ, not heard from, an order past its promise,
/// a device it reports down or faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Degraded,
    Late,
    Offline,
    Paused,
}

/// One profiled store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreSummary {
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// The GeoJSON area as profiled.
    pub service_area: serde_json::Value,
    pub sla_minutes: u32,
    pub capacity: u32,
    pub paused: bool,
    pub paused_reason: Option<String>,
    /// Heard from within the intake's grace (routing's own test).
    pub online: bool,
    /// When its latest sync request began or ended, as of this snapshot's content (a snapshot
    /// is not sent again for this alone).
    pub last_contact_at: Option<String>,
    pub health: Health,
    /// Open orders per status (every open status, zeros included).
    pub orders_by_state: BTreeMap<String, u32>,
    pub open_orders: u32,
    /// Open orders not yet picked up: what `capacity` bounds and routing counts.
    pub backlog: u32,
    /// Open, not late, less than a quarter of the SLA left.
    pub at_risk: u32,
    /// Open and past the promise.
    pub late: u32,
    pub delivered_1h: u32,
    pub picked_up_1h: u32,
    pub on_time_share_1h: Option<f64>,
    /// Mean seconds from ACCEPTED to READY of the orders that became READY in the last hour.
    pub pick_to_ready_s_1h: Option<f64>,
    /// Active catalog products with nothing available here (none known counts as none).
    pub stock_outs: u32,
    /// Active catalog products with 1-3 available.
    pub low_stock: u32,
    /// Seconds from the store's newest fact (an order event, a rider's reply, a device change;
    /// by the store's clock) to its projection here, in the latest step that carried one.
    pub sync_lag_s: Option<f64>,
    /// When that step was projected.
    pub sync_lag_at: Option<String>,
    /// The store's devices as it reports them, by id.
    pub devices: Vec<DeviceSummary>,
    /// Devices not connected or with faults.
    pub devices_down: u32,
    /// Mean order stars customers gave in the last 7 days (`None` without ratings).
    pub rating_order_7d: Option<f64>,
    /// Mean delivery stars customers gave in the last 7 days.
    pub rating_delivery_7d: Option<f64>,
    /// Ratings given in the last 7 days.
    pub ratings_7d: u32,
}

/// One device of a store, as the store's `device_status` row says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceSummary {
    pub id: String,
    /// `scanner`, `scale` or `printer`.
    pub kind: String,
    /// `connecting`, `connected`, `disconnected` or `unhealthy`.
    pub health: String,
    /// Why it is not connected, in the store's words.
    pub reason: String,
    /// A printer's faults ("paper out").
    pub faults: Vec<String>,
    pub changed_at: String,
}

impl DeviceSummary {
    /// Not working as it should: not connected, or a printer reporting a fault.
    pub fn down(&self) -> bool {
        self.health != "connected" || !self.faults.is_empty()
    }
}

/// How late a store's facts reach the read model (`rm_store_sync`).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncLag {
    pub lag_ms: i64,
    pub projected_at: String,
}

impl StoreSummary {
    /// Equal but for when the store was last heard from (whether it ever was still counts).
    fn same_but_contact(&self, other: &Self) -> bool {
        // Spelled out, so a field added later must be decided on here.
        let Self {
            id,
            name,
            lat,
            lon,
            service_area,
            sla_minutes,
            capacity,
            paused,
            paused_reason,
            online,
            last_contact_at,
            health,
            orders_by_state,
            open_orders,
            backlog,
            at_risk,
            late,
            delivered_1h,
            picked_up_1h,
            on_time_share_1h,
            pick_to_ready_s_1h,
            stock_outs,
            low_stock,
            sync_lag_s,
            sync_lag_at: _,
            devices,
            devices_down,
            rating_order_7d,
            rating_delivery_7d,
            ratings_7d,
        } = self;
        *id == other.id
            && *name == other.name
            && *lat == other.lat
            && *lon == other.lon
            && *service_area == other.service_area
            && *sla_minutes == other.sla_minutes
            && *capacity == other.capacity
            && *paused == other.paused
            && *paused_reason == other.paused_reason
            && *online == other.online
            && last_contact_at.is_some() == other.last_contact_at.is_some()
            && *health == other.health
            && *orders_by_state == other.orders_by_state
            && *open_orders == other.open_orders
            && *backlog == other.backlog
            && *at_risk == other.at_risk
            && *late == other.late
            && *delivered_1h == other.delivered_1h
            && *picked_up_1h == other.picked_up_1h
            && *on_time_share_1h == other.on_time_share_1h
            && *pick_to_ready_s_1h == other.pick_to_ready_s_1h
            && *stock_outs == other.stock_outs
            && *low_stock == other.low_stock
            // Whole seconds: a lag that wavers by milliseconds is not news.
            && sync_lag_s.map(f64::round) == other.sync_lag_s.map(f64::round)
            && *devices == other.devices
            && *devices_down == other.devices_down
            && *rating_order_7d == other.rating_order_7d
            && *rating_delivery_7d == other.rating_delivery_7d
            && *ratings_7d == other.ratings_7d
    }
}

/// One order on the map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderSummary {
    pub id: String,
    pub store_id: String,
    pub status: String,
    pub status_at: String,
    pub placed_at: String,
    pub promised_at: Option<String>,
    pub lat: f64,
    pub lon: f64,
    pub total_minor: i64,
    pub at_risk: bool,
    pub late: bool,
    /// The rider who accepted it.
    pub rider_id: Option<String>,
}

/// What a rider is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RiderState {
    /// No position in the last two minutes (whatever they had accepted).
    Offline,
    Idle,
    /// Has accepted an order that is not delivered yet.
    Busy,
}

/// One rider of the roster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiderSummary {
    pub id: String,
    pub name: String,
    pub home_store_id: String,
    pub active: bool,
    pub state: RiderState,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub position_at: Option<String>,
    pub offers_1h: u32,
    pub declines_1h: u32,
    pub deliveries_1h: u32,
}

/// The last 24 hours, hour by hour (UTC), all stores together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Hour starts, oldest first; the last is the current hour.
    pub hours: Vec<String>,
    /// Orders placed.
    pub orders: Vec<u32>,
    pub delivered: Vec<u32>,
    pub on_time_share: Vec<Option<f64>>,
    /// Mean seconds from ACCEPTED to READY of the orders that became READY in the hour.
    pub pick_time_s: Vec<Option<f64>>,
}

/// Open orders of one store, as the read model counts them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenFigures {
    pub by_state: BTreeMap<String, u32>,
    pub late: u32,
    pub at_risk: u32,
    pub backlog: u32,
}

/// One store's last hour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourFigures {
    pub picked_up: u32,
    pub delivered: u32,
    pub delivered_on_time: u32,
    pub pick_to_ready_s: Option<f64>,
}

/// A rider's latest position.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub lat: f64,
    pub lon: f64,
    pub at: String,
}

/// What the read model says, read in one transaction (`queries.rs`).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub open: BTreeMap<String, OpenFigures>,
    pub hour: BTreeMap<String, HourFigures>,
    /// Store -> (catalog products available, of which 1-3).
    pub stock: BTreeMap<String, (u32, u32)>,
    pub catalog_products: u32,
    pub orders: Vec<OrderSummary>,
    /// Open and recently finished orders, listed or not.
    pub orders_total: u32,
    pub positions: HashMap<String, Position>,
    pub offers: HashMap<String, u32>,
    pub declines: HashMap<String, u32>,
    pub deliveries: HashMap<String, u32>,
    pub busy: BTreeSet<String>,
    /// Hour key (`YYYY-MM-DDTHH`) -> orders placed.
    pub placed: BTreeMap<String, u32>,
    /// Hour key -> (delivered, on time).
    pub delivered: BTreeMap<String, (u32, u32)>,
    /// Hour key -> mean pick seconds.
    pub pick: BTreeMap<String, f64>,
    /// Store -> its devices (by id).
    pub devices: BTreeMap<String, Vec<DeviceSummary>>,
    /// Store -> its latest sync lag.
    pub sync: BTreeMap<String, SyncLag>,
    /// Store -> its customers' ratings of the last 7 days (from `hq.db`, not the read model:
    /// merged in by `Dashboard::build`).
    pub ratings: BTreeMap<String, StoreRatings>,
}

/// What the intake's liveness says of a store.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub online: bool,
    pub last_contact_at: Option<String>,
}

/// The 24 hour starts of the series ending with the hour of `now`.
pub fn series_hours(now: OffsetDateTime) -> Vec<OffsetDateTime> {
    let unix = now.unix_timestamp();
    let current = OffsetDateTime::from_unix_timestamp(unix - unix.rem_euclid(3600))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    (0..SERIES_HOURS)
        .rev()
        .map(|back| current - time::Duration::hours(back as i64))
        .collect()
}

/// The key an hour's rows are grouped by: `YYYY-MM-DDTHH` of the stored UTC timestamps.
pub fn hour_key(hour: &str) -> &str {
    hour.get(..13).unwrap_or(hour)
}

fn share(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| f64::from(part) / f64::from(whole))
}

/// Puts the snapshot together (version 0: the publisher numbers it).
pub fn assemble(
    facts: Facts,
    stores: &[RoutableStore],
    roster: &[RosterRider],
    contact: &dyn Fn(&str) -> Contact,
    now: OffsetDateTime,
) -> Snapshot {
    let stores = stores
        .iter()
        .map(|s| store_summary(s, &facts, contact(&s.profile.id)))
        .collect();
    let offline_before = crate::clock::rfc3339(now - RIDER_OFFLINE_AFTER);
    let riders = roster
        .iter()
        .map(|r| rider_summary(r, &facts, &offline_before))
        .collect();
    let listed = u32::try_from(facts.orders.len()).unwrap_or(u32::MAX);
    let hours = series_hours(now);
    let series = Series {
        hours: hours.iter().map(|h| crate::clock::rfc3339(*h)).collect(),
        orders: Vec::new(),
        delivered: Vec::new(),
        on_time_share: Vec::new(),
        pick_time_s: Vec::new(),
    };
    let series = hours_series(series, &facts);
    Snapshot {
        version: 0,
        at: crate::clock::rfc3339(now),
        stores,
        orders_omitted: facts.orders_total.saturating_sub(listed),
        orders: facts.orders,
        riders,
        series,
    }
}

fn store_summary(store: &RoutableStore, facts: &Facts, contact: Contact) -> StoreSummary {
    let p = &store.profile;
    let open = facts.open.get(&p.id).cloned().unwrap_or_default();
    let mut orders_by_state: BTreeMap<String, u32> =
        OPEN_STATUSES.iter().map(|s| ((*s).to_owned(), 0)).collect();
    for (status, n) in &open.by_state {
        orders_by_state.insert(status.clone(), *n);
    }
    let open_orders = orders_by_state
        .values()
        .fold(0_u32, |sum, n| sum.saturating_add(*n));
    let hour = facts.hour.get(&p.id).cloned().unwrap_or_default();
    let (in_stock, low_stock) = facts.stock.get(&p.id).copied().unwrap_or((0, 0));
    let devices = facts.devices.get(&p.id).cloned().unwrap_or_default();
    let devices_down = devices.iter().filter(|d| d.down()).count();
    let devices_down = u32::try_from(devices_down).unwrap_or(u32::MAX);
    let sync = facts.sync.get(&p.id);
    let rated = facts.ratings.get(&p.id).copied().unwrap_or_default();
    let health = if p.paused {
        Health::Paused
    } else if !contact.online {
        Health::Offline
    } else if open.late > 0 {
        Health::Late
    } else if devices_down > 0 {
        Health::Degraded
    } else {
        Health::Ok
    };
    StoreSummary {
        id: p.id.clone(),
        name: p.name.clone(),
        lat: p.lat,
        lon: p.lon,
        service_area: p.service_area.clone(),
        sla_minutes: p.sla_minutes,
        capacity: p.capacity,
        paused: p.paused,
        paused_reason: p.paused_reason.clone(),
        online: contact.online,
        last_contact_at: contact.last_contact_at,
        health,
        orders_by_state,
        open_orders,
        backlog: open.backlog,
        at_risk: open.at_risk,
        late: open.late,
        delivered_1h: hour.delivered,
        picked_up_1h: hour.picked_up,
        on_time_share_1h: share(hour.delivered_on_time, hour.delivered),
        pick_to_ready_s_1h: hour.pick_to_ready_s,
        stock_outs: facts.catalog_products.saturating_sub(in_stock),
        low_stock,
        // Tenths of a second: the figure is a delay people read, not a benchmark.
        sync_lag_s: sync.map(|s| (s.lag_ms as f64 / 100.0).round() / 10.0),
        sync_lag_at: sync.map(|s| s.projected_at.clone()),
        devices,
        devices_down,
        rating_order_7d: rated.mean_order_stars,
        rating_delivery_7d: rated.mean_delivery_stars,
        ratings_7d: rated.count,
    }
}

fn rider_summary(rider: &RosterRider, facts: &Facts, offline_before: &str) -> RiderSummary {
    let position = facts.positions.get(&rider.id);
    let fresh = position.is_some_and(|p| p.at.as_str() >= offline_before);
    let state = if !fresh {
        RiderState::Offline
    } else if facts.busy.contains(&rider.id) {
        RiderState::Busy
    } else {
        RiderState::Idle
    };
    let count = |map: &HashMap<String, u32>| map.get(&rider.id).copied().unwrap_or(0);
    RiderSummary {
        id: rider.id.clone(),
        name: rider.name.clone(),
        home_store_id: rider.home_store_id.clone(),
        active: rider.active,
        state,
        lat: position.map(|p| p.lat),
        lon: position.map(|p| p.lon),
        position_at: position.map(|p| p.at.clone()),
        offers_1h: count(&facts.offers),
        declines_1h: count(&facts.declines),
        deliveries_1h: count(&facts.deliveries),
    }
}

fn hours_series(mut series: Series, facts: &Facts) -> Series {
    for hour in &series.hours {
        let key = hour_key(hour);
        series
            .orders
            .push(facts.placed.get(key).copied().unwrap_or(0));
        let (delivered, on_time) = facts.delivered.get(key).copied().unwrap_or((0, 0));
        series.delivered.push(delivered);
        series.on_time_share.push(share(on_time, delivered));
        series.pick_time_s.push(facts.pick.get(key).copied());
    }
    series
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::hq::{OpeningHours, StoreProfile};

    fn store(id: &str, paused: bool) -> RoutableStore {
        let area = serde_json::json!({"type": "Polygon", "coordinates": [[[13.3, 52.4], [13.5, 52.4], [13.5, 52.6], [13.3, 52.4]]]});
        let profile = StoreProfile {
            id: id.into(),
            name: id.into(),
            lat: 52.5,
            lon: 13.4,
            service_area: area,
            max_radius_m: 5_000.0,
            hours: OpeningHours {
                opens: "00:00".into(),
                closes: "00:00".into(),
                utc_offset_minutes: 0,
            },
            capacity: 10,
            sla_minutes: 30,
            paused,
            paused_reason: paused.then(|| "stocktake".into()),
        };
        let area = profile.validate().expect("a valid profile");
        RoutableStore { profile, area }
    }

    fn rider(id: &str) -> RosterRider {
        serde_json::from_value(serde_json::json!({"id": id, "home_store_id": "s1", "name": id}))
            .unwrap()
    }

    fn at(text: &str) -> OffsetDateTime {
        crate::clock::parse(text).unwrap()
    }

    #[test]
    fn health_is_the_worst_of_paused_offline_and_late() {
        let mut facts = Facts::default();
        facts.open.insert(
            "late".into(),
            OpenFigures {
                by_state: [("ACCEPTED".to_owned(), 2)].into(),
                late: 1,
                at_risk: 0,
                backlog: 2,
            },
        );
        let stores = [
            store("ok", false),
            store("late", false),
            store("paused", true),
            store("away", false),
        ];
        let contact = |id: &str| Contact {
            online: id != "away",
            last_contact_at: None,
        };
        let snapshot = assemble(
            facts,
            &stores,
            &[],
            &contact,
            at("2026-03-01T12:30:00.000Z"),
        );
        let health: Vec<Health> = snapshot.stores.iter().map(|s| s.health).collect();
        assert_eq!(
            health,
            [Health::Ok, Health::Late, Health::Paused, Health::Offline]
        );
        let late = &snapshot.stores[1];
        assert_eq!(late.open_orders, 2);
        assert_eq!(late.orders_by_state["ACCEPTED"], 2);
        assert_eq!(late.orders_by_state["PICKED_UP"], 0);
        assert_eq!(late.orders_by_state.len(), OPEN_STATUSES.len());
        assert_eq!(late.on_time_share_1h, None);
        assert_eq!(
            snapshot.stores[2].paused_reason.as_deref(),
            Some("stocktake")
        );
    }

    #[test]
    fn a_rider_without_a_recent_position_is_offline_even_when_busy() {
        let now = at("2026-03-01T12:30:00.000Z");
        let mut facts = Facts::default();
        for (id, seen) in [
            ("fresh", "2026-03-01T12:29:00.000Z"),
            ("busy", "2026-03-01T12:28:00.000Z"),
            ("stale", "2026-03-01T12:27:59.999Z"),
        ] {
            facts.positions.insert(
                id.into(),
                Position {
                    lat: 52.5,
                    lon: 13.4,
                    at: seen.into(),
                },
            );
        }
        facts.busy.extend(["busy".to_owned(), "stale".to_owned()]);
        facts.offers.insert("busy".into(), 3);
        let roster = [
            rider("fresh"),
            rider("busy"),
            rider("stale"),
            rider("never"),
        ];
        let snapshot = assemble(facts, &[], &roster, &|_| unreachable!(), now);
        let states: Vec<RiderState> = snapshot.riders.iter().map(|r| r.state).collect();
        assert_eq!(
            states,
            [
                RiderState::Idle,
                RiderState::Busy,
                RiderState::Offline,
                RiderState::Offline
            ]
        );
        assert_eq!(snapshot.riders[1].offers_1h, 3);
        assert_eq!(snapshot.riders[3].lat, None);
    }

    #[test]
    fn the_series_is_the_last_24_hours_oldest_first() {
        let now = at("2026-03-01T12:30:00.000Z");
        let mut facts = Facts::default();
        facts.placed.insert("2026-03-01T12".into(), 4);
        facts.placed.insert("2026-02-28T13".into(), 1);
        // Older than the window: not shown.
        facts.placed.insert("2026-02-28T12".into(), 9);
        facts.delivered.insert("2026-03-01T11".into(), (4, 3));
        facts.pick.insert("2026-03-01T11".into(), 95.0);
        let snapshot = assemble(facts, &[], &[], &|_| unreachable!(), now);
        let series = &snapshot.series;
        assert_eq!(series.hours.len(), 24);
        assert_eq!(series.hours[0], "2026-02-28T13:00:00.000Z");
        assert_eq!(series.hours[23], "2026-03-01T12:00:00.000Z");
        assert_eq!(series.orders[0], 1);
        assert_eq!(series.orders[23], 4);
        assert_eq!(series.orders.iter().sum::<u32>(), 5);
        assert_eq!(series.delivered[22], 4);
        assert_eq!(series.on_time_share[22], Some(0.75));
        assert_eq!(series.on_time_share[23], None);
        assert_eq!(series.pick_time_s[22], Some(95.0));
    }

    #[test]
    fn a_new_contact_time_alone_is_not_a_new_snapshot() {
        let now = at("2026-03-01T12:30:00.000Z");
        let build = |seen: &str, online: bool| {
            let seen = seen.to_owned();
            let contact = move |_: &str| Contact {
                online,
                last_contact_at: Some(seen.clone()),
            };
            assemble(Facts::default(), &[store("s1", false)], &[], &contact, now)
        };
        let first = build("2026-03-01T12:29:58.000Z", true);
        assert!(first.same_content(&build("2026-03-01T12:29:59.500Z", true)));
        assert!(!first.same_content(&build("2026-03-01T12:29:58.000Z", false)));
    }

    #[test]
    fn omitted_orders_are_counted() {
        let facts = Facts {
            orders_total: 2_500,
            orders: vec![
                OrderSummary {
                    id: "o".into(),
                    store_id: "s".into(),
                    status: "ROUTED".into(),
                    status_at: String::new(),
                    placed_at: String::new(),
                    promised_at: None,
                    lat: 0.0,
                    lon: 0.0,
                    total_minor: 0,
                    at_risk: false,
                    late: false,
                    rider_id: None,
                };
                2
            ],
            ..Facts::default()
        };
        let snapshot = assemble(
            facts,
            &[],
            &[],
            &|_| unreachable!(),
            at("2026-03-01T12:30:00.000Z"),
        );
        assert_eq!(snapshot.orders_omitted, 2_498);
    }
}
