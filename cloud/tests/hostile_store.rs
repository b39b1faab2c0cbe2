//! A registered store that turns hostile: malformed changes, facts about things it does not
//! own, pushes cut off at every step, and random batches. The cloud must answer 4xx, keep
//! serving, write nothing it should not, and keep its read model equal to what the replicas
//! hold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use flashkart_proto::sync::{
    Change, Chunk, HelloRequest, HelloResponse, PushRequest, Value, value::Kind,
};
use flashkart_sync::changes;
use flashkart_sync::chunks::{Position, read_chunk};
use flashkart_sync::packed_key::{self, KeyValue};
use flashkart_sync::protocol;
use flashkart_sync::schema::Owner;
use flashkart_sync::schema::store::SYNCED_TABLES;
use flashkart_sync::{StoreDb, client, content};
use prost::Message;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A store speaking the sync protocol by hand, so it can send what no edge would.
struct RawStore {
    http: reqwest::Client,
    base: String,
    token: String,
    site: [u8; 16],
}

impl RawStore {
    async fn register(base: &str, id: &str, site: [u8; 16]) -> Self {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{base}/admin/v1/stores"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({ "id": id }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: serde_json::Value = response.json().await.unwrap();
        let store = Self {
            http,
            base: base.to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
            site,
        };
        store.hello().await;
        store
    }

