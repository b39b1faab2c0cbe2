//! Backups of the store database, and putting one back.
//!
//! The store database is the store's truth, and a Pi's SD card dies. So the daemon copies the
//! database aside on a schedule, online (SQLite's backup API through a connection of its own,
//! on a blocking thread: the store keeps working while the copy is made), and `flashkart-edge
//! backup` takes one on demand. A copy is written under a temporary name, converted to a
//! self-contained file (no write-ahead log beside it), checked (`PRAGMA integrity_check`, and
//! that it is a store database this binary knows), fsynced and only then renamed to
//! `store-<UTC time>.db`, so a crash never leaves a half copy that looks complete. The newest
//! `keep` are kept.
//!
//! Putting one back is [`restore`] (its own module, because of what it must do about sync).
//! The daemon holds a lock on its data directory ([`DataDirLock`]) while it runs, so a restore
//! can refuse clearly instead of pulling the database from under it.

mod catch_up;
mod restore;

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flashkart_sync::crsqlite;
use flashkart_sync::schema::store::MIGRATIONS;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;

pub use catch_up::{CatchUp, RESTORED_MARKER, marker_path};
pub use restore::{Restored, next_steps, restore};

/// The store database's file name in the data directory.
pub const DB_FILE: &str = "store.db";
/// The lock file the daemon holds in its data directory while it runs.
pub const LOCK_FILE: &str = "flashkart-edge.lock";
/// How a backup's time is written in its name: sortable as text, no `:` (not a valid file
/// name character everywhere).
const STAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]-[minute]-[second].[subsecond digits:3]Z");
const PREFIX: &str = "store-";
const SUFFIX: &str = ".db";
/// A temporary copy older than this is left over from a crash and removed.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// What taking or restoring a backup can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Store(#[from] flashkart_sync::Error),
    #[error("there is no store database at {}", .0.display())]
    NoDatabase(PathBuf),
    #[error(
        "the store database in {} is in use{}: stop flashkart-edge first (systemctl stop \
         flashkart-edge)",
        dir.display(),
        holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default()
    )]
    InUse {
        dir: PathBuf,
        holder: Option<String>,
    },
    #[error("{} is not a FlashKart store database this binary can use: {reason}", path.display())]
    NotAStoreDb { path: PathBuf, reason: String },
    #[error("{} failed its integrity check: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("giving the restored database a new site id: {0}")]
    SiteId(String),
    #[error("the backup task failed: {0}")]
    Task(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let context = context.into();
    move |source| BackupError::Io { context, source }
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a backup is taken from and written to.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// The live store database.
    pub db_path: PathBuf,
    /// The backup directory.
    pub dir: PathBuf,
    /// How many backups to keep (at least 1).
    pub keep: usize,
    /// Where cr-sqlite is extracted; the user's cache directory when `None`.
    pub extension_dir: Option<PathBuf>,
}

impl BackupSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            db_path: config.db_path(),
            dir: config.backup_dir(),
            keep: usize::try_from(config.backup.keep)
                .unwrap_or(usize::MAX)
                .max(1),
            extension_dir: config.extension_dir.clone(),
        }
    }

    fn library(&self) -> Result<PathBuf, BackupError> {
        let dir = self
            .extension_dir
            .clone()
            .unwrap_or_else(crsqlite::default_cache_dir);
        Ok(crsqlite::extract(&dir)?)
    }
}

/// A complete, verified backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFile {
    pub path: PathBuf,
    /// When it was taken (from its name).
    pub taken_at: OffsetDateTime,
}

/// A backup just written, and what pruning removed.
#[derive(Debug, Clone)]
pub struct Taken {
    pub file: BackupFile,
    pub bytes: u64,
    pub schema_version: u32,
    pub pruned: Vec<PathBuf>,
}

/// The name of a backup taken at `at`.
pub fn file_name(at: OffsetDateTime) -> String {
    let stamp = at
        .to_offset(time::UtcOffset::UTC)
        .format(STAMP)
        .unwrap_or_else(|_| at.unix_timestamp().to_string());
    format!("{PREFIX}{stamp}{SUFFIX}")
}

