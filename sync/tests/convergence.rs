//! Two store databases edit concurrently, then exchange change batches in random order with
//! duplicates and re-deliveries: both must end with identical contents.

use flashkart_proto::sync::ChangeBatch;
use flashkart_sync::changes::{self, ChangeQuery};
use flashkart_sync::content::content_digest;
use flashkart_sync::schema::store::{MIGRATIONS, SYNCED_TABLES};
use flashkart_sync::{Error, StoreConfig, StoreDb};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rusqlite::params;

async fn open(dir: &tempfile::TempDir, name: &str) -> StoreDb {
    let mut config = StoreConfig::new(dir.path().join(format!("{name}.db")));
    config.extension_dir = Some(dir.path().join("ext"));
    StoreDb::open(config, MIGRATIONS)
        .await
        .expect("open store db")
}

async fn digest(db: &StoreDb) -> [u8; 32] {
    let tables: Vec<&str> = SYNCED_TABLES.iter().map(|t| t.name).collect();
    db.read(move |conn| content_digest(conn, &tables))
        .await
        .expect("digest")
}

async fn batch_since(db: &StoreDb, after: i64, exclude: [u8; 16]) -> ChangeBatch {
    db.read(move |conn| {
        changes::changes_since(
            conn,
            ChangeQuery {
                after_db_version: after,
                exclude_site: Some(exclude),
                max_changes: None,
            },
        )
    })
    .await
    .expect("changes since")
}

async fn apply(db: &StoreDb, batch: ChangeBatch) -> changes::ApplyStats {
    db.write(move |conn| changes::apply_in_transaction(conn, &batch))
        .await
        .expect("apply")
}

/// One random edit on a small key space, so the two sides collide often.
async fn random_edit(db: &StoreDb, rng: &mut StdRng, actor: &'static str) {
    let product = format!("p{}", rng.random_range(0..6));
    let choice = rng.random_range(0..5);
    let value = rng.random_range(0..1000_i64);
    let move_id = uuid::Uuid::now_v7().to_string();
    let bin = format!("b{}", rng.random_range(0..3));
    db.write(move |conn| -> Result<(), Error> {
        match choice {
            0 => {
                conn.execute(
                    "INSERT INTO products (id, name, unit_weight_g) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                    params![product, format!("{actor}-{value}"), value],
                )?;
            }
            1 => {
                conn.execute(
                    "UPDATE products SET unit_weight_g = ?2 WHERE id = ?1",
                    params![product, value],
                )?;
            }
            2 => {
                conn.execute(
                    "INSERT INTO stock_moves (id, product_id, qty, kind, actor, at)
                     VALUES (?1, ?2, ?3, 'receive', ?4, '2026-11-22T00:00:00Z')",
                    params![move_id, product, value, actor],
                )?;
            }
            3 => {
                conn.execute(
                    "INSERT OR REPLACE INTO product_bins (product_id, bin_id) VALUES (?1, ?2)",
                    params![product, bin],
                )?;
            }
            _ => {
                conn.execute(
                    "DELETE FROM product_bins WHERE product_id = ?1 AND bin_id = ?2",
                    params![product, bin],
                )?;
                if value % 3 == 0 {
                    conn.execute("DELETE FROM products WHERE id = ?1", params![product])?;
                }
            }
        }
        Ok(())
    })
    .await
    .expect("edit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_converge_under_reordering_and_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(&dir, "a").await;
    let b = open(&dir, "b").await;
    assert_ne!(a.site_id(), b.site_id());

    for seed in 0..3_u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut rng_b = StdRng::seed_from_u64(seed + 1000);
        let mut from_a = Vec::new();
        let mut from_b = Vec::new();
        let (mut seen_a, mut seen_b) = (0, 0);
        for _round in 0..8 {
            // Both sides edit at the same time.
            let edits_a = async {
                for _ in 0..10 {
                    random_edit(&a, &mut rng, "a").await;
                }
            };
            let edits_b = async {
                for _ in 0..10 {
                    random_edit(&b, &mut rng_b, "b").await;
                }
            };
            tokio::join!(edits_a, edits_b);
            let batch = batch_since(&a, seen_a, b.site_id()).await;
            seen_a = batch.up_to_db_version;
            from_a.push(batch);
            let batch = batch_since(&b, seen_b, a.site_id()).await;
            seen_b = batch.up_to_db_version;
            from_b.push(batch);
        }
        // Deliver in random order, each batch possibly several times.
        let mut deliveries_a = from_a.clone();
        deliveries_a.extend(from_a.iter().filter(|_| rng.random_bool(0.5)).cloned());
        deliveries_a.shuffle(&mut rng);
        let mut deliveries_b = from_b.clone();
        deliveries_b.extend(from_b.iter().filter(|_| rng.random_bool(0.5)).cloned());
        deliveries_b.shuffle(&mut rng);
        for batch in deliveries_a {
            apply(&b, batch).await;
        }
        for batch in deliveries_b {
            apply(&a, batch).await;
        }
        assert_eq!(
            digest(&a).await,
            digest(&b).await,
            "seed {seed}: replicas differ"
        );

        // Re-delivering everything once more changes nothing.
        let before = digest(&a).await;
        for batch in from_b {
            let stats = apply(&a, batch).await;
            assert_eq!(stats.applied, 0, "a re-delivered batch must be a no-op");
        }
        assert_eq!(digest(&a).await, before);
    }

    // Deletes converged too: a product deleted on one side is gone on both.
    let count = |db: StoreDb| async move {
        db.read(|conn| -> Result<i64, Error> {
            Ok(conn.query_row("SELECT count(*) FROM products", [], |r| r.get(0))?)
        })
        .await
        .expect("count")
    };
    assert_eq!(count(a.clone()).await, count(b.clone()).await);
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_on_one_side_wins_over_stale_update_and_converges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(&dir, "a").await;
    let b = open(&dir, "b").await;
    a.write(|conn| -> Result<(), Error> {
        conn.execute(
            "INSERT INTO products (id, name) VALUES ('milk', 'Milk 1L')",
            [],
        )?;
        Ok(())
    })
    .await
    .expect("insert");
    let initial = batch_since(&a, 0, b.site_id()).await;
    apply(&b, initial).await;

    a.write(|conn| -> Result<(), Error> {
        conn.execute("DELETE FROM products WHERE id = 'milk'", [])?;
        Ok(())
    })
    .await
    .expect("delete");
    let deletion = batch_since(&a, 0, b.site_id()).await;
    apply(&b, deletion.clone()).await;
    apply(&b, deletion).await;
    let remaining: i64 = b
        .read(|conn| -> Result<i64, Error> {
            Ok(conn.query_row("SELECT count(*) FROM products", [], |r| r.get(0))?)
        })
        .await
        .expect("count");
    assert_eq!(remaining, 0);
    assert_eq!(digest(&a).await, digest(&b).await);
}

