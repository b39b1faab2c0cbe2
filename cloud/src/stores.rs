//! The store replicas and the catalog, and the fan-out of the catalog into every replica.
//!
//! Each registered store has its own cr-sqlite database under `<data_dir>/stores/`, opened with
//! the same migrations as the edge's, so the replica and the edge converge table for table. HQ
//! writes the shared catalog (categories, products, GTINs, prices) once, into
//! `<data_dir>/catalog.db`; a fan-out task merges its changes into every replica (keeping
//! their origin, so the edge sees one catalog site whichever store it is), and each store then
//! pulls them like any other cloud change.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use flashkart_sync::schema::store::MIGRATIONS;
use flashkart_sync::server::{Replica, ReplicaLimits};
use flashkart_sync::{StoreConfig, StoreDb, Synchronous};
use rusqlite::Connection;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::metrics::Metrics;
use crate::registry::validate_store_id;

/// How to open the cloud's databases.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub data_dir: PathBuf,
    pub synchronous: Synchronous,
    pub extension_dir: Option<PathBuf>,
}

impl DbOptions {
    pub fn config(&self, file: PathBuf) -> StoreConfig {
        let mut config = StoreConfig::new(file);
        config.synchronous = self.synchronous;
        config.extension_dir = self.extension_dir.clone();
        config
    }
}

/// The open replicas, by store id, and the catalog.
#[derive(Debug)]
pub struct Stores {
    options: DbOptions,
    limits: ReplicaLimits,
    replicas: Mutex<HashMap<String, Arc<Replica>>>,
    catalog: StoreDb,
    /// Wakes the fan-out: the catalog changed or a replica opened.
    fanout: Notify,
    /// Bumped after every catalog write (the storefront's search index follows it).
    catalog_written: tokio::sync::watch::Sender<u64>,
    fanout_chunk_bytes: usize,
    metrics: Arc<Metrics>,
}

impl Stores {
    pub async fn open(
        options: DbOptions,
        limits: ReplicaLimits,
        fanout_chunk_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, CloudError> {
        let catalog = StoreDb::open(
            options.config(options.data_dir.join("catalog.db")),
            MIGRATIONS,
        )
        .await?;
        Ok(Self {
            options,
            limits,
            replicas: Mutex::new(HashMap::new()),
            catalog,
            fanout: Notify::new(),
            catalog_written: tokio::sync::watch::Sender::new(0),
            fanout_chunk_bytes,
            metrics,
        })
    }

    /// The replica of `store_id`, opened (and created) on first use.
    pub async fn replica(&self, store_id: &str) -> Result<Arc<Replica>, CloudError> {
        validate_store_id(store_id)?;
        let mut replicas = self.replicas.lock().await;
        if let Some(replica) = replicas.get(store_id) {
            return Ok(replica.clone());
        }
        let path = self
            .options
            .data_dir
            .join("stores")
            .join(format!("{store_id}.db"));
        let db = StoreDb::open(self.options.config(path), MIGRATIONS).await?;
        let replica = Arc::new(Replica::new(store_id.to_owned(), db, self.limits).await?);
        replicas.insert(store_id.to_owned(), replica.clone());
        self.metrics.open_replicas.inc();
        drop(replicas);
        self.fanout.notify_one();
        Ok(replica)
    }

    /// The ids of the open replicas (every registered store is opened at start).
    pub async fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.replicas.lock().await.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The catalog database; write it through [`Stores::write_catalog`].
    pub fn catalog(&self) -> &StoreDb {
        &self.catalog
    }

    /// Writes the shared catalog and fans the change out to every store.
    pub async fn write_catalog<T, E, F>(&self, write: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<flashkart_sync::Error> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let result = self.catalog.write(write).await;
        self.fanout.notify_one();
        self.catalog_written.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    /// Changes after every catalog write.
    pub fn catalog_written(&self) -> tokio::sync::watch::Receiver<u64> {
        self.catalog_written.subscribe()
    }

    /// Merges catalog changes into every open replica whenever woken, until shut down.
    pub async fn run_fanout(&self, shutdown: CancellationToken) {
        loop {
            let replicas: Vec<Arc<Replica>> =
                self.replicas.lock().await.values().cloned().collect();
            for replica in replicas {
                match replica
                    .merge_catalog(&self.catalog, self.fanout_chunk_bytes)
                    .await
                {
                    Ok(0) => {}
                    Ok(merged) => {
                        self.metrics.catalog_fanout_changes.inc_by(merged as u64);
                        tracing::debug!(store = replica.store_id(), merged, "catalog fanned out");
                    }
                    Err(error) => {
                        tracing::error!(store = replica.store_id(), %error, "catalog fan-out");
                    }
                }
            }
            tokio::select! {
                () = self.fanout.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Closes every database (after the server stopped).
    pub async fn close(&self) -> Result<(), CloudError> {
        let replicas: Vec<Arc<Replica>> =
            self.replicas.lock().await.drain().map(|(_, r)| r).collect();
        for replica in replicas {
            replica.db().close().await?;
        }
        self.catalog.close().await?;
        Ok(())
    }
}
