//! A store database: one writer thread with group commit, and a small pool of readers.
//!
//! SQLite allows one writer at a time and every call blocks, so the async runtime never touches
//! a connection. Writes are closures sent to a dedicated thread that drains whatever is queued,
//! runs each in its own savepoint inside one transaction, commits once (one fsync for many
//! scans), and only then answers each caller. A failing write rolls back its own savepoint and
//! nothing else. Reads run on blocking threads against a few WAL reader connections, so they
//! never wait for the writer.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{Semaphore, oneshot};

use crate::schema::{self, Migration};
use crate::{Error, crsqlite};

/// How hard each commit insists on reaching the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: a committed write survives power loss. The default.
    #[default]
    Full,
    /// fsync at WAL checkpoints only: survives a process crash, may lose the last commits on
    /// power loss. Faster; measured in docs/benchmarks.md.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// How to open a store database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The database file; created with every migration applied if missing.
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Reader connections (besides the writer).
    pub readers: usize,
    /// SQLite's page cache per connection, in KiB. Every connection caches the same hot pages
    /// and the OS caches the file anyway, so a small cache costs little; SQLite's default
    /// (about 2 MiB) times five connections was a sixth of the edge's memory budget on a Pi.
    pub cache_kib: u32,
    /// The most writes committed together in one transaction.
    pub max_group: usize,
    /// The most writes waiting for the writer thread. A caller beyond it waits (asynchronously)
    /// for room, so a burst of requests slows down instead of piling closures up in memory;
    /// nothing is dropped. Several groups' worth, so the writer always has a full group ready.
    pub max_queued: usize,
    /// Where the cr-sqlite library is extracted; `None` for the user's cache directory.
    pub extension_dir: Option<PathBuf>,
    /// Load cr-sqlite and make tables CRRs. Only benchmarks measuring cr-sqlite's own cost
    /// switch this off.
    pub replicated: bool,
}

impl StoreConfig {
    /// Defaults for a database at `path`: durable commits, 4 readers, groups of up to 256,
    /// 512 KiB of page cache per connection.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous: Synchronous::Full,
            readers: 4,
            cache_kib: 512,
            max_group: 256,
            max_queued: 1024,
            extension_dir: None,
            replicated: true,
        }
    }
}

type WriteJob = Box<dyn FnOnce(&Connection) -> Ran + Send>;
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A write that has run inside its savepoint: whether it failed (so its savepoint is rolled
/// back), and how to answer its caller once the group's commit is known.
struct Ran {
    failed: bool,
    finish: Finish,
}

struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

/// An open store database. Cloning is cheap; the database closes when [`StoreDb::close`] is
/// called (or, less gracefully, when the last clone is dropped).
#[derive(Clone)]
pub struct StoreDb {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Option<mpsc::Sender<WriteJob>>>,
    /// Room in the writer's queue (`max_queued`); a permit travels with each job.
    queue_room: Arc<Semaphore>,
    max_queued: usize,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: ReaderPool,
    site_id: [u8; 16],
    path: PathBuf,
    schema_version: u32,
}

impl std::fmt::Debug for StoreDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreDb")
            .field("path", &self.inner.path)
            .field("site_id", &hex(&self.inner.site_id))
            .finish_non_exhaustive()
    }
}

