//! A real cloud and a real edge daemon, as processes: HQ issues a rider a one-time enrolment
//! code from its roster, the code's hash reaches the rider's home store by sync, and the phone
//! trades the code for a certificate over the store's enrolment listener (HTTPS, trusted by the
//! CA fingerprint in HQ's QR code; the plain API refuses enrolment). A code works once; an
//! expired code and a code replaced by a newer one are refused; HQ refuses codes for unknown
//! and deactivated riders, and any code until the store has reported its CA; wrong codes are
//! throttled like PINs.

use std::time::{Duration, Instant};

use flashkart_tests::{Daemon, addr_in, binary, call_api, enrolment_code_when_ready, url_in};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const START: Duration = Duration::from_secs(60);
const ADMIN: &str = "test-admin";
const STORE: &str = "store-9";

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call_api(http, method, url, ADMIN, body).await
}

/// HQ's `POST /admin/v1/riders/{rider}/enrolment-code`, checked to be well formed: the code,
/// and the store CA fingerprint its QR payload pins.
async fn issue(
    http: &reqwest::Client,
    cloud: &str,
    rider: &str,
    body: Option<Value>,
) -> (String, String) {
    let (status, issued) = call(
        http,
        Method::POST,
        &format!("{cloud}/admin/v1/riders/{rider}/enrolment-code"),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let code = issued["code"].as_str().expect("code").to_owned();
    assert_eq!(code.len(), 11, "{code}");
    assert!(
        code.chars().enumerate().all(|(i, c)| if i == 5 {
            c == '-'
        } else {
            c.is_ascii_uppercase() || ('2'..='7').contains(&c)
        }),
        "{code}"
    );
    let qr = issued["qr_payload"].as_str().expect("qr_payload");
    let ca = qr
        .strip_prefix(&format!(
            "flashkart-enrol:v1?store={STORE}&rider={rider}&code={code}&ca="
        ))
        .unwrap_or_else(|| panic!("{qr}"));
    assert!(
        ca.len() == 64
            && ca
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{qr}"
    );
    assert!(
        issued["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    (code, ca.to_owned())
}

/// What a phone does with the QR code before it sends anything secret: fetch the store CA from
/// the enrolment listener, check it against the pinned fingerprint, and from then on trust only
/// that CA (a client that has no other root and speaks HTTPS only).
async fn pinned_phone(enrol_base: &str, ca_sha256: &str) -> reqwest::Client {
    let probe = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("probe client");
    let pem = probe
        .get(format!("{enrol_base}/riders/ca"))
        .send()
        .await
        .expect("fetch the store CA")
        .text()
        .await
        .expect("CA text");
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    let served: String = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(served, ca_sha256, "the listener's CA is the one HQ pinned");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA"))
        .https_only(true)
        .build()
        .expect("phone client")
}

/// The phone's enrolment at its home store: (status, answer).
async fn enrol(
    phone: &reqwest::Client,
    enrol_base: &str,
    rider: &str,
    code: &str,
) -> (StatusCode, Value) {
    call_api(
        phone,
        Method::POST,
        &format!("{enrol_base}/riders/{rider}/enrol"),
        "",
        Some(json!({ "code": code })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rider_enrols_with_a_code_from_hq_once_before_it_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let env = [("XDG_CACHE_HOME", cache.as_path()), ("HOME", dir.path())];
    let http = reqwest::Client::new();

    let cloud_config = dir.path().join("cloud.toml");
    std::fs::write(
        &cloud_config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{ADMIN}\"\n",
            dir.path().join("cloud").display()
        ),
    )
    .expect("write cloud config");
    let config_arg = cloud_config.display().to_string();
    let mut cloud_daemon = Daemon::start(
        &binary("flashkart-cloud"),
        &["run", "--config", &config_arg],
        &env,
    );
    let cloud = url_in(&cloud_daemon.wait_for_line("cloud listening", START)).expect("cloud url");

    let (status, registered) = call(
        &http,
        Method::POST,
        &format!("{cloud}/admin/v1/stores"),
        Some(json!({ "id": STORE })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let token = registered["token"].as_str().expect("store token");

    // HQ's roster: one active rider and one deactivated.
    for (rider, active) in [("grace", true), ("alan", false)] {
        let (status, body) = call(
            &http,
            Method::PUT,
            &format!("{cloud}/admin/v1/riders/{rider}"),
            Some(json!({"home_store_id": STORE, "name": rider, "active": active})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _) = call(
        &http,
        Method::POST,
        &format!("{cloud}/admin/v1/riders/nobody/enrolment-code"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &http,
        Method::POST,
        &format!("{cloud}/admin/v1/riders/alan/enrolment-code"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = call(
        &http,
        Method::POST,
        &format!("{cloud}/admin/v1/riders/grace/enrolment-code"),
        Some(json!({"valid_for_s": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // No code while the store has not reported its CA: the phone could not verify the store.
    let (status, refused) = call(
        &http,
        Method::POST,
        &format!("{cloud}/admin/v1/riders/grace/enrolment-code"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("certificate authority")),
        "{refused}"
    );

    let edge_config = dir.path().join("edge.toml");
    std::fs::write(
        &edge_config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nstore_id = \"{STORE}\"\n\
             manager_pin = \"246800\"\n\n[sync]\ncloud_url = \"{cloud}\"\ntoken = \"{token}\"\n\
             local_poll_ms = 20\nlong_poll_ms = 2000\nbackoff_initial_ms = 20\n\
             backoff_max_ms = 200\n\n[riders]\ntls_listen = \"127.0.0.1:0\"\n\
             enrol_listen = \"127.0.0.1:0\"\n",
            dir.path().join("edge").display()
        ),
    )
    .expect("write edge config");
    let edge_arg = edge_config.display().to_string();
    let mut edge_daemon = Daemon::start(
        &binary("flashkart-edge"),
        &["run", "--config", &edge_arg],
        &env,
    );
    let addr = addr_in(&edge_daemon.wait_for_line("HTTP API listening", START)).expect("edge");
    let edge = format!("http://{addr}/api/v1");
    let enrol_addr = addr_in(&edge_daemon.wait_for_line("riders enrolment listening", START))
        .expect("enrolment listener");
    // By name: the store's certificate names `localhost` (TLS names, not addresses).
    let enrol_base = format!("https://localhost:{}/api/v1", enrol_addr.port());

    // Once the store has synced its CA fingerprint, HQ issues codes that pin it.
    enrolment_code_when_ready(&http, &cloud, ADMIN, "grace", Duration::from_secs(30)).await;
    let (first, ca_sha256) = issue(&http, &cloud, "grace", None).await;
    let phone = pinned_phone(&enrol_base, &ca_sha256).await;

    // The plain API does not take the code (it would cross the Wi-Fi in clear).
    let (status, answer) = call(
        &http,
        Method::POST,
        &format!("{edge}/riders/grace/enrol"),
        Some(json!({ "code": first })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"], "https_required", "{answer}");

    // The code reaches the store by sync; until then the phone is refused and tries again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let bundle = loop {
        let (status, answer) = enrol(&phone, &enrol_base, "grace", &first).await;
        if status == StatusCode::OK {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "the code never reached the store: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(bundle["rider_id"], "grace");
    for pem in ["cert_pem", "ca_pem"] {
        assert!(
            bundle[pem]
                .as_str()
                .is_some_and(|p| p.starts_with("-----BEGIN CERTIFICATE-----")),
            "{bundle}"
        );
    }
    assert!(bundle["key_pem"].as_str().is_some(), "{bundle}");

    assert_eq!(
        bundle["ca_pem"].as_str().map(|pem| {
            let der = rustls_pemfile::certs(&mut pem.as_bytes())
                .next()
                .expect("a certificate")
                .expect("PEM");
            Sha256::digest(&der)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        }),
        Some(ca_sha256.clone())
    );

    // Single use.
    let (status, answer) = enrol(&phone, &enrol_base, "grace", &first).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"], "bad_enrolment_code", "{answer}");

    // A new code replaces the one before it: once the newer one works, the older is refused.
    let (replaced, _) = issue(&http, &cloud, "grace", None).await;
    let (newer, _) = issue(&http, &cloud, "grace", None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = enrol(&phone, &enrol_base, "grace", &newer).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, answer) = enrol(&phone, &enrol_base, "grace", &replaced).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");

    // An expired code is refused like a wrong one, and the store says why in its log.
    let (expiring, _) = issue(&http, &cloud, "grace", Some(json!({"valid_for_s": 1}))).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answer) = enrol(&phone, &enrol_base, "grace", &expiring).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["error"], "bad_enrolment_code", "{answer}");
        if edge_daemon
            .log()
            .iter()
            .any(|l| l.contains("enrolment refused: the code expired"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the expired code never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Guessing is throttled like a PIN: once a live code is at the store, five wrong codes lock
    // the rider out, and then even the right code is refused until the lock passes. Wrong codes
    // sent while no code could work (the live one not synced yet) are not guesses and lock
    // nothing, so the phone that polls here is refused with 403 until the code arrives.
    let (live, _) = issue(&http, &cloud, "grace", None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut wrong = 0;
    loop {
        let (status, answer) = enrol(&phone, &enrol_base, "grace", "AAAAA-AAAAA").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(answer["error"], "locked", "{answer}");
            break;
        }
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        wrong += 1;
        assert!(
            Instant::now() < deadline,
            "{wrong} wrong codes never locked the rider out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(wrong >= 5, "locked after {wrong} wrong codes");
    let locked = phone
        .post(format!("{enrol_base}/riders/grace/enrol"))
        .json(&json!({ "code": live }))
        .send()
        .await
        .expect("enrol");
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&retry_after), "{retry_after}");
}
