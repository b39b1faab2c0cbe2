//! The payments' rows (`payments.db`, or the same tables in PostgreSQL: the `pg_` twins at the
//! end): each order's payment, every gateway call before it is made, the webhook
//! events received, what HQ must look at, and the ledger.
//!
//! A gateway call is a row before it is a request: its idempotency key, what it asks for and
//! its state. The request is sent only after that row is committed, and its outcome is written
//! in the same transaction as the payment's new state and the ledger transaction it causes, so
//! a crash between the provider's answer and our write leaves a pending call that is checked
//! against the provider and finished, never sent as a second movement of money.

use flashkart_sync::schema::{Migration, Step};
use rusqlite::{Connection, OptionalExtension, params};
use tokio_postgres::GenericClient;

use super::ledger;

pub(super) const MIGRATIONS: &[Migration] = &[
    PAYMENTS,
    Migration {
        version: 2,
        name: "notification outbox",
        // Refund notifications, written in the transaction that books the refund.
        steps: &[Step::Sql(crate::notify::SCHEMA)],
    },
];

const PAYMENTS: Migration = Migration {
    version: 1,
    name: "payments, gateway calls, webhook events, flags, ledger",
    steps: &[
        Step::Sql(
            "CREATE TABLE payments (
                order_id TEXT PRIMARY KEY NOT NULL,
                customer_id TEXT NOT NULL,
                store_id TEXT NOT NULL,
                -- card | cash
                method TEXT NOT NULL,
                currency TEXT NOT NULL,
                -- the order as placed: what was authorised (card) or is due (cash)
                items_minor INTEGER NOT NULL,
                discount_minor INTEGER NOT NULL,
                delivery_fee_minor INTEGER NOT NULL,
                total_minor INTEGER NOT NULL,
                -- the provider's card reference and payment (card orders)
                payment_method TEXT,
                intent_id TEXT,
                -- authorising | authorised | declined | capturing | captured | voiding |
                -- voided | cash_due | cash_collected | failed
                state TEXT NOT NULL,
                -- decided at delivery: what the customer is charged for what was delivered
                delivered_minor INTEGER,
                rider_id TEXT,
                captured_minor INTEGER NOT NULL DEFAULT 0,
                -- refunds asked for (reserved when asked, so two cannot exceed the capture)
                refund_requested_minor INTEGER NOT NULL DEFAULT 0,
                refunded_minor INTEGER NOT NULL DEFAULT 0,
                cash_collected_minor INTEGER,
                note TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )",
        ),
        Step::Sql(
            "CREATE INDEX payments_open ON payments (state) WHERE state IN ('authorised', 'cash_due', 'authorising')",
        ),
        Step::Sql(
            "CREATE TABLE gateway_customers (
                customer_id TEXT PRIMARY KEY NOT NULL,
                gateway_customer TEXT NOT NULL,
                created_at TEXT NOT NULL
            )",
        ),
        Step::Sql(
            "CREATE TABLE gateway_calls (
                idempotency_key TEXT PRIMARY KEY NOT NULL,
                order_id TEXT NOT NULL,
                -- authorise | capture | cancel | refund
                op TEXT NOT NULL,
                amount_minor INTEGER NOT NULL DEFAULT 0,
                -- pending | done | failed
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                last_error TEXT,
                -- what the provider made (intent or refund id)
                result TEXT,
                reason TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )",
        ),
        Step::Sql(
            "CREATE INDEX gateway_calls_pending ON gateway_calls (next_attempt_at)
             WHERE state = 'pending'",
        ),
        Step::Sql("CREATE INDEX gateway_calls_by_order ON gateway_calls (order_id)"),
        Step::Sql(
            "CREATE TABLE webhook_events (
                event_id TEXT PRIMARY KEY NOT NULL,
                kind TEXT NOT NULL,
                object_id TEXT NOT NULL,
                received_at TEXT NOT NULL
            )",
        ),
        Step::Sql(
            // What HQ must look at: cash that does not match, a capture the provider refused.
            "CREATE TABLE payment_flags (
                id TEXT PRIMARY KEY NOT NULL,
                kind TEXT NOT NULL,
                order_id TEXT,
                store_id TEXT,
                rider_id TEXT,
                currency TEXT,
                expected_minor INTEGER,
                actual_minor INTEGER,
                message TEXT NOT NULL,
                at TEXT NOT NULL
            )",
        ),
        Step::Sql(
            // Cash hand-ins already booked (the stores' `cash_handins` rows, by id).
            "CREATE TABLE booked_handins (
                handin_id TEXT PRIMARY KEY NOT NULL,
                store_id TEXT NOT NULL,
                at TEXT NOT NULL
            )",
        ),
        Step::Sql(ledger::SCHEMA),
    ],
};

