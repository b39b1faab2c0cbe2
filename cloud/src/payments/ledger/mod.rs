//! The cloud's double-entry ledger: where every movement of a customer's, a store's or a
//! rider's money is booked, so that HQ can always say who owes whom and why.
//!
//! Payments state alone (authorised, captured, refunded) cannot answer "what do we owe store
//! s-12 for March" or "how much cash is rider r-7 carrying"; a ledger can, and double entry
//! makes every mistake visible: each [`Transaction`] moves money between [`Account`]s and its
//! entries sum to exactly zero, so the whole ledger always sums to zero per currency
//! ([`trial_balance`]). Money is integer minor units of one ISO 4217 currency, never a float,
//! and every sum is checked (an overflow is [`LedgerError::Overflow`], never a wrap or panic).
//!
//! The tables live where the payments service keeps its rows: `payments.db` ([`TABLES`], or
//! [`SCHEMA`] as one batch, is for its migration) or the cloud's PostgreSQL database
//! ([`PG_SCHEMA`]; what the service posts and reads with has a `pg_` twin giving the same
//! results there).
//! The service calls [`post`] (or [`pg_post`]) with its own connection inside its own write
//! transaction, so a payment's state change and its ledger transaction commit or roll back
//! together. Each
//! business event has a natural idempotency key (`kind:order_id[:n]`, or `kind:handin_id` for
//! a cash hand-in), so a retry after a crash posts nothing twice: the second [`post`] reports
//! [`Posted::AlreadyPosted`].
//!
//! `postings` builds the transactions for business events (and explains their accounting),
//! `statement` reads an account's movements over a period for stores and riders.

mod account;
mod postings;
mod statement;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio_postgres::GenericClient;

pub use account::{Account, MAX_ID_LEN, valid_id};
pub use postings::{
    CardCaptured, CashCollected, CashHandedIn, Economics, OrderDelivered, Refunded, card_captured,
    cash_collected, cash_handed_in, commission_minor, order_delivered, refunded,
};
pub use statement::{
    RiderStatements, Statement, StatementLine, pg_rider_statements, pg_statement, rider_statements,
    statement,
};

/// The largest amount one entry may carry, in minor units (10^12: ten billion in a currency
/// with cents), far above any real order, so a bug that produces a silly amount is refused
/// and sums of entries stay far from `i64` overflow.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;
/// At most this many entries in one transaction; the business postings use at most six.
pub const MAX_ENTRIES: usize = 64;
/// The longest idempotency key.
pub const MAX_KEY_LEN: usize = 300;
/// The longest memo, in bytes.
pub const MAX_MEMO_LEN: usize = 1000;

/// Defines [`TABLES`] and [`SCHEMA`] from one list of statements, so the two cannot drift.
macro_rules! schema {
    ($($sql:literal),+ $(,)?) => {
        /// The ledger's schema, one statement per element, for the migration of `payments.db`.
        ///
        /// Keys are UUIDv7 text or natural (no AUTOINCREMENT). An entry repeats its
        /// transaction's `at` so that balances and statements by account and time are read
        /// from one covering index without a join. The triggers make the ledger append-only:
        /// a wrong posting is corrected by posting its reversal, never by editing history.
        pub const TABLES: &[&str] = &[$($sql),+];
        /// [`TABLES`] as one batch (statements separated by `;`), for a migration step that
        /// runs a batch.
        pub const SCHEMA: &str = concat!($($sql, ";\n"),+);
    };
}

schema![
    "CREATE TABLE ledger_transactions (
        id TEXT PRIMARY KEY NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        at TEXT NOT NULL,
        order_id TEXT,
        store_id TEXT,
        rider_id TEXT,
        currency TEXT NOT NULL CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
        memo TEXT
    )",
    "CREATE TABLE ledger_entries (
        transaction_id TEXT NOT NULL REFERENCES ledger_transactions (id),
        line_no INTEGER NOT NULL,
        account TEXT NOT NULL,
        currency TEXT NOT NULL CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
        amount_minor INTEGER NOT NULL
            CHECK (amount_minor <> 0 AND amount_minor BETWEEN -1000000000000 AND 1000000000000),
        at TEXT NOT NULL,
        PRIMARY KEY (transaction_id, line_no)
    ) WITHOUT ROWID",
    "CREATE INDEX ledger_entries_account_at
        ON ledger_entries (account, currency, at, amount_minor)",
    "CREATE INDEX ledger_transactions_order ON ledger_transactions (order_id)",
    "CREATE INDEX ledger_transactions_at ON ledger_transactions (at)",
    "CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE ON ledger_transactions
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END",
    "CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END",
    "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE ON ledger_entries
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END",
    "CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END",
];

