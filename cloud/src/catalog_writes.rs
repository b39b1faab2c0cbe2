//! HQ's writes into the catalog (products, prices, GTINs), kept as data so that every instance
//! has them.
//!
//! With one instance a write goes straight into `catalog.db`, as it always did, and the
//! fan-out merges it into every replica. With several instances on PostgreSQL each instance
//! has a `catalog.db` of its own and fans it out only into the replicas it holds: a product
//! written at one instance must reach the others' catalogs too, or the stores they serve never
//! get it. So every catalog write is appended to one journal in PostgreSQL (`catalog_writes`,
//! numbered under a lock on its one head row, so entries commit in the order of their numbers)
//! and each instance applies to its `catalog.db` what it lacks: at once when it wrote the
//! entries, within [`POLL`] otherwise, and once at start before it serves.
//!
//! A product PUT checks that none of its GTINs belongs to another product. That check must see
//! every instance's writes, so it runs under the head row lock, after the writer has caught its
//! own `catalog.db` up to the head: writers take the lock one after another and each checks a
//! catalog holding everything committed before it, so of two PUTs giving one GTIN to two
//! products, at whichever instances, the second is refused. A refused PUT appends nothing.
//!
//! A `catalog.db`'s position in the journal is kept per file (its site id), so a new data
//! directory applies the whole journal, and moves only after the file committed what it
//! covers. Every write is an upsert of the same values, so an entry applied twice after a
//! crash changes nothing.

use std::sync::Arc;

use deadpool_postgres::GenericClient;
use flashkart_sync::cloud_writes::{self, GtinRow, PriceRow, ProductRow};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::postgres::{self, Postgres};
use crate::stores::Stores;

/// How often an instance looks for catalog entries other instances wrote.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Entries applied to `catalog.db` per transaction.
const STEP: i64 = 500;

const MIGRATIONS: &[postgres::Migration] = &[postgres::Migration {
    version: 1,
    name: "catalog write journal",
    sql: "
    -- The last entry number of the journal; its row lock orders appends and the GTIN check.
    CREATE TABLE catalog_write_head (
        one BOOLEAN PRIMARY KEY NOT NULL DEFAULT TRUE CHECK (one),
        last_seq BIGINT NOT NULL
    );
    INSERT INTO catalog_write_head (one, last_seq) VALUES (TRUE, 0);
    CREATE TABLE catalog_writes (
        seq BIGINT PRIMARY KEY NOT NULL,
        -- a CatalogWrite as JSON
        entry TEXT NOT NULL,
        written_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    -- How far each catalog.db (its site id) has applied the journal.
    CREATE TABLE catalog_write_cursors (
        catalog BYTEA PRIMARY KEY NOT NULL,
        seq BIGINT NOT NULL
    );
    ",
}];

/// One write into HQ's catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "write", rename_all = "snake_case")]
pub enum CatalogWrite {
    /// A product, every column replaced ([`ProductRow`]).
    Product {
        id: String,
        sku: String,
        name: String,
        category_id: Option<String>,
        unit: String,
        pack_size: i64,
        unit_weight_g: i64,
        plu: Option<String>,
        active: bool,
    },
    /// A product's price ([`PriceRow`]).
    Price {
        product_id: String,
        unit_price_minor: i64,
        currency: String,
    },
    /// A barcode of a product, moved to it if another product had it ([`GtinRow`]).
    Gtin {
        gtin: String,
        product_id: String,
        pack_qty: i64,
    },
}

impl CatalogWrite {
    /// Applies the write to a catalog (or a replica: the tables are the same).
    pub fn apply(&self, conn: &rusqlite::Connection) -> Result<(), flashkart_sync::Error> {
        match self {
            CatalogWrite::Product {
                id,
                sku,
                name,
                category_id,
                unit,
                pack_size,
                unit_weight_g,
                plu,
                active,
            } => cloud_writes::upsert_product(
                conn,
                &ProductRow {
                    id,
                    sku,
                    name,
                    category_id: category_id.as_deref(),
                    unit,
                    pack_size: *pack_size,
                    unit_weight_g: *unit_weight_g,
                    plu: plu.as_deref(),
                    active: *active,
                },
            ),
            CatalogWrite::Price {
                product_id,
                unit_price_minor,
                currency,
            } => cloud_writes::upsert_price(
                conn,
                &PriceRow {
                    product_id,
                    unit_price_minor: *unit_price_minor,
                    currency,
                },
            ),
            CatalogWrite::Gtin {
                gtin,
                product_id,
                pack_qty,
            } => cloud_writes::upsert_gtin(
                conn,
                &GtinRow {
                    gtin,
                    product_id,
                    pack_qty: *pack_qty,
                },
            ),
        }
    }
}

/// Why [`CatalogWrites::put_product`] wrote nothing.
#[derive(Debug)]
pub enum PutProductError {
    /// `gtin` belongs to `owner`, another product.
    GtinTaken {
        gtin: String,
        owner: String,
    },
    Failed(CloudError),
}

impl From<CloudError> for PutProductError {
    fn from(error: CloudError) -> Self {
        Self::Failed(error)
    }
}

impl From<flashkart_sync::Error> for PutProductError {
    fn from(error: flashkart_sync::Error) -> Self {
        Self::Failed(error.into())
    }
}

impl From<tokio_postgres::Error> for PutProductError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Failed(error.into())
    }
}

