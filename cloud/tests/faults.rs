//! The acceptance test of sync under faults: a real cloud and three stores over loopback,
//! busy on all sides, behind a TCP proxy that drops and stalls connections at random; the
//! cloud restarts mid-way and one store's edge process (a child process running this test
//! binary) is killed with SIGKILL and reopened. After healing, every store's replica equals its
//! edge, every acknowledged write survived, and nothing is duplicated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use flashkart_cloud::Cloud;
use flashkart_sync::client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

const CHILD_ENV: &str = "FLASHKART_TEST_EDGE_CHILD";
const EDGE_WRITES: usize = 200;
const CLOUD_ORDERS: usize = 30;
const PRODUCTS: usize = 20;

/// Runs as the killable edge when started by `three_stores_converge_through_faults`; does
/// nothing otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let [dir, url, token, store]: [&str; 4] =
        spec.split('|').collect::<Vec<_>>().try_into().unwrap();
    let db = open_edge(std::path::Path::new(dir), store).await;
    let _client = client::spawn(
        client_config(url, token),
        db.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    for i in 0.. {
        let id = format!("{store}-k{i}");
        edge_stock_move(&db, store, id.clone(), 1).await;
        // Acknowledged: committed durably. The parent checks it survives the kill.
        println!("ACK {id}");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// One store's in-process writer: stock moves plus repeated updates of its bins.
async fn edge_activity(db: flashkart_sync::StoreDb, store: &'static str, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..EDGE_WRITES {
        edge_stock_move(
            &db,
            store,
            format!("{store}-m{i}"),
            rng.random_range(-5..=5),
        )
        .await;
        let bin = format!("{store}-bin{}", rng.random_range(0..5));
        let seq = rng.random_range(0..1000_i64);
        db.write(move |conn| {
            conn.execute(
                "INSERT INTO bins (id, store_id, pick_seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET pick_seq = excluded.pick_seq",
                rusqlite::params![bin, store, seq],
            )
            .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.random_range(2..12))).await;
    }
}

/// The cloud routing orders to every store and changing the catalog, across its restart.
async fn cloud_activity(cloud: Arc<RwLock<Cloud>>, stores: [&'static str; 3]) {
    for i in 0..CLOUD_ORDERS {
        {
            let cloud = cloud.read().await;
            for store in stores {
                cloud_order(&cloud, store, format!("{store}-order{i}")).await;
            }
            if i < PRODUCTS {
                cloud_product(&cloud, format!("p{i}"), 100 + i as i64).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// Drops and stalls connections at random until `stop`.
async fn chaos(proxy: Proxy, stop: CancellationToken) {
    let mut rng = StdRng::seed_from_u64(7);
    while !stop.is_cancelled() {
        match rng.random_range(0..3) {
            0 => proxy.drop_all().await,
            1 => {
                proxy.stall(true);
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_500))).await;
                proxy.stall(false);
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
    }
    proxy.stall(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stores_converge_through_faults() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    tokio::time::timeout(Duration::from_secs(180), scenario())
        .await
        .expect("bounded time");
}

async fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (running, cloud_shutdown) = start_cloud(dir.path()).await;
    let proxy = Proxy::start(running.addr).await;
    let stores = ["a", "b", "c"];
    let mut tokens = Vec::new();
    for store in stores {
        tokens.push(running.cloud.register_store(store).await.unwrap());
    }
    let cloud = Arc::new(RwLock::new(running.cloud.clone()));
    let mut running = Some((running, cloud_shutdown));

    // Stores a and b run in-process; c runs in a child process that gets SIGKILLed.
    let mut edges = Vec::new();
    for (i, store) in stores.iter().take(2).enumerate() {
        let db = open_edge(dir.path(), store).await;
        let shutdown = CancellationToken::new();
        let handle = client::spawn(
            client_config(&proxy.url(), &tokens[i]),
            db.clone(),
            shutdown.clone(),
        )
        .unwrap();
        edges.push((*store, db, handle, shutdown));
    }
    let spec = format!("{}|{}|{}|c", dir.path().display(), proxy.url(), tokens[2]);
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["edge_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    let stop_chaos = CancellationToken::new();
    let chaos_task = tokio::spawn(chaos(proxy.clone(), stop_chaos.clone()));
    let activity: Vec<_> = edges
        .iter()
        .enumerate()
        .map(|(i, (store, db, _, _))| tokio::spawn(edge_activity(db.clone(), store, i as u64)))
        .chain([tokio::spawn(cloud_activity(cloud.clone(), stores))])
        .collect();

    // Kill the child edge after it acknowledged 150 writes, in the middle of everything.
    let mut acked_c = HashSet::new();
    while acked_c.len() < 150 {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("child edge is running");
        if let Some(id) = line.strip_prefix("ACK ") {
            acked_c.insert(id.to_owned());
        }
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(id) = line.strip_prefix("ACK ") {
            acked_c.insert(id.to_owned());
        }
    }

    // Restart the cloud while the stores are busy.
    {
        let mut current = cloud.write().await;
        let (old, shutdown) = running.take().unwrap();
        shutdown.cancel();
        old.wait().await.unwrap();
        let (new, shutdown) = start_cloud(dir.path()).await;
        proxy.set_upstream(new.addr).await;
        *current = new.cloud.clone();
        running = Some((new, shutdown));
    }

    // The killed edge comes back: its acknowledged writes are all there.
    let db_c = open_edge(dir.path(), "c").await;
    let rows_c: HashSet<String> = db_c
        .read(|conn| {
            conn.prepare("SELECT id FROM stock_moves")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()
                .map_err(flashkart_sync::Error::from)
        })
        .await
        .unwrap();
    assert!(
        acked_c.is_subset(&rows_c),
        "an acknowledged write was lost in the kill"
    );
    let shutdown_c = CancellationToken::new();
    let handle_c = client::spawn(
        client_config(&proxy.url(), &tokens[2]),
        db_c.clone(),
        shutdown_c.clone(),
    )
    .unwrap();
    edges.push(("c", db_c, handle_c, shutdown_c));

    for task in activity {
        task.await.unwrap();
    }
    stop_chaos.cancel();
    chaos_task.await.unwrap();

    // Healed: every replica equals its edge, with everything each side wrote exactly once.
    let (running_cloud, cloud_shutdown) = running.take().unwrap();
    for (store, db, handle, _) in &edges {
        let replica = running_cloud.cloud.replica(store).await.unwrap();
        let mut status = handle.status.clone();
        wait_for(&mut status, Duration::from_secs(60), || {
            let (db, replica) = (db.clone(), replica.clone());
            async move {
                count(&db, "SELECT count(*) FROM orders").await == CLOUD_ORDERS as i64
                    && count(&db, "SELECT count(*) FROM prices").await == PRODUCTS as i64
                    && digest(&db).await == digest(replica.db()).await
            }
        })
        .await;
        let edge_moves = count(db, "SELECT count(*) FROM stock_moves").await;
        let replica_moves = count(replica.db(), "SELECT count(*) FROM stock_moves").await;
        assert_eq!(edge_moves, replica_moves, "store {store}");
        if *store == "c" {
            assert!(edge_moves as usize >= acked_c.len());
        } else {
            assert_eq!(edge_moves as usize, EDGE_WRITES, "store {store}");
        }
        let foreign = count(
            replica.db(),
            format!("SELECT count(*) FROM stock_moves WHERE store_id != '{store}'"),
        )
        .await;
        assert_eq!(foreign, 0);
        // a and b lived through the drops and the cloud restart; c was reopened after it.
        let s = handle.status.borrow().clone();
        assert!(
            *store == "c" || s.sessions >= 2,
            "store {store} reconnected: {s:?}"
        );
    }

    for (_, db, handle, shutdown) in edges {
        shutdown.cancel();
        handle.task.await.unwrap();
        db.close().await.unwrap();
    }
    cloud_shutdown.cancel();
    running_cloud.wait().await.unwrap();
}
