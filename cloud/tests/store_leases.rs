//! Several cloud instances on one PostgreSQL: each store is served by the one instance holding
//! its lease, the others forward its sync requests there; a stopped instance's stores move at
//! once, a killed one's within the lease time (at once when it comes back at its address); a
//! stale owner acknowledges nothing; and the
//! store's edge goes on syncing through all of it without losing an acknowledged change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use common::raw_store::{RawStore, projected_move, stock_move};
use common::*;
use flashkart_cloud::RunningCloud;
use flashkart_cloud::postgres::{DatabaseUrl, Postgres};
use flashkart_proto::sync::{Chunk, PushRequest};
use flashkart_sync::{changes, client, protocol};
use prost::Message;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

struct Instance {
    running: RunningCloud,
    shutdown: CancellationToken,
}

impl Instance {
    async fn start(dir: &Path, name: &str, url: &DatabaseUrl, lease_ms: u64) -> Self {
        let mut config = cloud_config(&dir.join(name));
        config.extension_dir = Some(dir.join("ext"));
        config.database_url = Some(url.clone());
        config.cluster.lease_ms = lease_ms;
        let shutdown = CancellationToken::new();
        let running = flashkart_cloud::start(config, shutdown.clone())
            .await
            .expect("instance starts");
        Self { running, shutdown }
    }

    fn url(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.running.wait().await.unwrap();
    }
}

/// Waits until `instance`'s read model has `store` at exactly `pieces` of p1 (one piece per
/// stock move of these tests), failing if it ever reads more: a move counted twice.
async fn on_hand_reaches(instance: &Instance, store: &str, pieces: i64) {
    let projection = instance.running.cloud.projection();
    let mut projected = projection.projected();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stock = projection.stock_at(store).await.unwrap();
        let on_hand = stock.get("p1").copied().unwrap_or(0);
        assert!(
            on_hand <= pieces,
            "{store}: {on_hand} pieces, more than {pieces} moves"
        );
        if on_hand == pieces {
            break;
        }
        // Another instance's projector does not wake this one: poll as well.
        let _ = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)),
            projected.changed(),
        )
        .await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "{store}: {on_hand} of {pieces}"
        );
    }
}

