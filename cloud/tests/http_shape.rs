//! The shape every HTTP answer shares: a request id on every response, failures as
//! `{"error", "message"}` whether the handler, the guard or an extractor refused, and request
//! metrics labelled by route rather than by handler.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_has_a_request_id_and_one_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (running, shutdown) = start_cloud(dir.path()).await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();

    // Refused by an extractor (no credential on a route without a body).
    let response = http
        .get(format!("{base}/admin/v1/stores"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let id = uuid::Uuid::parse_str(&id).expect("a UUID");
    assert_eq!(id.get_version_num(), 7);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");

    // Refused by the JSON extractor: same shape, 400.
    let response = http
        .put(format!("{base}/admin/v1/coupons/TEN"))
        .bearer_auth(ADMIN)
        .body("{\"percent_off\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    assert!(body["message"].as_str().unwrap().contains("malformed JSON"));

    // Two requests, two ids.
    let ids: Vec<String> = futures_ids(&http, &base).await;
    assert_ne!(ids[0], ids[1]);

    // Counted by method and route, with the route's parameters left as they are.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("endpoint=\"GET /admin/v1/stores\",status=\"401\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("endpoint=\"PUT /admin/v1/coupons/{code}\",status=\"400\""),
        "{metrics}"
    );

    shutdown.cancel();
    running.wait().await.unwrap();
}

async fn futures_ids(http: &reqwest::Client, base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = http.get(format!("{base}/healthz")).send().await.unwrap();
        ids.push(
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids
}
