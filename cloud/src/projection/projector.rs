//! The projector: follows each dirty store's replica from the read model's durable cursors,
//! so a push that was cut short or a crash between commit and projection loses nothing.
//!
//! In `readmodel.db` a cursor is per store and origin. In PostgreSQL, which every instance
//! shares, it is also per replica (the replica's own site id): each instance keeps its own
//! replica file of a store, and a db_version in one says nothing about another. A store whose
//! lease moves is projected again from the start of the new replica, which folding by keys
//! makes harmless.

use std::collections::BTreeMap;
use std::sync::Arc;

use flashkart_sync::change_log;
use rusqlite::{Connection, params};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::CloudError;
use crate::stores::Stores;

use super::fold::{fold, fold_postgres};
use super::rows::read_rows;
use super::{Backend, FOLLOWED, Projection, ShortReport, Touched};

/// Changes read from a replica per projection step (whole transactions; a bigger one is read
/// whole).
const STEP_CHANGES: usize = 5_000;

impl Projection {
    /// Catches up with every dirty store until shutdown, reporting orders with short lines on
    /// `shorts` (waiting for room there: the reports are not dropped).
    pub async fn run(
        &self,
        stores: Arc<Stores>,
        shorts: mpsc::Sender<ShortReport>,
        shutdown: CancellationToken,
    ) {
        loop {
            let dirty = self.dirty.take();
            if dirty.is_empty() {
                tokio::select! {
                    () = self.dirty.wake.notified() => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            for store_id in dirty {
                loop {
                    let step = tokio::select! {
                        step = self.project_step(&stores, &store_id) => step,
                        () = shutdown.cancelled() => return,
                    };
                    match step {
                        Ok((reports, more)) => {
                            for report in reports {
                                tokio::select! {
                                    _ = shorts.send(report) => {}
                                    () = shutdown.cancelled() => return,
                                }
                            }
                            self.projected.send_modify(|n| *n += 1);
                            if !more {
                                break;
                            }
                        }
                        Err(error) => {
                            // Keep the store for the next round; the cursor has not moved.
                            tracing::error!(store = %store_id, %error, "projection failed");
                            self.dirty.mark(&store_id);
                            tokio::select! {
                                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                                () = shutdown.cancelled() => return,
                            }
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Projects the next step of `store_id`'s changes after the read model's cursors; says
    /// whether more are waiting.
    async fn project_step(
        &self,
        stores: &Stores,
        store_id: &str,
    ) -> Result<(Vec<ShortReport>, bool), CloudError> {
        let replica = stores.replica(store_id).await?;
        let own_site = replica.db().site_id();
        let cursors = match self.backend() {
            Backend::Sqlite(db) => {
                let store_id = store_id.to_owned();
                db.read(move |conn| load_cursors(conn, &store_id)).await?
            }
            Backend::Postgres(pg) => {
                pg_load_cursors(&**pg.client().await?, store_id, &own_site).await?
            }
        };
        // One read, so the rows folded are the ones the cursors were advanced over, from one
        // snapshot and one trip to the blocking pool.
        let (rows, cursors, more) = {
            let store_id = store_id.to_owned();
            let now = crate::clock::now();
            replica
                .db()
                .read(move |conn| {
                    let (touched, cursors, more) = touched_since(conn, &own_site, cursors)?;
                    let rows = read_rows(conn, &store_id, &touched, now)?;
                    Ok::<_, flashkart_sync::Error>((rows, cursors, more))
                })
                .await?
        };
        // The fold and the cursors it advances commit together, or neither does.
        let folded = match self.backend() {
            Backend::Sqlite(db) => {
                let store_id = store_id.to_owned();
                db.write(move |conn| {
                    let folded = fold(conn, &store_id, &rows, crate::clock::now())?;
                    save_cursors(conn, &store_id, &cursors)?;
                    Ok::<_, flashkart_sync::Error>(folded)
                })
                .await?
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                let folded = fold_postgres(&tx, store_id, &rows, crate::clock::now()).await?;
                pg_save_cursors(&tx, store_id, &own_site, &cursors).await?;
                tx.commit().await?;
                folded
            }
        };
        if folded.enqueued {
            crate::notify::wake();
        }
        // After the commit, so a fold that rolled back (and is folded again) is not logged.
        for (order_id, from, to, actor) in &folded.events {
            let _order = crate::intake::order_span(order_id, store_id).entered();
            tracing::info!(
                from = from.as_deref().unwrap_or(""),
                to = %to,
                actor = %actor,
                "store event projected"
            );
        }
        Ok((folded.reports, more))
    }
}

/// The read model's cursors for a store: origin -> db_version projected.
fn load_cursors(
    conn: &Connection,
    store_id: &str,
) -> Result<BTreeMap<Vec<u8>, i64>, flashkart_sync::Error> {
    let rows = conn
        .prepare_cached("SELECT origin, db_version FROM rm_cursors WHERE store_id = ?1")?
        .query_map([store_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn save_cursors(
    conn: &Connection,
    store_id: &str,
    cursors: &BTreeMap<Vec<u8>, i64>,
) -> Result<(), flashkart_sync::Error> {
    for (origin, db_version) in cursors {
        conn.prepare_cached(
            "INSERT INTO rm_cursors (store_id, origin, db_version) VALUES (?1, ?2, ?3)
             ON CONFLICT (store_id, origin) DO UPDATE SET db_version = excluded.db_version
             WHERE excluded.db_version > rm_cursors.db_version",
        )?
        .execute(params![store_id, origin, db_version])?;
    }
    Ok(())
}

/// [`load_cursors`] from PostgreSQL: the cursors of `store_id` read from the replica `replica`
/// (its site id) only.
async fn pg_load_cursors(
    client: &impl tokio_postgres::GenericClient,
    store_id: &str,
    replica: &[u8; 16],
) -> Result<BTreeMap<Vec<u8>, i64>, CloudError> {
    Ok(client
        .query(
            "SELECT origin, db_version FROM rm_cursors WHERE store_id = $1 AND replica = $2",
            &[&store_id, &replica.as_slice()],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// [`save_cursors`] in PostgreSQL, in the fold's transaction `tx`.
async fn pg_save_cursors(
    tx: &tokio_postgres::Transaction<'_>,
    store_id: &str,
    replica: &[u8; 16],
    cursors: &BTreeMap<Vec<u8>, i64>,
) -> Result<(), CloudError> {
    for (origin, db_version) in cursors {
        tx.execute(
            "INSERT INTO rm_cursors (store_id, replica, origin, db_version) VALUES ($1, $2, $3, $4)
             ON CONFLICT (store_id, replica, origin) DO UPDATE SET db_version = excluded.db_version
             WHERE excluded.db_version > rm_cursors.db_version",
            &[&store_id, &replica.as_slice(), origin, db_version],
        )
        .await?;
    }
    Ok(())
}

/// The followed rows changed in a replica after `cursors`, by every origin but the replica's
/// own (the cloud writes none of the followed tables), at most about [`STEP_CHANGES`] changes
/// (whole transactions); the cursors after them, and whether the step was cut short.
#[allow(clippy::type_complexity)]
fn touched_since(
    conn: &Connection,
    own_site: &[u8; 16],
    mut cursors: BTreeMap<Vec<u8>, i64>,
) -> Result<(Touched, BTreeMap<Vec<u8>, i64>, bool), flashkart_sync::Error> {
    let mut touched = Touched::new();
    let mut taken = 0_usize;
    let mut more = false;
    for origin in change_log::origins(conn)? {
        if &origin == own_site {
            continue;
        }
        if taken >= STEP_CHANGES {
            more = true;
            break;
        }
        let after = cursors.get(origin.as_slice()).copied().unwrap_or(0);
        let read = change_log::row_changes(conn, &origin, after, STEP_CHANGES - taken)?;
        more |= read.more;
        taken += read.changes.len();
        if let Some(last) = read.changes.last() {
            cursors.insert(origin.to_vec(), last.db_version);
        }
        for change in read.changes {
            if let Some(followed) = FOLLOWED.iter().find(|t| **t == change.table) {
                touched.entry(followed).or_default().insert(change.pk);
            }
        }
    }
    Ok((touched, cursors, more))
}
