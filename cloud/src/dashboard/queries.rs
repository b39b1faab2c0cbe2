//! What the dashboard reads from the read model: one read transaction per build, so the store
//! figures, the order list and the riders agree with each other. Every query is bounded by an
//! index (open statuses, the last hour or day, an order's offers) or by the roster and the
//! catalog, never by all the orders ever taken; the list of orders is cut at `MAX_ORDERS`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{Connection, params};

use super::snapshot::{
    DeviceSummary, FINISHED_STATUSES, Facts, HourFigures, OPEN_STATUSES, OrderSummary, Position,
    SyncLag,
};

/// The moments a build reads at (RFC 3339, as the read model stores them).
#[derive(Debug, Clone)]
pub struct Window {
    pub now: String,
    pub hour_ago: String,
    pub half_hour_ago: String,
    /// The first hour of the series and the current one.
    pub first_hour: String,
    pub current_hour: String,
    /// What the series' finished hours held when they were last read (see [`PastFingerprint`]).
    pub known_past: Option<PastFingerprint>,
    pub max_orders: u32,
    /// The active catalog products (a JSON array of ids).
    pub catalog_ids: String,
    pub catalog_products: u32,
}

/// `'A','B'` for an `IN (...)` list of constant statuses.
fn quoted(statuses: &[&str]) -> String {
    statuses
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An open order past its promise (`?1` is now).
const LATE: &str = "(o.promised_at IS NOT NULL AND o.promised_at < ?1)";

/// An open order not late yet with less than a quarter of its SLA (promise minus placement,
/// what the customer was told) left (`?1` is now).
const AT_RISK: &str = "(o.promised_at IS NOT NULL AND o.promised_at >= ?1
    AND (julianday(o.promised_at) - julianday(?1)) * 4
        < julianday(o.promised_at) - julianday(o.placed_at))";

/// The rider who accepted an order (`o`), the latest if several did.
const RIDER: &str = "(SELECT r.rider_id FROM rm_offers f
    JOIN rm_replies r ON r.assignment_id = f.assignment_id
    WHERE f.order_id = o.id AND r.reply = 'accepted' ORDER BY r.at DESC LIMIT 1)";

/// Seconds from an order's first ACCEPTED at a store to its READY event `r` there. Pinned to
/// the by-order index: otherwise the planner takes `min(at)` from the (status, at) index and
/// walks every ACCEPTED event ever for each READY one (40 s instead of 60 ms a build over
/// 10,000 orders).
const PICK_SECONDS: &str = "(julianday(r.at) - julianday((SELECT min(a.at)
    FROM rm_timeline a INDEXED BY rm_timeline_by_order
    WHERE a.order_id = r.order_id AND a.store_id = r.store_id AND a.status = 'ACCEPTED')))
    * 86400.0";

/// Seconds to the millisecond the timestamps have (julianday arithmetic leaves noise below).
fn seconds(mean: Option<f64>) -> Option<f64> {
    mean.map(|s| (s * 1000.0).round() / 1000.0)
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// How many rows the series' finished hours are made of: orders placed in them and the
/// ACCEPTED, READY and DELIVERED events in them. Timeline rows are only ever inserted and an
/// order's placement never changes, so equal counts mean equal figures, and counting them
/// along two indexes is far cheaper than reading them again (most of a build, otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastFingerprint {
    placed: i64,
    events: i64,
}

/// What the read model says, and whether the series was read for its current hour only (the
/// finished hours were as `known_past` says) or whole (with their fingerprint now).
#[derive(Debug)]
pub struct Read {
    pub facts: Facts,
    pub whole_series: Option<PastFingerprint>,
}

fn past_fingerprint(
    conn: &Connection,
    window: &Window,
) -> Result<PastFingerprint, flashkart_sync::Error> {
    let range = [&window.first_hour, &window.current_hour];
    Ok(PastFingerprint {
        placed: conn
            .prepare_cached(
                "SELECT count(*) FROM rm_orders WHERE placed_at >= ?1 AND placed_at < ?2",
            )?
            .query_row(range, |r| r.get(0))?,
        events: conn
            .prepare_cached(
                "SELECT count(*) FROM rm_timeline
                 WHERE status IN ('ACCEPTED', 'READY', 'DELIVERED') AND at >= ?1 AND at < ?2",
            )?
            .query_row(range, |r| r.get(0))?,
    })
}

