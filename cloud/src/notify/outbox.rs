//! The `notify_outbox` table every notifying database has, and its states:
//!
//! `pending` (waiting, `next_attempt_at` says from when) → `sending` (claimed and committed
//! just before the send) → `sent` | `pending` again (failed, retried later) | `failed` (out
//! of attempts). `skipped` when there is no one to send it to (a customer without an e-mail
//! account, a reset link expired before it could go, no webhook configured); `uncertain`
//! for an e-mail found `sending` after a crash, which is never sent again.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Channel, Kind, Notification};

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

/// Writes `notification` into the outbox of the caller's transaction, one row per channel
/// of its kind; `Ok(false)` when it was there already.
pub fn enqueue(conn: &Connection, notification: &Notification<'_>) -> rusqlite::Result<bool> {
    let now = crate::clock::now_rfc3339();
    let payload = notification.payload.to_string();
    let mut added = false;
    for channel in notification.kind.channels() {
        let natural_key = format!(
            "{}:{}:{}",
            notification.kind.as_str(),
            notification.about,
            channel.as_str()
        );
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
/// same event id, which the provider deduplicates). Returns the kinds made uncertain.
pub(super) fn recover(conn: &Connection, now: &str) -> rusqlite::Result<Vec<String>> {
    let uncertain = conn
        .prepare_cached(
            "SELECT kind FROM notify_outbox WHERE state = 'sending' AND channel = 'email'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    conn.execute(
        "UPDATE notify_outbox SET state = 'uncertain', updated_at = ?1,
            last_error = 'the cloud stopped during the send: not sent again',
            payload = CASE WHEN kind = 'password_reset' THEN '{}' ELSE payload END
         WHERE state = 'sending' AND channel = 'email'",
        [now],
    )?;
    conn.execute(
        "UPDATE notify_outbox SET state = 'pending', updated_at = ?1
         WHERE state = 'sending' AND channel = 'webhook'",
        [now],
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
