//! Re-reading the rows a store's changes touched, from its replica. A store is believed only
//! about what it owns: the cloud-owned rows of the replica decide which facts are kept, and a
//! store's timestamps are clamped to a window around the cloud's clock.

use flashkart_sync::packed_key::{self, KeyValue};
use rusqlite::types::FromSql;
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::Touched;

/// How far a store's clock may run ahead of the cloud's before its timestamps are clamped.
const STORE_CLOCK_AHEAD: time::Duration = time::Duration::minutes(2);

/// How far back a store's timestamps may go: a store may catch up after days offline, but
/// not rewrite last year.
const STORE_CLOCK_BEHIND: time::Duration = time::Duration::days(30);

/// The largest stock move a store may report, in pieces; bigger is not a real move, and would
/// let the sums overflow.
const MAX_MOVE_QTY: i64 = 1_000_000_000;

/// Rows re-read from a replica, by table.
#[derive(Debug, Default)]
pub(super) struct Rows {
    pub(super) events: Vec<EventRow>,
    pub(super) moves: Vec<(String, String, i64, String)>,
    pub(super) riders: Vec<(String, f64, f64, String)>,
    pub(super) line_progress: Vec<LineRow>,
    pub(super) replies: Vec<(String, String, String, String)>,
    /// Device status rows by device id; `None` when the store deleted the row.
    pub(super) devices: Vec<(String, Option<DeviceRow>)>,
    /// Delivery attempts by id; `None` when the store has no such row of its own.
    pub(super) pin_attempts: Vec<(String, Option<PinAttemptRow>)>,
    /// The store's certificates by id: (SHA-256, updated at); `None` when the store has no
    /// well-formed row of its own.
    pub(super) certificates: Vec<(String, Option<(String, String)>)>,
}

impl Rows {
    /// The newest store-clock time among the facts re-read (order events, replies, device
    /// changes; not riders' positions, whose times are the phones'), for the sync lag.
    pub(super) fn newest_fact_at(&self) -> Option<&str> {
        let events = self.events.iter().map(|e| e.at.as_str());
        let replies = self.replies.iter().map(|r| r.3.as_str());
        let devices = self
            .devices
            .iter()
            .filter_map(|(_, d)| d.as_ref().map(|d| d.changed_at.as_str()));
        events.chain(replies).chain(devices).max()
    }
}

/// A line's progress at the store: what was picked, short and substituted.
#[derive(Debug)]
pub(super) struct LineRow {
    pub(super) order_id: String,
    pub(super) line_no: i64,
    pub(super) picked_qty: i64,
    pub(super) short_qty: i64,
    /// The product ordered (the cloud's order line).
    pub(super) product_id: Option<String>,
    /// The cloud's order line's quantity and unit price, with `product_id`.
    pub(super) ordered: Option<(i64, i64)>,
    pub(super) substitute_product_id: Option<String>,
}

/// A delivery attempt at the store's door (an order routed to it).
#[derive(Debug)]
pub(super) struct PinAttemptRow {
    pub(super) order_id: String,
    pub(super) rider_id: String,
    pub(super) outcome: String,
    pub(super) at: String,
}

/// What a delivery attempt may come to (the edge's `delivery_attempts.outcome`).
const ATTEMPT_OUTCOMES: &[&str] = &["wrong_pin", "locked"];

