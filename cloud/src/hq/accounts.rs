//! Customer accounts: an e-mail and a password instead of a token HQ hands out, the sessions
//! a web app (HttpOnly cookie) or a mobile app (bearer token) signs in with, and the
//! addresses a customer saves for checkout.
//!
//! Why beside HQ users and not a second identity: intake knows a customer as a `customers` row
//! (`Customer {id, first_name}`), and an account is only a way to become that row. So sign-up
//! writes the row too, with a token hash no token has (`none:` and random hex can never equal a
//! SHA-256 in hex), and everything keyed by customer id (orders, idempotency, cancels) works
//! for account customers unchanged. Passwords are argon2id as for HQ users, and an unknown
//! e-mail costs the same check as a known one. Only a session token's SHA-256 is stored; its
//! CSRF token guards the cookie path the way the dashboard's does. None of it leaves `hq.db`.
//!
//! A forgotten password is reset through a link e-mailed to the account's address: a random
//! single-use token (only its SHA-256 stored) that works for [`RESET_VALID_MINUTES`], whose
//! e-mail is enqueued in the same transaction as the token (`notify`), so there is never a
//! token without its e-mail or the other way round. Setting the new password spends every
//! link of the customer and ends every session, so whoever knew the old password is out.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::users::{DUMMY_HASH, hash_password, random_hex, verify_password};
use super::{Backend, Hq};
use crate::CloudError;
use crate::registry::token_hash;

/// Longest e-mail address (RFC 5321's path limit less the brackets).
pub const MAX_EMAIL: usize = 254;
/// Password length in characters.
pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 128;
/// First name length in characters.
pub const MAX_FIRST_NAME: usize = 60;
/// Saved addresses per customer, at most.
pub const MAX_ADDRESSES: usize = 20;
/// A saved address's label ("Home", "Office") in characters.
pub const MAX_LABEL: usize = 60;
/// A saved address's text in bytes: what an order's address takes, so any saved one can be
/// ordered to.
pub const MAX_ADDRESS_TEXT: usize = 500;
/// Live sessions per customer, at most: a sign-in past it ends the oldest, so a script that
/// knows the password cannot grow the table without bound.
pub const MAX_SESSIONS: usize = 20;
/// Every session token starts with this, so the bearer of one is looked up as a session and
/// any other bearer as an HQ-issued customer token (`fkc_`).
pub const SESSION_TOKEN_PREFIX: &str = "fks_";
/// How long a password reset link works.
pub const RESET_VALID_MINUTES: i64 = 30;
/// Live (unused, unexpired) reset links per customer, at most: further requests send nothing
/// until one is used or expires, so nobody can fill a customer's inbox or the table.
pub const MAX_LIVE_RESETS: i64 = 3;
/// Every reset token starts with this (a token pasted in the wrong place is recognisable).
const RESET_TOKEN_PREFIX: &str = "fkr_";
/// What an unknown, used or expired reset token gets.
const RESET_TOKEN_REFUSED: &str = "this reset link is unknown, used or expired: ask for a new one";
/// A session's `last_used_at` is written at most this often (a write per request would make
/// every read a write).
const LAST_USED_EVERY_S: i64 = 60;