impl StoreDb {
    /// Opens (creating if needed) the database and applies pending `migrations`.
    pub async fn open(
        config: StoreConfig,
        migrations: &'static [Migration],
    ) -> Result<Self, Error> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config, migrations))
            .await
            .map_err(|e| Error::WritePanicked(e.to_string()))?
    }

    fn open_blocking(config: StoreConfig, migrations: &'static [Migration]) -> Result<Self, Error> {
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let library = if config.replicated {
            let dir = config
                .extension_dir
                .clone()
                .unwrap_or_else(crsqlite::default_cache_dir);
            Some(crsqlite::extract(&dir)?)
        } else {
            None
        };
        let writer = open_connection(&config, library.as_deref())?;
        let schema_version = if config.replicated {
            schema::migrate(&writer, migrations)?
        } else {
            migrate_plain(&writer, migrations)?
        };
        let site_id: [u8; 16] = if config.replicated {
            let raw: Vec<u8> = writer.query_row("SELECT crsql_site_id()", [], |r| r.get(0))?;
            raw.try_into().map_err(|_| Error::Extension {
                path: config.path.clone(),
                message: "crsql_site_id() is not 16 bytes".into(),
            })?
        } else {
            [0; 16]
        };

        let mut readers = Vec::with_capacity(config.readers);
        for _ in 0..config.readers.max(1) {
            let conn = open_connection(&config, library.as_deref())?;
            conn.execute_batch("PRAGMA query_only = ON")?;
            readers.push(conn);
        }
        let permits = Semaphore::new(readers.len());

        let (sender, receiver) = mpsc::channel::<WriteJob>();
        let max_group = config.max_group.max(1);
        let replicated = config.replicated;
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer, receiver, max_group, replicated))
            .map_err(|source| Error::Io {
                path: config.path.clone(),
                source,
            })?;
        tracing::info!(path = %config.path.display(), site_id = %hex(&site_id), schema_version, "store database open");
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(sender)),
                queue_room: Arc::new(Semaphore::new(config.max_queued.max(1))),
                max_queued: config.max_queued.max(1),
                writer_thread: Mutex::new(Some(thread)),
                readers: ReaderPool {
                    idle: Mutex::new(readers),
                    permits,
                },
                site_id,
                path: config.path,
                schema_version,
            }),
        })
    }

    /// Writes waiting for the writer thread (not yet running).
    pub fn queued_writes(&self) -> usize {
        self.inner
            .max_queued
            .saturating_sub(self.inner.queue_room.available_permits())
    }

    /// This database's cr-sqlite site id.
    pub fn site_id(&self) -> [u8; 16] {
        self.inner.site_id
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn schema_version(&self) -> u32 {
        self.inner.schema_version
    }

    /// Runs `write` in the writer thread inside a transaction, and returns its result once that
    /// transaction is durably committed. If `write` fails, everything it did is rolled back and
    /// other writes grouped with it are unaffected.
    pub async fn write<T, E, F>(&self, write: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let room = self
            .inner
            .queue_room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        let (reply, answer) = oneshot::channel::<Result<T, E>>();
        let job: WriteJob = Box::new(move |conn| {
            // The job has left the queue once it runs.
            drop(room);
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| write(conn)));
            let result: Result<T, E> = match outcome {
                Ok(result) => result,
                Err(panic) => Err(Error::WritePanicked(panic_message(&panic)).into()),
            };
            let failed = result.is_err();
            let finish: Finish = Box::new(move |commit: Result<(), String>| {
                let result = match (result, commit) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Ok(_), Err(message)) => Err(Error::Commit(message).into()),
                    (Err(e), _) => Err(e),
                };
                // The caller may have gone away; its write is committed regardless.
                let _ = reply.send(result);
            });
            Ran { failed, finish }
        });
        {
            let guard = self.inner.writer.lock().map_err(|_| Error::Closed)?;
            let sender = guard.as_ref().ok_or(Error::Closed)?;
            sender.send(job).map_err(|_| Error::Closed)?;
        }
        answer.await.map_err(|_| E::from(Error::Closed))?
    }

    /// Runs `read` on a reader connection on a blocking thread.
    pub async fn read<T, E, F>(&self, read: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let inner = self.inner.clone();
        let permit = inner
            .readers
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Closed)?;
        let conn = inner
            .readers
            .idle
            .lock()
            .map_err(|_| Error::Closed)?
            .pop()
            .ok_or(Error::Closed)?;
        // The blocking closure hands the connection and its permit back itself, so a caller
        // that stops waiting (a cancelled future) cannot leak a connection from the pool.
        permit.forget();
        let pool = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| read(&conn)));
            if let Ok(mut idle) = pool.readers.idle.lock() {
                idle.push(conn);
            }
            pool.readers.permits.add_permits(1);
            result
        })
        .await
        .map_err(|e| Error::WritePanicked(e.to_string()))?;
        result.map_err(|panic| E::from(Error::WritePanicked(panic_message(&panic))))?
    }

    /// Finishes queued writes, runs `crsql_finalize` on every connection and closes them.
    pub async fn close(&self) -> Result<(), Error> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.shut_down())
            .await
            .map_err(|e| Error::WritePanicked(e.to_string()))?
    }
}

