//! Which changes a store may send: the cloud's check on every pushed change.
//!
//! cr-sqlite would merge anything it is given, so the cloud refuses, before applying, any
//! change a store does not own: a table or column whose owner (per
//! [`SYNCED_TABLES`](crate::schema::store::SYNCED_TABLES)) is the cloud, a row of another
//! store (the store column set to another id, or an existing replica row belonging to another
//! store), or a change claiming another origin than the store's own database. The check runs
//! inside the replica's write transaction, so the rows it looks at are the rows it guards.

use std::collections::HashMap;

use flashkart_proto::sync::{Change, value::Kind};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};

use crate::Error;
use crate::schema::Owner;
use crate::schema::store::synced_table;

/// Why a batch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("change {index} ({table}.{column}): {reason}")]
pub struct Violation {
    pub index: usize,
    pub table: String,
    pub column: String,
    pub reason: String,
}

/// The outcome of checking a batch: refused (with the first violation) or a database error.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error(transparent)]
    Forbidden(#[from] Violation),
    #[error(transparent)]
    Store(#[from] Error),
}

/// Checks that every change in `changes` may come from the edge of `store_id`, whose
/// database has site id `edge_site`.
pub fn authorize(
    conn: &Connection,
    store_id: &str,
    edge_site: &[u8; 16],
    changes: &[Change],
) -> Result<(), AuthorizeError> {
    // Store column value set by the batch itself, per row.
    let mut claimed: HashMap<(&str, &[u8]), Option<&Kind>> = HashMap::new();
    for change in changes {
        if let Some(table) = synced_table(&change.table)
            && table.store_column == Some(change.cid.as_str())
        {
            claimed.insert(
                (change.table.as_str(), change.pk.as_slice()),
                change.val.as_ref().and_then(|v| v.kind.as_ref()),
            );
        }
    }
    let mut checked: HashMap<(&str, &[u8]), ()> = HashMap::new();
    for (index, change) in changes.iter().enumerate() {
        let refuse = |reason: String| -> AuthorizeError {
            Violation {
                index,
                table: change.table.clone(),
                column: change.cid.clone(),
                reason,
            }
            .into()
        };
        if change.site_id.as_slice() != edge_site {
            return Err(refuse(
                "claims to originate elsewhere than the store's database".into(),
            ));
        }
        let Some(table) = synced_table(&change.table) else {
            return Err(refuse("not a synced table".into()));
        };
        if table.owner_of(&change.cid) != Owner::Edge {
            return Err(refuse("owned by the cloud".into()));
        }
        let Some(store_column) = table.store_column else {
            return Err(refuse("shared table without a store column".into()));
        };
        let row = (change.table.as_str(), change.pk.as_slice());
        if checked.insert(row, ()).is_some() {
            continue;
        }
        if let Some(value) = claimed.get(&row)
            && !matches!(value, Some(Kind::Text(id)) if id == store_id)
        {
            return Err(refuse(format!(
                "row assigned to a store other than `{store_id}`"
            )));
        }
        match existing_store(conn, table.name, store_column, &change.pk)? {
            Some(owner) if owner != store_id => {
                return Err(refuse(format!("row belongs to store `{owner}`")));
            }
            Some(_) => {}
            // A new row must say it is this store's; only a deletion (even causal length) may
            // name a row the replica never saw (created and deleted before it synced).
            None if claimed.contains_key(&row) || change.cl % 2 == 0 => {}
            None => return Err(refuse("new row without its store".into())),
        }
    }
    Ok(())
}

/// The store column of the replica's row with packed primary key `pk`, if the row exists.
fn existing_store(
    conn: &Connection,
    table: &str,
    store_column: &str,
    pk: &[u8],
) -> Result<Option<String>, Error> {
    let key_columns: Vec<String> = conn
        .prepare_cached("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")?
        .query_map([table], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let values: Vec<SqlValue> = conn
        .prepare_cached("SELECT cell FROM crsql_unpack_columns WHERE package = ?1")?
        .query_map([pk], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if values.len() != key_columns.len() {
        return Ok(None);
    }
    let condition = key_columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} IS ?{}", quote(c), i + 1))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!(
        "SELECT CAST({} AS TEXT) FROM {} WHERE {condition}",
        quote(store_column),
        quote(table)
    );
    let owner = conn
        .prepare_cached(&sql)?
        .query_row(rusqlite::params_from_iter(values), |r| r.get(0))
        .optional()?;
    Ok(owner)
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
