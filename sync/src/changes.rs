//! Reading changes out of a store database and merging them into another, as protobuf batches.
//!
//! Both directions go through cr-sqlite's `crsql_changes` virtual table: a batch is the rows of
//! that table for a range of db_versions, and merging is inserting them into the peer's
//! `crsql_changes`, which resolves conflicts per column by causal clock. Merging is idempotent:
//! a change already seen (or beaten by a newer one) changes nothing. A batch carries its count
//! and a SHA-256 of its changes so a truncated or corrupted one is refused before anything of
//! it is applied, and every change is validated first; then the whole batch is applied in one
//! transaction, so it is applied entirely or not at all.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use flashkart_proto::sync::{Change, ChangeBatch, Value, value::Kind};
use prost::Message;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};

use crate::packed_key::{self, KeyValue};
use crate::{BatchError, Error};

/// Which changes to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeQuery {
    /// Only changes of db_versions after this one.
    pub after_db_version: i64,
    /// Leave out changes that originated at this site (the peer we are sending to), so a
    /// change never echoes back to where it came from.
    pub exclude_site: Option<[u8; 16]>,
    /// Stop after this many changes, at a db_version boundary (a transaction is never split;
    /// a single transaction bigger than the limit is returned whole). `None`: no limit.
    pub max_changes: Option<usize>,
}

/// Reads the changes `query` selects, in (db_version, seq) order, as one sealed batch.
pub fn changes_since(conn: &Connection, query: ChangeQuery) -> Result<ChangeBatch, Error> {
    let sender: Vec<u8> = conn.query_row("SELECT crsql_site_id()", [], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(
        "SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq
         FROM crsql_changes
         WHERE db_version > ?1 AND (?2 IS NULL OR site_id IS NOT ?2)
         ORDER BY db_version, seq",
    )?;
    let exclude = query.exclude_site.map(|s| s.to_vec());
    let mut rows = stmt.query(params![query.after_db_version, exclude])?;
    let mut changes = Vec::new();
    let mut up_to = query.after_db_version;
    while let Some(row) = rows.next()? {
        let db_version: i64 = row.get(5)?;
        if let Some(max) = query.max_changes
            && changes.len() >= max
            && db_version != up_to
        {
            break;
        }
        changes.push(Change {
            table: row.get(0)?,
            pk: row.get(1)?,
            cid: row.get(2)?,
            val: Some(to_proto_value(row.get_ref(3)?)),
            col_version: row.get(4)?,
            db_version,
            site_id: row
                .get::<_, Option<Vec<u8>>>(6)?
                .unwrap_or_else(|| sender.clone()),
            cl: row.get(7)?,
            seq: row.get(8)?,
        });
        up_to = db_version;
    }
    if query.max_changes.is_none() || changes.is_empty() {
        // Nothing was cut off, so the batch covers everything up to the current version even if
        // the last versions were all excluded.
        let current: i64 = conn.query_row("SELECT crsql_db_version()", [], |r| r.get(0))?;
        up_to = up_to.max(current);
    }
    Ok(seal(sender, query.after_db_version, up_to, changes))
}

/// Builds a batch with its count and digest.
pub fn seal(sender_site_id: Vec<u8>, after: i64, up_to: i64, changes: Vec<Change>) -> ChangeBatch {
    let digest = digest(&changes).to_vec();
    ChangeBatch {
        sender_site_id,
        after_db_version: after,
        up_to_db_version: up_to,
        change_count: u32::try_from(changes.len()).unwrap_or(u32::MAX),
        changes,
        digest,
    }
}

fn digest(changes: &[Change]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for change in changes {
        let encoded = change.encode_to_vec();
        hasher.update((encoded.len() as u64).to_le_bytes());
        hasher.update(&encoded);
    }
    hasher.finalize().into()
}

/// Decodes a batch from its wire bytes and checks it is whole. Nothing is applied.
pub fn decode_batch(bytes: &[u8]) -> Result<ChangeBatch, BatchError> {
    let batch = ChangeBatch::decode(bytes)?;
    verify(&batch)?;
    Ok(batch)
}

/// Checks that a batch holds what it says it holds.
pub fn verify(batch: &ChangeBatch) -> Result<(), BatchError> {
    if batch.change_count as usize != batch.changes.len() {
        return Err(BatchError::CountMismatch {
            declared: batch.change_count,
            actual: batch.changes.len(),
        });
    }
    if batch.digest.as_slice() != digest(&batch.changes).as_slice() {
        return Err(BatchError::DigestMismatch);
    }
    Ok(())
}

/// What merging a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Changes in the batch.
    pub received: usize,
    /// Changes that won and altered a row (the rest were already known or lost the merge).
    pub applied: u64,
}

