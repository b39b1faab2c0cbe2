//! Backups and restore of the store database against real databases and a real daemon: the
//! schedule keeps the newest `keep` and never takes a partial copy for a backup; a restore
//! refuses a damaged or foreign file, or a database the daemon holds, and then changes nothing;
//! a restore that goes ahead keeps the old database aside and gives the restored one a new
//! cr-sqlite site id. (With the cloud in the loop: tests/tests/edge_restore.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use flashkart_edge::backup::{self, BackupError, BackupSettings, Restored, Schedule};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn settings(dir: &Path, keep: usize) -> BackupSettings {
    BackupSettings {
        db_path: data_dir(dir).join(backup::DB_FILE),
        dir: data_dir(dir).join("backups"),
        keep,
        extension_dir: Some(dir.join("ext")),
    }
}

async fn put_bin(db: &flashkart_sync::StoreDb, id: &str) {
    let id = id.to_owned();
    db.write(move |conn| {
        conn.execute("INSERT INTO bins (id, aisle) VALUES (?1, 'A')", [id])?;
        Ok::<_, flashkart_sync::Error>(())
    })
    .await
    .expect("bin written");
}

async fn take(settings: &BackupSettings) -> Result<backup::Taken, BackupError> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || backup::take(&settings))
        .await
        .expect("backup thread")
}

async fn restore(dir: &Path, file: &Path) -> Result<Restored, BackupError> {
    let (file, data, ext) = (file.to_path_buf(), data_dir(dir), dir.join("ext"));
    tokio::task::spawn_blocking(move || backup::restore(&file, &data, Some(&ext)))
        .await
        .expect("restore thread")
}

/// Every file under `dir` with its bytes, but the daemon's lock file (whose pid line any
/// locker rewrites).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n != backup::LOCK_FILE) {
                files.insert(path.clone(), std::fs::read(&path).expect("read file"));
            }
        }
    }
    files
}