/// One order's payment as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Payment {
    pub order_id: String,
    pub customer_id: String,
    pub store_id: String,
    pub method: String,
    pub currency: String,
    pub items_minor: i64,
    pub discount_minor: i64,
    pub delivery_fee_minor: i64,
    pub total_minor: i64,
    #[serde(skip)]
    pub payment_method: Option<String>,
    pub intent_id: Option<String>,
    pub state: String,
    pub delivered_minor: Option<i64>,
    pub rider_id: Option<String>,
    pub captured_minor: i64,
    pub refund_requested_minor: i64,
    pub refunded_minor: i64,
    pub cash_collected_minor: Option<i64>,
    pub note: Option<String>,
    pub created_at: String,
}

const PAYMENT_COLUMNS: &str = "order_id, customer_id, store_id, method, currency, items_minor,
    discount_minor, delivery_fee_minor, total_minor, payment_method, intent_id, state,
    delivered_minor, rider_id, captured_minor, refund_requested_minor, refunded_minor,
    cash_collected_minor, note, created_at";

fn payment_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Payment> {
    Ok(Payment {
        order_id: r.get(0)?,
        customer_id: r.get(1)?,
        store_id: r.get(2)?,
        method: r.get(3)?,
        currency: r.get(4)?,
        items_minor: r.get(5)?,
        discount_minor: r.get(6)?,
        delivery_fee_minor: r.get(7)?,
        total_minor: r.get(8)?,
        payment_method: r.get(9)?,
        intent_id: r.get(10)?,
        state: r.get(11)?,
        delivered_minor: r.get(12)?,
        rider_id: r.get(13)?,
        captured_minor: r.get(14)?,
        refund_requested_minor: r.get(15)?,
        refunded_minor: r.get(16)?,
        cash_collected_minor: r.get(17)?,
        note: r.get(18)?,
        created_at: r.get(19)?,
    })
}

pub(super) fn payment(conn: &Connection, order_id: &str) -> rusqlite::Result<Option<Payment>> {
    conn.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = ?1"
    ))?
    .query_row([order_id], payment_from_row)
    .optional()
}

/// Payments waiting for their order to be delivered or cancelled.
pub(super) fn open_payments(conn: &Connection) -> rusqlite::Result<Vec<Payment>> {
    conn.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments
         WHERE state IN ('authorised', 'cash_due', 'authorising') ORDER BY order_id"
    ))?
    .query_map([], payment_from_row)?
    .collect()
}

/// Inserts a new payment; an existing one for the order is left as it is.
pub(super) fn insert_payment(conn: &Connection, p: &Payment, at: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO payments ({PAYMENT_COLUMNS}, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?20)
         ON CONFLICT (order_id) DO NOTHING"
    ))?
    .execute(params![
        p.order_id,
        p.customer_id,
        p.store_id,
        p.method,
        p.currency,
        p.items_minor,
        p.discount_minor,
        p.delivery_fee_minor,
        p.total_minor,
        p.payment_method,
        p.intent_id,
        p.state,
        p.delivered_minor,
        p.rider_id,
        p.captured_minor,
        p.refund_requested_minor,
        p.refunded_minor,
        p.cash_collected_minor,
        p.note,
        at
    ])?;
    Ok(())
}