/// Everything a snapshot needs from the read model.
pub fn facts(conn: &Connection, window: &Window) -> Result<Read, flashkart_sync::Error> {
    // Rolled back when dropped: it only reads, and it makes the reads one snapshot.
    let tx = conn.unchecked_transaction()?;
    let mut facts = Facts {
        catalog_products: window.catalog_products,
        ..Facts::default()
    };
    open_figures(&tx, window, &mut facts)?;
    hour_figures(&tx, window, &mut facts)?;
    stock(&tx, window, &mut facts)?;
    devices_and_sync(&tx, &mut facts)?;
    orders(&tx, window, &mut facts)?;
    riders(&tx, window, &mut facts)?;
    let past = past_fingerprint(&tx, window)?;
    if window.known_past == Some(past) {
        series(&tx, &window.current_hour, &mut facts)?;
        return Ok(Read {
            facts,
            whole_series: None,
        });
    }
    series(&tx, &window.first_hour, &mut facts)?;
    Ok(Read {
        facts,
        whole_series: Some(past),
    })
}

fn open_figures(
    conn: &Connection,
    window: &Window,
    facts: &mut Facts,
) -> Result<(), flashkart_sync::Error> {
    let sql = format!(
        "SELECT o.store_id, o.status, count(*),
            sum(CASE WHEN {LATE} THEN 1 ELSE 0 END),
            sum(CASE WHEN {AT_RISK} THEN 1 ELSE 0 END),
            sum(o.open)
         FROM rm_orders o WHERE o.status IN ({open})
         GROUP BY o.store_id, o.status",
        open = quoted(OPEN_STATUSES)
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query([&window.now])?;
    while let Some(row) = rows.next()? {
        let (store, status): (String, String) = (row.get(0)?, row.get(1)?);
        let figures = facts.open.entry(store).or_default();
        figures.by_state.insert(status, count(row.get(2)?));
        figures.late = figures.late.saturating_add(count(row.get(3)?));
        figures.at_risk = figures.at_risk.saturating_add(count(row.get(4)?));
        figures.backlog = figures.backlog.saturating_add(count(row.get(5)?));
    }
    Ok(())
}

/// The last hour per store, counted as `Projection::store_figures` counts it.
fn hour_figures(
    conn: &Connection,
    window: &Window,
    facts: &mut Facts,
) -> Result<(), flashkart_sync::Error> {
    let hour = &mut facts.hour;
    let mut statement = conn.prepare_cached(
        "SELECT store_id, count(*) FROM rm_timeline
         WHERE status = 'PICKED_UP' AND at >= ?1 GROUP BY store_id",
    )?;
    let mut rows = statement.query([&window.hour_ago])?;
    while let Some(row) = rows.next()? {
        hour.entry(row.get(0)?).or_default().picked_up = count(row.get(1)?);
    }
    let mut statement = conn.prepare_cached(
        "SELECT t.store_id, count(*),
            sum(CASE WHEN o.promised_at IS NOT NULL AND t.at <= o.promised_at THEN 1 ELSE 0 END)
         FROM rm_timeline t JOIN rm_orders o ON o.id = t.order_id
         WHERE t.status = 'DELIVERED' AND t.at >= ?1 GROUP BY t.store_id",
    )?;
    let mut rows = statement.query([&window.hour_ago])?;
    while let Some(row) = rows.next()? {
        let figures: &mut HourFigures = hour.entry(row.get(0)?).or_default();
        figures.delivered = count(row.get(1)?);
        figures.delivered_on_time = count(row.get(2)?);
    }
    let sql = format!(
        "SELECT r.store_id, avg({PICK_SECONDS}) FROM rm_timeline r
         WHERE r.status = 'READY' AND r.at >= ?1 GROUP BY r.store_id"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query([&window.hour_ago])?;
    while let Some(row) = rows.next()? {
        hour.entry(row.get(0)?).or_default().pick_to_ready_s = seconds(row.get(1)?);
    }
    Ok(())
}

fn stock(
    conn: &Connection,
    window: &Window,
    facts: &mut Facts,
) -> Result<(), flashkart_sync::Error> {
    let mut statement = conn.prepare_cached(
        "SELECT store_id,
            sum(CASE WHEN on_hand - reserved > 0 THEN 1 ELSE 0 END),
            sum(CASE WHEN on_hand - reserved > 0 AND on_hand - reserved <= 3 THEN 1 ELSE 0 END)
         FROM rm_stock WHERE product_id IN (SELECT value FROM json_each(?1))
         GROUP BY store_id",
    )?;
    let mut rows = statement.query([&window.catalog_ids])?;
    while let Some(row) = rows.next()? {
        facts
            .stock
            .insert(row.get(0)?, (count(row.get(1)?), count(row.get(2)?)));
    }
    Ok(())
}

/// Every store's devices and sync lag: a few rows per store.
fn devices_and_sync(conn: &Connection, facts: &mut Facts) -> Result<(), flashkart_sync::Error> {
    let mut statement = conn.prepare_cached(
        "SELECT store_id, device_id, kind, health, reason, faults, changed_at FROM rm_devices
         ORDER BY store_id, device_id",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let faults: String = row.get(5)?;
        let device = DeviceSummary {
            id: row.get(1)?,
            kind: row.get(2)?,
            health: row.get(3)?,
            reason: row.get(4)?,
            faults: faults
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
            changed_at: row.get(6)?,
        };
        facts.devices.entry(row.get(0)?).or_default().push(device);
    }
    let mut statement =
        conn.prepare_cached("SELECT store_id, lag_ms, projected_at FROM rm_store_sync")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        facts.sync.insert(
            row.get(0)?,
            SyncLag {
                lag_ms: row.get(1)?,
                projected_at: row.get(2)?,
            },
        );
    }
    Ok(())
}

fn orders(
    conn: &Connection,
    window: &Window,
    facts: &mut Facts,
) -> Result<(), flashkart_sync::Error> {
    let summary = |row: &rusqlite::Row<'_>| -> rusqlite::Result<OrderSummary> {
        Ok(OrderSummary {
            id: row.get(0)?,
            store_id: row.get(1)?,
            status: row.get(2)?,
            status_at: row.get(3)?,
            placed_at: row.get(4)?,
            promised_at: row.get(5)?,
            lat: row.get(6)?,
            lon: row.get(7)?,
            total_minor: row.get(8)?,
            late: row.get(9)?,
            at_risk: row.get(10)?,
            rider_id: row.get(11)?,
        })
    };
    // The most urgent first: the earliest promise; orders without one last.
    let open = format!(
        "SELECT o.id, o.store_id, o.status, o.status_at, o.placed_at, o.promised_at, o.lat, o.lon,
            o.total_minor, CASE WHEN {LATE} THEN 1 ELSE 0 END,
            CASE WHEN {AT_RISK} THEN 1 ELSE 0 END, {RIDER}
         FROM rm_orders o WHERE o.status IN ({open})
         ORDER BY o.promised_at IS NULL, o.promised_at, o.id LIMIT ?2",
        open = quoted(OPEN_STATUSES)
    );
    facts.orders = conn
        .prepare_cached(&open)?
        .query_map(params![window.now, window.max_orders], summary)?
        .collect::<Result<_, _>>()?;
    let listed = u32::try_from(facts.orders.len()).unwrap_or(u32::MAX);
    let finished = format!(
        "SELECT o.id, o.store_id, o.status, o.status_at, o.placed_at, o.promised_at, o.lat, o.lon,
            o.total_minor, 0, 0, {RIDER}
         FROM rm_orders o WHERE o.status IN ({finished}) AND o.status_at >= ?1
         ORDER BY o.status_at DESC, o.id LIMIT ?2",
        finished = quoted(FINISHED_STATUSES)
    );
    let room = window.max_orders.saturating_sub(listed);
    let recent: Vec<OrderSummary> = conn
        .prepare_cached(&finished)?
        .query_map(params![window.half_hour_ago, room], summary)?
        .collect::<Result<_, _>>()?;
    facts.orders.extend(recent);
    let total = format!(
        "SELECT (SELECT count(*) FROM rm_orders WHERE status IN ({open}))
              + (SELECT count(*) FROM rm_orders WHERE status IN ({finished}) AND status_at >= ?1)",
        open = quoted(OPEN_STATUSES),
        finished = quoted(FINISHED_STATUSES)
    );
    facts.orders_total = count(
        conn.prepare_cached(&total)?
            .query_row([&window.half_hour_ago], |r| r.get(0))?,
    );
    Ok(())
}

