//! Notifications against real peers: the cloud in-process, a real SMTP server (aiosmtpd, see
//! `scripts/smtp-sink`) and a real HTTP endpoint for the push provider's webhooks.
//!
//! Each event of an order reaches the customer once by e-mail and once as a signed webhook; a
//! customer without an e-mail account is skipped; an SMTP server that is down at first gets
//! the e-mail once it is up; a restarted cloud sends nothing again; and a password reset goes
//! from the request through the e-mailed link to the new password.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use common::api::Api;
use common::city::{BOTH, ONLY_S1, progress, projected, two_stores_with, until};
use common::{cloud_config, count, rm_sql};
use flashkart_cloud::clock;
use flashkart_cloud::notify::{NotificationsConfig, Outbox, OutboxEntry};
use flashkart_cloud::{Cloud, CloudConfig, RunningCloud};
use flashkart_sync::StoreDb;
use flashkart_tests::localstripe::LocalStripe;
use flashkart_tests::relay::Relay;
use flashkart_tests::smtp::{Mail, SmtpSink};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
const WEBHOOK_SECRET: &str = "push-provider-shared-secret";
const PASSWORD: &str = "correct horse battery";

/// `[notifications]` sending to `smtp` (plain SMTP), and to `webhook` when given; fast retries.
fn notifications(smtp: SocketAddr, webhook: Option<SocketAddr>) -> NotificationsConfig {
    let mut text = format!(
        "[smtp]\nhost = \"{}\"\nport = {}\ntls = \"none\"\nfrom = \"FlashKart <orders@flashkart.example>\"\ntimeout_ms = 2000\n\
         [retry]\nbase_ms = 50\nmax_attempts = 50\n",
        smtp.ip(),
        smtp.port()
    );
    if let Some(webhook) = webhook {
        text.push_str(&format!(
            "[webhook]\nurl = \"http://{webhook}/push\"\nsecret = \"{WEBHOOK_SECRET}\"\n"
        ));
    }
    let config: NotificationsConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    config
}

/// Every webhook delivery's headers and body, as received.
type Deliveries = Vec<(HeaderMap, Bytes)>;

/// The push provider's endpoint.
struct Hooks {
    addr: SocketAddr,
    received: watch::Receiver<Deliveries>,
}

impl Hooks {
    async fn start() -> Self {
        let (sender, received) = watch::channel(Vec::new());
        let sender = Arc::new(sender);
        let app = axum::Router::new()
            .route(
                "/push",
                axum::routing::post(
                    |State(sender): State<Arc<watch::Sender<Deliveries>>>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        sender.send_modify(|all| all.push((headers, body)));
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(sender);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, received }
    }

    /// Waits until `n` deliveries arrived; checks each one's signature and returns the bodies.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let mut received = self.received.clone();
        let all = tokio::time::timeout(WAIT, received.wait_for(|all| all.len() >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} webhooks: only {:?}", self.received.borrow().len()))
            .unwrap()
            .clone();
        all.iter()
            .map(|(headers, body)| verified(headers, body))
            .collect()
    }
}

/// A webhook's body after checking `FlashKart-Signature` as a provider would.
fn verified(headers: &HeaderMap, body: &[u8]) -> Value {
    let signature = headers["flashkart-signature"].to_str().unwrap();
    let (t, v1) = signature
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("signature {signature:?}"));
    let age = clock::now().unix_timestamp() - t.parse::<i64>().unwrap();
    assert!((0..300).contains(&age), "signed {age} s ago");
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        v1,
        expected,
        "signature of {}",
        String::from_utf8_lossy(body)
    );
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(headers["flashkart-event-id"].to_str().unwrap(), body["id"]);
    body
}

