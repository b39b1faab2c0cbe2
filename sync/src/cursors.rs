//! Durable per-origin positions: how far this database has applied each peer's changes.
//!
//! A local table (not replicated, so never synced) kept in the same database and written in
//! the same transaction as the changes it accounts for, so after any crash the position and the
//! data agree and a resumed sync neither skips nor repeats a transaction. It is created on
//! first use by the sync code on either side, so it needs no coordination with the schema's
//! migrations.

use flashkart_proto::sync::Cursor;
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::chunks::Position;

/// Creates the cursor table if it is missing.
pub fn ensure_table(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS flashkart_sync_cursors (
            origin BLOB PRIMARY KEY NOT NULL,
            db_version INTEGER NOT NULL,
            seq INTEGER NOT NULL
        )",
    )?;
    Ok(())
}

/// How far `origin`'s changes are applied here.
pub fn load(conn: &Connection, origin: &[u8; 16]) -> Result<Position, Error> {
    let found = conn
        .query_row(
            "SELECT db_version, seq FROM flashkart_sync_cursors WHERE origin = ?1",
            [origin.as_slice()],
            |r| {
                Ok(Position {
                    db_version: r.get(0)?,
                    seq: r.get(1)?,
                })
            },
        )
        .optional()?;
    Ok(found.unwrap_or(Position::START))
}

/// Every origin's position.
pub fn load_all(conn: &Connection) -> Result<Vec<Cursor>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT origin, db_version, seq FROM flashkart_sync_cursors ORDER BY origin",
    )?;
    let cursors = stmt
        .query_map([], |r| {
            Ok(Cursor {
                origin_site_id: r.get(0)?,
                db_version: r.get(1)?,
                seq: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(cursors)
}

/// Moves `origin`'s position forward (never back). Call inside the transaction that applied
/// the changes up to `position`.
pub fn advance(conn: &Connection, origin: &[u8; 16], position: Position) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO flashkart_sync_cursors (origin, db_version, seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (origin) DO UPDATE SET db_version = excluded.db_version, seq = excluded.seq
         WHERE excluded.db_version > db_version
            OR (excluded.db_version = db_version AND excluded.seq > seq)",
    )?
    .execute(params![
        origin.as_slice(),
        position.db_version,
        position.seq
    ])?;
    Ok(())
}
