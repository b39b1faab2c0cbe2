//! Reading changes out of a store database and merging them into another, as protobuf batches.
//!
//! Both directions go through cr-sqlite's `crsql_changes` virtual table: a batch is the rows of
//! that table for a range of db_versions, and merging is inserting them into the peer's
//! `crsql_changes`, which resolves conflicts per column by causal clock. Merging is idempotent:
//! a change already seen (or beaten by a newer one) changes nothing. A batch carries its count
//! and a SHA-256 of its changes so a truncated or corrupted one is refused before anything of
//! it is applied, and every change is validated first; then the whole batch is applied in one
//! transaction, so it is applied entirely or not at all.

use std::collections::HashSet;

use flashkart_proto::sync::{Change, ChangeBatch, Value, value::Kind};
use prost::Message;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};

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
    verify(batch)?;
    let tables = replicated_tables(conn)?;
    for (index, change) in batch.changes.iter().enumerate() {
        validate_change(index, change, &tables)?;
    }
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

fn validate_change(index: usize, change: &Change, tables: &HashSet<String>) -> Result<(), Error> {
    let invalid = |reason: &str| -> Error {
        BatchError::InvalidChange {
            index,
            reason: reason.to_owned(),
        }
        .into()
    };
    if !tables.contains(&change.table) {
        return Err(BatchError::UnknownTable {
            index,
            table: change.table.clone(),
        }
        .into());
    }
    if change.pk.is_empty() {
        return Err(invalid("empty primary key"));
    }
    if change.cid.is_empty() {
        return Err(invalid("empty column name"));
    }
    if change.site_id.len() != 16 {
        return Err(invalid("site id is not 16 bytes"));
    }
    if change.val.as_ref().and_then(|v| v.kind.as_ref()).is_none() {
        return Err(invalid("value missing"));
    }
    if change.col_version < 1 || change.db_version < 1 || change.cl < 1 || change.seq < 0 {
        return Err(invalid("clock fields out of range"));
    }
    Ok(())
}

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
