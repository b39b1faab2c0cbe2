//! What HQ's dashboard changes and lists in HQ's database: pausing a store, a profile edit that
//! keeps the pause, the coupon list, and the signal that any of HQ's records changed.
//!
//! Apart from `mod.rs` because a pause is a read-modify-write of the stored profile: it runs
//! inside one write of the single writer (SQLite) or one transaction holding the profile's
//! row lock (`SELECT ... FOR UPDATE`, PostgreSQL), so a pause and a concurrent profile edit,
//! from this instance or another, cannot undo each other.

use rusqlite::{OptionalExtension, params};

use crate::CloudError;

use super::listen::{self, Change};
use super::{
    Backend, Coupon, Hq, PG_PROFILE_UPSERT, PROFILE_UPSERT, StoreProfile, coupon_row, pg_coupon,
};

impl Hq {
    /// Changes after every change to a store profile, pause, rider, coupon or rating (on
    /// PostgreSQL, another instance's too: see `listen.rs`).
    pub fn changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(super) fn touched(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Creates or replaces a store's profile (validated by the caller). With `keep_pause` the
    /// stored pause and its reason stay whatever the new profile says: editing the area or the
    /// hours is not a decision to reopen a paused store. Returns the profile as stored.
    pub async fn put_store_keeping_pause(
        &self,
        mut profile: StoreProfile,
        keep_pause: bool,
    ) -> Result<StoreProfile, CloudError> {
        if !profile.paused {
            profile.paused_reason = None;
        }
        let stored = match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<StoreProfile, CloudError> {
                    if keep_pause && let Some(current) = stored_profile(conn, &profile.id)? {
                        profile.paused = current.paused;
                        profile.paused_reason = current.paused_reason;
                    }
                    write_profile(conn, &profile)?;
                    Ok(profile)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                if keep_pause && let Some(current) = pg_stored_profile(&tx, &profile.id).await? {
                    profile.paused = current.paused;
                    profile.paused_reason = current.paused_reason;
                }
                pg_write_profile(&tx, &profile).await?;
                tx.commit().await?;
                profile
            }
        };
        self.reload_stores().await?;
        Ok(stored)
    }

    /// Pauses (`reason` says why) or resumes a profiled store; `None` if it has no profile.
    pub async fn set_paused(
        &self,
        store_id: &str,
        paused: bool,
        reason: Option<String>,
    ) -> Result<Option<StoreProfile>, CloudError> {
        let id = store_id.to_owned();
        let stored = match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| -> Result<Option<StoreProfile>, CloudError> {
                    let Some(mut profile) = stored_profile(conn, &id)? else {
                        return Ok(None);
                    };
                    profile.paused = paused;
                    profile.paused_reason = if paused { reason } else { None };
                    write_profile(conn, &profile)?;
                    Ok(Some(profile))
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                match pg_stored_profile(&tx, &id).await? {
                    Some(mut profile) => {
                        profile.paused = paused;
                        profile.paused_reason = if paused { reason } else { None };
                        pg_write_profile(&tx, &profile).await?;
                        tx.commit().await?;
                        Some(profile)
                    }
                    None => None,
                }
            }
        };
        if stored.is_some() {
            self.reload_stores().await?;
        }
        Ok(stored)
    }

    /// Every coupon, by code.
    pub async fn coupons(&self) -> Result<Vec<Coupon>, CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .read(|conn| {
                    conn.prepare_cached(
                        "SELECT code, percent_off, amount_off_minor, min_basket_minor, active
                         FROM coupons ORDER BY code",
                    )?
                    .query_map([], coupon_row)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(
                    "SELECT code, percent_off, amount_off_minor, min_basket_minor, active
                     FROM coupons ORDER BY code",
                    &[],
                )
                .await?
                .iter()
                .map(pg_coupon)
                .collect()),
        }
    }
}

fn stored_profile(
    conn: &rusqlite::Connection,
    id: &str,
) -> Result<Option<StoreProfile>, CloudError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT profile FROM store_profiles WHERE id = ?1")
        .and_then(|mut statement| statement.query_row([id], |row| row.get(0)).optional())
        .map_err(flashkart_sync::Error::from)?;
    text.map(|text| {
        serde_json::from_str(&text).map_err(|e| CloudError::Corrupt(format!("store profile: {e}")))
    })
    .transpose()
}

fn write_profile(conn: &rusqlite::Connection, profile: &StoreProfile) -> Result<(), CloudError> {
    let text = serde_json::to_string(profile)
        .map_err(|e| CloudError::Corrupt(format!("store profile: {e}")))?;
    conn.execute(
        PROFILE_UPSERT,
        params![profile.id, text, crate::clock::now_rfc3339()],
    )
    .map_err(flashkart_sync::Error::from)?;
    Ok(())
}

/// The stored profile `id`, its row locked until `tx` ends (the read of a read-modify-write).
async fn pg_stored_profile(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
) -> Result<Option<StoreProfile>, CloudError> {
    let text: Option<String> = tx
        .query_opt(
            "SELECT profile FROM store_profiles WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .map(|row| row.get(0));
    text.map(|text| {
        serde_json::from_str(&text).map_err(|e| CloudError::Corrupt(format!("store profile: {e}")))
    })
    .transpose()
}

/// Writes a profile in `tx` and tells the other instances when it commits.
async fn pg_write_profile(
    tx: &tokio_postgres::Transaction<'_>,
    profile: &StoreProfile,
) -> Result<(), CloudError> {
    let text = serde_json::to_string(profile)
        .map_err(|e| CloudError::Corrupt(format!("store profile: {e}")))?;
    tx.execute(
        PG_PROFILE_UPSERT,
        &[&profile.id, &text, &crate::clock::now_rfc3339()],
    )
    .await?;
    listen::announce(tx, Change::Stores).await
}
