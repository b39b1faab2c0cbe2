//! What the dashboard reads from the read model: one read transaction per build (SQLite's, or
//! a read-only REPEATABLE READ one in PostgreSQL), so the store figures, the order list and the
//! riders agree with each other. Every query is bounded by an index (open statuses, the last
//! hour or day, an order's offers) or by the roster and the catalog, never by all the orders
//! ever taken; the list of orders is cut at `MAX_ORDERS`.
//!
//! Both engines ask the same questions; only the SQL differs where the dialects do (SQLite's
//! `?1` and julianday, PostgreSQL's `$1`, timestamptz and `ANY`). What a row means is written
//! once, against [`Row`], so the two cannot drift apart in how they count.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::types::FromSql as SqliteValue;
use rusqlite::{Connection, params};
use tokio_postgres::types::FromSql as PgValue;

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
    /// The active catalog products, by id.
    pub catalog_ids: Vec<String>,
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

/// The rider who accepted an order (`o`), the latest if several did. The same text on both
/// engines.
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

/// Seconds to the millisecond the timestamps have (julianday arithmetic leaves noise below;
/// PostgreSQL's is exact, and rounded the same so both engines give the same figure).
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

/// The facts before anything is read.
fn empty_facts(window: &Window) -> Facts {
    Facts {
        catalog_products: u32::try_from(window.catalog_ids.len()).unwrap_or(u32::MAX),
        ..Facts::default()
    }
}

/// The hour the series is read from, given what its finished hours hold now: the current hour
/// only if they are as last read, else the whole series (and the fingerprint to keep).
fn series_from(window: &Window, past: PastFingerprint) -> (&str, Option<PastFingerprint>) {
    if window.known_past == Some(past) {
        (&window.current_hour, None)
    } else {
        (&window.first_hour, Some(past))
    }
}

/// A value both engines read from a result column (text, integers, floats, booleans and their
/// `Option`s).
trait Column: SqliteValue + for<'a> PgValue<'a> {}

impl<T: SqliteValue + for<'a> PgValue<'a>> Column for T {}

/// A result row of either engine: what each row means is written once below, for both.
trait Row {
    type Error;
    fn col<T: Column>(&self, i: usize) -> Result<T, Self::Error>;
}

impl Row for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn col<T: Column>(&self, i: usize) -> Result<T, Self::Error> {
        self.get(i)
    }
}

impl Row for tokio_postgres::Row {
    type Error = tokio_postgres::Error;
    fn col<T: Column>(&self, i: usize) -> Result<T, Self::Error> {
        self.try_get(i)
    }
}

/// (store, status, orders, late, at risk, backlog) of the open orders.
fn add_open<R: Row>(facts: &mut Facts, row: &R) -> Result<(), R::Error> {
    let (store, status): (String, String) = (row.col(0)?, row.col(1)?);
    let figures = facts.open.entry(store).or_default();
    figures.by_state.insert(status, count(row.col(2)?));
    figures.late = figures.late.saturating_add(count(row.col(3)?));
    figures.at_risk = figures.at_risk.saturating_add(count(row.col(4)?));
    figures.backlog = figures.backlog.saturating_add(count(row.col(5)?));
    Ok(())
}

/// (store, picked up) in the last hour.
fn add_picked_up<R: Row>(facts: &mut Facts, row: &R) -> Result<(), R::Error> {
    facts.hour.entry(row.col(0)?).or_default().picked_up = count(row.col(1)?);
    Ok(())
}

/// (store, delivered, of which on time) in the last hour.
fn add_delivered<R: Row>(facts: &mut Facts, row: &R) -> Result<(), R::Error> {
    let figures: &mut HourFigures = facts.hour.entry(row.col(0)?).or_default();
    figures.delivered = count(row.col(1)?);
    figures.delivered_on_time = count(row.col(2)?);
    Ok(())
}

/// (store, mean pick seconds) in the last hour.
fn add_pick<R: Row>(facts: &mut Facts, row: &R) -> Result<(), R::Error> {
    facts.hour.entry(row.col(0)?).or_default().pick_to_ready_s = seconds(row.col(1)?);
    Ok(())
}

/// (store, catalog products available, of which 1-3).
fn add_stock<R: Row>(facts: &mut Facts, row: &R) -> Result<(), R::Error> {
    facts
        .stock
        .insert(row.col(0)?, (count(row.col(1)?), count(row.col(2)?)));
    Ok(())
}

