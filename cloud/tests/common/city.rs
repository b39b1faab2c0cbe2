//! A city of two stores for the tests that need orders to move: a real cloud (dispatch on)
//! and two stores syncing through the real client, orders placed through the intake API, and
//! the stores' own progress, riders' replies and positions written into their databases as
//! their staff's scans and riders' phones would (`dashboard.rs`, `ratings.rs`).

use std::future::Future;
use std::time::Duration;

use flashkart_cloud::clock;
use flashkart_cloud::{CloudConfig, RunningCloud};
use flashkart_sync::StoreDb;
use flashkart_sync::client::{self, SyncStatus};
use reqwest::{Method, StatusCode};
use rusqlite::params;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::api::Api;
use super::{client_config, cloud_config, count, edge_stock_move, open_edge, rm_sql};

/// Inside only store 1's area, only store 2's, and both (nearer store 1).
pub const ONLY_S1: (f64, f64) = (52.50, 13.35);
pub const ONLY_S2: (f64, f64) = (52.50, 13.65);
pub const BOTH: (f64, f64) = (52.50, 13.47);

pub struct Env {
    pub dir: tempfile::TempDir,
    pub running: RunningCloud,
    pub shutdown: CancellationToken,
    pub api: Api,
    /// Ada, a customer.
    pub customer: String,
    /// Each store's own database and the stop of its sync client.
    pub edges: Vec<(StoreDb, CancellationToken)>,
    pub status: watch::Receiver<SyncStatus>,
}

pub fn profile(name: &str, lon: f64, west: f64, east: f64, sla_minutes: u32) -> Value {
    json!({
        "name": name, "lat": 52.50, "lon": lon,
        "service_area": {"type": "Polygon", "coordinates": [[[west, 52.4], [east, 52.4], [east, 52.6], [west, 52.6], [west, 52.4]]]},
        "max_radius_m": 10000.0, "hours": {"opens": "00:00", "closes": "00:00"},
        "capacity": 50, "sla_minutes": sla_minutes
    })
}

/// Store s1 (west, SLA 30) with 10 of p1 and s2 (east, SLA `s2_sla`) with 2, both syncing; p2
/// is in the catalog and in stock nowhere.
pub async fn two_stores(dispatch_tick_ms: Option<u64>, s2_sla: u32) -> Env {
    two_stores_with(
        |config| {
            if let Some(tick) = dispatch_tick_ms {
                config.dispatch.tick_ms = tick;
            }
        },
        s2_sla,
    )
    .await
}

