//! A registered store whose pushes are cut off at every step of the request, and a cloud that
//! dies between committing a push and projecting it: the read model still ends equal to what
//! the replica holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::raw_store::*;
use common::*;
use flashkart_proto::sync::{Chunk, HelloRequest, PushRequest};
use flashkart_sync::changes;
use flashkart_sync::chunks::{Position, read_chunk};
use flashkart_sync::protocol;
use flashkart_sync::{StoreDb, client};
use prost::Message;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

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
        rm_sql::count(&running.cloud, "SELECT count(*) FROM rm_moves").await,
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
