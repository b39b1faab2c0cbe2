//! Tables that break cr-sqlite's rules are refused at migration time, naming the table, and
//! nothing of the migration is kept.

use flashkart_sync::schema::{Migration, Step};
use flashkart_sync::{Error, SchemaError, StoreConfig, StoreDb};

async fn migrate_one(sql: &'static str) -> (Result<StoreDb, Error>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let migrations: &'static [Migration] = Box::leak(Box::new([
        Migration {
            version: 1,
            name: "good table",
            steps: &[Step::CreateCrr {
                table: "good",
                sql: "CREATE TABLE good (id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL DEFAULT 0)",
            }],
        },
        Migration {
            version: 2,
            name: "bad table",
            steps: Box::leak(Box::new([Step::CreateCrr { table: "bad", sql }])),
        },
    ]));
    let mut config = StoreConfig::new(dir.path().join("db.sqlite"));
    config.extension_dir = Some(dir.path().join("ext"));
    (StoreDb::open(config, migrations).await, dir)
}

async fn assert_refused(sql: &'static str, rule_fragment: &str) {
    let (result, dir) = migrate_one(sql).await;
    match result {
        Err(Error::Schema(SchemaError::CrrRule { table, rule })) => {
            assert_eq!(table, "bad");
            assert!(
                rule.contains(rule_fragment),
                "rule `{rule}` should mention `{rule_fragment}`"
            );
            let message = Error::Schema(SchemaError::CrrRule {
                table: table.clone(),
                rule,
            })
            .to_string();
            assert!(
                message.contains("`bad`"),
                "message names the table: {message}"
            );
        }
        other => panic!("expected a CRR rule error for {sql}, got {other:?}"),
    }
    // Migration 1 was kept, migration 2 left nothing behind.
    let conn = rusqlite::Connection::open(dir.path().join("db.sqlite")).expect("reopen");
    let versions: Vec<u32> = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(versions, vec![1]);
    let bad_exists: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'bad'",
            [],
            |r| r.get(0),
        )
        .expect("schema query");
    assert_eq!(bad_exists, 0, "the refused table must not exist");
}

#[tokio::test]
async fn unique_index_besides_primary_key_is_refused() {
    assert_refused(
        "CREATE TABLE bad (id TEXT PRIMARY KEY NOT NULL, code TEXT UNIQUE)",
        "unique index",
    )
    .await;
}

#[tokio::test]
async fn separate_unique_index_is_refused() {
    assert_refused(
        "CREATE TABLE bad (id TEXT PRIMARY KEY NOT NULL, code TEXT);
         CREATE UNIQUE INDEX bad_code ON bad (code)",
        "bad_code",
    )
    .await;
}

#[tokio::test]
async fn nullable_primary_key_is_refused() {
    assert_refused("CREATE TABLE bad (id TEXT PRIMARY KEY, v TEXT)", "nullable").await;
}

#[tokio::test]
async fn autoincrement_is_refused() {
    assert_refused(
        "CREATE TABLE bad (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, v TEXT)",
        "AUTOINCREMENT",
    )
    .await;
}

#[tokio::test]
async fn foreign_key_is_refused() {
    assert_refused(
        "CREATE TABLE bad (id TEXT PRIMARY KEY NOT NULL, good_id TEXT REFERENCES good (id))",
        "FOREIGN KEY",
    )
    .await;
}

#[tokio::test]
async fn not_null_column_without_default_is_refused() {
    assert_refused(
        "CREATE TABLE bad (id TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL)",
        "DEFAULT",
    )
    .await;
}

#[tokio::test]
async fn missing_primary_key_is_refused() {
    assert_refused("CREATE TABLE bad (v TEXT)", "no primary key").await;
}

#[tokio::test]
async fn additive_alter_of_a_crr_keeps_it_replicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v1: &'static [Migration] = &[Migration {
        version: 1,
        name: "t",
        steps: &[Step::CreateCrr {
            table: "t",
            sql: "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT)",
        }],
    }];
    let v2: &'static [Migration] = &[
        Migration {
            version: 1,
            name: "t",
            steps: &[Step::CreateCrr {
                table: "t",
                sql: "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a TEXT)",
            }],
        },
        Migration {
            version: 2,
            name: "add b",
            steps: &[Step::AlterCrr {
                table: "t",
                sql: "ALTER TABLE t ADD COLUMN b INTEGER NOT NULL DEFAULT 7",
            }],
        },
    ];
    let mut config = StoreConfig::new(dir.path().join("db.sqlite"));
    config.extension_dir = Some(dir.path().join("ext"));
    let db = StoreDb::open(config.clone(), v1).await.expect("v1");
    db.write(|c| -> Result<(), Error> {
        c.execute("INSERT INTO t (id, a) VALUES ('x', 'hello')", [])?;
        Ok(())
    })
    .await
    .expect("insert");
    db.close().await.expect("close");
    drop(db);

    let db = StoreDb::open(config.clone(), v2).await.expect("v2");
    assert_eq!(db.schema_version(), 2);
    db.write(|c| -> Result<(), Error> {
        c.execute("UPDATE t SET b = 9 WHERE id = 'x'", [])?;
        Ok(())
    })
    .await
    .expect("update new column");
    let columns: Vec<String> = db
        .read(|c| -> Result<Vec<String>, Error> {
            let mut stmt =
                c.prepare("SELECT DISTINCT cid FROM crsql_changes WHERE \"table\" = 't'")?;
            let cids = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(cids)
        })
        .await
        .expect("changes");
    assert!(
        columns.contains(&"b".to_owned()),
        "new column is replicated: {columns:?}"
    );
    db.close().await.expect("close");
    drop(db);

    // An older build refuses a newer database instead of corrupting it.
    match StoreDb::open(config, v1).await {
        Err(Error::Schema(SchemaError::TooNew { found: 2, known: 1 })) => {}
        other => panic!("expected TooNew, got {other:?}"),
    }
}
