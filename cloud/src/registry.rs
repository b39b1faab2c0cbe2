//! The stores known to the cloud and their credentials.
//!
//! HQ registers a store and gets a bearer token for it once; the cloud keeps only its SHA-256
//! (tokens are 256 random bits, so a fast hash is enough) bound to the store id. The first
//! edge database that says hello with the token is bound to the store too, so a copied token
//! cannot feed a second, diverging database into the same replica. Registering a store that
//! exists is refused: it would silently lock the running edge out. [`Registry::rotate`] issues
//! a new token instead (the old one stops working at once) and keeps the binding, since the
//! same edge database goes on syncing; only a replaced edge database (new hardware, lost disk)
//! needs the binding released.
//!
//! The registry lives in `registry.db` by default, or in PostgreSQL when the cloud is given a
//! `database_url` (every instance then sees the same stores and tokens).

use flashkart_sync::schema::{Migration, Step};
use flashkart_sync::{StoreConfig, StoreDb};
use rand::RngCore;
use rusqlite::OptionalExtension;
use sha2::{Digest, Sha256};

use crate::CloudError;
use crate::postgres::{self, Postgres};

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "store registry",
    steps: &[Step::Sql(
        "CREATE TABLE stores (
            id TEXT PRIMARY KEY NOT NULL,
            token_sha256 TEXT NOT NULL UNIQUE,
            edge_site_id BLOB,
            registered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        )",
    )],
}];

const PG_MIGRATIONS: &[postgres::Migration] = &[postgres::Migration {
    version: 1,
    name: "store registry",
    sql: "CREATE TABLE stores (
        id TEXT PRIMARY KEY NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        edge_site_id BYTEA CHECK (octet_length(edge_site_id) = 16),
        registered_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
}];

/// A store a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAuth {
    pub store_id: String,
    pub edge_site_id: Option<[u8; 16]>,
}

/// The registry, on whichever engine the cloud was configured with.
#[derive(Debug, Clone)]
pub struct Registry {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(StoreDb),
    Postgres(Postgres),
}

impl Registry {
    /// The registry in its own SQLite file.
    pub async fn open(mut config: StoreConfig) -> Result<Self, CloudError> {
        config.readers = 2;
        Ok(Self {
            backend: Backend::Sqlite(StoreDb::open(config, MIGRATIONS).await?),
        })
    }

    /// The registry in PostgreSQL, its tables migrated first.
    pub async fn open_postgres(postgres: Postgres) -> Result<Self, CloudError> {
        postgres.migrate("registry", PG_MIGRATIONS).await?;
        Ok(Self {
            backend: Backend::Postgres(postgres),
        })
    }