/// Sets a payment's state (and its note when given).
pub(super) fn set_state(
    conn: &Connection,
    order_id: &str,
    state: &str,
    note: Option<&str>,
    at: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE payments SET state = ?2, note = coalesce(?3, note), updated_at = ?4
         WHERE order_id = ?1",
    )?
    .execute(params![order_id, state, note, at])?;
    Ok(())
}

/// A gateway call as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Call {
    pub idempotency_key: String,
    pub order_id: String,
    pub op: String,
    pub amount_minor: i64,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub result: Option<String>,
}

const CALL_COLUMNS: &str = "idempotency_key, order_id, op, amount_minor, state, attempts, next_attempt_at, last_error, result";

fn call_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Call> {
    Ok(Call {
        idempotency_key: r.get(0)?,
        order_id: r.get(1)?,
        op: r.get(2)?,
        amount_minor: r.get(3)?,
        state: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_at: r.get(6)?,
        last_error: r.get(7)?,
        result: r.get(8)?,
    })
}

/// Records a call before it is made; an existing call with the key is kept as it is.
pub(super) fn insert_call(
    conn: &Connection,
    key: &str,
    order_id: &str,
    op: &str,
    amount_minor: i64,
    reason: Option<&str>,
    at: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO gateway_calls (idempotency_key, order_id, op, amount_minor, state,
             next_attempt_at, reason, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?5, ?5)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )?
    .execute(params![key, order_id, op, amount_minor, at, reason])?;
    Ok(())
}

pub(super) fn call(conn: &Connection, key: &str) -> rusqlite::Result<Option<Call>> {
    conn.prepare_cached(&format!(
        "SELECT {CALL_COLUMNS} FROM gateway_calls WHERE idempotency_key = ?1"
    ))?
    .query_row([key], call_from_row)
    .optional()
}

/// Pending calls due by `now`, oldest first.
pub(super) fn due_calls(conn: &Connection, now: &str, limit: usize) -> rusqlite::Result<Vec<Call>> {
    conn.prepare_cached(&format!(
        "SELECT {CALL_COLUMNS} FROM gateway_calls
         WHERE state = 'pending' AND op != 'authorise' AND next_attempt_at <= ?1
         ORDER BY next_attempt_at LIMIT ?2"
    ))?
    .query_map(params![now, limit as i64], call_from_row)?
    .collect()
}

/// When the next pending call is due.
pub(super) fn next_due(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT min(next_attempt_at) FROM gateway_calls WHERE state = 'pending' AND op != 'authorise'",
    )?
    .query_row([], |r| r.get(0))
}

/// Pending calls per operation: the backlog `/metrics` shows.
pub(super) fn backlog(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare_cached(
        "SELECT op, count(*) FROM gateway_calls WHERE state = 'pending' GROUP BY op",
    )?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// Counts an attempt as it is about to be sent; returns the attempts made before it.
pub(super) fn call_sending(conn: &Connection, key: &str, at: &str) -> rusqlite::Result<i64> {
    let before: i64 = conn
        .prepare_cached("SELECT attempts FROM gateway_calls WHERE idempotency_key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    conn.prepare_cached(
        "UPDATE gateway_calls SET attempts = attempts + 1, updated_at = ?2
         WHERE idempotency_key = ?1",
    )?
    .execute(params![key, at])?;
    Ok(before)
}

/// A call that did not get through: counted, and tried again at `next_attempt_at`.
pub(super) fn call_attempted(
    conn: &Connection,
    key: &str,
    error: &str,
    next_attempt_at: &str,
    at: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE gateway_calls SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
             updated_at = ?4
         WHERE idempotency_key = ?1",
    )?
    .execute(params![key, error, next_attempt_at, at])?;
    Ok(())
}

