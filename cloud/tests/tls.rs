//! The production transport: the cloud serves HTTPS (HTTP/2 over rustls) with a certificate
//! from a private CA, and a store's sync client that trusts that CA syncs through it. A client
//! that does not trust the CA, or speaks plain HTTP to the TLS port, gets nowhere and changes
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::pki::private_pki;
use common::*;
use flashkart_sync::client;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_sync_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, tls) = private_pki(dir.path());
    let mut config = cloud_config(dir.path());
    config.tls = Some(tls);
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .unwrap();
    let url = format!("https://localhost:{}", running.addr.port());
    let token = running.cloud.register_store("s1").await.unwrap();

    // Not trusting the CA: the client stays offline and the replica sees nothing.
    let untrusting_db = open_edge(dir.path(), "untrusting").await;
    edge_stock_move(&untrusting_db, "s1", "never".into(), 1).await;
    let stop_untrusting = CancellationToken::new();
    let untrusting = client::spawn(
        client_config(&url, &token),
        untrusting_db.clone(),
        stop_untrusting.clone(),
    )
    .unwrap();
    let mut status = untrusting.status.clone();
    tokio::time::timeout(Duration::from_secs(30), async {
        while status.borrow().last_error.is_none() {
            status.changed().await.unwrap();
        }
    })
    .await
    .expect("the untrusting client reports an error");
    let error = status.borrow().last_error.clone().unwrap_or_default();
    assert!(!status.borrow().online, "{error}");
    stop_untrusting.cancel();

    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{}/healthz", running.addr.port()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // Trusting it: a store's rows reach its replica over HTTP/2 + TLS, the catalog comes back.
    let db = open_edge(dir.path(), "s1").await;
    edge_stock_move(&db, "s1", "m-1".into(), 5).await;
    cloud_product(&running.cloud, "p-1".into(), 199).await;
    let mut trusted = client_config(&url, &token);
    trusted.ca_cert = Some(ca);
    let stop = CancellationToken::new();
    let handle = client::spawn(trusted, db.clone(), stop.clone()).unwrap();
    let replica = running.cloud.replica("s1").await.unwrap();
    let mut status = handle.status.clone();
    wait_for(&mut status, Duration::from_secs(30), || {
        let (db, replica) = (db.clone(), replica.clone());
        async move {
            count(
                replica.db(),
                "SELECT count(*) FROM stock_moves WHERE id = 'm-1'",
            )
            .await
                == 1
                && count(&db, "SELECT count(*) FROM prices").await == 1
        }
    })
    .await;
    assert_eq!(
        count(
            replica.db(),
            "SELECT count(*) FROM stock_moves WHERE id = 'never'"
        )
        .await,
        0
    );
    assert!(status.borrow().online);

    stop.cancel();
    shutdown.cancel();
    running.wait().await.unwrap();
}