pub(super) const SCHEMA: &str = "
    CREATE TABLE customer_accounts (
        -- the customers row this account signs in as (1:1)
        customer_id TEXT PRIMARY KEY NOT NULL,
        -- trimmed and lower-cased
        email TEXT NOT NULL UNIQUE,
        -- argon2id PHC string
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE customer_sessions (
        token_sha256 TEXT PRIMARY KEY NOT NULL,
        customer_id TEXT NOT NULL,
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL
    );
    CREATE INDEX customer_sessions_by_customer ON customer_sessions (customer_id, created_at);
    CREATE INDEX customer_sessions_by_expiry ON customer_sessions (expires_at);
    CREATE TABLE customer_addresses (
        -- UUIDv7: listing by id lists in the order they were saved
        id TEXT PRIMARY KEY NOT NULL,
        customer_id TEXT NOT NULL,
        label TEXT NOT NULL,
        text TEXT NOT NULL,
        lat REAL NOT NULL CHECK (lat BETWEEN -90 AND 90),
        lon REAL NOT NULL CHECK (lon BETWEEN -180 AND 180),
        created_at TEXT NOT NULL
    );
    CREATE INDEX customer_addresses_by_customer ON customer_addresses (customer_id, id);
";

pub(super) const RESET_SCHEMA: &str = "
    CREATE TABLE password_resets (
        token_sha256 TEXT PRIMARY KEY NOT NULL,
        customer_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );
    CREATE INDEX password_resets_by_customer ON password_resets (customer_id, expires_at);
";

/// The same tables on PostgreSQL; a session's `seq` stands in for SQLite's rowid, the tie
/// break between sessions created in the same instant when the oldest are trimmed.
pub(super) const PG_SCHEMA: &str = "
    CREATE TABLE customer_accounts (
        customer_id TEXT PRIMARY KEY NOT NULL,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE customer_sessions (
        token_sha256 TEXT PRIMARY KEY NOT NULL,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        customer_id TEXT NOT NULL,
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL
    );
    CREATE INDEX customer_sessions_by_customer ON customer_sessions (customer_id, created_at);
    CREATE INDEX customer_sessions_by_expiry ON customer_sessions (expires_at);
    CREATE TABLE customer_addresses (
        id TEXT PRIMARY KEY NOT NULL,
        customer_id TEXT NOT NULL,
        label TEXT NOT NULL,
        text TEXT NOT NULL,
        lat DOUBLE PRECISION NOT NULL CHECK (lat BETWEEN -90 AND 90),
        lon DOUBLE PRECISION NOT NULL CHECK (lon BETWEEN -180 AND 180),
        created_at TEXT NOT NULL
    );
    CREATE INDEX customer_addresses_by_customer ON customer_addresses (customer_id, id);
    CREATE TABLE password_resets (
        token_sha256 TEXT PRIMARY KEY NOT NULL,
        customer_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );
    CREATE INDEX password_resets_by_customer ON password_resets (customer_id, expires_at);
";

/// What an account operation can refuse; `http/error.rs` gives each its status.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Input of the wrong shape (e-mail, password, name, address).
    #[error("{0}")]
    Invalid(String),
    #[error("an account with this e-mail exists; sign in instead")]
    EmailTaken,
    #[error("at most {MAX_ADDRESSES} saved addresses: delete one first")]
    TooManyAddresses,
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

impl From<flashkart_sync::Error> for AccountError {
    fn from(error: flashkart_sync::Error) -> Self {
        Self::Cloud(error.into())
    }
}

/// A signed-in customer: what sign-up, sign-in and `GET /api/v1/account` answer (never the
/// session's token, which only sign-up and sign-in hand out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSession {
    pub customer_id: String,
    pub first_name: String,
    pub email: String,
    /// Sent back in `X-CSRF-Token` on every cookie-authenticated change.
    pub csrf_token: String,
    pub expires_at: String,
}

/// A sign-up, checked: the e-mail normalised, the name trimmed, the password's length right.
#[derive(Debug, Clone)]
pub struct NewAccount {
    email: String,
    first_name: String,
    password: String,
}

impl NewAccount {
    pub fn new(email: &str, password: String, first_name: &str) -> Result<Self, AccountError> {
        let email = normalize_email(email)
            .ok_or_else(|| AccountError::Invalid(format!(
                "email must look like name@example.com: one @, no spaces, at most {MAX_EMAIL} characters"
            )))?;
        if !password_length_ok(&password) {
            return Err(AccountError::Invalid(format!(
                "a password is {MIN_PASSWORD}-{MAX_PASSWORD} characters"
            )));
        }
        let first_name = first_name.trim();
        if !text_ok(first_name, MAX_FIRST_NAME) {
            return Err(AccountError::Invalid(format!(
                "first_name must be 1-{MAX_FIRST_NAME} characters without control characters"
            )));
        }
        Ok(Self {
            email,
            first_name: first_name.to_owned(),
            password,
        })
    }
}

/// An address to save, as the customer sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAddress {
    pub label: String,
    pub text: String,
    pub lat: f64,
    pub lon: f64,
}

impl NewAddress {
    /// Trims the texts and checks every field.
    fn checked(self) -> Result<Self, AccountError> {
        let label = self.label.trim();
        if !text_ok(label, MAX_LABEL) {
            return Err(AccountError::Invalid(format!(
                "label must be 1-{MAX_LABEL} characters without control characters"
            )));
        }
        let text = self.text.trim();
        if text.is_empty() || text.len() > MAX_ADDRESS_TEXT || text.chars().any(char::is_control) {
            return Err(AccountError::Invalid(format!(
                "text must be 1-{MAX_ADDRESS_TEXT} bytes without control characters"
            )));
        }
        // NaN is in no range.
        if !((-90.0..=90.0).contains(&self.lat) && (-180.0..=180.0).contains(&self.lon)) {
            return Err(AccountError::Invalid(
                "lat must be in -90..90 and lon in -180..180".into(),
            ));
        }
        Ok(Self {
            label: label.to_owned(),
            text: text.to_owned(),
            ..self
        })
    }
}

/// A saved address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedAddress {
    pub id: String,
    pub label: String,
    pub text: String,
    pub lat: f64,
    pub lon: f64,
    pub created_at: String,
}