/// A call that will not be tried again: `done` with what the provider made, or `failed`.
pub(super) fn call_finished(
    conn: &Connection,
    key: &str,
    state: &str,
    result: Option<&str>,
    error: Option<&str>,
    at: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE gateway_calls SET state = ?2, result = coalesce(?3, result),
             last_error = coalesce(?4, last_error), attempts = attempts + 1, updated_at = ?5
         WHERE idempotency_key = ?1",
    )?
    .execute(params![key, state, result, error, at])?;
    Ok(())
}

/// Calls of one order and operation (refunds are numbered from 1).
pub(super) fn count_calls(conn: &Connection, order_id: &str, op: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM gateway_calls WHERE order_id = ?1 AND op = ?2")?
        .query_row(params![order_id, op], |r| r.get(0))
}

pub(super) fn gateway_customer(
    conn: &Connection,
    customer_id: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT gateway_customer FROM gateway_customers WHERE customer_id = ?1")?
        .query_row([customer_id], |r| r.get(0))
        .optional()
}

pub(super) fn keep_gateway_customer(
    conn: &Connection,
    customer_id: &str,
    gateway_customer: &str,
    at: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO gateway_customers (customer_id, gateway_customer, created_at)
         VALUES (?1, ?2, ?3) ON CONFLICT (customer_id) DO NOTHING",
    )?
    .execute(params![customer_id, gateway_customer, at])?;
    Ok(())
}

/// Records a webhook event once; false when it was received before (a replay).
pub(super) fn record_event(
    conn: &Connection,
    event_id: &str,
    kind: &str,
    object_id: &str,
    at: &str,
) -> rusqlite::Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO webhook_events (event_id, kind, object_id, received_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (event_id) DO NOTHING",
        )?
        .execute(params![event_id, kind, object_id, at])?;
    Ok(inserted == 1)
}

pub(super) fn payment_by_intent(
    conn: &Connection,
    intent_id: &str,
) -> rusqlite::Result<Option<Payment>> {
    conn.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE intent_id = ?1"
    ))?
    .query_row([intent_id], payment_from_row)
    .optional()
}

/// Something HQ must look at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flag {
    pub id: String,
    pub kind: String,
    pub order_id: Option<String>,
    pub store_id: Option<String>,
    pub rider_id: Option<String>,
    pub currency: Option<String>,
    pub expected_minor: Option<i64>,
    pub actual_minor: Option<i64>,
    pub message: String,
    pub at: String,
}

/// Raises a flag once (its id is the natural key of what it is about).
pub(super) fn raise_flag(conn: &Connection, flag: &Flag) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO payment_flags (id, kind, order_id, store_id, rider_id, currency,
             expected_minor, actual_minor, message, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![
        flag.id,
        flag.kind,
        flag.order_id,
        flag.store_id,
        flag.rider_id,
        flag.currency,
        flag.expected_minor,
        flag.actual_minor,
        flag.message,
        flag.at
    ])?;
    Ok(())
}

pub(super) fn flags(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Flag>> {
    conn.prepare_cached(
        "SELECT id, kind, order_id, store_id, rider_id, currency, expected_minor, actual_minor,
             message, at
         FROM payment_flags ORDER BY at DESC LIMIT ?1",
    )?
    .query_map([limit as i64], |r| {
        Ok(Flag {
            id: r.get(0)?,
            kind: r.get(1)?,
            order_id: r.get(2)?,
            store_id: r.get(3)?,
            rider_id: r.get(4)?,
            currency: r.get(5)?,
            expected_minor: r.get(6)?,
            actual_minor: r.get(7)?,
            message: r.get(8)?,
            at: r.get(9)?,
        })
    })?
    .collect()
}

/// True when the hand-in was booked before; marks it booked otherwise.
pub(super) fn book_handin(
    conn: &Connection,
    handin_id: &str,
    store_id: &str,
    at: &str,
) -> rusqlite::Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO booked_handins (handin_id, store_id, at) VALUES (?1, ?2, ?3)
             ON CONFLICT (handin_id) DO NOTHING",
        )?
        .execute(params![handin_id, store_id, at])?;
    Ok(inserted == 0)
}

