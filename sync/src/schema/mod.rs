//! Versioned migrations for cr-sqlite databases, and who owns each synced column.
//!
//! cr-sqlite merges per column, last writer wins. That is only safe when exactly one side
//! writes a column, so every replicated table is declared here with its owning side next to its
//! SQL, and the cloud checks incoming changes against those declarations. Migrations create
//! tables, check them against cr-sqlite's rules before upgrading them to CRRs (so a bad table is
//! refused with its name, not with an obscure extension error), and alter them inside
//! `crsql_begin_alter`/`crsql_commit_alter`.

pub mod store;

use rusqlite::{Connection, OptionalExtension};

use crate::{Error, SchemaError};

/// The side of FlashKart that writes a column. The other side only reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The store's edge daemon (stock, pick/pack progress, rider events at the store).
    Edge,
    /// The cloud aggregator (catalog, orders, assignments, rosters).
    Cloud,
}

/// A replicated table and the owner of its columns.
#[derive(Debug, Clone, Copy)]
pub struct SyncedTable {
    pub name: &'static str,
    /// Owner of every column not listed in `column_owners`, and of row creation and deletion.
    pub owner: Owner,
    /// Columns written by the other side, if any.
    pub column_owners: &'static [(&'static str, Owner)],
    /// The column naming the store a row belongs to; `None` for rows shared by all stores.
    pub store_column: Option<&'static str>,
}

impl SyncedTable {
    /// The side that owns `column` (cr-sqlite's `-1` sentinel, row create/delete, belongs to
    /// the table's owner).
    pub fn owner_of(&self, column: &str) -> Owner {
        self.column_owners
            .iter()
            .find(|(name, _)| *name == column)
            .map_or(self.owner, |(_, owner)| *owner)
    }
}

/// One step of a migration.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Plain SQL for local, non-replicated objects (indexes, local tables).
    Sql(&'static str),
    /// Creates a table and upgrades it to a CRR.
    CreateCrr {
        table: &'static str,
        sql: &'static str,
    },
    /// Alters a CRR (prefer adding columns with defaults: rewrites of big tables are slow).
    AlterCrr {
        table: &'static str,
        sql: &'static str,
    },
}

/// A numbered set of steps applied in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub steps: &'static [Step],
}

/// Applies every migration newer than the database's version, each in its own transaction.
/// Returns the version the database is at afterwards.
pub fn migrate(conn: &Connection, migrations: &[Migration]) -> Result<u32, Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        )",
    )?;
    let current: u32 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?;
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if current > known {
        return Err(SchemaError::TooNew {
            found: current,
            known,
        }
        .into());
    }
    for migration in migrations.iter().filter(|m| m.version > current) {
        apply_migration(conn, migration).map_err(|source| match source {
            // A rule violation already names the table; keep it readable.
            Error::Schema(rule @ SchemaError::CrrRule { .. }) => Error::Schema(rule),
            other => SchemaError::Migration {
                version: migration.version,
                name: migration.name,
                source: Box::new(other),
            }
            .into(),
        })?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
    }
    Ok(current.max(known))
}

fn apply_migration(conn: &Connection, migration: &Migration) -> Result<(), Error> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        for step in migration.steps {
            match *step {
                Step::Sql(sql) => conn.execute_batch(sql)?,
                Step::CreateCrr { table, sql } => {
                    conn.execute_batch(sql)?;
                    check_crr_rules(conn, table)?;
                    conn.query_row("SELECT crsql_as_crr(?1)", [table], |_| Ok(()))?;
                }
                Step::AlterCrr { table, sql } => {
                    conn.query_row("SELECT crsql_begin_alter(?1)", [table], |_| Ok(()))?;
                    conn.execute_batch(sql)?;
                    check_crr_rules(conn, table)?;
                    conn.query_row("SELECT crsql_commit_alter(?1)", [table], |_| Ok(()))?;
                }
            }
        }
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            rusqlite::params![migration.version, migration.name],
        )?;
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(Error::from),
        Err(e) => {
            conn.execute_batch("ROLLBACK")?;
            Err(e)
        }
    }
}

/// Checks the rules cr-sqlite sets for a CRR (from its tableinfo.rs): a primary key whose
/// columns are NOT NULL, no AUTOINCREMENT, no unique index besides the primary key, no foreign
/// keys, and a DEFAULT on every NOT NULL column outside the key.
pub fn check_crr_rules(conn: &Connection, table: &str) -> Result<(), Error> {
    let refuse = |rule: String| -> Error {
        SchemaError::CrrRule {
            table: table.to_owned(),
            rule,
        }
        .into()
    };
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |row| row.get(0),
        )
        .optional()?;
    let Some(sql) = sql else {
        return Err(refuse("no such table".into()));
    };
    if sql.to_ascii_uppercase().contains("AUTOINCREMENT") {
        return Err(refuse(
            "AUTOINCREMENT keys collide between replicas; use a UUIDv7 or natural key".into(),
        ));
    }

    let mut columns =
        conn.prepare("SELECT name, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")?;
    let columns: Vec<(String, bool, Option<String>, i64)> = columns
        .query_map([table], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let key: Vec<_> = columns.iter().filter(|c| c.3 > 0).collect();
    if key.is_empty() {
        return Err(refuse("it has no primary key".into()));
    }
    if let Some(nullable) = key.iter().find(|c| !c.1) {
        return Err(refuse(format!(
            "primary key column `{}` is nullable; declare it NOT NULL",
            nullable.0
        )));
    }
    if let Some(no_default) = columns.iter().find(|c| c.3 == 0 && c.1 && c.2.is_none()) {
        return Err(refuse(format!(
            "NOT NULL column `{}` has no DEFAULT (a replica may receive the row's columns one \
             at a time)",
            no_default.0
        )));
    }

    let mut indexes = conn.prepare("SELECT name, \"unique\", origin FROM pragma_index_list(?1)")?;
    let unique_extra: Option<String> = indexes
        .query_map([table], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, bool>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|(_, unique, origin)| *unique && origin != "pk")
        .map(|(name, _, _)| name);
    if let Some(index) = unique_extra {
        return Err(refuse(format!(
            "unique index `{index}` besides the primary key (replicas cannot enforce it)"
        )));
    }

    let foreign_keys: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_foreign_key_list(?1)",
        [table],
        |row| row.get(0),
    )?;
    if foreign_keys > 0 {
        return Err(refuse(
            "FOREIGN KEY clauses are not allowed (rows may arrive in any order)".into(),
        ));
    }
    Ok(())
}
