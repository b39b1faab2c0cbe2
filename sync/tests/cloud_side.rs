//! The cloud's side of a store database: the rows it writes touch only columns it owns, and the
//! change log answers what changed, per origin and within a limit, without the values.

use flashkart_sync::change_log;
use flashkart_sync::changes::{self, ChangeQuery};
use flashkart_sync::cloud_writes::{
    self, AssignmentRow, GtinRow, OrderLineRow, OrderRow, PriceRow, ProductRow, RiderRow, StoreRow,
};
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

fn order(address: &'static str) -> OrderRow<'static> {
    OrderRow {
        id: "o1",
        store_id: "s1",
        customer_first_name: "Ada",
        address,
        lat: 52.5,
        lon: 13.4,
        delivery_slot: None,
        total_minor: 1_250,
        placed_at: "2026-12-04T07:00:00.000Z",
        routed_at: "2026-12-04T07:00:01.000Z",
        delivery_pin_sha256: Some("00ff"),
        contactless: false,
        payment_method: "cash",
        cash_due_minor: 1_250,
        currency: "EUR",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_writes_only_columns_it_owns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir, "replica").await;
    db.write(|conn| -> Result<(), Error> {
        let product = ProductRow {
            id: "p1",
            sku: "SKU-1",
            name: "Milk",
            category_id: Some("dairy"),
            unit: "each",
            pack_size: 1,
            unit_weight_g: 1_030,
            plu: None,
            active: true,
        };
        cloud_writes::upsert_product(conn, &product)?;
        cloud_writes::upsert_product(
            conn,
            &ProductRow {
                name: "Whole milk",
                ..product
            },
        )?;
        cloud_writes::upsert_price(
            conn,
            &PriceRow {
                product_id: "p1",
                unit_price_minor: 119,
                currency: "EUR",
            },
        )?;
        cloud_writes::upsert_gtin(
            conn,
            &GtinRow {
                gtin: "4006381333931",
                product_id: "p1",
                pack_qty: 1,
            },
        )?;
        cloud_writes::upsert_store(
            conn,
            &StoreRow {
                id: "s1",
                name: "Mitte",
                lat: 52.52,
                lon: 13.40,
            },
        )?;
        cloud_writes::upsert_rider(
            conn,
            &RiderRow {
                id: "r1",
                home_store_id: "s1",
                name: "Grace",
                vehicle: "bicycle",
                active: true,
            },
        )?;
        assert!(cloud_writes::set_enrolment_code(
            conn,
            "r1",
            "ab12",
            "2026-12-07T07:00:00.000Z"
        )?);
        assert!(!cloud_writes::set_enrolment_code(
            conn,
            "nobody",
            "ab12",
            "2026-12-07T07:00:00.000Z"
        )?);
        cloud_writes::insert_order(conn, &order("first"))?;
        // A repeated delivery changes nothing.
        cloud_writes::insert_order(conn, &order("second"))?;
        cloud_writes::insert_order_line(
            conn,
            &OrderLineRow {
                order_id: "o1",
                line_no: 1,
                store_id: "s1",
                product_id: "p1",
                qty: 2,
                unit_price_minor: 119,
            },
        )?;
        cloud_writes::insert_assignment(
            conn,
            &AssignmentRow {
                id: "a1",
                store_id: "s1",
                order_id: "o1",
                rider_id: "r1",
                offered_at: "2026-12-04T07:04:00.000Z",
                expires_at: "2026-12-04T07:04:30.000Z",
            },
        )?;
        // The first cancellation request stands.
        cloud_writes::request_cancel(conn, "o1", "2026-12-04T07:05:00.000Z", "rerouted")?;
        cloud_writes::request_cancel(conn, "o1", "2026-12-04T07:06:00.000Z", "again")?;
        Ok(())
    })
    .await
    .expect("cloud writes");

    // (table, column) of every change the writes made.
    let written = db
        .read(|conn| -> Result<Vec<(String, String)>, Error> {
            Ok(conn
                .prepare("SELECT DISTINCT \"table\", cid FROM crsql_changes")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?)
        })
        .await
        .expect("read changes");
    type Payment = (String, i64, String);
    let (product, order, payment) = db
        .read(|conn| -> Result<(String, [String; 3], Payment), Error> {
            let product = conn.query_row("SELECT name FROM products WHERE id = 'p1'", [], |r| {
                r.get(0)
            })?;
            let order = conn.query_row(
                "SELECT address, cancel_requested_at, cancel_reason FROM orders WHERE id = 'o1'",
                [],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]),
            )?;
            let payment = conn.query_row(
                "SELECT payment_method, cash_due_minor, currency FROM orders WHERE id = 'o1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok((product, order, payment))
        })
        .await
        .expect("read back");
    assert_eq!(product, "Whole milk");
    assert_eq!(order, ["first", "2026-12-04T07:05:00.000Z", "rerouted"]);
    assert_eq!(payment, ("cash".to_owned(), 1_250, "EUR".to_owned()));
    let tables: std::collections::BTreeSet<&str> =
        written.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        tables.into_iter().collect::<Vec<_>>(),
        [
            "assignments",
            "order_lines",
            "orders",
            "prices",
            "product_gtins",
            "products",
            "riders",
            "stores"
        ]
    );
    for (table, column) in &written {
        let owner = synced_table(table).map(|t| t.owner_of(column));
        assert_eq!(owner, Some(Owner::Cloud), "{table}.{column}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_reads_one_origin_by_whole_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let edge = open(&dir, "edge").await;
    let replica = open(&dir, "replica").await;
    let edge_site = edge.site_id();

    // Three transactions at the edge, each merged into the replica on its own.
    let mut after = 0;
    for (txn, moves) in [(1, 2), (2, 1), (3, 3)] {
        edge.write(move |conn| -> Result<(), Error> {
            for n in 0..moves {
                conn.execute(
                    "INSERT INTO stock_moves (id, store_id, product_id, qty, kind)
                     VALUES (?1, 's1', 'p1', 1, 'receive')",
                    [format!("m{txn}-{n}")],
                )?;
            }
            Ok(())
        })
        .await
        .expect("edge write");
        let batch = edge
            .read(move |conn| {
                changes::changes_since(
                    conn,
                    ChangeQuery {
                        after_db_version: after,
                        ..ChangeQuery::default()
                    },
                )
            })
            .await
            .expect("read edge changes");
        after = batch.up_to_db_version;
        replica
            .write(move |conn| changes::apply_in_transaction(conn, &batch))
            .await
            .expect("merge");
    }

    let edge_local = edge
        .read(move |conn| change_log::local_changes_after(conn, &edge_site, 0))
        .await
        .expect("edge local changes");
    let replica_site = replica.site_id();
    let (origins, replica_local, all, first, rest) = replica
        .read(move |conn| -> Result<_, Error> {
            let all = change_log::row_changes(conn, &edge_site, 0, usize::MAX)?;
            let first = change_log::row_changes(conn, &edge_site, 0, 1)?;
            let first_version = first.changes.last().map_or(0, |c| c.db_version);
            let rest = change_log::row_changes(conn, &edge_site, first_version, usize::MAX)?;
            Ok((
                change_log::origins(conn)?,
                change_log::local_changes_after(conn, &replica_site, 0)?,
                all,
                first,
                rest,
            ))
        })
        .await
        .expect("replica change log");

    assert!(origins.contains(&replica_site) && origins.contains(&edge_site));
    // Merged changes carry their origin, so none of them is the replica's own.
    assert_eq!(replica_local, 0);
    assert!(!all.more);
    assert_eq!(all.changes.len() as u64, edge_local);
    assert!(all.changes.iter().all(|c| c.table == "stock_moves"));
    // A limit of one still returns the first transaction whole (two moves), then stops.
    assert!(first.more);
    assert_eq!(first.changes.len(), all.changes.len() * 2 / 6);
    assert!(
        first
            .changes
            .iter()
            .all(|c| c.db_version == first.changes[0].db_version)
    );
    assert_eq!([first.changes, rest.changes].concat(), all.changes);
}
