//! Helpers for end-to-end tests: build and find FlashKart's binaries, start them as real
//! processes on free ports with their own temporary data, and stop them the way an operator
//! would (SIGTERM), or the way a power cut would (SIGKILL).
//!
//! A test crate cannot depend on another package's binaries, so the binaries are built with the
//! same cargo that runs the tests (a no-op when they are fresh) and found beside the test
//! executable.

pub mod balancer;
pub mod browser;
pub mod crashing_cloud;
/// HQ's admin API as the tests set the cloud up through it (stores, their profiles, products,
/// customers): one typed client instead of a copy of the same calls and JSON in each test.
pub mod hq_admin;
pub mod localstripe;
pub mod relay;
pub mod smtp;
pub mod store_daemon;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The path of a workspace binary, built first if needed.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = target_profile_dir();
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        // The same command scripts/test runs first, so the same feature resolution: a no-op
        // there, instead of a rebuild with a different feature set.
        command.args(["build", "--workspace", "--bins"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        // Cargo gives this test process its package's variables (CARGO_PKG_NAME, ...), and
        // build scripts that watch them (ring's does) would see them changed and rebuild half
        // the tree, twice: once here and once more for the next cargo run outside.
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_EXE_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&key)
            {
                command.env_remove(key);
            }
        }
        let status = command
            .current_dir(workspace_root())
            .status()
            .unwrap_or_else(|e| panic!("running cargo build for {name}: {e}"));
        assert!(status.success(), "cargo build --workspace --bins failed");
        built.push(name.to_owned());
    }
    dir.join(name)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `target/<profile>`: test executables live in `target/<profile>/deps`.
fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let deps = exe
        .parent()
        .unwrap_or_else(|| panic!("test binary has no directory"));
    deps.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| deps.to_path_buf())
}

/// A running daemon whose stderr is collected line by line.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    /// Starts `binary` with `args` and extra environment.
    pub fn start(binary: &Path, args: &[&str], env: &[(&str, &Path)]) -> Self {
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let stderr = child
            .stderr
            .take()
            .unwrap_or_else(|| panic!("no stderr pipe"));
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[daemon] {line}");
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line containing `{needle}` within {timeout:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every line logged so far (drains what is pending).
    pub fn log(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        kill(pid, signal).unwrap_or_else(|e| panic!("kill {signal}: {e}"));
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        self.signal(Signal::SIGTERM);
        let status = self.wait(timeout);
        (status, self.log())
    }

    /// Waits for the process to exit, killing it if it does not within `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("wait: {e}"))
            {
                // The reader thread ends at EOF on stderr; collect everything it read.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("process did not exit within {timeout:?}");
            }
            // Process exit has no portable awaitable handle here; poll it briefly.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Pulls the socket address out of a log line's `addr=host:port` field.
pub fn addr_in(line: &str) -> Option<std::net::SocketAddr> {
    let start = line.find("addr=")? + "addr=".len();
    let rest = &line[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Pulls the first `http://...` URL out of a log line.
pub fn url_in(line: &str) -> Option<String> {
    let start = line.find("http://")?;
    let rest = &line[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c.is_control() || c == '"' || c == ',')
        .unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches('/').to_owned())
}

/// One HTTP call with a bearer token (empty: none) and an optional JSON body, as a test makes
/// it: the status and the answer as JSON (a body that is not JSON comes back as a string).
pub async fn call_api(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = http.request(method, url);
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status();
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("{url}: reading the body: {e}"));
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// HQ's `POST /admin/v1/riders/{rider}/enrolment-code` as soon as HQ can issue one: it answers
/// 409 until the rider's home store has synced its riders' CA fingerprint (which the QR code
/// pins). The answer (code, QR payload, expiry); panics after `within`.
pub async fn enrolment_code_when_ready(
    http: &reqwest::Client,
    cloud: &str,
    admin_token: &str,
    rider: &str,
    within: std::time::Duration,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (status, answer) = call_api(
            http,
            reqwest::Method::POST,
            &format!("{cloud}/admin/v1/riders/{rider}/enrolment-code"),
            admin_token,
            None,
        )
        .await;
        if status == reqwest::StatusCode::CREATED {
            return answer;
        }
        assert_eq!(status, reqwest::StatusCode::CONFLICT, "{answer}");
        assert!(
            std::time::Instant::now() < deadline,
            "HQ issued no enrolment code for {rider} within {within:?}: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
