//! The real cloud binary, run to be stopped at a crash point (`FLASHKART_CRASH_AT` aborts the
//! process there, as `kill -9` would) and started again on the same data directory and
//! address, so the stores syncing with it reconnect to the same URL. The crash tests
//! (`payments_crash.rs`, `reroute_crash.rs`) share it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Daemon, binary, url_in};

/// How long a cloud may take to start listening.
const START: Duration = Duration::from_secs(60);

/// A cloud process and the directory its data and configuration live in.
#[derive(Debug)]
pub struct CrashingCloud {
    pub dir: tempfile::TempDir,
    /// `http://` and the address it listens on, the same across restarts.
    pub url: String,
    config: PathBuf,
    admin_token: String,
    /// Configuration after the first three lines (sections of its own).
    sections: String,
    daemon: Option<Daemon>,
}

impl CrashingCloud {
    /// Starts a cloud with `admin_token` and the configuration `sections`, to abort at
    /// `crash_at` if given.
    pub fn start(admin_token: &str, sections: &str, crash_at: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config = dir.path().join("cloud.toml");
        let mut cloud = Self {
            dir,
            url: String::new(),
            config,
            admin_token: admin_token.to_owned(),
            sections: sections.to_owned(),
            daemon: None,
        };
        cloud.write_config("127.0.0.1:0");
        cloud.run(crash_at);
        // Restarts keep the address the stores sync with.
        let listen = cloud.url.trim_start_matches("http://").to_owned();
        cloud.write_config(&listen);
        cloud
    }

    fn write_config(&self, listen: &str) {
        let text = format!(
            "listen = \"{listen}\"\ndata_dir = \"{}\"\nadmin_token = \"{}\"\n\n{}",
            self.dir.path().join("cloud").display(),
            self.admin_token,
            self.sections
        );
        std::fs::write(&self.config, text).unwrap_or_else(|e| panic!("cloud config: {e}"));
    }

    /// Starts the process (again), to abort at `crash_at` if given.
    pub fn run(&mut self, crash_at: Option<&str>) {
        let cache = self.dir.path().join("cache");
        let crash = Path::new(crash_at.unwrap_or(""));
        let env = [
            ("XDG_CACHE_HOME", cache.as_path()),
            ("HOME", self.dir.path()),
            ("FLASHKART_CRASH_AT", crash),
        ];
        let config = self.config.display().to_string();
        let mut daemon = Daemon::start(
            &binary("flashkart-cloud"),
            &["run", "--config", &config],
            &env,
        );
        let line = daemon.wait_for_line("cloud listening", START);
        self.url = url_in(&line).unwrap_or_else(|| panic!("no cloud url in {line:?}"));
        self.daemon = Some(daemon);
    }

    /// Waits for the crash point to abort the process.
    pub fn crashed(&mut self) {
        let mut daemon = self
            .daemon
            .take()
            .unwrap_or_else(|| panic!("no running cloud"));
        let status = daemon.wait(Duration::from_secs(60));
        assert!(
            !status.success(),
            "the cloud was to abort at its crash point"
        );
        daemon.wait_for_line("crash point reached", Duration::from_secs(1));
    }

    /// Stops the running process, if any, with SIGTERM.
    pub fn stop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.terminate(Duration::from_secs(30));
        }
    }

    /// The running process.
    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon
            .as_mut()
            .unwrap_or_else(|| panic!("no running cloud"))
    }
}

/// Places a cash order for one milk at (52.5, 13.41) as `bearer` with the idempotency key
/// `key`: the status and the answer, or `None` when the cloud died before it answered (what
/// the crash tests place before and after a crash point).
pub async fn place_milk_order(
    http: &reqwest::Client,
    base: &str,
    bearer: &str,
    key: &str,
) -> Option<(reqwest::StatusCode, serde_json::Value)> {
    let answer = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(bearer)
        .header("idempotency-key", key)
        .json(&serde_json::json!({
            "address": {"text": "Here 1", "lat": 52.5, "lon": 13.41},
            "lines": [{"product_id": "milk", "qty": 1}],
            "payment": {"method": "cash"}
        }))
        .send()
        .await
        .ok()?;
    let status = answer.status();
    Some((status, answer.json().await.ok()?))
}