/// The e-mail trimmed and lower-cased if it has the shape of one: exactly one `@` with text on
/// both sides, a dot inside the domain, no white space or control characters, at most
/// [`MAX_EMAIL`] bytes. Whether it reaches anyone is not checked (no verification mail yet).
pub fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim();
    if email.len() > MAX_EMAIL {
        return None;
    }
    let email = email.to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let shaped = email.len() <= MAX_EMAIL
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    shaped.then_some(email)
}

/// Whether a password's length is one an account can have (in characters).
pub fn password_length_ok(password: &str) -> bool {
    (MIN_PASSWORD..=MAX_PASSWORD).contains(&password.chars().count())
}

/// 1 to `max` characters, none of them control characters.
fn text_ok(text: &str, max: usize) -> bool {
    !text.is_empty() && text.chars().count() <= max && !text.chars().any(char::is_control)
}

/// A new session's token, CSRF token, and expiry `days` from now.
fn new_session_secrets(days: u32) -> (String, String, String) {
    (
        format!("{SESSION_TOKEN_PREFIX}{}", random_hex(32)),
        random_hex(32),
        crate::clock::rfc3339(crate::clock::now() + time::Duration::days(i64::from(days.max(1)))),
    )
}

/// Stores a new session (in the caller's write) and trims the customer's sessions to the
/// newest [`MAX_SESSIONS`]; expired sessions of anyone go too, so the table stays small.
fn insert_session(
    conn: &rusqlite::Connection,
    token_sha256: &str,
    customer_id: &str,
    csrf_token: &str,
    expires_at: &str,
    now: &str,
) -> Result<(), flashkart_sync::Error> {
    conn.execute(
        "DELETE FROM customer_sessions WHERE expires_at <= ?1",
        [now],
    )?;
    conn.execute(
        "INSERT INTO customer_sessions
            (token_sha256, customer_id, csrf_token, created_at, expires_at, last_used_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
        params![token_sha256, customer_id, csrf_token, now, expires_at],
    )?;
    conn.execute(
        "DELETE FROM customer_sessions WHERE customer_id = ?1 AND token_sha256 NOT IN (
            SELECT token_sha256 FROM customer_sessions WHERE customer_id = ?1
            ORDER BY created_at DESC, rowid DESC LIMIT ?2)",
        params![customer_id, MAX_SESSIONS],
    )?;
    Ok(())
}

/// [`insert_session`] on PostgreSQL, in the caller's transaction. The customer's row is
/// locked first, so two instances signing the same customer in at once trim in turn.
async fn pg_insert_session(
    tx: &tokio_postgres::Transaction<'_>,
    token_sha256: &str,
    customer_id: &str,
    csrf_token: &str,
    expires_at: &str,
    now: &str,
) -> Result<(), CloudError> {
    tx.execute(
        "SELECT 1 FROM customers WHERE id = $1 FOR UPDATE",
        &[&customer_id],
    )
    .await?;
    tx.execute(
        "DELETE FROM customer_sessions WHERE expires_at <= $1",
        &[&now],
    )
    .await?;
    tx.execute(
        "INSERT INTO customer_sessions
            (token_sha256, customer_id, csrf_token, created_at, expires_at, last_used_at)
         VALUES ($1, $2, $3, $4, $5, $4)",
        &[&token_sha256, &customer_id, &csrf_token, &now, &expires_at],
    )
    .await?;
    tx.execute(
        "DELETE FROM customer_sessions WHERE customer_id = $1 AND token_sha256 NOT IN (
            SELECT token_sha256 FROM customer_sessions WHERE customer_id = $1
            ORDER BY created_at DESC, seq DESC LIMIT $2)",
        &[&customer_id, &(MAX_SESSIONS as i64)],
    )
    .await?;
    Ok(())
}

/// The customer a live (known, unused, unexpired at `now`) reset token is for.
fn live_reset(
    conn: &rusqlite::Connection,
    token_sha256: &str,
    now: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT customer_id FROM password_resets
         WHERE token_sha256 = ?1 AND used_at IS NULL AND expires_at > ?2",
    )?
    .query_row(params![token_sha256, now], |r| r.get(0))
    .optional()
}

