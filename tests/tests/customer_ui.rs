//! The customer web app in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/browser/customer.test.mjs`, at a phone's 375x812) against a real cloud and a real
//! store daemon on port 0, synced to the cloud, worked by the staff simulator (it stocks the
//! store and picks, packs and readies every order through the staff API) and served by the
//! rider simulator (a phone enrolled with HQ's code, on the store's MQTT broker over TLS, which
//! rides to the door reporting its position and delivers with the customer's PIN).
//!
//! Cards go to a real stand-in of the provider's API (localstripe): the page registers the card
//! there itself and the cloud authorises it, so the test pays the way a customer would.
//!
//! The cloud sends its e-mails to a real SMTP server (aiosmtpd, [`SmtpSink`]); the browser test
//! opens the links in them (the order's page, the password reset) through a small control
//! server ([`mail_link`]), as the customer would tap them.
//!
//! Nothing here acts as the customer: the browser test signs up, chooses the address, shops,
//! checks out, follows the order and rates it through the app alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use flashkart_cloud::CloudConfig;
use flashkart_cloud::payments::gateway::stripe::{Secret, StripeConfig};
use flashkart_edge::Config;
use flashkart_edge::config::RidersSection;
use flashkart_edge_sim::rider::args::RiderArgs;
use flashkart_edge_sim::rider::phone::EnrolmentQr;
use flashkart_edge_sim::staff::StaffSimArgs;
use flashkart_hw::gs1::check::with_mod10;
use flashkart_sync::client::ClientConfig;
use flashkart_tests::browser::run_browser_tests;
use flashkart_tests::enrolment_code_when_ready;
use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use flashkart_tests::localstripe::LocalStripe;
use flashkart_tests::smtp::SmtpSink;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "customer-ui-admin";
const MANAGER_PIN: &str = "135790";
const STORE: &str = "store-mitte";
const STORE_AT: (f64, f64) = (52.520, 13.405);
/// The store's service area: (west, south, east, north).
const AREA: (f64, f64, f64, f64) = (13.37, 52.50, 13.44, 52.54);
/// The customer's door, about 1.1 km north of the store: the rider's ride takes long enough
/// (at [`RIDER_SPEED_MPS`]) to report several positions on the way.
const DOOR: (f64, f64) = (52.530, 13.405);
/// A place no store serves (Potsdam).
const OUTSIDE: (f64, f64) = (52.400, 13.060);
const RIDER_SPEED_MPS: f64 = 40.0;
const RIDER: &str = "rosa";

/// The catalog: id, name, category, GTIN body (check digit added), stocked by the store.
const PRODUCTS: &[(&str, &str, &str, &str, bool)] = &[
    ("p-banana", "Bananas", "fruit", "871000020001", true),
    ("p-milk", "Whole Milk 1L", "dairy", "871000020002", true),
    ("p-bread", "Sourdough Loaf", "bakery", "871000020003", true),
    // In the catalog, never received: sold out at the store, so never offered.
    (
        "p-saffron",
        "Saffron Threads",
        "spices",
        "871000020004",
        false,
    ),
];

