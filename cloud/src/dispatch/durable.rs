//! Live dispatch's offer book as rows in the read model (`rm_dispatch_pending`,
//! `rm_dispatch_refusals`), so that a restarted cloud carries on where it stopped: an offer a
//! rider may still accept stays pending, and a rider who declined an order is never offered it
//! again.
//!
//! Only what cannot be derived is stored. What an offer is (its orders, when it was made and
//! when it runs out) is its `rm_offers` rows; whether it was answered is `rm_replies`; which
//! riders are busy follows from their accepted, unfinished orders. So there is no cursor into
//! the replies either: a reply counts for the dispatcher while its offer is still pending, and
//! handling it deletes the pending rows in the same transaction, so it is handled once however
//! often the cloud restarts.
//!
//! The rows are in whichever engine holds the read model ([`Backend`]). For SQLite they are
//! plain functions over a connection, run inside the read model's write (one transaction) or
//! read closures, off the async runtime; each has a `pg_` twin over a PostgreSQL client or
//! transaction that gives the same rows, and [`Rows`] picks the engine, so that what is one
//! write closure in SQLite is one transaction in PostgreSQL. The caller changes its in-memory
//! book only after the rows are committed, so an offer is in the book iff its rows exist.
//!
//! With PostgreSQL several instances share these rows, and a store's are written only by the
//! instance holding its lease: the instance that gains a store loads them ([`Rows::load`] for
//! that store) and carries on from them, the one that lost it just forgets its book.

use std::collections::BTreeSet;

use rusqlite::{Connection, params};
use tokio_postgres::GenericClient;

use crate::CloudError;
use crate::projection::Backend;

/// The tables (read model migration 8).
pub const SCHEMA: &str = "
    -- Offers waiting on an answer, one row per order of the trip; deleted when the offer is
    -- answered, expires or is withdrawn. A rider has at most one pending offer per store.
    CREATE TABLE rm_dispatch_pending (
        store_id TEXT NOT NULL,
        rider_id TEXT NOT NULL,
        -- drop-off sequence within the trip
        seq INTEGER NOT NULL,
        -- the order's offer (rm_offers: the order, offered_at, expires_at)
        assignment_id TEXT NOT NULL UNIQUE,
        PRIMARY KEY (store_id, rider_id, seq)
    ) WITHOUT ROWID;
    -- Riders who declined an order or let its offer expire: never offered it again. Deleted
    -- once the order leaves the dispatcher's pool (taken, delivered, cancelled).
    CREATE TABLE rm_dispatch_refusals (
        order_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        rider_id TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (order_id, store_id, rider_id)
    ) WITHOUT ROWID;
";

/// One order of a pending offer, with its offer's times as `rm_offers` has them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingRow {
    pub store_id: String,
    pub rider_id: String,
    pub order_id: String,
    pub offered_at: String,
    pub expires_at: String,
}

/// A rider barred from an order at a store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RefusalRow {
    pub store_id: String,
    pub order_id: String,
    pub rider_id: String,
}

/// Everything the offer books held when the cloud last stopped.
#[derive(Debug, Default)]
pub(crate) struct Saved {
    /// In store, rider and drop-off order.
    pub pending: Vec<PendingRow>,
    pub refusals: Vec<RefusalRow>,
}

/// A store's answer to a pending offer: the rider's reply as recorded there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub store_id: String,
    pub rider_id: String,
    /// `accepted`, `declined` or `expired` (the projection lets nothing else in).
    pub reply: String,
}

/// One new offer's rows: one `(assignment id, order id)` per order, in drop-off order.
#[derive(Debug, Clone)]
pub(crate) struct NewOffer {
    pub store_id: String,
    pub rider_id: String,
    pub rows: Vec<(String, String)>,
    pub offered_at: String,
    pub expires_at: String,
}