impl Hq {
    /// Creates an account, its `customers` row and a first session lasting `days`; the token
    /// is for the cookie or the bearer header. [`AccountError::EmailTaken`] writes nothing.
    pub async fn sign_up(
        &self,
        account: NewAccount,
        days: u32,
    ) -> Result<(String, AccountSession), AccountError> {
        let NewAccount {
            email,
            first_name,
            password,
        } = account;
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| CloudError::Task(e.to_string()))??;
        let customer_id = uuid::Uuid::now_v7().to_string();
        let (token, csrf_token, expires_at) = new_session_secrets(days);
        let session = AccountSession {
            customer_id,
            first_name,
            email,
            csrf_token,
            expires_at,
        };
        let (stored, hash) = (session.clone(), token_hash(&token));
        let now = crate::clock::now_rfc3339();
        let db = match &self.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(pg) => {
                let s = &stored;
                let mut client = pg.client().await?;
                let tx = client.transaction().await.map_err(CloudError::from)?;
                let added = tx
                    .execute(
                        "INSERT INTO customer_accounts
                            (customer_id, email, password_hash, created_at)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO NOTHING",
                        &[&s.customer_id, &s.email, &password_hash, &now],
                    )
                    .await
                    .map_err(CloudError::from)?;
                if added == 0 {
                    return Err(AccountError::EmailTaken);
                }
                let unusable = format!("none:{}", random_hex(32));
                tx.execute(
                    "INSERT INTO customers (id, first_name, token_sha256, created_at)
                     VALUES ($1, $2, $3, $4)",
                    &[&s.customer_id, &s.first_name, &unusable, &now],
                )
                .await
                .map_err(CloudError::from)?;
                pg_insert_session(
                    &tx,
                    &hash,
                    &s.customer_id,
                    &s.csrf_token,
                    &s.expires_at,
                    &now,
                )
                .await?;
                tx.commit().await.map_err(CloudError::from)?;
                return Ok((token, session));
            }
        };
        let created = db
            .write(move |conn| {
                let s = &stored;
                let added = conn.execute(
                    "INSERT INTO customer_accounts (customer_id, email, password_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (email) DO NOTHING",
                    params![s.customer_id, s.email, password_hash, now],
                )?;
                if added == 0 {
                    return Ok(false);
                }
                // No token hashes to this: the row is reached only through the account.
                let unusable = format!("none:{}", random_hex(32));
                conn.execute(
                    "INSERT INTO customers (id, first_name, token_sha256, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![s.customer_id, s.first_name, unusable, now],
                )?;
                insert_session(
                    conn,
                    &hash,
                    &s.customer_id,
                    &s.csrf_token,
                    &s.expires_at,
                    &now,
                )?;
                Ok::<_, flashkart_sync::Error>(true)
            })
            .await?;
        if !created {
            return Err(AccountError::EmailTaken);
        }
        Ok((token, session))
    }

    /// Checks an e-mail and password and opens a session lasting `days`: `Ok(None)` for an
    /// unknown e-mail or a wrong password alike (the same argon2 check either way).
    pub async fn account_sign_in(
        &self,
        email: &str,
        password: String,
        days: u32,
    ) -> Result<Option<(String, AccountSession)>, CloudError> {
        let email = normalize_email(email);
        let lookup = email.clone();
        let found: Option<(String, String, String)> = match lookup {
            Some(lookup) => match &self.backend {
                Backend::Sqlite(db) => {
                    db.read(move |conn| {
                        conn.prepare_cached(
                            "SELECT a.customer_id, c.first_name, a.password_hash
                             FROM customer_accounts a JOIN customers c ON c.id = a.customer_id
                             WHERE a.email = ?1",
                        )?
                        .query_row([lookup], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                        .optional()
                        .map_err(flashkart_sync::Error::from)
                    })
                    .await?
                }
                Backend::Postgres(pg) => pg
                    .client()
                    .await?
                    .query_opt(
                        "SELECT a.customer_id, c.first_name, a.password_hash
                         FROM customer_accounts a JOIN customers c ON c.id = a.customer_id
                         WHERE a.email = $1",
                        &[&lookup],
                    )
                    .await?
                    .map(|row| (row.get(0), row.get(1), row.get(2))),
            },
            None => None,
        };
        let hash = found
            .as_ref()
            .map_or_else(|| DUMMY_HASH.clone(), |(_, _, hash)| hash.clone());
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| CloudError::Task(e.to_string()))?;
        let (Some((customer_id, first_name, _)), Some(email)) = (found.filter(|_| matches), email)
        else {
            return Ok(None);
        };
        let (token, csrf_token, expires_at) = new_session_secrets(days);
        let session = AccountSession {
            customer_id,
            first_name,
            email,
            csrf_token,
            expires_at,
        };
        let (stored, hash) = (session.clone(), token_hash(&token));
        let now = crate::clock::now_rfc3339();
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    let s = &stored;
                    insert_session(
                        conn,
                        &hash,
                        &s.customer_id,
                        &s.csrf_token,
                        &s.expires_at,
                        &now,
                    )
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                let s = &stored;
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                pg_insert_session(
                    &tx,
                    &hash,
                    &s.customer_id,
                    &s.csrf_token,
                    &s.expires_at,
                    &now,
                )
                .await?;
                tx.commit().await?;
            }
        }
        Ok(Some((token, session)))
    }

    /// The live (unexpired, not signed out) session of a token, if any; notes its use.
    pub async fn account_session(&self, token: &str) -> Result<Option<AccountSession>, CloudError> {
        let hash = token_hash(token);
        let now = crate::clock::now();
        let now_text = crate::clock::rfc3339(now);
        let lookup = hash.clone();
        let row: Option<(AccountSession, String)> = match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |conn| {
                    conn.prepare_cached(
                        "SELECT s.customer_id, c.first_name, a.email, s.csrf_token, s.expires_at,
                            s.last_used_at
                     FROM customer_sessions s
                     JOIN customer_accounts a ON a.customer_id = s.customer_id
                     JOIN customers c ON c.id = s.customer_id
                     WHERE s.token_sha256 = ?1 AND s.expires_at > ?2",
                    )?
                    .query_row(params![lookup, now_text], |row| {
                        Ok((
                            AccountSession {
                                customer_id: row.get(0)?,
                                first_name: row.get(1)?,
                                email: row.get(2)?,
                                csrf_token: row.get(3)?,
                                expires_at: row.get(4)?,
                            },
                            row.get(5)?,
                        ))
                    })
                    .optional()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query_opt(
                    "SELECT s.customer_id, c.first_name, a.email, s.csrf_token, s.expires_at,
                            s.last_used_at
                     FROM customer_sessions s
                     JOIN customer_accounts a ON a.customer_id = s.customer_id
                     JOIN customers c ON c.id = s.customer_id
                     WHERE s.token_sha256 = $1 AND s.expires_at > $2",
                    &[&lookup, &now_text],
                )
                .await?
                .map(|row| {
                    (
                        AccountSession {
                            customer_id: row.get(0),
                            first_name: row.get(1),
                            email: row.get(2),
                            csrf_token: row.get(3),
                            expires_at: row.get(4),
                        },
                        row.get(5),
                    )
                }),
        };
        let Some((session, last_used_at)) = row else {
            return Ok(None);
        };
        let stale = crate::clock::rfc3339(now - time::Duration::seconds(LAST_USED_EVERY_S));
        if last_used_at < stale {
            let now_text = crate::clock::rfc3339(now);
            match &self.backend {
                Backend::Sqlite(db) => {
                    db.write(move |conn| {
                        conn.execute(
                            "UPDATE customer_sessions SET last_used_at = ?2 WHERE token_sha256 = ?1",
                            params![hash, now_text],
                        )
                        .map_err(flashkart_sync::Error::from)
                    })
                    .await?;
                }
                Backend::Postgres(pg) => {
                    pg.client()
                        .await?
                        .execute(
                            "UPDATE customer_sessions SET last_used_at = $2 WHERE token_sha256 = $1",
                            &[&hash, &now_text],
                        )
                        .await?;
                }
            }
        }
        Ok(Some(session))
    }

    /// Ends a session (sign-out); an unknown token is already signed out.
    pub async fn end_account_session(&self, token: &str) -> Result<(), CloudError> {
        let hash = token_hash(token);
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    conn.execute(
                        "DELETE FROM customer_sessions WHERE token_sha256 = ?1",
                        [hash],
                    )
                    .map_err(flashkart_sync::Error::from)
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute(
                        "DELETE FROM customer_sessions WHERE token_sha256 = $1",
                        &[&hash],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Starts a password reset for `email` (already normalised): for an account with that
    /// e-mail, a new reset token and its e-mail in the outbox, in one transaction; for none,
    /// nothing. The caller answers the same either way, and both take one write transaction,
    /// so neither the answer nor its time tells whether the account exists.
    pub async fn request_password_reset(&self, email: String) -> Result<(), CloudError> {
        let token = format!("{RESET_TOKEN_PREFIX}{}", random_hex(32));
        let token_sha256 = token_hash(&token);
        let now = crate::clock::now();
        let expires_at = crate::clock::rfc3339(now + time::Duration::minutes(RESET_VALID_MINUTES));
        let now = crate::clock::rfc3339(now);
        let db = match &self.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(pg) => {
                let enqueued =
                    pg_request_password_reset(pg, &email, &token, &token_sha256, &now, &expires_at)
                        .await?;
                if enqueued {
                    crate::notify::wake();
                }
                return Ok(());
            }
        };
        let enqueued = db
            .write(move |conn| {
                conn.execute("DELETE FROM password_resets WHERE expires_at <= ?1", [&now])?;
                let customer: Option<String> = conn
                    .prepare_cached("SELECT customer_id FROM customer_accounts WHERE email = ?1")?
                    .query_row([&email], |r| r.get(0))
                    .optional()?;
                let Some(customer) = customer else {
                    return Ok(false);
                };
                let live: i64 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM password_resets
                         WHERE customer_id = ?1 AND used_at IS NULL AND expires_at > ?2",
                    )?
                    .query_row(params![customer, now], |r| r.get(0))?;
                if live >= MAX_LIVE_RESETS {
                    tracing::warn!(customer_id = %customer, "password reset not sent: links still live");
                    return Ok(false);
                }
                conn.execute(
                    "INSERT INTO password_resets (token_sha256, customer_id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![token_sha256, customer, now, expires_at],
                )?;
                crate::notify::enqueue(
                    conn,
                    &crate::notify::Notification {
                        kind: crate::notify::Kind::PasswordReset,
                        about: &token_sha256,
                        order_id: None,
                        customer_id: Some(&customer),
                        payload: serde_json::json!({
                            "token": token,
                            "expires_at": expires_at,
                            "valid_minutes": RESET_VALID_MINUTES,
                        }),
                    },
                )?;
                tracing::info!(customer_id = %customer, "password reset e-mail enqueued");
                Ok::<_, flashkart_sync::Error>(true)
            })
            .await?;
        if enqueued {
            crate::notify::wake();
        }
        Ok(())
    }

    /// Sets a new password with a reset token; returns the customer. The token must be live
    /// (known, unused, unexpired) and the password one sign-up would take, else
    /// [`AccountError::Invalid`] and nothing changes. Every reset link of the customer is
    /// spent and every session ended.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        password: String,
    ) -> Result<String, AccountError> {
        if !password_length_ok(&password) {
            return Err(AccountError::Invalid(format!(
                "a password is {MIN_PASSWORD}-{MAX_PASSWORD} characters"
            )));
        }
        let token_sha256 = token_hash(token);
        // Looked up first, so a wrong token costs no password hash.
        let (lookup, now) = (token_sha256.clone(), crate::clock::now_rfc3339());
        let found = match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |conn| {
                    live_reset(conn, &lookup, &now).map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query_opt(
                    "SELECT customer_id FROM password_resets
                     WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > $2",
                    &[&lookup, &now],
                )
                .await
                .map_err(CloudError::from)?
                .map(|row| row.get::<_, String>(0)),
        };
        if found.is_none() {
            return Err(AccountError::Invalid(RESET_TOKEN_REFUSED.into()));
        }
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| CloudError::Task(e.to_string()))??;
        let now = crate::clock::now_rfc3339();
        let db = match &self.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(pg) => {
                return pg_confirm_password_reset(pg, &token_sha256, &password_hash, &now)
                    .await?
                    .ok_or_else(|| AccountError::Invalid(RESET_TOKEN_REFUSED.into()));
            }
        };
        let reset = db
            .write(move |conn| {
                // Again under the single writer: of two confirmations with one token, one wins.
                let Some(customer) = live_reset(conn, &token_sha256, &now)? else {
                    return Ok(None);
                };
                conn.execute(
                    "UPDATE customer_accounts SET password_hash = ?2 WHERE customer_id = ?1",
                    params![customer, password_hash],
                )?;
                conn.execute(
                    "UPDATE password_resets SET used_at = ?2
                     WHERE customer_id = ?1 AND used_at IS NULL",
                    params![customer, now],
                )?;
                conn.execute(
                    "DELETE FROM customer_sessions WHERE customer_id = ?1",
                    [&customer],
                )?;
                Ok::<_, flashkart_sync::Error>(Some(customer))
            })
            .await?;
        reset.ok_or_else(|| AccountError::Invalid(RESET_TOKEN_REFUSED.into()))
    }

    /// A customer's saved addresses, in the order they were saved.
    pub async fn addresses(&self, customer_id: &str) -> Result<Vec<SavedAddress>, CloudError> {
        let customer_id = customer_id.to_owned();
        let db = match &self.backend {
            Backend::Sqlite(db) => db,
            Backend::Postgres(pg) => {
                return Ok(pg
                    .client()
                    .await?
                    .query(
                        "SELECT id, label, text, lat, lon, created_at FROM customer_addresses
                         WHERE customer_id = $1 ORDER BY id",
                        &[&customer_id],
                    )
                    .await?
                    .iter()
                    .map(|row| SavedAddress {
                        id: row.get(0),
                        label: row.get(1),
                        text: row.get(2),
                        lat: row.get(3),
                        lon: row.get(4),
                        created_at: row.get(5),
                    })
                    .collect());
            }
        };
        Ok(db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, label, text, lat, lon, created_at FROM customer_addresses
                     WHERE customer_id = ?1 ORDER BY id",
                )?
                .query_map([customer_id], |row| {
                    Ok(SavedAddress {
                        id: row.get(0)?,
                        label: row.get(1)?,
                        text: row.get(2)?,
                        lat: row.get(3)?,
                        lon: row.get(4)?,
                        created_at: row.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
                .map_err(flashkart_sync::Error::from)
            })
            .await?)
    }

    /// Saves an address for a customer (checked here; at most [`MAX_ADDRESSES`]).
    pub async fn add_address(
        &self,
        customer_id: &str,
        address: NewAddress,
    ) -> Result<SavedAddress, AccountError> {
        let address = address.checked()?;
        let saved = SavedAddress {
            id: uuid::Uuid::now_v7().to_string(),
            label: address.label,
            text: address.text,
            lat: address.lat,
            lon: address.lon,
            created_at: crate::clock::now_rfc3339(),
        };
        let (stored, customer_id) = (saved.clone(), customer_id.to_owned());
        let added = match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    // The single writer makes count-then-insert atomic.
                    let kept: usize = conn
                        .prepare_cached(
                            "SELECT count(*) FROM customer_addresses WHERE customer_id = ?1",
                        )?
                        .query_row([&customer_id], |row| row.get(0))?;
                    if kept >= MAX_ADDRESSES {
                        return Ok(false);
                    }
                    let a = &stored;
                    conn.execute(
                        "INSERT INTO customer_addresses
                        (id, customer_id, label, text, lat, lon, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            a.id,
                            customer_id,
                            a.label,
                            a.text,
                            a.lat,
                            a.lon,
                            a.created_at
                        ],
                    )?;
                    Ok::<_, flashkart_sync::Error>(true)
                })
                .await?
            }
            Backend::Postgres(pg) => pg_add_address(pg, &customer_id, &stored).await?,
        };
        if !added {
            return Err(AccountError::TooManyAddresses);
        }
        Ok(saved)
    }

    /// Deletes one of the customer's own saved addresses: `Ok(false)` when they have none
    /// with that id (another customer's included).
    pub async fn delete_address(&self, customer_id: &str, id: &str) -> Result<bool, CloudError> {
        let (customer_id, id) = (customer_id.to_owned(), id.to_owned());
        let deleted = match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    conn.execute(
                        "DELETE FROM customer_addresses WHERE id = ?1 AND customer_id = ?2",
                        params![id, customer_id],
                    )
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let n = pg
                    .client()
                    .await?
                    .execute(
                        "DELETE FROM customer_addresses WHERE id = $1 AND customer_id = $2",
                        &[&id, &customer_id],
                    )
                    .await?;
                usize::try_from(n).unwrap_or(usize::MAX)
            }
        };
        Ok(deleted > 0)
    }

    /// The e-mail of a customer's account, if they have one (where the notification sender
    /// sends what is about them).
    pub async fn account_email(&self, customer_id: &str) -> Result<Option<String>, CloudError> {
        let customer_id = customer_id.to_owned();
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .read(move |conn| {
                    conn.prepare_cached(
                        "SELECT email FROM customer_accounts WHERE customer_id = ?1",
                    )?
                    .query_row([customer_id], |r| r.get(0))
                    .optional()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query_opt(
                    "SELECT email FROM customer_accounts WHERE customer_id = $1",
                    &[&customer_id],
                )
                .await?
                .map(|row| row.get(0))),
        }
    }
}

