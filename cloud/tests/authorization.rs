//! Credentials and authorisation of the sync endpoints: unauthenticated or wrongly
//! authenticated requests get 401/403 and change nothing; a store pushing changes to another
//! store's rows, to the catalog or to cloud-owned tables is refused whole with 403.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use flashkart_proto::sync::{Chunk, HelloRequest, HelloResponse, PushRequest, PushResponse};
use flashkart_sync::StoreDb;
use flashkart_sync::changes;
use flashkart_sync::chunks::{Position, read_chunk};
use flashkart_sync::protocol;
use prost::Message;
use reqwest::StatusCode;

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut request = http
        .post(url)
        .header("content-type", protocol::CONTENT_TYPE)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.bytes().await.unwrap().to_vec())
}

async fn register(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    id: &str,
) -> (StatusCode, String) {
    let mut request = http
        .post(format!("{base}/admin/v1/stores"))
        .json(&serde_json::json!({ "id": id }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["token"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The changes `write` makes in a scratch database, re-labelled as coming from `site` and
/// continuing at `after`: what a compromised edge could send.
async fn forged_chunk(
    scratch: &StoreDb,
    site: [u8; 16],
    after: Position,
    sql: &'static str,
) -> Chunk {
    let before: i64 = scratch
        .read(|c| {
            c.query_row("SELECT crsql_db_version()", [], |r| r.get(0))
                .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    scratch
        .write(move |c| c.execute_batch(sql).map_err(flashkart_sync::Error::from))
        .await
        .unwrap();
    let own = scratch.site_id();
    let read = scratch
        .read(move |c| {
            read_chunk(
                c,
                &own,
                Position {
                    db_version: before,
                    seq: i64::MAX,
                },
                usize::MAX,
            )
        })
        .await
        .unwrap()
        .expect("changes");
    let mut batch = read.chunk.batch.unwrap();
    for change in &mut batch.changes {
        change.site_id = site.to_vec();
    }
    // Renumber into the forger's own sequence after `after`.
    let mut last = after;
    for change in &mut batch.changes {
        change.db_version = after.db_version + 1;
        last = Position {
            db_version: change.db_version,
            seq: change.seq,
        };
    }
    let batch = changes::seal(
        site.to_vec(),
        after.db_version,
        last.db_version,
        batch.changes,
    );
    Chunk {
        after: Some(after.cursor(&site)),
        batch: Some(batch),
        last_db_version: last.db_version,
        last_seq: last.seq,
        txn_last_seq: last.seq,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_ownership_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();

    // Registering needs the admin token.
    assert_eq!(
        register(&http, &base, None, "a").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        register(&http, &base, Some("nope"), "a").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        register(&http, &base, Some(ADMIN), "../etc").await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, token_a) = register(&http, &base, Some(ADMIN), "a").await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, token_b) = register(&http, &base, Some(ADMIN), "b").await;
    assert_eq!(
        register(&http, &base, Some(&token_a), "c").await.0,
        StatusCode::FORBIDDEN
    );

    let edge_a = open_edge(dir.path(), "a").await;
    let site_a = edge_a.site_id();
    let hello = HelloRequest {
        edge_site_id: site_a.to_vec(),
        schema_version: edge_a.schema_version(),
    }
    .encode_to_vec();
    let hello_url = format!("{base}{}", protocol::HELLO_PATH);
    let push_url = format!("{base}{}", protocol::PUSH_PATH);

    // Missing, unknown and misused credentials.
    assert_eq!(
        post(&http, &hello_url, None, hello.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&http, &hello_url, Some("fks_forged"), hello.clone())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&http, &hello_url, Some(ADMIN), hello.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    // Pushing before any hello has bound an edge database to the store.
    let empty_push = PushRequest::default().encode_to_vec();
    assert_eq!(
        post(&http, &push_url, Some(&token_a), empty_push).await.0,
        StatusCode::FORBIDDEN
    );

    let (status, body) = post(&http, &hello_url, Some(&token_a), hello.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let answer = HelloResponse::decode(body.as_slice()).unwrap();
    assert_eq!(answer.store_id, "a");
    // A second database presenting the same token is refused: the store is bound to the first.
    let intruder = open_edge(dir.path(), "intruder").await;
    let other_hello = HelloRequest {
        edge_site_id: intruder.site_id().to_vec(),
        schema_version: 1,
    }
    .encode_to_vec();
    assert_eq!(
        post(&http, &hello_url, Some(&token_a), other_hello).await.0,
        StatusCode::FORBIDDEN
    );

    let replica_a = running.cloud.replica("a").await.unwrap();
    let replica_b = running.cloud.replica("b").await.unwrap();
    let clean_a = digest(replica_a.db()).await;
    let clean_b = digest(replica_b.db()).await;

    let scratch = open_edge(dir.path(), "scratch").await;
    // An order of a's in the forger's own database, outside any chunk, so a forgery can change
    // one of its cloud-owned columns alone.
    scratch
        .write(|c| {
            c.execute_batch("INSERT INTO orders (id, store_id) VALUES ('o-cod', 'a')")
                .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    let forgeries: &[(&str, &'static str)] = &[
        (
            "another store's row",
            "INSERT INTO stock_moves (id, store_id, qty) VALUES ('m-b', 'b', 5)",
        ),
        (
            "the catalog",
            "INSERT INTO prices (product_id, unit_price_minor) VALUES ('p1', 1)",
        ),
        (
            "a cloud-owned table",
            "INSERT INTO orders (id, store_id) VALUES ('o-1', 'a')",
        ),
        (
            "a row without its store",
            "INSERT INTO bins (id, store_id) VALUES ('bin-x', '')",
        ),
        (
            "another store's cash hand-in",
            "INSERT INTO cash_handins (id, store_id, rider_id, amount_minor)
             VALUES ('h-b', 'b', 'r1', 100)",
        ),
        (
            "an order's payment method",
            "UPDATE orders SET payment_method = 'cash', cash_due_minor = 100 WHERE id = 'o-cod'",
        ),
        (
            "a valid row next to a forged one",
            "INSERT INTO stock_moves (id, store_id, qty) VALUES ('m-ok', 'a', 1);
             INSERT INTO stock_moves (id, store_id, qty) VALUES ('m-bad', 'b', 1)",
        ),
    ];
    for (what, sql) in forgeries {
        let chunk = forged_chunk(&scratch, site_a, Position::START, sql).await;
        let body = PushRequest { chunk: Some(chunk) }.encode_to_vec();
        let (status, message) = post(&http, &push_url, Some(&token_a), body.clone()).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            String::from_utf8_lossy(&message)
        );
        // Store b's credential cannot push as a's database either.
        let (status, _) = post(&http, &push_url, Some(&token_b), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what} with b's token");
        assert_eq!(
            digest(replica_a.db()).await,
            clean_a,
            "{what}: nothing applied"
        );
        assert_eq!(
            digest(replica_b.db()).await,
            clean_b,
            "{what}: nothing applied to b"
        );
    }

    // A legitimate change goes through...
    let chunk = forged_chunk(
        &scratch,
        site_a,
        Position::START,
        "INSERT INTO stock_moves (id, store_id, qty) VALUES ('m-a', 'a', 3);
         INSERT INTO cash_handins (id, store_id, rider_id, amount_minor, expected_minor)
         VALUES ('h-a', 'a', 'r1', 2300, 2340);
         INSERT INTO deliveries (order_id, store_id, rider_id, cash_collected_minor)
         VALUES ('o-cod', 'a', 'r1', 2340)",
    )
    .await;
    let (status, body) = post(
        &http,
        &push_url,
        Some(&token_a),
        PushRequest { chunk: Some(chunk) }.encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let acked = PushResponse::decode(body.as_slice())
        .unwrap()
        .acked
        .unwrap();
    assert_eq!(
        count(
            replica_a.db(),
            "SELECT count(*) FROM stock_moves WHERE id = 'm-a'"
        )
        .await,
        1
    );
    // Its cash hand-in and the cash its rider collected are a's to report.
    assert_eq!(
        count(
            replica_a.db(),
            "SELECT count(*) FROM cash_handins WHERE id = 'h-a' AND expected_minor = 2340"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            replica_a.db(),
            "SELECT count(*) FROM deliveries WHERE cash_collected_minor = 2340"
        )
        .await,
        1
    );
    // ...and moving that row to another store afterwards does not.
    let chunk = forged_chunk(
        &scratch,
        site_a,
        Position::of(&acked),
        "UPDATE stock_moves SET store_id = 'b' WHERE id = 'm-a'",
    )
    .await;
    let (status, _) = post(
        &http,
        &push_url,
        Some(&token_a),
        PushRequest { chunk: Some(chunk) }.encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        count(
            replica_a.db(),
            "SELECT count(*) FROM stock_moves WHERE store_id = 'a'"
        )
        .await,
        1
    );
    assert_eq!(
        count(replica_a.db(), "SELECT count(*) FROM stock_moves").await,
        1
    );

    // Refusals are counted on /metrics.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("flashkart_cloud_sync_batches_refused_total{store=\"a\"} 8"),
        "{metrics}"
    );

    for db in [edge_a, intruder, scratch] {
        db.close().await.unwrap();
    }
    drop((replica_a, replica_b));
    shutdown.cancel();
    running.wait().await.unwrap();
}
