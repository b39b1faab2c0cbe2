//! Putting a backup back as the store database, so that sync stays correct afterwards.
//!
//! A restored database is behind what the cloud acknowledged for this edge's cr-sqlite site:
//! the cloud's cursor for that site is past the backup. Kept as it was, the store's next
//! writes would reuse db_versions the cloud believes it already has, and would never be
//! pushed. So the restored database gets a new site id. cr-sqlite keeps the local site id in
//! `crsql_site_id` at ordinal 0, and every clock row names its writer by ordinal (0: this
//! database), so rewriting that one row, while no connection has cr-sqlite loaded on the file,
//! makes the whole local history this new site's. Consequences, all safe:
//!
//! - The store pushes its history once more under the new site; the cloud already holds the
//!   same values with the same column versions, so merging them changes nothing (cr-sqlite
//!   keeps the local value on equal versions and values), and the read model folds rows by key.
//! - The cloud serves the store every origin but its own, which now includes the old site: the
//!   writes made after the backup, that reached the cloud, come back.
//! - The cloud refuses the new site until HQ rotates the store's token with
//!   `{"release_edge_site": true}` ([`next_steps`] says so).
//! - Until those writes are back, store work waits (`store.db.restored`, see
//!   [`super::CatchUp`]).
//!
//! The steps never change anything until the backup is known good: it is copied next to the
//! database, checked and re-identified there; only then is the current database checkpointed,
//! moved aside (with its `-wal`/`-shm`) and the copy renamed into place. The daemon's data directory
//! lock is held throughout, so the daemon cannot start half way.

use std::fs;
use std::path::{Path, PathBuf};

use flashkart_sync::crsqlite;
use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;

use super::{
    BackupError, DB_FILE, DataDirLock, io, remove_with_sidecars, sql, sync_dir, sync_file, verify,
};

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The store database, now the restored copy.
    pub db_path: PathBuf,
    /// Where the database it replaced went (with its `-wal`/`-shm`, if any), if there was one.
    pub moved_aside: Option<PathBuf>,
    pub schema_version: u32,
    /// The site id the backup had (the one the cloud has bound to this store's token).
    pub old_site_id: [u8; 16],
    /// The site id the restored database has now.
    pub new_site_id: [u8; 16],
}

/// Deletes the staged copy unless the restore got as far as renaming it into place.
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        if self.0.exists() {
            remove_with_sidecars(&self.0);
        }
    }
}

