//! Settling orders: when the read model shows an order delivered or cancelled, its payment
//! moves on (capture or collection, void), and when a store records a rider's cash hand-in,
//! the cash is booked.
//!
//! Everything here is decided from what the stores reported and the cloud projected, and is
//! written in one transaction with the ledger transaction it causes; the gateway calls it
//! records are made by the worker afterwards. Running it twice changes nothing: a payment
//! leaves its open state once, and the ledger refuses a second posting of the same event.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{OptionalExtension, params};

use super::book::{self, Flag, Payment};
use super::delivered::{Delivered, price_delivery};
use super::ledger::{self, CardCaptured, CashCollected, CashHandedIn, OrderDelivered};
use super::{Backend, PaymentError, Payments};
use crate::clock::now_rfc3339;
use crate::projection::Projection;
use crate::stores::Stores;

/// What an open payment's order has become.
enum Outcome {
    Delivered(Delivered),
    Cancelled,
}

impl Payments {
    /// Moves on every open payment whose order was delivered or cancelled.
    pub(super) async fn settle_orders(
        &self,
        stores: &Arc<Stores>,
        projection: &Projection,
    ) -> Result<(), PaymentError> {
        let open = match &self.backend {
            Backend::Sqlite(db) => {
                db.read(|conn| -> Result<_, PaymentError> { Ok(book::open_payments(conn)?) })
                    .await?
            }
            Backend::Postgres(pg) => book::pg_open_payments(&**pg.client().await?).await?,
        };
        if open.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = open.iter().map(|p| p.order_id.clone()).collect();
        let statuses = projection.statuses(ids).await?;
        let abandoned_before = crate::clock::rfc3339(
            crate::clock::now() - std::time::Duration::from_secs(self.config.abandoned_after_s),
        );
        for payment in open {
            let Some(status) = statuses.get(&payment.order_id) else {
                if payment.created_at < abandoned_before
                    && let Err(error) = self.abandon(&payment).await
                {
                    tracing::warn!(order_id = %payment.order_id, %error, "voiding an abandoned payment");
                }
                continue;
            };
            let outcome = match status.as_str() {
                "DELIVERED" | "CLOSED" if payment.state != "authorising" => {
                    let delivered = self.price(stores, &payment).await?;
                    Outcome::Delivered(delivered)
                }
                "CANCELLED" => Outcome::Cancelled,
                _ => continue,
            };
            if let Err(error) = self.settle(payment.clone(), outcome).await {
                tracing::error!(order_id = %payment.order_id, %error, "settling a payment");
            }
        }
        Ok(())
    }