/// Merges a batch into the database `conn` in one transaction of its own: every change is
/// validated first, and any failure leaves the database unchanged.
pub fn apply(conn: &Connection, batch: &ChangeBatch) -> Result<ApplyStats, Error> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match apply_in_transaction(conn, batch) {
        Ok(stats) => {
            conn.execute_batch("COMMIT")?;
            Ok(stats)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK")?;
            Err(e)
        }
    }
}

/// Like [`apply`], inside a transaction the caller owns (the store writer's group commit). On
/// error the caller must roll back; nothing is partially kept then.
pub fn apply_in_transaction(conn: &Connection, batch: &ChangeBatch) -> Result<ApplyStats, Error> {
    validate(conn, batch)?;
    merge_validated(conn, batch)
}

/// Checks that a batch is whole and that every change fits this database's schema: a
/// replicated table, a primary key packed as cr-sqlite packs it with one value of the right
/// type per key column, a column of the table (or cr-sqlite's `-1` row marker), a value of the
/// column's type within [`MAX_VALUE_BYTES`], and clock fields in range. Nothing reaches
/// cr-sqlite before this holds, because the extension trusts what it is given: a malformed key
/// makes it panic, and a panic inside it aborts the process.
pub fn validate(conn: &Connection, batch: &ChangeBatch) -> Result<(), Error> {
    verify(batch)?;
    let tables = replicated_tables(conn)?;
    let mut shapes: HashMap<&str, TableShape> = HashMap::new();
    for (index, change) in batch.changes.iter().enumerate() {
        if !tables.contains(&change.table) {
            return Err(BatchError::UnknownTable {
                index,
                table: change.table.clone(),
            }
            .into());
        }
        let shape = match shapes.entry(change.table.as_str()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(TableShape::load(conn, &change.table)?),
        };
        shape
            .check(change)
            .map_err(|reason| BatchError::InvalidChange { index, reason })?;
    }
    Ok(())
}

/// Merges a batch that [`validate`] accepted, inside the caller's transaction.
pub(crate) fn merge_validated(conn: &Connection, batch: &ChangeBatch) -> Result<ApplyStats, Error> {
    // cr-sqlite stores a merged change under this transaction's db_version but keeps the
    // sender's seq. Two transactions of one origin merged in one local transaction (a catch-up,
    // or a group commit of two applies) would then share (db_version, seq) positions, and a
    // reader that resumes from a position would skip or reorder changes. Numbering merged
    // changes from the transaction's own seq counter keeps every position unique; seq plays
    // no part in conflict resolution.
    let mut insert = conn.prepare_cached(
        "INSERT INTO crsql_changes
            (\"table\", pk, cid, val, col_version, db_version, site_id, cl, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, crsql_increment_and_get_seq())",
    )?;
    // cr-sqlite counts rows changed by merges over the whole transaction, which may hold other
    // writes of the same group commit: take the difference.
    let impacted = || conn.query_row("SELECT crsql_rows_impacted()", [], |r| r.get::<_, i64>(0));
    let before = impacted()?;
    for change in &batch.changes {
        insert.execute(params![
            change.table,
            change.pk,
            change.cid,
            to_sql_value(change.val.as_ref()),
            change.col_version,
            change.db_version,
            change.site_id,
            change.cl,
        ])?;
    }
    Ok(ApplyStats {
        received: batch.changes.len(),
        applied: u64::try_from(impacted()? - before).unwrap_or(0),
    })
}

/// The tables of this database that are CRRs (cr-sqlite keeps a clock table for each).
pub fn replicated_tables(conn: &Connection) -> Result<HashSet<String>, Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT substr(name, 1, length(name) - length('__crsql_clock'))
         FROM sqlite_schema WHERE type = 'table' AND name LIKE '%\\_\\_crsql\\_clock' ESCAPE '\\'",
    )?;
    let tables = stmt
        .query_map([], |row| row.get(0))?
        .collect::<Result<HashSet<String>, _>>()?;
    Ok(tables)
}

/// The largest text value a change may carry. Nothing the schema stores comes near it (notes
/// and addresses are the longest); a peer sending more is not sending FlashKart data.
pub const MAX_VALUE_BYTES: usize = 16 << 10;

/// Clock fields above this are refused: far beyond any real history (a billion writes a day
/// for millions of years), and low enough that cr-sqlite's arithmetic on them cannot overflow.
pub const MAX_CLOCK: i64 = 1 << 53;

/// cr-sqlite's column name for a row's create/delete marker.
pub const ROW_MARKER: &str = "-1";

/// What a change may hold for one table: its key columns and the type of every other column.
#[derive(Debug)]
struct TableShape {
    keys: Vec<Affinity>,
    columns: HashMap<String, Column>,
}

