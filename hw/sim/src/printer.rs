//! Printer simulator: answers `~HS` (ZPL) or `DLE EOT` (ESC/POS) like the real
//! printers, including a Zebra's silence while media is out or the head is
//! open, and keeps every label and receipt it received.

use crate::pty::PtyPort;
use flashkart_hw::printer::PrinterLanguage;
use flashkart_hw::printer::status::{PrinterStatus, encode_escpos, encode_zpl_hs};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the simulator has received so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Every ZPL format (`^XA` .. `^XZ`), in order.
    pub labels: Vec<String>,
    /// Every ESC/POS receipt (up to and including the cut), in order.
    pub receipts: Vec<Vec<u8>>,
    /// Status queries seen (answered or not).
    pub status_queries: usize,
}

/// A running printer simulator.
#[derive(Debug, Clone)]
pub struct PrinterSim {
    link: PathBuf,
    status: Arc<Mutex<PrinterStatus>>,
    received: watch::Receiver<Received>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Consumes complete commands from `buf`; returns the reply bytes.
fn process(
    buf: &mut Vec<u8>,
    lang: PrinterLanguage,
    status: &PrinterStatus,
    rx: &mut Received,
) -> Vec<u8> {
    let mut reply = Vec::new();
    loop {
        match lang {
            PrinterLanguage::Zpl => {
                let hs = find(buf, b"~HS");
                let xa = find(buf, b"^XA");
                match (hs, xa) {
                    (Some(h), x) if x.is_none_or(|x| h < x) => {
                        buf.drain(..h + 3);
                        rx.status_queries += 1;
                        // A real Zebra says nothing while media is out or the head is open.
                        if !status.paper_out && !status.head_open {
                            reply.extend(encode_zpl_hs(status));
                        }
                    }
                    (_, Some(x)) => match find(&buf[x..], b"^XZ") {
                        Some(end) => {
                            let label: Vec<u8> = buf.drain(..x + end + 3).skip(x).collect();
                            rx.labels.push(String::from_utf8_lossy(&label).into_owned());
                        }
                        None => return reply,
                    },
                    _ => {
                        // Keep a possible partial command at the end only.
                        let keep = buf.len().min(2);
                        buf.drain(..buf.len() - keep);
                        return reply;
                    }
                }
            }
            PrinterLanguage::EscPos => {
                if let Some(p) = find(buf, &[0x10, 0x04]) {
                    let Some(&n) = buf.get(p + 2) else {
                        return reply;
                    };
                    buf.drain(p..p + 3);
                    rx.status_queries += 1;
                    let [offline, roll] = encode_escpos(status);
                    reply.push(if n == 4 { roll } else { offline });
                    continue;
                }
                if let Some(p) = find(buf, &[0x1d, b'V']) {
                    let end = (p + 4).min(buf.len());
                    rx.receipts.push(buf.drain(..end).collect());
                    continue;
                }
                return reply;
            }
        }
    }
}

impl PrinterSim {
    /// Starts a simulator whose slave is reachable at `link`.
    pub fn spawn(
        link: &Path,
        lang: PrinterLanguage,
        shutdown: CancellationToken,
    ) -> io::Result<Self> {
        let mut port = PtyPort::open(Some(link))?;
        let status = Arc::new(Mutex::new(PrinterStatus::default()));
        let (tx, received) = watch::channel(Received::default());
        let st = status.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                let n = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = port.read(&mut chunk) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
                };
                buf.extend_from_slice(&chunk[..n]);
                let status = st.lock().map(|s| *s).unwrap_or_default();
                let mut reply = Vec::new();
                tx.send_modify(|rx| reply = process(&mut buf, lang, &status, rx));
                if !reply.is_empty() && port.write_all(&reply).await.is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            link: link.to_path_buf(),
            status,
            received,
        })
    }

    /// The path a driver opens.
    pub fn path(&self) -> &Path {
        &self.link
    }

    /// Sets what the printer reports (paper out, head open...).
    pub fn set_status(&self, status: PrinterStatus) {
        if let Ok(mut s) = self.status.lock() {
            *s = status;
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Received {
        self.received.borrow().clone()
    }

    /// Waits until `pred` holds for what was received.
    pub async fn wait_for(&self, pred: impl FnMut(&Received) -> bool) -> Received {
        let mut rx = self.received.clone();
        let r = rx.wait_for(pred).await.map(|r| r.clone());
        r.unwrap_or_else(|_| self.received())
    }
}

/// Runs a printer simulator until `shutdown`, logging each label received.
pub async fn run(
    link: &Path,
    lang: PrinterLanguage,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let sim = PrinterSim::spawn(link, lang, shutdown.clone())?;
    tracing::info!(path = %link.display(), "printer simulator ready");
    let mut rx = sim.received.clone();
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = rx.changed() => if r.is_err() { return Ok(()) },
        }
        let labels = rx.borrow().labels.clone();
        for l in labels.iter().skip(seen) {
            tracing::info!(label = %l, "printer simulator received a label");
        }
        seen = labels.len();
    }
}
