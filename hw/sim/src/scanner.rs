//! Scanner simulator: writes scans (AIM identifier + data + CRLF) into a pty,
//! and can close and reopen its pty to simulate an unplug.

use crate::pty::PtyPort;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Settings for [`run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannerSimConfig {
    /// Stable symlink to create for the slave side.
    pub link: PathBuf,
    /// Scans to send (with AIM identifier; `<GS>` stands for ASCII 29).
    pub scans: Vec<String>,
    /// Delay between scans.
    pub interval_ms: u64,
}

enum Cmd {
    Raw(Vec<u8>, oneshot::Sender<io::Result<()>>),
    Reopen(oneshot::Sender<io::Result<()>>),
    Unplug(oneshot::Sender<io::Result<()>>),
}

/// A running scanner simulator.
#[derive(Debug, Clone)]
pub struct ScannerSim {
    link: PathBuf,
    tx: mpsc::Sender<Cmd>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "simulator stopped")
}

impl ScannerSim {
    /// Starts a simulator whose slave is reachable at `link`.
    pub fn spawn(link: &Path, shutdown: CancellationToken) -> io::Result<Self> {
        let mut port = Some(PtyPort::open(Some(link))?);
        let (tx, mut rx) = mpsc::channel::<Cmd>(64);
        let link_owned = link.to_path_buf();
        tokio::spawn(async move {
            loop {
                let cmd = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    c = rx.recv() => match c { Some(c) => c, None => break },
                };
                match cmd {
                    Cmd::Raw(bytes, done) => {
                        let r = match port.as_mut() {
                            Some(p) => p.write_all(&bytes).await,
                            None => Err(io::Error::new(io::ErrorKind::NotConnected, "unplugged")),
                        };
                        let _ = done.send(r);
                    }
                    Cmd::Unplug(done) => {
                        port = None;
                        let _ = std::fs::remove_file(&link_owned);
                        let _ = done.send(Ok(()));
                    }
                    Cmd::Reopen(done) => {
                        port = None;
                        let r = PtyPort::open(Some(&link_owned)).map(|p| port = Some(p));
                        let _ = done.send(r);
                    }
                }
            }
            tracing::debug!("scanner simulator stopped");
        });
        Ok(Self {
            link: link.to_path_buf(),
            tx,
        })
    }

    /// The path a driver opens.
    pub fn path(&self) -> &Path {
        &self.link
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Cmd,
    ) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx.send(make(done)).await.map_err(|_| gone())?;
        wait.await.map_err(|_| gone())?
    }

    /// Sends one scan: `line` is the AIM identifier and data; CRLF is added.
    pub async fn scan(&self, line: &str) -> io::Result<()> {
        let line = flashkart_hw::scanner::decode::unescape_raw(line);
        self.raw(format!("{line}\r\n").as_bytes()).await
    }

    /// Sends raw bytes (noise, partial frames).
    pub async fn raw(&self, bytes: &[u8]) -> io::Result<()> {
        self.call(|d| Cmd::Raw(bytes.to_vec(), d)).await
    }

    /// Closes the pty (the driver sees the device vanish) and removes the link.
    pub async fn unplug(&self) -> io::Result<()> {
        self.call(Cmd::Unplug).await
    }

    /// Closes the pty and opens a new one behind the same link (an unplug + replug).
    pub async fn reopen(&self) -> io::Result<()> {
        self.call(Cmd::Reopen).await
    }
}

/// Runs a simulator that sends `config.scans` then idles until `shutdown`.
pub async fn run(config: ScannerSimConfig, shutdown: CancellationToken) -> io::Result<()> {
    let sim = ScannerSim::spawn(&config.link, shutdown.clone())?;
    tracing::info!(path = %config.link.display(), "scanner simulator ready");
    for s in &config.scans {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(config.interval_ms)) => {}
        }
        sim.scan(s).await?;
    }
    shutdown.cancelled().await;
    Ok(())
}
