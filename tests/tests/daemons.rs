//! The daemons start with no arguments beyond `run` and no config file, create their databases
//! in the user's data directory, serve, and stop cleanly on SIGTERM.

use std::path::Path;
use std::time::Duration;

use flashkart_tests::{Daemon, addr_in, binary};

const START: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(30);

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

    let (status, log) = edge.terminate(STOP);
    assert!(
        status.success(),
        "edge exited with {status}; log:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("store database closed")),
        "database closed cleanly"
    );

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