/// [`two_stores`] with the cloud's configuration changed by `configure` first.
pub async fn two_stores_with(configure: impl FnOnce(&mut CloudConfig), s2_sla: u32) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloud_config(dir.path());
    configure(&mut config);
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .unwrap();
    let api = Api::new(running.addr);
    let mut edges = Vec::new();
    let mut status = None;
    for (store, lon, west, east, sla, stock) in [
        ("s1", 13.42, 13.30, 13.50, 30, 10),
        ("s2", 13.58, 13.45, 13.70, s2_sla, 2),
    ] {
        let token = running.cloud.register_store(store).await.unwrap();
        let (code, body) = api
            .admin(
                Method::PUT,
                &format!("/admin/v1/stores/{store}/profile"),
                profile(store, lon, west, east, sla),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let db = open_edge(dir.path(), store).await;
        edge_stock_move(&db, store, format!("{store}-stock"), stock).await;
        let stop = CancellationToken::new();
        let handle =
            client::spawn(client_config(&api.base, &token), db.clone(), stop.clone()).unwrap();
        status.get_or_insert(handle.status.clone());
        edges.push((db, stop));
    }
    for (product, price) in [("p1", 100), ("p2", 250)] {
        let (code, body) = api
            .admin(
                Method::PUT,
                &format!("/admin/v1/products/{product}"),
                json!({"name": product, "price_minor": price}),
            )
            .await;
        assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    }
    let (code, customer) = api
        .admin(
            Method::POST,
            "/admin/v1/customers",
            json!({"first_name": "Ada"}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let env = Env {
        dir,
        running,
        shutdown,
        api,
        customer: customer["token"].as_str().unwrap().to_owned(),
        edges,
        status: status.unwrap(),
    };
    let cloud = &env.running.cloud;
    until(&env, "the stock projected", || async move {
        rm_sql::count(cloud, "SELECT count(*) FROM rm_stock").await == 2
    })
    .await;
    env
}

impl Env {
    pub async fn stop(self) {
        for (_, stop) in &self.edges {
            stop.cancel();
        }
        self.shutdown.cancel();
        self.running.wait().await.unwrap();
    }

    pub fn edge(&self, store: &str) -> &StoreDb {
        &self.edges[if store == "s1" { 0 } else { 1 }].0
    }

    /// Places an order of `qty` p1 at `(lat, lon)`: (status, body).
    pub async fn order(&self, key: &str, (lat, lon): (f64, f64), qty: i64) -> (StatusCode, Value) {
        self.api
            .order(
                &self.customer,
                key,
                json!({
                    "address": {"text": "Here 1", "lat": lat, "lon": lon},
                    "lines": [{"product_id": "p1", "qty": qty}],
                    "payment": {"method": "cash"}
                }),
            )
            .await
    }

    /// Places an order that must be taken by `store`; its id.
    pub async fn order_at(&self, key: &str, at: (f64, f64), store: &str) -> String {
        let (code, body) = self.order(key, at, 1).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        assert_eq!(body["store_id"], store, "{body}");
        body["order_id"].as_str().unwrap().to_owned()
    }

    pub async fn rebuild(&self) -> Value {
        let published = self.running.cloud.dashboard().rebuild().await.unwrap();
        serde_json::from_str(&published.json).unwrap()
    }
}

/// Waits (on the stores' sync and the projector, at most 30 s) until `done` holds.
pub async fn until<F, Fut>(env: &Env, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut status = env.status.clone();
    let mut projected = env.running.cloud.projection().projected();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if done().await {
            return;
        }
        tokio::select! {
            _ = status.changed() => {}
            _ = projected.changed() => {}
            () = tokio::time::sleep_until(deadline) => panic!("{what}: not within 30 s"),
        }
    }
}

pub async fn edge_has(env: &Env, store: &str, sql: String, n: i64) {
    let db = env.edge(store).clone();
    until(env, &sql.clone(), || {
        let (db, sql) = (db.clone(), sql.clone());
        async move { count(&db, sql).await == n }
    })
    .await;
}

/// Waits until the read model has every `(order, status)`.
pub async fn projected(env: &Env, expected: &[(&str, &str)]) {
    let cloud = &env.running.cloud;
    until(env, &format!("projected {expected:?}"), || async move {
        for (order, status) in expected {
            let sql = format!(
                "SELECT count(*) FROM rm_orders WHERE id = '{order}' AND status = '{status}'"
            );
            if rm_sql::count(cloud, &sql).await != 1 {
                return false;
            }
        }
        true
    })
    .await;
}

/// The store moves an order from `from` through `steps` (status, seconds after `base`), as its
/// staff's scans would: one event per step and the order's progress row.
pub async fn progress(
    db: &StoreDb,
    store: &str,
    order: &str,
    from: &str,
    base: OffsetDateTime,
    steps: &[(&'static str, i64)],
) {
    let (store, order, from, steps) = (
        store.to_owned(),
        order.to_owned(),
        from.to_owned(),
        steps.to_vec(),
    );
    db.write(move |conn| {
        let mut from = from;
        for (to, seconds) in &steps {
            let at = clock::rfc3339(base + time::Duration::seconds(*seconds));
            conn.execute(
                "INSERT INTO order_events (id, store_id, order_id, from_status, to_status, actor, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pia', ?6)",
                params![uuid::Uuid::now_v7().to_string(), store, order, from, to, at],
            )?;
            conn.execute(
                "INSERT INTO order_progress (order_id, store_id, status, status_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (order_id) DO UPDATE SET status = excluded.status,
                    status_at = excluded.status_at",
                params![order, store, to, at],
            )?;
            from = (*to).to_owned();
        }
        Ok::<_, flashkart_sync::Error>(())
    })
    .await
    .unwrap();
}

pub fn store<'a>(snapshot: &'a Value, id: &str) -> &'a Value {
    snapshot["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("store {id} in {snapshot}"))
}

pub async fn reply(db: &StoreDb, assignment: &str, rider: &str, answer: &str) {
    let (assignment, rider, answer) = (assignment.to_owned(), rider.to_owned(), answer.to_owned());
    db.write(move |conn| {
        conn.execute(
            "INSERT INTO assignment_replies (assignment_id, store_id, rider_id, reply, at)
             VALUES (?1, 's1', ?2, ?3, ?4)",
            params![assignment, rider, answer, clock::now_rfc3339()],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
}

pub async fn position(db: &StoreDb, rider: &str) {
    let rider = rider.to_owned();
    db.write(move |conn| {
        conn.execute(
            "INSERT INTO rider_positions (rider_id, store_id, lat, lon, at)
             VALUES (?1, 's1', 52.5, 13.42, ?2)
             ON CONFLICT (rider_id) DO UPDATE SET at = excluded.at",
            params![rider, clock::now_rfc3339()],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
}

pub async fn offer_to(env: &Env, rider: &str) -> String {
    let sql = format!("SELECT count(*) FROM assignments WHERE rider_id = '{rider}'");
    edge_has(env, "s1", sql, 1).await;
    let rider = rider.to_owned();
    env.edge("s1")
        .read(move |conn| {
            conn.query_row(
                "SELECT id FROM assignments WHERE rider_id = ?1",
                [rider],
                |r| r.get(0),
            )
            .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap()
}

/// The store's rider `rider` reports a fix at `(lat, lon)`.
pub async fn fix(db: &StoreDb, rider: &str, (lat, lon): (f64, f64)) {
    let rider = rider.to_owned();
    db.write(move |conn| {
        conn.execute(
            "INSERT INTO rider_positions (rider_id, store_id, lat, lon, at)
             VALUES (?1, 's1', ?2, ?3, ?4)
             ON CONFLICT (rider_id) DO UPDATE SET lat = excluded.lat, lon = excluded.lon,
                at = excluded.at",
            params![rider, lat, lon, clock::now_rfc3339()],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
}