/// The ledger's tables on PostgreSQL ([`SCHEMA`]'s twin): amounts BIGINT with the same
/// checks, timestamps and ids as text ordered bytewise (`COLLATE "C"`, as SQLite orders them),
/// and triggers that keep it append-only.
pub const PG_SCHEMA: &str = "
    CREATE TABLE ledger_transactions (
        id TEXT COLLATE \"C\" PRIMARY KEY NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        at TEXT COLLATE \"C\" NOT NULL,
        order_id TEXT,
        store_id TEXT,
        rider_id TEXT,
        currency TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        memo TEXT
    );
    CREATE TABLE ledger_entries (
        transaction_id TEXT COLLATE \"C\" NOT NULL REFERENCES ledger_transactions (id),
        line_no BIGINT NOT NULL,
        account TEXT COLLATE \"C\" NOT NULL,
        currency TEXT COLLATE \"C\" NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        amount_minor BIGINT NOT NULL
            CHECK (amount_minor <> 0 AND amount_minor BETWEEN -1000000000000 AND 1000000000000),
        at TEXT COLLATE \"C\" NOT NULL,
        PRIMARY KEY (transaction_id, line_no)
    );
    CREATE INDEX ledger_entries_account_at
        ON ledger_entries (account, currency, at, amount_minor);
    CREATE INDEX ledger_transactions_order ON ledger_transactions (order_id);
    CREATE INDEX ledger_transactions_at ON ledger_transactions (at);
    CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the ledger is append-only'; END $$;
    CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE ON ledger_transactions
        FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
    CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions
        FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
    CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
    CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
";

/// Why the ledger refused something. Nothing is written when [`post`] returns an error.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("unbalanced transaction: its entries sum to {sum_minor} {currency}, not zero")]
    Unbalanced { currency: String, sum_minor: i64 },
    #[error("invalid currency {0:?}: expected three upper-case letters (ISO 4217)")]
    InvalidCurrency(String),
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    #[error("amount overflow: {0}")]
    Overflow(String),
    #[error("invalid account {0:?}")]
    InvalidAccount(String),
    /// The idempotency key was posted before with other money movements: two different
    /// business events claim the same key, which is a bug the caller must see.
    #[error("{key} was already posted with different content ({reason})")]
    Conflict { key: String, reason: String },
    /// Anything else malformed: ids, the key, timestamps, the memo, the period, economics.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("ledger database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The PostgreSQL twin of [`LedgerError::Sql`] (the server's code and message).
    #[error("ledger database: {0}")]
    Postgres(String),
}

impl From<tokio_postgres::Error> for LedgerError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => Self::Postgres(format!("{}: {}", db.code().code(), db.message())),
            None => Self::Postgres(error.to_string()),
        }
    }
}

/// The business event a transaction books; its text is the first part of the idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    OrderDelivered,
    CardCaptured,
    Refunded,
    CashCollected,
    CashHandedIn,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderDelivered => "order_delivered",
            Self::CardCaptured => "card_captured",
            Self::Refunded => "refunded",
            Self::CashCollected => "cash_collected",
            Self::CashHandedIn => "cash_handed_in",
        }
    }
}

/// One line of a transaction: a signed amount (debit positive, credit negative) on an account,
/// in the transaction's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub account: Account,
    pub amount_minor: i64,
}

/// One balanced movement of money: build it with the functions of `postings`
/// ([`order_delivered`] and friends), then [`post`] it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transaction {
    /// UUIDv7 text, so ids sort in creation order.
    pub id: String,
    /// `kind:order_id[:n]` (`cash_handed_in:<handin id>`): the same business event always
    /// gets the same key.
    pub idempotency_key: String,
    pub kind: Kind,
    /// When the event happened: UTC RFC 3339 with milliseconds and `Z`, given by the caller.
    pub at: String,
    pub order_id: Option<String>,
    pub store_id: Option<String>,
    pub rider_id: Option<String>,
    pub currency: String,
    pub memo: Option<String>,
    pub entries: Vec<Entry>,
}

