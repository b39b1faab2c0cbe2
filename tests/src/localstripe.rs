//! localstripe, a stand-in for Stripe's API (PyPI, run by `scripts/localstripe`), for tests of
//! the payment path against a real HTTP peer instead of a mock of what we think Stripe says.
//!
//! Every [`LocalStripe`] is its own process on a free port with its own state file (upstream
//! would share `/tmp/localstripe.pickle` between all instances; the script moves it), behind a
//! small TCP relay owned here. Tests talk to the relay ([`LocalStripe::base_url`]), which is
//! what makes outages cheap to stage without losing localstripe's state:
//! [`LocalStripe::go_down`] closes the relay's port (connections are refused, open ones cut)
//! and [`LocalStripe::come_up`] opens the same port again; [`LocalStripe::restart`] really
//! stops the process and starts it again on its saved state, behind the same URL.
//!
//! [`WebhookReceiver`] is the other side: an HTTP endpoint localstripe delivers webhooks to,
//! handing each delivery's raw body and `Stripe-Signature` to the test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use crate::relay::Relay;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio::task::JoinHandle;

/// The API key the tests use: localstripe accepts any `sk_...` key.
pub const SECRET_KEY: &str = "sk_test_flashkart_localstripe";

/// Time for localstripe to answer once started (a Python process importing aiohttp).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for the first `scripts/localstripe --install` (a virtualenv and a pip install).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Time for localstripe to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running localstripe behind a relay. Killed when dropped.
#[derive(Debug)]
pub struct LocalStripe {
    relay: Relay,
    process: Option<Process>,
    /// The state file and the process's TMPDIR.
    dir: tempfile::TempDir,
    /// Registered webhooks, registered again after a restart (localstripe keeps them in
    /// memory only).
    webhooks: Vec<serde_json::Value>,
    http: reqwest::Client,
}

impl LocalStripe {
    /// Installs localstripe if needed (once per test process), starts it from scratch on a
    /// free port and waits until it listens.
    pub async fn start() -> Self {
        install().await;
        let dir = tempfile::tempdir().expect("localstripe temp dir");
        let process = Process::start(&dir, true).await;
        let relay = Relay::start(process.addr).await;
        Self {
            relay,
            process: Some(process),
            dir,
            webhooks: Vec::new(),
            http: reqwest::Client::new(),
        }
    }

    /// What the gateway under test is configured with (the relay: stable across outages and
    /// restarts).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.relay.addr)
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.relay.addr
    }

    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    /// localstripe itself, bypassing the relay: for setting up what a customer's app or the
    /// Stripe dashboard would, whatever the relay is doing.
    fn direct_url(&self) -> String {
        let process = self
            .process
            .as_ref()
            .expect("localstripe is stopped; restart it first");
        format!("http://{}", process.addr)
    }

    /// Saves a card the way a customer's app does with Stripe.js (`POST /v1/payment_methods`;
    /// the app would use the publishable key, the stand-in takes the secret one) and returns
    /// its id (`pm_...`). localstripe's test cards: 4242424242424242 works,
    /// 4000000000000002 is declined when attached to a customer, 4000000000000341 when
    /// charged.
    pub async fn create_payment_method(&self, card_number: &str) -> String {
        let answer = self
            .http
            .post(format!("{}/v1/payment_methods", self.direct_url()))
            .bearer_auth(SECRET_KEY)
            .form(&[
                ("type", "card"),
                ("card[number]", card_number),
                ("card[exp_month]", "12"),
                // A fixed year far enough ahead (localstripe accepts 2019..2099).
                ("card[exp_year]", "2040"),
                ("card[cvc]", "123"),
            ])
            .send()
            .await
            .expect("POST /v1/payment_methods");
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.expect("payment method JSON");
        assert!(
            status.is_success(),
            "creating a payment method: {status} {body}"
        );
        body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("payment method without id: {body}"))
            .to_owned()
    }

    /// Makes localstripe deliver webhooks to `url`, signed with `secret` (used as given,
    /// like Stripe's `whsec_...`), for the `events` types (all when `None`). localstripe only
    /// emits a few types: for payment intents, `payment_intent.succeeded` (at capture, or at
    /// confirmation with automatic capture) and `payment_intent.payment_failed`; also
    /// `customer.created` and the like. It sends each about a second after the change.
    pub async fn configure_webhook(
        &mut self,
        name: &str,
        url: &str,
        secret: &str,
        events: Option<&[&str]>,
    ) {
        let mut body = serde_json::json!({"url": url, "secret": secret});
        if let Some(events) = events {
            body["events"] = serde_json::json!(events);
        }
        self.post_webhook(name, &body).await;
        self.webhooks
            .push(serde_json::json!({"name": name, "body": body}));
    }

    async fn post_webhook(&self, name: &str, body: &serde_json::Value) {
        let answer = self
            .http
            .post(format!("{}/_config/webhooks/{name}", self.direct_url()))
            .json(body)
            .send()
            .await
            .expect("POST /_config/webhooks");
        assert!(
            answer.status().is_success(),
            "configuring webhook {name}: {}",
            answer.status()
        );
    }

    /// Stripe is unreachable: the relay's port is closed (new connections are refused) and
    /// every open connection is cut. localstripe keeps running with its state.
    pub async fn go_down(&self) {
        self.relay.down().await;
    }

    /// Stripe is back, on the same port.
    pub async fn come_up(&self) {
        self.relay.up().await;
    }

    /// Stops localstripe (SIGTERM) and starts it again on its saved state (customers, cards,
    /// intents, refunds) and registered webhooks, behind the same URL. Webhooks it had
    /// scheduled but not sent are lost, as they would be if Stripe's sender crashed.
    pub async fn restart(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop().await;
        }
        let process = Process::start(&self.dir, false).await;
        self.relay.point_to(process.addr);
        self.process = Some(process);
        for webhook in self.webhooks.clone() {
            let name = webhook["name"].as_str().unwrap_or_default().to_owned();
            self.post_webhook(&name, &webhook["body"]).await;
        }
    }

    /// Stops localstripe and the relay.
    pub async fn stop(mut self) {
        self.relay.down().await;
        if let Some(process) = self.process.take() {
            process.stop().await;
        }
    }
}

