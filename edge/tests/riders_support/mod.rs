//! Shared set-up of the riders acceptance tests: a store database with a roster and orders, an
//! edge riders service on free ports, simulated riders, and mosquitto clients.

#![allow(dead_code, clippy::unwrap_used)]

pub mod mqtt;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use flashkart_edge::riders::{CertBundle, LocalDesk, RiderEvent, Riders, RidersConfig, clock};
use flashkart_edge_sim::rider::{self as sim, SimConfig, SimEvent, SimTls};
use flashkart_sync::{StoreConfig, StoreDb};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, mpsc};

pub const STORE: &str = "S1";
pub const STORE_LAT: f64 = 48.137;
pub const STORE_LON: f64 = 11.575;
pub const WAIT: Duration = Duration::from_secs(20);

pub fn tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,flashkart_edge=info".into()),
        )
        .with_test_writer()
        .try_init();
}

pub async fn open_db(dir: &Path) -> StoreDb {
    StoreDb::open(
        StoreConfig::new(dir.join("store.db")),
        flashkart_sync::schema::store::MIGRATIONS,
    )
    .await
    .unwrap()
}

pub struct Edge {
    pub riders: Riders,
    pub desk: LocalDesk,
    pub tls_port: u16,
    pub plain_port: u16,
    pub events: broadcast::Receiver<RiderEvent>,
}

pub async fn start_edge(db: &StoreDb, dir: &Path) -> Edge {
    start_edge_with(db, dir, |_| {}).await
}

/// An edge on port 0 (both listeners on loopback), with `adjust` applied to its config.
pub async fn start_edge_with(
    db: &StoreDb,
    dir: &Path,
    adjust: impl FnOnce(&mut RidersConfig),
) -> Edge {
    let mut config = RidersConfig::new(STORE, dir.join("ca"));
    config.tls_listen = ([127, 0, 0, 1], 0).into();
    config.plain_listen = Some(([127, 0, 0, 1], 0).into());
    config.position_interval = Duration::from_millis(200);
    config.offer_scan_interval = Duration::from_millis(200);
    adjust(&mut config);
    let desk = LocalDesk::new(db.clone(), STORE);
    let riders = Riders::start(config, db.clone(), desk.clone())
        .await
        .unwrap();
    let events = riders.events();
    let tls_port = riders.tls_addr().port();
    let plain_port = riders.plain_addr().unwrap().port();
    Edge {
        riders,
        desk,
        tls_port,
        plain_port,
        events,
    }
}

pub async fn exec(db: &StoreDb, sql: &'static str, params: Vec<String>) {
    db.write(move |conn| {
        conn.execute(sql, rusqlite::params_from_iter(params.iter()))?;
        Ok::<_, flashkart_sync::Error>(())
    })
    .await
    .unwrap();
}

pub async fn seed_store(db: &StoreDb) {
    exec(
        db,
        "INSERT INTO stores (id, name, lat, lon) VALUES (?1, 'Test store', ?2, ?3)",
        vec![STORE.into(), STORE_LAT.to_string(), STORE_LON.to_string()],
    )
    .await;
}

pub async fn seed_rider(db: &StoreDb, id: &str, code: &str) {
    exec(
        db,
        "INSERT INTO riders (id, home_store_id, name, enrolment_code_sha256) VALUES (?1, ?2, ?1, ?3)",
        vec![
            id.into(),
            STORE.into(),
            flashkart_edge::riders::ca::enrolment_code_sha256(code),
        ],
    )
    .await;
}

/// A packed order on the pickup shelf, its customer 1 km north of the store.
pub async fn seed_ready_order(db: &StoreDb, order_id: &str, label: &str) {
    exec(
        db,
        "INSERT INTO orders (id, store_id, customer_first_name, address, lat, lon)
         VALUES (?1, ?2, 'Ada', 'Main St 1', ?3, ?4)",
        vec![
            order_id.into(),
            STORE.into(),
            (STORE_LAT + 0.009).to_string(),
            STORE_LON.to_string(),
        ],
    )
    .await;
    exec(
        db,
        "INSERT INTO order_progress (order_id, store_id, status, label_id) VALUES (?1, ?2, 'READY', ?3)",
        vec![order_id.into(), STORE.into(), label.into()],
    )
    .await;
}

pub async fn assign(db: &StoreDb, id: &str, order: &str, rider: &str, expires_in_s: i64) {
    exec(
        db,
        "INSERT INTO assignments (id, store_id, order_id, rider_id, offered_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        vec![
            id.into(),
            STORE.into(),
            order.into(),
            rider.into(),
            clock::now(),
            clock::seconds_from_now(expires_in_s),
        ],
    )
    .await;
}

pub async fn query(db: &StoreDb, sql: &'static str, param: &str) -> Vec<Vec<String>> {
    let param = param.to_owned();
    db.read(move |conn| {
        let mut statement = conn.prepare(sql)?;
        let columns = statement.column_count();
        let rows = statement
            .query_map([param], |row| {
                (0..columns)
                    .map(|i| {
                        let value: rusqlite::types::Value = row.get(i)?;
                        Ok(match value {
                            rusqlite::types::Value::Null => "NULL".into(),
                            rusqlite::types::Value::Integer(i) => i.to_string(),
                            rusqlite::types::Value::Real(r) => r.to_string(),
                            rusqlite::types::Value::Text(t) => t,
                            rusqlite::types::Value::Blob(_) => "BLOB".into(),
                        })
                    })
                    .collect::<Result<Vec<String>, rusqlite::Error>>()
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, flashkart_sync::Error>(rows)
    })
    .await
    .unwrap()
}

/// Waits for the first event matching `pick`.
pub async fn wait_for<T>(
    events: &mut broadcast::Receiver<RiderEvent>,
    mut pick: impl FnMut(&RiderEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("events closed: {error}"),
            }
        }
    })
    .await
    .expect("timed out waiting for a riders event")
}

