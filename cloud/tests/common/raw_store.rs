//! A store that speaks the sync protocol by hand, and the changes it sends: for the tests of a
//! registered store turning hostile (`hostile_store*.rs`), which send what no edge would and
//! then compare the read model with what the replica holds.

use std::time::Duration;

use flashkart_proto::sync::{
    Change, Chunk, HelloRequest, HelloResponse, PushRequest, Value, value::Kind,
};
use flashkart_sync::changes;
use flashkart_sync::chunks::Position;
use flashkart_sync::packed_key::{self, KeyValue};
use flashkart_sync::protocol;
use prost::Message;
use reqwest::StatusCode;

use super::{ADMIN, count, rm_sql};

/// A store speaking the sync protocol by hand, so it can send what no edge would.
pub struct RawStore {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub site: [u8; 16],
}

impl RawStore {
    pub async fn register(base: &str, id: &str, site: [u8; 16]) -> Self {
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
    pub async fn hello(&self) -> Position {
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

    pub async fn post(&self, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
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
    pub async fn push(&self, mut changes: Vec<Change>) -> (StatusCode, String) {
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

pub fn text_key(id: &str) -> Vec<u8> {
    packed_key::encode(&[KeyValue::Text(id.into())]).unwrap()
}

pub fn text(value: &str) -> Option<Value> {
    Some(Value {
        kind: Some(Kind::Text(value.into())),
    })
}

pub fn int(value: i64) -> Option<Value> {
    Some(Value {
        kind: Some(Kind::Integer(value)),
    })
}

pub fn real(value: f64) -> Option<Value> {
    Some(Value {
        kind: Some(Kind::Real(value)),
    })
}

/// One column of a new row.
pub fn cell(table: &str, pk: &[u8], cid: &str, val: Option<Value>) -> Change {
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
pub fn row(table: &str, id: &str, columns: &[(&str, Option<Value>)]) -> Vec<Change> {
    let pk = text_key(id);
    columns
        .iter()
        .map(|(cid, val)| cell(table, &pk, cid, val.clone()))
        .collect()
}

pub fn stock_move(store: &str, id: &str, qty: i64) -> Vec<Change> {
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

/// Waits until the read model holds stock move `id`: everything the store pushed before it
/// has then been projected too (the projector follows each store's changes in order).
pub async fn projected_move(cloud: &flashkart_cloud::Cloud, id: &str) {
    let mut projected = cloud.projection().projected();
    let sql = format!("SELECT count(*) FROM rm_moves WHERE id = '{id}'");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while rm_sql::count(cloud, &sql).await == 0 {
        tokio::time::timeout_at(deadline, projected.changed())
            .await
            .expect("projected in time")
            .unwrap();
    }
}

/// The read model's stock and moves for a store, against what its replica holds.
pub async fn assert_read_model_matches(cloud: &flashkart_cloud::Cloud, store: &str) {
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
    let in_model = rm_sql::count(cloud, "SELECT count(*) FROM rm_moves").await;
    let sum_model = rm_sql::count(
        cloud,
        &format!("SELECT coalesce(sum(on_hand), 0) FROM rm_stock WHERE store_id = '{store}'"),
    )
    .await;
    assert_eq!((in_model, sum_model), (in_replica, sum_replica));
}
