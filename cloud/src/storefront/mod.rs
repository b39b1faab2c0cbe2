//! The storefront: what the customer web app asks the cloud for while a customer shops.
//!
//! Customers type queries with typos and half words ("banan", "choclate milk", "orgnic eggs")
//! and expect the product they meant among the whole catalog, as they type (`search`). The
//! search index lives in its own plain SQLite database, `<data_dir>/storefront.db` (not a
//! cr-sqlite replica: it is derived from the catalog, never synced, and rebuilt from it at any
//! time), kept current by `feed` from the catalog's own change log. What a store can deliver
//! now (its stock in the read model, the fee and ETA routing would give) is put together per
//! request by the API (`api/storefront.rs`).

mod feed;
pub mod search;

use flashkart_sync::{StoreConfig, StoreDb};

pub use search::{Hit, IndexedProduct, SearchError, SearchIndex};

use crate::CloudError;

/// A failed storefront read or index update.
#[derive(Debug, thiserror::Error)]
pub enum StorefrontError {
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Store(#[from] flashkart_sync::Error),
    #[error("storefront database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The search index database.
#[derive(Debug, Clone)]
pub struct Storefront {
    db: StoreDb,
}

impl Storefront {
    pub async fn open(mut config: StoreConfig) -> Result<Self, CloudError> {
        config.readers = 4;
        let db = StoreDb::open(config, feed::MIGRATIONS).await?;
        db.write(|conn| SearchIndex::migrate(conn).map_err(StorefrontError::from))
            .await
            .map_err(|e| CloudError::Task(format!("storefront index: {e}")))?;
        Ok(Self { db })
    }

    /// The products matching `query`, best first, at most `limit`.
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>, StorefrontError> {
        let query = query.to_owned();
        self.db
            .read(move |conn| {
                SearchIndex::search(conn, &query, limit).map_err(StorefrontError::from)
            })
            .await
    }

    pub async fn close(&self) -> Result<(), CloudError> {
        Ok(self.db.close().await?)
    }
}
