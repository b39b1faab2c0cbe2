//! Random batches from a registered store: never a crash, never a 5xx, never a row the store
//! does not own. `PROPTEST_CASES` sets how many (default 48 here).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::raw_store::*;
use common::*;
use flashkart_proto::sync::{Change, Value, value::Kind};
use flashkart_sync::packed_key::{self, KeyValue};
use flashkart_sync::schema::Owner;
use flashkart_sync::schema::store::SYNCED_TABLES;
use flashkart_sync::{StoreDb, content};
use proptest::prelude::*;
use reqwest::StatusCode;

fn tables() -> impl Strategy<Value = String> {
    let mut names: Vec<String> = SYNCED_TABLES.iter().map(|t| t.name.to_owned()).collect();
    names.extend(
        [
            "",
            "nope",
            "staff",
            "flashkart_sync_cursors",
            "crsql_changes",
            "bins__crsql_clock",
        ]
        .map(String::from),
    );
    proptest::sample::select(names)
}

fn key_value() -> impl Strategy<Value = KeyValue> {
    prop_oneof![
        any::<i64>().prop_map(KeyValue::Integer),
        (0_i64..300).prop_map(KeyValue::Integer),
        "[a-z0-9-]{0,40}".prop_map(KeyValue::Text),
        ".{0,3}".prop_map(KeyValue::Text),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(KeyValue::Blob),
        Just(KeyValue::Null),
        any::<f64>().prop_map(KeyValue::Real),
    ]
}

fn pk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(key_value(), 0..3)
            .prop_map(|values| packed_key::encode(&values).unwrap_or_default()),
        proptest::collection::vec(any::<u8>(), 0..24),
        Just(Vec::new()),
    ]
}

fn cid() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "store_id",
            "qty",
            "id",
            "-1",
            "lat",
            "at",
            "reply",
            "rider_id",
            "order_id",
            "aisle",
            "name",
            "unit_price_minor",
            "status",
            "short_qty",
        ])
        .prop_map(String::from),
        ".{0,12}",
    ]
}

fn value() -> impl Strategy<Value = Option<Value>> {
    let kind = prop_oneof![
        any::<bool>().prop_map(Kind::Null),
        any::<i64>().prop_map(Kind::Integer),
        any::<f64>().prop_map(Kind::Real),
        prop_oneof![Just("a".to_owned()), Just("b".to_owned()), ".{0,20}"].prop_map(Kind::Text),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Kind::Blob),
    ];
    prop_oneof![
        8 => kind.prop_map(|k| Some(Value { kind: Some(k) })),
        1 => Just(Some(Value { kind: None })),
        1 => Just(None),
    ]
}

fn clock() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 1_i64..4, 1 => any::<i64>()]
}

fn change() -> impl Strategy<Value = Change> {
    (
        tables(),
        pk(),
        cid(),
        value(),
        clock(),
        clock(),
        prop::bool::weighted(0.95),
    )
        .prop_map(|(table, pk, cid, val, col_version, cl, own_site)| Change {
            table,
            pk,
            cid,
            val,
            col_version,
            db_version: 0,
            // Another origin is refused by the chunk's own checks; mostly send our own.
            site_id: if own_site { Vec::new() } else { vec![9; 16] },
            cl,
            seq: 0,
        })
}

/// Every edge-owned row in the replica belongs to `store`.
async fn foreign_rows(db: &StoreDb, store: &'static str) -> i64 {
    let mut foreign = 0;
    for table in SYNCED_TABLES.iter().filter(|t| t.owner == Owner::Edge) {
        let column = table.store_column.unwrap();
        foreign += count(
            db,
            format!(
                "SELECT count(*) FROM \"{}\" WHERE \"{column}\" IS NOT '{store}'",
                table.name
            ),
        )
        .await;
    }
    foreign
}

async fn cloud_owned_digest(db: &StoreDb) -> [u8; 32] {
    db.read(|conn| {
        let tables: Vec<&str> = SYNCED_TABLES
            .iter()
            .filter(|t| t.owner == Owner::Cloud)
            .map(|t| t.name)
            .collect();
        content::content_digest(conn, &tables)
    })
    .await
    .unwrap()
}

#[test]
fn random_batches_never_crash_the_cloud_nor_write_foreign_rows() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown, store, replica, cloud_rows) = runtime.block_on(async {
        let (running, shutdown) = start_cloud(dir.path()).await;
        let base = format!("http://{}", running.addr);
        let store = RawStore::register(&base, "a", [5; 16]).await;
        RawStore::register(&base, "b", [6; 16]).await;
        cloud_order(&running.cloud, "a", "order-a".into()).await;
        let replica = running.cloud.replica("a").await.unwrap();
        let cloud_rows = cloud_owned_digest(replica.db()).await;
        (running, shutdown, store, replica, cloud_rows)
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(48);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::new());
    runner
        .run(&proptest::collection::vec(change(), 1..6), |changes| {
            let (status, message) = runtime.block_on(store.push(changes));
            prop_assert!(!status.is_server_error(), "{status}: {message}");
            *statuses.lock().unwrap().entry(status.as_u16()).or_insert(0) += 1;
            Ok(())
        })
        .unwrap();
    runtime.block_on(async {
        assert_eq!(
            foreign_rows(replica.db(), "a").await,
            0,
            "no row of another store"
        );
        assert_eq!(
            cloud_owned_digest(replica.db()).await,
            cloud_rows,
            "no cloud-owned row changed"
        );
        let health = reqwest::get(format!("http://{}/healthz", running.addr))
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        // A well-formed push still goes through after all that.
        let (status, message) = store.push(stock_move("a", "after-fuzz", 1)).await;
        assert_eq!(status, StatusCode::OK, "{message}");
        drop(replica);
        shutdown.cancel();
        running.wait().await.unwrap();
    });
    eprintln!(
        "random batches: answers by status {:?}",
        statuses.lock().unwrap()
    );
}
