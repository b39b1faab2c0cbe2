//! Cash on delivery at the store: what a rider holds, handing it in, and the shift that closes.
//!
//! Why a module of its own: cash is money the store answers for. Riders collect it at the door
//! (the rider desk records `deliveries.cash_collected_minor`) and hand it in at the store; the
//! store then records what it counted against what it expected (`cash_handins`, edge-owned and
//! synced, so HQ can flag differences) and closes the rider's shift here. None of that is about
//! MQTT or HTTP, so it lives with the other store work.
//!
//! **Expected** is the cash of this rider's deliveries at this store that no hand-in has
//! covered yet. A hand-in marks every delivery it covers with its id
//! (`deliveries.cash_handin_id`) in the same write that records it, rather than comparing
//! times: a delivery's `at` is the rider's phone clock, and a marked row is covered exactly
//! once whatever the clocks said. The writer is single, so a delivery committed before the
//! hand-in is in it and one committed after is not; a retried or repeated hand-in finds nothing
//! open and is refused (409), so no cash is counted twice.
//!
//! **Closing the shift** lists the rider in `rider_sign_offs` (local to the store, not synced).
//! The riders service reads that list with the roster and treats a listed rider like a revoked
//! one, without touching its certificates: its live connections are closed, new ones refused at
//! CONNECT, its messages dropped, its open offers withdrawn and new ones not published (they
//! expire, so the cloud re-plans them), and it no longer counts as online. Since its positions
//! stop, the cloud's dispatcher also sees it go offline. It ends when a lead signs the rider on
//! again ([`sign_on`]). A hand-in is refused while the rider still has orders in hand or
//! accepted, since a signed-off rider could deliver neither.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::limits;
use crate::work::ctx::{CashChange, Ctx, new_id};

/// How many earlier hand-ins [`holding`] lists.
pub const RECENT_HANDINS: usize = 10;

/// What the member of staff counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandInRequest {
    /// Cash counted, minor units (0..=10^10).
    pub amount_minor: i64,
    /// Why the amount differs, or anything else worth keeping (at most 500 characters).
    #[serde(default)]
    pub note: Option<String>,
}

/// A recorded hand-in.
#[derive(Debug, Clone, Serialize)]
pub struct HandIn {
    pub handin_id: String,
    pub rider_id: String,
    pub amount_minor: i64,
    pub expected_minor: i64,
    /// Handed in minus expected: negative when cash is missing.
    pub difference_minor: i64,
    pub currency: String,
    /// Cash deliveries it covered.
    pub deliveries: usize,
    pub shift_closed: bool,
}

/// Cash a rider holds in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenCash {
    pub currency: String,
    pub amount_minor: i64,
    pub deliveries: usize,
}

/// An earlier hand-in, as [`holding`] lists it.
#[derive(Debug, Clone, Serialize)]
pub struct HandInRecord {
    pub handin_id: String,
    pub at: String,
    pub amount_minor: i64,
    pub expected_minor: i64,
    pub difference_minor: i64,
    pub currency: String,
    pub staff_id: String,
    pub note: Option<String>,
}

/// What a rider holds now, whether it is on shift here, and its last hand-ins.
#[derive(Debug, Clone, Serialize)]
pub struct Holding {
    pub rider_id: String,
    /// False from a hand-in until a lead signs the rider on again.
    pub on_shift: bool,
    pub signed_off_at: Option<String>,
    /// What a hand-in now would expect; `None` with cash in more than one currency (a
    /// hand-in is then refused; `open` shows each).
    pub expected_minor: Option<i64>,
    pub currency: Option<String>,
    /// Cash not yet handed in, per currency.
    pub open: Vec<OpenCash>,
    /// The last [`RECENT_HANDINS`] hand-ins, newest first.
    pub handins: Vec<HandInRecord>,
}

/// A rider signed on again.
#[derive(Debug, Clone, Serialize)]
pub struct SignOn {
    pub rider_id: String,
    pub on_shift: bool,
    /// Whether a hand-in had closed its shift (false: it was on shift already).
    pub was_signed_off: bool,
}