/// `GET /mail?to=..&subject=..` on the control server: waits for that e-mail and answers
/// `{"link"}`, the first link in it into the customer app (`.../#/...`).
async fn mail_link(
    State(smtp): State<Arc<SmtpSink>>,
    Query(want): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let (Some(to), Some(subject)) = (want.get("to"), want.get("subject")) else {
        return Err((StatusCode::BAD_REQUEST, "to and subject, please".into()));
    };
    let matches = |m: &flashkart_tests::smtp::Mail| m.to.contains(to) && m.subject() == *subject;
    let mails = smtp
        .wait_for(subject, Duration::from_secs(30), |mails| {
            mails.iter().any(matches)
        })
        .await;
    let body = mails
        .iter()
        .find(|m| matches(m))
        .map(|m| m.body())
        .unwrap_or_default();
    body.split_whitespace()
        .find(|word| word.starts_with("http") && word.contains("/#/"))
        .map(|link| Json(json!({"link": link})))
        .ok_or((
            StatusCode::NOT_FOUND,
            format!("no link to the app in {body:?}"),
        ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_orders_follows_the_rider_and_rates_from_a_phone_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let http = reqwest::Client::new();

    // The cloud: the store, its profile, the catalog, a rider on its roster.
    let smtp = Arc::new(SmtpSink::start().await);
    let mut cloud_config = CloudConfig::ephemeral(dir.path().join("cloud"));
    cloud_config.admin_token = Some(ADMIN.into());
    cloud_config.notifications = toml::from_str(&format!(
        "[smtp]\nhost = \"{}\"\nport = {}\ntls = \"none\"\nfrom = \"FlashKart <orders@flashkart.example>\"\n",
        smtp.addr.ip(),
        smtp.addr.port()
    ))
    .expect("notifications config");
    cloud_config.extension_dir = Some(dir.path().join("ext"));
    // Cards: the page registers them at the provider (localstripe, Stripe's stand-in) with
    // the publishable key; the cloud authorises with the secret one.
    let stripe = LocalStripe::start().await;
    cloud_config.payments.stripe = Some(StripeConfig {
        api_base: stripe.base_url(),
        secret_key: Secret::new(flashkart_tests::localstripe::SECRET_KEY),
        publishable_key: "pk_test_customer_app".into(),
        ..StripeConfig::default()
    });
    let cloud = flashkart_cloud::start(cloud_config, shutdown.clone())
        .await
        .expect("cloud starts");
    let base = format!("http://{}", cloud.addr);
    let hq = HqAdmin::new(&http, &base, ADMIN);
    let token = hq.register_store(STORE).await;
    hq.put_store_profile(
        STORE,
        &StoreProfile::new("Mitte")
            .at(STORE_AT.0, STORE_AT.1)
            .area(AREA)
            .radius_m(10000.0)
            .capacity(20),
    )
    .await;
    let mut gtins = Vec::new();
    for (id, name, category, body, stocked) in PRODUCTS {
        let gtin = with_mod10(body).expect("GTIN digits");
        hq.put_product(
            id,
            json!({"name": name, "price_minor": 149, "unit_weight_g": 500,
                    "category_id": category, "gtins": [{"gtin": gtin}]}),
        )
        .await;
        if *stocked {
            gtins.push(gtin);
        }
    }
    hq.call(
        Method::PUT,
        &format!("/admin/v1/riders/{RIDER}"),
        Some(json!({"home_store_id": STORE, "name": "Rosa", "vehicle": "scooter"})),
    )
    .await;

    // The store daemon, synced to the cloud, with the riders' broker.
    let mut sync = ClientConfig::new(base.clone(), &token);
    sync.long_poll_ms = 1_000;
    sync.local_poll_ms = 20;
    sync.backoff_initial_ms = 50;
    sync.backoff_max_ms = 500;
    let edge = flashkart_edge::start(
        Config {
            listen: "127.0.0.1:0".parse().expect("listen"),
            data_dir: Some(dir.path().join("store")),
            extension_dir: Some(dir.path().join("ext")),
            store_id: STORE.into(),
            manager_pin: Some(MANAGER_PIN.into()),
            shutdown_grace_secs: 2,
            riders: Some(RidersSection {
                tls_listen: "127.0.0.1:0".parse().expect("listen"),
                enrol_listen: "127.0.0.1:0".parse().expect("listen"),
                ..RidersSection::default()
            }),
            sync: Some(sync),
            ..Config::default()
        },
        shutdown.clone(),
    )
    .await
    .expect("store daemon starts");
    let edge_url = format!("http://{}", edge.local_addr);

    // A member of staff stocks the store once the catalog arrived, and works every order.
    let staff = tokio::spawn(flashkart_edge_sim::staff::run(
        StaffSimArgs {
            edge: edge_url.clone(),
            staff_id: "manager".into(),
            pin: MANAGER_PIN.into(),
            stock_gtins: gtins,
            stock_qty: 30,
            restock_below: 5,
            bin: "A-1".into(),
            step_ms: 150,
            poll_ms: 200,
        },
        shutdown.clone(),
    ));

    // The rider's phone enrols with HQ's code (once the store's riders' CA has synced), hears
    // the customer's PIN through HQ's support view, as the simulator does in the demo.
    let issued =
        enrolment_code_when_ready(&http, &base, ADMIN, RIDER, Duration::from_secs(60)).await;
    let qr = EnrolmentQr::parse(issued["qr_payload"].as_str().expect("qr payload"))
        .expect("enrolment QR");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN).expect("token file");
    let rider = tokio::spawn(flashkart_edge_sim::rider::args::run(
        RiderArgs {
            enrolment: Some(qr),
            phone_dir: Some(dir.path().join("phone")),
            broker: (
                "localhost".into(),
                edge.riders_tls_addr.expect("riders broker").port(),
            ),
            enrol_url: format!(
                "https://localhost:{}",
                edge.enrol_addr.expect("enrolment listener").port()
            ),
            start: STORE_AT,
            speed: RIDER_SPEED_MPS,
            accept_every: 1,
            cash_delta_minor: 0,
            edge: edge_url,
            staff_id: "manager".into(),
            pin: MANAGER_PIN.into(),
            cloud: Some(base.clone()),
            admin_token_file: Some(token_file),
        },
        shutdown.clone(),
    ));

    // The storefront offers what the read model says is in stock: wait for all of it.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (id, ..) in PRODUCTS.iter().filter(|p| p.4) {
        loop {
            let stock = hq
                .call(Method::GET, &format!("/admin/v1/stock/{id}"), None)
                .await;
            if stock[STORE].as_i64().unwrap_or(0) > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the stock of {id} never reached the cloud: {stock}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Dispatch offers orders to riders it has seen: wait for the phone's first position.
    loop {
        let riders = hq.call(Method::GET, "/admin/v1/riders", None).await;
        let seen = riders
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["id"] == RIDER && r["lat"].is_number());
        if seen {
            break;
        }
        if rider.is_finished() {
            panic!("the rider simulator stopped: {:?}", rider.await);
        }
        assert!(
            Instant::now() < deadline,
            "the rider never reported a position: {riders}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let fixture = json!({
        "door": {"lat": DOOR.0, "lon": DOOR.1},
        "outside": {"lat": OUTSIDE.0, "lon": OUTSIDE.1},
        "store": "Mitte",
        "product": {"name": PRODUCTS[0].1, "typo": "bananna"},
        "sold_out": PRODUCTS[3].1,
        "also": PRODUCTS[1].1,
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("control listener");
    let control_addr = listener.local_addr().expect("control address");
    let control = tokio::spawn(
        axum::serve(
            listener,
            Router::new()
                .route("/mail", get(mail_link))
                .with_state(smtp),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future(),
    );
    run_browser_tests(
        "customer.test.mjs",
        &[
            ("CLOUD_URL", base.clone()),
            ("CONTROL_URL", format!("http://{control_addr}")),
            ("FIXTURE", fixture.to_string()),
        ],
        Duration::from_secs(300),
    )
    .await;

    shutdown.cancel();
    let _ = control.await;
    staff
        .await
        .expect("staff task")
        .expect("the staff simulator ran");
    rider
        .await
        .expect("rider task")
        .expect("the rider simulator ran");
    edge.wait().await.expect("store daemon stops");
    cloud.wait().await.expect("cloud stops");
    stripe.stop().await;
}
