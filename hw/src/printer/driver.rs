//! The printer connection over any `AsyncRead + AsyncWrite`: sends status
//! queries and jobs. A Zebra sends no reply at all while its media is out or
//! its head is open, so a status timeout is reported as a fault, not a hang.

use super::status::{self, PrinterStatus, StatusError};
use serde::{Deserialize, Serialize};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The printer's command language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PrinterLanguage {
    /// Zebra ZPL II (labels).
    #[default]
    Zpl,
    /// Epson ESC/POS (receipts).
    EscPos,
}

/// Per-printer settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrinterConfig {
    /// Command language.
    pub language: PrinterLanguage,
    /// How long to wait for a status reply.
    pub status_timeout_ms: u64,
    /// Attempts per job while the printer is not ready.
    pub max_attempts: u32,
    /// Wait between attempts.
    pub retry_delay_ms: u64,
}

impl Default for PrinterConfig {
    fn default() -> Self {
        Self {
            language: PrinterLanguage::Zpl,
            status_timeout_ms: 1500,
            max_attempts: 5,
            retry_delay_ms: 1000,
        }
    }
}

/// Why a status query or job failed.
#[derive(Debug, thiserror::Error)]
pub enum PrinterError {
    /// No status reply in time: a Zebra with media out or head open, or an unplugged printer.
    #[error("printer did not answer the status query (media out, head open or unplugged)")]
    NoReply,
    /// A reply that is not a status reply.
    #[error(transparent)]
    Malformed(#[from] StatusError),
    /// The printer reported faults.
    #[error("printer not ready: {}", .0.join(", "))]
    NotReady(Vec<&'static str>),
    /// The connection failed.
    #[error("printer I/O: {0}")]
    Io(#[from] io::Error),
}

/// A printer connection.
#[derive(Debug)]
pub struct Printer<T> {
    io: T,
    config: PrinterConfig,
    buf: Vec<u8>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Printer<T> {
    /// Wraps a connection.
    pub fn new(io: T, config: PrinterConfig) -> Self {
        Self {
            io,
            config,
            buf: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &PrinterConfig {
        &self.config
    }

    /// Queries and parses the printer status.
    pub async fn status(&mut self) -> Result<PrinterStatus, PrinterError> {
        self.buf.clear();
        let query: &[u8] = match self.config.language {
            PrinterLanguage::Zpl => b"~HS\r\n",
            PrinterLanguage::EscPos => &status::ESCPOS_QUERY,
        };
        self.io.write_all(query).await?;
        self.io.flush().await?;
        let timeout = Duration::from_millis(self.config.status_timeout_ms);
        match tokio::time::timeout(timeout, self.read_status()).await {
            Ok(r) => r,
            Err(_) => {
                self.buf.clear();
                Err(PrinterError::NoReply)
            }
        }
    }

    async fn read_status(&mut self) -> Result<PrinterStatus, PrinterError> {
        let mut chunk = [0u8; 256];
        loop {
            let parsed = match self.config.language {
                PrinterLanguage::Zpl => status::parse_zpl_hs(&self.buf),
                PrinterLanguage::EscPos => status::parse_escpos(&self.buf),
            };
            match parsed {
                Ok((s, used)) => {
                    self.buf.drain(..used);
                    return Ok(s);
                }
                Err(StatusError::Incomplete) => {}
                Err(e) => {
                    self.buf.clear();
                    return Err(e.into());
                }
            }
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "printer connection closed",
                )
                .into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends job bytes.
    pub async fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        self.io.write_all(payload).await?;
        self.io.flush().await
    }
}