/// Makes HQ's catalog writes, directly or through the journal.
#[derive(Debug)]
pub struct CatalogWrites {
    stores: Arc<Stores>,
    shared: Option<Shared>,
}

/// The journal and what this instance's `catalog.db` has applied of it.
#[derive(Debug)]
struct Shared {
    pg: Postgres,
    /// The journal position `catalog.db` has applied (known once read or written), behind a
    /// lock held while applying and through a whole PUT, so catch-ups do not interleave and a
    /// PUT's check sees a catalog nothing else is moving.
    applied: tokio::sync::Mutex<Option<i64>>,
}

impl CatalogWrites {
    /// Writes straight into `catalog.db`: one instance.
    pub fn direct(stores: Arc<Stores>) -> Self {
        Self {
            stores,
            shared: None,
        }
    }

    /// Writes through the journal in PostgreSQL (its tables migrated first): several
    /// instances. `catalog.db` is caught up before this returns, so an instance serves the
    /// catalog every instance wrote.
    pub async fn journaled(stores: Arc<Stores>, pg: Postgres) -> Result<Self, CloudError> {
        pg.migrate("catalog_writes", MIGRATIONS).await?;
        let writes = Self {
            stores,
            shared: Some(Shared {
                pg,
                applied: tokio::sync::Mutex::new(None),
            }),
        };
        let applied = writes.catch_up().await?;
        if applied > 0 {
            tracing::info!(applied, "catalog caught up with the journal");
        }
        Ok(writes)
    }