impl Transaction {
    /// The same transaction with a free-text note for statements (checked by [`post`]).
    pub fn with_memo(mut self, memo: impl Into<String>) -> Self {
        self.memo = Some(memo.into());
        self
    }

    /// Every check [`post`] makes before writing.
    pub fn validate(&self) -> Result<(), LedgerError> {
        check_uuid_v7(&self.id)?;
        check_key(self.kind, &self.idempotency_key)?;
        check_timestamp("at", &self.at)?;
        for (what, id) in [
            ("order_id", &self.order_id),
            ("store_id", &self.store_id),
            ("rider_id", &self.rider_id),
        ] {
            if let Some(id) = id
                && !valid_id(id)
            {
                return Err(invalid(
                    what,
                    format!("{id:?} is not 1-{MAX_ID_LEN} printable ASCII characters without ':'"),
                ));
            }
        }
        check_currency(&self.currency)?;
        if let Some(memo) = &self.memo {
            check_memo(memo)?;
        }
        check_entries(&self.currency, &self.entries)
    }
}

/// What [`post`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Posted {
    /// The transaction was written.
    New,
    /// A transaction with the same idempotency key and the same money movements is already in
    /// the ledger (a retry); nothing was written.
    AlreadyPosted,
}

/// Validates `transaction` and writes it, or reports that its business event is already
/// booked.
///
/// "Same content" compares what moves money: kind, order, store and rider ids, currency and
/// the entries (as a multiset of account and amount). `id`, `at` and `memo` are not compared,
/// because a retry rebuilds the transaction later and gets a new id and possibly a new time;
/// the first posting's values stay. Any other difference is [`LedgerError::Conflict`].
///
/// Runs inside the caller's transaction through a savepoint, so an error part-way through
/// (an SQL error after the header row) leaves nothing behind even if the caller goes on to
/// commit its other writes.
pub fn post(conn: &Connection, transaction: &Transaction) -> Result<Posted, LedgerError> {
    transaction.validate()?;
    conn.execute_batch("SAVEPOINT ledger_post")?;
    match write(conn, transaction) {
        Ok(posted) => {
            conn.execute_batch("RELEASE ledger_post")?;
            Ok(posted)
        }
        Err(error) => {
            if let Err(rollback) =
                conn.execute_batch("ROLLBACK TO ledger_post; RELEASE ledger_post")
            {
                // The caller's transaction is failing anyway; its error matters more.
                tracing::warn!(%rollback, %error, "ledger: rolling back a failed posting");
            }
            Err(error)
        }
    }
}

