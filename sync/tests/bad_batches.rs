//! A truncated, corrupted or forged batch is rejected with an error and changes nothing.

use flashkart_proto::sync::ChangeBatch;
use flashkart_sync::changes::{self, ChangeQuery};
use flashkart_sync::content::content_digest;
use flashkart_sync::schema::store::{MIGRATIONS, SYNCED_TABLES};
use flashkart_sync::{BatchError, Error, StoreConfig, StoreDb};
use proptest::prelude::*;
use prost::Message;

async fn pair() -> (StoreDb, StoreDb, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = |name: &str| {
        let mut config = StoreConfig::new(dir.path().join(name));
        config.extension_dir = Some(dir.path().join("ext"));
        StoreDb::open(config, MIGRATIONS)
    };
    let a = open("a.db").await.expect("a");
    let b = open("b.db").await.expect("b");
    (a, b, dir)
}

async fn source_batch(a: &StoreDb) -> ChangeBatch {
    a.write(|c| -> Result<(), Error> {
        for i in 0..20 {
            c.execute(
                "INSERT INTO products (id, name, unit_weight_g) VALUES (?1, ?2, ?3)",
                rusqlite::params![format!("p{i}"), format!("Product {i}"), i * 10],
            )?;
        }
        Ok(())
    })
    .await
    .expect("seed");
    a.read(|c| changes::changes_since(c, ChangeQuery::default()))
        .await
        .expect("batch")
}

async fn state(db: &StoreDb) -> ([u8; 32], i64) {
    let tables: Vec<&str> = SYNCED_TABLES.iter().map(|t| t.name).collect();
    db.read(move |c| -> Result<_, Error> {
        let digest = content_digest(c, &tables)?;
        let version: i64 = c.query_row("SELECT crsql_db_version()", [], |r| r.get(0))?;
        Ok((digest, version))
    })
    .await
    .expect("state")
}

async fn apply_bytes(db: &StoreDb, bytes: Vec<u8>) -> Result<changes::ApplyStats, Error> {
    db.write(move |c| {
        let batch = changes::decode_batch(&bytes)?;
        changes::apply_in_transaction(c, &batch)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_corrupted_batches_change_nothing() {
    let (a, b, _dir) = pair().await;
    let batch = source_batch(&a).await;
    let bytes = batch.encode_to_vec();
    let before = state(&b).await;

    // Truncated anywhere: either undecodable or missing changes.
    for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        let err = apply_bytes(&b, bytes[..cut].to_vec())
            .await
            .expect_err("truncated");
        assert!(matches!(err, Error::Batch(_)), "cut at {cut}: {err}");
        assert_eq!(state(&b).await, before);
    }

    // A dropped change with the count left alone.
    let mut short = batch.clone();
    short.changes.pop();
    let err = apply_bytes(&b, short.encode_to_vec())
        .await
        .expect_err("short");
    assert!(matches!(
        err,
        Error::Batch(BatchError::CountMismatch { .. })
    ));

    // A value altered in transit.
    let mut altered = batch.clone();
    altered.changes[5].col_version += 1;
    let err = apply_bytes(&b, altered.encode_to_vec())
        .await
        .expect_err("altered");
    assert!(matches!(err, Error::Batch(BatchError::DigestMismatch)));

    // A well-formed, resealed batch with one bad change is refused whole.
    let mut forged = batch.clone();
    forged.changes[7].table = "no_such_table".into();
    let forged = changes::seal(
        forged.sender_site_id.clone(),
        0,
        forged.up_to_db_version,
        forged.changes,
    );
    let err = apply_bytes(&b, forged.encode_to_vec())
        .await
        .expect_err("forged");
    assert!(
        matches!(err, Error::Batch(BatchError::UnknownTable { index: 7, .. })),
        "{err}"
    );
    assert_eq!(
        state(&b).await,
        before,
        "nothing of a refused batch is applied"
    );

    // The intact batch still applies, all of it.
    let stats = apply_bytes(&b, bytes).await.expect("intact batch");
    assert_eq!(stats.received, batch.changes.len());
    assert!(stats.applied > 0);
    assert_ne!(state(&b).await.0, before.0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Flipping any byte of a batch never gets a partial or wrong write through.
    #[test]
    fn any_single_byte_corruption_is_rejected_or_harmless(position in any::<prop::sample::Index>(), flip in 1_u8..=255) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(async {
            let (a, b, _dir) = pair().await;
            let batch = source_batch(&a).await;
            let mut bytes = batch.encode_to_vec();
            let i = position.index(bytes.len());
            bytes[i] ^= flip;
            let before = state(&b).await;
            match apply_bytes(&b, bytes).await {
                Err(_) => prop_assert_eq!(state(&b).await, before),
                // Only a flip in the sender's own metadata (not covered by the digest) can
                // pass; then the changes are exactly the original ones.
                Ok(stats) => prop_assert_eq!(stats.received, batch.changes.len()),
            }
            Ok(())
        })?;
    }
}