    /// Writes one product's rows (`writes`: its product, price and GTIN entries), all or none,
    /// refusing if any of its GTINs belongs to another product. With the journal the writes
    /// are durable when this returns and in this instance's `catalog.db` (unless applying them
    /// failed, which the poll retries); other instances apply them within [`POLL`].
    pub async fn put_product(&self, writes: Vec<CatalogWrite>) -> Result<(), PutProductError> {
        let Some(shared) = &self.shared else {
            return self
                .stores
                .write_catalog(move |conn| -> Result<(), PutProductError> {
                    // Checked inside the write, so a concurrent PUT cannot slip the same GTIN
                    // in between; an error rolls the whole write back.
                    check_gtins(conn, &writes)?;
                    writes.iter().try_for_each(|write| write.apply(conn))?;
                    Ok(())
                })
                .await;
        };
        let entries = writes
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CloudError::Postgres(format!("catalog write: {e}")))?;
        let count = i64::try_from(entries.len())
            .map_err(|_| CloudError::Postgres("too many catalog writes at once".into()))?;
        let mut position = shared.applied.lock().await;
        {
            let mut client = shared.pg.client().await?;
            let tx = client.transaction().await?;
            // Locks the head until the commit: every entry up to it is committed, and the
            // next writer checks after these entries are in the journal.
            let head: i64 = tx
                .query_one(
                    "SELECT last_seq FROM catalog_write_head WHERE one FOR UPDATE",
                    &[],
                )
                .await?
                .get(0);
            self.apply_journal(&tx, &mut position).await?;
            if position.is_none_or(|at| at < head) {
                return Err(CloudError::Postgres(format!(
                    "the catalog journal ends before its head {head}"
                ))
                .into());
            }
            let checked = writes.clone();
            self.stores
                .catalog()
                .read(move |conn| -> Result<(), PutProductError> { check_gtins(conn, &checked) })
                .await?;
            for (n, entry) in (head + 1..).zip(&entries) {
                tx.execute(
                    "INSERT INTO catalog_writes (seq, entry) VALUES ($1, $2)",
                    &[&n, entry],
                )
                .await?;
            }
            tx.execute(
                "UPDATE catalog_write_head SET last_seq = $1 WHERE one",
                &[&(head + count)],
            )
            .await?;
            tx.commit().await?;
        }
        // Committed: the writes are made whatever happens next. Applying them here is only
        // the fast path; the poll retries what fails.
        let applied = async {
            let client = shared.pg.client().await?;
            self.apply_journal(&client, &mut position).await
        };
        if let Err(error) = applied.await {
            tracing::warn!(%error, "catalog writes journaled, not applied here yet");
        }
        Ok(())
    }

    /// Applies what the journal has beyond this instance's `catalog.db`; how many entries.
    /// Nothing to do without the journal.
    pub async fn catch_up(&self) -> Result<usize, CloudError> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        let mut position = shared.applied.lock().await;
        let client = shared.pg.client().await?;
        self.apply_journal(&client, &mut position).await
    }

    /// Applies the entries after `position` (read from the cursor when not known yet) to
    /// `catalog.db`, through [`Stores::write_catalog`] so the fan-out follows, moving the
    /// cursor behind each step; how many entries.
    async fn apply_journal<C: GenericClient>(
        &self,
        client: &C,
        position: &mut Option<i64>,
    ) -> Result<usize, CloudError> {
        let site = self.stores.catalog().site_id();
        let mut at = match *position {
            Some(at) => at,
            None => client
                .query_opt(
                    "SELECT seq FROM catalog_write_cursors WHERE catalog = $1",
                    &[&site.as_slice()],
                )
                .await?
                .map_or(0, |row| row.get(0)),
        };
        *position = Some(at);
        let mut applied = 0;
        loop {
            let rows = client
                .query(
                    "SELECT seq, entry FROM catalog_writes WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&at, &STEP],
                )
                .await?;
            let Some(last) = rows.last().map(|row| row.get::<_, i64>(0)) else {
                return Ok(applied);
            };
            let writes = rows
                .iter()
                .map(|row| serde_json::from_str::<CatalogWrite>(row.get(1)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    CloudError::Postgres(format!("unreadable catalog journal entry: {e}"))
                })?;
            let count = writes.len();
            self.stores
                .write_catalog(move |conn| -> Result<(), CloudError> {
                    writes.iter().try_for_each(|write| write.apply(conn))?;
                    Ok(())
                })
                .await?;
            client
                .execute(
                    "INSERT INTO catalog_write_cursors (catalog, seq) VALUES ($1, $2)
                     ON CONFLICT (catalog) DO UPDATE SET seq = excluded.seq
                     WHERE excluded.seq > catalog_write_cursors.seq",
                    &[&site.as_slice(), &last],
                )
                .await?;
            at = last;
            *position = Some(at);
            applied += count;
        }
    }

    /// Until shutdown, every [`POLL`]: applies entries other instances wrote. Returns at once
    /// without the journal.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(shared) = &self.shared else {
            return;
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.cancelled() => return,
            }
            let head: i64 = match shared.pg.client().await {
                Ok(client) => match client
                    .query_one("SELECT last_seq FROM catalog_write_head WHERE one", &[])
                    .await
                {
                    Ok(row) => row.get(0),
                    Err(error) => {
                        tracing::warn!(error = %CloudError::from(error), "reading the catalog journal head");
                        continue;
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "reading the catalog journal head");
                    continue;
                }
            };
            // A PUT or a catch-up under way holds the lock: it is applying already.
            let Ok(mut position) = shared.applied.try_lock() else {
                continue;
            };
            if position.is_some_and(|at| at >= head) {
                continue;
            }
            let applied = async {
                let client = shared.pg.client().await?;
                self.apply_journal(&client, &mut position).await
            };
            match applied.await {
                Ok(0) => {}
                Ok(applied) => tracing::debug!(applied, "catalog journal applied"),
                Err(error) => tracing::warn!(%error, "applying the catalog journal"),
            }
        }
    }
}

/// Refuses `writes` if one of their GTINs belongs to a product other than the one it is
/// written for.
fn check_gtins(
    conn: &rusqlite::Connection,
    writes: &[CatalogWrite],
) -> Result<(), PutProductError> {
    for write in writes {
        let CatalogWrite::Gtin {
            gtin, product_id, ..
        } = write
        else {
            continue;
        };
        let owner: Option<String> = conn
            .prepare_cached(
                "SELECT product_id FROM product_gtins WHERE gtin = ?1 AND product_id <> ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(rusqlite::params![gtin, product_id], |r| r.get(0))
                    .optional()
            })
            .map_err(flashkart_sync::Error::from)?;
        if let Some(owner) = owner {
            return Err(PutProductError::GtinTaken {
                gtin: gtin.clone(),
                owner,
            });
        }
    }
    Ok(())
}
