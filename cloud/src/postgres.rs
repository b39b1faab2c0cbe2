//! PostgreSQL, the cloud's shared database when it outgrows one machine.
//!
//! SQLite files in the data directory stay the embedded default (the demo, one machine). With
//! `database_url = "postgres://..."` the parts of the cloud that have moved keep their data in
//! PostgreSQL instead, so that several instances can share it; each part still exposes one
//! type with the same methods whichever engine holds its rows (see `registry.rs`).
//!
//! Schema changes are numbered [`Migration`]s per component, applied at start inside one
//! transaction that holds an advisory lock, so instances starting together apply each change
//! exactly once and none of them serves on a half-migrated schema. A database already migrated
//! past what this binary knows is refused rather than written to by older code.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::CloudError;

/// One schema change of a component, applied once.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The advisory lock key that serialises migrations across instances (any fixed number will
/// do as long as nothing else in the database uses it).
const MIGRATION_LOCK: i64 = 0x466c_6173_684b_6172; // "FlashKar"

/// Connections one instance keeps at most.
const POOL_SIZE: usize = 16;

/// Where the cloud's PostgreSQL database is: a `postgres://` URL, which may carry a password,
/// so it is never printed.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatabaseUrl(String);

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        Self::parse(&url)
    }
}

impl From<DatabaseUrl> for String {
    fn from(url: DatabaseUrl) -> Self {
        url.0
    }
}

impl DatabaseUrl {
    /// Checks the URL before anything connects with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("database_url must be a postgres:// URL".into());
        }
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| format!("database_url: {e}"))?;
        Ok(Self(url.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = match self.0.parse::<tokio_postgres::Config>() {
            Ok(config) => format!(
                "postgres://{}@{:?}/{}",
                config.get_user().unwrap_or("?"),
                config.get_hosts(),
                config.get_dbname().unwrap_or("?")
            ),
            Err(_) => "postgres://(unparsable)".into(),
        };
        f.write_str(&shown)
    }
}

/// A pool of connections to the cloud's PostgreSQL database.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    /// Kept for connections outside the pool (a LISTEN needs one of its own for as long as
    /// it listens); holds the password, so never printed. Behind an `Arc` so the pool stays
    /// a cheap handle to clone.
    config: std::sync::Arc<tokio_postgres::Config>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("Postgres")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl Postgres {
    /// Connects to `url` and checks the server answers.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, CloudError> {
        let config: tokio_postgres::Config = url
            .expose()
            .parse()
            .map_err(|e| CloudError::Postgres(format!("database_url: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| CloudError::Postgres(format!("connection pool: {e}")))?;
        let postgres = Self {
            pool,
            config: std::sync::Arc::new(config),
        };
        postgres.client().await?.simple_query("SELECT 1").await?;
        Ok(postgres)
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, CloudError> {
        self.pool
            .get()
            .await
            .map_err(|e| CloudError::Postgres(format!("no connection: {e}")))
    }

    /// A connection of its own, outside the pool, and the connection's driver: what LISTEN
    /// needs, since a pooled connection goes back to the pool (and stops listening) as soon
    /// as it is dropped. The caller polls the driver (`poll_message`) for notifications.
    pub async fn dedicated(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
        ),
        CloudError,
    > {
        Ok(self.config.connect(NoTls).await?)
    }

    /// Brings `component`'s tables up to the last of `migrations` (ordered by version).
    pub async fn migrate(
        &self,
        component: &str,
        migrations: &[Migration],
    ) -> Result<(), CloudError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS flashkart_migrations (
                component TEXT NOT NULL,
                version INTEGER NOT NULL,
                name TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (component, version)
            )",
        )
        .await?;
        let applied: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM flashkart_migrations WHERE component = $1",
                &[&component],
            )
            .await?
            .get(0);
        let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
        if applied > known {
            return Err(CloudError::Postgres(format!(
                "the {component} tables are at version {applied}, newer than this binary knows \
                 ({known}); run the newer flashkart-cloud"
            )));
        }
        for migration in migrations.iter().filter(|m| m.version > applied) {
            tx.batch_execute(migration.sql).await.map_err(|e| {
                CloudError::Postgres(format!(
                    "migration {component} {} ({}): {e}",
                    migration.version, migration.name
                ))
            })?;
            tx.execute(
                "INSERT INTO flashkart_migrations (component, version, name) VALUES ($1, $2, $3)",
                &[&component, &migration.version, &migration.name],
            )
            .await?;
            tracing::info!(
                component,
                version = migration.version,
                name = migration.name,
                "postgres migration applied"
            );
        }
        tx.commit().await?;
        Ok(())
    }

    pub fn close(&self) {
        self.pool.close();
    }
}

impl From<tokio_postgres::Error> for CloudError {
    fn from(error: tokio_postgres::Error) -> Self {
        // The server's own message (constraint, syntax) says more than the driver's summary.
        match error.as_db_error() {
            Some(db) => CloudError::Postgres(format!("{}: {}", db.code().code(), db.message())),
            None => CloudError::Postgres(error.to_string()),
        }
    }
}
