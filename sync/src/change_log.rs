//! What a database's cr-sqlite change log says besides the changes themselves: which origins it
//! holds, which rows an origin changed, and how many of its own changes the peer has not
//! acknowledged.
//!
//! Every query on cr-sqlite's `crsql_changes` and `crsql_site_id` lives in this crate, so a
//! cr-sqlite upgrade that reshapes them is met in one place. [`changes`](crate::changes) and
//! [`chunks`](crate::chunks) read changes with their values for the wire; the replica side of
//! sync, the edge's sync status and the cloud's projection only need to know *what* changed,
//! and ask here.

use rusqlite::{Connection, params};

use crate::Error;

/// The sites whose changes this database holds, its own included, in the order cr-sqlite first
/// saw them. Site ids are 16 bytes ([`changes::validate`](crate::changes::validate) refuses a
/// change claiming any other), so anything else is left out.
pub fn origins(conn: &Connection) -> Result<Vec<[u8; 16]>, Error> {
    let origins = conn
        .prepare_cached("SELECT site_id FROM crsql_site_id ORDER BY ordinal")?
        .query_map([], |r| r.get::<_, Vec<u8>>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter_map(|site| <[u8; 16]>::try_from(site.as_slice()).ok())
        .collect();
    Ok(origins)
}

/// One change of a row: a column, or cr-sqlite's create/delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    pub table: String,
    /// The row's primary key, packed as cr-sqlite packs it.
    pub pk: Vec<u8>,
    /// The origin's db_version of the change.
    pub db_version: i64,
}

/// The changes [`row_changes`] read, and whether its limit cut them short.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowChanges {
    pub changes: Vec<RowChange>,
    /// More changes of the origin follow the last one returned.
    pub more: bool,
}

/// The changes `origin` made after its db_version `after`, in (db_version, seq) order, without
/// their values: at most `max_changes`, cut at a transaction boundary (a transaction is never
/// split; one bigger than the limit is returned whole).
pub fn row_changes(
    conn: &Connection,
    origin: &[u8; 16],
    after: i64,
    max_changes: usize,
) -> Result<RowChanges, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT \"table\", pk, db_version FROM crsql_changes
         WHERE site_id = ?1 AND db_version > ?2 ORDER BY db_version, seq",
    )?;
    let mut rows = stmt.query(params![origin.as_slice(), after])?;
    let mut read = RowChanges::default();
    let mut last = after;
    while let Some(row) = rows.next()? {
        let db_version: i64 = row.get(2)?;
        if read.changes.len() >= max_changes && db_version != last {
            read.more = true;
            break;
        }
        read.changes.push(RowChange {
            table: row.get(0)?,
            pk: row.get(1)?,
            db_version,
        });
        last = db_version;
    }
    Ok(read)
}

/// This database's own changes after its db_version `after` (local rows carry `site`, this
/// database's id, or none in older cr-sqlite; merged rows carry their origin's). Whole
/// transactions are acknowledged, so a peer's acknowledged db_version makes this exact.
pub fn local_changes_after(conn: &Connection, site: &[u8; 16], after: i64) -> Result<u64, Error> {
    let count: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM crsql_changes
             WHERE db_version > ?1 AND (site_id IS ?2 OR site_id IS NULL)",
        )?
        .query_row(params![after, site.as_slice()], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}
