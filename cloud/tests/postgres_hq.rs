//! HQ's records on PostgreSQL, shared by instances: what one instance writes the other acts
//! on (customers, accounts, HQ users, store profiles through its in-memory copy, idempotency
//! keys), and what only a shared database has to get right (two instances remembering one key
//! at once, a schema newer than the binary). Always on the machine's PostgreSQL, like
//! `postgres_registry.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::api::{Api, area, order_of, profile};
use common::cloud_config;
use flashkart_cloud::hq::accounts::{NewAccount, NewAddress};
use flashkart_cloud::hq::ratings::OrderRating;
use flashkart_cloud::hq::users::{AuditEntry, HqRole, HqUser, hash_password};
use flashkart_cloud::hq::{Coupon, Hq, OrderMove, Placed, RosterRider, StoreProfile};
use flashkart_cloud::postgres::{DatabaseUrl, Postgres};
use flashkart_cloud::{CloudConfig, RunningCloud};
use flashkart_sync::StoreConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How long another instance may take to notice a change.
const WAIT: Duration = Duration::from_secs(10);

struct Instance {
    running: RunningCloud,
    shutdown: CancellationToken,
    api: Api,
    _dir: tempfile::TempDir,
}

async fn instance(url: &DatabaseUrl) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let mut config: CloudConfig = cloud_config(dir.path());
    config.database_url = Some(url.clone());
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .expect("cloud starts");
    let api = Api::new(running.addr);
    Instance {
        running,
        shutdown,
        api,
        _dir: dir,
    }
}

impl Instance {
    async fn stop(self) {
        self.shutdown.cancel();
        self.running.wait().await.unwrap();
    }
}