/// Every unexpired lease: (store, owner's URL, epoch).
async fn leases(pg: &Postgres) -> Vec<(String, String, i64)> {
    pg.client()
        .await
        .unwrap()
        .query(
            "SELECT store_id, owner_url, epoch FROM store_leases WHERE expires_at > now()
             ORDER BY store_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Watches the lease table until stopped: a store's epoch never goes back, and one epoch never
/// has two owners. Returns what it saw.
fn watch_leases(pg: Postgres, stop: CancellationToken) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut seen: Vec<(String, String, i64)> = Vec::new();
        loop {
            for (store, owner, epoch) in leases(&pg).await {
                for (s, o, e) in &seen {
                    if *s == store {
                        assert!(epoch >= *e, "{store}: epoch {epoch} after {e}");
                        assert!(
                            !(epoch == *e && owner != *o),
                            "{store}: epoch {epoch} held by {o} and {owner}"
                        );
                    }
                }
                if !seen.contains(&(store.clone(), owner.clone(), epoch)) {
                    seen.push((store, owner, epoch));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
                () = stop.cancelled() => break,
            }
        }
        seen.into_iter()
            .map(|(s, o, e)| format!("{s}@{o}#{e}"))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_follows_its_lease_and_its_edge_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::fresh_database();
    let a = Instance::start(dir.path(), "a", &url, 2_000).await;
    let b = Instance::start(dir.path(), "b", &url, 2_000).await;
    let pg = Postgres::connect(&url).await.unwrap();
    let stop_watching = CancellationToken::new();
    let watcher = watch_leases(pg.clone(), stop_watching.clone());

    // The load balancer in front of the instances sends the store to A first.
    let token = a.running.cloud.register_store("s1").await.unwrap();
    let balancer = Proxy::start(a.running.addr).await;
    let edge = open_edge(dir.path(), "s1").await;
    let edge_shutdown = CancellationToken::new();
    let handle = client::spawn(
        client_config(&balancer.url(), &token),
        edge.clone(),
        edge_shutdown.clone(),
    )
    .unwrap();
    let mut status = handle.status.clone();
    for i in 0..20 {
        edge_stock_move(&edge, "s1", format!("m{i}"), 1).await;
    }
    handle.nudge();
    let replica_a = a.running.cloud.replica("s1").await.unwrap();
    wait_for(&mut status, Duration::from_secs(30), || {
        let replica = replica_a.clone();
        async move { count(replica.db(), "SELECT count(*) FROM stock_moves").await == 20 }
    })
    .await;
    assert_eq!(leases(&pg).await, vec![("s1".into(), a.url(), 1)]);

    // Now the balancer sends it to B, which forwards to A, the lease holder.
    balancer.set_upstream(b.running.addr).await;
    balancer.drop_all().await;
    for i in 20..30 {
        edge_stock_move(&edge, "s1", format!("m{i}"), 1).await;
    }
    handle.nudge();
    wait_for(&mut status, Duration::from_secs(30), || {
        let replica = replica_a.clone();
        async move { count(replica.db(), "SELECT count(*) FROM stock_moves").await == 30 }
    })
    .await;
    assert_eq!(
        leases(&pg).await,
        vec![("s1".into(), a.url(), 1)],
        "B forwarded; it did not take the store"
    );
    // The read model is shared: what A projected from its replica, B reads.
    on_hand_reaches(&b, "s1", 30).await;
    assert!(
        !dir.path().join("b/cloud/stores/s1.db").exists(),
        "B never opened a replica of a store it does not serve"
    );

    // A stops cleanly: its lease is released at once and B takes the store. B's replica is new,
    // so the edge pushes what it lacks from the start: nothing acknowledged by A is lost.
    let a_url = a.url();
    drop(replica_a);
    a.stop().await;
    // Released, not left to run out: nobody holds the store now, or B already took it (the
    // edge's next request may land there at once).
    let now = leases(&pg).await;
    assert!(
        now.iter().all(|(_, owner, _)| *owner != a_url),
        "a clean stop releases: {now:?}"
    );
    for i in 30..35 {
        edge_stock_move(&edge, "s1", format!("m{i}"), 1).await;
    }
    handle.nudge();
    let replica_b = b.running.cloud.replica("s1").await.unwrap();
    wait_for(&mut status, Duration::from_secs(30), || {
        let (replica, edge, now) = (replica_b.clone(), edge.clone(), handle.status.clone());
        async move {
            now.borrow().lag_changes == 0
                && count(replica.db(), "SELECT count(*) FROM stock_moves").await == 35
                && digest(&edge).await == digest(replica.db()).await
        }
    })
    .await;
    assert_eq!(leases(&pg).await, vec![("s1".into(), b.url(), 2)]);
    assert_eq!(
        count(
            replica_b.db(),
            "SELECT count(*) FROM (SELECT id FROM stock_moves GROUP BY id HAVING count(*) > 1)"
        )
        .await,
        0
    );
    // B projects its new replica from its start, the 30 moves A had projected among them:
    // folded by their ids, each counts once.
    on_hand_reaches(&b, "s1", 35).await;

    stop_watching.cancel();
    let seen = watcher.await.unwrap();
    assert_eq!(
        seen,
        vec![format!("s1@{a_url}#1"), format!("s1@{}#2", b.url())]
    );
    edge_shutdown.cancel();
    handle.task.await.unwrap();
    edge.close().await.unwrap();
    drop(replica_b);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::fresh_database();
    let a = Instance::start(dir.path(), "a", &url, 60_000).await;
    let b = Instance::start(dir.path(), "b", &url, 60_000).await;
    let pg = Postgres::connect(&url).await.unwrap();
    let site = [7_u8; 16];
    let at_a = RawStore::register(&a.url(), "s1", site).await;
    assert_eq!(leases(&pg).await, vec![("s1".into(), a.url(), 1)]);

    // A is paused past its lease (its clock, a network cut), and B takes the store meanwhile.
    pg.client()
        .await
        .unwrap()
        .execute(
            "UPDATE store_leases SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let at_b = RawStore {
        http: reqwest::Client::new(),
        base: b.url(),
        token: at_a.token.clone(),
        site,
    };
    let after = at_b.hello().await;
    assert_eq!(leases(&pg).await, vec![("s1".into(), b.url(), 2)]);

    // A still believes it holds the store and applies the push, but its fence sees the epoch
    // moved on: no acknowledgement.
    let mut moves = stock_move("s1", "late", 5);
    let db_version = after.db_version + 1;
    for (seq, change) in moves.iter_mut().enumerate() {
        change.db_version = db_version;
        change.seq = seq as i64;
        change.site_id = site.to_vec();
    }
    let last = moves.len() as i64 - 1;
    let body = PushRequest {
        chunk: Some(Chunk {
            after: Some(after.cursor(&site)),
            batch: Some(changes::seal(
                site.to_vec(),
                after.db_version,
                db_version,
                moves,
            )),
            last_db_version: db_version,
            last_seq: last,
            txn_last_seq: last,
        }),
    }
    .encode_to_vec();
    let (status, answer) = at_a.post(protocol::PUSH_PATH, body.clone()).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(String::from_utf8_lossy(&answer).contains("moved to another cloud instance"));

    // The same push at the owner is acknowledged; A, having seen it lost the store, now
    // forwards the store's next push to B.
    let (status, _) = at_b.post(protocol::PUSH_PATH, body).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = at_a.push(stock_move("s1", "later", 1)).await;
    assert_eq!(status, StatusCode::OK);
    projected_move(&b.running.cloud, "later").await;
    projected_move(&b.running.cloud, "late").await;
    let metrics = reqwest::get(format!("{}/metrics", a.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "flashkart_cloud_sync_pushes_fenced_total 1",
        "flashkart_cloud_sync_forwarded_total{op=\"push\"} 1",
        "flashkart_cloud_store_leases_held 0",
    ] {
        assert!(
            metrics.contains(line),
            "{line} not in A's metrics:\n{metrics}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_stores_move_within_the_lease_time() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::fresh_database();
    let lease = Duration::from_millis(1_500);
    let a = Instance::start(dir.path(), "a", &url, lease.as_millis() as u64).await;
    let pg = Postgres::connect(&url).await.unwrap();

    // B is the real binary, so it can be killed with SIGKILL: nothing of it runs afterwards.
    let (mut b, b_url) = spawn_cloud(dir.path(), "127.0.0.1:0", &url, lease);

    let site = [9_u8; 16];
    let at_b = RawStore::register(&b_url, "s1", site).await;
    assert_eq!(leases(&pg).await, vec![("s1".into(), b_url.clone(), 1)]);
    let at_a = RawStore {
        http: reqwest::Client::new(),
        base: a.url(),
        token: at_b.token.clone(),
        site,
    };
    let hello = protocol::HELLO_PATH;
    let hello_body = flashkart_proto::sync::HelloRequest {
        edge_site_id: site.to_vec(),
        schema_version: 1,
    }
    .encode_to_vec();
    assert_eq!(at_a.post(hello, hello_body.clone()).await.0, StatusCode::OK);

    b.kill().unwrap();
    b.wait().unwrap();
    let killed = tokio::time::Instant::now();
    // Until the lease runs out A forwards to the dead B and says so; then A takes the store.
    loop {
        let (status, _) = at_a.post(hello, hello_body.clone()).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            killed.elapsed() < lease + Duration::from_secs(5),
            "A has not taken the store {:?} after the kill",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let moved_after = killed.elapsed();
    assert!(
        moved_after <= lease + Duration::from_secs(1),
        "{moved_after:?}"
    );
    assert_eq!(leases(&pg).await, vec![("s1".into(), a.url(), 2)]);
    let (status, _) = at_a.push(stock_move("s1", "after-kill", 1)).await;
    assert_eq!(status, StatusCode::OK);
    projected_move(&a.running.cloud, "after-kill").await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_restarted_at_its_address_takes_its_stores_back_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::fresh_database();
    // A lease far longer than the test: only inheriting it can explain a quick return.
    let lease = Duration::from_secs(120);
    let pg = Postgres::connect(&url).await.unwrap();
    let (mut first, address) = spawn_cloud(dir.path(), "127.0.0.1:0", &url, lease);
    let store = RawStore::register(&address, "s1", [4; 16]).await;
    assert_eq!(leases(&pg).await, vec![("s1".into(), address.clone(), 1)]);
    first.kill().unwrap();
    first.wait().unwrap();

    let listen = address.trim_start_matches("http://").to_owned();
    let (mut second, again) = spawn_cloud(dir.path(), &listen, &url, lease);
    assert_eq!(again, address);
    store.hello().await;
    assert_eq!(leases(&pg).await, vec![("s1".into(), address, 2)]);
    let (status, _) = store.push(stock_move("s1", "after-restart", 1)).await;
    assert_eq!(status, StatusCode::OK);
    second.kill().unwrap();
    second.wait().unwrap();
}

/// The real `flashkart-cloud run` on `listen` with its data under `dir/bin`, sharing `url`;
/// returns the child and the base URL it logged.
fn spawn_cloud(
    dir: &Path,
    listen: &str,
    url: &DatabaseUrl,
    lease: Duration,
) -> (std::process::Child, String) {
    let own = dir.join("bin");
    std::fs::create_dir_all(&own).unwrap();
    let config = own.join("cloud.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\ndata_dir = \"{}\"\nextension_dir = \"{}\"\n\
             admin_token = \"{ADMIN}\"\ndatabase_url = \"{}\"\n[cluster]\nlease_ms = {}\n",
            own.join("data").display(),
            dir.join("ext").display(),
            url.expose(),
            lease.as_millis()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flashkart-cloud"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("FLASHKART_LOG_FORMAT", "text")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let base = loop {
        let line = lines.next().expect("the cloud logs its address").unwrap();
        if line.contains("cloud listening") {
            let start = line.find("http://").expect("url in the line");
            break line[start..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect::<String>();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}