/// [`Hq::request_password_reset`] on PostgreSQL: the reset token and its e-mail in one
/// transaction, the account's row locked so instances count live links in turn. Whether
/// something was enqueued.
async fn pg_request_password_reset(
    pg: &crate::postgres::Postgres,
    email: &str,
    token: &str,
    token_sha256: &str,
    now: &str,
    expires_at: &str,
) -> Result<bool, CloudError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "DELETE FROM password_resets WHERE expires_at <= $1",
        &[&now],
    )
    .await?;
    let Some(customer) = tx
        .query_opt(
            "SELECT customer_id FROM customer_accounts WHERE email = $1 FOR UPDATE",
            &[&email],
        )
        .await?
        .map(|row| row.get::<_, String>(0))
    else {
        tx.commit().await?;
        return Ok(false);
    };
    let live: i64 = tx
        .query_one(
            "SELECT count(*) FROM password_resets
             WHERE customer_id = $1 AND used_at IS NULL AND expires_at > $2",
            &[&customer, &now],
        )
        .await?
        .get(0);
    if live >= MAX_LIVE_RESETS {
        tracing::warn!(customer_id = %customer, "password reset not sent: links still live");
        tx.commit().await?;
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO password_resets (token_sha256, customer_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4)",
        &[&token_sha256, &customer, &now, &expires_at],
    )
    .await?;
    crate::notify::enqueue_postgres(
        &tx,
        &crate::notify::Notification {
            kind: crate::notify::Kind::PasswordReset,
            about: token_sha256,
            order_id: None,
            customer_id: Some(&customer),
            payload: serde_json::json!({
                "token": token,
                "expires_at": expires_at,
                "valid_minutes": RESET_VALID_MINUTES,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(customer_id = %customer, "password reset e-mail enqueued");
    Ok(true)
}

/// [`Hq::confirm_password_reset`]'s write on PostgreSQL: the token is spent by one UPDATE,
/// so of two confirmations with one token (on any instances) exactly one finds it live.
/// The customer, or `None` when the token was not live.
async fn pg_confirm_password_reset(
    pg: &crate::postgres::Postgres,
    token_sha256: &str,
    password_hash: &str,
    now: &str,
) -> Result<Option<String>, CloudError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    let Some(customer) = tx
        .query_opt(
            "UPDATE password_resets SET used_at = $2
             WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > $2
             RETURNING customer_id",
            &[&token_sha256, &now],
        )
        .await?
        .map(|row| row.get::<_, String>(0))
    else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE customer_accounts SET password_hash = $2 WHERE customer_id = $1",
        &[&customer, &password_hash],
    )
    .await?;
    tx.execute(
        "UPDATE password_resets SET used_at = $2 WHERE customer_id = $1 AND used_at IS NULL",
        &[&customer, &now],
    )
    .await?;
    tx.execute(
        "DELETE FROM customer_sessions WHERE customer_id = $1",
        &[&customer],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(customer))
}

/// [`Hq::add_address`]'s write on PostgreSQL: the customer's row locked, so counting and
/// inserting is atomic across instances too. Whether it was added.
async fn pg_add_address(
    pg: &crate::postgres::Postgres,
    customer_id: &str,
    a: &SavedAddress,
) -> Result<bool, CloudError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT 1 FROM customers WHERE id = $1 FOR UPDATE",
        &[&customer_id],
    )
    .await?;
    let kept: i64 = tx
        .query_one(
            "SELECT count(*) FROM customer_addresses WHERE customer_id = $1",
            &[&customer_id],
        )
        .await?
        .get(0);
    if usize::try_from(kept).unwrap_or(usize::MAX) >= MAX_ADDRESSES {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO customer_addresses (id, customer_id, label, text, lat, lon, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &a.id,
            &customer_id,
            &a.label,
            &a.text,
            &a.lat,
            &a.lon,
            &a.created_at,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_shapes_checked() {
        assert_eq!(
            normalize_email("  Ada.Lovelace@Example.COM ").as_deref(),
            Some("ada.lovelace@example.com")
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "a@b@example.com",
            "ada lovelace@example.com",
            "ada@.example.com",
            "ada@example.com.",
            "ada\u{7}@example.com",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
        let local = "a".repeat(MAX_EMAIL - "@example.com".len());
        assert!(normalize_email(&format!("{local}@example.com")).is_some());
        assert!(normalize_email(&format!("{local}b@example.com")).is_none());
    }

    #[test]
    fn sign_ups_and_addresses_are_checked() {
        let ok = |email: &str, password: &str, name: &str| {
            NewAccount::new(email, password.to_owned(), name).is_ok()
        };
        assert!(ok("ada@example.com", "long enough pw", " Ada "));
        assert!(!ok("ada@example.com", "short", "Ada"));
        assert!(!ok("ada@example.com", &"x".repeat(MAX_PASSWORD + 1), "Ada"));
        assert!(ok("ada@example.com", &"é".repeat(MAX_PASSWORD), "Ada"));
        assert!(!ok("ada@example.com", "long enough pw", "   "));
        assert!(!ok("ada@example.com", "long enough pw", &"a".repeat(61)));
        assert!(!ok("ada@example.com", "long enough pw", "A\nda"));

        let address = |label: &str, text: &str, lat: f64, lon: f64| {
            NewAddress {
                label: label.into(),
                text: text.into(),
                lat,
                lon,
            }
            .checked()
            .is_ok()
        };
        assert!(address("Home", "Somewhere 1, Berlin", 52.5, 13.4));
        assert!(address("Edge", "x", -90.0, 180.0));
        assert!(!address("", "Somewhere 1", 52.5, 13.4));
        assert!(!address("Home", " ", 52.5, 13.4));
        assert!(!address("Home", &"x".repeat(501), 52.5, 13.4));
        assert!(!address("Home", "Somewhere 1", 90.5, 13.4));
        assert!(!address("Home", "Somewhere 1", 52.5, -180.1));
        assert!(!address("Home", "Somewhere 1", f64::NAN, 13.4));
    }
}