/// Whether `sha256` is a SHA-256 as enrolment QR codes carry it: 64 lowercase hex digits.
pub(super) fn well_formed_sha256(sha256: &str) -> bool {
    sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[derive(Debug)]
pub(super) struct DeviceRow {
    pub(super) kind: String,
    pub(super) health: String,
    pub(super) reason: String,
    pub(super) faults: String,
    pub(super) changed_at: String,
}

/// The longest device id, reason or fault list a store may report: enough for any real one,
/// and a store cannot fill HQ's dashboard with megabytes of text.
const MAX_DEVICE_TEXT: usize = 200;
const DEVICE_KINDS: &[&str] = &["scanner", "scale", "printer"];
const DEVICE_HEALTH: &[&str] = &["connecting", "connected", "disconnected", "unhealthy"];

#[derive(Debug)]
pub(super) struct EventRow {
    pub(super) id: String,
    pub(super) order_id: String,
    pub(super) from_status: Option<String>,
    pub(super) to_status: String,
    pub(super) actor: String,
    pub(super) at: String,
    pub(super) note: Option<String>,
}

/// A key that is one text column (all followed tables but line progress).
fn single_text(pk: &[u8]) -> Option<String> {
    match <[KeyValue; 1]>::try_from(packed_key::decode(pk).ok()?) {
        Ok([KeyValue::Text(text)]) => Some(text),
        _ => None,
    }
}

/// A store's own row of a followed table: its key (one text column) and four columns.
type OwnRow<A, B, C, D> = (String, (A, B, C, D));

/// Reads a store's own rows from its replica and decides which are believed, logging each one
/// refused and why.
struct Judge<'a> {
    conn: &'a Connection,
    store_id: &'a str,
}