fn write(conn: &Connection, transaction: &Transaction) -> Result<Posted, LedgerError> {
    if let Some(existing) = stored_content(conn, &transaction.idempotency_key)? {
        let ours = Content::of(transaction);
        return match existing.difference(&ours) {
            None => Ok(Posted::AlreadyPosted),
            Some(reason) => Err(LedgerError::Conflict {
                key: transaction.idempotency_key.clone(),
                reason,
            }),
        };
    }
    conn.execute(
        "INSERT INTO ledger_transactions
            (id, idempotency_key, kind, at, order_id, store_id, rider_id, currency, memo)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            transaction.id,
            transaction.idempotency_key,
            transaction.kind.as_str(),
            transaction.at,
            transaction.order_id,
            transaction.store_id,
            transaction.rider_id,
            transaction.currency,
            transaction.memo,
        ],
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO ledger_entries (transaction_id, line_no, account, currency, amount_minor, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (line_no, entry) in (1_i64..).zip(&transaction.entries) {
        insert.execute(params![
            transaction.id,
            line_no,
            entry.account.key(),
            transaction.currency,
            entry.amount_minor,
            transaction.at,
        ])?;
    }
    Ok(Posted::New)
}

/// [`post`] on PostgreSQL, in the caller's transaction `tx` (through a savepoint likewise).
pub async fn pg_post(
    tx: &impl GenericClient,
    transaction: &Transaction,
) -> Result<Posted, LedgerError> {
    transaction.validate()?;
    tx.batch_execute("SAVEPOINT ledger_post").await?;
    match pg_write(tx, transaction).await {
        Ok(posted) => {
            tx.batch_execute("RELEASE ledger_post").await?;
            Ok(posted)
        }
        Err(error) => {
            if let Err(rollback) = tx
                .batch_execute("ROLLBACK TO ledger_post; RELEASE ledger_post")
                .await
            {
                tracing::warn!(%rollback, %error, "ledger: rolling back a failed posting");
            }
            Err(error)
        }
    }
}

async fn pg_write(
    tx: &impl GenericClient,
    transaction: &Transaction,
) -> Result<Posted, LedgerError> {
    if let Some(existing) = pg_stored_content(tx, &transaction.idempotency_key).await? {
        let ours = Content::of(transaction);
        return match existing.difference(&ours) {
            None => Ok(Posted::AlreadyPosted),
            Some(reason) => Err(LedgerError::Conflict {
                key: transaction.idempotency_key.clone(),
                reason,
            }),
        };
    }
    tx.execute(
        "INSERT INTO ledger_transactions
            (id, idempotency_key, kind, at, order_id, store_id, rider_id, currency, memo)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &transaction.id,
            &transaction.idempotency_key,
            &transaction.kind.as_str(),
            &transaction.at,
            &transaction.order_id,
            &transaction.store_id,
            &transaction.rider_id,
            &transaction.currency,
            &transaction.memo,
        ],
    )
    .await?;
    let insert = tx
        .prepare(
            "INSERT INTO ledger_entries
                (transaction_id, line_no, account, currency, amount_minor, at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    for (line_no, entry) in (1_i64..).zip(&transaction.entries) {
        tx.execute(
            &insert,
            &[
                &transaction.id,
                &line_no,
                &entry.account.key(),
                &transaction.currency,
                &entry.amount_minor,
                &transaction.at,
            ],
        )
        .await?;
    }
    Ok(Posted::New)
}

async fn pg_stored_content(
    tx: &impl GenericClient,
    key: &str,
) -> Result<Option<Content>, LedgerError> {
    let Some(header) = tx
        .query_opt(
            "SELECT id, kind, order_id, store_id, rider_id, currency
             FROM ledger_transactions WHERE idempotency_key = $1",
            &[&key],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: String = header.get(0);
    let mut content = Content {
        kind: header.get(1),
        order_id: header.get(2),
        store_id: header.get(3),
        rider_id: header.get(4),
        currency: header.get(5),
        entries: Vec::new(),
    };
    content.entries = tx
        .query(
            "SELECT account, amount_minor FROM ledger_entries WHERE transaction_id = $1",
            &[&id],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    content.entries.sort();
    Ok(Some(content))
}

/// What decides whether a repeated key is a retry or a conflict.
#[derive(Debug, PartialEq, Eq)]
struct Content {
    kind: String,
    order_id: Option<String>,
    store_id: Option<String>,
    rider_id: Option<String>,
    currency: String,
    entries: Vec<(String, i64)>,
}

impl Content {
    fn of(transaction: &Transaction) -> Self {
        let mut entries: Vec<(String, i64)> = transaction
            .entries
            .iter()
            .map(|e| (e.account.key(), e.amount_minor))
            .collect();
        entries.sort();
        Self {
            kind: transaction.kind.as_str().to_owned(),
            order_id: transaction.order_id.clone(),
            store_id: transaction.store_id.clone(),
            rider_id: transaction.rider_id.clone(),
            currency: transaction.currency.clone(),
            entries,
        }
    }

    /// Names the first field that differs.
    fn difference(&self, other: &Self) -> Option<String> {
        let differs = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            Some(format!("{what}: posted {a:?}, now {b:?}"))
        };
        if self.kind != other.kind {
            differs("kind", &self.kind, &other.kind)
        } else if self.order_id != other.order_id {
            differs("order_id", &self.order_id, &other.order_id)
        } else if self.store_id != other.store_id {
            differs("store_id", &self.store_id, &other.store_id)
        } else if self.rider_id != other.rider_id {
            differs("rider_id", &self.rider_id, &other.rider_id)
        } else if self.currency != other.currency {
            differs("currency", &self.currency, &other.currency)
        } else if self.entries != other.entries {
            differs("entries", &self.entries, &other.entries)
        } else {
            None
        }
    }
}

fn stored_content(conn: &Connection, key: &str) -> Result<Option<Content>, LedgerError> {
    let header = conn
        .query_row(
            "SELECT id, kind, order_id, store_id, rider_id, currency
             FROM ledger_transactions WHERE idempotency_key = ?1",
            [key],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    Content {
                        kind: row.get(1)?,
                        order_id: row.get(2)?,
                        store_id: row.get(3)?,
                        rider_id: row.get(4)?,
                        currency: row.get(5)?,
                        entries: Vec::new(),
                    },
                ))
            },
        )
        .optional()?;
    let Some((id, mut content)) = header else {
        return Ok(None);
    };
    let mut entries = conn.prepare_cached(
        "SELECT account, amount_minor FROM ledger_entries WHERE transaction_id = ?1",
    )?;
    content.entries = entries
        .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    content.entries.sort();
    Ok(Some(content))
}