/// The cloud relays catalog changes: it merges several of the catalog's transactions into a
/// store replica in one local transaction (and group commit may put two merges in one), then a
/// store reads them from the replica in small chunks. Every change of the relayed origin must
/// arrive exactly once, in order, and the store must end equal to the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_changes_merged_together_read_back_in_order() {
    use flashkart_sync::chunks::{Assembler, Position, read_chunk};

    let dir = tempfile::tempdir().expect("tempdir");
    let origin = open(&dir, "catalog").await;
    let relay = open(&dir, "replica").await;
    let store = open(&dir, "store").await;
    let mut rng = StdRng::seed_from_u64(7);
    let mut batches = Vec::new();
    let mut seen = 0;
    for _ in 0..4 {
        for _ in 0..25 {
            random_edit(&origin, &mut rng, "hq").await;
        }
        let batch = batch_since(&origin, seen, relay.site_id()).await;
        seen = batch.up_to_db_version;
        batches.push(batch);
    }
    // The replica's own clock runs ahead of the origin's (as it does in the cloud, where the
    // store's pushes advance it), so merged changes take the replica's transaction version.
    for n in 0..150 {
        relay
            .write(move |conn| -> Result<(), Error> {
                conn.execute(
                    "INSERT INTO bins (id, store_id, pick_seq) VALUES (?1, 's', ?2)",
                    params![format!("bin-{n}"), n],
                )?;
                Ok(())
            })
            .await
            .expect("relay's own write");
    }
    // Many origin transactions per batch, and two batches in one local transaction.
    for pair in batches.chunks(2) {
        let pair = pair.to_vec();
        relay
            .write(move |conn| -> Result<(), Error> {
                for batch in &pair {
                    changes::apply_in_transaction(conn, batch)?;
                }
                Ok(())
            })
            .await
            .expect("relay merge");
    }

    let origin_id = origin.site_id();
    let mut assembler = Assembler::new(origin_id, Position::START, 1 << 24);
    let mut chunks_read = 0;
    loop {
        let after = assembler.received();
        let read = relay
            .read(move |conn| read_chunk(conn, &origin_id, after, 300))
            .await
            .expect("read chunk");
        let Some(read) = read else { break };
        chunks_read += 1;
        let complete = assembler.add(read.chunk).expect("chunk continues in order");
        if let Some(complete) = complete {
            let batch = complete.batch(&relay.site_id(), after);
            apply(&store, batch).await;
        }
    }
    assert!(chunks_read > 4, "small chunks: {chunks_read}");
    assert_eq!(digest(&store).await, digest(&origin).await);
}