/// The latest hand-in of a store already booked (hand-ins are read from there on, with a
/// margin for clocks).
pub(super) fn last_booked_handin(
    conn: &Connection,
    store_id: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT max(at) FROM booked_handins WHERE store_id = ?1")?
        .query_row([store_id], |r| r.get(0))
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: the same tables and the same questions, for payments shared by instances.
// Each function below is the twin of the SQLite one of the same name without `pg_`; the
// ones that decide from a row read inside a transaction take it `FOR UPDATE`, so that two
// instances moving the same payment on take turns instead of both deciding from one state.
// ---------------------------------------------------------------------------------------

/// `payments.db`'s tables on PostgreSQL: money and counts BIGINT, timestamps RFC 3339 text as
/// there, compared and ordered bytewise (`COLLATE "C"`) as SQLite does. The refund
/// notifications go into HQ's `notify_outbox` (same database), so there is no outbox here.
pub(super) const PG_MIGRATIONS: &[crate::postgres::Migration] = &[
    crate::postgres::Migration {
        version: 1,
        name: "payments, gateway calls, webhook events, flags",
        sql: PG_SCHEMA,
    },
    crate::postgres::Migration {
        version: 2,
        name: "ledger",
        sql: ledger::PG_SCHEMA,
    },
];

const PG_SCHEMA: &str = "CREATE TABLE payments (
        order_id TEXT COLLATE \"C\" PRIMARY KEY NOT NULL,
        customer_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        method TEXT NOT NULL,
        currency TEXT NOT NULL,
        items_minor BIGINT NOT NULL,
        discount_minor BIGINT NOT NULL,
        delivery_fee_minor BIGINT NOT NULL,
        total_minor BIGINT NOT NULL,
        payment_method TEXT,
        intent_id TEXT,
        state TEXT NOT NULL,
        delivered_minor BIGINT,
        rider_id TEXT,
        captured_minor BIGINT NOT NULL DEFAULT 0,
        refund_requested_minor BIGINT NOT NULL DEFAULT 0,
        refunded_minor BIGINT NOT NULL DEFAULT 0,
        cash_collected_minor BIGINT,
        note TEXT,
        created_at TEXT COLLATE \"C\" NOT NULL,
        updated_at TEXT COLLATE \"C\" NOT NULL
    );
    CREATE INDEX payments_open ON payments (state)
        WHERE state IN ('authorised', 'cash_due', 'authorising');
    CREATE TABLE gateway_customers (
        customer_id TEXT PRIMARY KEY NOT NULL,
        gateway_customer TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE gateway_calls (
        idempotency_key TEXT PRIMARY KEY NOT NULL,
        order_id TEXT NOT NULL,
        op TEXT NOT NULL,
        amount_minor BIGINT NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at TEXT COLLATE \"C\" NOT NULL,
        last_error TEXT,
        result TEXT,
        reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX gateway_calls_pending ON gateway_calls (next_attempt_at)
        WHERE state = 'pending';
    CREATE INDEX gateway_calls_by_order ON gateway_calls (order_id);
    CREATE TABLE webhook_events (
        event_id TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        object_id TEXT NOT NULL,
        received_at TEXT NOT NULL
    );
    CREATE TABLE payment_flags (
        id TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        order_id TEXT,
        store_id TEXT,
        rider_id TEXT,
        currency TEXT,
        expected_minor BIGINT,
        actual_minor BIGINT,
        message TEXT NOT NULL,
        at TEXT COLLATE \"C\" NOT NULL
    );
    CREATE TABLE booked_handins (
        handin_id TEXT PRIMARY KEY NOT NULL,
        store_id TEXT NOT NULL,
        at TEXT COLLATE \"C\" NOT NULL
    );
";

type PgResult<T> = Result<T, super::PaymentError>;

fn pg_payment_from_row(r: &tokio_postgres::Row) -> Payment {
    Payment {
        order_id: r.get(0),
        customer_id: r.get(1),
        store_id: r.get(2),
        method: r.get(3),
        currency: r.get(4),
        items_minor: r.get(5),
        discount_minor: r.get(6),
        delivery_fee_minor: r.get(7),
        total_minor: r.get(8),
        payment_method: r.get(9),
        intent_id: r.get(10),
        state: r.get(11),
        delivered_minor: r.get(12),
        rider_id: r.get(13),
        captured_minor: r.get(14),
        refund_requested_minor: r.get(15),
        refunded_minor: r.get(16),
        cash_collected_minor: r.get(17),
        note: r.get(18),
        created_at: r.get(19),
    }
}

pub(super) async fn pg_payment(
    c: &impl GenericClient,
    order_id: &str,
) -> PgResult<Option<Payment>> {
    Ok(c.query_opt(
        &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1"),
        &[&order_id],
    )
    .await?
    .as_ref()
    .map(pg_payment_from_row))
}

/// [`pg_payment`], locked until the caller's transaction ends.
pub(super) async fn pg_payment_for_update(
    c: &impl GenericClient,
    order_id: &str,
) -> PgResult<Option<Payment>> {
    Ok(c.query_opt(
        &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 FOR UPDATE"),
        &[&order_id],
    )
    .await?
    .as_ref()
    .map(pg_payment_from_row))
}

pub(super) async fn pg_open_payments(c: &impl GenericClient) -> PgResult<Vec<Payment>> {
    Ok(c.query(
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments
             WHERE state IN ('authorised', 'cash_due', 'authorising') ORDER BY order_id"
        ),
        &[],
    )
    .await?
    .iter()
    .map(pg_payment_from_row)
    .collect())
}

pub(super) async fn pg_insert_payment(
    c: &impl GenericClient,
    p: &Payment,
    at: &str,
) -> PgResult<()> {
    c.execute(
        &format!(
            "INSERT INTO payments ({PAYMENT_COLUMNS}, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, $19, $20, $20)
             ON CONFLICT (order_id) DO NOTHING"
        ),
        &[
            &p.order_id,
            &p.customer_id,
            &p.store_id,
            &p.method,
            &p.currency,
            &p.items_minor,
            &p.discount_minor,
            &p.delivery_fee_minor,
            &p.total_minor,
            &p.payment_method,
            &p.intent_id,
            &p.state,
            &p.delivered_minor,
            &p.rider_id,
            &p.captured_minor,
            &p.refund_requested_minor,
            &p.refunded_minor,
            &p.cash_collected_minor,
            &p.note,
            &at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn pg_set_state(
    c: &impl GenericClient,
    order_id: &str,
    state: &str,
    note: Option<&str>,
    at: &str,
) -> PgResult<()> {
    c.execute(
        "UPDATE payments SET state = $2, note = coalesce($3, note), updated_at = $4
         WHERE order_id = $1",
        &[&order_id, &state, &note, &at],
    )
    .await?;
    Ok(())
}

fn pg_call_from_row(r: &tokio_postgres::Row) -> Call {
    Call {
        idempotency_key: r.get(0),
        order_id: r.get(1),
        op: r.get(2),
        amount_minor: r.get(3),
        state: r.get(4),
        attempts: r.get(5),
        next_attempt_at: r.get(6),
        last_error: r.get(7),
        result: r.get(8),
    }
}

pub(super) async fn pg_insert_call(
    c: &impl GenericClient,
    key: &str,
    order_id: &str,
    op: &str,
    amount_minor: i64,
    reason: Option<&str>,
    at: &str,
) -> PgResult<()> {
    c.execute(
        "INSERT INTO gateway_calls (idempotency_key, order_id, op, amount_minor, state,
             next_attempt_at, reason, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $5, $5)
         ON CONFLICT (idempotency_key) DO NOTHING",
        &[&key, &order_id, &op, &amount_minor, &at, &reason],
    )
    .await?;
    Ok(())
}

/// A call, locked until the caller's transaction ends.
pub(super) async fn pg_call_for_update(
    c: &impl GenericClient,
    key: &str,
) -> PgResult<Option<Call>> {
    Ok(c.query_opt(
        &format!("SELECT {CALL_COLUMNS} FROM gateway_calls WHERE idempotency_key = $1 FOR UPDATE"),
        &[&key],
    )
    .await?
    .as_ref()
    .map(pg_call_from_row))
}

/// Claims the oldest pending call due by `now` for this instance: its `next_attempt_at` moves
/// to `lease_until`, committed before the call is made, so no other instance finds it due
/// while this one makes it (rows another instance is claiming are skipped, not waited for).
/// The outcome then sets the call's state or its next attempt; an instance that dies while
/// making the call leaves it due again at `lease_until`, and the retry asks the provider
/// first, as after any lost answer. The returned call carries the time it was due.
pub(super) async fn pg_claim_due_call(
    c: &impl GenericClient,
    now: &str,
    lease_until: &str,
) -> PgResult<Option<Call>> {
    Ok(c.query_opt(
        "WITH due AS (
             SELECT idempotency_key, next_attempt_at FROM gateway_calls
             WHERE state = 'pending' AND op <> 'authorise' AND next_attempt_at <= $1
             ORDER BY next_attempt_at LIMIT 1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE gateway_calls g SET next_attempt_at = $2, updated_at = $1
         FROM due WHERE g.idempotency_key = due.idempotency_key
         RETURNING g.idempotency_key, g.order_id, g.op, g.amount_minor, g.state, g.attempts,
             due.next_attempt_at, g.last_error, g.result",
        &[&now, &lease_until],
    )
    .await?
    .as_ref()
    .map(pg_call_from_row))
}

pub(super) async fn pg_next_due(c: &impl GenericClient) -> PgResult<Option<String>> {
    Ok(c.query_one(
        "SELECT min(next_attempt_at) FROM gateway_calls WHERE state = 'pending' AND op <> 'authorise'",
        &[],
    )
    .await?
    .get(0))
}

pub(super) async fn pg_backlog(c: &impl GenericClient) -> PgResult<Vec<(String, i64)>> {
    Ok(c.query(
        "SELECT op, count(*) FROM gateway_calls WHERE state = 'pending' GROUP BY op",
        &[],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// One statement: the count and the attempts before it are read and written together.
pub(super) async fn pg_call_sending(c: &impl GenericClient, key: &str, at: &str) -> PgResult<i64> {
    Ok(c.query_opt(
        "UPDATE gateway_calls SET attempts = attempts + 1, updated_at = $2
         WHERE idempotency_key = $1 RETURNING attempts - 1",
        &[&key, &at],
    )
    .await?
    .map_or(0, |r| r.get(0)))
}

pub(super) async fn pg_call_attempted(
    c: &impl GenericClient,
    key: &str,
    error: &str,
    next_attempt_at: &str,
    at: &str,
) -> PgResult<()> {
    c.execute(
        "UPDATE gateway_calls SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3,
             updated_at = $4
         WHERE idempotency_key = $1",
        &[&key, &error, &next_attempt_at, &at],
    )
    .await?;
    Ok(())
}

pub(super) async fn pg_call_finished(
    c: &impl GenericClient,
    key: &str,
    state: &str,
    result: Option<&str>,
    error: Option<&str>,
    at: &str,
) -> PgResult<()> {
    c.execute(
        "UPDATE gateway_calls SET state = $2, result = coalesce($3, result),
             last_error = coalesce($4, last_error), attempts = attempts + 1, updated_at = $5
         WHERE idempotency_key = $1",
        &[&key, &state, &result, &error, &at],
    )
    .await?;
    Ok(())
}

pub(super) async fn pg_count_calls(
    c: &impl GenericClient,
    order_id: &str,
    op: &str,
) -> PgResult<i64> {
    Ok(c.query_one(
        "SELECT count(*) FROM gateway_calls WHERE order_id = $1 AND op = $2",
        &[&order_id, &op],
    )
    .await?
    .get(0))
}

pub(super) async fn pg_gateway_customer(
    c: &impl GenericClient,
    customer_id: &str,
) -> PgResult<Option<String>> {
    Ok(c.query_opt(
        "SELECT gateway_customer FROM gateway_customers WHERE customer_id = $1",
        &[&customer_id],
    )
    .await?
    .map(|r| r.get(0)))
}

pub(super) async fn pg_keep_gateway_customer(
    c: &impl GenericClient,
    customer_id: &str,
    gateway_customer: &str,
    at: &str,
) -> PgResult<()> {
    c.execute(
        "INSERT INTO gateway_customers (customer_id, gateway_customer, created_at)
         VALUES ($1, $2, $3) ON CONFLICT (customer_id) DO NOTHING",
        &[&customer_id, &gateway_customer, &at],
    )
    .await?;
    Ok(())
}

/// Records a webhook event once; false when it was received before. A concurrent delivery of
/// the same event waits for the first to commit and then finds it there (or records it, if
/// the first rolled back).
pub(super) async fn pg_record_event(
    c: &impl GenericClient,
    event_id: &str,
    kind: &str,
    object_id: &str,
    at: &str,
) -> PgResult<bool> {
    let inserted = c
        .execute(
            "INSERT INTO webhook_events (event_id, kind, object_id, received_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
            &[&event_id, &kind, &object_id, &at],
        )
        .await?;
    Ok(inserted == 1)
}

/// The payment of a provider's intent, locked until the caller's transaction ends.
pub(super) async fn pg_payment_by_intent_for_update(
    c: &impl GenericClient,
    intent_id: &str,
) -> PgResult<Option<Payment>> {
    Ok(c.query_opt(
        &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE intent_id = $1 LIMIT 1 FOR UPDATE"),
        &[&intent_id],
    )
    .await?
    .as_ref()
    .map(pg_payment_from_row))
}

pub(super) async fn pg_raise_flag(c: &impl GenericClient, flag: &Flag) -> PgResult<()> {
    c.execute(
        "INSERT INTO payment_flags (id, kind, order_id, store_id, rider_id, currency,
             expected_minor, actual_minor, message, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
        &[
            &flag.id,
            &flag.kind,
            &flag.order_id,
            &flag.store_id,
            &flag.rider_id,
            &flag.currency,
            &flag.expected_minor,
            &flag.actual_minor,
            &flag.message,
            &flag.at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn pg_flags(c: &impl GenericClient, limit: usize) -> PgResult<Vec<Flag>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    Ok(c.query(
        "SELECT id, kind, order_id, store_id, rider_id, currency, expected_minor, actual_minor,
             message, at
         FROM payment_flags ORDER BY at DESC LIMIT $1",
        &[&limit],
    )
    .await?
    .iter()
    .map(|r| Flag {
        id: r.get(0),
        kind: r.get(1),
        order_id: r.get(2),
        store_id: r.get(3),
        rider_id: r.get(4),
        currency: r.get(5),
        expected_minor: r.get(6),
        actual_minor: r.get(7),
        message: r.get(8),
        at: r.get(9),
    })
    .collect())
}

/// True when the hand-in was booked before; marks it booked otherwise (a concurrent booking
/// of the same hand-in waits for the first and then finds it booked).
pub(super) async fn pg_book_handin(
    c: &impl GenericClient,
    handin_id: &str,
    store_id: &str,
    at: &str,
) -> PgResult<bool> {
    let inserted = c
        .execute(
            "INSERT INTO booked_handins (handin_id, store_id, at) VALUES ($1, $2, $3)
             ON CONFLICT (handin_id) DO NOTHING",
            &[&handin_id, &store_id, &at],
        )
        .await?;
    Ok(inserted == 0)
}

pub(super) async fn pg_last_booked_handin(
    c: &impl GenericClient,
    store_id: &str,
) -> PgResult<Option<String>> {
    Ok(c.query_one(
        "SELECT max(at) FROM booked_handins WHERE store_id = $1",
        &[&store_id],
    )
    .await?
    .get(0))
}
