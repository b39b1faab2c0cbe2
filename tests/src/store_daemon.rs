//! A store's edge daemon as the end-to-end tests of the cloud start it: a process syncing with
//! the cloud at a given URL, polling quickly (so tests wait on events, not on timers), with
//! the manager signed in on its staff API.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{Daemon, addr_in, binary, call_api};

/// The manager's PIN of every store these tests start.
const MANAGER_PIN: &str = "246800";

/// A running store daemon and the manager's session on it.
#[derive(Debug)]
pub struct StoreDaemon {
    pub daemon: Daemon,
    /// The staff API, `http://host:port/api/v1`.
    pub base: String,
    /// The signed-in manager's bearer token.
    pub token: String,
}

impl StoreDaemon {
    /// Starts store `id` in `dir/id`, syncing with the cloud at `cloud_url` under
    /// `store_token`, with `env` for the process (its cache and home), and signs the manager
    /// in. Panics if it does not come up within `start`.
    pub async fn start(
        http: &reqwest::Client,
        dir: &Path,
        cloud_url: &str,
        id: &str,
        store_token: &str,
        env: &[(&str, &Path)],
        start: Duration,
    ) -> Self {
        let config = dir.join(format!("{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nstore_id = \"{id}\"\n\
                 manager_pin = \"{MANAGER_PIN}\"\n\n[sync]\ncloud_url = \"{cloud_url}\"\n\
                 token = \"{store_token}\"\nlocal_poll_ms = 20\nlong_poll_ms = 1000\n\
                 backoff_initial_ms = 20\nbackoff_max_ms = 200\n",
                dir.join(id).display()
            ),
        )
        .expect("edge config");
        let config = config.display().to_string();
        let mut daemon = Daemon::start(
            &binary("flashkart-edge"),
            &["run", "--config", &config],
            env,
        );
        let addr =
            addr_in(&daemon.wait_for_line("HTTP API listening", start)).expect("edge address");
        let base = format!("http://{addr}/api/v1");
        let (status, signed_in) = call_api(
            http,
            Method::POST,
            &format!("{base}/auth/sign-in"),
            "",
            Some(json!({"staff_id": "manager", "pin": MANAGER_PIN})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{signed_in}");
        Self {
            daemon,
            base,
            token: signed_in["token"].as_str().expect("staff token").to_owned(),
        }
    }
}
