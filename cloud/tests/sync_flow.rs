//! Two stores sync through a real cloud over loopback: each store's own changes reach its
//! replica only, the cloud's rows for a store reach that store only, the catalog reaches every
//! store, a big transaction spans chunks, and each replica ends equal to its edge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use flashkart_sync::client;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_catalog_and_orders_flow_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (running, cloud_shutdown) = start_cloud(dir.path()).await;
    let url = format!("http://{}", running.addr);
    // Catalog written before the stores exist reaches them when they first sync.
    cloud_product(&running.cloud, "p-early".into(), 100).await;

    let mut edges = Vec::new();
    for store in ["a", "b"] {
        let token = running.cloud.register_store(store).await.unwrap();
        let db = open_edge(dir.path(), store).await;
        let shutdown = CancellationToken::new();
        let handle =
            client::spawn(client_config(&url, &token), db.clone(), shutdown.clone()).unwrap();
        edges.push((store, db, handle, shutdown));
    }

    // Concurrent activity: each store records stock moves (one big transaction too), the cloud
    // routes orders to each store and changes the catalog.
    for (store, db, _, _) in &edges {
        for i in 0..50 {
            edge_stock_move(db, store, format!("{store}-m{i}"), i).await;
        }
        let owner = store.to_string();
        db.write(move |conn| {
            for i in 0..1_000 {
                conn.execute(
                    "INSERT INTO stock_moves (id, store_id, qty, kind) VALUES (?1, ?2, 1, 'count')",
                    rusqlite::params![format!("{owner}-big{i}"), owner],
                )?;
            }
            Ok::<_, flashkart_sync::Error>(())
        })
        .await
        .unwrap();
        cloud_order(&running.cloud, store, format!("order-{store}")).await;
    }
    cloud_product(&running.cloud, "p-late".into(), 250).await;

    for (store, db, handle, _) in &mut edges {
        let replica = running.cloud.replica(store).await.unwrap();
        let mut status = handle.status.clone();
        let now = handle.status.clone();
        wait_for(&mut status, Duration::from_secs(30), || {
            let (db, replica, now) = (db.clone(), replica.clone(), now.clone());
            async move {
                now.borrow().lag_changes == 0
                    && count(&db, "SELECT count(*) FROM prices").await == 2
                    && count(&db, "SELECT count(*) FROM orders").await == 1
                    && digest(&db).await == digest(replica.db()).await
            }
        })
        .await;
        assert_eq!(
            count(replica.db(), "SELECT count(*) FROM stock_moves").await,
            1_050
        );
        let other = format!("SELECT count(*) FROM stock_moves WHERE store_id != '{store}'");
        assert_eq!(count(replica.db(), other).await, 0);
        let s = handle.status.borrow().clone();
        assert!(
            s.online && s.pushed_changes >= 1_050 && s.lag_changes == 0,
            "{s:?}"
        );
    }

    // Edge writes keep flowing to the cloud after the catch-up.
    let (store, db, _, _) = &edges[0];
    edge_stock_move(db, store, "a-after".into(), 9).await;
    let replica = running.cloud.replica(store).await.unwrap();
    let mut status = edges[0].2.status.clone();
    wait_for(&mut status, Duration::from_secs(10), || {
        let replica = replica.clone();
        async move {
            count(
                replica.db(),
                "SELECT count(*) FROM stock_moves WHERE id = 'a-after'",
            )
            .await
                == 1
        }
    })
    .await;

    for (_, db, handle, shutdown) in edges {
        shutdown.cancel();
        handle.task.await.unwrap();
        db.close().await.unwrap();
    }
    drop(replica);
    cloud_shutdown.cancel();
    running.wait().await.unwrap();
}
