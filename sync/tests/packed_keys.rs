//! The packed-key reader agrees with cr-sqlite: for random key values, packing in Rust gives
//! the extension's own bytes, and what the reader accepts unpacks to the same values.

use flashkart_sync::packed_key::{self, KeyValue};
use flashkart_sync::schema::store::MIGRATIONS;
use flashkart_sync::{Error, StoreConfig, StoreDb};
use proptest::prelude::*;

fn key_value() -> impl Strategy<Value = KeyValue> {
    prop_oneof![
        any::<i64>().prop_map(KeyValue::Integer),
        (-300_i64..70_000).prop_map(KeyValue::Integer),
        ".{0,40}".prop_map(KeyValue::Text),
        "[a-f0-9-]{36}".prop_map(KeyValue::Text),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(KeyValue::Blob),
        Just(KeyValue::Null),
        any::<f64>()
            .prop_filter("NaN has many encodings", |f| !f.is_nan())
            .prop_map(KeyValue::Real),
    ]
}

#[test]
fn packing_matches_the_extension() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = StoreConfig::new(dir.path().join("keys.db"));
    config.extension_dir = Some(dir.path().join("ext"));
    let db = runtime
        .block_on(StoreDb::open(config, MIGRATIONS))
        .expect("open");
    proptest!(ProptestConfig::with_cases(512), |(values in proptest::collection::vec(key_value(), 1..4))| {
        let params: Vec<rusqlite::types::Value> = values.iter().map(KeyValue::to_sql).collect();
        let holes = vec!["?"; params.len()].join(", ");
        let sql = format!("SELECT crsql_pack_columns({holes})");
        let theirs: Vec<u8> = runtime
            .block_on(db.read(move |c| -> Result<Vec<u8>, Error> {
                Ok(c.query_row(&sql, rusqlite::params_from_iter(params), |r| r.get(0))?)
            }))
            .expect("pack");
        prop_assert_eq!(packed_key::encode(&values).expect("packs"), theirs.clone());
        if let Ok(decoded) = packed_key::decode(&theirs) {
            prop_assert_eq!(decoded, values);
        }
    });
    runtime.block_on(db.close()).expect("close");
}
