//! A registered store that turns hostile: malformed changes and facts about things it does
//! not own (pushes cut off and random batches: `hostile_store_cut.rs`,
//! `hostile_store_random.rs`). The cloud must answer 4xx, keep
//! serving, write nothing it should not, and keep its read model equal to what the replicas
//! hold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::raw_store::*;
use common::*;
use flashkart_proto::sync::{Change, Value, value::Kind};
use flashkart_sync::packed_key::{self, KeyValue};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_changes_get_4xx_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let base = format!("http://{}", running.addr);
    let store = RawStore::register(&base, "a", [7; 16]).await;
    let replica = running.cloud.replica("a").await.unwrap();
    let clean = digest(replica.db()).await;

    let key = text_key("m-1");
    let with = |f: &dyn Fn(&mut Change)| {
        let mut changes = stock_move("a", "m-1", 1);
        f(&mut changes[0]);
        changes
    };
    let cases: Vec<(&str, Vec<Change>)> = vec![
        ("empty primary key", with(&|c| c.pk.clear())),
        ("key of zero columns", with(&|c| c.pk = vec![0])),
        (
            "key of two columns",
            with(&|c| {
                c.pk =
                    packed_key::encode(&[KeyValue::Text("m".into()), KeyValue::Integer(1)]).unwrap()
            }),
        ),
        (
            "integer said to be 9 bytes",
            with(&|c| c.pk = vec![1, 0x49, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ),
        (
            "text longer than the key",
            with(&|c| c.pk = vec![1, 0x0B, 0x20, b'a']),
        ),
        (
            "negative text length",
            with(&|c| c.pk = vec![1, 0x0B, 0xF0, b'a']),
        ),
        (
            "key that is not UTF-8",
            with(&|c| c.pk = vec![1, 0x0B, 0x02, 0xC3, 0x28]),
        ),
        (
            "integer key for a text column",
            with(&|c| c.pk = packed_key::encode(&[KeyValue::Integer(5)]).unwrap()),
        ),
        ("bytes after the key", with(&|c| c.pk.push(0))),
        ("unknown type in the key", with(&|c| c.pk = vec![1, 0x07])),
        ("empty column name", with(&|c| c.cid.clear())),
        (
            "no such column",
            with(&|c| c.cid = "qty; DROP TABLE stock_moves".into()),
        ),
        ("the key as a column", with(&|c| c.cid = "id".into())),
        ("no such table", with(&|c| c.table = "nope".into())),
        (
            "cr-sqlite's own table",
            with(&|c| c.table = "stock_moves__crsql_clock".into()),
        ),
        (
            "a local table",
            with(&|c| c.table = "flashkart_sync_cursors".into()),
        ),
        ("value missing", with(&|c| c.val = None)),
        ("empty value", with(&|c| c.val = Some(Value { kind: None }))),
        (
            "text for an integer",
            vec![cell("stock_moves", &key, "qty", text("many"))],
        ),
        (
            "null for a NOT NULL column",
            vec![cell(
                "stock_moves",
                &key,
                "qty",
                Some(Value {
                    kind: Some(Kind::Null(true)),
                }),
            )],
        ),
        (
            "a blob",
            vec![cell(
                "stock_moves",
                &key,
                "lot",
                Some(Value {
                    kind: Some(Kind::Blob(vec![1, 2])),
                }),
            )],
        ),
        (
            "NaN for a position",
            vec![cell(
                "rider_positions",
                &text_key("r"),
                "lat",
                real(f64::NAN),
            )],
        ),
        (
            "100 KB of text",
            with(&|c| c.val = text(&"x".repeat(100_000))),
        ),
        ("a row marker with a value", with(&|c| c.cid = "-1".into())),
        ("column version 0", with(&|c| c.col_version = 0)),
        ("causal length -1", with(&|c| c.cl = -1)),
        ("clock at i64::MAX", with(&|c| c.col_version = i64::MAX)),
        ("site id of 3 bytes", with(&|c| c.site_id = vec![7; 3])),
    ];
    for (what, changes) in cases {
        let (status, message) = store.push(changes).await;
        assert!(status.is_client_error(), "{what}: {status} {message}");
        assert!(!message.is_empty(), "{what}: the refusal says why");
        assert_eq!(digest(replica.db()).await, clean, "{what}: nothing written");
        let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(
            health.status(),
            StatusCode::OK,
            "{what}: the cloud keeps serving"
        );
    }

    // The store can still push what is right.
    let (status, message) = store.push(stock_move("a", "m-ok", 2)).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    projected_move(&running.cloud, "m-ok").await;

    drop(replica);
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_cannot_report_facts_it_does_not_own() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let cloud = running.cloud.clone();
    let base = format!("http://{}", running.addr);
    let forger = RawStore::register(&base, "a", [1; 16]).await;
    let victim = RawStore::register(&base, "b", [2; 16]).await;

    // HQ gave store b a rider, an order and an offer of it to that rider.
    let replica_b = cloud.replica("b").await.unwrap();
    replica_b
        .write(|conn| {
            conn.execute_batch(
                "INSERT INTO riders (id, home_store_id, name) VALUES ('rb', 'b', 'Bea');
                 INSERT INTO orders (id, store_id, placed_at) VALUES ('ob', 'b', '2026-01-01T00:00:00Z');
                 INSERT INTO assignments (id, store_id, order_id, rider_id, offered_at, expires_at)
                   VALUES ('asg-b', 'b', 'ob', 'rb', '2026-01-01T00:00:00Z', '2099-01-01T00:00:00Z');",
            )
            .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    let now = flashkart_cloud::clock::now_rfc3339();

    // Store a writes, in its own rows, facts about b's rider, order and offer.
    let mut forged = row(
        "rider_positions",
        "rb",
        &[
            ("store_id", text("a")),
            ("lat", real(52.5)),
            ("lon", real(13.4)),
            ("at", text("2099-01-01T00:00:00.000Z")),
        ],
    );
    forged.extend(row(
        "order_events",
        "ev-forged",
        &[
            ("store_id", text("a")),
            ("order_id", text("ob")),
            ("to_status", text("DELIVERED")),
            ("at", text(&now)),
        ],
    ));
    forged.extend(row(
        "assignment_replies",
        "asg-b",
        &[
            ("store_id", text("a")),
            ("rider_id", text("rb")),
            ("reply", text("declined")),
            ("at", text(&now)),
        ],
    ));
    forged.extend(stock_move("a", "sentinel-a", 1));
    let (status, message) = forger.push(forged).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a's own rows are a's to write: {message}"
    );
    projected_move(&cloud, "sentinel-a").await;

    assert_eq!(
        rm_sql::count(&cloud, "SELECT count(*) FROM rm_riders").await,
        0,
        "the forged position is ignored"
    );
    assert_eq!(
        rm_sql::count(
            &cloud,
            "SELECT count(*) FROM rm_timeline WHERE order_id = 'ob'"
        )
        .await,
        0,
        "the forged event is ignored"
    );
    assert_eq!(
        rm_sql::count(&cloud, "SELECT count(*) FROM rm_replies").await,
        0,
        "the forged reply is ignored"
    );

    // A row that names two stores at two column versions is refused whole, before the merge.
    let pk = text_key("bin-2");
    let mut two_owners = vec![
        cell("bins", &pk, "store_id", text("a")),
        cell("bins", &pk, "store_id", text("b")),
        cell("bins", &pk, "aisle", text("1")),
    ];
    two_owners[1].col_version = 2;
    let replica_a = cloud.replica("a").await.unwrap();
    let before = digest(replica_a.db()).await;
    let (status, message) = forger.push(two_owners).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
    assert_eq!(
        digest(replica_a.db()).await,
        before,
        "nothing of it written"
    );

    // The real facts from b land as they should.
    let mut real_facts = row(
        "rider_positions",
        "rb",
        &[
            ("store_id", text("b")),
            ("lat", real(52.51)),
            ("lon", real(13.41)),
            ("at", text(&now)),
        ],
    );
    real_facts.extend(row(
        "assignment_replies",
        "asg-b",
        &[
            ("store_id", text("b")),
            ("rider_id", text("rb")),
            ("reply", text("accepted")),
            ("at", text(&now)),
        ],
    ));
    real_facts.extend(stock_move("b", "sentinel-b", 1));
    let (status, message) = victim.push(real_facts).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    projected_move(&cloud, "sentinel-b").await;
    assert_eq!(
        rm_sql::count(
            &cloud,
            "SELECT count(*) FROM rm_riders WHERE rider_id = 'rb' AND store_id = 'b'"
        )
        .await,
        1,
        "the rider stays at b"
    );
    assert_eq!(
        rm_sql::count(&cloud, "SELECT count(*) FROM rm_replies WHERE assignment_id = 'asg-b' AND store_id = 'b' AND reply = 'accepted'").await,
        1,
        "b's rider's answer counts"
    );

    // A store's clock far ahead is clamped to the cloud's: b's own rider, dated 2099.
    let (status, _) = victim
        .push(
            [
                row(
                    "rider_positions",
                    "rb",
                    &[
                        ("store_id", text("b")),
                        ("lat", real(52.52)),
                        ("lon", real(13.42)),
                        ("at", text("2099-01-01T00:00:00.000Z")),
                    ],
                ),
                stock_move("b", "sentinel-b2", 1),
            ]
            .concat(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    projected_move(&cloud, "sentinel-b2").await;
    let limit =
        flashkart_cloud::clock::rfc3339(flashkart_cloud::clock::now() + time::Duration::minutes(3));
    assert_eq!(
        rm_sql::count(
            &cloud,
            &format!("SELECT count(*) FROM rm_riders WHERE rider_id = 'rb' AND at < '{limit}'")
        )
        .await,
        1,
        "a date in 2099 is stored as at most a few minutes ahead"
    );

    drop((replica_a, replica_b));
    shutdown.cancel();
    running.wait().await.unwrap();
}