/// Signs up a customer account: its bearer session token.
async fn sign_up(api: &Api, email: &str) -> String {
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/account/sign-up",
            "",
            Some(json!({"email": email, "password": PASSWORD, "first_name": "Ada"})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn request_reset(api: &Api, email: &str) -> (StatusCode, Value) {
    api.call(
        Method::POST,
        "/api/v1/account/password-reset",
        "",
        Some(json!({ "email": email })),
    )
    .await
}

/// The e-mails to `to` whose subject contains `subject`.
fn mails_to<'a>(mails: &'a [Mail], to: &str, subject: &str) -> Vec<&'a Mail> {
    mails
        .iter()
        .filter(|m| m.to == [to] && m.subject().contains(subject))
        .collect()
}

/// The state of the outbox rows about `order` on `channel` in the read model's outbox.
async fn outbox_states(cloud: &Cloud, order: &str, channel: &str) -> Vec<String> {
    rm_sql::rows(
        cloud,
        &format!(
            "SELECT state FROM notify_outbox WHERE order_id = '{order}' AND channel = '{channel}'"
        ),
    )
    .await
    .into_iter()
    .map(|mut r| r.remove(0).unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_of_an_order_reaches_the_customer_once_by_email_and_signed_webhook() {
    let smtp = SmtpSink::start().await;
    let hooks = Hooks::start().await;
    let env = two_stores_with(
        |config| config.notifications = notifications(smtp.addr, Some(hooks.addr)),
        30,
    )
    .await;
    let ada = sign_up(&env.api, "ada@example.com").await;

    // Confirmed: the e-mail names the order, its total and links to it.
    let (code, placed) = env
        .api
        .order(
            &ada,
            "n-1",
            json!({
                "address": {"text": "Here 1", "lat": ONLY_S1.0, "lon": ONLY_S1.1},
                "lines": [{"product_id": "p1", "qty": 2}],
                "payment": {"method": "cash"}
            }),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{placed}");
    let order = placed["order_id"].as_str().unwrap().to_owned();
    let subject = format!("Order {order} confirmed");
    let mails = smtp
        .wait_for("the confirmation", WAIT, |m| {
            !mails_to(m, "ada@example.com", &subject).is_empty()
        })
        .await;
    let confirmed = mails_to(&mails, "ada@example.com", &subject)[0];
    let body = confirmed.body();
    let total = placed["total_minor"].as_i64().unwrap();
    let total_text = format!(
        "{}.{:02} {}",
        total / 100,
        total % 100,
        placed["currency"].as_str().unwrap()
    );
    assert!(body.contains(&format!("Total: {total_text}.")), "{body}");
    assert!(
        body.contains(&format!("http://{}/#/orders/{order}", env.running.addr)),
        "{body}"
    );
    assert!(
        confirmed
            .header("Message-ID")
            .unwrap()
            .ends_with("@flashkart.example>")
    );
    assert_eq!(confirmed.from, "orders@flashkart.example");

    // The store finds one piece short and substitutes it, then the order goes out and arrives.
    let edge = env.edge("s1").clone();
    until(&env, "the order at s1", || {
        let edge = edge.clone();
        async move { count(&edge, "SELECT count(*) FROM orders").await == 1 }
    })
    .await;
    let line_order = order.clone();
    edge.write(move |conn| {
        conn.execute(
            "INSERT INTO order_line_progress
                (order_id, line_no, store_id, picked_qty, short_qty, substitute_product_id)
             VALUES (?1, 1, 's1', 1, 1, 'p2')",
            [line_order],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
    let base = clock::now();
    progress(
        &edge,
        "s1",
        &order,
        "ROUTED",
        base,
        &[
            ("ACCEPTED", 1),
            ("PICKING", 2),
            ("PACKED", 3),
            ("READY", 4),
            ("PICKED_UP", 5),
            ("DELIVERED", 6),
        ],
    )
    .await;
    projected(&env, &[(order.as_str(), "DELIVERED")]).await;
    let expected = [
        format!("Order {order} confirmed"),
        format!("Order {order}: items short"),
        format!("Order {order}: an item was substituted"),
        format!("Order {order} is on the way"),
        format!("Order {order} delivered"),
    ];
    let mails = smtp
        .wait_for("every e-mail of the order", WAIT, |m| {
            expected
                .iter()
                .all(|s| !mails_to(m, "ada@example.com", s).is_empty())
        })
        .await;
    let short = mails_to(&mails, "ada@example.com", &expected[1])[0].body();
    assert!(short.contains("- 1 of p1 (line 1)\n"), "{short}");
    let substituted = mails_to(&mails, "ada@example.com", &expected[2])[0].body();
    assert!(
        substituted.contains("replaced p1 (line 1) with p2"),
        "{substituted}"
    );

    // The same five as signed webhooks, each with its own event id.
    let hooks_received = hooks.wait_for(5).await;
    let mut kinds: Vec<&str> = hooks_received
        .iter()
        .map(|h| {
            assert_eq!(h["order_id"], order.as_str(), "{h}");
            h["kind"].as_str().unwrap()
        })
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "delivered",
            "items_short",
            "line_substituted",
            "order_confirmed",
            "rider_on_the_way"
        ]
    );
    assert!(hooks_received.iter().all(|h| h["customer_id"].is_string()));

    // A customer with an HQ-issued token has no e-mail: skipped, and said so (the webhook
    // still goes: the push provider knows the customer by id).
    let (code, other) = env.order("n-2", ONLY_S1, 1).await;
    assert_eq!(code, StatusCode::CREATED, "{other}");
    let other = other["order_id"].as_str().unwrap().to_owned();
    let cloud = &env.running.cloud;
    let other_order = other.as_str();
    eventually("the tokened customer's e-mail skipped", || async move {
        outbox_states(cloud, other_order, "email").await == ["skipped"]
    })
    .await;
    assert_eq!(hooks.wait_for(6).await[5]["order_id"], other.as_str());

    // A restarted cloud sends nothing again: a reset requested after the restart is e-mailed
    // after the sender has looked at every outbox, and the order's e-mails are still five.
    let common::city::Env {
        dir,
        running,
        shutdown,
        edges,
        ..
    } = env;
    for (_, stop) in &edges {
        stop.cancel();
    }
    shutdown.cancel();
    running.wait().await.unwrap();
    let mut config = cloud_config(dir.path());
    config.notifications = notifications(smtp.addr, Some(hooks.addr));
    let (running, shutdown) = start(config).await;
    let api = Api::new(running.addr);
    assert_eq!(
        request_reset(&api, "ada@example.com").await.0,
        StatusCode::ACCEPTED
    );
    let mails = smtp
        .wait_for("the reset after the restart", WAIT, |m| {
            !mails_to(m, "ada@example.com", "Reset your FlashKart password").is_empty()
        })
        .await;
    for subject in &expected {
        assert_eq!(
            mails_to(&mails, "ada@example.com", subject).len(),
            1,
            "{subject}"
        );
    }
    assert_eq!(mails.len(), expected.len() + 1, "{mails:#?}");
    assert_eq!(hooks.received.borrow().len(), 6);
    shutdown.cancel();
    running.wait().await.unwrap();
}

/// The store `store` has accepted `order` and finds `short` pieces of line 1 missing.
async fn report_short(edge: &StoreDb, store: &str, order: &str, short: i64) {
    let (store, order) = (store.to_owned(), order.to_owned());
    edge.write(move |conn| {
        conn.execute(
            "INSERT INTO order_progress (order_id, store_id, status, status_at)
             VALUES (?1, ?2, 'ACCEPTED', ?3)",
            rusqlite::params![order, store, clock::now_rfc3339()],
        )?;
        conn.execute(
            "INSERT INTO order_line_progress (order_id, line_no, store_id, short_qty)
             VALUES (?1, 1, ?2, ?3)",
            rusqlite::params![order, store, short],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_moved_whole_to_another_store_is_not_reported_short() {
    let smtp = SmtpSink::start().await;
    let env = two_stores_with(
        |config| config.notifications = notifications(smtp.addr, None),
        30,
    )
    .await;
    let hal = sign_up(&env.api, "hal@example.com").await;
    let (code, placed) = env
        .api
        .order(
            &hal,
            "m-1",
            json!({
                "address": {"text": "Here 1", "lat": BOTH.0, "lon": BOTH.1},
                "lines": [{"product_id": "p1", "qty": 2}],
                "payment": {"method": "cash"}
            }),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["store_id"], "s1", "{placed}");
    let order = placed["order_id"].as_str().unwrap().to_owned();

    // s1 has none of it before picking: the order moves whole to s2, which lacks one piece.
    for (store, short) in [("s1", 2), ("s2", 1)] {
        let edge = env.edge(store).clone();
        let sql = format!("SELECT count(*) FROM orders WHERE id = '{order}'");
        until(&env, &format!("the order at {store}"), || {
            let (edge, sql) = (edge.clone(), sql.clone());
            async move { count(&edge, sql).await == 1 }
        })
        .await;
        report_short(&edge, store, &order, short).await;
    }
    let subject = format!("Order {order}: items short");
    let mails = smtp
        .wait_for("the partial confirmation", WAIT, |m| {
            !mails_to(m, "hal@example.com", &subject).is_empty()
        })
        .await;
    let rerouted = rm_sql::row(
        &env.running.cloud,
        &format!("SELECT store_id FROM rm_orders WHERE id = '{order}'"),
    )
    .await
    .remove(0)
    .unwrap();
    assert_eq!(rerouted, "s2");
    // One e-mail about what is missing (s2's one piece), one confirmation, nothing else.
    let short = mails_to(&mails, "hal@example.com", &subject);
    assert_eq!(short.len(), 1, "{mails:#?}");
    assert!(
        short[0].body().contains("- 1 of p1 (line 1)\n"),
        "{}",
        short[0].body()
    );
    assert_eq!(mails.len(), 2, "{mails:#?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_down_at_first_gets_the_email_once_it_is_up() {
    let smtp = SmtpSink::start().await;
    let relay = Relay::start(smtp.addr).await;
    relay.down().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloud_config(dir.path());
    config.notifications = notifications(relay.addr, None);
    let (running, shutdown) = start(config).await;
    let api = Api::new(running.addr);
    sign_up(&api, "bob@example.com").await;
    assert_eq!(
        request_reset(&api, "bob@example.com").await.0,
        StatusCode::ACCEPTED
    );

    // Refused connections are retried with backoff; the row waits as pending.
    let hq = running.cloud.hq().outbox();
    eventually("a few refused attempts", || {
        let hq = hq.clone();
        async move { outbox_count(&hq, |e| e.state == "pending" && e.attempts >= 3).await == 1 }
    })
    .await;
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("flashkart_cloud_notifications_pending{channel=\"email\"} 1"),
        "{metrics}"
    );

    relay.up().await;
    smtp.wait_for("the reset once SMTP is up", WAIT, |m| m.len() == 1)
        .await;
    eventually("the row sent", || {
        let hq = hq.clone();
        async move { outbox_count(&hq, |e| e.state == "sent").await == 1 }
    })
    .await;
    // Sent means wiped: the link's token is kept nowhere in the clear.
    assert_eq!(outbox_count(&hq, |e| e.payload.contains("fkr_")).await, 0);
    assert_eq!(smtp.mails().len(), 1);
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_is_given_up_after_its_last_attempt() {
    let smtp = SmtpSink::start().await;
    let relay = Relay::start(smtp.addr).await;
    relay.down().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloud_config(dir.path());
    config.notifications = notifications(relay.addr, None);
    config.notifications.retry.max_attempts = 3;
    let (running, shutdown) = start(config).await;
    let api = Api::new(running.addr);
    sign_up(&api, "ivy@example.com").await;
    assert_eq!(
        request_reset(&api, "ivy@example.com").await.0,
        StatusCode::ACCEPTED
    );
    let hq = running.cloud.hq().outbox();
    eventually("the e-mail given up", || {
        let hq = hq.clone();
        async move {
            outbox_count(&hq, |e| {
                e.state == "failed"
                    && e.attempts == 3
                    && e.last_error
                        .as_deref()
                        .is_some_and(|m| m.starts_with("smtp:"))
            })
            .await
                == 1
        }
    })
    .await;
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(
            "flashkart_cloud_notifications_total{channel=\"email\",kind=\"password_reset\",outcome=\"failed\"} 1"
        ),
        "{metrics}"
    );
    // Given up is final: a server that comes back gets nothing.
    relay.up().await;
    assert_eq!(
        request_reset(&api, "ivy@example.com").await.0,
        StatusCode::ACCEPTED
    );
    let mails = smtp
        .wait_for("the second reset", WAIT, |m| !m.is_empty())
        .await;
    assert_eq!(mails.len(), 1);
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_reset_through_the_emailed_link_once() {
    let smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloud_config(dir.path());
    config.notifications = notifications(smtp.addr, None);
    config.customers.max_password_resets = 4;
    let (running, shutdown) = start(config).await;
    let api = Api::new(running.addr);
    let old_session = sign_up(&api, "cleo@example.com").await;

    // An unknown e-mail gets the same answer and no e-mail; a malformed one is refused.
    let (code, body) = request_reset(&api, "nobody@example.com").await;
    assert_eq!(
        (code, body),
        (StatusCode::ACCEPTED, json!({"status": "sent"}))
    );
    let (code, body) = request_reset(&api, "not an e-mail").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (code, body) = request_reset(&api, " Cleo@Example.com ").await;
    assert_eq!(
        (code, body),
        (StatusCode::ACCEPTED, json!({"status": "sent"}))
    );
    let mails = smtp
        .wait_for("the reset e-mail", WAIT, |m| !m.is_empty())
        .await;
    let mail = &mails[0];
    assert_eq!(mail.to, ["cleo@example.com"]);
    assert_eq!(mail.subject(), "Reset your FlashKart password");
    let body = mail.body();
    let link_prefix = format!("http://{}/#/reset/", running.addr);
    let token = body
        .lines()
        .find_map(|line| line.strip_prefix(&link_prefix))
        .unwrap_or_else(|| panic!("no link in {body}"))
        .trim()
        .to_owned();
    assert!(token.starts_with("fkr_"), "{token}");

    let confirm = |token: String, password: &str| {
        let api = &api;
        let password = password.to_owned();
        async move {
            api.call(
                Method::POST,
                "/api/v1/account/password-reset/confirm",
                "",
                Some(json!({"token": token, "password": password})),
            )
            .await
        }
    };
    // A password sign-up would refuse changes nothing; the link still works after it.
    let (code, body) = confirm(token.clone(), "short").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("characters"),
        "{body}"
    );
    let (code, body) = confirm("fkr_forged".into(), "a new long password").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (code, body) = confirm(token.clone(), "a new long password").await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");

    // Every session ended; the old password refused, the new one taken; the link spent.
    let (code, _) = api
        .call(Method::GET, "/api/v1/account", &old_session, None)
        .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let sign_in = |password: &str| {
        let api = &api;
        let password = password.to_owned();
        async move {
            api.call(
                Method::POST,
                "/api/v1/account/sign-in",
                "",
                Some(json!({"email": "cleo@example.com", "password": password})),
            )
            .await
            .0
        }
    };
    assert_eq!(sign_in(PASSWORD).await, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in("a new long password").await, StatusCode::OK);
    let (code, body) = confirm(token, "yet another password").await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown, used or expired"),
        "{body}"
    );

    // Requests are bounded per address (two taken above, the malformed one not counted).
    assert_eq!(
        request_reset(&api, "dan@example.com").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        request_reset(&api, "eve@example.com").await.0,
        StatusCode::ACCEPTED
    );
    let (code, body) = request_reset(&api, "fay@example.com").await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{body}");

    // Nothing more was sent: one e-mail, for the one account asked about.
    let hq = running.cloud.hq().outbox();
    assert_eq!(outbox_count(&hq, |_| true).await, 1);
    assert_eq!(smtp.mails().len(), 1);
    shutdown.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_is_emailed_from_the_transaction_that_books_it() {
    let smtp = SmtpSink::start().await;
    let stripe = LocalStripe::start().await;
    let env = two_stores_with(
        |config| {
            config.notifications = notifications(smtp.addr, None);
            config.payments = toml::from_str(&format!(
                "retry_initial_ms = 100\nretry_max_ms = 500\n\
                 [stripe]\napi_base = '{}'\nsecret_key = '{}'\n",
                stripe.base_url(),
                stripe.secret_key()
            ))
            .unwrap();
        },
        30,
    )
    .await;
    let ada = sign_up(&env.api, "ada@example.com").await;
    let card = stripe.create_payment_method("4242424242424242").await;
    let (code, placed) = env
        .api
        .order(
            &ada,
            "r-1",
            json!({
                "address": {"text": "Here 1", "lat": ONLY_S1.0, "lon": ONLY_S1.1},
                "lines": [{"product_id": "p1", "qty": 2}],
                "payment": {"method": "card", "payment_method": card}
            }),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{placed}");
    let order = placed["order_id"].as_str().unwrap().to_owned();
    let currency = placed["currency"].as_str().unwrap().to_uppercase();

    // Delivered whole (captured), then HQ refunds one euro of it.
    let edge = env.edge("s1").clone();
    until(&env, "the order at s1", || {
        let edge = edge.clone();
        async move { count(&edge, "SELECT count(*) FROM orders").await == 1 }
    })
    .await;
    let delivered_order = order.clone();
    edge.write(move |conn| {
        conn.execute(
            "INSERT INTO order_line_progress (order_id, line_no, store_id, picked_qty, short_qty)
             VALUES (?1, 1, 's1', 2, 0)",
            [&delivered_order],
        )?;
        conn.execute(
            "INSERT INTO deliveries (order_id, store_id, rider_id, at)
             VALUES (?1, 's1', 'r1', ?2)",
            [delivered_order.clone(), clock::now_rfc3339()],
        )
        .map_err(flashkart_sync::Error::from)
    })
    .await
    .unwrap();
    let steps = [
        ("ACCEPTED", 1),
        ("PICKING", 2),
        ("PACKED", 3),
        ("READY", 4),
        ("PICKED_UP", 5),
        ("DELIVERED", 6),
    ];
    progress(&edge, "s1", &order, "ROUTED", clock::now(), &steps).await;
    let (http, url) = (
        env.api.http.clone(),
        format!("{}/admin/v1/orders/{order}", env.api.base),
    );
    eventually("the payment captured", || {
        let request = http.get(&url).bearer_auth(common::ADMIN).send();
        async move {
            let view: Value = request.await.unwrap().json().await.unwrap();
            view["payment"]["state"] == "captured"
        }
    })
    .await;
    let (code, body) = env
        .api
        .admin(
            Method::POST,
            &format!("/admin/v1/orders/{order}/refund"),
            json!({"amount_minor": 100, "reason": "goodwill"}),
        )
        .await;
    assert!(code.is_success(), "{code} {body}");
    let subject = format!("Order {order}: refund of 1.00 {currency}");
    let mails = smtp
        .wait_for("the refund e-mail", WAIT, |m| {
            !mails_to(m, "ada@example.com", &subject).is_empty()
        })
        .await;
    let body = mails_to(&mails, "ada@example.com", &subject)[0].body();
    assert!(
        body.contains(&format!(
            "We refunded 1.00 {currency} for your order {order}"
        )),
        "{body}"
    );
    env.stop().await;
    stripe.stop().await;
}

/// On PostgreSQL the outbox is shared by instances, so only a claim older than the longest
/// send counts as a crash's; a younger one may be another instance's send under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_cut_by_a_crash_mid_send_is_uncertain_and_never_sent_again() {
    let smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    // No SMTP at first: the reset e-mail waits in the outbox.
    let (running, shutdown) = start(cloud_config(dir.path())).await;
    let api = Api::new(running.addr);
    for email in ["gus@example.com", "ida@example.com"] {
        sign_up(&api, email).await;
        assert_eq!(request_reset(&api, email).await.0, StatusCode::ACCEPTED);
    }
    let hq = running.cloud.hq().outbox();
    assert_eq!(outbox_count(&hq, |e| e.state == "pending").await, 2);
    shutdown.cancel();
    running.wait().await.unwrap();
    // As a crash between the claim and the server's answer leaves it: Gus's e-mail claimed
    // long ago, Ida's a moment ago (on a shared outbox, another instance's send under way).
    common::hq_sql::execute(
        dir.path(),
        "UPDATE notify_outbox SET state = 'sending', attempts = 1,
            updated_at = '2020-01-01T00:00:00.000Z'
         WHERE customer_id = (SELECT customer_id FROM customer_accounts
                              WHERE email = 'gus@example.com')",
    )
    .await;
    common::hq_sql::execute(
        dir.path(),
        &format!(
            "UPDATE notify_outbox SET state = 'sending', attempts = 1, updated_at = '{}'
             WHERE customer_id = (SELECT customer_id FROM customer_accounts
                                  WHERE email = 'ida@example.com')",
            clock::now_rfc3339()
        ),
    )
    .await;

    let mut config = cloud_config(dir.path());
    config.notifications = notifications(smtp.addr, None);
    let (running, shutdown) = start(config).await;
    let api = Api::new(running.addr);
    // A second reset goes out; the first, which may have arrived before the crash, does not.
    assert_eq!(
        request_reset(&api, "gus@example.com").await.0,
        StatusCode::ACCEPTED
    );
    smtp.wait_for("the second reset", WAIT, |m| !m.is_empty())
        .await;
    let states: Vec<(String, String)> = running
        .cloud
        .hq()
        .outbox()
        .entries()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.state, e.payload))
        .collect();
    assert_eq!(states[0], ("uncertain".to_owned(), "{}".to_owned()));
    let uncertain = if common::postgres::backend_is_postgres() {
        // Shared: a claim younger than the longest send may be a live instance's; left alone.
        assert_eq!(states[1].0, "sending", "{states:?}");
        assert!(states[1].1.contains("token"), "{states:?}");
        1
    } else {
        // This instance's own file: whatever it left `sending` is its crash's.
        assert_eq!(states[1], ("uncertain".to_owned(), "{}".to_owned()));
        2
    };
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(
            &format!("flashkart_cloud_notifications_total{{channel=\"email\",kind=\"password_reset\",outcome=\"uncertain\"}} {uncertain}")
        ),
        "{metrics}"
    );
    assert_eq!(smtp.mails().len(), 1);
    shutdown.cancel();
    running.wait().await.unwrap();
}

/// Rows of HQ's outbox that `matches`.
async fn outbox_count(outbox: &Outbox, matches: impl Fn(&OutboxEntry) -> bool) -> usize {
    outbox
        .entries()
        .await
        .unwrap()
        .iter()
        .filter(|e| matches(e))
        .count()
}

async fn start(config: CloudConfig) -> (RunningCloud, CancellationToken) {
    let shutdown = CancellationToken::new();
    let running = flashkart_cloud::start(config, shutdown.clone())
        .await
        .expect("cloud starts");
    (running, shutdown)
}

/// Polls `done` (every 20 ms, at most [`WAIT`]): for states the test has no event to await
/// (a row of another database changing).
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