/// When a backup named `name` was taken; `None` for anything that is not a complete backup's
/// name (temporary copies start with `.` and end in `.tmp`, so they never match).
pub fn parse_name(name: &str) -> Option<OffsetDateTime> {
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    time::PrimitiveDateTime::parse(stamp, STAMP)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// The complete backups in `dir`, newest first. A missing directory has none.
pub fn list(dir: &Path) -> Result<Vec<BackupFile>, BackupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("listing {}", dir.display()))(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(format!("listing {}", dir.display())))?;
        let Some(taken_at) = entry.file_name().to_str().and_then(parse_name) else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            found.push(BackupFile {
                path: entry.path(),
                taken_at,
            });
        }
    }
    found.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then(b.path.cmp(&a.path)));
    Ok(found)
}

/// Removes all but the newest `keep` backups in `dir` (at least one is always kept); returns
/// what it removed. Temporary copies are not backups and are not counted.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let mut removed = Vec::new();
    for old in list(dir)?.into_iter().skip(keep.max(1)) {
        fs::remove_file(&old.path).map_err(io(format!("removing {}", old.path.display())))?;
        tracing::info!(path = %old.path.display(), "old backup removed");
        removed.push(old.path);
    }
    Ok(removed)
}

/// Takes one backup now, verifies it and prunes to `keep`. Blocking: run it on a blocking
/// thread. Works whether or not the daemon is running (the copy is made through a connection of
/// its own, inside one read transaction, so it is one consistent state of the database).
pub fn take(settings: &BackupSettings) -> Result<Taken, BackupError> {
    let source_path = &settings.db_path;
    if !source_path.is_file() {
        return Err(BackupError::NoDatabase(source_path.clone()));
    }
    let dir = &settings.dir;
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    remove_stale_temps(dir);

    let taken_at = OffsetDateTime::now_utc();
    let name = file_name(taken_at);
    let path = dir.join(&name);
    if path.exists() {
        return Err(BackupError::Io {
            context: format!("writing {}", path.display()),
            source: std::io::ErrorKind::AlreadyExists.into(),
        });
    }
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        copy_online(settings, &temp)?;
        let verified = finish_copy(&temp)?;
        sync_file(&temp)?;
        Ok::<_, BackupError>(verified)
    })();
    let verified = match written {
        Ok(verified) => verified,
        Err(error) => {
            remove_with_sidecars(&temp);
            return Err(error);
        }
    };
    fs::rename(&temp, &path).map_err(io(format!("renaming {}", temp.display())))?;
    sync_dir(dir)?;
    let bytes = fs::metadata(&path)
        .map_err(io(format!("reading {}", path.display())))?
        .len();
    let pruned = prune(dir, settings.keep)?;
    tracing::info!(
        path = %path.display(),
        bytes,
        schema_version = verified.schema_version,
        pruned = pruned.len(),
        "backup written and verified"
    );
    Ok(Taken {
        file: BackupFile { path, taken_at },
        bytes,
        schema_version: verified.schema_version,
        pruned,
    })
}

