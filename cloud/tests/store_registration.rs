//! Registering a store that is already registered, through the admin API or the
//! `register-store` command: a conflict that cannot take the store over, unless the token is
//! rotated on purpose, and then the store's edge keeps its data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::*;
use common::*;
use flashkart_sync::protocol;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_again_conflicts_and_rotation_keeps_the_edge() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let api = Api::new(running.addr);
    let (status, first) = api
        .admin(Method::POST, "/admin/v1/stores", json!({"id": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let first = first["token"].as_str().unwrap().to_owned();

    let edge = open_edge(dir.path(), "s1").await;
    let hello = |token: String, site: Vec<u8>| {
        let http = api.http.clone();
        let url = format!("{}{}", api.base, protocol::HELLO_PATH);
        async move {
            let body = prost::Message::encode_to_vec(&flashkart_proto::sync::HelloRequest {
                edge_site_id: site,
                schema_version: 1,
            });
            http.post(url)
                .bearer_auth(token)
                .header("content-type", protocol::CONTENT_TYPE)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let site = edge.site_id().to_vec();
    assert_eq!(hello(first.clone(), site.clone()).await, StatusCode::OK);

    // Registering it again: 409, and the running edge's token still works.
    let (status, body) = api
        .admin(Method::POST, "/admin/v1/stores", json!({"id": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("/token"),
        "{body}"
    );
    assert_eq!(hello(first.clone(), site.clone()).await, StatusCode::OK);

    // Rotation: a store's credential cannot, unknown stores are 404, the admin gets a new
    // token; the old one stops working and the edge stays bound.
    let (status, _) = api
        .call(Method::POST, "/admin/v1/stores/s1/token", &first, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .call(Method::POST, "/admin/v1/stores/nope/token", ADMIN, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, rotated) = api
        .call(Method::POST, "/admin/v1/stores/s1/token", ADMIN, None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let second = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(
        hello(first.clone(), site.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(hello(second.clone(), site.clone()).await, StatusCode::OK);
    let other_site = vec![9_u8; 16];
    assert_eq!(
        hello(second.clone(), other_site.clone()).await,
        StatusCode::FORBIDDEN,
        "the binding survived the rotation"
    );

    // A replaced edge database: rotation that releases the binding lets the new one bind.
    let (status, released) = api
        .admin(
            Method::POST,
            "/admin/v1/stores/s1/token",
            json!({"release_edge_site": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let third = released["token"].as_str().unwrap().to_owned();
    assert_eq!(hello(third.clone(), other_site).await, StatusCode::OK);
    assert_eq!(hello(third, site).await, StatusCode::FORBIDDEN);
    let (status, _) = api
        .admin(
            Method::POST,
            "/admin/v1/stores/s1/token",
            json!({"release": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The in-process handle behaves the same.
    assert!(running.cloud.register_store("s1").await.is_err());
    edge.close().await.unwrap();
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_store_cli_refuses_an_existing_store_unless_rotating() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cloud.toml");
    // The command and the cloud started after it must share the database.
    let database_url =
        common::postgres::backend_is_postgres().then(common::postgres::fresh_database);
    let database_line = database_url
        .as_ref()
        .map(|url| format!("database_url = \"{}\"\n", url.expose()))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nextension_dir = \"{}\"\n{database_line}",
            dir.path().join("cloud").display(),
            dir.path().join("ext").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flashkart-cloud"))
            .arg("register-store")
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, first, stderr) = run(&["s1"]);
    assert!(ok && first.starts_with("fks_"), "{stderr}");
    let (ok, out, stderr) = run(&["s1"]);
    assert!(!ok, "registering twice must fail: {out}");
    assert!(stderr.contains("already registered"), "{stderr}");
    let (ok, _, stderr) = run(&["nope", "--rotate"]);
    assert!(!ok && stderr.contains("not registered"), "{stderr}");
    let (ok, _, stderr) = run(&["s1", "--release-edge-site"]);
    assert!(!ok, "--release-edge-site needs --rotate: {stderr}");
    let (ok, second, stderr) = run(&["s1", "--rotate"]);
    assert!(ok && second.starts_with("fks_"), "{stderr}");
    assert_ne!(first, second);

    // The running cloud sees the rotated token, not the first one.
    let mut cloud_config = cloud_config(dir.path());
    cloud_config.data_dir = dir.path().join("cloud");
    cloud_config.database_url = database_url;
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(cloud_config, shutdown.clone())
        .await
        .unwrap();
    let api = Api::new(running.addr);
    for (token, expected) in [
        (first, StatusCode::UNAUTHORIZED),
        (second, StatusCode::FORBIDDEN),
    ] {
        // A store's credential on the admin API: 403 when it is a valid store token.
        let (status, _) = api
            .call(Method::POST, "/admin/v1/customers", &token, None)
            .await;
        assert_eq!(status, expected);
    }
    shutdown.cancel();
    running.wait().await.unwrap();
}