impl Inner {
    fn shut_down(&self) -> Result<(), Error> {
        // Dropping the sender ends the writer loop after the queued writes.
        let Some(sender) = self.writer.lock().map_err(|_| Error::Closed)?.take() else {
            return Ok(()); // already closed
        };
        drop(sender);
        self.queue_room.close();
        if let Some(thread) = self.writer_thread.lock().map_err(|_| Error::Closed)?.take() {
            thread
                .join()
                .map_err(|panic| Error::WritePanicked(panic_message(&panic)))?;
        }
        self.readers.permits.close();
        let readers = std::mem::take(&mut *self.readers.idle.lock().map_err(|_| Error::Closed)?);
        for conn in readers {
            finalize(&conn);
        }
        tracing::info!(path = %self.path.display(), "store database closed");
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            tracing::warn!(%error, "closing store database");
        }
    }
}

fn writer_loop(
    conn: Connection,
    jobs: mpsc::Receiver<WriteJob>,
    max_group: usize,
    replicated: bool,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < max_group {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        run_group(&conn, group);
    }
    if replicated {
        finalize(&conn);
    }
    if let Err((_, error)) = conn.close() {
        tracing::warn!(%error, "closing the writer connection");
    }
}

fn run_group(conn: &Connection, group: Vec<WriteJob>) {
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Nothing ran; dropping the jobs drops their reply channels, which their callers see
        // as a closed database. Log why.
        tracing::error!(%error, "cannot begin a write transaction");
        return;
    }
    let mut finishes = Vec::with_capacity(group.len());
    for job in group {
        if let Err(error) = conn.execute_batch("SAVEPOINT write") {
            tracing::error!(%error, "cannot open a savepoint; write dropped");
            continue;
        }
        let ran = job(conn);
        if ran.failed
            && let Err(error) = conn.execute_batch("ROLLBACK TO write")
        {
            tracing::error!(%error, "rolling back a failed write");
        }
        if let Err(error) = conn.execute_batch("RELEASE write") {
            tracing::error!(%error, "releasing a savepoint");
        }
        finishes.push(ran.finish);
    }
    let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    if let Err(message) = &commit {
        tracing::error!(%message, "group commit failed; rolling back");
        let _ = conn.execute_batch("ROLLBACK");
    }
    for finish in finishes {
        finish(commit.clone());
    }
}

fn open_connection(config: &StoreConfig, library: Option<&Path>) -> Result<Connection, Error> {
    let conn = Connection::open(&config.path)?;
    if let Some(library) = library {
        crsqlite::load(&conn, library)?;
    }
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {};
         PRAGMA busy_timeout = 10000;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -{};",
        config.synchronous.pragma(),
        config.cache_kib
    ))?;
    Ok(conn)
}

/// Benchmarks compare against the same schema without cr-sqlite: create the tables as plain
/// SQLite tables.
fn migrate_plain(conn: &Connection, migrations: &[Migration]) -> Result<u32, Error> {
    use schema::Step;
    let mut version = 0;
    conn.execute_batch("BEGIN")?;
    for migration in migrations {
        for step in migration.steps {
            match *step {
                Step::Sql(sql) | Step::CreateCrr { sql, .. } | Step::AlterCrr { sql, .. } => {
                    conn.execute_batch(sql)?
                }
            }
        }
        version = migration.version;
    }
    conn.execute_batch("COMMIT")?;
    Ok(version)
}

fn finalize(conn: &Connection) {
    if let Err(error) = conn.query_row("SELECT crsql_finalize()", [], |_| Ok(())) {
        tracing::warn!(%error, "crsql_finalize");
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