/// Copies the live database into `temp` with SQLite's online backup API, all pages in one step
/// (one read transaction: a consistent copy, while writers carry on in the WAL).
fn copy_online(settings: &BackupSettings, temp: &Path) -> Result<(), BackupError> {
    let source_path = &settings.db_path;
    let library = settings.library()?;
    // Not created if missing, and read-only in effect: cr-sqlite needs a writable handle to
    // initialise, so `query_only` is set after it loads, as StoreDb does for its readers.
    let source = Connection::open_with_flags(
        source_path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(source_path))?;
    crsqlite::load(&source, &library)?;
    source
        .execute_batch("PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;")
        .map_err(sql(source_path))?;
    let copied = (|| {
        let mut dest = Connection::open(temp).map_err(sql(temp))?;
        let backup = Backup::new(&source, &mut dest).map_err(sql(temp))?;
        let mut waits = 0;
        loop {
            match backup.step(-1).map_err(sql(source_path))? {
                StepResult::Done => break,
                StepResult::More => {}
                // Busy or locked: another connection holds a lock for a moment; retry briefly.
                _ if waits < 200 => {
                    waits += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => {
                    return Err(BackupError::Io {
                        context: format!("copying {}: {other:?}", source_path.display()),
                        source: std::io::ErrorKind::TimedOut.into(),
                    });
                }
            }
        }
        drop(backup);
        dest.close().map_err(|(_, e)| sql(temp)(e))
    })();
    if let Err(error) = source.query_row("SELECT crsql_finalize()", [], |_| Ok(())) {
        tracing::warn!(%error, "crsql_finalize on the backup's source connection");
    }
    if let Err((_, error)) = source.close() {
        tracing::warn!(%error, "closing the backup's source connection");
    }
    copied
}

/// Turns the fresh copy into one self-contained file (rollback journal, so no `-wal` beside it
/// holds part of it) and verifies it.
fn finish_copy(temp: &Path) -> Result<Verified, BackupError> {
    let conn = Connection::open(temp).map_err(sql(temp))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(sql(temp))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(BackupError::Corrupt {
            path: temp.to_path_buf(),
            detail: format!("could not leave WAL mode (journal_mode is {mode})"),
        });
    }
    let verified = verify(&conn, temp)?;
    conn.close().map_err(|(_, e)| sql(temp)(e))?;
    Ok(verified)
}

/// What [`verify`] learned about a store database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verified {
    pub schema_version: u32,
    pub site_id: [u8; 16],
}

/// Checks that `conn` (a plain connection, without cr-sqlite) holds an intact FlashKart store
/// database whose schema this binary knows: `PRAGMA integrity_check`, the migrations it
/// records are this binary's store migrations (same numbers and names, none newer), and it
/// has a cr-sqlite site id.
pub(crate) fn verify(conn: &Connection, path: &Path) -> Result<Verified, BackupError> {
    let not_store = |reason: String| BackupError::NotAStoreDb {
        path: path.to_path_buf(),
        reason,
    };
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(20)")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => not_store("not an SQLite database".into()),
            _ => BackupError::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            },
        })?;
    if problems != ["ok"] {
        return Err(BackupError::Corrupt {
            path: path.to_path_buf(),
            detail: problems.join("; "),
        });
    }
    let has_table = |name: &str| {
        conn.query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()
        .map(|found| found.is_some())
        .map_err(sql(path))
    };
    if !has_table("schema_migrations")? {
        return Err(not_store("it has no schema_migrations table".into()));
    }
    let mut applied: Vec<(u32, String)> = conn
        .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql(path))?;
    let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    let mut schema_version = 0;
    for (version, name) in applied.drain(..) {
        match MIGRATIONS.iter().find(|m| m.version == version) {
            Some(migration) if migration.name == name => schema_version = version,
            Some(migration) => {
                return Err(not_store(format!(
                    "its migration {version} is `{name}`, a store database's is `{}`",
                    migration.name
                )));
            }
            None if version > known => {
                return Err(not_store(format!(
                    "its schema version {version} is newer than this binary's ({known}); \
                     restore it with a newer flashkart-edge"
                )));
            }
            None => return Err(not_store(format!("unknown migration {version} `{name}`"))),
        }
    }
    if schema_version == 0 {
        return Err(not_store(
            "no store migration has been applied to it".into(),
        ));
    }
    if !has_table("crsql_site_id")? {
        return Err(not_store("it has no cr-sqlite site id".into()));
    }
    let site: Option<Vec<u8>> = conn
        .query_row(
            "SELECT site_id FROM crsql_site_id WHERE ordinal = 0",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql(path))?;
    let site_id = site
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .ok_or_else(|| not_store("its cr-sqlite site id is missing or not 16 bytes".into()))?;
    Ok(Verified {
        schema_version,
        site_id,
    })
}

