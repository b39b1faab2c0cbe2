//! Keeps the search index current with the catalog. The catalog is a cr-sqlite database the
//! cloud alone writes, so its change log, read from a cursor saved with the index (in the same
//! transaction as the rows it indexed), says which products changed since: a restart, or a
//! write that happened while the feed was busy, is caught up from the cursor, and an empty
//! index starts from 0 (the whole catalog).

use std::collections::BTreeSet;

use flashkart_sync::packed_key::{self, KeyValue};
use flashkart_sync::schema::{Migration, Step};
use flashkart_sync::{StoreDb, change_log};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{IndexedProduct, SearchIndex, Storefront, StorefrontError};

pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "storefront feed cursor",
    steps: &[Step::Sql(
        "CREATE TABLE storefront_feed (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            -- the catalog's db_version up to which its products are indexed
            db_version INTEGER NOT NULL
        )",
    )],
}];

/// Catalog changes read per step (whole transactions).
const STEP_CHANGES: usize = 5_000;

/// Products indexed in one step after which the index is merged (a bulk load leaves many
/// small segments that slow every search).
const OPTIMIZE_AFTER: usize = 1_000;

impl Storefront {
    /// Indexes catalog changes whenever `written` changes, until shutdown.
    pub async fn run_feed(
        &self,
        catalog: StoreDb,
        mut written: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        loop {
            written.mark_unchanged();
            match self.catch_up(&catalog).await {
                Ok(0) => {}
                Ok(indexed) => tracing::info!(indexed, "storefront search index updated"),
                Err(error) => tracing::error!(%error, "storefront search index not updated"),
            }
            tokio::select! {
                changed = written.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Indexes every catalog change after the saved cursor; says how many products it
    /// (re)indexed.
    pub async fn catch_up(&self, catalog: &StoreDb) -> Result<usize, StorefrontError> {
        let mut indexed = 0;
        loop {
            let after: i64 = self
                .db
                .read(|conn| {
                    Ok::<_, StorefrontError>(
                        conn.prepare_cached("SELECT db_version FROM storefront_feed")?
                            .query_row([], |r| r.get(0))
                            .optional()?
                            .unwrap_or(0),
                    )
                })
                .await?;
            let site = catalog.site_id();
            let (products, up_to, more) = catalog
                .read(move |conn| changed_products(conn, &site, after))
                .await?;
            let Some(up_to) = up_to else {
                return Ok(indexed);
            };
            let count = products.len();
            self.db
                .write(move |conn| {
                    SearchIndex::upsert(conn, &products)?;
                    if count >= OPTIMIZE_AFTER {
                        SearchIndex::optimize(conn)?;
                    }
                    conn.prepare_cached(
                        "INSERT INTO storefront_feed (id, db_version) VALUES (1, ?1)
                         ON CONFLICT (id) DO UPDATE SET db_version = excluded.db_version",
                    )?
                    .execute([up_to])?;
                    Ok::<_, StorefrontError>(())
                })
                .await?;
            indexed += count;
            if !more {
                return Ok(indexed);
            }
        }
    }
}

/// The products the catalog changed after `after` (a renamed category re-indexes its
/// products), as the index sees them; the db_version read up to, if any change was read; and
/// whether more changes follow.
fn changed_products(
    conn: &Connection,
    site: &[u8; 16],
    after: i64,
) -> Result<(Vec<IndexedProduct>, Option<i64>, bool), StorefrontError> {
    let read = change_log::row_changes(conn, site, after, STEP_CHANGES)?;
    let up_to = read.changes.last().map(|c| c.db_version);
    let mut ids = BTreeSet::new();
    let mut categories = BTreeSet::new();
    for change in &read.changes {
        let key = match packed_key::decode(&change.pk).ok().as_deref() {
            Some([KeyValue::Text(key)]) => key.clone(),
            _ => continue,
        };
        match change.table.as_str() {
            "products" => {
                ids.insert(key);
            }
            "categories" => {
                categories.insert(key);
            }
            _ => {}
        }
    }
    for category in &categories {
        let in_category: Vec<String> = conn
            .prepare_cached("SELECT id FROM products WHERE category_id = ?1")?
            .query_map([category], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.extend(in_category);
    }
    let mut statement = conn.prepare_cached(
        "SELECT p.name, coalesce(c.name, p.category_id, ''), p.active
         FROM products p LEFT JOIN categories c ON c.id = p.category_id WHERE p.id = ?1",
    )?;
    let mut products = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<(String, String, bool)> = statement
            .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        // A product deleted from the catalog is indexed as inactive: taken out.
        let (name, category, active) = row.unwrap_or_default();
        products.push(IndexedProduct {
            id,
            name,
            category,
            active,
        });
    }
    Ok((products, up_to, read.more))
}