/// (store, device, kind, health, reason, faults, changed at), in device order per store.
fn add_device<R: Row>(facts: &mut Facts, row: &R) -> Result<(), R::Error> {
    let faults: String = row.col(5)?;
    let device = DeviceSummary {
        id: row.col(1)?,
        kind: row.col(2)?,
        health: row.col(3)?,
        reason: row.col(4)?,
        faults: faults
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        changed_at: row.col(6)?,
    };
    facts.devices.entry(row.col(0)?).or_default().push(device);
    Ok(())
}

/// (store, lag ms, projected at).
fn add_sync<R: Row>(facts: &mut Facts, row: &R) -> Result<(), R::Error> {
    facts.sync.insert(
        row.col(0)?,
        SyncLag {
            lag_ms: row.col(1)?,
            projected_at: row.col(2)?,
        },
    );
    Ok(())
}

/// One row of the order list (`late` and `at_risk` as booleans, or 0 and 1 in SQLite).
fn order_summary<R: Row>(row: &R) -> Result<OrderSummary, R::Error> {
    Ok(OrderSummary {
        id: row.col(0)?,
        store_id: row.col(1)?,
        status: row.col(2)?,
        status_at: row.col(3)?,
        placed_at: row.col(4)?,
        promised_at: row.col(5)?,
        lat: row.col(6)?,
        lon: row.col(7)?,
        total_minor: row.col(8)?,
        late: row.col(9)?,
        at_risk: row.col(10)?,
        rider_id: row.col(11)?,
    })
}

/// (rider, lat, lon, at).
fn position<R: Row>(row: &R) -> Result<(String, Position), R::Error> {
    Ok((
        row.col(0)?,
        Position {
            lat: row.col(1)?,
            lon: row.col(2)?,
            at: row.col(3)?,
        },
    ))
}

/// (rider, how many).
fn per_rider<R: Row>(row: &R) -> Result<(String, u32), R::Error> {
    Ok((row.col(0)?, count(row.col(1)?)))
}

/// (hour key, a count, another count).
fn by_hour<R: Row>(row: &R) -> Result<(String, (u32, u32)), R::Error> {
    Ok((row.col(0)?, (count(row.col(1)?), count(row.col(2)?))))
}

/// (hour key, mean pick seconds); an hour without one is left out.
fn add_hour_pick<R: Row>(facts: &mut Facts, row: &R) -> Result<(), R::Error> {
    let (hour, mean): (String, Option<f64>) = (row.col(0)?, row.col(1)?);
    if let Some(mean) = seconds(mean) {
        facts.pick.insert(hour, mean);
    }
    Ok(())
}

const SYNC: &str = "SELECT store_id, lag_ms, projected_at FROM rm_store_sync";

const POSITIONS: &str = "SELECT rider_id, lat, lon, at FROM rm_riders";

