//! Orders on their way from one store to another: the intent of each move, written before the
//! first store is asked to cancel, so a cloud that dies half-way through finishes the move when
//! it comes back instead of leaving an order cancelled at one store and nowhere else.
//!
//! A move is two writes to two databases (the first store's replica, then the second's), so
//! no transaction can cover it. The row says what was asked and when; the first store's
//! replica shows whether the cancellation with exactly that time and reason was written. If it
//! was, the rest (note, payment, the order at the second store) is finished, each step being
//! idempotent; if it was not, nothing happened and the row is dropped.

use rusqlite::params;

use super::{Backend, Hq};
use crate::CloudError;

pub(super) const SCHEMA: &str = "CREATE TABLE order_moves (
    order_id TEXT PRIMARY KEY NOT NULL,
    from_store TEXT NOT NULL,
    to_store TEXT NOT NULL,
    -- the cancel_requested_at and cancel_reason written into the first store's replica
    requested_at TEXT NOT NULL,
    cancel_reason TEXT NOT NULL,
    -- the timeline note of the move
    note TEXT NOT NULL
)";

pub(super) const PG_SCHEMA: &str = "CREATE TABLE order_moves (
    order_id TEXT PRIMARY KEY NOT NULL,
    from_store TEXT NOT NULL,
    to_store TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    cancel_reason TEXT NOT NULL,
    note TEXT NOT NULL
)";

/// One move that has begun and not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderMove {
    pub order_id: String,
    pub from_store: String,
    pub to_store: String,
    pub requested_at: String,
    pub cancel_reason: String,
    pub note: String,
}

impl Hq {
    /// Records that `order_move` begins; refused (`Ok(false)`) while another move of the same
    /// order is unfinished.
    pub async fn begin_move(&self, order_move: OrderMove) -> Result<bool, CloudError> {
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .write(move |conn| {
                    let m = &order_move;
                    conn.prepare_cached(
                        "INSERT OR IGNORE INTO order_moves
                            (order_id, from_store, to_store, requested_at, cancel_reason, note)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        m.order_id,
                        m.from_store,
                        m.to_store,
                        m.requested_at,
                        m.cancel_reason,
                        m.note
                    ])
                    .map(|n| n == 1)
                    .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Backend::Postgres(pg) => {
                let m = &order_move;
                Ok(pg
                    .client()
                    .await?
                    .execute(
                        "INSERT INTO order_moves
                            (order_id, from_store, to_store, requested_at, cancel_reason, note)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id) DO NOTHING",
                        &[
                            &m.order_id,
                            &m.from_store,
                            &m.to_store,
                            &m.requested_at,
                            &m.cancel_reason,
                            &m.note,
                        ],
                    )
                    .await?
                    == 1)
            }
        }
    }

    /// The move of `order_id` is over (finished, or it never began at the first store).
    pub async fn end_move(&self, order_id: &str) -> Result<(), CloudError> {
        let order_id = order_id.to_owned();
        match &self.backend {
            Backend::Sqlite(db) => {
                db.write(move |conn| {
                    conn.prepare_cached("DELETE FROM order_moves WHERE order_id = ?1")?
                        .execute([order_id])
                        .map_err(flashkart_sync::Error::from)
                })
                .await?;
            }
            Backend::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute("DELETE FROM order_moves WHERE order_id = $1", &[&order_id])
                    .await?;
            }
        }
        Ok(())
    }

    /// Moves that began and did not finish, oldest first.
    pub async fn unfinished_moves(&self) -> Result<Vec<OrderMove>, CloudError> {
        const LIST: &str =
            "SELECT order_id, from_store, to_store, requested_at, cancel_reason, note
             FROM order_moves ORDER BY requested_at";
        match &self.backend {
            Backend::Sqlite(db) => Ok(db
                .read(|conn| {
                    conn.prepare_cached(LIST)?
                        .query_map([], |r| {
                            Ok(OrderMove {
                                order_id: r.get(0)?,
                                from_store: r.get(1)?,
                                to_store: r.get(2)?,
                                requested_at: r.get(3)?,
                                cancel_reason: r.get(4)?,
                                note: r.get(5)?,
                            })
                        })?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(flashkart_sync::Error::from)
                })
                .await?),
            Backend::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(LIST, &[])
                .await?
                .iter()
                .map(|r| OrderMove {
                    order_id: r.get(0),
                    from_store: r.get(1),
                    to_store: r.get(2),
                    requested_at: r.get(3),
                    cancel_reason: r.get(4),
                    note: r.get(5),
                })
                .collect()),
        }
    }
}