    /// Registers a new store, returning its token (shown once). An existing id is refused with
    /// [`CloudError::StoreExists`] and keeps its token.
    pub async fn register(&self, store_id: &str) -> Result<String, CloudError> {
        validate_store_id(store_id)?;
        let (token, hash) = new_token();
        let id = store_id.to_owned();
        let inserted = match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    conn.execute(
                        "INSERT INTO stores (id, token_sha256) VALUES (?1, ?2)
                         ON CONFLICT (id) DO NOTHING",
                        rusqlite::params![id, hash],
                    )
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
                    == 1
            }
            Backend::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute(
                        "INSERT INTO stores (id, token_sha256) VALUES ($1, $2)
                         ON CONFLICT (id) DO NOTHING",
                        &[&id, &hash],
                    )
                    .await?
                    == 1
            }
        };
        if !inserted {
            return Err(CloudError::StoreExists(store_id.to_owned()));
        }
        tracing::info!(store = store_id, "store registered; credential issued");
        Ok(token)
    }

    /// Issues a registered store a new token; the old one stops working. The edge database
    /// bound to the store stays bound unless `release_site`, which lets the next database to
    /// say hello bind instead.
    pub async fn rotate(&self, store_id: &str, release_site: bool) -> Result<String, CloudError> {
        validate_store_id(store_id)?;
        let (token, hash) = new_token();
        let id = store_id.to_owned();
        let updated = match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    conn.execute(
                        "UPDATE stores SET token_sha256 = ?2,
                            edge_site_id = CASE WHEN ?3 THEN NULL ELSE edge_site_id END
                         WHERE id = ?1",
                        rusqlite::params![id, hash, release_site],
                    )
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
                    == 1
            }
            Backend::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute(
                        "UPDATE stores SET token_sha256 = $2,
                            edge_site_id = CASE WHEN $3 THEN NULL ELSE edge_site_id END
                         WHERE id = $1",
                        &[&id, &hash, &release_site],
                    )
                    .await?
                    == 1
            }
        };
        if !updated {
            return Err(CloudError::UnknownStore(store_id.to_owned()));
        }
        tracing::info!(
            store = store_id,
            release_site,
            "store credential rotated; the old one no longer works"
        );
        Ok(token)
    }

    /// The store a token belongs to, if any.
    pub async fn authenticate(&self, token: &str) -> Result<Option<StoreAuth>, CloudError> {
        let hash = token_hash(token);
        let found: Option<(String, Option<Vec<u8>>)> = match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |conn| {
                    conn.query_row(
                        "SELECT id, edge_site_id FROM stores WHERE token_sha256 = ?1",
                        [hash],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query_opt(
                    "SELECT id, edge_site_id FROM stores WHERE token_sha256 = $1",
                    &[&hash],
                )
                .await?
                .map(|row| (row.get(0), row.get(1))),
        };
        Ok(found.map(|(store_id, site)| StoreAuth {
            store_id,
            edge_site_id: site.and_then(|s| s.try_into().ok()),
        }))
    }

    /// Binds the store to the edge database `site` unless it is bound already; returns the
    /// bound site.
    pub async fn bind(&self, store_id: &str, site: [u8; 16]) -> Result<[u8; 16], CloudError> {
        let id = store_id.to_owned();
        let bound: Vec<u8> = match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    conn.execute(
                        "UPDATE stores SET edge_site_id = ?2
                         WHERE id = ?1 AND edge_site_id IS NULL",
                        rusqlite::params![id, site.as_slice()],
                    )?;
                    conn.query_row("SELECT edge_site_id FROM stores WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })
                    .map_err(flashkart_sync::Error::from)
                })
                .await?
            }
            // One statement: two instances binding different databases at once cannot both win.
            Backend::Postgres(pg) => pg
                .client()
                .await?
                .query_opt(
                    "UPDATE stores SET edge_site_id = COALESCE(edge_site_id, $2)
                     WHERE id = $1 RETURNING edge_site_id",
                    &[&id, &site.as_slice()],
                )
                .await?
                .ok_or_else(|| CloudError::UnknownStore(store_id.to_owned()))?
                .get(0),
        };
        bound
            .try_into()
            .map_err(|_| CloudError::Corrupt("edge site id is not 16 bytes".into()))
    }

    /// Every registered store id.
    pub async fn store_ids(&self) -> Result<Vec<String>, CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .read(|conn| {
                    conn.prepare("SELECT id FROM stores ORDER BY id")?
                        .query_map([], |r| r.get(0))?
                        .collect::<Result<Vec<String>, _>>()
                        .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query("SELECT id FROM stores ORDER BY id", &[])
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect()),
        }
    }

    pub async fn close(&self) -> Result<(), CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db.close().await?),
            // The pool is the cloud's, shared with other parts; it closes it at shutdown.
            Backend::Postgres(_) => Ok(()),
        }
    }
}

/// Store ids name files: letters, digits, `-` and `_`, 1 to 64 of them.
pub fn validate_store_id(store_id: &str) -> Result<(), CloudError> {
    let ok = !store_id.is_empty()
        && store_id.len() <= 64
        && store_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CloudError::BadStoreId(store_id.to_owned()))
    }
}

/// A new store token and its hash.
fn new_token() -> (String, String) {
    let mut secret = [0_u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("fks_{}", hex(&secret));
    let hash = token_hash(&token);
    (token, hash)
}

pub(crate) fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
