//! Independent SQL over the read model (the `rm_*` tables, and the notification outbox beside
//! them) of a cloud under test, on whichever engine holds it: `readmodel.db`, or the cloud's
//! PostgreSQL database. The engine is the one [`Projection::backend`] names, so a check reads
//! exactly what the cloud under test uses; the connection is the cloud's own (its reader pool,
//! or its PostgreSQL pool), never the code under test's queries.
//!
//! Statements are written so both engines take them: literals instead of parameters, every
//! column a query selects `CAST(... AS TEXT)` and read back as text (a column that is not text
//! fails loudly on both engines), and none of SQLite's own words (rowid, julianday, strftime,
//! `INSERT OR IGNORE`, json_each) nor PostgreSQL's.
//!
//! [`Projection::backend`]: flashkart_cloud::projection::Projection::backend

use flashkart_cloud::Cloud;
use flashkart_cloud::projection::Backend;

/// Every row of `sql`, each column as text (`None` for NULL).
pub async fn rows(cloud: &Cloud, sql: &str) -> Vec<Vec<Option<String>>> {
    match cloud.projection().backend() {
        Backend::Sqlite(db) => {
            let statement = sql.to_owned();
            db.read(move |conn| {
                let mut select = conn.prepare(&statement)?;
                let columns = select.column_count();
                select
                    .query_map([], |r| {
                        (0..columns)
                            .map(|i| r.get::<_, Option<String>>(i))
                            .collect()
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(flashkart_sync::Error::from)
            })
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
        Backend::Postgres(pg) => {
            let client = pg.client().await.expect("a PostgreSQL connection");
            let found = client
                .query(sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            found
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| row.get::<_, Option<String>>(i))
                        .collect()
                })
                .collect()
        }
    }
}

/// The one row of `sql`, each column as text (`None` for NULL).
pub async fn row(cloud: &Cloud, sql: &str) -> Vec<Option<String>> {
    let mut found = rows(cloud, sql).await;
    assert_eq!(found.len(), 1, "one row of {sql}: {found:?}");
    found.remove(0)
}

/// The one value of `sql`, a single number (a count, a sum): the statement is wrapped as
/// `SELECT CAST((sql) AS TEXT)`, so it reads the same whether the engine gives it as INTEGER,
/// BIGINT (count(*) on PostgreSQL) or NUMERIC (sum(bigint) on PostgreSQL).
pub async fn count(cloud: &Cloud, sql: &str) -> i64 {
    let wrapped = format!("SELECT CAST(({sql}) AS TEXT)");
    let value = row(cloud, &wrapped).await.remove(0);
    let value = value.unwrap_or_else(|| panic!("{sql}: NULL"));
    value
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {value:?} is not a whole number ({e})"))
}

/// Runs one or more statements (separated by `;`) in one transaction: rows a test sets up
/// itself, or changes as the passing of time or a corruption would leave them.
pub async fn execute(cloud: &Cloud, sql: impl Into<String>) {
    let sql = sql.into();
    match cloud.projection().backend() {
        Backend::Sqlite(db) => {
            let statements = sql.clone();
            db.write(move |conn| {
                conn.execute_batch(&statements)
                    .map_err(flashkart_sync::Error::from)
            })
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", abbreviated(&sql)));
        }
        Backend::Postgres(pg) => {
            let client = pg.client().await.expect("a PostgreSQL connection");
            // A simple query of several statements runs as one transaction.
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{}: {e:?}", abbreviated(&sql)));
        }
    }
}

/// A SQL text quoted as a literal: `'it''s'`.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The start of a long statement, for a panic message.
fn abbreviated(sql: &str) -> &str {
    match sql.char_indices().nth(400) {
        Some((end, _)) => &sql[..end],
        None => sql,
    }
}
