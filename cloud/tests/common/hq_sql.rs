//! Independent SQL over HQ's database of the cloud a test runs in `dir`, whichever engine holds
//! it (`<dir>/cloud/hq.db`, or the test's PostgreSQL database with
//! `FLASHKART_TEST_BACKEND=postgres`): for checks that must not go through the code under test.
//! Statements are written so both engines take them (literals, no parameters), and every
//! column a query selects is `CAST(... AS TEXT)`, read back as text.

use std::path::Path;

use flashkart_cloud::postgres::Postgres;

use super::postgres::{backend_is_postgres, database_for};

/// The one row of `sql`, each column as text (`None` for NULL).
pub async fn row(dir: &Path, sql: &str) -> Vec<Option<String>> {
    if backend_is_postgres() {
        let pg = Postgres::connect(&database_for(dir)).await.unwrap();
        let row = pg
            .client()
            .await
            .unwrap()
            .query_one(sql, &[])
            .await
            .unwrap();
        let values = (0..row.len()).map(|i| row.get(i)).collect();
        pg.close();
        values
    } else {
        let conn = rusqlite::Connection::open_with_flags(
            dir.join("cloud/hq.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.query_row(sql, [], |r| {
            (0..r.as_ref().column_count())
                .map(|i| r.get(i))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap()
    }
}

/// Rows in `table`.
pub async fn rows(dir: &Path, table: &str) -> i64 {
    row(dir, &format!("SELECT CAST(count(*) AS TEXT) FROM {table}"))
        .await
        .remove(0)
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs a change (as a crash or the passing of time would leave the rows).
pub async fn execute(dir: &Path, sql: &str) {
    if backend_is_postgres() {
        let pg = Postgres::connect(&database_for(dir)).await.unwrap();
        pg.client().await.unwrap().execute(sql, &[]).await.unwrap();
        pg.close();
    } else {
        let conn = rusqlite::Connection::open(dir.join("cloud/hq.db")).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        conn.execute(sql, []).unwrap();
    }
}
