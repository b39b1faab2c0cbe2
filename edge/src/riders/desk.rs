//! The seam to the order state machine, which the edge's orders module owns.
//!
//! The riders service decides *who* may hand off or deliver (the rider holding the accepted
//! assignment, per the broker-authenticated topic); the order desk decides whether the order
//! may move and records it. The daemon implements [`OrderDesk`] with its orders service;
//! [`LocalDesk`] is a small, real implementation over the store database for the simulator
//! demo, tests and benchmarks until then.

use std::future::Future;

use flashkart_sync::StoreDb;
use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{DeskError, clock};
use crate::limits::MAX_MONEY_MINOR;

/// Wrong PINs after which an order is locked for support (the cloud flags it at the same count).
pub const PIN_STRIKES: u32 = 3;

/// Longest photo reference a contactless delivery may carry.
pub const MAX_PHOTO_REF_LEN: usize = 512;

/// A rider scanned the bag label of an order at the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Handoff {
    pub order_id: String,
    pub rider_id: String,
    pub label_id: String,
    /// RFC 3339 UTC.
    pub at: String,
}

/// A rider says it delivered an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub order_id: String,
    pub rider_id: String,
    pub at: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// The PIN the customer read out, if any; the desk knows the order's PIN hash and judges it.
    pub customer_pin: Option<String>,
    /// Where the photo of a contactless delivery is (an upload id or URL the phone made).
    pub photo_ref: Option<String>,
    /// The cash the rider says it collected at the door (minor units); see [`check_cash`].
    pub cash_collected_minor: Option<i64>,
}