pub async fn wait_sim<T>(
    events: &mut mpsc::Receiver<SimEvent>,
    mut pick: impl FnMut(&SimEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("simulators stopped");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
    .expect("timed out waiting for a simulator event")
}

/// A simulated rider over TLS with its certificate, fast enough for a test.
pub fn sim_config(
    rider: &str,
    port: u16,
    bundle: &CertBundle,
    labels: sim::Lookup,
    events: mpsc::Sender<SimEvent>,
) -> SimConfig {
    let mut config = SimConfig::new(rider, port, (STORE_LAT - 0.003, STORE_LON), labels);
    config.tls = Some(SimTls {
        ca_pem: bundle.ca_pem.clone(),
        cert_pem: bundle.cert_pem.clone(),
        key_pem: bundle.key_pem.clone().unwrap(),
    });
    config.speed_mps = 2000.0;
    config.tick = Duration::from_millis(50);
    config.events = Some(events);
    config
}

pub fn labels(pairs: &[(&str, &str)]) -> sim::Lookup {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    Arc::new(move |order: &str| {
        pairs
            .iter()
            .find(|(o, _)| o == order)
            .map(|(_, l)| l.clone())
    })
}

/// A device's credentials as files, for mosquitto clients.
pub struct Creds {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

pub fn write_creds(dir: &Path, name: &str, bundle: &CertBundle) -> Creds {
    let ca = dir.join(format!("{name}-ca.pem"));
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&ca, &bundle.ca_pem).unwrap();
    std::fs::write(&cert, &bundle.cert_pem).unwrap();
    std::fs::write(&key, bundle.key_pem.as_deref().unwrap()).unwrap();
    Creds {
        ca,
        cert: Some(cert),
        key: Some(key),
    }
}

fn tls_args(port: u16, creds: &Creds) -> Vec<String> {
    let mut args = vec![
        "-h".into(),
        "localhost".into(),
        "-p".into(),
        port.to_string(),
        "-V".into(),
        "mqttv311".into(),
        "--cafile".into(),
        creds.ca.display().to_string(),
    ];
    if let (Some(cert), Some(key)) = (&creds.cert, &creds.key) {
        args.extend([
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]);
    }
    args
}

/// A running mosquitto_sub, printing `topic hexpayload` per message.
pub struct Sub {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// Starts mosquitto_sub and waits until it is subscribed (its SUBACK), or until it exits
/// (refused): then `None`.
pub async fn subscribe(port: u16, creds: &Creds, client: &str, filter: &str) -> Option<Sub> {
    subscribe_with(port, creds, client, filter, &[]).await
}

/// [`subscribe`] with more mosquitto_sub arguments (a will, say).
pub async fn subscribe_with(
    port: u16,
    creds: &Creds,
    client: &str,
    filter: &str,
    extra: &[&str],
) -> Option<Sub> {
    let mut args = tls_args(port, creds);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args.extend([
        "-d".into(),
        "-i".into(),
        client.into(),
        "-q".into(),
        "1".into(),
        "-t".into(),
        filter.into(),
        "-F".into(),
        "MSG %t %x".into(),
    ]);
    // Line-buffered: mosquitto_sub flushes after messages, not after its debug lines (SUBACK).
    let mut child = tokio::process::Command::new("stdbuf")
        .arg("-oL")
        .arg("mosquitto_sub")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("SUBACK") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    subscribed.then_some(Sub { child, lines })
}

impl Sub {
    /// The next message within `within`, as (topic, payload bytes); `None` on timeout or when
    /// the broker closed the connection.
    pub async fn next(&mut self, within: Duration) -> Option<(String, Vec<u8>)> {
        tokio::time::timeout(within, async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                if let Some(rest) = line.strip_prefix("MSG ") {
                    let (topic, hex) = rest.split_once(' ').unwrap_or((rest, ""));
                    let bytes = (0..hex.len() / 2)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                        .collect();
                    return Some((topic.to_owned(), bytes));
                }
                if line.contains("Connection lost") || line.contains("DISCONNECT") {
                    return None;
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    /// Whether mosquitto_sub is still connected after `within` (it exits when refused).
    pub async fn exited_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.child.wait())
            .await
            .is_ok()
    }
}

/// Publishes one message with mosquitto_pub; returns whether it exited successfully.
pub async fn publish(port: u16, creds: &Creds, client: &str, topic: &str, payload: &[u8]) -> bool {
    // One file per call: tests in this process may publish as the same client at once.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, payload).unwrap();
    let file = file.into_temp_path();
    let mut args = tls_args(port, creds);
    args.extend([
        "-i".into(),
        client.into(),
        "-q".into(),
        "1".into(),
        "-t".into(),
        topic.into(),
        "-f".into(),
        file.display().to_string(),
    ]);
    let status = tokio::process::Command::new("mosquitto_pub")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .expect("mosquitto_pub (apt-get install mosquitto-clients)");
    drop(file);
    status.success()
}
