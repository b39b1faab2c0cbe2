//! The `notify_outbox` table every notifying database has, and its states:
//!
//! `pending` (waiting, `next_attempt_at` says from when) → `sending` (claimed and committed
//! just before the send) → `sent` | `pending` again (failed, retried later) | `failed` (out
//! of attempts). `skipped` when there is no one to send it to (a customer without an e-mail
//! account, a reset link expired before it could go, no webhook configured); `uncertain`
//! for an e-mail found `sending` after a crash, which is never sent again.
//!
//! HQ's outbox is in PostgreSQL when HQ is ([`Outbox::Postgres`], the same table and states);
//! the others are SQLite files. The claim is one conditional UPDATE on both, so of several
//! senders (instances) looking at the same due row exactly one sends it.

use flashkart_sync::StoreDb;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Channel, Kind, Notification};
use crate::CloudError;
use crate::postgres::Postgres;

/// One migration step for each database that enqueues.
pub const SCHEMA: &str = "
    CREATE TABLE notify_outbox (
        -- UUIDv7: the e-mail's Message-ID and the webhook's FlashKart-Event-Id
        id TEXT PRIMARY KEY NOT NULL,
        -- kind:about:channel, so an event applied twice enqueues once
        natural_key TEXT NOT NULL UNIQUE,
        -- email | webhook
        channel TEXT NOT NULL,
        kind TEXT NOT NULL,
        order_id TEXT,
        customer_id TEXT,
        -- JSON: what the message says beyond its kind
        payload TEXT NOT NULL,
        -- pending | sending | sent | failed | skipped | uncertain
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX notify_outbox_due ON notify_outbox (next_attempt_at)
        WHERE state IN ('pending', 'sending');
";

/// The table on PostgreSQL (HQ's outbox there).
pub const PG_SCHEMA: &str = "
    CREATE TABLE notify_outbox (
        id TEXT PRIMARY KEY NOT NULL,
        natural_key TEXT NOT NULL UNIQUE,
        channel TEXT NOT NULL,
        kind TEXT NOT NULL,
        order_id TEXT,
        customer_id TEXT,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX notify_outbox_due ON notify_outbox (next_attempt_at)
        WHERE state IN ('pending', 'sending');
";

/// The natural key of `notification` on `channel`.
fn natural_key(notification: &Notification<'_>, channel: Channel) -> String {
    format!(
        "{}:{}:{}",
        notification.kind.as_str(),
        notification.about,
        channel.as_str()
    )
}

/// [`enqueue`] into a PostgreSQL outbox, in the caller's transaction `tx`.
pub async fn enqueue_postgres(
    tx: &tokio_postgres::Transaction<'_>,
    notification: &Notification<'_>,
) -> Result<bool, CloudError> {
    let now = crate::clock::now_rfc3339();
    let payload = notification.payload.to_string();
    let mut added = false;
    for channel in notification.kind.channels() {
        let inserted = tx
            .execute(
                "INSERT INTO notify_outbox (id, natural_key, channel, kind, order_id, customer_id,
                    payload, state, next_attempt_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8, $8)
                 ON CONFLICT (natural_key) DO NOTHING",
                &[
                    &uuid::Uuid::now_v7().to_string(),
                    &natural_key(notification, *channel),
                    &channel.as_str(),
                    &notification.kind.as_str(),
                    &notification.order_id,
                    &notification.customer_id,
                    &payload,
                    &now,
                ],
            )
            .await?;
        added |= inserted > 0;
    }
    Ok(added)
}

/// Writes `notification` into the outbox of the caller's transaction, one row per channel
/// of its kind; `Ok(false)` when it was there already.
pub fn enqueue(conn: &Connection, notification: &Notification<'_>) -> rusqlite::Result<bool> {
    let now = crate::clock::now_rfc3339();
    let payload = notification.payload.to_string();
    let mut added = false;
    for channel in notification.kind.channels() {
        let natural_key = natural_key(notification, *channel);
        let inserted = conn
            .prepare_cached(
                "INSERT INTO notify_outbox (id, natural_key, channel, kind, order_id, customer_id,
                    payload, state, next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8, ?8)
                 ON CONFLICT (natural_key) DO NOTHING",
            )?
            .execute(params![
                uuid::Uuid::now_v7().to_string(),
                natural_key,
                channel.as_str(),
                notification.kind.as_str(),
                notification.order_id,
                notification.customer_id,
                payload,
                now
            ])?;
        added |= inserted > 0;
    }
    Ok(added)
}