/// Judges the cash of a delivery, inside the caller's write transaction and before anything
/// is written (before [`check_door`] too, so a refusal here records nothing, not even a PIN
/// attempt). The order's `payment_method` and `cash_due_minor` (cloud-owned, synced) decide:
/// - `cash`: the rider must say what it collected, 0..=[`MAX_MONEY_MINOR`] minor units
///   ([`DeskError::CashAmountRequired`], [`DeskError::InvalidAmount`] otherwise). An amount
///   different from the one due is accepted and logged at warn: the rider reports what is in
///   its pocket, and HQ, reading `deliveries.cash_collected_minor` through sync, flags the
///   difference; refusing it would only push the rider to report the expected figure instead.
///   `Ok(Ok(Some(amount)))`, recorded in `deliveries.cash_collected_minor`;
/// - anything else (card, or an order from before cash on delivery): the field is ignored and
///   `Ok(Ok(None))`. Not refused: the customer has paid and has the goods, so a phone that
///   sends the field anyway must not strand a finished delivery at the door; nothing is
///   recorded, so no cash is expected from the rider at the hand-in either.
///
/// `Err` is a database failure.
pub fn check_cash(
    conn: &Connection,
    delivery: &Delivery,
) -> rusqlite::Result<Result<Option<i64>, DeskError>> {
    let order: Option<(String, i64, String)> = conn
        .prepare_cached(
            "SELECT payment_method, cash_due_minor, currency FROM orders WHERE id = ?1",
        )?
        .query_row([&delivery.order_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((method, due, currency)) = order.filter(|(method, _, _)| method == "cash") else {
        if let Some(amount) = delivery.cash_collected_minor {
            tracing::info!(order = %delivery.order_id, rider = %delivery.rider_id, amount,
                "cash reported for an order not paid in cash: ignored");
        }
        return Ok(Ok(None));
    };
    let Some(collected) = delivery.cash_collected_minor else {
        return Ok(Err(DeskError::CashAmountRequired {
            order_id: delivery.order_id.clone(),
            due_minor: due,
            currency,
        }));
    };
    if !(0..=MAX_MONEY_MINOR).contains(&collected) {
        return Ok(Err(DeskError::InvalidAmount {
            order_id: delivery.order_id.clone(),
            amount_minor: collected,
        }));
    }
    if collected != due {
        tracing::warn!(
            order = %delivery.order_id,
            rider = %delivery.rider_id,
            method,
            due_minor = due,
            collected_minor = collected,
            currency,
            "cash collected differs from the amount due: recorded as collected, for HQ to settle"
        );
    }
    Ok(Ok(Some(collected)))
}

/// Judges a delivery at the door, inside the caller's write transaction, before the order
/// moves. The order's `delivery_pin_sha256` and `contactless` columns (cloud-owned, synced)
/// decide:
/// - contactless: a photo reference (1-[`MAX_PHOTO_REF_LEN`] characters, no control
///   characters) is needed instead of a PIN; `Ok(Ok(None))`;
/// - a PIN hash: the PIN must be exactly four ASCII digits whose `sha256(order_id ':' pin)`
///   matches (compared in constant time); `Ok(Ok(Some(true)))`. A wrong one is recorded in
///   `delivery_attempts` and refused as [`DeskError::WrongPin`]; the [`PIN_STRIKES`]th locks
///   the order ([`DeskError::PinLocked`], now and at every later attempt) until support acts;
/// - neither (an order from before PINs, or not from the cloud): `Ok(Ok(None))`.
///
/// A refusal is `Ok(Err(..))` so the caller commits the recorded attempt instead of rolling
/// it back; `Err` is a database failure.
pub fn check_door(
    conn: &Connection,
    store_id: &str,
    delivery: &Delivery,
) -> rusqlite::Result<Result<Option<bool>, DeskError>> {
    let order: Option<(Option<String>, bool)> = conn
        .prepare_cached("SELECT delivery_pin_sha256, contactless FROM orders WHERE id = ?1")?
        .query_row([&delivery.order_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (expected, contactless) = order.unwrap_or((None, false));
    if contactless {
        let photo = delivery.photo_ref.as_deref().map(str::trim).unwrap_or("");
        if photo.is_empty()
            || photo.chars().count() > MAX_PHOTO_REF_LEN
            || photo.chars().any(char::is_control)
        {
            return Ok(Err(DeskError::PhotoRequired(delivery.order_id.clone())));
        }
        return Ok(Ok(None));
    }
    let Some(expected) = expected else {
        return Ok(Ok(None));
    };
    let wrong: u32 = conn
        .prepare_cached(
            "SELECT count(*) FROM delivery_attempts WHERE order_id = ?1 AND outcome = 'wrong_pin'",
        )?
        .query_row([&delivery.order_id], |r| r.get(0))?;
    if wrong >= PIN_STRIKES {
        return Ok(Err(DeskError::PinLocked(delivery.order_id.clone())));
    }
    let pin = delivery.customer_pin.as_deref().unwrap_or("");
    let well_formed = pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit());
    // Hashed whatever it is, so a malformed PIN costs the same as a wrong one.
    let given = hex(&Sha256::digest(
        format!("{}:{pin}", delivery.order_id).as_bytes(),
    ));
    if well_formed && same(given.as_bytes(), expected.to_ascii_lowercase().as_bytes()) {
        return Ok(Ok(Some(true)));
    }
    conn.prepare_cached(
        "INSERT INTO delivery_attempts (id, store_id, order_id, rider_id, at, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, 'wrong_pin')",
    )?
    .execute((
        uuid::Uuid::now_v7().to_string(),
        store_id,
        &delivery.order_id,
        &delivery.rider_id,
        clock::now(),
    ))?;
    let wrong = wrong + 1;
    if wrong >= PIN_STRIKES {
        tracing::warn!(order = %delivery.order_id, rider = %delivery.rider_id, "delivery PIN wrong {wrong} times: order locked for support");
        return Ok(Err(DeskError::PinLocked(delivery.order_id.clone())));
    }
    tracing::info!(order = %delivery.order_id, rider = %delivery.rider_id, wrong, "delivery PIN wrong");
    Ok(Err(DeskError::WrongPin {
        order_id: delivery.order_id.clone(),
        left: PIN_STRIKES - wrong,
    }))
}

/// Equal bytes, in time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Moves orders on riders' behalf: READY (or ASSIGNED) to PICKED_UP at the handoff, PICKED_UP
/// to DELIVERED at delivery, writing the `handoffs` and `deliveries` rows.
pub trait OrderDesk: Send + Sync + 'static {
    /// Records the handoff: refuses a wrong label or an order that is not ready.
    fn handoff(&self, handoff: Handoff) -> impl Future<Output = Result<(), DeskError>> + Send;

    /// Records the delivery after [`check_cash`] and [`check_door`], with the cash collected
    /// in the same write; returns `Some(true)` when the customer PIN matched (`None` when the
    /// order has no PIN or is contactless).
    fn delivered(
        &self,
        delivery: Delivery,
    ) -> impl Future<Output = Result<Option<bool>, DeskError>> + Send;
}

/// An [`OrderDesk`] over the store database alone: checks and moves `order_progress.status`
/// and writes `handoffs`, `deliveries` and `order_events`.
#[derive(Debug, Clone)]
pub struct LocalDesk {
    db: StoreDb,
    store_id: String,
}

impl LocalDesk {
    pub fn new(db: StoreDb, store_id: impl Into<String>) -> Self {
        Self {
            db,
            store_id: store_id.into(),
        }
    }
}

impl OrderDesk for LocalDesk {
    async fn handoff(&self, handoff: Handoff) -> Result<(), DeskError> {
        let store_id = self.store_id.clone();
        self.db
            .write(move |conn| {
                let (status, label) = progress(conn, &handoff.order_id)?;
                let accepted: bool = conn.query_row(
                    "SELECT count(*) > 0 FROM assignments a
                     JOIN assignment_replies r ON r.assignment_id = a.id
                     WHERE a.order_id = ?1 AND a.rider_id = ?2 AND r.reply = 'accepted'",
                    (&handoff.order_id, &handoff.rider_id),
                    |row| row.get(0),
                )?;
                if !accepted {
                    return Err(DeskError::NotAssigned {
                        order_id: handoff.order_id,
                        rider_id: handoff.rider_id,
                    });
                }
                if label.as_deref() != Some(handoff.label_id.as_str()) {
                    return Err(DeskError::WrongLabel {
                        order_id: handoff.order_id,
                        label_id: handoff.label_id,
                    });
                }
                move_order(
                    conn,
                    &handoff.order_id,
                    &status,
                    &["READY", "ASSIGNED"],
                    "PICKED_UP",
                    &handoff.rider_id,
                    &handoff.at,
                    &store_id,
                )?;
                conn.execute(
                    "INSERT INTO handoffs (order_id, store_id, rider_id, label_id, at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    (
                        &handoff.order_id,
                        &store_id,
                        &handoff.rider_id,
                        &handoff.label_id,
                        &handoff.at,
                    ),
                )?;
                Ok(())
            })
            .await
    }

    async fn delivered(&self, delivery: Delivery) -> Result<Option<bool>, DeskError> {
        let store_id = self.store_id.clone();
        self.db
            .write(move |conn| -> Result<Result<Option<bool>, DeskError>, DeskError> {
                let (status, _) = progress(conn, &delivery.order_id)?;
                let carrier: Option<String> = conn
                    .query_row(
                        "SELECT rider_id FROM handoffs WHERE order_id = ?1",
                        [&delivery.order_id],
                        |row| row.get(0),
                    )
                    .optional()?;
                if carrier.as_deref() != Some(delivery.rider_id.as_str()) {
                    return Err(DeskError::NotPickedUp {
                        order_id: delivery.order_id,
                        rider_id: delivery.rider_id,
                    });
                }
                if status != "PICKED_UP" {
                    return Err(DeskError::BadTransition {
                        order_id: delivery.order_id,
                        from: status,
                        to: "DELIVERED".into(),
                    });
                }
                // Refused with nothing written (not even a PIN attempt).
                let cash = match check_cash(conn, &delivery)? {
                    Ok(cash) => cash,
                    Err(refused) => return Err(refused),
                };
                let pin_ok = match check_door(conn, &store_id, &delivery)? {
                    Ok(pin_ok) => pin_ok,
                    Err(refused) => return Ok(Err(refused)),
                };
                move_order(conn, &delivery.order_id, &status, &["PICKED_UP"], "DELIVERED", &delivery.rider_id, &delivery.at, &store_id)?;
                conn.execute(
                    "INSERT INTO deliveries (order_id, store_id, rider_id, at, lat, lon, customer_pin_ok,
                        photo_ref, cash_collected_minor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    (
                        &delivery.order_id,
                        &store_id,
                        &delivery.rider_id,
                        &delivery.at,
                        delivery.lat,
                        delivery.lon,
                        pin_ok,
                        delivery.photo_ref.as_deref().map(str::trim),
                        cash,
                    ),
                )?;
                Ok(Ok(pin_ok))
            })
            .await?
    }
}

fn progress(conn: &Connection, order_id: &str) -> Result<(String, Option<String>), DeskError> {
    conn.query_row(
        "SELECT status, label_id FROM order_progress WHERE order_id = ?1",
        [order_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()?
    .ok_or_else(|| DeskError::UnknownOrder(order_id.to_owned()))
}

#[allow(clippy::too_many_arguments)]
fn move_order(
    conn: &Connection,
    order_id: &str,
    from: &str,
    allowed_from: &[&str],
    to: &str,
    rider_id: &str,
    at: &str,
    store_id: &str,
) -> Result<(), DeskError> {
    if !allowed_from.contains(&from) {
        return Err(DeskError::BadTransition {
            order_id: order_id.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
        });
    }
    conn.execute(
        "UPDATE order_progress SET status = ?2, status_at = ?3 WHERE order_id = ?1",
        (order_id, to, at),
    )?;
    conn.execute(
        "INSERT INTO order_events (id, store_id, order_id, from_status, to_status, actor, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        (
            uuid::Uuid::now_v7().to_string(),
            store_id,
            order_id,
            from,
            to,
            format!("rider:{rider_id}"),
            at,
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use flashkart_sync::schema::store::MIGRATIONS;
    use flashkart_sync::{StoreConfig, StoreDb};

    use super::*;

    const STORE: &str = "s1";
    const RIDER: &str = "r1";

    /// A store database with `order_id` picked up by [`RIDER`]: its `orders` row (hash and
    /// contactless as given; none at all for a legacy order) and the store's progress.
    async fn picked_up(
        dir: &tempfile::TempDir,
        orders: &[(&'static str, Option<&'static str>, bool)],
    ) -> LocalDesk {
        let mut config = StoreConfig::new(dir.path().join("store.db"));
        config.extension_dir = Some(dir.path().join("ext"));
        let db = StoreDb::open(config, MIGRATIONS).await.expect("open");
        let orders = orders.to_vec();
        db.write(move |conn| -> Result<(), flashkart_sync::Error> {
            for (id, pin, contactless) in orders {
                if pin.is_some() || contactless {
                    let hash = pin.map(|pin| hex(&Sha256::digest(format!("{id}:{pin}"))));
                    conn.execute(
                        "INSERT INTO orders (id, store_id, delivery_pin_sha256, contactless)
                         VALUES (?1, ?2, ?3, ?4)",
                        (id, STORE, hash, contactless),
                    )?;
                }
                conn.execute(
                    "INSERT INTO order_progress (order_id, store_id, status) VALUES (?1, ?2, 'PICKED_UP')",
                    (id, STORE),
                )?;
                conn.execute(
                    "INSERT INTO handoffs (order_id, store_id, rider_id, label_id, at)
                     VALUES (?1, ?2, ?3, 'L', '2026-12-04T08:00:00.000Z')",
                    (id, STORE, RIDER),
                )?;
            }
            Ok(())
        })
        .await
        .expect("set up");
        LocalDesk::new(db, STORE)
    }

    fn delivery(order_id: &str, pin: Option<&str>, photo: Option<&str>) -> Delivery {
        Delivery {
            order_id: order_id.into(),
            rider_id: RIDER.into(),
            at: "2026-12-04T08:30:00.000Z".into(),
            lat: None,
            lon: None,
            customer_pin: pin.map(str::to_owned),
            photo_ref: photo.map(str::to_owned),
            cash_collected_minor: None,
        }
    }

    fn with_cash(order_id: &str, pin: Option<&str>, cash: i64) -> Delivery {
        Delivery {
            cash_collected_minor: Some(cash),
            ..delivery(order_id, pin, None)
        }
    }

    /// Makes `order_id` an order paid by `method` with `due` to collect, in EUR.
    async fn pay_by(desk: &LocalDesk, order_id: &'static str, method: &'static str, due: i64) {
        desk.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO orders (id, store_id, payment_method, cash_due_minor, currency)
                     VALUES (?1, ?2, ?3, ?4, 'EUR')
                     ON CONFLICT (id) DO UPDATE SET payment_method = excluded.payment_method,
                        cash_due_minor = excluded.cash_due_minor, currency = excluded.currency",
                    (order_id, STORE, method, due),
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await
            .expect("payment");
    }

    /// The order's status, its delivery's cash (`None`: no delivery row; `Some(None)`: a row
    /// without cash) and its wrong PINs.
    async fn cash_state(
        desk: &LocalDesk,
        order_id: &'static str,
    ) -> (String, Option<Option<i64>>, i64) {
        desk.db
            .read(move |conn| {
                let status: String = conn.query_row(
                    "SELECT status FROM order_progress WHERE order_id = ?1",
                    [order_id],
                    |r| r.get(0),
                )?;
                let cash: Option<Option<i64>> = conn
                    .query_row(
                        "SELECT cash_collected_minor FROM deliveries WHERE order_id = ?1",
                        [order_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let attempts: i64 = conn.query_row(
                    "SELECT count(*) FROM delivery_attempts WHERE order_id = ?1",
                    [order_id],
                    |r| r.get(0),
                )?;
                Ok::<_, flashkart_sync::Error>((status, cash, attempts))
            })
            .await
            .expect("read")
    }

    async fn status_and_attempts(desk: &LocalDesk, order_id: &'static str) -> (String, i64) {
        desk.db
            .read(move |conn| {
                conn.query_row(
                    "SELECT status, (SELECT count(*) FROM delivery_attempts
                        WHERE order_id = ?1 AND outcome = 'wrong_pin' AND rider_id = 'r1')
                     FROM order_progress WHERE order_id = ?1",
                    [order_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await
            .expect("read")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_right_pin_delivers_and_a_legacy_order_needs_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let desk = picked_up(
            &dir,
            &[("o1", Some("0427"), false), ("legacy", None, false)],
        )
        .await;
        assert_eq!(
            desk.delivered(delivery("o1", Some("0427"), None)).await,
            Ok(Some(true))
        );
        assert_eq!(
            status_and_attempts(&desk, "o1").await,
            ("DELIVERED".into(), 0)
        );
        assert_eq!(
            desk.delivered(delivery("legacy", None, None)).await,
            Ok(None)
        );
        assert_eq!(status_and_attempts(&desk, "legacy").await.0, "DELIVERED");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_pins_are_recorded_and_the_third_locks_the_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let desk = picked_up(&dir, &[("o1", Some("0427"), false)]).await;
        assert_eq!(
            desk.delivered(delivery("o1", Some("1234"), None)).await,
            Err(DeskError::WrongPin {
                order_id: "o1".into(),
                left: 2
            })
        );
        assert_eq!(
            status_and_attempts(&desk, "o1").await,
            ("PICKED_UP".into(), 1)
        );
        // Hostile input is refused as wrong and counts: not four ASCII digits.
        for pin in [Some("０４２７"), None] {
            let refused = desk.delivered(delivery("o1", pin, None)).await;
            assert!(
                matches!(
                    refused,
                    Err(DeskError::WrongPin { .. } | DeskError::PinLocked(_))
                ),
                "{refused:?}"
            );
        }
        assert_eq!(
            status_and_attempts(&desk, "o1").await,
            ("PICKED_UP".into(), 3)
        );
        // Locked: even the right PIN is refused, and nothing more is recorded.
        assert_eq!(
            desk.delivered(delivery("o1", Some("0427"), None)).await,
            Err(DeskError::PinLocked("o1".into()))
        );
        assert_eq!(
            status_and_attempts(&desk, "o1").await,
            ("PICKED_UP".into(), 3)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_third_wrong_pin_is_refused_as_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let desk = picked_up(&dir, &[("o1", Some("0427"), false)]).await;
        for left in [2, 1] {
            assert_eq!(
                desk.delivered(delivery("o1", Some("9999"), None)).await,
                Err(DeskError::WrongPin {
                    order_id: "o1".into(),
                    left
                })
            );
        }
        assert_eq!(
            desk.delivered(delivery("o1", Some("04270"), None)).await,
            Err(DeskError::PinLocked("o1".into()))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cash_order_needs_the_cash_collected_and_records_it_with_the_delivery() {
        let dir = tempfile::tempdir().expect("tempdir");
        let desk = picked_up(
            &dir,
            &[
                ("c1", None, false),
                ("pin", Some("0427"), false),
                ("card", None, false),
            ],
        )
        .await;
        pay_by(&desk, "c1", "cash", 2_340).await;
        pay_by(&desk, "pin", "cash", 990).await;
        pay_by(&desk, "card", "card", 0).await;

        // Without the amount: refused, and nothing is written.
        assert_eq!(
            desk.delivered(delivery("c1", None, None)).await,
            Err(DeskError::CashAmountRequired {
                order_id: "c1".into(),
                due_minor: 2_340,
                currency: "EUR".into()
            })
        );
        assert_eq!(
            desk.delivered(delivery("c1", None, None))
                .await
                .map_err(|e| e.code()),
            Err("cash_amount_required")
        );
        assert_eq!(cash_state(&desk, "c1").await, ("PICKED_UP".into(), None, 0));
        // Judged before the door: a wrong PIN without the amount records no attempt either.
        assert!(matches!(
            desk.delivered(delivery("pin", Some("9999"), None)).await,
            Err(DeskError::CashAmountRequired { .. })
        ));
        assert_eq!(
            cash_state(&desk, "pin").await,
            ("PICKED_UP".into(), None, 0)
        );

        // Not an amount of money: refused as invalid_amount, nothing written.
        for amount in [-1, MAX_MONEY_MINOR + 1, i64::MIN, i64::MAX] {
            let refused = desk.delivered(with_cash("c1", None, amount)).await;
            assert_eq!(
                refused,
                Err(DeskError::InvalidAmount {
                    order_id: "c1".into(),
                    amount_minor: amount
                })
            );
            assert_eq!(refused.map_err(|e| e.code()), Err("invalid_amount"));
        }
        assert_eq!(cash_state(&desk, "c1").await, ("PICKED_UP".into(), None, 0));

        // Another amount than the one due is what the rider has: delivered, recorded as said.
        assert_eq!(desk.delivered(with_cash("c1", None, 2_300)).await, Ok(None));
        assert_eq!(
            cash_state(&desk, "c1").await,
            ("DELIVERED".into(), Some(Some(2_300)), 0)
        );
        assert_eq!(
            desk.delivered(with_cash("pin", Some("0427"), 990)).await,
            Ok(Some(true))
        );
        assert_eq!(
            cash_state(&desk, "pin").await,
            ("DELIVERED".into(), Some(Some(990)), 0)
        );

        // A card order: the amount means nothing and is not recorded.
        assert_eq!(desk.delivered(with_cash("card", None, -5)).await, Ok(None));
        assert_eq!(
            cash_state(&desk, "card").await,
            ("DELIVERED".into(), Some(None), 0)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_contactless_order_needs_a_photo_instead_of_a_pin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let desk = picked_up(&dir, &[("o1", None, true)]).await;
        let long = "p".repeat(MAX_PHOTO_REF_LEN + 1);
        for photo in [None, Some("  "), Some(long.as_str()), Some("a\nb")] {
            assert_eq!(
                desk.delivered(delivery("o1", Some("0427"), photo)).await,
                Err(DeskError::PhotoRequired("o1".into())),
                "{photo:?}"
            );
        }
        assert_eq!(
            status_and_attempts(&desk, "o1").await,
            ("PICKED_UP".into(), 0)
        );
        assert_eq!(
            desk.delivered(delivery("o1", None, Some("photos/o1.jpg")))
                .await,
            Ok(None)
        );
        let photo = desk
            .db
            .read(|conn| {
                conn.query_row(
                    "SELECT photo_ref FROM deliveries WHERE order_id = 'o1'",
                    [],
                    |r| r.get::<_, String>(0),
                )
                .map_err(flashkart_sync::Error::from)
            })
            .await
            .expect("read");
        assert_eq!(photo, "photos/o1.jpg");
    }
}