    /// A payment whose order never reached a store (intake stopped after the authorisation
    /// and the customer did not retry): the hold on the card is released.
    async fn abandon(&self, payment: &Payment) -> Result<(), PaymentError> {
        let mut intent_id = payment.intent_id.clone();
        if payment.state == "authorising"
            && let Some(gateway) = self.gateway.clone()
        {
            // The provider may have authorised without us hearing it: ask before giving up.
            let gateway_customer = self.known_gateway_customer(&payment.customer_id).await?;
            if let (Some(gateway_customer), Some(payment_method)) =
                (gateway_customer, payment.payment_method.clone())
            {
                let request = super::gateway::AuthoriseRequest {
                    idempotency_key: format!("authorise:{}", payment.order_id),
                    order_id: payment.order_id.clone(),
                    customer_id: payment.customer_id.clone(),
                    gateway_customer,
                    payment_method,
                    amount_minor: payment.total_minor,
                    currency: payment.currency.clone(),
                };
                match gateway.find_authorisation(&request).await {
                    Ok(found) => {
                        intent_id = found
                            .filter(|i| i.status == super::gateway::IntentStatus::RequiresCapture)
                            .map(|i| i.id);
                    }
                    // Not known yet: the next round asks again.
                    Err(error) => return Err(PaymentError::Unavailable(error.to_string())),
                }
            }
        }
        let (payment, at) = (payment.clone(), now_rfc3339());
        tracing::warn!(order_id = %payment.order_id, state = %payment.state, "payment abandoned: the order never reached a store");
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<(), PaymentError> {
                    let Some(current) = book::payment(conn, &payment.order_id)? else {
                        return Ok(());
                    };
                    if current.state != payment.state {
                        return Ok(());
                    }
                    let note = "abandoned: the order never reached a store";
                    match (current.method.as_str(), intent_id) {
                        ("card", Some(intent)) => {
                            conn.prepare_cached(
                                "UPDATE payments SET intent_id = ?2 WHERE order_id = ?1",
                            )?
                            .execute(params![current.order_id, intent])?;
                            book::call_finished(
                                conn,
                                &format!("authorise:{}", current.order_id),
                                "done",
                                Some(&intent),
                                None,
                                &at,
                            )?;
                            book::insert_call(
                                conn,
                                &format!("cancel:{}", current.order_id),
                                &current.order_id,
                                "cancel",
                                0,
                                Some(note),
                                &at,
                            )?;
                            book::set_state(conn, &current.order_id, "voiding", Some(note), &at)?;
                        }
                        ("card", None) => {
                            book::call_finished(
                                conn,
                                &format!("authorise:{}", current.order_id),
                                "failed",
                                None,
                                Some(note),
                                &at,
                            )?;
                            book::set_state(conn, &current.order_id, "failed", Some(note), &at)?;
                        }
                        _ => book::set_state(conn, &current.order_id, "voided", Some(note), &at)?,
                    }
                    Ok(())
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                if pg_abandon(&tx, &payment, intent_id, &at).await? {
                    tx.commit().await?;
                }
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    async fn price(
        &self,
        stores: &Arc<Stores>,
        payment: &Payment,
    ) -> Result<Delivered, PaymentError> {
        let replica = stores.replica(&payment.store_id).await?;
        let catalog = stores.catalog().clone();
        let currency = payment.currency.clone();
        let payment = payment.clone();
        // Substitutes' prices come from the catalog, read before the replica is.
        let subs: Vec<String> = {
            let p = payment.clone();
            replica
                .db()
                .read(move |conn| -> Result<Vec<String>, PaymentError> {
                    Ok(conn
                        .prepare_cached(
                            "SELECT DISTINCT substitute_product_id FROM order_line_progress
                             WHERE order_id = ?1 AND store_id = ?2
                               AND substitute_product_id IS NOT NULL",
                        )?
                        .query_map([&p.order_id, &p.store_id], |r| r.get(0))?
                        .collect::<Result<Vec<String>, _>>()?)
                })
                .await?
        };
        let prices: HashMap<String, i64> = catalog
            .read(move |conn| -> Result<HashMap<String, i64>, PaymentError> {
                let mut found = HashMap::new();
                for product in subs {
                    let price: Option<i64> = conn
                        .prepare_cached(
                            "SELECT unit_price_minor FROM prices
                             WHERE product_id = ?1 AND currency = ?2",
                        )?
                        .query_row(params![product, currency], |r| r.get(0))
                        .optional()?;
                    if let Some(price) = price {
                        found.insert(product, price);
                    }
                }
                Ok(found)
            })
            .await?;
        replica
            .db()
            .read(move |conn| {
                price_delivery(conn, &payment, |product| Ok(prices.get(product).copied()))
            })
            .await
    }

    async fn settle(&self, payment: Payment, outcome: Outcome) -> Result<(), PaymentError> {
        let economics = self.config.economics.clone();
        let at = now_rfc3339();
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<(), PaymentError> {
                    // Re-read inside the transaction: only an open payment moves on.
                    let Some(current) = book::payment(conn, &payment.order_id)? else {
                        return Ok(());
                    };
                    if !matches!(current.state.as_str(), "authorised" | "cash_due") {
                        return Ok(());
                    }
                    match outcome {
                        Outcome::Cancelled => cancel_open(conn, &current, &at),
                        Outcome::Delivered(delivered) => {
                            deliver(conn, &current, &delivered, &economics, &at)
                        }
                    }
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                // Re-read and locked inside the transaction: only an open payment moves on,
                // and an instance settling it at the same time waits, then finds it moved.
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                let current = book::pg_payment_for_update(&*tx, &payment.order_id)
                    .await?
                    .filter(|p| matches!(p.state.as_str(), "authorised" | "cash_due"));
                if let Some(current) = current {
                    match outcome {
                        Outcome::Cancelled => pg_cancel_open(&tx, &current, &at).await?,
                        Outcome::Delivered(delivered) => {
                            pg_deliver(&tx, &current, &delivered, &economics, &at).await?;
                        }
                    }
                    tx.commit().await?;
                }
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Books every cash hand-in the stores recorded since the last one booked.
    pub(super) async fn book_handins(&self, stores: &Arc<Stores>) -> Result<(), PaymentError> {
        for store_id in stores.ids().await {
            let since = match &self.backend {
                Backend::Sqlite(db) => {
                    let id = store_id.clone();
                    db.read(move |conn| -> Result<_, PaymentError> {
                        Ok(book::last_booked_handin(conn, &id)?)
                    })
                    .await?
                }
                Backend::Postgres(pg) => {
                    book::pg_last_booked_handin(&**pg.client().await?, &store_id).await?
                }
            };
            // A day of margin: a store's clock may lag, and a booked hand-in is skipped anyway.
            let since = since
                .and_then(|at| crate::clock::parse(&at))
                .map(|at| crate::clock::rfc3339(at - time::Duration::days(1)))
                .unwrap_or_default();
            let replica = stores.replica(&store_id).await?;
            let rows = {
                let id = store_id.clone();
                replica
                    .db()
                    .read(move |conn| {
                        conn.prepare_cached(
                            "SELECT id, rider_id, at, amount_minor, expected_minor, currency
                             FROM cash_handins WHERE store_id = ?1 AND at >= ?2 ORDER BY at",
                        )?
                        .query_map(params![id, since], |r| {
                            Ok(Handin {
                                id: r.get(0)?,
                                rider_id: r.get(1)?,
                                at: r.get(2)?,
                                amount_minor: r.get(3)?,
                                expected_minor: r.get(4)?,
                                currency: r.get(5)?,
                            })
                        })?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(flashkart_sync::Error::from)
                    })
                    .await?
            };
            for handin in rows {
                let result = match &self.backend {
                    Backend::Sqlite(db) => {
                        let store = store_id.clone();
                        db.write(move |conn| book_handin(conn, &store, &handin))
                            .await
                    }
                    Backend::Postgres(pg) => pg_book_handin(pg, &store_id, &handin).await,
                };
                if let Err(error) = result {
                    tracing::error!(store_id, %error, "booking a cash hand-in");
                }
            }
        }
        Ok(())
    }
}

/// A store's record of cash a rider handed in.
#[derive(Debug, Clone)]
struct Handin {
    id: String,
    rider_id: String,
    at: String,
    amount_minor: i64,
    expected_minor: i64,
    currency: String,
}

fn book_handin(
    conn: &rusqlite::Connection,
    store_id: &str,
    handin: &Handin,
) -> Result<(), PaymentError> {
    if book::book_handin(conn, &handin.id, store_id, &handin.at)? {
        return Ok(());
    }
    if handin.amount_minor > 0 {
        let transaction = ledger::cash_handed_in(&CashHandedIn {
            handin_id: &handin.id,
            store_id,
            rider_id: &handin.rider_id,
            currency: &handin.currency,
            at: &handin.at,
            amount_minor: handin.amount_minor,
        })?;
        ledger::post(conn, &transaction)?;
    }
    if handin.amount_minor != handin.expected_minor {
        book::raise_flag(
            conn,
            &Flag {
                id: format!("handin:{}", handin.id),
                kind: "cash_handin_difference".into(),
                order_id: None,
                store_id: Some(store_id.to_owned()),
                rider_id: Some(handin.rider_id.clone()),
                currency: Some(handin.currency.clone()),
                expected_minor: Some(handin.expected_minor),
                actual_minor: Some(handin.amount_minor),
                message: format!(
                    "rider {} handed in {} {} at store {store_id}, {} expected",
                    handin.rider_id, handin.amount_minor, handin.currency, handin.expected_minor
                ),
                at: handin.at.clone(),
            },
        )?;
    }
    Ok(())
}

/// An open payment whose order was cancelled: a card authorisation is voided, cash is not due.
fn cancel_open(
    conn: &rusqlite::Connection,
    payment: &Payment,
    at: &str,
) -> Result<(), PaymentError> {
    if payment.method == "card" {
        book::insert_call(
            conn,
            &format!("cancel:{}", payment.order_id),
            &payment.order_id,
            "cancel",
            0,
            Some("order cancelled"),
            at,
        )?;
        book::set_state(conn, &payment.order_id, "voiding", None, at)?;
    } else {
        book::set_state(
            conn,
            &payment.order_id,
            "voided",
            Some("order cancelled"),
            at,
        )?;
    }
    Ok(())
}

/// The rider of a delivery, as the ledger names them.
fn rider_of(delivered: &Delivered) -> &str {
    delivered.rider_id.as_deref().unwrap_or("unknown")
}

/// The revenue of what was delivered, when anything was (both engines book it).
fn revenue(
    payment: &Payment,
    delivered: &Delivered,
    economics: &ledger::Economics,
    at: &str,
) -> Result<Option<ledger::Transaction>, PaymentError> {
    if delivered.total_minor <= 0 {
        return Ok(None);
    }
    Ok(Some(ledger::order_delivered(
        &OrderDelivered {
            order_id: &payment.order_id,
            customer_id: &payment.customer_id,
            store_id: &payment.store_id,
            rider_id: rider_of(delivered),
            currency: &payment.currency,
            at,
            items_minor: delivered.items_minor,
            discount_minor: delivered.discount_minor,
            delivery_fee_minor: delivered.delivery_fee_minor,
        },
        economics,
    )?))
}

/// The cash the rider collected, when they collected any (both engines book it).
fn cash(
    payment: &Payment,
    delivered: &Delivered,
    at: &str,
) -> Result<Option<ledger::Transaction>, PaymentError> {
    let collected = delivered.cash_collected_minor.unwrap_or(0);
    if collected <= 0 {
        return Ok(None);
    }
    Ok(Some(ledger::cash_collected(&CashCollected {
        order_id: &payment.order_id,
        customer_id: &payment.customer_id,
        rider_id: rider_of(delivered),
        currency: &payment.currency,
        at,
        amount_minor: collected,
    })?))
}

/// A delivered order: revenue is booked for what was delivered; a card is captured for it
/// (or voided when nothing was delivered), cash is booked as the rider collected it.
fn deliver(
    conn: &rusqlite::Connection,
    payment: &Payment,
    delivered: &Delivered,
    economics: &ledger::Economics,
    at: &str,
) -> Result<(), PaymentError> {
    if let Some(transaction) = revenue(payment, delivered, economics, at)? {
        ledger::post(conn, &transaction)?;
    }
    conn.prepare_cached(
        "UPDATE payments SET delivered_minor = ?2, rider_id = ?3, updated_at = ?4
         WHERE order_id = ?1",
    )?
    .execute(params![
        payment.order_id,
        delivered.total_minor,
        delivered.rider_id,
        at
    ])?;
    if payment.method == "cash" {
        let collected = delivered.cash_collected_minor.unwrap_or(0);
        if let Some(transaction) = cash(payment, delivered, at)? {
            ledger::post(conn, &transaction)?;
        }
        conn.prepare_cached(
            "UPDATE payments SET state = 'cash_collected', cash_collected_minor = ?2,
                 updated_at = ?3 WHERE order_id = ?1",
        )?
        .execute(params![
            payment.order_id,
            delivered.cash_collected_minor,
            at
        ])?;
        if collected != delivered.total_minor {
            book::raise_flag(
                conn,
                &Flag {
                    id: format!("cash:{}", payment.order_id),
                    kind: "cash_collected_difference".into(),
                    order_id: Some(payment.order_id.clone()),
                    store_id: Some(payment.store_id.clone()),
                    rider_id: delivered.rider_id.clone(),
                    currency: Some(payment.currency.clone()),
                    expected_minor: Some(delivered.total_minor),
                    actual_minor: Some(collected),
                    message: format!(
                        "order {}: the rider collected {collected} {}, {} was due",
                        payment.order_id, payment.currency, delivered.total_minor
                    ),
                    at: at.to_owned(),
                },
            )?;
        }
        return Ok(());
    }
    if delivered.total_minor == 0 {
        // Nothing delivered: release the whole authorisation.
        return cancel_open(conn, payment, at);
    }
    book::insert_call(
        conn,
        &format!("capture:{}", payment.order_id),
        &payment.order_id,
        "capture",
        delivered.total_minor,
        None,
        at,
    )?;
    book::set_state(conn, &payment.order_id, "capturing", None, at)?;
    Ok(())
}

/// Books a finished capture: the payment is captured and the customer's debt is paid from the
/// gateway's clearing account.
pub(super) fn captured(
    conn: &rusqlite::Connection,
    payment: &Payment,
    key: &str,
    intent_id: &str,
    amount_minor: i64,
    at: &str,
) -> Result<(), PaymentError> {
    book::call_finished(conn, key, "done", Some(intent_id), None, at)?;
    if payment.state == "captured" {
        return Ok(());
    }
    let transaction = ledger::card_captured(&CardCaptured {
        order_id: &payment.order_id,
        customer_id: &payment.customer_id,
        currency: &payment.currency,
        at,
        amount_minor,
    })?;
    ledger::post(conn, &transaction)?;
    conn.prepare_cached(
        "UPDATE payments SET state = 'captured', captured_minor = ?2, updated_at = ?3
         WHERE order_id = ?1",
    )?
    .execute(params![payment.order_id, amount_minor, at])?;
    Ok(())
}

// PostgreSQL twins of the functions above: the same decisions and rows, in the caller's
// transaction (one per `db.write` closure of SQLite), with the payment locked by the caller.

/// The write of [`Payments::abandon`]: false when nothing was to be done (rolled back).
async fn pg_abandon(
    tx: &tokio_postgres::Transaction<'_>,
    payment: &Payment,
    intent_id: Option<String>,
    at: &str,
) -> Result<bool, PaymentError> {
    let Some(current) = book::pg_payment_for_update(tx, &payment.order_id).await? else {
        return Ok(false);
    };
    if current.state != payment.state {
        return Ok(false);
    }
    let note = "abandoned: the order never reached a store";
    let authorise_key = format!("authorise:{}", current.order_id);
    match (current.method.as_str(), intent_id) {
        ("card", Some(intent)) => {
            tx.execute(
                "UPDATE payments SET intent_id = $2 WHERE order_id = $1",
                &[&current.order_id, &intent],
            )
            .await?;
            book::pg_call_finished(tx, &authorise_key, "done", Some(&intent), None, at).await?;
            book::pg_insert_call(
                tx,
                &format!("cancel:{}", current.order_id),
                &current.order_id,
                "cancel",
                0,
                Some(note),
                at,
            )
            .await?;
            book::pg_set_state(tx, &current.order_id, "voiding", Some(note), at).await?;
        }
        ("card", None) => {
            book::pg_call_finished(tx, &authorise_key, "failed", None, Some(note), at).await?;
            book::pg_set_state(tx, &current.order_id, "failed", Some(note), at).await?;
        }
        _ => book::pg_set_state(tx, &current.order_id, "voided", Some(note), at).await?,
    }
    Ok(true)
}

/// [`book_handin`] on PostgreSQL, one transaction.
async fn pg_book_handin(
    pg: &crate::postgres::Postgres,
    store_id: &str,
    handin: &Handin,
) -> Result<(), PaymentError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    if book::pg_book_handin(&*tx, &handin.id, store_id, &handin.at).await? {
        return Ok(());
    }
    if handin.amount_minor > 0 {
        let transaction = ledger::cash_handed_in(&CashHandedIn {
            handin_id: &handin.id,
            store_id,
            rider_id: &handin.rider_id,
            currency: &handin.currency,
            at: &handin.at,
            amount_minor: handin.amount_minor,
        })?;
        ledger::pg_post(&*tx, &transaction).await?;
    }
    if handin.amount_minor != handin.expected_minor {
        book::pg_raise_flag(
            &*tx,
            &Flag {
                id: format!("handin:{}", handin.id),
                kind: "cash_handin_difference".into(),
                order_id: None,
                store_id: Some(store_id.to_owned()),
                rider_id: Some(handin.rider_id.clone()),
                currency: Some(handin.currency.clone()),
                expected_minor: Some(handin.expected_minor),
                actual_minor: Some(handin.amount_minor),
                message: format!(
                    "rider {} handed in {} {} at store {store_id}, {} expected",
                    handin.rider_id, handin.amount_minor, handin.currency, handin.expected_minor
                ),
                at: handin.at.clone(),
            },
        )
        .await?;
    }
    Ok(tx.commit().await?)
}

/// [`cancel_open`] on PostgreSQL.
async fn pg_cancel_open(
    tx: &tokio_postgres::Transaction<'_>,
    payment: &Payment,
    at: &str,
) -> Result<(), PaymentError> {
    if payment.method == "card" {
        book::pg_insert_call(
            tx,
            &format!("cancel:{}", payment.order_id),
            &payment.order_id,
            "cancel",
            0,
            Some("order cancelled"),
            at,
        )
        .await?;
        book::pg_set_state(tx, &payment.order_id, "voiding", None, at).await?;
    } else {
        book::pg_set_state(tx, &payment.order_id, "voided", Some("order cancelled"), at).await?;
    }
    Ok(())
}

/// [`deliver`] on PostgreSQL.
async fn pg_deliver(
    tx: &tokio_postgres::Transaction<'_>,
    payment: &Payment,
    delivered: &Delivered,
    economics: &ledger::Economics,
    at: &str,
) -> Result<(), PaymentError> {
    if let Some(transaction) = revenue(payment, delivered, economics, at)? {
        ledger::pg_post(tx, &transaction).await?;
    }
    tx.execute(
        "UPDATE payments SET delivered_minor = $2, rider_id = $3, updated_at = $4
         WHERE order_id = $1",
        &[
            &payment.order_id,
            &delivered.total_minor,
            &delivered.rider_id,
            &at,
        ],
    )
    .await?;
    if payment.method == "cash" {
        let collected = delivered.cash_collected_minor.unwrap_or(0);
        if let Some(transaction) = cash(payment, delivered, at)? {
            ledger::pg_post(tx, &transaction).await?;
        }
        tx.execute(
            "UPDATE payments SET state = 'cash_collected', cash_collected_minor = $2,
                 updated_at = $3 WHERE order_id = $1",
            &[&payment.order_id, &delivered.cash_collected_minor, &at],
        )
        .await?;
        if collected != delivered.total_minor {
            book::pg_raise_flag(
                tx,
                &Flag {
                    id: format!("cash:{}", payment.order_id),
                    kind: "cash_collected_difference".into(),
                    order_id: Some(payment.order_id.clone()),
                    store_id: Some(payment.store_id.clone()),
                    rider_id: delivered.rider_id.clone(),
                    currency: Some(payment.currency.clone()),
                    expected_minor: Some(delivered.total_minor),
                    actual_minor: Some(collected),
                    message: format!(
                        "order {}: the rider collected {collected} {}, {} was due",
                        payment.order_id, payment.currency, delivered.total_minor
                    ),
                    at: at.to_owned(),
                },
            )
            .await?;
        }
        return Ok(());
    }
    if delivered.total_minor == 0 {
        // Nothing delivered: release the whole authorisation.
        return pg_cancel_open(tx, payment, at).await;
    }
    book::pg_insert_call(
        tx,
        &format!("capture:{}", payment.order_id),
        &payment.order_id,
        "capture",
        delivered.total_minor,
        None,
        at,
    )
    .await?;
    book::pg_set_state(tx, &payment.order_id, "capturing", None, at).await?;
    Ok(())
}

/// [`captured`] on PostgreSQL.
pub(super) async fn pg_captured(
    tx: &tokio_postgres::Transaction<'_>,
    payment: &Payment,
    key: &str,
    intent_id: &str,
    amount_minor: i64,
    at: &str,
) -> Result<(), PaymentError> {
    book::pg_call_finished(tx, key, "done", Some(intent_id), None, at).await?;
    if payment.state == "captured" {
        return Ok(());
    }
    let transaction = ledger::card_captured(&CardCaptured {
        order_id: &payment.order_id,
        customer_id: &payment.customer_id,
        currency: &payment.currency,
        at,
        amount_minor,
    })?;
    ledger::pg_post(tx, &transaction).await?;
    tx.execute(
        "UPDATE payments SET state = 'captured', captured_minor = $2, updated_at = $3
         WHERE order_id = $1",
        &[&payment.order_id, &amount_minor, &at],
    )
    .await?;
    Ok(())
}
