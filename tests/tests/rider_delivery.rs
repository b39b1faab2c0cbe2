//! One order from the customer to the door, every part a real process: the cloud places it,
//! the store daemon routes it to its staff (the staff simulator picks, packs and readies it
//! through the store's API), the cloud's dispatcher offers it over the store's MQTT broker to a
//! rider's phone (the rider simulator: rumqttc over TLS, enrolled with the one-time code HQ
//! issued), who accepts, arrives at the store (geofence), scans the bag's label, rides to the
//! customer and delivers with the customer's PIN. HQ's read model shows every step. Then the
//! same with the phone's connection cut just as it accepts: the accept, sent into a dead
//! connection, arrives once after the phone reconnects.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flashkart_tests::hq_admin::{HqAdmin, StoreProfile};
use flashkart_tests::{
    Daemon, addr_in, binary, call_api as call, enrolment_code_when_ready, url_in,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const START: Duration = Duration::from_secs(60);
const ADMIN: &str = "test-admin";
const STORE: &str = "store-7";
const PIN: &str = "246800";
const MILK: &str = "4006381333931";
const STORE_AT: (f64, f64) = (52.52, 13.40);

/// The address in `key=ADDR` of a log line.
fn addr_after(line: &str, key: &str) -> std::net::SocketAddr {
    line.split(key)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no {key} address in {line:?}"))
}

/// A cloud with one store, its catalog, a rider with an enrolment code and a customer; the
/// store daemon with its riders' broker (TLS only) and a staff simulator working it.
struct Town {
    http: reqwest::Client,
    cloud_daemon: Daemon,
    edge_daemon: Daemon,
    staff: Daemon,
    cloud: String,
    edge: String,
    broker: SocketAddr,
    /// The store's enrolment listener, `https://localhost:<port>`.
    enrol_url: String,
    qr: String,
    customer: String,
}

impl Town {
    async fn start(dir: &Path, env: &[(&str, &Path)]) -> Self {
        let http = reqwest::Client::new();
        let cloud_config = dir.join("cloud.toml");
        std::fs::write(
            &cloud_config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nadmin_token = \"{ADMIN}\"\n",
                dir.join("cloud").display()
            ),
        )
        .expect("cloud config");
        let cloud_arg = cloud_config.display().to_string();
        let mut cloud_daemon = Daemon::start(
            &binary("flashkart-cloud"),
            &["run", "--config", &cloud_arg],
            env,
        );
        let cloud =
            url_in(&cloud_daemon.wait_for_line("cloud listening", START)).expect("cloud url");
        let hq = HqAdmin::new(&http, &cloud, ADMIN);
        hq.put_product(
            "milk",
            json!({"name": "Milk", "price_minor": 129, "unit_weight_g": 1030, "gtins": [{"gtin": MILK}]}),
        )
        .await;
        let store_token = hq.register_store(STORE).await;
        let (lat, lon) = STORE_AT;
        let profile = StoreProfile::new("Mitte")
            .at(lat, lon)
            .area((13.35, 52.50, 13.45, 52.55))
            .radius_m(5000.0)
            .capacity(10);
        hq.put_store_profile(STORE, &profile).await;
        hq.call(
            Method::PUT,
            "/admin/v1/riders/ria",
            Some(json!({"home_store_id": STORE, "name": "Ria", "vehicle": "scooter"})),
        )
        .await;
        let customer = hq.create_customer("Ada").await;

        let edge_config = dir.join("edge.toml");
        std::fs::write(
            &edge_config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nstore_id = \"{STORE}\"\n\
                 manager_pin = \"{PIN}\"\n\n[sync]\ncloud_url = \"{cloud}\"\n\
                 token = \"{store_token}\"\nlocal_poll_ms = 20\nlong_poll_ms = 2000\n\
                 backoff_initial_ms = 20\nbackoff_max_ms = 200\n\n\
                 [riders]\ntls_listen = \"127.0.0.1:0\"\nenrol_listen = \"127.0.0.1:0\"\n",
                dir.join("edge").display()
            ),
        )
        .expect("edge config");
        let edge_arg = edge_config.display().to_string();
        let mut edge_daemon = Daemon::start(
            &binary("flashkart-edge"),
            &["run", "--config", &edge_arg],
            env,
        );
        let broker = addr_after(
            &edge_daemon.wait_for_line("riders broker listening", START),
            "tls=",
        );
        let edge = format!(
            "http://{}",
            addr_in(&edge_daemon.wait_for_line("HTTP API listening", START)).expect("edge address")
        );
        let enrol_port = addr_in(&edge_daemon.wait_for_line("riders enrolment listening", START))
            .expect("enrolment listener")
            .port();
        // HQ issues the code once the store has synced the CA fingerprint it pins.
        let issued = enrolment_code_when_ready(&http, &cloud, ADMIN, "ria", START).await;
        let qr = issued["qr_payload"]
            .as_str()
            .expect("qr payload")
            .to_owned();
        let staff = Daemon::start(
            &binary("flashkart-edge-sim"),
            &[
                "staff",
                "--edge",
                &edge,
                "--pin",
                PIN,
                "--stock-gtins",
                MILK,
                "--step-ms",
                "50",
                "--poll-ms",
                "100",
            ],
            env,
        );
        Self {
            http,
            cloud_daemon,
            edge_daemon,
            staff,
            cloud,
            edge,
            broker,
            enrol_url: format!("https://localhost:{enrol_port}"),
            qr,
            customer,
        }
    }

    /// The rider's phone (the rider simulator), enrolling with HQ's code and connecting to
    /// `broker` (the store's TLS listener, or a relay in front of it) as `localhost`.
    fn rider(&self, dir: &Path, env: &[(&str, &Path)], broker: SocketAddr) -> Daemon {
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, ADMIN).expect("token file");
        let (lat, lon) = STORE_AT;
        let start = format!("{lat},{lon}");
        let broker_arg = format!("localhost:{}", broker.port());
        let token_arg = token_file.display().to_string();
        let phone_arg = dir.join("phone").display().to_string();
        let mut rider = Daemon::start(
            &binary("flashkart-edge-sim"),
            &[
                "rider",
                "--enrolment",
                &self.qr,
                "--phone-dir",
                &phone_arg,
                "--broker",
                &broker_arg,
                "--enrol-url",
                &self.enrol_url,
                "--start",
                &start,
                "--speed",
                "300",
                "--edge",
                &self.edge,
                "--pin",
                PIN,
                "--cloud",
                &self.cloud,
                "--admin-token-file",
                &token_arg,
            ],
            env,
        );
        rider.wait_for_line("enrolled: certificate received", START);
        rider
    }

    /// Waits for the store's stock to reach the cloud, then places an order 600 m north of the
    /// store; its id.
    async fn place_order(&self, key: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, stock) = call(
                &self.http,
                Method::GET,
                &format!("{}/admin/v1/stock/milk", self.cloud),
                ADMIN,
                None,
            )
            .await;
            if status.is_success() && stock[STORE].as_i64().is_some_and(|n| n > 0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no stock in the read model: {stock}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (lat, lon) = STORE_AT;
        let placed = self
            .http
            .post(format!("{}/api/v1/orders", self.cloud))
            .bearer_auth(&self.customer)
            .header("idempotency-key", key)
            .json(&json!({
                "address": {"text": "Tor Street 1", "lat": lat + 0.0054, "lon": lon},
                "lines": [{"product_id": "milk", "qty": 1}],
                "payment": {"method": "cash"}
            }))
            .send()
            .await
            .expect("place order");
        assert_eq!(placed.status(), StatusCode::CREATED);
        let placed: Value = placed.json().await.expect("order");
        placed["order_id"].as_str().expect("order id").to_owned()
    }

    /// HQ's view of the order once it is DELIVERED, checked to have gone through every step,
    /// delivered by `ria` with the right PIN at once.
    async fn delivered(&mut self, order_id: &str, rider: &mut Daemon) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        let view = loop {
            let (status, view) = call(
                &self.http,
                Method::GET,
                &format!("{}/admin/v1/orders/{order_id}", self.cloud),
                ADMIN,
                None,
            )
            .await;
            if status.is_success() && view["order"]["status"] == "DELIVERED" {
                break view;
            }
            assert!(
                Instant::now() < deadline,
                "not delivered: {status} {view}\nrider: {:?}",
                rider.log().iter().rev().take(20).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let timeline = &view["order"]["timeline"];
        let steps: Vec<&str> = timeline
            .as_array()
            .expect("timeline")
            .iter()
            .filter_map(|entry| entry["status"].as_str())
            .collect();
        let mut at = 0;
        for step in [
            "ROUTED",
            "ACCEPTED",
            "PICKING",
            "PACKED",
            "READY",
            "PICKED_UP",
            "DELIVERED",
        ] {
            let found = steps[at..]
                .iter()
                .position(|s| *s == step)
                .unwrap_or_else(|| panic!("{step} missing after {at} in {steps:?}"));
            at += found + 1;
        }
        let delivered_by = timeline
            .as_array()
            .expect("timeline")
            .iter()
            .find(|entry| entry["status"] == "DELIVERED")
            .and_then(|entry| entry["actor"].as_str())
            .map(str::to_owned);
        assert_eq!(delivered_by.as_deref(), Some("rider:ria"), "{view}");
        // The store judged the PIN (the phone never had it from the store): right at once.
        assert_eq!(view["pin_failures"], 0, "{view}");
        assert_eq!(view["flagged_for_support"], false, "{view}");
        assert!(
            self.edge_daemon
                .log()
                .iter()
                .any(|l| l.contains("order delivered") && l.contains("pin_ok=Some(true)")),
            "no PIN-checked delivery in the store's log"
        );
        view
    }

    fn stop(self, rider: Daemon) {
        for daemon in [rider, self.staff] {
            let (status, _) = daemon.terminate(Duration::from_secs(10));
            assert!(status.success() || status.code().is_none(), "{status}");
        }
        let _ = self.edge_daemon.terminate(Duration::from_secs(20));
        let _ = self.cloud_daemon.terminate(Duration::from_secs(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rider_enrolled_from_hq_delivers_an_order_with_the_customers_pin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let env = [("XDG_CACHE_HOME", cache.as_path()), ("HOME", dir.path())];
    let mut town = Town::start(dir.path(), &env).await;
    let mut rider = town.rider(dir.path(), &env, town.broker);
    // The phone made its own key; only the certificate came from the store.
    let identity: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("phone/identity.json")).expect("identity"),
    )
    .expect("identity json");
    assert_eq!(identity["rider_id"], "ria");
    assert_eq!(identity["store_id"], STORE);

    let order_id = town.place_order("door-1").await;
    town.delivered(&order_id, &mut rider).await;
    town.stop(rider);
}

/// A TCP relay between the phone and the broker that can cut the connection at the accept.
///
/// It sees only TLS records, so it goes by size and timing: once armed, nothing from the phone
/// is passed on; the first record from the broker big enough to be an offer is passed, and
/// shortly after both sides are closed. The phone's answer to the offer goes into the dead
/// connection.
/// The smallest broker-to-phone read taken for an offer.
const OFFER_RECORD_BYTES: usize = 100;

struct Relay {
    addr: SocketAddr,
    armed: Arc<AtomicBool>,
    /// Bytes from the phone swallowed after the offer went through.
    swallowed_after_offer: Arc<AtomicUsize>,
    cuts: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(broker: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let relay = Self {
            addr: listener.local_addr().expect("relay address"),
            armed: Arc::default(),
            swallowed_after_offer: Arc::default(),
            cuts: Arc::default(),
            connections: Arc::default(),
        };
        let (armed, swallowed, cuts, connections) = (
            relay.armed.clone(),
            relay.swallowed_after_offer.clone(),
            relay.cuts.clone(),
            relay.connections.clone(),
        );
        tokio::spawn(async move {
            while let Ok((phone, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(broker).await else {
                    continue;
                };
                connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay_one(
                    phone,
                    upstream,
                    armed.clone(),
                    swallowed.clone(),
                    cuts.clone(),
                ));
            }
        });
        relay
    }
}

async fn relay_one(
    phone: TcpStream,
    broker: TcpStream,
    armed: Arc<AtomicBool>,
    swallowed_after_offer: Arc<AtomicUsize>,
    cuts: Arc<AtomicUsize>,
) {
    let (mut phone_rx, mut phone_tx) = phone.into_split();
    let (mut broker_rx, mut broker_tx) = broker.into_split();
    let cut = CancellationToken::new();
    let offered = Arc::new(AtomicBool::new(false));
    let up = {
        let (armed, offered, swallowed) = (armed.clone(), offered.clone(), swallowed_after_offer);
        async move {
            let mut buffer = vec![0_u8; 16 * 1024];
            loop {
                let n = match phone_rx.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if armed.load(Ordering::SeqCst) {
                    if offered.load(Ordering::SeqCst) {
                        swallowed.fetch_add(n, Ordering::SeqCst);
                    }
                    continue;
                }
                if broker_tx.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let down = {
        let cut = cut.clone();
        async move {
            let mut buffer = vec![0_u8; 16 * 1024];
            loop {
                let n = match broker_rx.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if phone_tx.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
                // An acknowledgement (PUBACK, SUBACK) makes a TLS record of a few dozen
                // bytes; an offer (ids, positions, the address) is well over a hundred.
                if n >= OFFER_RECORD_BYTES
                    && armed.load(Ordering::SeqCst)
                    && !offered.swap(true, Ordering::SeqCst)
                {
                    // Give the phone time to answer into the void, then cut, and let the
                    // reconnection through.
                    let (cut, armed, cuts) = (cut.clone(), armed.clone(), cuts.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        armed.store(false, Ordering::SeqCst);
                        cuts.fetch_add(1, Ordering::SeqCst);
                        cut.cancel();
                    });
                }
            }
        }
    };
    tokio::select! {
        () = async { tokio::join!(up, down); } => {}
        () = cut.cancelled() => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_sent_into_a_cut_connection_arrives_once_after_the_reconnect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let env = [("XDG_CACHE_HOME", cache.as_path()), ("HOME", dir.path())];
    let mut town = Town::start(dir.path(), &env).await;
    let relay = Relay::start(town.broker).await;
    let mut rider = town.rider(dir.path(), &env, relay.addr);
    // Online at the edge (its presence went through the relay) before the relay is armed.
    // The presence line, not the first one: a dropped first connection logs online=false.
    town.edge_daemon
        .wait_for_line("rider presence rider=ria online=true", START);
    relay.armed.store(true, Ordering::SeqCst);

    let order_id = town.place_order("door-cut").await;
    town.delivered(&order_id, &mut rider).await;
    assert_eq!(relay.cuts.load(Ordering::SeqCst), 1, "the relay never cut");
    assert!(
        relay.swallowed_after_offer.load(Ordering::SeqCst) > 0,
        "the phone sent nothing into the cut connection"
    );
    assert!(
        relay.connections.load(Ordering::SeqCst) >= 2,
        "no reconnection"
    );
    let answers = town
        .edge_daemon
        .log()
        .iter()
        .filter(|l| l.contains("offer answered") && l.contains("rider=\"ria\""))
        .count();
    assert_eq!(answers, 1, "the accept was recorded {answers} times");
    town.stop(rider);
}