/// Records the cash `rider_id` hands in, covering every cash delivery of the rider at this
/// store not covered yet, and closes the rider's shift here (see the module's documentation).
///
/// Refused (409, nothing written): the rider has orders in hand or accepted; no cash delivery
/// is open (nothing to hand in: also what a repeated request gets); the open cash is in more
/// than one currency; nothing is expected and nothing handed in. An amount different from the
/// expected one is recorded as counted and logged at warn.
pub fn hand_in(
    conn: &Connection,
    ctx: &mut Ctx,
    rider_id: &str,
    request: &HandInRequest,
) -> Result<HandIn, Error> {
    limits::id("rider_id", rider_id)?;
    let amount = limits::money_minor("amount_minor", request.amount_minor)?;
    let note = request
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if let Some(note) = note {
        limits::text("note", note, limits::MAX_NOTE)?;
    }
    ensure_known(conn, &ctx.store_id, rider_id)?;
    let busy = orders_in_hand(conn, &ctx.store_id, rider_id)?;
    if !busy.is_empty() {
        return Err(Error::Conflict(format!(
            "rider {rider_id} still has order(s) {} in hand or accepted: deliver them (or hand \
             them back) before handing in the cash, which closes the shift",
            busy.join(", ")
        )));
    }
    let (open, deliveries) = open_cash(conn, &ctx.store_id, rider_id)?;
    if deliveries == 0 {
        return Err(Error::Conflict(format!(
            "nothing to hand in: rider {rider_id} has no cash delivery at this store since its \
             last hand-in"
        )));
    }
    let [only] = open.as_slice() else {
        let currencies: Vec<&str> = open.iter().map(|o| o.currency.as_str()).collect();
        return Err(Error::Conflict(format!(
            "rider {rider_id} holds cash in more than one currency ({}): a hand-in is in one; \
             ask support",
            currencies.join(", ")
        )));
    };
    let (expected, currency) = (only.amount_minor, only.currency.clone());
    if expected == 0 && amount == 0 {
        return Err(Error::Conflict(format!(
            "nothing to hand in: rider {rider_id} collected no cash since its last hand-in"
        )));
    }
    let difference = amount
        .checked_sub(expected)
        .ok_or_else(|| Error::Invalid("the difference of the amounts overflows".into()))?;
    let handin_id = new_id();
    conn.prepare_cached(
        "INSERT INTO cash_handins (id, store_id, rider_id, at, amount_minor, expected_minor,
            currency, staff_id, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        handin_id,
        ctx.store_id,
        rider_id,
        ctx.at,
        amount,
        expected,
        currency,
        ctx.actor,
        note
    ])?;
    let covered = conn
        .prepare_cached(
            "UPDATE deliveries SET cash_handin_id = ?3
             WHERE rider_id = ?1 AND store_id = ?2
               AND cash_collected_minor IS NOT NULL AND cash_handin_id IS NULL",
        )?
        .execute(params![rider_id, ctx.store_id, handin_id])?;
    if covered != deliveries {
        // The same transaction read them a moment ago; anything else is a bug, and the write
        // is rolled back rather than recording an expected amount that is not what it covers.
        return Err(Error::Conflict(format!(
            "the open deliveries of rider {rider_id} changed during the hand-in ({deliveries} \
             read, {covered} covered): try again"
        )));
    }
    conn.prepare_cached(
        "INSERT INTO rider_sign_offs (rider_id, signed_off_at, handin_id, staff_id)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (rider_id) DO UPDATE SET signed_off_at = excluded.signed_off_at,
            handin_id = excluded.handin_id, staff_id = excluded.staff_id",
    )?
    .execute(params![rider_id, ctx.at, handin_id, ctx.actor])?;
    if difference != 0 {
        tracing::warn!(
            rider = rider_id,
            handin = %handin_id,
            expected_minor = expected,
            amount_minor = amount,
            difference_minor = difference,
            currency,
            staff = %ctx.actor,
            "cash handed in differs from the cash collected: recorded for HQ"
        );
    } else {
        tracing::info!(rider = rider_id, handin = %handin_id, amount_minor = amount, currency,
            "cash handed in; shift closed");
    }
    ctx.cash_handed_in(CashChange {
        handin_id: handin_id.clone(),
        rider_id: rider_id.to_owned(),
        amount_minor: amount,
        expected_minor: expected,
        difference_minor: difference,
        currency: currency.clone(),
    });
    Ok(HandIn {
        handin_id,
        rider_id: rider_id.to_owned(),
        amount_minor: amount,
        expected_minor: expected,
        difference_minor: difference,
        currency,
        deliveries,
        shift_closed: true,
    })
}

