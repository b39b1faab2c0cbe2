//! After a restore: store work waits until the cloud has sent back what the old database wrote.
//!
//! A restored database is behind: writes the store made after the backup (under the old site
//! id) come back from the cloud on the first sync, and until they have, the store must not act
//! on what it lacks. An order routed after the backup, say, arrives with its cloud-owned rows
//! before its progress (store-owned, old site) is back; taken in again, it would be reserved
//! twice. So while `store.db.restored` (written by [`super::restore`]) is there, the sync inbox
//! holds store work back ([`CatchUp::hold_back`]), rebuilds the stock summary from the ledger
//! as pulled moves arrive (the summary follows local writes only), and lets go after the first
//! pull answer that left nothing more to pull (`SyncStatus::complete_pulls`): by then the
//! store has merged everything the cloud had for it, the old site's writes included. Then the
//! marker is removed.

use std::path::{Path, PathBuf};

use flashkart_sync::client::SyncStatus;

use crate::app::App;
use crate::work::stock;

/// The marker a restore leaves beside the store database until the first catch-up.
pub const RESTORED_MARKER: &str = "store.db.restored";

/// The marker's path for a store database at `db_path`.
pub fn marker_path(db_path: &Path) -> PathBuf {
    db_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(RESTORED_MARKER)
}

/// The catch-up after a restore, as seen by the sync inbox.
#[derive(Debug)]
pub struct CatchUp {
    marker: PathBuf,
    pending: bool,
    /// `pulled_changes` when the summary was last rebuilt.
    rebuilt_at: Option<u64>,
}

impl CatchUp {
    /// Pending if the store database at `db_path` was restored and has not caught up yet.
    pub fn after_restore(db_path: &Path) -> Self {
        let marker = marker_path(db_path);
        let pending = marker.exists();
        if pending {
            tracing::info!(marker = %marker.display(), "restored database: store work waits for the catch-up from the cloud");
        }
        Self {
            marker,
            pending,
            rebuilt_at: None,
        }
    }

    pub fn pending(&self) -> bool {
        self.pending
    }

    /// Whether store work must still wait, given the sync client's latest `status` (of the
    /// client of this run: its counts start at 0).
    pub async fn hold_back(&mut self, app: &App, status: &SyncStatus) -> bool {
        if !self.pending {
            return false;
        }
        // The client publishes a pull's totals after merging all of it.
        let caught_up = status.complete_pulls > 0;
        if caught_up || self.rebuilt_at != Some(status.pulled_changes) {
            match app.db.write(stock::rebuild_summary).await {
                Ok(()) => self.rebuilt_at = Some(status.pulled_changes),
                Err(error) => {
                    tracing::warn!(%error, "rebuilding the stock summary after a restore");
                    return true;
                }
            }
        }
        if !caught_up {
            return true;
        }
        match std::fs::remove_file(&self.marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(%error, marker = %self.marker.display(), "removing the restore marker");
            }
        }
        self.pending = false;
        tracing::info!(
            pulled_changes = status.pulled_changes,
            "restored database caught up with the cloud: store work resumes"
        );
        false
    }
}