/// An offer leaving the book.
#[derive(Debug, Clone)]
pub(crate) struct Closed {
    pub store_id: String,
    pub rider_id: String,
    /// The orders the rider is barred from (declined or expired); empty when accepted or
    /// withdrawn.
    pub barred: Vec<String>,
}

impl Saved {
    /// Keeps the rows of `stores` only.
    fn retain(&mut self, stores: &BTreeSet<String>) {
        self.pending.retain(|row| stores.contains(&row.store_id));
        self.refusals.retain(|row| stores.contains(&row.store_id));
    }
}

/// The dispatcher's rows on the read model's engine: each method is one read, or one
/// transaction, on either.
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    backend: Backend,
}

impl Rows {
    pub fn new(backend: Backend) -> Self {
        Self { backend }
    }

    /// What the books held, of every store or of `stores` only.
    pub async fn load(&self, stores: Option<&BTreeSet<String>>) -> Result<Saved, CloudError> {
        let mut saved = match &self.backend {
            Backend::Sqlite(db) => db.read(load).await?,
            Backend::Postgres(pg) => {
                let only: Option<Vec<String>> = stores.map(|s| s.iter().cloned().collect());
                pg_load(&**pg.client().await?, only.as_ref()).await?
            }
        };
        if let Some(stores) = stores {
            saved.retain(stores);
        }
        Ok(saved)
    }

    /// See [`answers`].
    pub async fn answers(&self) -> Result<Vec<Answer>, CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db.read(answers).await?),
            Backend::Postgres(pg) => pg_answers(&**pg.client().await?).await,
        }
    }

    /// See [`taken_elsewhere`].
    pub async fn taken_elsewhere(&self) -> Result<Vec<(String, String)>, CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db.read(taken_elsewhere).await?),
            Backend::Postgres(pg) => pg_taken_elsewhere(&**pg.client().await?).await,
        }
    }

    /// See [`record_offer`]; one transaction.
    pub async fn record_offer(&self, offer: &NewOffer) -> Result<(), CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let offer = offer.clone();
                Ok(db.write(move |conn| record_offer(conn, &offer)).await?)
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                pg_record_offer(&tx, offer).await?;
                Ok(tx.commit().await?)
            }
        }
    }

    /// See [`unrecord_offer`]; one transaction.
    pub async fn unrecord_offer(&self, offer: &NewOffer) -> Result<(), CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let offer = offer.clone();
                Ok(db.write(move |conn| unrecord_offer(conn, &offer)).await?)
            }
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                pg_unrecord_offer(&tx, offer).await?;
                Ok(tx.commit().await?)
            }
        }
    }

    /// See [`close_offers`]; one transaction.
    pub async fn close_offers(&self, closed: Vec<Closed>, at: String) -> Result<(), CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .write(move |conn| close_offers(conn, &closed, &at))
                .await?),
            Backend::Postgres(pg) => {
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                pg_close_offers(&tx, &closed, &at).await?;
                Ok(tx.commit().await?)
            }
        }
    }

    /// See [`forget_orders`]; one transaction. With `stores`, only their refusals go: the
    /// other stores' rows are their holders' (who see the same orders leave the pool).
    pub async fn forget_orders(
        &self,
        orders: Vec<String>,
        stores: Option<&BTreeSet<String>>,
    ) -> Result<(), CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => match stores {
                None => Ok(db.write(move |conn| forget_orders(conn, &orders)).await?),
                Some(stores) => {
                    let stores: Vec<String> = stores.iter().cloned().collect();
                    Ok(db
                        .write(move |conn| forget_orders_of(conn, &orders, &stores))
                        .await?)
                }
            },
            Backend::Postgres(pg) => {
                let only: Option<Vec<String>> = stores.map(|s| s.iter().cloned().collect());
                let mut client = pg.client().await?;
                let tx = client.transaction().await?;
                pg_forget_orders(&tx, &orders, only.as_ref()).await?;
                Ok(tx.commit().await?)
            }
        }
    }
}