/// What `rider_id` holds at `store_id` now, whether it is on shift, and its last hand-ins.
pub fn holding(conn: &Connection, store_id: &str, rider_id: &str) -> Result<Holding, Error> {
    limits::id("rider_id", rider_id)?;
    ensure_known(conn, store_id, rider_id)?;
    let (open, _) = open_cash(conn, store_id, rider_id)?;
    let (expected_minor, currency) = match open.as_slice() {
        [] => (Some(0), None),
        [only] => (Some(only.amount_minor), Some(only.currency.clone())),
        _ => (None, None),
    };
    let signed_off_at = signed_off_at(conn, rider_id)?;
    let handins = conn
        .prepare_cached(
            "SELECT id, at, amount_minor, expected_minor, currency, staff_id, note
             FROM cash_handins WHERE rider_id = ?1 AND store_id = ?2
             ORDER BY at DESC, id DESC LIMIT ?3",
        )?
        .query_map(
            params![
                rider_id,
                store_id,
                i64::try_from(RECENT_HANDINS).unwrap_or(i64::MAX)
            ],
            |r| {
                let (amount, expected): (i64, i64) = (r.get(2)?, r.get(3)?);
                Ok(HandInRecord {
                    handin_id: r.get(0)?,
                    at: r.get(1)?,
                    amount_minor: amount,
                    expected_minor: expected,
                    difference_minor: amount
                        .checked_sub(expected)
                        .ok_or(rusqlite::Error::IntegralValueOutOfRange(2, amount))?,
                    currency: r.get(4)?,
                    staff_id: r.get(5)?,
                    note: r.get(6)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Holding {
        rider_id: rider_id.to_owned(),
        on_shift: signed_off_at.is_none(),
        signed_off_at,
        expected_minor,
        currency,
        open,
        handins,
    })
}

/// Ends the sign-off a hand-in put on `rider_id`: the riders service allows it again at its
/// next roster read (the daemon asks for one at once).
pub fn sign_on(conn: &Connection, ctx: &mut Ctx, rider_id: &str) -> Result<SignOn, Error> {
    limits::id("rider_id", rider_id)?;
    ensure_known(conn, &ctx.store_id, rider_id)?;
    let removed = conn
        .prepare_cached("DELETE FROM rider_sign_offs WHERE rider_id = ?1")?
        .execute([rider_id])?;
    if removed > 0 {
        tracing::info!(rider = rider_id, by = %ctx.actor, "rider signed on again");
    }
    Ok(SignOn {
        rider_id: rider_id.to_owned(),
        on_shift: true,
        was_signed_off: removed > 0,
    })
}

/// When a hand-in closed `rider_id`'s shift here, if it is closed.
pub fn signed_off_at(conn: &Connection, rider_id: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .prepare_cached("SELECT signed_off_at FROM rider_sign_offs WHERE rider_id = ?1")?
        .query_row([rider_id], |r| r.get(0))
        .optional()?)
}

/// Refuses a rider this store has never heard of: not on its roster and without a delivery
/// here.
fn ensure_known(conn: &Connection, store_id: &str, rider_id: &str) -> Result<(), Error> {
    let known: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM riders WHERE id = ?1)
                 OR EXISTS (SELECT 1 FROM deliveries WHERE rider_id = ?1 AND store_id = ?2)",
        )?
        .query_row(params![rider_id, store_id], |r| r.get(0))?;
    if known {
        Ok(())
    } else {
        Err(Error::not_found("rider", rider_id))
    }
}

