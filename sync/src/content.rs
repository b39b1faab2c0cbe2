//! A hash of what a database holds, for checking that replicas converged.
//!
//! Two replicas have converged when every replicated table has the same rows with the same
//! values; cr-sqlite's clocks may differ in bookkeeping, so only user-visible contents count.

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

use crate::Error;

/// SHA-256 over the contents of `tables`, each read in primary-key order.
pub fn content_digest(conn: &Connection, tables: &[&str]) -> Result<[u8; 32], Error> {
    let mut hasher = Sha256::new();
    for table in tables {
        let key: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")?
            .query_map([table], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let order = if key.is_empty() {
            "rowid".to_owned()
        } else {
            key.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
        };
        hasher.update(table.as_bytes());
        let mut stmt = conn.prepare(&format!("SELECT * FROM {} ORDER BY {order}", quote(table)))?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            hasher.update(b"\x1erow");
            for i in 0..columns {
                match row.get_ref(i)? {
                    ValueRef::Null => hasher.update(b"n"),
                    ValueRef::Integer(v) => {
                        hasher.update(b"i");
                        hasher.update(v.to_le_bytes());
                    }
                    ValueRef::Real(v) => {
                        hasher.update(b"r");
                        hasher.update(v.to_le_bytes());
                    }
                    ValueRef::Text(v) => {
                        hasher.update(b"t");
                        hasher.update((v.len() as u64).to_le_bytes());
                        hasher.update(v);
                    }
                    ValueRef::Blob(v) => {
                        hasher.update(b"b");
                        hasher.update((v.len() as u64).to_le_bytes());
                        hasher.update(v);
                    }
                }
            }
        }
    }
    Ok(hasher.finalize().into())
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