#[derive(Debug, Clone, Copy)]
struct Column {
    affinity: Affinity,
    not_null: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Affinity {
    Text,
    Integer,
    Real,
    /// A column declared without a type: any value.
    Any,
}

impl Affinity {
    fn of(declared: &str) -> Self {
        // SQLite's own affinity rules, in its order.
        let declared = declared.to_ascii_uppercase();
        if declared.contains("INT") {
            Self::Integer
        } else if declared.contains("CHAR")
            || declared.contains("CLOB")
            || declared.contains("TEXT")
        {
            Self::Text
        } else if declared.contains("REAL")
            || declared.contains("FLOA")
            || declared.contains("DOUB")
        {
            Self::Real
        } else {
            Self::Any
        }
    }
}

impl TableShape {
    fn load(conn: &Connection, table: &str) -> Result<Self, Error> {
        let mut keys: Vec<(i64, Affinity)> = Vec::new();
        let mut columns = HashMap::new();
        let mut stmt =
            conn.prepare_cached("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")?;
        let mut rows = stmt.query([table])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            let affinity = Affinity::of(&row.get::<_, String>(1)?);
            let pk: i64 = row.get(3)?;
            if pk > 0 {
                keys.push((pk, affinity));
            } else {
                let not_null = row.get::<_, i64>(2)? != 0;
                columns.insert(name, Column { affinity, not_null });
            }
        }
        keys.sort_by_key(|(position, _)| *position);
        Ok(Self {
            keys: keys.into_iter().map(|(_, affinity)| affinity).collect(),
            columns,
        })
    }

    fn check(&self, change: &Change) -> Result<(), String> {
        let key = packed_key::decode(&change.pk).map_err(|e| e.to_string())?;
        if key.len() != self.keys.len() {
            return Err(format!(
                "primary key has {} columns, the table has {}",
                key.len(),
                self.keys.len()
            ));
        }
        for (position, (value, affinity)) in key.iter().zip(&self.keys).enumerate() {
            let fits = match (value, affinity) {
                (KeyValue::Text(text), Affinity::Text | Affinity::Any) => {
                    !text.is_empty() && text.len() <= MAX_KEY_TEXT_BYTES
                }
                (KeyValue::Integer(_), Affinity::Integer | Affinity::Any) => true,
                _ => false,
            };
            if !fits {
                return Err(format!(
                    "primary key column {position} is not a {affinity:?} value of 1 to \
                     {MAX_KEY_TEXT_BYTES} bytes"
                ));
            }
        }
        if change.site_id.len() != 16 {
            return Err("site id is not 16 bytes".into());
        }
        let range = 1..=MAX_CLOCK;
        if !range.contains(&change.col_version)
            || !range.contains(&change.db_version)
            || !range.contains(&change.cl)
            || !(0..=MAX_CLOCK).contains(&change.seq)
        {
            return Err("clock fields out of range".into());
        }
        let Some(value) = change.val.as_ref().and_then(|v| v.kind.as_ref()) else {
            return Err("value missing".into());
        };
        if change.cid == ROW_MARKER {
            return if matches!(value, Kind::Null(_)) {
                Ok(())
            } else {
                Err("a row marker carries no value".into())
            };
        }
        let Some(column) = self.columns.get(&change.cid) else {
            return Err(format!("no column `{}` in `{}`", change.cid, change.table));
        };
        let fits = match value {
            Kind::Null(_) => !column.not_null,
            Kind::Integer(_) => column.affinity != Affinity::Text,
            Kind::Real(r) => {
                r.is_finite() && matches!(column.affinity, Affinity::Real | Affinity::Any)
            }
            Kind::Text(text) => {
                text.len() <= MAX_VALUE_BYTES
                    && matches!(column.affinity, Affinity::Text | Affinity::Any)
            }
            Kind::Blob(blob) => blob.len() <= MAX_VALUE_BYTES && column.affinity == Affinity::Any,
        };
        if !fits {
            return Err(format!(
                "value does not fit column `{}` ({:?}{})",
                change.cid,
                column.affinity,
                if column.not_null { ", not null" } else { "" }
            ));
        }
        Ok(())
    }
}

/// Keys are UUIDs and short natural keys (GTINs, ids). cr-sqlite 0.16's own unpacker reads a
/// one-byte length as signed, so text keys of 128 bytes or more would not survive it anyway.
pub const MAX_KEY_TEXT_BYTES: usize = 127;

pub(crate) fn to_proto_value(value: ValueRef<'_>) -> Value {
    let kind = match value {
        ValueRef::Null => Kind::Null(true),
        ValueRef::Integer(i) => Kind::Integer(i),
        ValueRef::Real(r) => Kind::Real(r),
        ValueRef::Text(t) => Kind::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Kind::Blob(b.to_vec()),
    };
    Value { kind: Some(kind) }
}

fn to_sql_value(value: Option<&Value>) -> SqlValue {
    match value.and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::Null(_)) => SqlValue::Null,
        Some(Kind::Integer(i)) => SqlValue::Integer(*i),
        Some(Kind::Real(r)) => SqlValue::Real(*r),
        Some(Kind::Text(t)) => SqlValue::Text(t.clone()),
        Some(Kind::Blob(b)) => SqlValue::Blob(b.clone()),
    }
}
