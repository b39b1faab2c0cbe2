//! Scale simulator: answers Toledo 8217 (with echo mode), MT-SICS and streams
//! CAS frames, from a weight the test or demo sets. `silent` makes it stop
//! answering, like an unplugged USB adapter that still enumerates.

use crate::pty::PtyPort;
use flashkart_hw::scale::ScaleProtocol;
use flashkart_hw::scale::protocol::{
    encode_cas, encode_sics_weight, encode_toledo_status, encode_toledo_weight,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The simulated platter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScaleState {
    /// Gross weight in milligrams.
    pub milligrams: i64,
    /// Stable or moving.
    pub stable: bool,
    /// Over capacity.
    pub over_capacity: bool,
    /// Stop answering.
    pub silent: bool,
    /// Active tare in milligrams.
    pub tare: i64,
}

/// A running scale simulator.
#[derive(Debug, Clone)]
pub struct ScaleSim {
    link: PathBuf,
    state: Arc<Mutex<ScaleState>>,
}

fn reply_toledo(byte: u8, s: &mut ScaleState, echo: &mut bool) -> Vec<u8> {
    if *echo {
        if byte == b'F' {
            *echo = false;
            return Vec::new();
        }
        return vec![byte];
    }
    let net = s.milligrams - s.tare;
    match byte {
        b'E' => {
            *echo = true;
            Vec::new()
        }
        b'W' if !s.stable || s.over_capacity || net < 0 => {
            encode_toledo_status(!s.stable, s.over_capacity, net < 0)
        }
        b'W' => encode_toledo_weight(net),
        b'Z' => {
            s.milligrams = 0;
            s.tare = 0;
            Vec::new()
        }
        b'T' => {
            s.tare = s.milligrams;
            Vec::new()
        }
        b'C' => {
            s.tare = 0;
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn reply_sics(line: &str, s: &mut ScaleState) -> String {
    let net = s.milligrams - s.tare;
    match line.trim() {
        "S" | "SI" if s.over_capacity => format!("{} +\r\n", line.trim()),
        "S" if !s.stable => "S I\r\n".into(),
        cmd @ ("S" | "SI") => encode_sics_weight(cmd, net, s.stable),
        "Z" => {
            s.milligrams = 0;
            s.tare = 0;
            "Z A\r\n".into()
        }
        "T" => {
            s.tare = s.milligrams;
            encode_sics_weight("T", s.tare, true)
        }
        "@" => "I4 A \"0123456789\"\r\n".into(),
        _ => "ES\r\n".into(),
    }
}

impl ScaleSim {
    /// Starts a simulator whose slave is reachable at `link`.
    pub fn spawn(
        link: &Path,
        protocol: ScaleProtocol,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let mut port = PtyPort::open(Some(link))?;
        let state = Arc::new(Mutex::new(ScaleState {
            stable: true,
            ..ScaleState::default()
        }));
        let st = state.clone();
        tokio::spawn(async move {
            let mut chunk = [0u8; 256];
            let mut line = String::new();
            let mut echo = false;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                let got = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick(), if protocol == ScaleProtocol::Cas => None,
                    r = port.read(&mut chunk) => match r { Ok(0) | Err(_) => break, Ok(n) => Some(n) },
                };
                let mut out = Vec::new();
                if let Ok(mut s) = st.lock() {
                    match (protocol, got) {
                        (ScaleProtocol::Cas, None) if !s.silent => {
                            out = encode_cas(s.milligrams - s.tare, s.stable, s.tare != 0);
                        }
                        (ScaleProtocol::Toledo8217, Some(n)) if !s.silent => {
                            for &b in &chunk[..n] {
                                out.extend(reply_toledo(b, &mut s, &mut echo));
                            }
                        }
                        (ScaleProtocol::MtSics, Some(n)) if !s.silent => {
                            line.push_str(&String::from_utf8_lossy(&chunk[..n]));
                            while let Some(p) = line.find("\r\n") {
                                let cmd: String = line.drain(..p + 2).collect();
                                out.extend(reply_sics(&cmd, &mut s).bytes());
                            }
                        }
                        _ => {}
                    }
                }
                if !out.is_empty() && port.write_all(&out).await.is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            link: link.to_path_buf(),
            state,
        })
    }

    /// The path a driver opens.
    pub fn path(&self) -> &Path {
        &self.link
    }

    /// Changes the simulated platter.
    pub fn update(&self, f: impl FnOnce(&mut ScaleState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    /// The current state.
    pub fn state(&self) -> ScaleState {
        self.state.lock().map(|s| *s).unwrap_or_default()
    }
}

/// Runs a scale simulator with a stable `milligrams` weight until `shutdown`.
pub async fn run(
    link: &Path,
    protocol: ScaleProtocol,
    milligrams: i64,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let sim = ScaleSim::spawn(link, protocol, shutdown.clone())?;
    sim.update(|s| s.milligrams = milligrams);
    tracing::info!(path = %link.display(), ?protocol, "scale simulator ready");
    shutdown.cancelled().await;
    Ok(())
}
