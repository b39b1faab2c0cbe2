//! The cloud's check of what a store pushes ([`authorize`]), on the rows of cash on delivery:
//! a store may push its own hand-ins and the cash its riders collected, but not a hand-in
//! naming another store, not one overwriting another store's, and not the cloud-owned payment
//! columns of an order.

use flashkart_proto::sync::Change;
use flashkart_sync::authorize::{AuthorizeError, authorize};
use flashkart_sync::changes::{self, ChangeQuery};
use flashkart_sync::schema::Owner;
use flashkart_sync::schema::store::{MIGRATIONS, synced_table};
use flashkart_sync::{Error, StoreConfig, StoreDb};

async fn open(dir: &tempfile::TempDir, name: &str) -> StoreDb {
    let mut config = StoreConfig::new(dir.path().join(format!("{name}.db")));
    config.extension_dir = Some(dir.path().join("ext"));
    StoreDb::open(config, MIGRATIONS)
        .await
        .expect("open store db")
}

/// The changes `sql` makes at the edge (and nothing written before it).
async fn changes_of(edge: &StoreDb, sql: &'static str) -> Vec<Change> {
    let before: i64 = edge
        .read(|c| {
            c.query_row("SELECT crsql_db_version()", [], |r| r.get(0))
                .map_err(Error::from)
        })
        .await
        .expect("db version");
    edge.write(move |c| c.execute_batch(sql).map_err(Error::from))
        .await
        .expect("edge write");
    edge.read(move |c| {
        changes::changes_since(
            c,
            ChangeQuery {
                after_db_version: before,
                ..ChangeQuery::default()
            },
        )
    })
    .await
    .expect("edge changes")
    .changes
}

/// The cloud's verdict on `changes` from store `s1`'s database, against `replica`.
async fn verdict(replica: &StoreDb, edge: &StoreDb, changes: Vec<Change>) -> Result<(), String> {
    let site = edge.site_id();
    replica
        .read(move |c| match authorize(c, "s1", &site, &changes) {
            Ok(()) => Ok(Ok(())),
            Err(AuthorizeError::Forbidden(violation)) => Ok(Err(violation.to_string())),
            Err(AuthorizeError::Store(error)) => Err(error),
        })
        .await
        .expect("authorize")
}

#[test]
fn the_cash_columns_have_the_owners_the_design_gives_them() {
    for (table, column, owner) in [
        ("orders", "payment_method", Owner::Cloud),
        ("orders", "cash_due_minor", Owner::Cloud),
        ("orders", "currency", Owner::Cloud),
        ("deliveries", "cash_collected_minor", Owner::Edge),
        ("deliveries", "cash_handin_id", Owner::Edge),
        ("cash_handins", "amount_minor", Owner::Edge),
        ("cash_handins", "expected_minor", Owner::Edge),
    ] {
        let synced = synced_table(table).expect(table);
        assert_eq!(synced.owner_of(column), owner, "{table}.{column}");
    }
    assert_eq!(
        synced_table("cash_handins").and_then(|t| t.store_column),
        Some("store_id")
    );
    // The shift sign-offs stay on the premises.
    assert!(synced_table("rider_sign_offs").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_pushes_its_own_cash_rows_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let edge = open(&dir, "edge").await;
    let replica = open(&dir, "replica").await;

    // Its own hand-in and the cash of its own delivery: accepted.
    let own = changes_of(
        &edge,
        "INSERT INTO cash_handins (id, store_id, rider_id, at, amount_minor, expected_minor,
            currency, staff_id)
         VALUES ('h1', 's1', 'r1', '2026-12-04T18:00:00.000Z', 2300, 2340, 'EUR', 'lea');
         INSERT INTO deliveries (order_id, store_id, rider_id, at, cash_collected_minor,
            cash_handin_id)
         VALUES ('o1', 's1', 'r1', '2026-12-04T17:00:00.000Z', 2340, 'h1');",
    )
    .await;
    assert!(own.iter().any(|c| c.table == "cash_handins"));
    assert!(own.iter().any(|c| c.cid == "cash_collected_minor"));
    assert_eq!(verdict(&replica, &edge, own).await, Ok(()));

    // A hand-in naming another store: refused.
    let foreign = changes_of(
        &edge,
        "INSERT INTO cash_handins (id, store_id, rider_id, amount_minor)
         VALUES ('h-s2', 's2', 'r9', 100)",
    )
    .await;
    let refused = verdict(&replica, &edge, foreign)
        .await
        .expect_err("refused");
    assert!(
        refused.contains("cash_handins.store_id") && refused.contains("other than `s1`"),
        "{refused}"
    );

    // Overwriting a hand-in the replica holds for another store: refused.
    replica
        .write(|c| {
            c.execute(
                "INSERT INTO cash_handins (id, store_id, rider_id, amount_minor)
                 VALUES ('h-other', 's2', 'r9', 500)",
                [],
            )
            .map_err(Error::from)
        })
        .await
        .expect("replica row");
    let overwrite = changes_of(
        &edge,
        "INSERT INTO cash_handins (id, store_id, rider_id, amount_minor)
         VALUES ('h-other', 's1', 'r1', 1)",
    )
    .await;
    let refused = verdict(&replica, &edge, overwrite)
        .await
        .expect_err("refused");
    assert!(refused.contains("belongs to store `s2`"), "{refused}");

    // The cloud's payment columns of an order, even of an order routed to this store: refused.
    edge.write(|c| {
        c.execute("INSERT INTO orders (id, store_id) VALUES ('o2', 's1')", [])
            .map_err(Error::from)
    })
    .await
    .expect("order row");
    for sql in [
        "UPDATE orders SET payment_method = 'cash' WHERE id = 'o2'",
        "UPDATE orders SET cash_due_minor = 1 WHERE id = 'o2'",
        "UPDATE orders SET currency = 'XXX' WHERE id = 'o2'",
    ] {
        let changes = changes_of(&edge, sql).await;
        assert_eq!(changes.len(), 1, "{sql}");
        let refused = verdict(&replica, &edge, changes).await.expect_err(sql);
        assert!(
            refused.contains("orders.") && refused.contains("owned by the cloud"),
            "{refused}"
        );
    }
    edge.close().await.expect("close edge");
    replica.close().await.expect("close replica");
}