/// Riders who accepted an open order.
fn busy_sql() -> String {
    format!(
        "SELECT DISTINCT r.rider_id FROM rm_orders o
         JOIN rm_offers f ON f.order_id = o.id
         JOIN rm_replies r ON r.assignment_id = f.assignment_id
         WHERE o.status IN ({open}) AND r.reply = 'accepted'",
        open = quoted(OPEN_STATUSES)
    )
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

/// Everything a snapshot needs from the read model in SQLite.
pub fn facts(conn: &Connection, window: &Window) -> Result<Read, flashkart_sync::Error> {
    // Rolled back when dropped: it only reads, and it makes the reads one snapshot.
    let tx = conn.unchecked_transaction()?;
    let mut facts = empty_facts(window);
    open_figures(&tx, window, &mut facts)?;
    hour_figures(&tx, window, &mut facts)?;
    stock(&tx, window, &mut facts)?;
    devices_and_sync(&tx, &mut facts)?;
    orders(&tx, window, &mut facts)?;
    riders(&tx, window, &mut facts)?;
    let past = past_fingerprint(&tx, window)?;
    let (from, whole_series) = series_from(window, past);
    series(&tx, from, &mut facts)?;
    Ok(Read {
        facts,
        whole_series,
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
        add_open(facts, row)?;
    }
    Ok(())
}

/// The last hour per store, counted as `Projection::store_figures` counts it.
fn hour_figures(
    conn: &Connection,
    window: &Window,
    facts: &mut Facts,
) -> Result<(), flashkart_sync::Error> {
    let mut statement = conn.prepare_cached(
        "SELECT store_id, count(*) FROM rm_timeline
         WHERE status = 'PICKED_UP' AND at >= ?1 GROUP BY store_id",
    )?;
    let mut rows = statement.query([&window.hour_ago])?;
    while let Some(row) = rows.next()? {
        add_picked_up(facts, row)?;
    }
    let mut statement = conn.prepare_cached(
        "SELECT t.store_id, count(*),
            sum(CASE WHEN o.promised_at IS NOT NULL AND t.at <= o.promised_at THEN 1 ELSE 0 END)
         FROM rm_timeline t JOIN rm_orders o ON o.id = t.order_id
         WHERE t.status = 'DELIVERED' AND t.at >= ?1 GROUP BY t.store_id",
    )?;
    let mut rows = statement.query([&window.hour_ago])?;
    while let Some(row) = rows.next()? {
        add_delivered(facts, row)?;
    }
    let sql = format!(
        "SELECT r.store_id, avg({PICK_SECONDS}) FROM rm_timeline r
         WHERE r.status = 'READY' AND r.at >= ?1 GROUP BY r.store_id"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query([&window.hour_ago])?;
    while let Some(row) = rows.next()? {
        add_pick(facts, row)?;
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
    let ids = serde_json::Value::from(window.catalog_ids.clone()).to_string();
    let mut rows = statement.query([&ids])?;
    while let Some(row) = rows.next()? {
        add_stock(facts, row)?;
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
        add_device(facts, row)?;
    }
    let mut statement = conn.prepare_cached(SYNC)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        add_sync(facts, row)?;
    }
    Ok(())
}

fn orders(
    conn: &Connection,
    window: &Window,
    facts: &mut Facts,
) -> Result<(), flashkart_sync::Error> {
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
        .query_map(params![window.now, window.max_orders], |r| order_summary(r))?
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
        .query_map(params![window.half_hour_ago, room], |r| order_summary(r))?
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
        .prepare_cached(POSITIONS)?
        .query_map([], |r| position(r))?
        .collect::<Result<_, _>>()?;
    let counts = |sql: &str| -> Result<HashMap<String, u32>, flashkart_sync::Error> {
        let mut statement = conn.prepare_cached(sql)?;
        let rows = statement.query_map([&window.hour_ago], |r| per_rider(r))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    facts.offers = counts(
        "SELECT rider_id, count(*) FROM rm_offers WHERE offered_at >= ?1 GROUP BY rider_id",
    )?;
    facts.declines = counts(
        "SELECT rider_id, count(*) FROM rm_replies WHERE at >= ?1 AND reply = 'declined'
         GROUP BY rider_id",
    )?;
    facts.deliveries = counts(
        "SELECT r.rider_id, count(DISTINCT t.order_id) FROM rm_timeline t
         JOIN rm_offers f ON f.order_id = t.order_id
         JOIN rm_replies r ON r.assignment_id = f.assignment_id AND r.reply = 'accepted'
         WHERE t.status = 'DELIVERED' AND t.at >= ?1 GROUP BY r.rider_id",
    )?;
    facts.busy = conn
        .prepare_cached(&busy_sql())?
        .query_map([], |r| r.get(0))?
        .collect::<Result<BTreeSet<String>, _>>()?;
    Ok(())
}

/// The series from hour `from` on.
fn series(conn: &Connection, from: &str, facts: &mut Facts) -> Result<(), flashkart_sync::Error> {
    let hours = |sql: &str| -> Result<BTreeMap<String, (u32, u32)>, flashkart_sync::Error> {
        let mut statement = conn.prepare_cached(sql)?;
        let rows = statement.query_map([from], |r| by_hour(r))?;
        Ok(rows.collect::<Result<_, _>>()?)
    };
    facts.placed = hours(
        "SELECT substr(placed_at, 1, 13), count(*), 0 FROM rm_orders
         WHERE placed_at >= ?1 GROUP BY 1",
    )?
    .into_iter()
    .map(|(hour, (n, _))| (hour, n))
    .collect();
    facts.delivered = hours(
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
        add_hour_pick(facts, row)?;
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

/// The same reads in PostgreSQL, where the read model is shared by every instance.
///
/// The dialect's differences: `$n` placeholders; timestamps compared as text as in SQLite, but
/// subtracted as `timestamptz` (no julianday); sums and averages cast back to BIGINT and
/// DOUBLE PRECISION (PostgreSQL widens them to NUMERIC); the catalog as a text array; and
/// `COLLATE "C"` wherever the order of text decides what is listed, so ties break by bytes as
/// in SQLite whatever the database's collation.
pub mod pg {
    use deadpool_postgres::Transaction;
    use tokio_postgres::IsolationLevel;
    use tokio_postgres::types::ToSql;

    use super::{
        FINISHED_STATUSES, Facts, OPEN_STATUSES, POSITIONS, PastFingerprint, RIDER, Read, SYNC,
        Window, add_delivered, add_device, add_hour_pick, add_open, add_pick, add_picked_up,
        add_stock, add_sync, busy_sql, by_hour, count, empty_facts, order_summary, per_rider,
        position, quoted, series_from,
    };
    use crate::CloudError;
    use crate::postgres::Postgres;

    /// [`super::LATE`] (`$1` is now).
    const LATE: &str = "(o.promised_at IS NOT NULL AND o.promised_at < $1)";

    /// [`super::AT_RISK`] (`$1` is now), in seconds between `timestamptz`s.
    const AT_RISK: &str = "(o.promised_at IS NOT NULL AND o.promised_at >= $1
        AND EXTRACT(EPOCH FROM o.promised_at::timestamptz - $1::text::timestamptz) * 4
            < EXTRACT(EPOCH FROM o.promised_at::timestamptz - o.placed_at::timestamptz))";

    /// [`super::PICK_SECONDS`]. PostgreSQL cannot be told which index to use, and with the
    /// status in the WHERE clause it ANDs the by-order index with every ACCEPTED event ever
    /// from the (status, at) index for each READY one (5 s instead of 90 ms for the series
    /// over 10,000 orders). Filtering in the aggregate leaves it only the order's own events.
    const PICK_SECONDS: &str = "EXTRACT(EPOCH FROM r.at::timestamptz
        - (SELECT min(a.at) FILTER (WHERE a.status = 'ACCEPTED') FROM rm_timeline a
           WHERE a.order_id = r.order_id AND a.store_id = r.store_id)::timestamptz)";

    type Params<'a> = [&'a (dyn ToSql + Sync)];

    /// Every row of a query, its statement prepared once per connection.
    async fn rows(
        tx: &Transaction<'_>,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, CloudError> {
        let statement = tx.prepare_cached(sql).await?;
        Ok(tx.query(&statement, params).await?)
    }

    /// Everything a snapshot needs from the read model in PostgreSQL.
    pub async fn facts(pg: &Postgres, window: &Window) -> Result<Read, CloudError> {
        let mut client = pg.client().await?;
        // One snapshot for every read, as SQLite's read transaction is; it writes nothing.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let mut facts = empty_facts(window);
        open_figures(&tx, window, &mut facts).await?;
        hour_figures(&tx, window, &mut facts).await?;
        stock(&tx, window, &mut facts).await?;
        devices_and_sync(&tx, &mut facts).await?;
        orders(&tx, window, &mut facts).await?;
        riders(&tx, window, &mut facts).await?;
        let past = past_fingerprint(&tx, window).await?;
        let (from, whole_series) = series_from(window, past);
        series(&tx, from, &mut facts).await?;
        tx.commit().await?;
        Ok(Read {
            facts,
            whole_series,
        })
    }

    async fn past_fingerprint(
        tx: &Transaction<'_>,
        window: &Window,
    ) -> Result<PastFingerprint, CloudError> {
        let range: &Params<'_> = &[&window.first_hour, &window.current_hour];
        let placed = tx
            .prepare_cached(
                "SELECT count(*) FROM rm_orders WHERE placed_at >= $1 AND placed_at < $2",
            )
            .await?;
        let events = tx
            .prepare_cached(
                "SELECT count(*) FROM rm_timeline
                 WHERE status IN ('ACCEPTED', 'READY', 'DELIVERED') AND at >= $1 AND at < $2",
            )
            .await?;
        Ok(PastFingerprint {
            placed: tx.query_one(&placed, range).await?.try_get(0)?,
            events: tx.query_one(&events, range).await?.try_get(0)?,
        })
    }

    async fn open_figures(
        tx: &Transaction<'_>,
        window: &Window,
        facts: &mut Facts,
    ) -> Result<(), CloudError> {
        let sql = format!(
            "SELECT o.store_id, o.status, count(*),
                sum(CASE WHEN {LATE} THEN 1 ELSE 0 END)::BIGINT,
                sum(CASE WHEN {AT_RISK} THEN 1 ELSE 0 END)::BIGINT,
                sum(o.open)::BIGINT
             FROM rm_orders o WHERE o.status IN ({open})
             GROUP BY o.store_id, o.status",
            open = quoted(OPEN_STATUSES)
        );
        for row in rows(tx, &sql, &[&window.now]).await? {
            add_open(facts, &row)?;
        }
        Ok(())
    }

    /// The last hour per store, counted as `Projection::store_figures` counts it.
    async fn hour_figures(
        tx: &Transaction<'_>,
        window: &Window,
        facts: &mut Facts,
    ) -> Result<(), CloudError> {
        let hour_ago: &Params<'_> = &[&window.hour_ago];
        let picked_up = "SELECT store_id, count(*) FROM rm_timeline
            WHERE status = 'PICKED_UP' AND at >= $1 GROUP BY store_id";
        for row in rows(tx, picked_up, hour_ago).await? {
            add_picked_up(facts, &row)?;
        }
        let delivered = "SELECT t.store_id, count(*),
                sum(CASE WHEN o.promised_at IS NOT NULL AND t.at <= o.promised_at
                    THEN 1 ELSE 0 END)::BIGINT
            FROM rm_timeline t JOIN rm_orders o ON o.id = t.order_id
            WHERE t.status = 'DELIVERED' AND t.at >= $1 GROUP BY t.store_id";
        for row in rows(tx, delivered, hour_ago).await? {
            add_delivered(facts, &row)?;
        }
        let pick = format!(
            "SELECT r.store_id, avg({PICK_SECONDS})::DOUBLE PRECISION FROM rm_timeline r
             WHERE r.status = 'READY' AND r.at >= $1 GROUP BY r.store_id"
        );
        for row in rows(tx, &pick, hour_ago).await? {
            add_pick(facts, &row)?;
        }
        Ok(())
    }

    async fn stock(
        tx: &Transaction<'_>,
        window: &Window,
        facts: &mut Facts,
    ) -> Result<(), CloudError> {
        let sql = "SELECT store_id,
                sum(CASE WHEN on_hand - reserved > 0 THEN 1 ELSE 0 END)::BIGINT,
                sum(CASE WHEN on_hand - reserved > 0 AND on_hand - reserved <= 3
                    THEN 1 ELSE 0 END)::BIGINT
            FROM rm_stock WHERE product_id = ANY($1)
            GROUP BY store_id";
        for row in rows(tx, sql, &[&window.catalog_ids]).await? {
            add_stock(facts, &row)?;
        }
        Ok(())
    }

    /// Every store's devices and sync lag: a few rows per store.
    async fn devices_and_sync(tx: &Transaction<'_>, facts: &mut Facts) -> Result<(), CloudError> {
        let devices = "SELECT store_id, device_id, kind, health, reason, faults, changed_at
            FROM rm_devices ORDER BY store_id COLLATE \"C\", device_id COLLATE \"C\"";
        for row in rows(tx, devices, &[]).await? {
            add_device(facts, &row)?;
        }
        for row in rows(tx, SYNC, &[]).await? {
            add_sync(facts, &row)?;
        }
        Ok(())
    }

    async fn orders(
        tx: &Transaction<'_>,
        window: &Window,
        facts: &mut Facts,
    ) -> Result<(), CloudError> {
        // The most urgent first: the earliest promise; orders without one last.
        let open = format!(
            "SELECT o.id, o.store_id, o.status, o.status_at, o.placed_at, o.promised_at, o.lat,
                o.lon, o.total_minor, {LATE}, {AT_RISK}, {RIDER}
             FROM rm_orders o WHERE o.status IN ({open})
             ORDER BY o.promised_at IS NULL, o.promised_at COLLATE \"C\", o.id COLLATE \"C\"
             LIMIT $2",
            open = quoted(OPEN_STATUSES)
        );
        let limit = i64::from(window.max_orders);
        facts.orders = rows(tx, &open, &[&window.now, &limit])
            .await?
            .iter()
            .map(order_summary)
            .collect::<Result<_, _>>()?;
        let listed = u32::try_from(facts.orders.len()).unwrap_or(u32::MAX);
        let finished = format!(
            "SELECT o.id, o.store_id, o.status, o.status_at, o.placed_at, o.promised_at, o.lat,
                o.lon, o.total_minor, false, false, {RIDER}
             FROM rm_orders o WHERE o.status IN ({finished}) AND o.status_at >= $1
             ORDER BY o.status_at COLLATE \"C\" DESC, o.id COLLATE \"C\" LIMIT $2",
            finished = quoted(FINISHED_STATUSES)
        );
        let room = i64::from(window.max_orders.saturating_sub(listed));
        let recent = rows(tx, &finished, &[&window.half_hour_ago, &room]).await?;
        for row in &recent {
            facts.orders.push(order_summary(row)?);
        }
        let total = format!(
            "SELECT (SELECT count(*) FROM rm_orders WHERE status IN ({open}))
                  + (SELECT count(*) FROM rm_orders
                     WHERE status IN ({finished}) AND status_at >= $1)",
            open = quoted(OPEN_STATUSES),
            finished = quoted(FINISHED_STATUSES)
        );
        let total = tx.prepare_cached(&total).await?;
        facts.orders_total = count(
            tx.query_one(&total, &[&window.half_hour_ago])
                .await?
                .try_get(0)?,
        );
        Ok(())
    }

    async fn riders(
        tx: &Transaction<'_>,
        window: &Window,
        facts: &mut Facts,
    ) -> Result<(), CloudError> {
        facts.positions = rows(tx, POSITIONS, &[])
            .await?
            .iter()
            .map(position)
            .collect::<Result<_, _>>()?;
        let hour_ago: &Params<'_> = &[&window.hour_ago];
        let offers = "SELECT rider_id, count(*) FROM rm_offers WHERE offered_at >= $1
            GROUP BY rider_id";
        facts.offers = rows(tx, offers, hour_ago)
            .await?
            .iter()
            .map(per_rider)
            .collect::<Result<_, _>>()?;
        let declines = "SELECT rider_id, count(*) FROM rm_replies
            WHERE at >= $1 AND reply = 'declined' GROUP BY rider_id";
        facts.declines = rows(tx, declines, hour_ago)
            .await?
            .iter()
            .map(per_rider)
            .collect::<Result<_, _>>()?;
        let deliveries = "SELECT r.rider_id, count(DISTINCT t.order_id) FROM rm_timeline t
            JOIN rm_offers f ON f.order_id = t.order_id
            JOIN rm_replies r ON r.assignment_id = f.assignment_id AND r.reply = 'accepted'
            WHERE t.status = 'DELIVERED' AND t.at >= $1 GROUP BY r.rider_id";
        facts.deliveries = rows(tx, deliveries, hour_ago)
            .await?
            .iter()
            .map(per_rider)
            .collect::<Result<_, _>>()?;
        facts.busy = rows(tx, &busy_sql(), &[])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// The series from hour `from` on.
    async fn series(tx: &Transaction<'_>, from: &str, facts: &mut Facts) -> Result<(), CloudError> {
        let from: &Params<'_> = &[&from];
        let placed = "SELECT substr(placed_at, 1, 13), count(*), 0::BIGINT FROM rm_orders
            WHERE placed_at >= $1 GROUP BY 1";
        for row in rows(tx, placed, from).await? {
            let (hour, (n, _)) = by_hour(&row)?;
            facts.placed.insert(hour, n);
        }
        let delivered = "SELECT substr(t.at, 1, 13), count(*),
                sum(CASE WHEN o.promised_at IS NOT NULL AND t.at <= o.promised_at
                    THEN 1 ELSE 0 END)::BIGINT
            FROM rm_timeline t JOIN rm_orders o ON o.id = t.order_id
            WHERE t.status = 'DELIVERED' AND t.at >= $1 GROUP BY 1";
        facts.delivered = rows(tx, delivered, from)
            .await?
            .iter()
            .map(by_hour)
            .collect::<Result<_, _>>()?;
        let pick = format!(
            "SELECT substr(r.at, 1, 13), avg({PICK_SECONDS})::DOUBLE PRECISION FROM rm_timeline r
             WHERE r.status = 'READY' AND r.at >= $1 GROUP BY 1"
        );
        for row in rows(tx, &pick, from).await? {
            add_hour_pick(facts, &row)?;
        }
        Ok(())
    }

    /// The rider who accepted an order, if one did.
    pub async fn order_rider(pg: &Postgres, order_id: &str) -> Result<Option<String>, CloudError> {
        let client = pg.client().await?;
        let sql = format!("SELECT {RIDER} FROM rm_orders o WHERE o.id = $1");
        let statement = client.prepare_cached(&sql).await?;
        Ok(client
            .query_opt(&statement, &[&order_id])
            .await?
            .map(|row| row.try_get::<_, Option<String>>(0))
            .transpose()?
            .flatten())
    }
}