/// (integrity_check, journal_mode) of a backup, opened as a plain file.
fn inspect(path: &Path) -> (String, String) {
    let conn = rusqlite::Connection::open(path).expect("open backup");
    let check = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    let mode = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    (check, mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_keeps_the_newest_backups_and_never_counts_a_partial_copy() {
    let dir = tempfile::tempdir().unwrap();
    // The database stays open and written to, as under the daemon: the copies are online.
    let db = open_db(dir.path()).await;
    put_bin(&db, "A-00").await;
    let settings = settings(dir.path(), 2);
    std::fs::create_dir_all(&settings.dir).unwrap();
    // What a crash mid-copy leaves: a temporary name, even one that sorts newest. Never a
    // backup, never pruned (it is fresh: a backup could still be writing it).
    let partial = settings
        .dir
        .join(".store-2999-01-01T00-00-00.000Z.db.1.tmp");
    std::fs::write(&partial, b"half a database").unwrap();
    let foreign = settings.dir.join("store-notes.db");
    std::fs::write(&foreign, b"not ours").unwrap();

    let (sender, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let schedule = Schedule {
        settings: settings.clone(),
        interval: Duration::from_millis(10),
    };
    let task = tokio::spawn(backup::run_schedule(
        schedule,
        shutdown.clone(),
        move |outcome| {
            let _ = sender.send(match outcome {
                Ok(taken) => Ok(taken.clone()),
                Err(error) => Err(error.to_string()),
            });
        },
    ));
    let mut taken = Vec::new();
    while taken.len() < 4 {
        let outcome = outcomes.recv().await.expect("the schedule reports");
        let done = outcome.expect("backup succeeds");
        assert!(done.bytes > 0);
        put_bin(&db, &format!("A-{:02}", taken.len() + 1)).await;
        taken.push(done);
    }
    shutdown.cancel();
    task.await.expect("schedule ends on shutdown");

    let listed = backup::list(&settings.dir).unwrap();
    let newest: Vec<PathBuf> = taken
        .iter()
        .rev()
        .take(2)
        .map(|t| t.file.path.clone())
        .collect();
    assert_eq!(
        listed.iter().map(|b| b.path.clone()).collect::<Vec<_>>(),
        newest,
        "the newest two, newest first"
    );
    for old in &taken[..taken.len() - 2] {
        assert!(
            !old.file.path.exists(),
            "{} pruned",
            old.file.path.display()
        );
    }
    assert!(taken.iter().any(|t| !t.pruned.is_empty()));
    assert!(
        partial.exists() && foreign.exists(),
        "only backups are pruned"
    );
    for backup in &listed {
        let name = backup.path.file_name().unwrap().to_str().unwrap();
        assert_eq!(backup::parse_name(name), Some(backup.taken_at));
        assert_eq!(inspect(&backup.path), ("ok".into(), "delete".into()));
        let mut wal = backup.path.clone().into_os_string();
        wal.push("-wal");
        assert!(!PathBuf::from(wal).exists(), "a backup is one file");
    }
    // Each copy is one consistent state: the newest has every bin written before it was taken.
    let conn = rusqlite::Connection::open(&listed[0].path).unwrap();
    let bins: i64 = conn
        .query_row("SELECT count(*) FROM bins", [], |r| r.get(0))
        .unwrap();
    assert_eq!(bins, 4);
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_while_the_daemon_runs_and_refuses_bad_files_changing_nothing() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    api.ok(
        &t.picker,
        "/api/v1/stock/receive",
        json!({"gtin": gtin(MILK), "qty": 10, "lot": "A", "expiry": "2030-01-01"}),
    )
    .await;
    let dir_path = daemon.dir.path().to_path_buf();
    let settings = settings(&dir_path, 8);
    // Taken while the daemon runs.
    let good = take(&settings).await.expect("online backup").file.path;

    // One daemon per data directory, and no restore under a running one.
    let second = flashkart_edge::start(config(&dir_path), CancellationToken::new()).await;
    let refused = second.expect_err("a second daemon on the same data is refused");
    assert!(refused.to_string().contains("in use"), "{refused}");
    let before = snapshot(&data_dir(&dir_path));
    let refused = restore(&dir_path, &good).await.expect_err("daemon running");
    assert!(matches!(refused, BackupError::InUse { .. }), "{refused}");
    assert!(
        refused.to_string().contains("stop flashkart-edge first")
            && refused.to_string().contains("pid"),
        "{refused}"
    );
    assert_eq!(snapshot(&data_dir(&dir_path)), before);
    let dir = daemon.stop().await;

    let bad_dir = tempfile::tempdir().unwrap();
    let bad = |name: &str| bad_dir.path().join(name);
    std::fs::write(bad("garbage.db"), vec![0x5a_u8; 8192]).unwrap();
    let plain = rusqlite::Connection::open(bad("plain.db")).unwrap();
    plain
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('hi');")
        .unwrap();
    drop(plain);
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(bad("truncated.db"), &bytes[..bytes.len() / 2]).unwrap();
    let mut scribbled = bytes.clone();
    let middle = scribbled.len() / 2;
    scribbled[middle..middle + 4096].fill(0xff);
    std::fs::write(bad("scribbled.db"), &scribbled).unwrap();
    std::fs::copy(&good, bad("newer.db")).unwrap();
    let newer = rusqlite::Connection::open(bad("newer.db")).unwrap();
    newer
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from the future')",
            [],
        )
        .unwrap();
    drop(newer);

    let before = snapshot(&data_dir(dir.path()));
    for (name, expected) in [
        ("garbage.db", "not an SQLite database"),
        ("plain.db", "no schema_migrations"),
        ("truncated.db", "integrity"),
        ("scribbled.db", "integrity"),
        ("newer.db", "newer than this binary"),
        ("missing.db", "reading the backup"),
    ] {
        let refused = restore(dir.path(), &bad(name)).await.expect_err(name);
        assert!(
            refused.to_string().contains(expected),
            "{name}: {refused} (expected `{expected}`)"
        );
        assert_eq!(
            snapshot(&data_dir(dir.path())),
            before,
            "{name}: a refused restore changes nothing"
        );
    }

    // The daemon starts again on the untouched database.
    let daemon = Daemon::start_in(dir).await;
    let token = daemon.api.sign_in("manager", "123456").await;
    assert_eq!(daemon.api.level(&token, MILK).await.0, 10);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_puts_the_backup_back_with_a_new_site_id_and_keeps_the_old_database() {
    let daemon = Daemon::start().await;
    let api = daemon.api.clone();
    let t = seed(&api).await;
    let receive =
        |qty: i64| json!({"gtin": gtin(MILK), "qty": qty, "lot": "A", "expiry": "2030-01-01"});
    api.ok(&t.picker, "/api/v1/stock/receive", receive(10))
        .await;
    let dir_path = daemon.dir.path().to_path_buf();
    let taken = take(&settings(&dir_path, 8)).await.expect("backup");
    api.ok(&t.picker, "/api/v1/stock/receive", receive(5)).await;
    let dir = daemon.stop().await;

    let db = open_db(dir.path()).await;
    let old_site = db.site_id();
    db.close().await.unwrap();

    let restored = restore(dir.path(), &taken.file.path)
        .await
        .expect("restored");
    assert_eq!(restored.old_site_id, old_site);
    assert_ne!(restored.new_site_id, old_site);
    let aside = restored
        .moved_aside
        .clone()
        .expect("the old database is kept");
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("store.db.before-restore-"),
        "{}",
        aside.display()
    );
    assert!(
        !dir.path()
            .join("data")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_str().unwrap().ends_with(".tmp") })
    );
    assert!(
        dir.path()
            .join("data")
            .join(backup::RESTORED_MARKER)
            .exists(),
        "store work waits for the first catch-up with the cloud"
    );
    let next = backup::next_steps("store-9");
    assert!(next.contains("{\"release_edge_site\": true}"), "{next}");
    assert!(next.contains("/admin/v1/stores/store-9/token"), "{next}");

    // The database reopens with the new site id; its own history is the new site's now.
    let db = open_db(dir.path()).await;
    assert_eq!(db.site_id(), restored.new_site_id);
    let old = old_site.to_vec();
    let (own, under_old): (i64, i64) = db
        .read(move |conn| {
            Ok::<_, flashkart_sync::Error>(conn.query_row(
                "SELECT count(*) FILTER (WHERE site_id = crsql_site_id()),
                        count(*) FILTER (WHERE site_id = ?1)
                 FROM crsql_changes",
                [old],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert!(own > 0, "local changes are the new site's");
    assert_eq!(under_old, 0);
    db.close().await.unwrap();

    // The old database, moved aside whole, still has the write made after the backup.
    let conn = rusqlite::Connection::open(&aside).unwrap();
    let received: i64 = conn
        .query_row(
            "SELECT coalesce(sum(qty), 0) FROM stock_moves WHERE product_id = ?1",
            [MILK],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(received, 15);
    drop(conn);

    // The daemon runs on the restored database: the stock as it was at the backup.
    let daemon = Daemon::start_in(dir).await;
    let token = daemon.api.sign_in("manager", "123456").await;
    assert_eq!(daemon.api.level(&token, MILK).await.0, 10);
    daemon.stop().await;
}

#[test]
fn backup_outcomes_are_exposed_on_metrics() {
    let metrics = flashkart_edge::metrics::Metrics::default();
    metrics.backup_failed();
    metrics.backup_succeeded(753_664, 1_764_930_600);
    let text = metrics.encode().expect("metrics encode");
    for line in [
        "flashkart_edge_backups_total{result=\"failed\"} 1",
        "flashkart_edge_backups_total{result=\"ok\"} 1",
        "flashkart_edge_backup_last_success_unixtime 1764930600",
        "flashkart_edge_backup_last_bytes 753664",
    ] {
        assert!(text.lines().any(|l| l == line), "`{line}` in\n{text}");
    }
}
