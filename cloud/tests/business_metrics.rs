//! The business series on `/metrics` against a real cloud with two stores syncing through the
//! real client: orders placed through intake, the stores' progress written into their own
//! databases (as their staff's scans would), and the scrape shows exactly what happened: open
//! orders by state, pick-time quantiles and packs in the last hour, on-time share, deliveries,
//! stock-outs and low stock, a sync lag per store, and the process and runtime gauges.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::city::*;
use flashkart_cloud::clock;

/// Every sample of a scrape: `name{labels}` -> value.
async fn scrape(env: &Env) -> BTreeMap<String, f64> {
    let text = env
        .api
        .http
        .get(format!("{}/metrics", env.api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn sample(samples: &BTreeMap<String, f64>, series: &str) -> Option<f64> {
    samples.get(series).copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_series_show_what_happened() {
    // Store 2 promises delivery in one minute, so a delivery 100 s after its order is late.
    let env = two_stores(None, 1).await;
    let a = env.order_at("a", ONLY_S1, "s1").await;
    let b = env.order_at("b", ONLY_S1, "s1").await;
    let c = env.order_at("c", ONLY_S1, "s1").await;
    let d = env.order_at("d", ONLY_S2, "s2").await;
    edge_has(&env, "s1", "SELECT count(*) FROM orders".into(), 3).await;
    edge_has(&env, "s2", "SELECT count(*) FROM orders".into(), 1).await;

    let base = clock::now();
    let (e1, e2) = (env.edge("s1").clone(), env.edge("s2").clone());
    // s1: a picked in 30 s and delivered on time; b picked in 90 s and left PACKED; c untouched.
    progress(
        &e1,
        "s1",
        &a,
        "ROUTED",
        base,
        &[
            ("ACCEPTED", 1),
            ("PICKING", 5),
            ("PACKED", 31),
            ("READY", 40),
            ("PICKED_UP", 50),
            ("DELIVERED", 70),
        ],
    )
    .await;
    progress(
        &e1,
        "s1",
        &b,
        "ROUTED",
        base,
        &[("ACCEPTED", 1), ("PICKING", 2), ("PACKED", 91)],
    )
    .await;
    // s2: d picked in 10 s and delivered late (100 s after a one-minute promise).
    progress(
        &e2,
        "s2",
        &d,
        "ROUTED",
        base,
        &[
            ("ACCEPTED", 1),
            ("PICKING", 2),
            ("PACKED", 11),
            ("READY", 12),
            ("PICKED_UP", 13),
            ("DELIVERED", 100),
        ],
    )
    .await;
    projected(
        &env,
        &[
            (a.as_str(), "DELIVERED"),
            (b.as_str(), "PACKED"),
            (c.as_str(), "ROUTED"),
            (d.as_str(), "DELIVERED"),
        ],
    )
    .await;

    let samples = scrape(&env).await;
    let value = |series: &str| sample(&samples, series);
    // Open orders by state: every open state of every profiled store, zeros included.
    for (store, state, n) in [
        ("s1", "ROUTED", 1.0),
        ("s1", "ACCEPTED", 0.0),
        ("s1", "PICKING", 0.0),
        ("s1", "PACKED", 1.0),
        ("s1", "READY", 0.0),
        ("s1", "PICKED_UP", 0.0),
        ("s2", "ROUTED", 0.0),
        ("s2", "PACKED", 0.0),
    ] {
        assert_eq!(
            value(&format!(
                "flashkart_cloud_orders{{store=\"{store}\",state=\"{state}\"}}"
            )),
            Some(n),
            "{store} {state}: {samples:#?}"
        );
    }
    assert_eq!(
        value("flashkart_cloud_orders{store=\"s1\",state=\"DELIVERED\"}"),
        None,
        "finished orders are not open"
    );
    // Pick time, ACCEPTED to PACKED: s1 packed two (30 s, 90 s), s2 one (10 s).
    for (store, quantile, seconds) in [
        ("s1", "0.5", 30.0),
        ("s1", "0.95", 90.0),
        ("s1", "1", 90.0),
        ("s2", "0.5", 10.0),
        ("s2", "0.95", 10.0),
    ] {
        assert_eq!(
            value(&format!(
                "flashkart_cloud_pick_seconds{{store=\"{store}\",quantile=\"{quantile}\"}}"
            )),
            Some(seconds),
            "{store} p{quantile}: {samples:#?}"
        );
    }
    assert_eq!(value("flashkart_cloud_packed_1h{store=\"s1\"}"), Some(2.0));
    assert_eq!(value("flashkart_cloud_packed_1h{store=\"s2\"}"), Some(1.0));
    // Deliveries in the last hour and the share on time.
    assert_eq!(
        value("flashkart_cloud_delivered_1h{store=\"s1\"}"),
        Some(1.0)
    );
    assert_eq!(
        value("flashkart_cloud_delivered_1h{store=\"s2\"}"),
        Some(1.0)
    );
    assert_eq!(
        value("flashkart_cloud_on_time_share_1h{store=\"s1\"}"),
        Some(1.0)
    );
    assert_eq!(
        value("flashkart_cloud_on_time_share_1h{store=\"s2\"}"),
        Some(0.0)
    );
    // Stock: p2 is in stock nowhere; s2 has only 2 of p1 (low), s1 10.
    assert_eq!(value("flashkart_cloud_stock_outs{store=\"s1\"}"), Some(1.0));
    assert_eq!(value("flashkart_cloud_stock_outs{store=\"s2\"}"), Some(1.0));
    assert_eq!(value("flashkart_cloud_low_stock{store=\"s1\"}"), Some(0.0));
    assert_eq!(value("flashkart_cloud_low_stock{store=\"s2\"}"), Some(1.0));
    // Both stores' facts have been projected: each has a lag (the stores' clock is ours).
    for store in ["s1", "s2"] {
        let lag = value(&format!(
            "flashkart_cloud_sync_lag_seconds{{store=\"{store}\"}}"
        ));
        assert!(lag.is_some_and(|s| s >= 0.0), "{store}: {lag:?}");
    }
    // The process and the runtime.
    assert!(value("flashkart_cloud_process_resident_memory_bytes").is_some_and(|b| b > 0.0));
    assert!(value("flashkart_cloud_process_open_fds").is_some_and(|n| n > 0.0));
    assert!(value("flashkart_cloud_process_cpu_seconds").is_some_and(|s| s >= 0.0));
    assert!(value("flashkart_cloud_tokio_workers").is_some_and(|n| n >= 1.0));
    assert!(value("flashkart_cloud_tokio_alive_tasks").is_some_and(|n| n >= 1.0));
    // Intake's own series still count: four orders placed.
    assert_eq!(value("flashkart_cloud_orders_placed_total"), Some(4.0));

    // The next scrape reads again: b is delivered, so s1's PACKED goes to 0 and its packs stay.
    progress(
        &e1,
        "s1",
        &b,
        "PACKED",
        base,
        &[("READY", 92), ("PICKED_UP", 93), ("DELIVERED", 94)],
    )
    .await;
    projected(&env, &[(b.as_str(), "DELIVERED")]).await;
    let samples = scrape(&env).await;
    let value = |series: &str| sample(&samples, series);
    assert_eq!(
        value("flashkart_cloud_orders{store=\"s1\",state=\"PACKED\"}"),
        Some(0.0)
    );
    assert_eq!(
        value("flashkart_cloud_delivered_1h{store=\"s1\"}"),
        Some(2.0)
    );
    assert_eq!(
        value("flashkart_cloud_on_time_share_1h{store=\"s1\"}"),
        Some(1.0)
    );
    assert_eq!(value("flashkart_cloud_packed_1h{store=\"s1\"}"), Some(2.0));
    env.stop().await;
}
