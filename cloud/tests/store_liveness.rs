//! Several cloud instances on one PostgreSQL: a store whose edge syncs only with the instance
//! holding its lease is online at every instance (they all route orders to it) and shown as
//! heard from on every instance's dashboard, and goes offline everywhere once it has been
//! silent longer than the grace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use flashkart_cloud::RunningCloud;
use flashkart_cloud::hq::StoreProfile;
use flashkart_cloud::postgres::DatabaseUrl;
use flashkart_sync::client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Short, so the test is quick; renewals (and reads of the shared contacts) every 300 ms.
const LEASE_MS: u64 = 900;
/// Longer than the two renewal periods a shared contact can lag by.
const GRACE: Duration = Duration::from_millis(2_000);

struct Instance {
    running: RunningCloud,
    shutdown: CancellationToken,
    started: Instant,
}

impl Instance {
    async fn start(dir: &Path, name: &str, url: &DatabaseUrl) -> Self {
        let mut config = cloud_config(&dir.join(name));
        config.extension_dir = Some(dir.join("ext"));
        config.database_url = Some(url.clone());
        config.cluster.lease_ms = LEASE_MS;
        config.intake.offline_grace_ms = GRACE.as_millis() as u64;
        let shutdown = CancellationToken::new();
        let running = flashkart_cloud::start(config, shutdown.clone())
            .await
            .expect("instance starts");
        // Its liveness (and start grace) began during the start, before this.
        let started = Instant::now();
        Self {
            running,
            shutdown,
            started,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    /// `store` as this instance's dashboard shows it now: online (routing's own test), and
    /// whether it was ever heard from.
    async fn contact(&self, store: &str) -> (bool, bool) {
        let published = self.running.cloud.dashboard().rebuild().await.unwrap();
        let tile = published
            .snapshot
            .stores
            .iter()
            .find(|s| s.id == store)
            .expect("the store is profiled");
        (tile.online, tile.last_contact_at.is_some())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.running.wait().await.unwrap();
    }
}

/// Polls `instance`'s view of `store` until it is `want`, failing at `deadline`.
async fn contact_becomes(instance: &Instance, store: &str, want: (bool, bool), deadline: Instant) {
    loop {
        let now = instance.contact(store).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{store}: (online, heard from) is {now:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_served_by_one_instance_is_online_at_every_instance() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres::fresh_database();
    let a = Instance::start(dir.path(), "a", &url).await;
    let b = Instance::start(dir.path(), "b", &url).await;

    let token = a.running.cloud.register_store("s1").await.unwrap();
    let mut profile = api::profile(api::area(5));
    profile["id"] = "s1".into();
    let profile: StoreProfile = serde_json::from_value(profile).unwrap();
    a.running
        .cloud
        .hq()
        .put_store(profile.clone())
        .await
        .unwrap();
    b.running.cloud.hq().put_store(profile).await.unwrap();

    // The store's edge syncs with A only, long-polling there.
    let edge = open_edge(dir.path(), "s1").await;
    let edge_shutdown = CancellationToken::new();
    let handle = client::spawn(
        client_config(&a.url(), &token),
        edge.clone(),
        edge_shutdown.clone(),
    )
    .unwrap();
    let mut status = handle.status.clone();
    let now = handle.status.clone();
    wait_for(&mut status, Duration::from_secs(30), || {
        let now = now.clone();
        async move { now.borrow().online }
    })
    .await;

    // Once B's start grace is over, only what A recorded can keep the store online at B. It
    // stays so for a whole grace more: several renewals by A and reads by B.
    tokio::time::sleep_until(b.started + GRACE + Duration::from_millis(100)).await;
    let watched = Instant::now();
    while watched.elapsed() < GRACE {
        assert_eq!(a.contact("s1").await, (true, true), "at A, serving it");
        assert_eq!(
            b.contact("s1").await,
            (true, true),
            "at B, {:?} after its start",
            b.started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !dir.path().join("b/cloud/stores/s1.db").exists(),
        "B never served the store itself"
    );

    // The edge goes away: B says offline once the store has been silent longer than the grace
    // (not before, give or take a query's latency), and still says it was heard from.
    edge_shutdown.cancel();
    handle.task.await.unwrap();
    let silent = Instant::now();
    contact_becomes(
        &b,
        "s1",
        (false, true),
        silent + GRACE + Duration::from_secs(30),
    )
    .await;
    assert!(
        silent.elapsed() + Duration::from_millis(250) >= GRACE,
        "offline at B {:?} after the store went silent",
        silent.elapsed()
    );
    contact_becomes(
        &a,
        "s1",
        (false, true),
        Instant::now() + Duration::from_secs(30),
    )
    .await;

    edge.close().await.unwrap();
    a.stop().await;
    b.stop().await;
}