fn riders(
    conn: &Connection,
    window: &Window,
    facts: &mut Facts,
) -> Result<(), flashkart_sync::Error> {
    facts.positions = conn
        .prepare_cached("SELECT rider_id, lat, lon, at FROM rm_riders")?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                Position {
                    lat: r.get(1)?,
                    lon: r.get(2)?,
                    at: r.get(3)?,
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    let per_rider = |sql: &str| -> Result<HashMap<String, u32>, flashkart_sync::Error> {
        let mut statement = conn.prepare_cached(sql)?;
        let rows = statement.query_map([&window.hour_ago], |r| {
            Ok((r.get::<_, String>(0)?, count(r.get(1)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    facts.offers = per_rider(
        "SELECT rider_id, count(*) FROM rm_offers WHERE offered_at >= ?1 GROUP BY rider_id",
    )?;
    facts.declines = per_rider(
        "SELECT rider_id, count(*) FROM rm_replies WHERE at >= ?1 AND reply = 'declined'
         GROUP BY rider_id",
    )?;
    facts.deliveries = per_rider(
        "SELECT r.rider_id, count(DISTINCT t.order_id) FROM rm_timeline t
         JOIN rm_offers f ON f.order_id = t.order_id
         JOIN rm_replies r ON r.assignment_id = f.assignment_id AND r.reply = 'accepted'
         WHERE t.status = 'DELIVERED' AND t.at >= ?1 GROUP BY r.rider_id",
    )?;
    let busy = format!(
        "SELECT DISTINCT r.rider_id FROM rm_orders o
         JOIN rm_offers f ON f.order_id = o.id
         JOIN rm_replies r ON r.assignment_id = f.assignment_id
         WHERE o.status IN ({open}) AND r.reply = 'accepted'",
        open = quoted(OPEN_STATUSES)
    );
    facts.busy = conn
        .prepare_cached(&busy)?
        .query_map([], |r| r.get(0))?
        .collect::<Result<BTreeSet<String>, _>>()?;
    Ok(())
}

/// The series from hour `from` on.
fn series(conn: &Connection, from: &str, facts: &mut Facts) -> Result<(), flashkart_sync::Error> {
    let by_hour = |sql: &str| -> Result<BTreeMap<String, (u32, u32)>, flashkart_sync::Error> {
        let mut statement = conn.prepare_cached(sql)?;
        let rows = statement.query_map([from], |r| {
            Ok((r.get::<_, String>(0)?, (count(r.get(1)?), count(r.get(2)?))))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    facts.placed = by_hour(
        "SELECT substr(placed_at, 1, 13), count(*), 0 FROM rm_orders
         WHERE placed_at >= ?1 GROUP BY 1",
    )?
    .into_iter()
    .map(|(hour, (n, _))| (hour, n))
    .collect();
    facts.delivered = by_hour(
        "SELECT substr(t.at, 1, 13), count(*),
            sum(CASE WHEN o.promised_at IS NOT NULL AND t.at <= o.promised_at THEN 1 ELSE 0 END)
         FROM rm_timeline t JOIN rm_orders o ON o.id = t.order_id
         WHERE t.status = 'DELIVERED' AND t.at >= ?1 GROUP BY 1",
    )?;
    let sql = format!(
        "SELECT substr(r.at, 1, 13), avg({PICK_SECONDS}) FROM rm_timeline r
         WHERE r.status = 'READY' AND r.at >= ?1 GROUP BY 1"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query([from])?;
    while let Some(row) = rows.next()? {
        let (hour, mean): (String, Option<f64>) = (row.get(0)?, row.get(1)?);
        if let Some(mean) = seconds(mean) {
            facts.pick.insert(hour, mean);
        }
    }
    Ok(())
}

/// The rider who accepted an order, if one did.
pub fn order_rider(
    conn: &Connection,
    order_id: &str,
) -> Result<Option<String>, flashkart_sync::Error> {
    use rusqlite::OptionalExtension;
    let sql = format!("SELECT {RIDER} FROM rm_orders o WHERE o.id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([order_id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}