    /// Says hello (dropping any half-sent transaction); returns where the cloud stands.
    async fn hello(&self) -> Position {
        let body = HelloRequest {
            edge_site_id: self.site.to_vec(),
            schema_version: 1,
        }
        .encode_to_vec();
        let (status, body) = self.post(protocol::HELLO_PATH, body).await;
        assert_eq!(status, StatusCode::OK);
        Position::of(
            &HelloResponse::decode(body.as_slice())
                .unwrap()
                .acked
                .unwrap(),
        )
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", protocol::CONTENT_TYPE)
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.bytes().await.unwrap().to_vec())
    }

    /// Pushes `changes` as one transaction after where the cloud stands.
    async fn push(&self, mut changes: Vec<Change>) -> (StatusCode, String) {
        let after = self.hello().await;
        let db_version = after.db_version + 1;
        for (seq, change) in changes.iter_mut().enumerate() {
            change.db_version = db_version;
            change.seq = seq as i64;
            if change.site_id.is_empty() {
                change.site_id = self.site.to_vec();
            }
        }
        let last = changes.last().map_or(-1, |c| c.seq);
        let chunk = Chunk {
            after: Some(after.cursor(&self.site)),
            batch: Some(changes::seal(
                self.site.to_vec(),
                after.db_version,
                db_version,
                changes,
            )),
            last_db_version: db_version,
            last_seq: last,
            txn_last_seq: last,
        };
        let body = PushRequest { chunk: Some(chunk) }.encode_to_vec();
        let (status, body) = self.post(protocol::PUSH_PATH, body).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn text_key(id: &str) -> Vec<u8> {
    packed_key::encode(&[KeyValue::Text(id.into())]).unwrap()
}

fn text(value: &str) -> Option<Value> {
    Some(Value {
        kind: Some(Kind::Text(value.into())),
    })
}

fn int(value: i64) -> Option<Value> {
    Some(Value {
        kind: Some(Kind::Integer(value)),
    })
}

fn real(value: f64) -> Option<Value> {
    Some(Value {
        kind: Some(Kind::Real(value)),
    })
}

/// One column of a new row.
fn cell(table: &str, pk: &[u8], cid: &str, val: Option<Value>) -> Change {
    Change {
        table: table.into(),
        pk: pk.to_vec(),
        cid: cid.into(),
        val,
        col_version: 1,
        db_version: 0,
        site_id: Vec::new(),
        cl: 1,
        seq: 0,
    }
}

/// A whole new row: `(column, value)` pairs.
fn row(table: &str, id: &str, columns: &[(&str, Option<Value>)]) -> Vec<Change> {
    let pk = text_key(id);
    columns
        .iter()
        .map(|(cid, val)| cell(table, &pk, cid, val.clone()))
        .collect()
}

fn stock_move(store: &str, id: &str, qty: i64) -> Vec<Change> {
    row(
        "stock_moves",
        id,
        &[
            ("store_id", text(store)),
            ("product_id", text("p1")),
            ("qty", int(qty)),
            ("kind", text("receive")),
        ],
    )
}

async fn rm_count(cloud: &flashkart_cloud::Cloud, sql: &str) -> i64 {
    count(cloud.projection().db(), sql).await
}

/// Waits until the read model holds stock move `id`: everything the store pushed before it
/// has then been projected too (the projector follows each store's changes in order).
async fn projected_move(cloud: &flashkart_cloud::Cloud, id: &str) {
    let mut projected = cloud.projection().projected();
    let sql = format!("SELECT count(*) FROM rm_moves WHERE id = '{id}'");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while rm_count(cloud, &sql).await == 0 {
        tokio::time::timeout_at(deadline, projected.changed())
            .await
            .expect("projected in time")
            .unwrap();
    }
}

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
        rm_count(&cloud, "SELECT count(*) FROM rm_riders").await,
        0,
        "the forged position is ignored"
    );
    assert_eq!(
        rm_count(
            &cloud,
            "SELECT count(*) FROM rm_timeline WHERE order_id = 'ob'"
        )
        .await,
        0,
        "the forged event is ignored"
    );
    assert_eq!(
        rm_count(&cloud, "SELECT count(*) FROM rm_replies").await,
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
        rm_count(
            &cloud,
            "SELECT count(*) FROM rm_riders WHERE rider_id = 'rb' AND store_id = 'b'"
        )
        .await,
        1,
        "the rider stays at b"
    );
    assert_eq!(
        rm_count(&cloud, "SELECT count(*) FROM rm_replies WHERE assignment_id = 'asg-b' AND store_id = 'b' AND reply = 'accepted'").await,
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
        rm_count(
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

/// The read model's stock and moves for a store, against what its replica holds.
async fn assert_read_model_matches(cloud: &flashkart_cloud::Cloud, store: &str) {
    let replica = cloud.replica(store).await.unwrap();
    let in_replica = count(
        replica.db(),
        format!("SELECT count(*) FROM stock_moves WHERE store_id = '{store}'"),
    )
    .await;
    let sum_replica = count(
        replica.db(),
        format!("SELECT coalesce(sum(qty), 0) FROM stock_moves WHERE store_id = '{store}'"),
    )
    .await;
    let in_model = rm_count(cloud, "SELECT count(*) FROM rm_moves").await;
    let sum_model = rm_count(
        cloud,
        &format!("SELECT coalesce(sum(on_hand), 0) FROM rm_stock WHERE store_id = '{store}'"),
    )
    .await;
    assert_eq!((in_model, sum_model), (in_replica, sum_replica));
}

/// Sends the first `cut` bytes of an HTTP request, then hangs up without reading the answer.
async fn send_and_hang_up(addr: std::net::SocketAddr, request: &[u8], cut: usize, wait: bool) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(&request[..cut]).await.unwrap();
    if wait {
        // Everything sent: wait for the first byte of the answer (the push is then done), and
        // hang up before reading the rest.
        let mut byte = [0_u8; 1];
        let _ = socket.read(&mut byte).await;
    }
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_cut_at_every_step_still_reaches_the_read_model() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let base = format!("http://{}", running.addr);
    let edge = open_edge(dir.path(), "a").await;
    let store = RawStore::register(&base, "a", edge.site_id()).await;

    // 3,000 moves in transactions of 20, read as the edge's client reads them (each chunk
    // ends at a transaction's end, so the position after hello is where the next one starts).
    for t in 0..150 {
        edge.write(move |conn| {
            for i in 0..20 {
                conn.execute(
                    "INSERT INTO stock_moves (id, store_id, product_id, qty, kind, actor, at)
                     VALUES (?1, 'a', 'p1', ?2, 'receive', 't', '2026-01-01T00:00:00.000Z')",
                    rusqlite::params![format!("m-{t}-{i}"), 1 + i % 3],
                )?;
            }
            Ok::<_, flashkart_sync::Error>(())
        })
        .await
        .unwrap();
    }
    let request_for = |chunk: Chunk| {
        let body = PushRequest { chunk: Some(chunk) }.encode_to_vec();
        let mut request = format!(
            "POST {} HTTP/1.1\r\nhost: cloud\r\nauthorization: Bearer {}\r\n\
             content-type: {}\r\ncontent-length: {}\r\n\r\n",
            protocol::PUSH_PATH,
            store.token,
            protocol::CONTENT_TYPE,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request
    };
    let site = edge.site_id();
    let next_chunk = || async {
        let after = store.hello().await;
        edge.read(move |conn| read_chunk(conn, &site, after, 64 << 10))
            .await
            .unwrap()
            .map(|read| read.chunk)
    };
    // Cut each push at a different step: in the headers, in the body, with the body whole
    // but unanswered, and after the answer began. Every cut repeats on the next chunk.
    let mut step = 0;
    while let Some(chunk) = next_chunk().await {
        let request = request_for(chunk);
        let header_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let (cut, wait) = match step % 5 {
            0 => (header_end / 2, false),
            1 => (header_end + (request.len() - header_end) / 2, false),
            2 => (request.len() - 1, false),
            3 => (request.len(), false),
            _ => (request.len(), true),
        };
        send_and_hang_up(running.addr, &request, cut, wait).await;
        step += 1;
        assert!(step < 1_000, "the pushes make progress");
    }
    assert!(
        step >= 10,
        "every cut was tried on several chunks ({step} pushes)"
    );
    // The last cut may still be applying: the store reconnects like the real client does.
    let sync = client::spawn(
        client_config(&base, &store.token),
        edge.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    projected_move(&running.cloud, "m-149-19").await;
    assert_read_model_matches(&running.cloud, "a").await;
    assert_eq!(
        rm_count(&running.cloud, "SELECT count(*) FROM rm_moves").await,
        3_000
    );

    sync.task.abort();
    edge.close().await.unwrap();
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_committed_before_a_crash_are_projected_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let base = format!("http://{}", running.addr);
    let store = RawStore::register(&base, "a", [3; 16]).await;
    let (status, _) = store.push(stock_move("a", "before", 4)).await;
    assert_eq!(status, StatusCode::OK);
    projected_move(&running.cloud, "before").await;
    shutdown.cancel();
    running.wait().await.unwrap();

    // The cloud is down; a push is committed to the replica and the process dies before the
    // projector sees it (here: the replica is written by the sync server's own code, with no
    // cloud around it).
    let config = cloud_config(dir.path());
    let mut db_config = flashkart_sync::StoreConfig::new(config.data_dir.join("stores/a.db"));
    db_config.extension_dir = config.extension_dir.clone();
    let db = StoreDb::open(db_config, flashkart_sync::schema::store::MIGRATIONS)
        .await
        .unwrap();
    let replica = flashkart_sync::server::Replica::new(
        "a".into(),
        db.clone(),
        flashkart_sync::server::ReplicaLimits::default(),
    )
    .await
    .unwrap();
    let hello = replica
        .hello(
            &HelloRequest {
                edge_site_id: vec![3; 16],
                schema_version: 1,
            },
            &[3; 16],
        )
        .await
        .unwrap();
    let after = Position::of(&hello.acked.unwrap());
    let mut changes = stock_move("a", "while-down", 6);
    for (seq, change) in changes.iter_mut().enumerate() {
        change.db_version = after.db_version + 1;
        change.seq = seq as i64;
        change.site_id = vec![3; 16];
    }
    let last = changes.last().unwrap().seq;
    replica
        .push(
            Chunk {
                after: Some(after.cursor(&[3; 16])),
                batch: Some(changes::seal(
                    vec![3; 16],
                    after.db_version,
                    after.db_version + 1,
                    changes,
                )),
                last_db_version: after.db_version + 1,
                last_seq: last,
                txn_last_seq: last,
            },
            &[3; 16],
        )
        .await
        .unwrap();
    drop(replica);
    db.close().await.unwrap();

    let (running, shutdown) = start_cloud(dir.path()).await;
    projected_move(&running.cloud, "while-down").await;
    assert_read_model_matches(&running.cloud, "a").await;
    shutdown.cancel();
    running.wait().await.unwrap();
}

mod random_batches {
    //! Random batches from a registered store: never a crash, never a 5xx, never a row the
    //! store does not own. `PROPTEST_CASES` sets how many (default 48 here).

    use proptest::prelude::*;

    use super::*;

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
}