/// One outbox row, as the sender reads it.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) id: String,
    pub(super) channel: Channel,
    /// `None` for a kind this version does not know (written by a newer one): skipped.
    pub(super) kind: Option<Kind>,
    pub(super) kind_text: String,
    pub(super) order_id: Option<String>,
    pub(super) customer_id: Option<String>,
    pub(super) payload: serde_json::Value,
    pub(super) attempts: u32,
    pub(super) created_at: String,
}

/// Rows due at `now` on `channels`, oldest first, at most `limit`.
pub(super) fn due(
    conn: &Connection,
    now: &str,
    channels: &[Channel],
    limit: usize,
) -> rusqlite::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for channel in channels {
        let found = conn
            .prepare_cached(
                "SELECT id, kind, order_id, customer_id, payload, attempts, created_at
                 FROM notify_outbox
                 WHERE state = 'pending' AND next_attempt_at <= ?1 AND channel = ?2
                 ORDER BY next_attempt_at, id LIMIT ?3",
            )?
            .query_map(params![now, channel.as_str(), limit], |r| {
                let kind: String = r.get(1)?;
                let payload: String = r.get(4)?;
                Ok(Row {
                    id: r.get(0)?,
                    channel: *channel,
                    kind: Kind::parse(&kind),
                    kind_text: kind,
                    order_id: r.get(2)?,
                    customer_id: r.get(3)?,
                    payload: serde_json::from_str(&payload).unwrap_or_default(),
                    attempts: r.get(5)?,
                    created_at: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.extend(found);
    }
    Ok(rows)
}

/// The earliest time a row on `channels` falls due, if any is pending.
pub(super) fn next_due(
    conn: &Connection,
    channels: &[Channel],
) -> rusqlite::Result<Option<String>> {
    let mut next: Option<String> = None;
    for channel in channels {
        let at: Option<String> = conn
            .prepare_cached(
                "SELECT min(next_attempt_at) FROM notify_outbox
                 WHERE state = 'pending' AND channel = ?1",
            )?
            .query_row([channel.as_str()], |r| r.get(0))
            .optional()?
            .flatten();
        next = match (next, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// Rows waiting (pending or being sent) per channel.
pub(super) fn waiting(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare_cached(
        "SELECT channel, count(*) FROM notify_outbox WHERE state IN ('pending', 'sending')
         GROUP BY channel",
    )?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// After a crash: e-mails left `sending` become `uncertain` (the server may have taken them;
/// sending again could deliver twice), webhooks go back to `pending` (sent again with the
/// same event id, which the provider deduplicates). Only rows claimed before `claimed_before`
/// when it is given (see [`Outbox::recover`]). Returns the kinds made uncertain.
pub(super) fn recover(
    conn: &Connection,
    now: &str,
    claimed_before: Option<&str>,
) -> rusqlite::Result<Vec<String>> {
    let uncertain = conn
        .prepare_cached(
            "SELECT kind FROM notify_outbox WHERE state = 'sending' AND channel = 'email'
                AND (?1 IS NULL OR updated_at < ?1)",
        )?
        .query_map([claimed_before], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    conn.execute(
        "UPDATE notify_outbox SET state = 'uncertain', updated_at = ?1,
            last_error = 'the cloud stopped during the send: not sent again',
            payload = CASE WHEN kind = 'password_reset' THEN '{}' ELSE payload END
         WHERE state = 'sending' AND channel = 'email' AND (?2 IS NULL OR updated_at < ?2)",
        params![now, claimed_before],
    )?;
    conn.execute(
        "UPDATE notify_outbox SET state = 'pending', updated_at = ?1
         WHERE state = 'sending' AND channel = 'webhook' AND (?2 IS NULL OR updated_at < ?2)",
        params![now, claimed_before],
    )?;
    Ok(uncertain)
}

/// Claims a pending row for a send: `false` when it is no longer pending.
pub(super) fn claim(conn: &Connection, id: &str, now: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE notify_outbox SET state = 'sending', attempts = attempts + 1, updated_at = ?2
             WHERE id = ?1 AND state = 'pending'",
        )?
        .execute(params![id, now])?
        > 0)
}

/// A final state (`sent`, `failed`, `skipped`). A reset link is wiped from the row then: the
/// token is only stored hashed anywhere else, and the outbox need not keep it either.
pub(super) fn finish(
    conn: &Connection,
    id: &str,
    state: &str,
    error: Option<&str>,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE notify_outbox SET state = ?2, last_error = ?3, updated_at = ?4,
            payload = CASE WHEN kind = 'password_reset' THEN '{}' ELSE payload END
         WHERE id = ?1",
    )?
    .execute(params![id, state, error, now])?;
    Ok(())
}

/// Back to `pending` after a failed send, due again at `next_attempt_at`.
pub(super) fn retry_at(
    conn: &Connection,
    id: &str,
    error: &str,
    next_attempt_at: &str,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE notify_outbox SET state = 'pending', last_error = ?2, next_attempt_at = ?3,
            updated_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![id, error, next_attempt_at, now])?;
    Ok(())
}

/// An outbox the sender drains, in whichever engine holds it.
#[derive(Debug, Clone)]
pub enum Outbox {
    Sqlite(StoreDb),
    Postgres(Postgres),
}

/// One row as an operator (or a test) inspects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEntry {
    pub id: String,
    pub channel: String,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// As stored (JSON text; `{}` once a reset link is wiped).
    pub payload: String,
}

/// A row of `SELECT id, kind, order_id, customer_id, payload, attempts, created_at` on
/// PostgreSQL.
fn pg_row(row: &tokio_postgres::Row, channel: Channel) -> Row {
    let kind: String = row.get(1);
    let payload: String = row.get(4);
    let attempts: i64 = row.get(5);
    Row {
        id: row.get(0),
        channel,
        kind: Kind::parse(&kind),
        kind_text: kind,
        order_id: row.get(2),
        customer_id: row.get(3),
        payload: serde_json::from_str(&payload).unwrap_or_default(),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        created_at: row.get(6),
    }
}

impl Outbox {
    /// Rows due at `now` on `channels` (see [`due`]).
    pub(super) async fn due(
        &self,
        now: String,
        channels: &'static [Channel],
        limit: usize,
    ) -> Result<Vec<Row>, CloudError> {
        match self {
            Outbox::Sqlite(db) => Ok(db
                .read(move |conn| {
                    due(conn, &now, channels, limit).map_err(flashkart_sync::Error::from)
                })
                .await?),
            Outbox::Postgres(pg) => {
                let client = pg.client().await?;
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let mut rows = Vec::new();
                for channel in channels {
                    let found = client
                        .query(
                            "SELECT id, kind, order_id, customer_id, payload, attempts, created_at
                             FROM notify_outbox
                             WHERE state = 'pending' AND next_attempt_at <= $1 AND channel = $2
                             ORDER BY next_attempt_at, id LIMIT $3",
                            &[&now, &channel.as_str(), &limit],
                        )
                        .await?;
                    rows.extend(found.iter().map(|row| pg_row(row, *channel)));
                }
                Ok(rows)
            }
        }
    }

    /// Rows waiting per channel and the earliest due time on `channels` (see [`waiting`] and
    /// [`next_due`]).
    pub(super) async fn observe(
        &self,
        channels: &'static [Channel],
    ) -> Result<(Vec<(String, i64)>, Option<String>), CloudError> {
        match self {
            Outbox::Sqlite(db) => Ok(db
                .read(move |conn| {
                    Ok::<_, flashkart_sync::Error>((waiting(conn)?, next_due(conn, channels)?))
                })
                .await?),
            Outbox::Postgres(pg) => {
                let client = pg.client().await?;
                let counts = client
                    .query(
                        "SELECT channel, count(*) FROM notify_outbox
                         WHERE state IN ('pending', 'sending') GROUP BY channel",
                        &[],
                    )
                    .await?
                    .iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect();
                let names: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
                let next: Option<String> = client
                    .query_one(
                        "SELECT min(next_attempt_at) FROM notify_outbox
                         WHERE state = 'pending' AND channel = ANY($1)",
                        &[&names],
                    )
                    .await?
                    .get(0);
                Ok((counts, next))
            }
        }
    }

    /// Whether other instances send from this outbox too (PostgreSQL), so a row `sending` may
    /// be a live instance's send rather than a crashed one's.
    pub(super) fn shared(&self) -> bool {
        matches!(self, Outbox::Postgres(_))
    }

    /// See [`recover`]. A SQLite outbox is this instance's alone: at start, whatever is
    /// `sending` was left by its crash (`claimed_before` is `None`). On a shared outbox only rows
    /// claimed before `claimed_before` are settled, a time longer ago than any send may take,
    /// so a send another instance has under way is left to finish, and an instance that died
    /// mid-send has its rows settled by the others once they are that old.
    pub(super) async fn recover(
        &self,
        now: String,
        claimed_before: Option<String>,
    ) -> Result<Vec<String>, CloudError> {
        match self {
            Outbox::Sqlite(db) => Ok(db
                .write(move |conn| {
                    recover(conn, &now, claimed_before.as_deref())
                        .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Outbox::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                let uncertain = tx
                    .query(
                        "UPDATE notify_outbox SET state = 'uncertain', updated_at = $1,
                            last_error = 'the cloud stopped during the send: not sent again',
                            payload = CASE WHEN kind = 'password_reset' THEN '{}' ELSE payload END
                         WHERE state = 'sending' AND channel = 'email'
                           AND ($2::text IS NULL OR updated_at < $2)
                         RETURNING kind",
                        &[&now, &claimed_before],
                    )
                    .await?
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                tx.execute(
                    "UPDATE notify_outbox SET state = 'pending', updated_at = $1
                     WHERE state = 'sending' AND channel = 'webhook'
                       AND ($2::text IS NULL OR updated_at < $2)",
                    &[&now, &claimed_before],
                )
                .await?;
                tx.commit().await?;
                Ok(uncertain)
            }
        }
    }

    /// See [`claim`].
    pub(super) async fn claim(&self, id: String, now: String) -> Result<bool, CloudError> {
        match self {
            Outbox::Sqlite(db) => Ok(db
                .write(move |conn| claim(conn, &id, &now).map_err(flashkart_sync::Error::from))
                .await?),
            Outbox::Postgres(pg) => Ok(pg
                .client()
                .await?
                .execute(
                    "UPDATE notify_outbox SET state = 'sending', attempts = attempts + 1,
                        updated_at = $2
                     WHERE id = $1 AND state = 'pending'",
                    &[&id, &now],
                )
                .await?
                > 0),
        }
    }

    /// A final state (see [`finish`]) or, with `retry_at`, back to pending (see
    /// [`retry_at`]).
    pub(super) async fn settle(
        &self,
        id: String,
        state: &'static str,
        error: Option<String>,
        retry: Option<String>,
        now: String,
    ) -> Result<(), CloudError> {
        match self {
            Outbox::Sqlite(db) => Ok(db
                .write(move |conn| {
                    match &retry {
                        Some(at) => retry_at(conn, &id, error.as_deref().unwrap_or(""), at, &now),
                        None => finish(conn, &id, state, error.as_deref(), &now),
                    }
                    .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Outbox::Postgres(pg) => {
                let client = pg.client().await?;
                match &retry {
                    Some(at) => {
                        client
                            .execute(
                                "UPDATE notify_outbox SET state = 'pending', last_error = $2,
                                    next_attempt_at = $3, updated_at = $4
                                 WHERE id = $1",
                                &[&id, &error.as_deref().unwrap_or(""), at, &now],
                            )
                            .await?
                    }
                    None => {
                        client
                            .execute(
                                "UPDATE notify_outbox SET state = $2, last_error = $3,
                                    updated_at = $4,
                                    payload = CASE WHEN kind = 'password_reset' THEN '{}'
                                        ELSE payload END
                                 WHERE id = $1",
                                &[&id, &state, &error, &now],
                            )
                            .await?
                    }
                };
                Ok(())
            }
        }
    }

    /// Every row, oldest first: what an operator checks when a customer says no e-mail came.
    pub async fn entries(&self) -> Result<Vec<OutboxEntry>, CloudError> {
        const LIST: &str =
            "SELECT id, channel, kind, state, attempts, last_error, payload FROM notify_outbox
             ORDER BY id";
        match self {
            Outbox::Sqlite(db) => Ok(db
                .read(|conn| {
                    conn.prepare_cached(LIST)?
                        .query_map([], |r| {
                            Ok(OutboxEntry {
                                id: r.get(0)?,
                                channel: r.get(1)?,
                                kind: r.get(2)?,
                                state: r.get(3)?,
                                attempts: r.get(4)?,
                                last_error: r.get(5)?,
                                payload: r.get(6)?,
                            })
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Outbox::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(LIST, &[])
                .await?
                .iter()
                .map(|r| OutboxEntry {
                    id: r.get(0),
                    channel: r.get(1),
                    kind: r.get(2),
                    state: r.get(3),
                    attempts: r.get(4),
                    last_error: r.get(5),
                    payload: r.get(6),
                })
                .collect()),
        }
    }
}