async fn post(api: &Api, path: &str, body: Value) -> (StatusCode, Value) {
    let response = api
        .http
        .post(format!("{}{path}", api.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `done` every 20 ms until it holds, failing after [`WAIT`].
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything HQ's database promises, as observations to compare between engines.
async fn scenario(hq: &Hq) -> Vec<String> {
    let mut seen = Vec::new();
    // Store profiles and pauses, through the copy in memory.
    let mut store: StoreProfile = serde_json::from_value(profile(area(5))).unwrap();
    store.id = "s1".into();
    hq.put_store(store.clone()).await.unwrap();
    let paused = hq
        .set_paused("s1", true, Some("count".into()))
        .await
        .unwrap()
        .unwrap();
    seen.push(format!(
        "paused {} {:?}",
        paused.paused, paused.paused_reason
    ));
    seen.push(format!(
        "pause unknown {:?}",
        hq.set_paused("nope", true, None).await.unwrap()
    ));
    let kept = hq
        .put_store_keeping_pause(store.clone(), true)
        .await
        .unwrap();
    seen.push(format!("kept {} {:?}", kept.paused, kept.paused_reason));
    let routable: Vec<(String, bool)> = hq
        .stores()
        .iter()
        .map(|s| (s.profile.id.clone(), s.profile.paused))
        .collect();
    seen.push(format!("stores {routable:?}"));
    // Coupons, riders, PINs, customers, moves.
    for (code, percent_off) in [("B", 10), ("A", 5), ("A", 7)] {
        hq.put_coupon(Coupon {
            code: code.into(),
            percent_off,
            amount_off_minor: i64::MAX,
            min_basket_minor: 100,
            active: code == "A",
        })
        .await
        .unwrap();
    }
    seen.push(format!("coupons {:?}", hq.coupons().await.unwrap()));
    seen.push(format!("coupon {:?}", hq.coupon("Z").await.unwrap()));
    for (id, rating) in [("r2", 4.5), ("r1", 3.0)] {
        hq.put_rider(RosterRider {
            id: id.into(),
            home_store_id: "s1".into(),
            name: id.to_uppercase(),
            vehicle: "car".into(),
            capacity: 2,
            rating,
            shift: None,
            active: true,
        })
        .await
        .unwrap();
    }
    let riders = hq.riders().await.unwrap();
    seen.push(format!("riders {riders:?}"));
    hq.keep_delivery_pin("o1", "1234").await.unwrap();
    hq.keep_delivery_pin("o1", "9999").await.unwrap();
    seen.push(format!(
        "pins {:?} {:?}",
        hq.delivery_pin("o1").await.unwrap(),
        hq.delivery_pin("o2").await.unwrap()
    ));
    let (customer, token) = hq.create_customer("Cy".into()).await.unwrap();
    let found = hq.customer(&token).await.unwrap().unwrap();
    seen.push(format!(
        "customer {} {:?}",
        found.0 == customer,
        hq.customer("fkc_x").await.unwrap()
    ));
    let order_move = OrderMove {
        order_id: "o1".into(),
        from_store: "s1".into(),
        to_store: "s2".into(),
        requested_at: "2026-01-01T00:00:00.000Z".into(),
        cancel_reason: "moved".into(),
        note: "n".into(),
    };
    seen.push(format!(
        "moves {} {}",
        hq.begin_move(order_move.clone()).await.unwrap(),
        hq.begin_move(order_move).await.unwrap()
    ));
    seen.push(format!(
        "unfinished {}",
        hq.unfinished_moves().await.unwrap().len()
    ));
    hq.end_move("o1").await.unwrap();
    seen.push(format!(
        "unfinished {}",
        hq.unfinished_moves().await.unwrap().len()
    ));
    // HQ users, sessions, the audit log.
    let olga = HqUser {
        username: "olga".into(),
        name: "Olga".into(),
        role: HqRole::Operator,
        active: true,
    };
    seen.push(format!(
        "no such user {}",
        hq.put_user(olga.clone(), None).await.unwrap()
    ));
    let hash = hash_password("correct horse battery").unwrap();
    hq.put_user(olga.clone(), Some(hash)).await.unwrap();
    seen.push(format!("users {:?}", hq.users().await.unwrap()));
    let wrong = hq.sign_in("olga", "wrong".into(), 1).await.unwrap();
    seen.push(format!("wrong password {wrong:?}"));
    let (cookie, session) = hq
        .sign_in("olga", "correct horse battery".into(), 1)
        .await
        .unwrap()
        .unwrap();
    let live = hq.session(&cookie).await.unwrap().unwrap();
    seen.push(format!("session {} {:?}", live == session, live.role));
    hq.put_user(
        HqUser {
            active: false,
            ..olga
        },
        None,
    )
    .await
    .unwrap();
    seen.push(format!(
        "deactivated {:?} {:?}",
        hq.session(&cookie).await.unwrap(),
        hq.sign_in("olga", "correct horse battery".into(), 1)
            .await
            .unwrap()
    ));
    for (at, status) in [
        ("2026-01-01", 200),
        ("2026-01-03", 500),
        ("2026-01-02", 204),
    ] {
        hq.audit(AuditEntry {
            at: format!("{at}T00:00:00.000Z"),
            actor: "admin-token".into(),
            role: HqRole::Admin,
            method: "PUT".into(),
            path: "/x".into(),
            status,
            reason: None,
        })
        .await
        .unwrap();
    }
    let audit: Vec<(String, u16)> = hq
        .audit_log(2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.at, e.status))
        .collect();
    seen.push(format!("audit {audit:?}"));
    // Accounts, addresses, password resets and their outbox.
    let account = || NewAccount::new("Ann@Example.com", "long enough pw".into(), "Ann").unwrap();
    let (session_token, session) = hq.sign_up(account(), 1).await.unwrap();
    seen.push(format!(
        "taken {:?}",
        hq.sign_up(account(), 1).await.err().map(|e| e.to_string())
    ));
    let me = hq.account_session(&session_token).await.unwrap().unwrap();
    seen.push(format!("account {} {}", me == session, me.email));
    for label in ["Home", "Work"] {
        hq.add_address(
            &session.customer_id,
            NewAddress {
                label: label.into(),
                text: "Somewhere 1".into(),
                lat: 52.5,
                lon: 13.4,
            },
        )
        .await
        .unwrap();
    }
    let addresses = hq.addresses(&session.customer_id).await.unwrap();
    seen.push(format!(
        "addresses {:?} not another's {}",
        addresses
            .iter()
            .map(|a| a.label.clone())
            .collect::<Vec<_>>(),
        hq.delete_address("someone else", &addresses[0].id)
            .await
            .unwrap()
    ));
    seen.push(format!(
        "email {:?}",
        hq.account_email(&session.customer_id).await.unwrap()
    ));
    for _ in 0..4 {
        hq.request_password_reset("ann@example.com".into())
            .await
            .unwrap();
    }
    hq.request_password_reset("nobody@example.com".into())
        .await
        .unwrap();
    let outbox: Vec<(String, String, String)> = hq
        .outbox()
        .entries()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.channel, e.state))
        .collect();
    seen.push(format!("outbox {outbox:?}"));
    seen.push(format!(
        "bad reset {:?}",
        hq.confirm_password_reset("fkr_nope", "another long pw".into())
            .await
            .err()
            .map(|e| e.to_string())
    ));
    hq.end_account_session(&session_token).await.unwrap();
    seen.push(format!(
        "signed out {:?}",
        hq.account_session(&session_token).await.unwrap()
    ));
    // Ratings and what they add up to.
    for i in 0..6_u8 {
        let rating = OrderRating {
            order_id: format!("o{i}"),
            customer_id: customer.clone(),
            store_id: if i < 4 { "s1" } else { "s2" }.into(),
            rider_id: Some("r1".into()),
            delivery_stars: 1 + i % 5,
            order_stars: 5 - i % 5,
            comment: (i == 0).then(|| "quick".to_owned()),
            created_at: format!("2026-01-0{}T00:00:00.000Z", i + 1),
        };
        hq.add_rating(rating).await.unwrap();
    }
    let again = OrderRating {
        order_id: "o0".into(),
        customer_id: customer.clone(),
        store_id: "s1".into(),
        rider_id: None,
        delivery_stars: 5,
        order_stars: 5,
        comment: None,
        created_at: "2026-01-09T00:00:00.000Z".into(),
    };
    seen.push(format!(
        "rated again {:?}",
        hq.add_rating(again).await.err().map(|e| e.to_string())
    ));
    let rating = hq.rating("o0").await.unwrap().unwrap();
    seen.push(format!(
        "rating {} {} {:?}",
        rating.delivery_stars, rating.order_stars, rating.comment
    ));
    let mut by_rider: Vec<_> = hq
        .rider_ratings(&["r1".into(), "r2".into(), "r1".into()])
        .await
        .unwrap()
        .into_iter()
        .map(|(id, r)| format!("{id} {} {:.3}", r.count, r.mean_delivery_stars))
        .collect();
    by_rider.sort();
    seen.push(format!("rider ratings {by_rider:?}"));
    let roster: Vec<&RosterRider> = riders.iter().collect();
    let mut effective: Vec<_> = hq
        .effective_ratings(&roster)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, r)| format!("{id} {r:.3}"))
        .collect();
    effective.sort();
    seen.push(format!("effective {effective:?}"));
    let stores: Vec<String> = hq
        .store_ratings("2026-01-02T00:00:00.000Z")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, r)| {
            format!(
                "{id} {} {:.3} {:.3}",
                r.count,
                r.mean_order_stars.unwrap_or(0.0),
                r.mean_delivery_stars.unwrap_or(0.0)
            )
        })
        .collect();
    seen.push(format!("store ratings {stores:?}"));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_behaves_as_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path().join("hq.db"));
    config.extension_dir = Some(dir.path().join("ext"));
    let sqlite = Hq::open(config).await.unwrap();
    let on_sqlite = scenario(&sqlite).await;
    sqlite.close().await.unwrap();
    let url = common::postgres::fresh_database();
    let postgres = Hq::open_postgres(Postgres::connect(&url).await.unwrap())
        .await
        .unwrap();
    let on_postgres = scenario(&postgres).await;
    postgres.close().await.unwrap();
    assert_eq!(on_postgres, on_sqlite);
    // The scenario saw what it should, not merely the same on both.
    assert!(
        on_sqlite.contains(&"moves true false".into()),
        "{on_sqlite:#?}"
    );
    assert!(
        on_sqlite.contains(&"pins Some(\"1234\") None".into()),
        "{on_sqlite:#?}"
    );
    assert!(
        on_sqlite.contains(&"kept true Some(\"count\")".into()),
        "{on_sqlite:#?}"
    );
    // Three live reset links at most, each one e-mail; none for an unknown address.
    assert!(
        on_sqlite
            .iter()
            .any(|l| l.starts_with("outbox") && l.matches("password_reset").count() == 3),
        "{on_sqlite:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_cut_off_reconnects_and_catches_up() {
    let url = common::postgres::fresh_database();
    let a = Hq::open_postgres(Postgres::connect(&url).await.unwrap())
        .await
        .unwrap();
    let b = Hq::open_postgres(Postgres::connect(&url).await.unwrap())
        .await
        .unwrap();
    let admin = Postgres::connect(&url).await.unwrap();
    let listeners = || async {
        admin
            .client()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while listeners().await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "both listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server ends both listening connections, and A changes a profile while B's is down.
    admin
        .client()
        .await
        .unwrap()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .unwrap();
    let mut store: StoreProfile = serde_json::from_value(profile(area(5))).unwrap();
    store.id = "s9".into();
    a.put_store(store).await.unwrap();
    eventually("B catches up after reconnecting", || {
        b.stores().iter().any(|s| s.profile.id == "s9")
    })
    .await;
    // And B goes on hearing later changes.
    a.set_paused("s9", true, Some("stock take".into()))
        .await
        .unwrap();
    eventually("B hears the next change", || {
        b.stores()
            .iter()
            .any(|s| s.profile.id == "s9" && s.profile.paused)
    })
    .await;
    a.close().await.unwrap();
    b.close().await.unwrap();
    admin.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_hq() {
    let url = common::postgres::fresh_database();
    let a = instance(&url).await;
    let b = instance(&url).await;

    // A customer HQ creates at A is known at B.
    let (status, customer) = a
        .api
        .admin(
            Method::POST,
            "/admin/v1/customers",
            json!({"first_name": "Ada"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let customer = customer["token"].as_str().unwrap().to_owned();
    let (status, _) = b
        .api
        .call(Method::GET, "/api/v1/orders", &customer, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = b
        .api
        .call(Method::GET, "/api/v1/orders", "fkc_not-a-token", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An account signed up at A signs in at B, and its session works at either.
    let (status, body) = post(
        &a.api,
        "/api/v1/account/sign-up",
        json!({"email": "bea@example.com", "password": "long enough pw", "first_name": "Bea"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = post(
        &b.api,
        "/api/v1/account/sign-in",
        json!({"email": "bea@example.com", "password": "long enough pw"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = body["token"].as_str().unwrap().to_owned();
    let (status, me) = a
        .api
        .call(Method::GET, "/api/v1/account", &session, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "bea@example.com");

    // An HQ user created at A signs in at B.
    let (status, body) = a
        .api
        .admin(
            Method::PUT,
            "/admin/v1/hq-users/olga",
            json!({"name": "Olga", "role": "operator", "password": "correct horse battery"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let (status, body) = post(
        &b.api,
        "/hq/api/sign-in",
        json!({"username": "olga", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "operator");

    // A store profiled at A becomes routable at B: B's copy in memory follows.
    let (status, _) = a
        .api
        .admin(Method::POST, "/admin/v1/stores", json!({"id": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let changed = b.running.cloud.hq().changed();
    let (status, body) = a
        .api
        .admin(Method::PUT, "/admin/v1/stores/s1/profile", profile(area(5)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hq_b = b.running.cloud.hq().clone();
    eventually("B routes to s1", || {
        hq_b.stores().iter().any(|s| s.profile.id == "s1")
    })
    .await;
    assert!(changed.has_changed().unwrap(), "B's change signal fired");
    // A pause at A reaches B's copy the same way.
    let (status, body) = a
        .api
        .admin(
            Method::POST,
            "/admin/v1/stores/s1/pause",
            json!({"paused": true, "reason": "inventory count"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    eventually("B sees the pause", || {
        hq_b.stores()
            .iter()
            .any(|s| s.profile.id == "s1" && s.profile.paused)
    })
    .await;
    let (status, body) = a
        .api
        .admin(
            Method::POST,
            "/admin/v1/stores/s1/pause",
            json!({"paused": false}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    eventually("B sees the store resumed", || {
        hq_b.stores()
            .iter()
            .any(|s| s.profile.id == "s1" && !s.profile.paused)
    })
    .await;

    // One idempotency key, posted at A and then at B: one order.
    for instance in [&a, &b] {
        let (status, body) = instance
            .api
            .admin(
                Method::PUT,
                "/admin/v1/products/milk",
                json!({"name": "milk", "price_minor": 129}),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (status, first) = a.api.order(&customer, "k-1", order_of("milk", 2)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = b.api.order(&customer, "k-1", order_of("milk", 2)).await;
    assert!(status.is_success(), "{status} {again}");
    assert_eq!(again["order_id"], first["order_id"], "{first} {again}");
    // The same key with another basket is refused at B as it would be at A.
    let (status, other) = b.api.order(&customer, "k-1", order_of("milk", 3)).await;
    assert!(status.is_client_error(), "{status} {other}");

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_remembering_one_key_at_once_agree() {
    let url = common::postgres::fresh_database();
    let a = Hq::open_postgres(Postgres::connect(&url).await.unwrap())
        .await
        .unwrap();
    let b = Hq::open_postgres(Postgres::connect(&url).await.unwrap())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let hq = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            hq.remember(
                "c1",
                "key",
                Placed {
                    request_sha256: "same request".into(),
                    order_id: format!("order-{i}"),
                    store_id: "s1".into(),
                    placed: "{}".into(),
                },
            )
            .await
            .unwrap()
            .order_id
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        winners.push(task.await.unwrap());
    }
    winners.dedup();
    assert_eq!(winners.len(), 1, "{winners:?}");
    let held = b.placed("c1", "key").await.unwrap().unwrap();
    assert_eq!(held.order_id, winners[0]);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hq_schema_newer_than_the_binary_is_refused() {
    let url = common::postgres::fresh_database();
    let pg = Postgres::connect(&url).await.unwrap();
    Hq::open_postgres(pg.clone())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    pg.client()
        .await
        .unwrap()
        .execute(
            "INSERT INTO flashkart_migrations (component, version, name) VALUES ('hq', 99, 'future')",
            &[],
        )
        .await
        .unwrap();
    let error = Hq::open_postgres(pg).await.unwrap_err().to_string();
    assert!(error.contains("newer than this binary"), "{error}");
    // A whole cloud on that database refuses to start too.
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloud_config(dir.path());
    config.database_url = Some(url);
    let refused = flashkart_cloud::start(config, CancellationToken::new()).await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("newer than this binary")),
        "the cloud started on a newer hq schema"
    );
}