/// Restores `backup` as the store database in `data_dir`. Refuses, changing nothing, while
/// the daemon (or anything else) has the database open, and when `backup` is not an intact
/// store database this binary knows. Blocking.
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    extension_dir: Option<&Path>,
) -> Result<Restored, BackupError> {
    let lock = DataDirLock::acquire(data_dir)?;
    if !backup.is_file() {
        return Err(BackupError::Io {
            context: format!("reading the backup {}", backup.display()),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let db_path = data_dir.join(DB_FILE);

    let stamp = super::file_name(OffsetDateTime::now_utc());
    let stamp = stamp
        .strip_prefix(super::PREFIX)
        .and_then(|s| s.strip_suffix(super::SUFFIX))
        .unwrap_or(&stamp)
        .to_owned();
    let staged = Staged(data_dir.join(format!(".{DB_FILE}.restore-{stamp}.tmp")));
    fs::copy(backup, &staged.0).map_err(io(format!(
        "copying {} to {}",
        backup.display(),
        staged.0.display()
    )))?;
    // A database copied while in WAL mode may have part of itself in its `-wal`: take it along.
    let backup_wal = sidecar(backup, "-wal");
    if backup_wal.is_file() {
        fs::copy(&backup_wal, sidecar(&staged.0, "-wal"))
            .map_err(io(format!("copying {}", backup_wal.display())))?;
    }

    // Checked and given its new identity on a plain connection: cr-sqlite must not be loaded
    // on the file while its site id changes (it reads ordinal 0 once, when it loads).
    let verified = {
        let conn = Connection::open_with_flags(
            &staged.0,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql(&staged.0))?;
        let mut verified = verify(&conn, backup)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .map_err(sql(&staged.0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(BackupError::SiteId(format!(
                "could not take the copy out of WAL mode (journal_mode is {mode})"
            )));
        }
        let new_site = new_site_id(verified.site_id);
        let changed = conn
            .execute(
                "UPDATE crsql_site_id SET site_id = ?1 WHERE ordinal = 0",
                [new_site.as_slice()],
            )
            .map_err(sql(&staged.0))?;
        if changed != 1 {
            return Err(BackupError::SiteId(format!(
                "{changed} rows at ordinal 0 in crsql_site_id"
            )));
        }
        conn.close().map_err(|(_, e)| sql(&staged.0)(e))?;
        let old = verified.site_id;
        verified.site_id = new_site;
        (old, verified)
    };
    let (old_site_id, verified) = verified;
    confirm_site_id(&staged.0, extension_dir, verified.site_id)?;
    sync_file(&staged.0)?;

    // Only now, with a good copy ready, is the current database touched.
    ensure_unused(&db_path, data_dir)?;
    let moved_aside = move_aside(&db_path, &stamp)?;
    for suffix in ["-wal", "-shm"] {
        let left = sidecar(&db_path, suffix);
        if left.exists() {
            return Err(BackupError::Io {
                context: format!(
                    "{} is still there after moving the database aside",
                    left.display()
                ),
                source: std::io::ErrorKind::AlreadyExists.into(),
            });
        }
    }
    // Written before the restored database is in place, so it is never there without it.
    let marker = super::marker_path(&db_path);
    fs::write(
        &marker,
        format!(
            "restored from {}\nold site id {}\nnew site id {}\n",
            backup.display(),
            hex(&old_site_id),
            hex(&verified.site_id)
        ),
    )
    .map_err(io(format!("writing {}", marker.display())))?;
    sync_file(&marker)?;
    fs::rename(&staged.0, &db_path).map_err(io(format!(
        "renaming {} to {}",
        staged.0.display(),
        db_path.display()
    )))?;
    sync_dir(data_dir)?;
    drop(staged);
    drop(lock);
    tracing::info!(
        backup = %backup.display(),
        db = %db_path.display(),
        old_site_id = %hex(&old_site_id),
        new_site_id = %hex(&verified.site_id),
        "store database restored"
    );
    Ok(Restored {
        db_path,
        moved_aside,
        schema_version: verified.schema_version,
        old_site_id,
        new_site_id: verified.site_id,
    })
}

/// What the operator must do after a restore before the store syncs again.
pub fn next_steps(store_id: &str) -> String {
    format!(
        "The restored database has a new cr-sqlite site id, so the cloud will refuse it until HQ \
         releases the old one. Next step, before starting flashkart-edge: ask HQ to rotate this \
         store's token with {{\"release_edge_site\": true}}:\n\n  \
         curl -X POST -H 'authorization: Bearer <HQ admin token>' -H 'content-type: application/json' \\\n    \
         -d '{{\"release_edge_site\": true}}' https://<cloud>/admin/v1/stores/{store_id}/token\n\n\
         (on the cloud machine: flashkart-cloud register-store {store_id} --rotate \
         --release-edge-site), then put the new token in [sync] token of the edge config and start the daemon. It \
         pulls back from the cloud what the store wrote after the backup and the cloud received."
    )
}

/// Refuses if any connection has the database open (the daemon's lock is already ours; this
/// catches anything else, such as a `sqlite3` shell or a `flashkart-edge backup` in progress):
/// a truncating checkpoint is busy while another connection reads or writes. It also folds a
/// WAL left by a crash into the database before it is moved aside.
fn ensure_unused(db_path: &Path, data_dir: &Path) -> Result<(), BackupError> {
    if !db_path.exists() {
        return Ok(());
    }
    let conn = match Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, path = %db_path.display(), "cannot open the current database; moving it aside as it is");
            return Ok(());
        }
    };
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(0) => Ok(()),
        Ok(_) => Err(BackupError::InUse {
            dir: data_dir.to_path_buf(),
            holder: Some("another connection".into()),
        }),
        Err(error) if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
            Err(BackupError::InUse {
                dir: data_dir.to_path_buf(),
                holder: Some("another connection".into()),
            })
        }
        Err(error) => {
            // A damaged database (perhaps why it is being restored) is moved aside as it is.
            tracing::warn!(%error, path = %db_path.display(), "checkpoint before restore failed; moving the database aside as it is");
            Ok(())
        }
    }
}

/// Moves `store.db` and its `-wal`/`-shm` to `store.db.before-restore-<stamp>` (and `-wal`,
/// `-shm`), the log files first: a database must never meet a log that is not its own.
fn move_aside(db_path: &Path, stamp: &str) -> Result<Option<PathBuf>, BackupError> {
    if !db_path.exists() {
        return Ok(None);
    }
    let mut aside = db_path.as_os_str().to_owned();
    aside.push(format!(".before-restore-{stamp}"));
    let aside = PathBuf::from(aside);
    for suffix in ["-wal", "-shm", ""] {
        let from = sidecar(db_path, suffix);
        if from.exists() {
            let to = sidecar(&aside, suffix);
            fs::rename(&from, &to).map_err(io(format!(
                "moving {} to {}",
                from.display(),
                to.display()
            )))?;
        }
    }
    tracing::info!(path = %aside.display(), "current database moved aside");
    Ok(Some(aside))
}

/// Opens the copy with cr-sqlite loaded and checks it reports `expected` as its site id.
fn confirm_site_id(
    path: &Path,
    extension_dir: Option<&Path>,
    expected: [u8; 16],
) -> Result<(), BackupError> {
    let dir = extension_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(crsqlite::default_cache_dir);
    let library = crsqlite::extract(&dir)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(path))?;
    crsqlite::load(&conn, &library)?;
    let reported: Vec<u8> = conn
        .query_row("SELECT crsql_site_id()", [], |r| r.get(0))
        .map_err(sql(path))?;
    let _ = conn.query_row("SELECT crsql_finalize()", [], |_| Ok(()));
    conn.close().map_err(|(_, e)| sql(path)(e))?;
    if reported != expected {
        return Err(BackupError::SiteId(format!(
            "cr-sqlite reports {} after the change, expected {}",
            hex(&reported),
            hex(&expected)
        )));
    }
    Ok(())
}

/// A random site id (as cr-sqlite makes them: a v4 UUID's bytes) other than `old`.
fn new_site_id(old: [u8; 16]) -> [u8; 16] {
    loop {
        let mut bytes: [u8; 16] = rand::random();
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        if bytes != old {
            return bytes;
        }
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
