//! Live dispatch through real sync: a store database (synced by the real client) reports an
//! order READY and two riders' positions; the cloud offers the order to the nearer rider by
//! writing an assignment into the store's replica; the rider declines and the offer cascades
//! to the other rider, who accepts, after which nobody else is offered the order; once that
//! rider has delivered, the next order can go to them at once.
//!
//! The dispatcher's state outlives a restart of the cloud on the same data (the store keeps
//! syncing through a proxy that follows the cloud to its new port): an offer made before it is
//! accepted after it and the rider is busy with it; a rider who declined before it is not
//! offered the order again; an offer that ran out while the cloud was down cascades; and
//! replies handled before it are not handled (or counted) again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use flashkart_cloud::postgres::Postgres;
use flashkart_cloud::{CloudConfig, RunningCloud};
use flashkart_sync::client::{self, SyncStatus};
use rusqlite::params;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The store's assignments, oldest first: (id, rider).
async fn assignments(db: &flashkart_sync::StoreDb) -> Vec<(String, String)> {
    db.read(|conn| {
        conn.prepare("SELECT id, rider_id FROM assignments ORDER BY offered_at, id")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap()
}

async fn reply(db: &flashkart_sync::StoreDb, assignment: &str, rider: &str, answer: &str) {
    let (assignment, rider, answer) = (assignment.to_owned(), rider.to_owned(), answer.to_owned());
    db.write(move |conn| {
        conn.execute(
            "INSERT INTO assignment_replies (assignment_id, store_id, rider_id, reply, at)
             VALUES (?1, 's1', ?2, ?3, ?4)",
            params![
                assignment,
                rider,
                answer,
                flashkart_cloud::clock::now_rfc3339()
            ],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
}

/// Places a cash order for one milk as the customer; its id.
async fn place(http: &reqwest::Client, base: &str, customer: &str, key: &str) -> String {
    let placed: Value = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(customer)
        .header("idempotency-key", key)
        .json(
            &json!({"address": {"text": format!("Here {key}"), "lat": 52.52, "lon": 13.41},
                      "lines": [{"product_id": "milk", "qty": 1}],
                      "payment": {"method": "cash"}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    placed["order_id"].as_str().expect("order id").to_owned()
}

/// The store reports `order` READY (its progress row and the event), as its staff would.
fn mark_ready(
    conn: &rusqlite::Connection,
    order: &str,
    now: &str,
) -> Result<(), flashkart_sync::Error> {
    conn.execute(
        "INSERT INTO order_progress (order_id, store_id, status, status_at) VALUES (?1, 's1', 'READY', ?2)",
        params![order, now],
    )?;
    conn.execute(
        "INSERT INTO order_events (id, store_id, order_id, from_status, to_status, actor, at)
         VALUES (?1, 's1', ?2, 'PACKED', 'READY', 'pia', ?3)",
        params![uuid::Uuid::now_v7().to_string(), order, now],
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_cascade_from_a_declining_rider_to_the_next() {
    let mut scene = Scene::start(&[("near", 52.501), ("far", 52.51)], |_| {}).await;
    let order = scene.ready_order("o-1").await;

    // The nearer rider is offered the order first.
    let first = scene.offers(1).await;
    assert_eq!(first[0].1, "near");

    // A decline cascades to the other rider.
    reply(&scene.db, &first[0].0, "near", "declined").await;
    let second = scene.offers(2).await;
    assert_eq!(second[1].1, "far", "{second:?}");

    // Accepted: the order is taken and offered to nobody else.
    reply(&scene.db, &second[1].0, "far", "accepted").await;
    scene.wait_metric(ACCEPTED, 1).await;
    // Several ticks later there is still no third offer.
    let mut ticks = scene.status.clone();
    for _ in 0..5 {
        let _ = tokio::time::timeout(Duration::from_secs(2), ticks.changed()).await;
    }
    assert_eq!(assignments(&scene.db).await.len(), 2);

    // "far" delivers within a minute (the cloud guessed a trip of 15 at acceptance) and waits
    // right at the store, "near" has wandered off: the next order goes to "far" at once.
    let (o, now) = (order.clone(), flashkart_cloud::clock::now_rfc3339());
    scene
        .db
        .write(move |conn| {
            for (from, to) in [("READY", "PICKED_UP"), ("PICKED_UP", "DELIVERED")] {
                conn.execute(
                    "INSERT INTO order_events (id, store_id, order_id, from_status, to_status, actor, at)
                     VALUES (?1, 's1', ?2, ?3, ?4, 'far', ?5)",
                    params![uuid::Uuid::now_v7().to_string(), o, from, to, now],
                )?;
            }
            conn.execute(
                "UPDATE order_progress SET status = 'DELIVERED', status_at = ?2 WHERE order_id = ?1",
                params![o, now],
            )?;
            for (rider, lat) in [("far", 52.5001), ("near", 52.56)] {
                conn.execute(
                    "UPDATE rider_positions SET lat = ?2, at = ?3 WHERE rider_id = ?1",
                    params![rider, lat, now],
                )?;
            }
            Ok::<_, flashkart_sync::Error>(())
        })
        .await
        .unwrap();
    let cloud = scene.running().cloud.clone();
    wait_for(&mut scene.status, WAIT, || {
        let cloud = cloud.clone();
        async move {
            rm_sql::count(
                &cloud,
                "SELECT count(*) FROM rm_orders WHERE status = 'DELIVERED'",
            )
            .await
                == 1
        }
    })
    .await;
    scene.ready_order("o-2").await;
    let third = scene.offers(3).await;
    assert_eq!(third[2].1, "far", "{third:?}");
    scene.finish().await;
}

const WAIT: Duration = Duration::from_secs(30);

/// A cloud with store s1, riders at the given latitudes (all at longitude 13.40, the store at
/// 52.50), milk and a customer; and the store's database synced through a proxy, so that the
/// cloud can be stopped and started again on the same data dir.
struct Scene {
    _dir: tempfile::TempDir,
    config: CloudConfig,
    running: Option<(RunningCloud, CancellationToken)>,
    proxy: Proxy,
    http: reqwest::Client,
    customer: String,
    db: flashkart_sync::StoreDb,
    status: watch::Receiver<SyncStatus>,
    store_shutdown: CancellationToken,
}

impl Scene {
    async fn start(riders: &[(&str, f64)], configure: impl FnOnce(&mut CloudConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = cloud_config(dir.path());
        config.dispatch.tick_ms = 100;
        configure(&mut config);
        let shutdown = CancellationToken::new();
        let running = flashkart_cloud::start(config.clone(), shutdown.clone())
            .await
            .unwrap();
        let proxy = Proxy::start(running.addr).await;
        let base = proxy.url();
        let http = reqwest::Client::new();
        let admin = |method: reqwest::Method, path: &str, body: Value| {
            http.request(method, format!("{base}{path}"))
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
        };
        let token = running.cloud.register_store("s1").await.unwrap();
        let put = admin(
            reqwest::Method::PUT,
            "/admin/v1/stores/s1/profile",
            json!({
                "name": "s1", "lat": 52.50, "lon": 13.40,
                "service_area": {"type": "Polygon", "coordinates": [[[13.3, 52.4], [13.5, 52.4], [13.5, 52.6], [13.3, 52.6], [13.3, 52.4]]]},
                "max_radius_m": 10000.0, "hours": {"opens": "00:00", "closes": "00:00"},
                "capacity": 10, "sla_minutes": 30
            }),
        )
        .await
        .unwrap();
        assert!(put.status().is_success());
        for (rider, _) in riders {
            let put = admin(
                reqwest::Method::PUT,
                &format!("/admin/v1/riders/{rider}"),
                json!({"home_store_id": "s1", "name": rider}),
            )
            .await
            .unwrap();
            assert!(put.status().is_success(), "{:?}", put.text().await);
        }
        let put = admin(
            reqwest::Method::PUT,
            "/admin/v1/products/milk",
            json!({"name": "milk", "price_minor": 100}),
        )
        .await
        .unwrap();
        assert!(put.status().is_success());
        let customer: Value = admin(
            reqwest::Method::POST,
            "/admin/v1/customers",
            json!({"first_name": "Ada"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

        let db = open_edge(dir.path(), "s1").await;
        let positions: Vec<(String, f64)> = riders
            .iter()
            .map(|(rider, lat)| ((*rider).to_owned(), *lat))
            .collect();
        let now = flashkart_cloud::clock::now_rfc3339();
        db.write(move |conn| {
            for (rider, lat) in &positions {
                conn.execute(
                    "INSERT INTO rider_positions (rider_id, store_id, lat, lon, at) VALUES (?1, 's1', ?2, 13.40, ?3)",
                    params![rider, lat, now],
                )?;
            }
            Ok::<_, flashkart_sync::Error>(())
        })
        .await
        .unwrap();
        let store_shutdown = CancellationToken::new();
        let handle = client::spawn(
            client_config(&base, &token),
            db.clone(),
            store_shutdown.clone(),
        )
        .unwrap();
        Self {
            _dir: dir,
            config,
            running: Some((running, shutdown)),
            proxy,
            http,
            customer: customer["token"].as_str().unwrap().to_owned(),
            db,
            status: handle.status.clone(),
            store_shutdown,
        }
    }

    fn running(&self) -> &RunningCloud {
        &self.running.as_ref().expect("the cloud runs").0
    }

    /// Stops the cloud and waits until it has closed its databases.
    async fn stop(&mut self) {
        let (running, shutdown) = self.running.take().expect("the cloud runs");
        shutdown.cancel();
        running.wait().await.unwrap();
    }

    /// Starts the cloud again on the same data dir; the store follows through the proxy.
    async fn start_again(&mut self) {
        let shutdown = CancellationToken::new();
        let running = flashkart_cloud::start(self.config.clone(), shutdown.clone())
            .await
            .unwrap();
        self.proxy.set_upstream(running.addr).await;
        self.running = Some((running, shutdown));
    }

    /// Places an order for milk, waits until the store has it and reports it READY.
    async fn ready_order(&mut self, key: &str) -> String {
        let before = count(&self.db, "SELECT count(*) FROM orders").await;
        let order = place(&self.http, &self.proxy.url(), &self.customer, key).await;
        let db = self.db.clone();
        wait_for(&mut self.status, WAIT, || {
            let db = db.clone();
            async move { count(&db, "SELECT count(*) FROM orders").await == before + 1 }
        })
        .await;
        let (o, now) = (order.clone(), flashkart_cloud::clock::now_rfc3339());
        self.db
            .write(move |conn| mark_ready(conn, &o, &now))
            .await
            .unwrap();
        order
    }

    /// Waits until the store has `n` assignments; all of them, oldest first.
    async fn offers(&mut self, n: usize) -> Vec<(String, String)> {
        let db = self.db.clone();
        wait_for(&mut self.status, WAIT, || {
            let db = db.clone();
            async move { assignments(&db).await.len() >= n }
        })
        .await;
        let all = assignments(&self.db).await;
        assert_eq!(all.len(), n, "{all:?}");
        all
    }

    /// The value of one series on the running cloud's `/metrics` (0 when absent).
    async fn metric(&self, series: &str) -> i64 {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.running().addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |value| value.trim().parse().unwrap())
    }

    /// Waits until a series of the running cloud's `/metrics` has `value`: looked at again
    /// after each sync round of the store, or every 100 ms while the store cannot sync.
    async fn wait_metric(&mut self, series: &str, value: i64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.metric(series).await;
            if now == value {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} is {now}, not {value}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), self.status.changed()).await;
        }
    }

    async fn finish(mut self) {
        self.store_shutdown.cancel();
        self.stop().await;
    }
}

const OFFERS: &str = r#"flashkart_cloud_dispatch_offers_total{store="s1"}"#;
const PENDING: &str = r#"flashkart_cloud_dispatch_offers_pending{store="s1"}"#;
const ACCEPTED: &str = r#"flashkart_cloud_dispatch_replies_total{store="s1",answer="accepted"}"#;
const DECLINED: &str = r#"flashkart_cloud_dispatch_replies_total{store="s1",answer="declined"}"#;
const EXPIRED: &str = r#"flashkart_cloud_dispatch_replies_total{store="s1",answer="expired"}"#;
const FENCED: &str = r#"flashkart_cloud_dispatch_fenced_total{store="s1"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_made_before_a_restart_is_accepted_after_it() {
    let mut scene = Scene::start(&[("near", 52.501), ("far", 52.51)], |_| {}).await;
    scene.ready_order("o-1").await;
    let first = scene.offers(1).await;
    assert_eq!(first[0].1, "near");
    scene.wait_metric(OFFERS, 1).await;
    scene.wait_metric(PENDING, 1).await;

    scene.stop().await;
    scene.start_again().await;
    // The offer is pending again, not re-made.
    scene.wait_metric(PENDING, 1).await;
    assert_eq!(scene.metric(OFFERS).await, 0);

    // The rider accepts after the restart: the order is theirs.
    reply(&scene.db, &first[0].0, "near", "accepted").await;
    scene.wait_metric(ACCEPTED, 1).await;
    assert_eq!(scene.metric(PENDING).await, 0);
    assert_eq!(scene.metric(OFFERS).await, 0);
    assert_eq!(assignments(&scene.db).await.len(), 1);

    // "near" carries it, so the next order goes to "far" although "near" is nearer.
    scene.ready_order("o-2").await;
    let second = scene.offers(2).await;
    assert_eq!(second[1].1, "far", "{second:?}");
    assert_eq!(scene.metric(OFFERS).await, 1);
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rider_who_declined_before_a_restart_is_not_offered_the_order_after_it() {
    let mut scene = Scene::start(
        &[("near", 52.501), ("far", 52.51), ("spare", 52.52)],
        |_| {},
    )
    .await;
    scene.ready_order("o-1").await;
    let first = scene.offers(1).await;
    assert_eq!(first[0].1, "near");
    reply(&scene.db, &first[0].0, "near", "declined").await;
    let second = scene.offers(2).await;
    assert_eq!(second[1].1, "far", "{second:?}");
    scene.wait_metric(DECLINED, 1).await;

    // "far" declines while the cloud is down; the store tells the cloud after the restart.
    scene.stop().await;
    reply(&scene.db, &second[1].0, "far", "declined").await;
    scene.start_again().await;

    // Neither "near" (nearer, declined before the restart) nor "far": "spare".
    let third = scene.offers(3).await;
    assert_eq!(third[2].1, "spare", "{third:?}");
    // Only "far"'s decline was handled by this process: "near"'s was not handled again.
    scene.wait_metric(DECLINED, 1).await;
    assert_eq!(scene.metric(OFFERS).await, 1);
    assert_eq!(scene.metric(PENDING).await, 1);
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_that_runs_out_across_a_restart_cascades_to_the_next_rider() {
    let mut scene = Scene::start(&[("near", 52.501), ("far", 52.51)], |config| {
        config.dispatch.offer_timeout_s = 6.0;
    })
    .await;
    scene.ready_order("o-1").await;
    let first = scene.offers(1).await;
    assert_eq!(first[0].1, "near");
    scene.stop().await;
    let stopped = flashkart_cloud::clock::now_rfc3339();

    // The offer runs out while the cloud is down.
    let id = first[0].0.clone();
    let expires_at: String = scene
        .db
        .read(move |conn| {
            conn.query_row(
                "SELECT expires_at FROM assignments WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    let expires_at = flashkart_cloud::clock::parse(&expires_at).unwrap();
    assert!(
        stopped < flashkart_cloud::clock::rfc3339(expires_at),
        "the cloud stopped after the offer ran out"
    );
    let left = (expires_at - flashkart_cloud::clock::now()).unsigned_abs();
    tokio::time::sleep(left + Duration::from_millis(100)).await;
    scene.start_again().await;

    // Expired at the first tick and cascaded to the next rider, not offered to "near" again.
    let second = scene.offers(2).await;
    assert_eq!(second[1].1, "far", "{second:?}");
    scene.wait_metric(EXPIRED, 1).await;
    assert_eq!(scene.metric(OFFERS).await, 1);
    scene.finish().await;
}

/// The store records the first acceptance of an order; when it reaches the cloud only after
/// the cloud saw the offer run out and cascaded it, the acceptance stands and the cascaded offer
/// is withdrawn (not left to run out, not re-planned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptance_that_reaches_the_cloud_after_its_offer_ran_out_stands() {
    let mut scene = Scene::start(&[("near", 52.501), ("far", 52.51)], |config| {
        config.dispatch.offer_timeout_s = 5.0;
    })
    .await;
    scene.ready_order("o-1").await;
    let first = scene.offers(1).await;
    assert_eq!(first[0].1, "near");

    // "near" accepts in time at the store while the store cannot reach the cloud; the cloud
    // sees the offer run out and offers the order to "far".
    scene.proxy.stall(true);
    reply(&scene.db, &first[0].0, "near", "accepted").await;
    scene.wait_metric(EXPIRED, 1).await;
    scene.wait_metric(OFFERS, 2).await;

    // The link is back: "far"'s offer reaches the store, "near"'s acceptance the cloud, which
    // withdraws "far"'s offer well before it would run out.
    scene.proxy.stall(false);
    let both = scene.offers(2).await;
    assert_eq!(both[1].1, "far", "{both:?}");
    scene.wait_metric(PENDING, 0).await;
    assert_eq!(scene.metric(EXPIRED).await, 1);
    assert_eq!(
        scene.metric(ACCEPTED).await,
        0,
        "no offer was pending when it came"
    );
    assert_eq!(
        scene.metric(OFFERS).await,
        2,
        "the order was not offered again"
    );
    scene.finish().await;
}

/// With several instances on PostgreSQL a store's offers are made by the holder of its lease
/// only. Here another instance takes the store while this one still believes it holds it (its
/// renewal is far off, as for an instance paused past its lease): the cascade after the offer
/// runs out is stopped by the fence before the write, not written into a replica the store no
/// longer pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_lost_the_stores_lease_makes_no_offer() {
    let url = common::postgres::fresh_database();
    let database = url.clone();
    let mut scene = Scene::start(&[("near", 52.501), ("far", 52.51)], move |config| {
        config.database_url = Some(database);
        config.cluster.lease_ms = 600_000;
        config.dispatch.offer_timeout_s = 2.0;
    })
    .await;
    scene.ready_order("o-1").await;
    let first = scene.offers(1).await;
    assert_eq!(first[0].1, "near");

    let pg = Postgres::connect(&url).await.unwrap();
    let taken = pg
        .client()
        .await
        .unwrap()
        .execute(
            "UPDATE store_leases SET owner = 'another', owner_url = 'http://127.0.0.1:9',
                epoch = epoch + 1, expires_at = now() + interval '1 hour'
             WHERE store_id = 's1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(taken, 1);
    pg.close();

    // "near"'s offer runs out here; the cascade to "far" is fenced.
    scene.wait_metric(EXPIRED, 1).await;
    scene.wait_metric(FENCED, 1).await;
    assert_eq!(scene.metric(OFFERS).await, 1);
    assert_eq!(assignments(&scene.db).await.len(), 1);
    scene.finish().await;
}