/// Orders the rider has picked up here and not delivered, or accepted and not picked up yet
/// (at most five, for the refusal).
fn orders_in_hand(conn: &Connection, store_id: &str, rider_id: &str) -> Result<Vec<String>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT p.order_id FROM handoffs h JOIN order_progress p ON p.order_id = h.order_id
             WHERE h.rider_id = ?1 AND h.store_id = ?2 AND p.status = 'PICKED_UP'
             UNION
             SELECT a.order_id FROM assignments a
             JOIN assignment_replies r ON r.assignment_id = a.id AND r.reply = 'accepted'
             JOIN order_progress p ON p.order_id = a.order_id
             WHERE a.rider_id = ?1 AND a.store_id = ?2
               AND p.status IN ('ACCEPTED', 'PICKING', 'PACKED', 'READY', 'ASSIGNED')
               AND NOT EXISTS (SELECT 1 FROM handoffs h WHERE h.order_id = a.order_id)
             ORDER BY 1 LIMIT 5",
        )?
        .query_map(params![rider_id, store_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// The rider's cash not yet handed in, per currency (sorted), and how many deliveries it is.
/// Summed with checked arithmetic: an overflow is an error, never a wrapped amount.
fn open_cash(
    conn: &Connection,
    store_id: &str,
    rider_id: &str,
) -> Result<(Vec<OpenCash>, usize), Error> {
    let rows: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT d.cash_collected_minor, coalesce(o.currency, '')
             FROM deliveries d LEFT JOIN orders o ON o.id = d.order_id
             WHERE d.rider_id = ?1 AND d.store_id = ?2
               AND d.cash_collected_minor IS NOT NULL AND d.cash_handin_id IS NULL",
        )?
        .query_map(params![rider_id, store_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let count = rows.len();
    let mut by_currency: BTreeMap<String, (i64, usize)> = BTreeMap::new();
    for (amount, currency) in rows {
        let entry = by_currency.entry(currency).or_default();
        entry.0 = entry.0.checked_add(amount).ok_or_else(|| {
            Error::Conflict(format!(
                "the cash rider {rider_id} collected does not fit in an amount: ask support"
            ))
        })?;
        entry.1 += 1;
    }
    let open = by_currency
        .into_iter()
        .map(|(currency, (amount_minor, deliveries))| OpenCash {
            currency,
            amount_minor,
            deliveries,
        })
        .collect();
    Ok((open, count))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use flashkart_sync::schema::store::MIGRATIONS;
    use flashkart_sync::{StoreConfig, StoreDb};

    use super::*;

    const STORE: &str = "s1";

    async fn open(dir: &tempfile::TempDir) -> StoreDb {
        let mut config = StoreConfig::new(dir.path().join("store.db"));
        config.extension_dir = Some(dir.path().join("ext"));
        StoreDb::open(config, MIGRATIONS).await.expect("open")
    }

    async fn sql(db: &StoreDb, sql: &'static str) {
        db.write(move |conn| conn.execute_batch(sql).map_err(flashkart_sync::Error::from))
            .await
            .expect(sql);
    }

    /// A delivered order of `rider` at `store`, paid in `currency` (cash `collected`, or card).
    fn delivered(
        order: &str,
        rider: &str,
        store: &str,
        currency: &str,
        collected: Option<i64>,
    ) -> String {
        let method = if collected.is_some() { "cash" } else { "card" };
        let collected = collected.map_or_else(|| "NULL".to_owned(), |c| c.to_string());
        format!(
            "INSERT INTO orders (id, store_id, payment_method, currency)
               VALUES ('{order}', '{store}', '{method}', '{currency}');
             INSERT INTO deliveries (order_id, store_id, rider_id, at, cash_collected_minor)
               VALUES ('{order}', '{store}', '{rider}', '2026-12-04T17:00:00.000Z', {collected});"
        )
    }

    async fn seed(db: &StoreDb, rows: Vec<String>) {
        let rows = rows.concat();
        db.write(move |conn| {
            conn.execute_batch(&rows)
                .map_err(flashkart_sync::Error::from)
        })
        .await
        .expect("seed");
    }

    async fn hand(db: &StoreDb, rider: &'static str, amount: i64) -> Result<HandIn, Error> {
        db.write(move |conn| {
            let mut ctx = Ctx::new(STORE, "lea");
            let request = HandInRequest {
                amount_minor: amount,
                note: None,
            };
            hand_in(conn, &mut ctx, rider, &request)
        })
        .await
    }

    async fn count(db: &StoreDb, sql: &'static str) -> i64 {
        db.read(move |conn| {
            conn.query_row(sql, [], |r| r.get(0))
                .map_err(flashkart_sync::Error::from)
        })
        .await
        .expect(sql)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hand_in_covers_the_open_cash_deliveries_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(&dir).await;
        sql(
            &db,
            "INSERT INTO riders (id, home_store_id) VALUES ('r1', 's1'), ('r2', 's1')",
        )
        .await;
        seed(
            &db,
            vec![
                delivered("o1", "r1", STORE, "EUR", Some(1_000)),
                delivered("o2", "r1", STORE, "EUR", Some(500)),
                // A card order, another rider's cash, and r1's cash at another store: not r1's
                // to hand in here.
                delivered("o3", "r1", STORE, "EUR", None),
                delivered("o4", "r2", STORE, "EUR", Some(700)),
                delivered("o5", "r1", "s2", "EUR", Some(300)),
            ],
        )
        .await;
        let view = db
            .read(|conn| holding(conn, STORE, "r1"))
            .await
            .expect("holding");
        assert_eq!((view.expected_minor, view.on_shift), (Some(1_500), true));

        let first = hand(&db, "r1", 1_400).await.expect("hand-in");
        assert_eq!(
            (
                first.expected_minor,
                first.difference_minor,
                first.deliveries,
                first.currency.as_str()
            ),
            (1_500, -100, 2, "EUR")
        );
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM deliveries WHERE cash_handin_id IS NOT NULL"
            )
            .await,
            2
        );
        // Again, nothing is open: refused, nothing counted twice.
        assert!(matches!(
            hand(&db, "r1", 1_400).await,
            Err(Error::Conflict(_))
        ));
        // A later delivery is the next hand-in's, alone.
        seed(&db, vec![delivered("o6", "r1", STORE, "EUR", Some(250))]).await;
        let second = hand(&db, "r1", 250).await.expect("second hand-in");
        assert_eq!((second.expected_minor, second.difference_minor), (250, 0));
        assert_eq!(count(&db, "SELECT count(*) FROM cash_handins").await, 2);
        let view = db
            .read(|conn| holding(conn, STORE, "r1"))
            .await
            .expect("holding");
        assert!(!view.on_shift && view.signed_off_at.is_some());
        assert_eq!(view.expected_minor, Some(0));
        assert_eq!(
            view.handins
                .iter()
                .map(|h| (h.amount_minor, h.expected_minor))
                .collect::<Vec<_>>(),
            [(250, 250), (1_400, 1_500)]
        );
        // Signed on again; r2 was never signed off.
        let signed_on = db
            .write(|conn| sign_on(conn, &mut Ctx::new(STORE, "lea"), "r1"))
            .await
            .expect("sign on");
        assert!(signed_on.was_signed_off);
        assert_eq!(count(&db, "SELECT count(*) FROM rider_sign_offs").await, 0);
        db.close().await.expect("close");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_hand_ins_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(&dir).await;
        sql(
            &db,
            "INSERT INTO riders (id, home_store_id) VALUES ('mixed', 's1'), ('busy', 's1'),
                ('zero', 's1'), ('nothing', 's1')",
        )
        .await;
        seed(
            &db,
            vec![
                delivered("m1", "mixed", STORE, "EUR", Some(100)),
                delivered("m2", "mixed", STORE, "CHF", Some(100)),
                delivered("b1", "busy", STORE, "EUR", Some(100)),
                delivered("z1", "zero", STORE, "EUR", Some(0)),
            ],
        )
        .await;
        // `busy` still carries an order it picked up.
        sql(
            &db,
            "INSERT INTO order_progress (order_id, store_id, status) VALUES ('b2', 's1', 'PICKED_UP');
             INSERT INTO handoffs (order_id, store_id, rider_id) VALUES ('b2', 's1', 'busy');",
        )
        .await;
        for (rider, amount) in [
            ("mixed", 200),
            ("busy", 100),
            ("zero", 0),
            ("nothing", 0),
            ("nothing", 100),
        ] {
            let refused = hand(&db, rider, amount).await;
            assert!(
                matches!(refused, Err(Error::Conflict(_))),
                "{rider}: {refused:?}"
            );
        }
        assert!(matches!(
            hand(&db, "ghost", 1).await,
            Err(Error::NotFound { .. })
        ));
        for amount in [-1, limits::MAX_MONEY_MINOR + 1] {
            assert!(matches!(
                hand(&db, "busy", amount).await,
                Err(Error::Invalid(_))
            ));
        }
        let view = db
            .read(|conn| holding(conn, STORE, "mixed"))
            .await
            .expect("holding");
        assert_eq!((view.expected_minor, view.open.len()), (None, 2));
        assert_eq!(count(&db, "SELECT count(*) FROM cash_handins").await, 0);
        assert_eq!(count(&db, "SELECT count(*) FROM rider_sign_offs").await, 0);
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM deliveries WHERE cash_handin_id IS NOT NULL"
            )
            .await,
            0
        );
        db.close().await.expect("close");
    }
}