/// One currency's line of the trial balance: the sum of all debit entries and of all credit
/// entries (as a positive number). Double entry means the two are always equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrialLine {
    pub currency: String,
    pub debits_minor: i64,
    pub credits_minor: i64,
}

impl TrialLine {
    pub fn is_balanced(&self) -> bool {
        self.debits_minor == self.credits_minor
    }
}

/// Debits and credits of the whole ledger per currency, in currency order.
pub fn trial_balance(conn: &Connection) -> Result<Vec<TrialLine>, LedgerError> {
    let mut query = conn.prepare_cached(
        "SELECT currency,
                COALESCE(SUM(CASE WHEN amount_minor > 0 THEN amount_minor END), 0),
                COALESCE(SUM(CASE WHEN amount_minor < 0 THEN -amount_minor END), 0)
         FROM ledger_entries GROUP BY currency ORDER BY currency",
    )?;
    query
        .query_map([], |row| {
            Ok(TrialLine {
                currency: row.get(0)?,
                debits_minor: row.get(1)?,
                credits_minor: row.get(2)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sum_error)
}

/// [`trial_balance`] on PostgreSQL. Sums are NUMERIC there; one that does not fit in BIGINT is
/// [`LedgerError::Overflow`], as SQLite's overflowing SUM() is.
pub async fn pg_trial_balance(c: &impl GenericClient) -> Result<Vec<TrialLine>, LedgerError> {
    Ok(c.query(
        "SELECT currency,
                COALESCE(SUM(CASE WHEN amount_minor > 0 THEN amount_minor END), 0)::BIGINT,
                COALESCE(SUM(CASE WHEN amount_minor < 0 THEN -amount_minor END), 0)::BIGINT
         FROM ledger_entries GROUP BY currency ORDER BY currency",
        &[],
    )
    .await
    .map_err(pg_sum_error)?
    .iter()
    .map(|row| TrialLine {
        currency: row.get(0),
        debits_minor: row.get(1),
        credits_minor: row.get(2),
    })
    .collect())
}

/// True when every currency's debits equal its credits (an empty ledger is balanced).
pub fn is_balanced(lines: &[TrialLine]) -> bool {
    lines.iter().all(TrialLine::is_balanced)
}

/// An account's balance in one currency (debit positive): 0 for an account never used.
pub fn balance(conn: &Connection, account: &Account, currency: &str) -> Result<i64, LedgerError> {
    account.validate()?;
    check_currency(currency)?;
    conn.prepare_cached(
        "SELECT COALESCE(SUM(amount_minor), 0) FROM ledger_entries
         WHERE account = ?1 AND currency = ?2",
    )?
    .query_row(params![account.key(), currency], |row| row.get(0))
    .map_err(sum_error)
}

/// Every account's balance in one currency, by account key, including accounts whose
/// movements net to zero.
pub fn balances(conn: &Connection, currency: &str) -> Result<Vec<(String, i64)>, LedgerError> {
    check_currency(currency)?;
    let mut query = conn.prepare_cached(
        "SELECT account, SUM(amount_minor) FROM ledger_entries WHERE currency = ?1
         GROUP BY account ORDER BY account",
    )?;
    query
        .query_map([currency], |row| Ok((row.get(0)?, row.get(1)?)))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sum_error)
}

/// [`balances`] on PostgreSQL.
pub async fn pg_balances(
    c: &impl GenericClient,
    currency: &str,
) -> Result<Vec<(String, i64)>, LedgerError> {
    check_currency(currency)?;
    Ok(c.query(
        "SELECT account, SUM(amount_minor)::BIGINT FROM ledger_entries WHERE currency = $1
         GROUP BY account ORDER BY account",
        &[&currency],
    )
    .await
    .map_err(pg_sum_error)?
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect())
}

/// A PostgreSQL sum cast back to BIGINT fails with "out of range" rather than wrapping.
fn pg_sum_error(error: tokio_postgres::Error) -> LedgerError {
    if error.code() == Some(&tokio_postgres::error::SqlState::NUMERIC_VALUE_OUT_OF_RANGE) {
        return LedgerError::Overflow(format!("summing the ledger: {error}"));
    }
    error.into()
}

/// SQLite's SUM() fails rather than wrapping when integers overflow; that is our Overflow.
fn sum_error(error: rusqlite::Error) -> LedgerError {
    if let rusqlite::Error::SqliteFailure(_, Some(message)) = &error
        && message.contains("integer overflow")
    {
        return LedgerError::Overflow(format!("summing the ledger: {message}"));
    }
    LedgerError::Sql(error)
}

fn invalid(what: &'static str, reason: impl Into<String>) -> LedgerError {
    LedgerError::Invalid {
        what,
        reason: reason.into(),
    }
}

/// `^[A-Z]{3}$`: the shape of an ISO 4217 code (which codes exist is the caller's business).
fn check_currency(currency: &str) -> Result<(), LedgerError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(LedgerError::InvalidCurrency(currency.to_owned()))
    }
}

