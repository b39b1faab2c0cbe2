//! What HQ's dashboard changes and lists in HQ's database: pausing a store, a profile edit that
//! keeps the pause, the coupon list, and the signal that any of HQ's records changed.
//!
//! Apart from `mod.rs` because a pause is a read-modify-write of the stored profile: it runs
//! inside one write of the single writer, so a pause and a concurrent profile edit cannot undo
//! each other.

use rusqlite::{OptionalExtension, params};

use crate::CloudError;

use super::{Coupon, Hq, PROFILE_UPSERT, StoreProfile};

impl Hq {
    /// Changes after every change to a store profile, pause, rider or coupon.
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
        let stored = self
            .db
            .write(move |conn| -> Result<StoreProfile, CloudError> {
                if keep_pause && let Some(current) = stored_profile(conn, &profile.id)? {
                    profile.paused = current.paused;
                    profile.paused_reason = current.paused_reason;
                }
                write_profile(conn, &profile)?;
                Ok(profile)
            })
            .await?;
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
        let stored = self
            .db
            .write(move |conn| -> Result<Option<StoreProfile>, CloudError> {
                let Some(mut profile) = stored_profile(conn, &id)? else {
                    return Ok(None);
                };
                profile.paused = paused;
                profile.paused_reason = if paused { reason } else { None };
                write_profile(conn, &profile)?;
                Ok(Some(profile))
            })
            .await?;
        if stored.is_some() {
            self.reload_stores().await?;
        }
        Ok(stored)
    }

    /// Every coupon, by code.
    pub async fn coupons(&self) -> Result<Vec<Coupon>, CloudError> {
        Ok(self
            .db
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT code, percent_off, amount_off_minor, min_basket_minor, active
                     FROM coupons ORDER BY code",
                )?
                .query_map([], |row| {
                    Ok(Coupon {
                        code: row.get(0)?,
                        percent_off: row.get(1)?,
                        amount_off_minor: row.get(2)?,
                        min_basket_minor: row.get(3)?,
                        active: row.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
                .map_err(flashkart_sync::Error::from)
            })
            .await?)
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
