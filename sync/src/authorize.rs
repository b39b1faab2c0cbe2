//! Which changes a store may send: the cloud's check on every pushed change.
//!
//! cr-sqlite would merge anything it is given, so the cloud refuses, before applying, any
//! change a store does not own: a table or column whose owner (per
//! [`SYNCED_TABLES`](crate::schema::store::SYNCED_TABLES)) is the cloud, a row of another
//! store (the store column set to another id, or an existing replica row belonging to another
//! store), or a change claiming another origin than the store's own database. The check runs
//! inside the replica's write transaction, so the rows it looks at are the rows it guards, and
//! again on the merged rows before that transaction commits.

use std::collections::HashSet;

use flashkart_proto::sync::{Change, value::Kind};
use rusqlite::{Connection, OptionalExtension};

use crate::Error;
use crate::packed_key::{self, KeyValue};
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
/// database has site id `edge_site`. Call it on a batch that
/// [`changes::validate`](crate::changes::validate) accepted (keys are decoded here), before
/// merging; then [`verify_merged`] after merging, in the same transaction.
pub fn authorize(
    conn: &Connection,
    store_id: &str,
    edge_site: &[u8; 16],
    changes: &[Change],
) -> Result<(), AuthorizeError> {
    // Rows whose store column the batch itself sets. Every such value is checked below, not
    // only the last: changes to one column at different versions all reach the merge, and the
    // merge keeps whichever has the highest clock.
    let claimed: HashSet<(&str, &[u8])> = changes
        .iter()
        .filter(|c| synced_table(&c.table).is_some_and(|t| t.store_column == Some(c.cid.as_str())))
        .map(|c| (c.table.as_str(), c.pk.as_slice()))
        .collect();
    let mut checked: HashSet<(&str, &[u8])> = HashSet::new();
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
        if change.cid == store_column
            && !matches!(change.val.as_ref().and_then(|v| v.kind.as_ref()), Some(Kind::Text(id)) if id == store_id)
        {
            return Err(refuse(format!(
                "row assigned to a store other than `{store_id}`"
            )));
        }
        let row = (change.table.as_str(), change.pk.as_slice());
        if !checked.insert(row) {
            continue;
        }
        match existing_store(conn, table.name, store_column, &change.pk)? {
            Some(owner) if owner != store_id => {
                return Err(refuse(format!("row belongs to store `{owner}`")));
            }
            Some(_) => {}
            // A new row must say it is this store's; only a deletion (even causal length) may
            // name a row the replica never saw (created and deleted before it synced).
            None if claimed.contains(&row) || change.cl % 2 == 0 => {}
            None => return Err(refuse("new row without its store".into())),
        }
    }
    Ok(())
}

/// Checks, after `changes` were merged and before the transaction commits, that every row they
/// touched that exists now belongs to `store_id`. This is the check on what was merged rather
/// than on what was sent: whatever cr-sqlite's clocks decided, a row left assigned to another
/// store refuses the batch.
pub fn verify_merged(
    conn: &Connection,
    store_id: &str,
    changes: &[Change],
) -> Result<(), AuthorizeError> {
    let mut checked: HashSet<(&str, &[u8])> = HashSet::new();
    for (index, change) in changes.iter().enumerate() {
        let row = (change.table.as_str(), change.pk.as_slice());
        if !checked.insert(row) {
            continue;
        }
        let Some(store_column) = synced_table(&change.table).and_then(|t| t.store_column) else {
            continue;
        };
        if let Some(owner) = existing_store(conn, &change.table, store_column, &change.pk)?
            && owner != store_id
        {
            return Err(Violation {
                index,
                table: change.table.clone(),
                column: store_column.to_owned(),
                reason: format!("merged row belongs to store `{owner}`"),
            }
            .into());
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
    let Ok(values) = packed_key::decode(pk) else {
        return Ok(None);
    };
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
        .query_row(
            rusqlite::params_from_iter(values.iter().map(KeyValue::to_sql)),
            |r| r.get(0),
        )
        .optional()?;
    Ok(owner)
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