/// Removes temporary copies a crash left behind (old enough that no backup is still writing
/// them).
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(&format!(".{PREFIX}")) && name.contains(".tmp")) {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age > STALE_TEMP);
        if stale {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "stale partial backup removed")
                }
                Err(error) => {
                    tracing::warn!(path = %entry.path().display(), %error, "removing a stale partial backup")
                }
            }
        }
    }
}

/// Removes `path` and any `-wal`/`-shm`/`-journal` SQLite left beside it.
pub(crate) fn remove_with_sidecars(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = fs::remove_file(PathBuf::from(name));
    }
}

pub(crate) fn sync_file(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", path.display())))
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", dir.display())))
}

/// The daemon's hold on its data directory: an exclusive lock on `flashkart-edge.lock` there
/// for as long as this value lives (the OS drops it if the process dies), with the holder's
/// pid written in it for the message others get.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock, or fails at once with [`BackupError::InUse`] if another process (or
    /// another daemon in this one) holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, BackupError> {
        fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(BackupError::InUse {
                    dir: data_dir.to_path_buf(),
                    holder: (!holder.is_empty()).then(|| holder.to_owned()),
                });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(BackupError::Io {
                    context: format!("locking {}", path.display()),
                    source,
                });
            }
        }
        // Best effort: the pid only improves the message another process gets.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "flashkart-edge pid {}", std::process::id()))
            .and_then(|()| file.flush());
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The scheduled backups' timing.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub settings: BackupSettings,
    pub interval: Duration,
}

impl Schedule {
    pub fn from_config(config: &Config) -> Self {
        Self {
            settings: BackupSettings::from_config(config),
            interval: Duration::from_secs(u64::from(config.backup.interval_minutes) * 60),
        }
    }

    /// How long until the first backup: one interval after the newest backup already there
    /// (at once if that is past), or one interval from now if there is none. So restarts do
    /// not postpone backups for ever.
    fn first_delay(&self) -> Duration {
        let newest = list(&self.settings.dir)
            .ok()
            .and_then(|found| found.into_iter().next());
        let Some(newest) = newest else {
            return self.interval;
        };
        let age = OffsetDateTime::now_utc() - newest.taken_at;
        match Duration::try_from(age) {
            Ok(age) => self.interval.saturating_sub(age),
            // Taken "in the future" (the clock went back): count from now.
            Err(_) => self.interval,
        }
    }
}

/// Starts the daemon's scheduled backups; the task ends when `shutdown` is cancelled (a backup
/// in progress is finished first). Outcomes go to the log and `/metrics`.
pub fn spawn(
    schedule: Schedule,
    app: Arc<App>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tracing::info!(
        dir = %schedule.settings.dir.display(),
        interval_minutes = schedule.interval.as_secs() / 60,
        keep = schedule.settings.keep,
        "scheduled backups on"
    );
    tokio::spawn(run_schedule(
        schedule,
        shutdown,
        move |outcome| match outcome {
            Ok(taken) => app
                .metrics
                .backup_succeeded(taken.bytes, taken.file.taken_at.unix_timestamp()),
            Err(_) => app.metrics.backup_failed(),
        },
    ))
}

/// The schedule's loop: waits out the interval (or `shutdown`), takes a backup on a blocking
/// thread, reports it to `report`, and again. A failed backup is logged and reported; the loop
/// goes on.
pub async fn run_schedule(
    schedule: Schedule,
    shutdown: CancellationToken,
    report: impl Fn(&Result<Taken, BackupError>) + Send + 'static,
) {
    let mut delay = {
        let probe = schedule.clone();
        tokio::task::spawn_blocking(move || probe.first_delay())
            .await
            .unwrap_or(schedule.interval)
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
        let settings = schedule.settings.clone();
        let outcome = tokio::task::spawn_blocking(move || take(&settings))
            .await
            .unwrap_or_else(|e| Err(BackupError::Task(e.to_string())));
        if let Err(error) = &outcome {
            tracing::error!(%error, dir = %schedule.settings.dir.display(), "scheduled backup failed");
        }
        report(&outcome);
        delay = schedule.interval;
    }
    tracing::info!("scheduled backups stopped");
}