/// `scripts/localstripe --install`, once per test process (concurrent test processes are
/// serialised by the script's lock).
async fn install() {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let script = script();
            let mut child = Command::new(&script)
                .arg("--install")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("running {} --install: {e}", script.display()));
            let status = tokio::time::timeout(INSTALL_TIMEOUT, child.wait())
                .await
                .unwrap_or_else(|_| panic!("installing localstripe took over {INSTALL_TIMEOUT:?}"))
                .expect("waiting for scripts/localstripe --install");
            assert!(status.success(), "scripts/localstripe --install: {status}");
        })
        .await;
}

fn script() -> PathBuf {
    crate::workspace_root().join("scripts/localstripe")
}

/// One localstripe process.
#[derive(Debug)]
struct Process {
    child: Child,
    /// Where it listens (it binds `[::]`, so the IPv4 loopback reaches it too).
    addr: SocketAddr,
}

impl Process {
    async fn start(dir: &tempfile::TempDir, from_scratch: bool) -> Self {
        let mut command = Command::new(script());
        command.args(["--port", "0"]);
        if from_scratch {
            command.arg("--from-scratch");
        }
        let mut child = command
            .env("LOCALSTRIPE_STATE", dir.path().join("localstripe.pickle"))
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script().display()));
        let stdout = child.stdout.take().expect("localstripe stdout");
        let stderr = child.stderr.take().expect("localstripe stderr");
        let (port_tx, port_rx) = oneshot::channel();
        // aiohttp prints "======== Running on http://[::]:PORT ========" once it listens;
        // everything else (its access log, tracebacks) goes to the test's output.
        tokio::spawn(async move {
            let mut port_tx = Some(port_tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[localstripe] {line}");
                if let Some(port) = running_port(&line)
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[localstripe] {line}");
            }
        });
        let port = tokio::time::timeout(START_TIMEOUT, port_rx)
            .await
            .unwrap_or_else(|_| panic!("localstripe did not listen within {START_TIMEOUT:?}"))
            .unwrap_or_else(|_| panic!("localstripe exited before listening (see its output)"));
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let pid = Pid::from_raw(i32::try_from(pid).expect("pid"));
            let _ = kill(pid, Signal::SIGTERM);
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The port in aiohttp's "Running on http://[::]:PORT" line.
fn running_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("Running on http://")? + "Running on http://".len()..];
    let host_port = rest.split_whitespace().next()?;
    host_port.rsplit_once(':')?.1.parse().ok()
}

/// One webhook delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The `Stripe-Signature` header (empty when there was none).
    pub signature: String,
    /// The raw body, exactly as sent (what the signature covers).
    pub body: Vec<u8>,
}

/// An HTTP endpoint on a free loopback port that answers 200 to every POST and hands the
/// deliveries to the test in order. Stops when dropped.
#[derive(Debug)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    task: JoinHandle<()>,
}

/// Largest request head and body the receiver reads.
const MAX_HEAD_BYTES: usize = 64 << 10;
const MAX_BODY_BYTES: usize = 1 << 20;

impl WebhookReceiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the webhook receiver");
        let addr = listener.local_addr().expect("receiver address");
        let (tx, deliveries) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    match receive(stream).await {
                        Ok(delivery) => {
                            let _ = tx.send(delivery);
                        }
                        Err(error) => eprintln!("[webhook receiver] {error}"),
                    }
                });
            }
        });
        Self {
            addr,
            deliveries,
            task,
        }
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/webhooks/stripe", self.addr)
    }

    /// The next delivery; panics after `within`.
    pub async fn next(&mut self, within: Duration) -> Delivery {
        tokio::time::timeout(within, self.deliveries.recv())
            .await
            .unwrap_or_else(|_| panic!("no webhook delivery within {within:?}"))
            .expect("webhook receiver stopped")
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request with a Content-Length body and answers 200.
async fn receive(mut stream: TcpStream) -> Result<Delivery, String> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err("request head too long".into());
        }
        let mut chunk = [0_u8; 4096];
        let read = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("connection closed before the request head ended".into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .ok_or("no Content-Length")?
        .parse()
        .map_err(|_| "bad Content-Length")?;
    if length > MAX_BODY_BYTES {
        return Err("body too large".into());
    }
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0_u8; 4096];
        let read = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("connection closed before the body ended".into());
        }
        body.extend_from_slice(&chunk[..read]);
    }
    body.truncate(length);
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.shutdown().await;
    Ok(Delivery {
        signature: header("stripe-signature").unwrap_or_default(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::running_port;

    #[test]
    fn finds_the_port_in_aiohttps_banner() {
        assert_eq!(
            running_port("======== Running on http://[::]:45661 ========"),
            Some(45661)
        );
        assert_eq!(running_port("(Press CTRL+C to quit)"), None);
    }
}
