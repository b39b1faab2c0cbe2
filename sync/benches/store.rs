//! Store database benchmark: durable commits with and without group commit and cr-sqlite, and
//! merging a 100,000-change batch. Every figure is measured in this one run, so the ratios
//! compare like with like on whatever machine runs it.
//!
//! `cargo bench -p flashkart-sync --bench store` (set `FLASHKART_BENCH_QUICK=1` for a smoke run).

use std::time::{Duration, Instant};

use flashkart_sync::changes::{self, ChangeQuery};
use flashkart_sync::schema::store::MIGRATIONS;
use flashkart_sync::{Error, StoreConfig, StoreDb, Synchronous};
use prost::Message;

struct Scale {
    sequential: usize,
    concurrent_tasks: usize,
    per_task: usize,
    batch_changes: usize,
}

fn main() {
    let quick = std::env::var_os("FLASHKART_BENCH_QUICK").is_some();
    let scale = if quick {
        Scale {
            sequential: 100,
            concurrent_tasks: 16,
            per_task: 20,
            batch_changes: 5_000,
        }
    } else {
        Scale {
            sequential: 2_000,
            concurrent_tasks: 64,
            per_task: 100,
            batch_changes: 100_000,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(scale));
}

async fn run(scale: Scale) {
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "store database benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("{:<48} {:>12}", "case", "commits/s");

    let mut results = Vec::new();
    for synchronous in [Synchronous::Full, Synchronous::Normal] {
        for replicated in [false, true] {
            let label = format!(
                "{} synchronous={:?}",
                if replicated {
                    "cr-sqlite"
                } else {
                    "plain sqlite"
                },
                synchronous
            );
            let db = open(&dir, &label, synchronous, replicated).await;
            let single = single_commits(&db, scale.sequential).await;
            println!(
                "{:<48} {:>12.0}",
                format!("{label}, one write per commit"),
                single
            );
            let grouped = group_commits(&db, scale.concurrent_tasks, scale.per_task).await;
            println!(
                "{:<48} {:>12.0}",
                format!("{label}, group commit ({} writers)", scale.concurrent_tasks),
                grouped
            );
            db.close().await.expect("close");
            results.push((synchronous, replicated, single, grouped));
        }
    }
    let find = |s: Synchronous, r: bool| {
        results
            .iter()
            .find(|(sync, rep, _, _)| *sync == s && *rep == r)
            .map(|(_, _, single, grouped)| (*single, *grouped))
            .expect("measured")
    };
    let (plain_single, plain_group) = find(Synchronous::Full, false);
    let (crr_single, crr_group) = find(Synchronous::Full, true);
    let (normal_single, _) = find(Synchronous::Normal, true);
    println!();
    println!("ratios (synchronous=FULL):");
    println!(
        "  group commit / one write per commit (cr-sqlite): {:.1}x",
        crr_group / crr_single
    );
    println!(
        "  cr-sqlite write overhead, one write per commit:  {:.2}x slower",
        plain_single / crr_single
    );
    println!(
        "  cr-sqlite write overhead, group commit:          {:.2}x slower",
        plain_group / crr_group
    );
    println!(
        "  synchronous=NORMAL / FULL, one write per commit: {:.1}x",
        normal_single / crr_single
    );

    merge_batch(&dir, scale.batch_changes).await;
}

async fn open(
    dir: &tempfile::TempDir,
    label: &str,
    synchronous: Synchronous,
    replicated: bool,
) -> StoreDb {
    let name: String = label.chars().filter(char::is_ascii_alphanumeric).collect();
    let mut config = StoreConfig::new(dir.path().join(format!("{name}.db")));
    config.extension_dir = Some(dir.path().join("ext"));
    config.synchronous = synchronous;
    config.replicated = replicated;
    StoreDb::open(config, MIGRATIONS).await.expect("open")
}

async fn insert_move(db: &StoreDb) {
    let id = uuid::Uuid::now_v7().to_string();
    db.write(move |c| -> Result<(), Error> {
        c.prepare_cached(
            "INSERT INTO stock_moves (id, store_id, product_id, bin_id, qty, kind, actor, at)
             VALUES (?1, 's1', 'p1', 'b1', -1, 'pick', 'bench', '2026-11-22T00:00:00Z')",
        )?
        .execute([id])?;
        Ok(())
    })
    .await
    .expect("write");
}

async fn single_commits(db: &StoreDb, n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        insert_move(db).await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn group_commits(db: &StoreDb, tasks: usize, per_task: usize) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    insert_move(&db).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("join");
    }
    (tasks * per_task) as f64 / start.elapsed().as_secs_f64()
}

async fn merge_batch(dir: &tempfile::TempDir, target_changes: usize) {
    let source = open(dir, "merge source", Synchronous::Full, true).await;
    let sink = open(dir, "merge sink", Synchronous::Full, true).await;
    // stock_moves rows carry 12 replicated columns each.
    let rows = target_changes.div_ceil(12);
    source
        .write(move |c| -> Result<(), Error> {
            let mut stmt = c.prepare(
                "INSERT INTO stock_moves (id, store_id, product_id, bin_id, qty, kind, lot, expiry,
                    order_id, line_no, reason, actor, at)
                 VALUES (?1, 's1', ?2, 'b1', 5, 'receive', 'L1', '2027-01-01', NULL, NULL, NULL,
                    'bench', '2026-11-22T00:00:00Z')",
            )?;
            for i in 0..rows {
                stmt.execute(rusqlite::params![
                    uuid::Uuid::now_v7().to_string(),
                    format!("p{}", i % 500)
                ])?;
            }
            Ok(())
        })
        .await
        .expect("seed source");
    let extract_start = Instant::now();
    let batch = source
        .read(|c| changes::changes_since(c, ChangeQuery::default()))
        .await
        .expect("extract");
    let extract = extract_start.elapsed();
    let bytes = batch.encode_to_vec();
    let count = batch.changes.len();

    let apply_start = Instant::now();
    let stats = sink
        .write(move |c| {
            let batch = changes::decode_batch(&bytes)?;
            changes::apply_in_transaction(c, &batch)
        })
        .await
        .expect("apply");
    let apply = apply_start.elapsed();
    assert_eq!(stats.received, count);
    println!();
    println!("merging one batch of {count} changes ({rows} stock moves):");
    println!(
        "  extract:  {:>8.0} changes/s ({})",
        rate(count, extract),
        ms(extract)
    );
    println!(
        "  apply:    {:>8.0} changes/s ({}), {} rows changed",
        rate(count, apply),
        ms(apply),
        stats.applied
    );
    println!(
        "  encoded:  {:.1} bytes/change (protobuf, uncompressed)",
        batch.encoded_len() as f64 / count as f64
    );
    source.close().await.expect("close");
    sink.close().await.expect("close");
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
