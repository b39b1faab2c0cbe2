//! The single writer: concurrent writes are grouped, each acknowledged after commit; a failing
//! or panicking write rolls back only itself.

use flashkart_sync::schema::store::MIGRATIONS;
use flashkart_sync::{Error, StoreConfig, StoreDb};

fn config(dir: &tempfile::TempDir) -> StoreConfig {
    let mut config = StoreConfig::new(dir.path().join("store.db"));
    config.extension_dir = Some(dir.path().join("ext"));
    config
}

async fn count_moves(db: &StoreDb) -> i64 {
    db.read(|c| -> Result<i64, Error> {
        Ok(c.query_row("SELECT count(*) FROM stock_moves", [], |r| r.get(0))?)
    })
    .await
    .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_panicking_writes_roll_back_only_themselves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = StoreDb::open(config(&dir), MIGRATIONS).await.expect("open");
    let mut tasks = Vec::new();
    for i in 0..300_u32 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.write(move |c| -> Result<u32, Error> {
                c.execute(
                    "INSERT INTO stock_moves (id, product_id, qty, kind) VALUES (?1, 'p', 1, 'receive')",
                    [uuid::Uuid::now_v7().to_string()],
                )?;
                match i % 10 {
                    // Wrote a row, then failed: the row must vanish.
                    3 => Err(Error::Closed),
                    7 => panic!("write {i} panics after inserting"),
                    _ => Ok(i),
                }
            })
            .await
        }));
    }
    let mut ok = 0;
    let mut failed = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(_) => ok += 1,
            Err(Error::Closed | Error::WritePanicked(_)) => failed += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!((ok, failed), (240, 60));
    assert_eq!(count_moves(&db).await, 240);
    db.close().await.expect("close");
    drop(db);

    // Everything acknowledged is there after reopening.
    let db = StoreDb::open(config(&dir), MIGRATIONS)
        .await
        .expect("reopen");
    assert_eq!(count_moves(&db).await, 240);
    let integrity: String = db
        .read(|c| -> Result<String, Error> {
            Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
        })
        .await
        .expect("integrity");
    assert_eq!(integrity, "ok");
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_close_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = StoreDb::open(config(&dir), MIGRATIONS).await.expect("open");
    db.close().await.expect("close");
    let result = db
        .write(|c| -> Result<(), Error> {
            c.execute("DELETE FROM stock_moves", [])?;
            Ok(())
        })
        .await;
    assert!(matches!(result, Err(Error::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_cannot_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = StoreDb::open(config(&dir), MIGRATIONS).await.expect("open");
    let result = db
        .read(|c| -> Result<usize, Error> { Ok(c.execute("DELETE FROM stock_moves", [])?) })
        .await;
    assert!(result.is_err(), "reader connections are query-only");
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_writer_queue_makes_writers_wait_and_loses_nothing() {
    use std::pin::pin;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(&dir);
    config.max_queued = 1;
    let db = StoreDb::open(config, MIGRATIONS).await.expect("open");
    let insert = |id: &'static str| {
        move |c: &rusqlite::Connection| -> Result<(), Error> {
            c.execute(
                "INSERT INTO stock_moves (id, product_id, qty, kind) VALUES (?1, 'p', 1, 'receive')",
                [id],
            )?;
            Ok(())
        }
    };
    // The writer is busy with a write that waits for the gate.
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let (gate, gate_rx) = std::sync::mpsc::channel::<()>();
    let busy = {
        let db = db.clone();
        tokio::spawn(async move {
            db.write(move |c| {
                let _ = started_tx.send(());
                let _ = gate_rx.recv();
                insert("busy")(c)
            })
            .await
        })
    };
    started.await.expect("the busy write runs");
    // One write fits in the queue; the next waits for room instead of piling up.
    let mut queued = pin!(db.write(insert("queued")));
    assert!(futures::poll!(queued.as_mut()).is_pending());
    assert_eq!(db.queued_writes(), 1);
    let mut waiting = pin!(db.write(insert("waiting")));
    assert!(futures::poll!(waiting.as_mut()).is_pending());
    assert_eq!(db.queued_writes(), 1, "the third write is not queued");
    gate.send(()).expect("open the gate");
    busy.await.expect("task").expect("busy write");
    queued.await.expect("queued write");
    waiting.await.expect("waiting write");
    assert_eq!(
        count_moves(&db).await,
        3,
        "every acknowledged write is there"
    );
    db.close().await.expect("close");
}
