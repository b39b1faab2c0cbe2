//! The daemons start with no arguments beyond `run` and no config file, create their databases
//! in the user's data directory, serve, and stop cleanly on SIGTERM.

use std::path::Path;
use std::time::Duration;

use flashkart_tests::{Daemon, addr_in, binary};

const START: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(30);

/// SIGTERM: the daemon must exit successfully, having logged `line` on its way out.
fn stops_cleanly(daemon: Daemon, line: &str) {
    let (status, log) = daemon.terminate(STOP);
    let log = log.join("\n");
    assert!(status.success(), "exited with {status}; log:\n{log}");
    assert!(log.contains(line), "no `{line}` in the log:\n{log}");
}

/// Every file under `dir` whose name starts with `prefix`.
fn find_files(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find_files(&path, prefix));
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        {
            found.push(path);
        }
    }
    found
}

fn replicated_tables(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("open database");
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE '%__crsql_clock' ORDER BY name")
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_runs_with_defaults_and_stops_cleanly_on_sigterm() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let cache = home.path().join("cache");
    let mut edge = Daemon::start(
        &binary("flashkart-edge"),
        &["run"],
        &[
            ("HOME", home.path()),
            ("XDG_DATA_HOME", &data),
            ("XDG_CACHE_HOME", &cache),
            ("FLASHKART_EDGE_LISTEN", Path::new("127.0.0.1:0")),
        ],
    );
    let line = edge.wait_for_line("HTTP API listening", START);
    let addr = addr_in(&line).expect("address in the listening line");
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("healthz request");
    assert!(health.status().is_success(), "healthz: {}", health.status());

    stops_cleanly(edge, "store database closed");

    let databases: Vec<_> = find_files(&data, "store.db")
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "store.db"))
        .collect();
    assert_eq!(
        databases.len(),
        1,
        "one store database under the user's data dir: {databases:?}"
    );
    let tables = replicated_tables(&databases[0]);
    for table in ["orders", "stock_moves", "order_progress", "products"] {
        assert!(
            tables.iter().any(|t| t == &format!("{table}__crsql_clock")),
            "{table} is a CRR; replicated: {tables:?}"
        );
    }
    assert_eq!(
        find_files(&cache, "crsqlite-").len(),
        1,
        "cr-sqlite extracted once to the user's cache directory"
    );
}

/// The store daemon with its riders' broker: the broker's listeners bind free ports, a device
/// connected over MQTT shows on `/metrics`, and SIGTERM stops the daemon cleanly while the
/// device is still connected (the broker has to let go of live connections on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_with_riders_reports_connections_and_stops_with_riders_connected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join("edge.toml");
    std::fs::write(
        &config,
        "[riders]\ntls_listen = \"127.0.0.1:0\"\nenrol_listen = \"127.0.0.1:0\"\nplain_listen = \"127.0.0.1:0\"\n",
    )
    .expect("write config");
    let data = home.path().join("data");
    let mut edge = Daemon::start(
        &binary("flashkart-edge"),
        &["run", "--config", config.to_str().expect("utf-8 path")],
        &[
            ("HOME", home.path()),
            ("XDG_DATA_HOME", &data),
            ("XDG_CACHE_HOME", &home.path().join("cache")),
            ("FLASHKART_EDGE_LISTEN", Path::new("127.0.0.1:0")),
        ],
    );
    let broker = edge.wait_for_line("riders broker listening", START);
    let plain: std::net::SocketAddr = broker
        .split("plain=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no plain listener address in {broker:?}"));
    let line = edge.wait_for_line("HTTP API listening", START);
    let http = addr_in(&line).expect("address in the listening line");

    // A device: CONNECT (MQTT 3.1.1, client id "probe"), CONNACK accepted.
    let mut device = tokio::net::TcpStream::connect(plain)
        .await
        .expect("connect to the riders' loopback listener");
    let mut connect = vec![0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 5];
    connect.extend_from_slice(b"probe");
    device.write_all(&connect).await.expect("send CONNECT");
    let mut connack = [0u8; 4];
    device.read_exact(&mut connack).await.expect("read CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0]);

    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .expect("metrics request")
        .text()
        .await
        .expect("metrics body");
    let line = "flashkart_edge_rider_connections 1";
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    // Figures of the hand-written broker rumqttd does not have are not reported.
    for gone in [
        "rider_offers_retained",
        "rider_messages_dropped",
        "rider_connections_overflowed",
    ] {
        assert!(!metrics.contains(gone), "{gone} in\n{metrics}");
    }

    stops_cleanly(edge, "riders service stopped");
    drop(device);
}