/// Exactly the form `clock::rfc3339` writes (UTC, milliseconds, `Z`): statements select
/// periods by comparing timestamps as text, which is only time order for one fixed format.
fn check_timestamp(what: &'static str, at: &str) -> Result<(), LedgerError> {
    match crate::clock::parse(at) {
        Some(parsed) if crate::clock::rfc3339(parsed) == at => Ok(()),
        _ => Err(invalid(
            what,
            format!("{at:?} is not UTC RFC 3339 with milliseconds, like 2026-01-31T09:30:00.000Z"),
        )),
    }
}

fn check_uuid_v7(id: &str) -> Result<(), LedgerError> {
    match uuid::Uuid::parse_str(id) {
        Ok(uuid) if uuid.get_version_num() == 7 && uuid.hyphenated().to_string() == id => Ok(()),
        _ => Err(invalid("id", format!("{id:?} is not a lower-case UUIDv7"))),
    }
}

fn check_key(kind: Kind, key: &str) -> Result<(), LedgerError> {
    let well_formed = key.len() <= MAX_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic())
        && key
            .strip_prefix(kind.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|rest| !rest.is_empty());
    if well_formed {
        Ok(())
    } else {
        Err(invalid(
            "idempotency key",
            format!("{key:?} is not {}:<order id>[:n]", kind.as_str()),
        ))
    }
}

/// Memos end up in CSV and spreadsheets: bounded, and no control characters but newline and
/// tab (which CSV quoting handles).
fn check_memo(memo: &str) -> Result<(), LedgerError> {
    if memo.len() > MAX_MEMO_LEN {
        return Err(invalid("memo", format!("longer than {MAX_MEMO_LEN} bytes")));
    }
    if memo
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid("memo", "contains control characters"));
    }
    Ok(())
}

fn check_entries(currency: &str, entries: &[Entry]) -> Result<(), LedgerError> {
    if entries.len() < 2 {
        return Err(LedgerError::InvalidAmount(
            "a transaction needs at least two entries".to_owned(),
        ));
    }
    if entries.len() > MAX_ENTRIES {
        return Err(LedgerError::InvalidAmount(format!(
            "more than {MAX_ENTRIES} entries"
        )));
    }
    // Summed before the per-entry checks so that amounts which would wrap to a "balanced"
    // zero are reported as the overflow they are.
    let mut sum: i64 = 0;
    for entry in entries {
        sum = sum.checked_add(entry.amount_minor).ok_or_else(|| {
            LedgerError::Overflow("the entries' sum does not fit in 64 bits".to_owned())
        })?;
    }
    for entry in entries {
        entry.account.validate()?;
        if entry.amount_minor == 0 {
            return Err(LedgerError::InvalidAmount(format!(
                "zero entry on {}",
                entry.account
            )));
        }
        if !(-MAX_AMOUNT_MINOR..=MAX_AMOUNT_MINOR).contains(&entry.amount_minor) {
            return Err(LedgerError::InvalidAmount(format!(
                "{} on {} is beyond ±{MAX_AMOUNT_MINOR}",
                entry.amount_minor, entry.account
            )));
        }
    }
    if sum != 0 {
        return Err(LedgerError::Unbalanced {
            currency: currency.to_owned(),
            sum_minor: sum,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests;