impl Judge<'_> {
    /// The store's own row of a followed table whose key `pk` is one text column: the key and
    /// four columns (`sql` binds the key and the store, so another store's row reads as none).
    fn own_row<A: FromSql, B: FromSql, C: FromSql, D: FromSql>(
        &self,
        pk: &[u8],
        sql: &str,
    ) -> rusqlite::Result<Option<OwnRow<A, B, C, D>>> {
        let Some(id) = single_text(pk) else {
            return Ok(None);
        };
        let row = self
            .conn
            .prepare_cached(sql)?
            .query_row([id.as_str(), self.store_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        Ok(row.map(|row| (id, row)))
    }

    /// Whether a cloud-owned row (`sql` with `params`: what the cloud gave this store) vouches
    /// for the store's row `key` of `table`; when none does, the row is refused.
    fn vouched(
        &self,
        table: &str,
        key: &str,
        sql: &str,
        params: &[&str],
        why: &str,
    ) -> rusqlite::Result<bool> {
        let held = self
            .conn
            .prepare_cached(sql)?
            .query_row(rusqlite::params_from_iter(params), |_| Ok(()))
            .optional()?
            .is_some();
        Ok(self.sane(table, key, held, why))
    }

    /// `sane`, or the row `key` of `table` is refused because `why`.
    fn sane(&self, table: &str, key: &str, sane: bool, why: &str) -> bool {
        if !sane {
            let store = self.store_id;
            tracing::warn!(%store, table, key, why, "store change not projected");
        }
        sane
    }
}

/// The cloud-owned rows that vouch for a store's rows, and why a row is refused without one.
const ROUTED_HERE: &str = "SELECT 1 FROM orders WHERE id = ?1 AND store_id = ?2";
const NOT_ROUTED_HERE: &str = "order not routed to this store";
const RIDER_HERE: &str = "SELECT 1 FROM riders WHERE id = ?1 AND home_store_id = ?2";
const NOT_A_RIDER: &str = "not a rider of this store";
const OFFERED_HERE: &str =
    "SELECT 1 FROM assignments WHERE id = ?1 AND store_id = ?2 AND rider_id = ?3";
const NOT_OFFERED: &str = "not an assignment of this store to this rider";

/// Re-reads the touched rows of `store_id`'s replica, keeping only the facts the store owns:
/// events, line progress and delivery attempts of orders routed to it, replies to its own
/// assignments by the rider offered, positions of its own riders, moves within sane bounds,
/// its own certificates' fingerprints when well-formed.
pub(super) fn read_rows(
    conn: &Connection,
    store_id: &str,
    touched: &Touched,
    now: OffsetDateTime,
) -> Result<Rows, flashkart_sync::Error> {
    let mut rows = Rows::default();
    let judge = Judge { conn, store_id };
    for (table, keys) in touched {
        for pk in keys {
            match *table {
                "order_events" => {
                    let Some(id) = single_text(pk) else { continue };
                    let row = conn
                        .prepare_cached(
                            "SELECT id, order_id, from_status, to_status, actor, at, note
                             FROM order_events WHERE id = ?1 AND store_id = ?2",
                        )?
                        .query_row([&id, store_id], |r| {
                            Ok(EventRow {
                                id: r.get(0)?,
                                order_id: r.get(1)?,
                                from_status: r.get(2)?,
                                to_status: r.get(3)?,
                                actor: r.get(4)?,
                                at: r.get(5)?,
                                note: r.get(6)?,
                            })
                        })
                        .optional()?;
                    let Some(mut event) = row else { continue };
                    let order = [event.order_id.as_str(), store_id];
                    if judge.vouched(table, &id, ROUTED_HERE, &order, NOT_ROUTED_HERE)? {
                        event.at = clamp_store_time(&event.at, now);
                        rows.events.push(event);
                    }
                }
                "stock_moves" => {
                    let sql = "SELECT id, product_id, qty, kind FROM stock_moves
                               WHERE id = ?1 AND store_id = ?2";
                    let Some((id, row)) = judge.own_row::<String, String, i64, String>(pk, sql)?
                    else {
                        continue;
                    };
                    let sane = (-MAX_MOVE_QTY..=MAX_MOVE_QTY).contains(&row.2);
                    if judge.sane(table, &id, sane, "quantity out of range") {
                        rows.moves.push(row);
                    }
                }
                "rider_positions" => {
                    let sql = "SELECT rider_id, lat, lon, at FROM rider_positions
                               WHERE rider_id = ?1 AND store_id = ?2";
                    let Some((id, (rider_id, lat, lon, at))) =
                        judge.own_row::<String, f64, f64, String>(pk, sql)?
                    else {
                        continue;
                    };
                    let on_earth = (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon);
                    if judge.vouched(table, &id, RIDER_HERE, &[&rider_id, store_id], NOT_A_RIDER)?
                        && judge.sane(table, &id, on_earth, "position off the Earth")
                    {
                        rows.riders
                            .push((rider_id, lat, lon, clamp_store_time(&at, now)));
                    }
                }
                "assignment_replies" => {
                    let sql = "SELECT assignment_id, rider_id, reply, at FROM assignment_replies
                               WHERE assignment_id = ?1 AND store_id = ?2";
                    let Some((id, (assignment_id, rider_id, reply, at))) =
                        judge.own_row::<String, String, String, String>(pk, sql)?
                    else {
                        continue;
                    };
                    let offer = [assignment_id.as_str(), store_id, &rider_id];
                    let known = matches!(reply.as_str(), "accepted" | "declined" | "expired");
                    if judge.vouched(table, &id, OFFERED_HERE, &offer, NOT_OFFERED)?
                        && judge.sane(table, &id, known, "unknown reply")
                    {
                        let at = clamp_store_time(&at, now);
                        rows.replies.push((assignment_id, rider_id, reply, at));
                    }
                }
                "order_line_progress" => {
                    let Ok([KeyValue::Text(order_id), KeyValue::Integer(line_no)]) =
                        packed_key::decode(pk)
                            .map(<[KeyValue; 2]>::try_from)
                            .unwrap_or(Err(Vec::new()))
                    else {
                        continue;
                    };
                    let order = [order_id.as_str(), store_id];
                    if !judge.vouched(table, &order_id, ROUTED_HERE, &order, NOT_ROUTED_HERE)? {
                        continue;
                    }
                    let line = conn
                        .prepare_cached(
                            "SELECT p.short_qty, l.product_id, p.substitute_product_id,
                                p.picked_qty, l.qty, l.unit_price_minor
                             FROM order_line_progress p
                             LEFT JOIN order_lines l
                                ON l.order_id = p.order_id AND l.line_no = p.line_no
                             WHERE p.order_id = ?1 AND p.line_no = ?2 AND p.store_id = ?3",
                        )?
                        .query_row(params![order_id, line_no, store_id], |r| {
                            let qty: Option<i64> = r.get(4)?;
                            let unit: Option<i64> = r.get(5)?;
                            Ok(LineRow {
                                order_id: order_id.clone(),
                                line_no,
                                short_qty: r.get(0)?,
                                product_id: r.get(1)?,
                                substitute_product_id: r.get(2)?,
                                picked_qty: r.get(3)?,
                                ordered: qty.zip(unit),
                            })
                        })
                        .optional()?;
                    if let Some(line) = line {
                        rows.line_progress.push(line);
                    }
                }
                "delivery_attempts" => {
                    let sql = "SELECT order_id, rider_id, outcome, at FROM delivery_attempts
                               WHERE id = ?1 AND store_id = ?2";
                    let Some(id) = single_text(pk) else { continue };
                    let Some((_, (order_id, rider_id, outcome, at))) =
                        judge.own_row::<String, String, String, String>(pk, sql)?
                    else {
                        rows.pin_attempts.push((id, None));
                        continue;
                    };
                    let order = [order_id.as_str(), store_id];
                    let known = ATTEMPT_OUTCOMES.contains(&outcome.as_str());
                    if judge.vouched(table, &id, ROUTED_HERE, &order, NOT_ROUTED_HERE)?
                        && judge.sane(table, &id, known, "unknown outcome")
                    {
                        let at = clamp_store_time(&at, now);
                        let attempt = PinAttemptRow {
                            order_id,
                            rider_id,
                            outcome,
                            at,
                        };
                        rows.pin_attempts.push((id, Some(attempt)));
                    }
                }
                "store_certificates" => {
                    let Some(id) = single_text(pk) else { continue };
                    let row: Option<(String, String)> = conn
                        .prepare_cached(
                            "SELECT sha256, updated_at FROM store_certificates
                             WHERE id = ?1 AND store_id = ?2",
                        )?
                        .query_row([&id, store_id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    // A malformed fingerprint is no fingerprint: no code pins it.
                    let row = row.filter(|(sha256, _)| {
                        judge.sane(table, &id, well_formed_sha256(sha256), "not a SHA-256")
                    });
                    let sane = id.len() <= MAX_DEVICE_TEXT;
                    if judge.sane(table, &id, sane, "certificate id too long") {
                        let row = row.map(|(sha256, at)| (sha256, clamp_store_time(&at, now)));
                        rows.certificates.push((id, row));
                    }
                }
                "device_status" => {
                    let Some(id) = single_text(pk) else { continue };
                    let row = conn
                        .prepare_cached(
                            "SELECT kind, health, reason, faults, changed_at FROM device_status
                             WHERE device_id = ?1 AND store_id = ?2",
                        )?
                        .query_row([&id, store_id], |r| {
                            Ok(DeviceRow {
                                kind: r.get(0)?,
                                health: r.get(1)?,
                                reason: r.get(2)?,
                                faults: r.get(3)?,
                                changed_at: r.get(4)?,
                            })
                        })
                        .optional()?;
                    let Some(mut device) = row else {
                        rows.devices.push((id, None));
                        continue;
                    };
                    let sane = id.len() <= MAX_DEVICE_TEXT
                        && device.reason.len() <= MAX_DEVICE_TEXT
                        && device.faults.len() <= MAX_DEVICE_TEXT
                        && DEVICE_KINDS.contains(&device.kind.as_str())
                        && DEVICE_HEALTH.contains(&device.health.as_str());
                    if judge.sane(table, &id, sane, "not a device status HQ can show") {
                        device.changed_at = clamp_store_time(&device.changed_at, now);
                        rows.devices.push((id, Some(device)));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(rows)
}

/// A store's timestamp, clamped to the window the cloud believes; unreadable ones become now.
fn clamp_store_time(at: &str, now: OffsetDateTime) -> String {
    let earliest = now - STORE_CLOCK_BEHIND;
    let latest = now + STORE_CLOCK_AHEAD;
    match crate::clock::parse(at) {
        Some(t) if t < earliest => crate::clock::rfc3339(earliest),
        Some(t) if t > latest => crate::clock::rfc3339(latest),
        Some(t) => crate::clock::rfc3339(t),
        None => crate::clock::rfc3339(now),
    }
}