pub(crate) fn load(conn: &Connection) -> Result<Saved, flashkart_sync::Error> {
    let pending = conn
        .prepare_cached(
            "SELECT p.store_id, p.rider_id, o.order_id, o.offered_at, o.expires_at
             FROM rm_dispatch_pending p JOIN rm_offers o ON o.assignment_id = p.assignment_id
             ORDER BY p.store_id, p.rider_id, p.seq",
        )?
        .query_map([], |r| {
            Ok(PendingRow {
                store_id: r.get(0)?,
                rider_id: r.get(1)?,
                order_id: r.get(2)?,
                offered_at: r.get(3)?,
                expires_at: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let refusals = conn
        .prepare_cached("SELECT store_id, order_id, rider_id FROM rm_dispatch_refusals")?
        .query_map([], |r| {
            Ok(RefusalRow {
                store_id: r.get(0)?,
                order_id: r.get(1)?,
                rider_id: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Saved { pending, refusals })
}

/// The first reply (in the order the read model took them in) to each pending offer.
pub(crate) fn answers(conn: &Connection) -> Result<Vec<Answer>, flashkart_sync::Error> {
    let rows: Vec<Answer> = conn
        .prepare_cached(
            "SELECT p.store_id, p.rider_id, r.reply FROM rm_dispatch_pending p
             JOIN rm_replies r ON r.assignment_id = p.assignment_id
             ORDER BY r.rowid",
        )?
        .query_map([], |r| {
            Ok(Answer {
                store_id: r.get(0)?,
                rider_id: r.get(1)?,
                reply: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(first_per_offer(rows))
}

/// Of replies in the order they were taken in, each pending offer's first.
fn first_per_offer(rows: Vec<Answer>) -> Vec<Answer> {
    let mut first: Vec<Answer> = Vec::with_capacity(rows.len());
    for answer in rows {
        if !first
            .iter()
            .any(|a| a.store_id == answer.store_id && a.rider_id == answer.rider_id)
        {
            first.push(answer);
        }
    }
    first
}

/// Riders whose pending offer holds an order another rider's offer took: the store records
/// the first acceptance of an order and refuses later ones as `taken`, and an acceptance can
/// reach the cloud after the cloud saw its offer expire and cascaded the order. Offers with a
/// reply of their own are left to [`answers`]. Each (store, rider) once.
pub(crate) fn taken_elsewhere(
    conn: &Connection,
) -> Result<Vec<(String, String)>, flashkart_sync::Error> {
    Ok(conn
        .prepare_cached(
            "SELECT DISTINCT p.store_id, p.rider_id FROM rm_dispatch_pending p
             JOIN rm_offers o ON o.assignment_id = p.assignment_id
             WHERE NOT EXISTS (SELECT 1 FROM rm_dispatch_pending q
                               JOIN rm_replies qr ON qr.assignment_id = q.assignment_id
                               WHERE q.store_id = p.store_id AND q.rider_id = p.rider_id)
               AND EXISTS (SELECT 1 FROM rm_offers f
                           JOIN rm_replies fr ON fr.assignment_id = f.assignment_id
                           WHERE f.order_id = o.order_id AND f.assignment_id <> o.assignment_id
                             AND fr.reply = 'accepted')
             ORDER BY p.store_id, p.rider_id",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

/// Records a new offer: its `rm_offers` rows and its pending rows, replacing the rider's
/// previous pending offer at that store (as the book does).
pub(crate) fn record_offer(
    conn: &Connection,
    offer: &NewOffer,
) -> Result<(), flashkart_sync::Error> {
    conn.prepare_cached("DELETE FROM rm_dispatch_pending WHERE store_id = ?1 AND rider_id = ?2")?
        .execute(params![offer.store_id, offer.rider_id])?;
    for (seq, (assignment_id, order_id)) in offer.rows.iter().enumerate() {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO rm_offers
                (assignment_id, store_id, order_id, rider_id, offered_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            assignment_id,
            offer.store_id,
            order_id,
            offer.rider_id,
            offer.offered_at,
            offer.expires_at
        ])?;
        conn.prepare_cached(
            "INSERT INTO rm_dispatch_pending (store_id, rider_id, seq, assignment_id)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            offer.store_id,
            offer.rider_id,
            seq as i64,
            assignment_id
        ])?;
    }
    Ok(())
}

/// Takes back an offer that never reached the store (its replica write failed): the offer
/// is as if never made.
pub(crate) fn unrecord_offer(
    conn: &Connection,
    offer: &NewOffer,
) -> Result<(), flashkart_sync::Error> {
    for (assignment_id, _) in &offer.rows {
        conn.prepare_cached("DELETE FROM rm_dispatch_pending WHERE assignment_id = ?1")?
            .execute([assignment_id])?;
        conn.prepare_cached("DELETE FROM rm_offers WHERE assignment_id = ?1")?
            .execute([assignment_id])?;
    }
    Ok(())
}

/// Offers leave the book: their pending rows go, and refusals bar their riders.
pub(crate) fn close_offers(
    conn: &Connection,
    closed: &[Closed],
    at: &str,
) -> Result<(), flashkart_sync::Error> {
    for offer in closed {
        conn.prepare_cached(
            "DELETE FROM rm_dispatch_pending WHERE store_id = ?1 AND rider_id = ?2",
        )?
        .execute(params![offer.store_id, offer.rider_id])?;
        for order_id in &offer.barred {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO rm_dispatch_refusals (order_id, store_id, rider_id, at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![order_id, offer.store_id, offer.rider_id, at])?;
        }
    }
    Ok(())
}

/// Orders that left the pool (taken, delivered, cancelled): their refusals no longer matter.
pub(crate) fn forget_orders(
    conn: &Connection,
    orders: &[String],
) -> Result<(), flashkart_sync::Error> {
    for order_id in orders {
        conn.prepare_cached("DELETE FROM rm_dispatch_refusals WHERE order_id = ?1")?
            .execute([order_id])?;
    }
    Ok(())
}

/// [`forget_orders`] for the refusals at `stores` only.
pub(crate) fn forget_orders_of(
    conn: &Connection,
    orders: &[String],
    stores: &[String],
) -> Result<(), flashkart_sync::Error> {
    for order_id in orders {
        for store_id in stores {
            conn.prepare_cached(
                "DELETE FROM rm_dispatch_refusals WHERE order_id = ?1 AND store_id = ?2",
            )?
            .execute([order_id, store_id])?;
        }
    }
    Ok(())
}

/// [`load`] on PostgreSQL, of every store or of `stores` only.
pub(crate) async fn pg_load(
    client: &impl GenericClient,
    stores: Option<&Vec<String>>,
) -> Result<Saved, CloudError> {
    // Ordered as SQLite orders text (bytewise); within an offer by `seq` either way.
    let pending = client
        .query(
            "SELECT p.store_id, p.rider_id, o.order_id, o.offered_at, o.expires_at
             FROM rm_dispatch_pending p JOIN rm_offers o ON o.assignment_id = p.assignment_id
             WHERE $1::TEXT[] IS NULL OR p.store_id = ANY($1)
             ORDER BY p.store_id COLLATE \"C\", p.rider_id COLLATE \"C\", p.seq",
            &[&stores],
        )
        .await?
        .iter()
        .map(|r| PendingRow {
            store_id: r.get(0),
            rider_id: r.get(1),
            order_id: r.get(2),
            offered_at: r.get(3),
            expires_at: r.get(4),
        })
        .collect();
    let refusals = client
        .query(
            "SELECT store_id, order_id, rider_id FROM rm_dispatch_refusals
             WHERE $1::TEXT[] IS NULL OR store_id = ANY($1)",
            &[&stores],
        )
        .await?
        .iter()
        .map(|r| RefusalRow {
            store_id: r.get(0),
            order_id: r.get(1),
            rider_id: r.get(2),
        })
        .collect();
    Ok(Saved { pending, refusals })
}

/// [`answers`] on PostgreSQL, where `rm_replies.seq` is the order SQLite's rowid gives.
pub(crate) async fn pg_answers(client: &impl GenericClient) -> Result<Vec<Answer>, CloudError> {
    let rows: Vec<Answer> = client
        .query(
            "SELECT p.store_id, p.rider_id, r.reply FROM rm_dispatch_pending p
             JOIN rm_replies r ON r.assignment_id = p.assignment_id
             ORDER BY r.seq",
            &[],
        )
        .await?
        .iter()
        .map(|r| Answer {
            store_id: r.get(0),
            rider_id: r.get(1),
            reply: r.get(2),
        })
        .collect();
    Ok(first_per_offer(rows))
}

/// [`taken_elsewhere`] on PostgreSQL.
pub(crate) async fn pg_taken_elsewhere(
    client: &impl GenericClient,
) -> Result<Vec<(String, String)>, CloudError> {
    // GROUP BY rather than DISTINCT, so that the order can be SQLite's (bytewise).
    Ok(client
        .query(
            "SELECT p.store_id, p.rider_id FROM rm_dispatch_pending p
             JOIN rm_offers o ON o.assignment_id = p.assignment_id
             WHERE NOT EXISTS (SELECT 1 FROM rm_dispatch_pending q
                               JOIN rm_replies qr ON qr.assignment_id = q.assignment_id
                               WHERE q.store_id = p.store_id AND q.rider_id = p.rider_id)
               AND EXISTS (SELECT 1 FROM rm_offers f
                           JOIN rm_replies fr ON fr.assignment_id = f.assignment_id
                           WHERE f.order_id = o.order_id AND f.assignment_id <> o.assignment_id
                             AND fr.reply = 'accepted')
             GROUP BY p.store_id, p.rider_id
             ORDER BY p.store_id COLLATE \"C\", p.rider_id COLLATE \"C\"",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// [`record_offer`] in the caller's PostgreSQL transaction.
pub(crate) async fn pg_record_offer(
    tx: &tokio_postgres::Transaction<'_>,
    offer: &NewOffer,
) -> Result<(), CloudError> {
    tx.execute(
        "DELETE FROM rm_dispatch_pending WHERE store_id = $1 AND rider_id = $2",
        &[&offer.store_id, &offer.rider_id],
    )
    .await?;
    let insert_offer = tx
        .prepare(
            "INSERT INTO rm_offers
                (assignment_id, store_id, order_id, rider_id, offered_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let insert_pending = tx
        .prepare(
            "INSERT INTO rm_dispatch_pending (store_id, rider_id, seq, assignment_id)
             VALUES ($1, $2, $3, $4)",
        )
        .await?;
    for (seq, (assignment_id, order_id)) in offer.rows.iter().enumerate() {
        tx.execute(
            &insert_offer,
            &[
                assignment_id,
                &offer.store_id,
                order_id,
                &offer.rider_id,
                &offer.offered_at,
                &offer.expires_at,
            ],
        )
        .await?;
        let seq = seq as i64;
        tx.execute(
            &insert_pending,
            &[&offer.store_id, &offer.rider_id, &seq, assignment_id],
        )
        .await?;
    }
    Ok(())
}

/// [`unrecord_offer`] in the caller's PostgreSQL transaction.
pub(crate) async fn pg_unrecord_offer(
    tx: &tokio_postgres::Transaction<'_>,
    offer: &NewOffer,
) -> Result<(), CloudError> {
    let ids: Vec<String> = offer.rows.iter().map(|(id, _)| id.clone()).collect();
    tx.execute(
        "DELETE FROM rm_dispatch_pending WHERE assignment_id = ANY($1)",
        &[&ids],
    )
    .await?;
    tx.execute(
        "DELETE FROM rm_offers WHERE assignment_id = ANY($1)",
        &[&ids],
    )
    .await?;
    Ok(())
}

/// [`close_offers`] in the caller's PostgreSQL transaction.
pub(crate) async fn pg_close_offers(
    tx: &tokio_postgres::Transaction<'_>,
    closed: &[Closed],
    at: &str,
) -> Result<(), CloudError> {
    for offer in closed {
        tx.execute(
            "DELETE FROM rm_dispatch_pending WHERE store_id = $1 AND rider_id = $2",
            &[&offer.store_id, &offer.rider_id],
        )
        .await?;
        if !offer.barred.is_empty() {
            tx.execute(
                "INSERT INTO rm_dispatch_refusals (order_id, store_id, rider_id, at)
                 SELECT order_id, $2::TEXT, $3::TEXT, $4::TEXT
                 FROM unnest($1::TEXT[]) AS barred (order_id)
                 ON CONFLICT DO NOTHING",
                &[&offer.barred, &offer.store_id, &offer.rider_id, &at],
            )
            .await?;
        }
    }
    Ok(())
}

/// [`forget_orders`] (with `stores`, [`forget_orders_of`]) in the caller's PostgreSQL
/// transaction.
pub(crate) async fn pg_forget_orders(
    tx: &tokio_postgres::Transaction<'_>,
    orders: &[String],
    stores: Option<&Vec<String>>,
) -> Result<(), CloudError> {
    tx.execute(
        "DELETE FROM rm_dispatch_refusals
         WHERE order_id = ANY($1) AND ($2::TEXT[] IS NULL OR store_id = ANY($2))",
        &[&orders, &stores],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(
            "CREATE TABLE rm_offers (assignment_id TEXT PRIMARY KEY NOT NULL, store_id TEXT NOT NULL,
                order_id TEXT NOT NULL, rider_id TEXT NOT NULL, offered_at TEXT NOT NULL,
                expires_at TEXT NOT NULL);
             CREATE TABLE rm_replies (assignment_id TEXT PRIMARY KEY NOT NULL, store_id TEXT NOT NULL,
                rider_id TEXT NOT NULL, reply TEXT NOT NULL, at TEXT NOT NULL);",
        )
        .expect("read model tables");
        conn.execute_batch(SCHEMA).expect("dispatch tables");
        conn
    }

    fn offer(rider: &str, rows: &[(&str, &str)]) -> NewOffer {
        NewOffer {
            store_id: "s1".into(),
            rider_id: rider.into(),
            rows: rows
                .iter()
                .map(|(a, o)| ((*a).to_owned(), (*o).to_owned()))
                .collect(),
            offered_at: "2026-01-01T00:00:00.000Z".into(),
            expires_at: "2026-01-01T00:01:00.000Z".into(),
        }
    }

    #[test]
    fn offers_answers_and_refusals_round_trip() {
        let conn = db();
        record_offer(&conn, &offer("near", &[("a1", "o1"), ("a2", "o2")])).expect("recorded");
        let saved = load(&conn).expect("loaded");
        assert_eq!(
            saved
                .pending
                .iter()
                .map(|p| p.order_id.as_str())
                .collect::<Vec<_>>(),
            ["o1", "o2"]
        );
        assert!(answers(&conn).expect("answers").is_empty());
        // Two replies to one offer: the first counts.
        conn.execute_batch(
            "INSERT INTO rm_replies VALUES ('a2', 's1', 'near', 'declined', 't');
             INSERT INTO rm_replies VALUES ('a1', 's1', 'near', 'accepted', 't');",
        )
        .expect("replies");
        let answered = answers(&conn).expect("answers");
        assert_eq!(answered.len(), 1);
        assert_eq!(answered[0].reply, "declined");
        let closed = Closed {
            store_id: "s1".into(),
            rider_id: "near".into(),
            barred: vec!["o1".into(), "o2".into()],
        };
        close_offers(&conn, &[closed], "t").expect("closed");
        // Handled once: with the pending rows gone, the replies no longer count.
        assert!(answers(&conn).expect("answers").is_empty());
        let saved = load(&conn).expect("loaded");
        assert!(saved.pending.is_empty());
        assert_eq!(saved.refusals.len(), 2);
        forget_orders(&conn, &["o1".into()]).expect("forgotten");
        assert_eq!(load(&conn).expect("loaded").refusals.len(), 1);
        // An offer that never reached the store leaves nothing behind.
        let unsent = offer("far", &[("a3", "o3")]);
        record_offer(&conn, &unsent).expect("recorded");
        unrecord_offer(&conn, &unsent).expect("unrecorded");
        assert!(load(&conn).expect("loaded").pending.is_empty());
    }

    #[test]
    fn a_stores_rows_are_loaded_and_forgotten_alone() {
        let conn = db();
        record_offer(&conn, &offer("near", &[("a1", "o1")])).expect("recorded");
        let mut elsewhere = offer("far", &[("b1", "o2")]);
        elsewhere.store_id = "s2".into();
        record_offer(&conn, &elsewhere).expect("recorded");
        let closed = [
            Closed {
                store_id: "s1".into(),
                rider_id: "near".into(),
                barred: vec!["o1".into()],
            },
            Closed {
                store_id: "s2".into(),
                rider_id: "far".into(),
                barred: vec!["o1".into()],
            },
        ];
        close_offers(&conn, &closed, "t").expect("closed");
        record_offer(&conn, &offer("near", &[("a3", "o3")])).expect("recorded");
        record_offer(&conn, &elsewhere).expect("recorded again");

        let mut saved = load(&conn).expect("loaded");
        saved.retain(&BTreeSet::from(["s1".to_owned()]));
        assert_eq!(
            saved
                .pending
                .iter()
                .map(|p| (p.store_id.as_str(), p.order_id.as_str()))
                .collect::<Vec<_>>(),
            [("s1", "o3")]
        );
        assert_eq!(
            saved.refusals,
            [RefusalRow {
                store_id: "s1".into(),
                order_id: "o1".into(),
                rider_id: "near".into(),
            }]
        );
        // Only the refusal at the store named goes; the other store's is its holder's.
        forget_orders_of(&conn, &["o1".into()], &["s1".into()]).expect("forgotten");
        let refusals = load(&conn).expect("loaded").refusals;
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].store_id, "s2");
    }

    #[test]
    fn an_offer_of_an_order_another_rider_accepted_is_found_once() {
        let conn = db();
        // "near"'s offer of o1 ended at the cloud (expired) and was cascaded to "far", whose
        // trip also holds o2; "spare" holds o3, which nobody took.
        conn.execute_batch("INSERT INTO rm_offers VALUES ('a1', 's1', 'o1', 'near', 't0', 't1');")
            .expect("the first offer");
        record_offer(&conn, &offer("far", &[("b1", "o1"), ("b2", "o2")])).expect("recorded");
        record_offer(&conn, &offer("spare", &[("c3", "o3")])).expect("recorded");
        assert!(taken_elsewhere(&conn).expect("query").is_empty());
        // Declined or expired elsewhere takes nothing.
        conn.execute_batch("INSERT INTO rm_replies VALUES ('a1', 's1', 'near', 'expired', 't');")
            .expect("reply");
        assert!(taken_elsewhere(&conn).expect("query").is_empty());
        conn.execute_batch("UPDATE rm_replies SET reply = 'accepted' WHERE assignment_id = 'a1';")
            .expect("reply");
        assert_eq!(
            taken_elsewhere(&conn).expect("query"),
            [("s1".to_owned(), "far".to_owned())]
        );
        // An offer answered itself is the answers' to handle, not withdrawn.
        conn.execute_batch("INSERT INTO rm_replies VALUES ('b2', 's1', 'far', 'accepted', 't');")
            .expect("reply");
        assert!(taken_elsewhere(&conn).expect("query").is_empty());
    }
}
