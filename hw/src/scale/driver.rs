//! The scale connection over any `AsyncRead + AsyncWrite`: poll a reading,
//! zero, tare, wait for a stable weight, and detect a Toledo 8217 by its echo
//! mode. Every request has a timeout: silence means unhealthy.

use super::protocol::{self, ParseError, Reading, ScaleProtocol, SicsReply};
use serde::{Deserialize, Serialize};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// A protocol's frame parser: reading and bytes consumed.
type FrameParser = fn(&[u8]) -> Result<(Reading, usize), ParseError>;

/// Per-scale settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScaleConfig {
    /// Protocol.
    pub protocol: ScaleProtocol,
    /// Reply timeout (the heartbeat: no reply in this time = unhealthy).
    pub reply_timeout_ms: u64,
    /// Poll interval of the device manager's heartbeat.
    pub poll_interval_ms: u64,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        Self {
            protocol: ScaleProtocol::Toledo8217,
            reply_timeout_ms: 1000,
            poll_interval_ms: 500,
        }
    }
}

/// Why a scale request failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// Nothing in time: unplugged, powered off or wrong settings.
    #[error("scale did not answer in time")]
    NoReply,
    /// No stable weight before the deadline.
    #[error("weight did not become stable in time")]
    NotStable,
    /// Bad bytes or a refused command.
    #[error(transparent)]
    Protocol(#[from] ParseError),
    /// The command does not exist in this protocol (CAS only streams).
    #[error("{0} is not supported by this scale protocol")]
    Unsupported(&'static str),
    /// Connection failed.
    #[error("scale I/O: {0}")]
    Io(#[from] io::Error),
}

/// A scale connection.
#[derive(Debug)]
pub struct Scale<T> {
    io: T,
    config: ScaleConfig,
    buf: Vec<u8>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Scale<T> {
    /// Wraps a connection.
    pub fn new(io: T, config: ScaleConfig) -> Self {
        Self {
            io,
            config,
            buf: Vec::new(),
        }
    }

    async fn fill(&mut self) -> Result<(), ScaleError> {
        let mut chunk = [0u8; 128];
        let n = self.io.read(&mut chunk).await?;
        if n == 0 {
            return Err(
                io::Error::new(io::ErrorKind::UnexpectedEof, "scale connection closed").into(),
            );
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ScaleError> {
        self.buf.clear();
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Reads a framed reply with `parse`, resynchronising past garbage.
    async fn frame(&mut self, parse: FrameParser, sync: u8) -> Result<Reading, ScaleError> {
        loop {
            match parse(&self.buf) {
                Ok((r, used)) => {
                    self.buf.drain(..used);
                    return Ok(r);
                }
                Err(ParseError::Incomplete) => self.fill().await?,
                Err(e) => {
                    tracing::warn!(error = %e, "scale: skipping malformed bytes");
                    let skip = self
                        .buf
                        .iter()
                        .skip(1)
                        .position(|&b| b == sync)
                        .map_or(self.buf.len(), |p| p + 1);
                    self.buf.drain(..skip);
                    if self.buf.is_empty() {
                        return Err(e.into());
                    }
                }
            }
        }
    }

    async fn sics_line(&mut self) -> Result<SicsReply, ScaleError> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&line[..end]).into_owned();
                return Ok(protocol::parse_sics(&text)?);
            }
            self.fill().await?;
        }
    }

    async fn sics(&mut self, cmd: &str) -> Result<SicsReply, ScaleError> {
        self.send(format!("{cmd}\r\n").as_bytes()).await?;
        self.with_timeout_sics().await
    }

    async fn with_timeout_sics(&mut self) -> Result<SicsReply, ScaleError> {
        let d = Duration::from_millis(self.config.reply_timeout_ms);
        tokio::time::timeout(d, self.sics_line())
            .await
            .map_err(|_| ScaleError::NoReply)?
    }

    /// Polls one reading (Toledo `W`, MT-SICS `SI`, CAS: the next frame).
    pub async fn read(&mut self) -> Result<Reading, ScaleError> {
        let d = Duration::from_millis(self.config.reply_timeout_ms);
        match self.config.protocol {
            ScaleProtocol::Toledo8217 => {
                self.send(b"W").await?;
                tokio::time::timeout(d, self.frame(protocol::parse_toledo, 0x02))
                    .await
                    .map_err(|_| ScaleError::NoReply)?
            }
            ScaleProtocol::MtSics => match self.sics("SI").await? {
                SicsReply::Weight(r) => Ok(r),
                other => Err(ParseError::Malformed(format!("unexpected {other:?}")).into()),
            },
            ScaleProtocol::Cas => {
                // Continuous output: drop what is buffered and take the next whole frame.
                self.buf.clear();
                let frame = async {
                    loop {
                        self.fill().await?;
                        if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                            self.buf.drain(..=p);
                            break;
                        }
                    }
                    self.frame(protocol::parse_cas, b'S').await
                };
                tokio::time::timeout(d, frame)
                    .await
                    .map_err(|_| ScaleError::NoReply)?
            }
        }
    }

    /// Zeroes the scale.
    pub async fn zero(&mut self) -> Result<(), ScaleError> {
        match self.config.protocol {
            ScaleProtocol::Toledo8217 => self.send(b"Z").await,
            ScaleProtocol::MtSics => self.sics("Z").await.map(|_| ()),
            ScaleProtocol::Cas => Err(ScaleError::Unsupported("zero")),
        }
    }

    /// Tares the current weight (`clear` removes the tare; Toledo `C`).
    pub async fn tare(&mut self, clear: bool) -> Result<(), ScaleError> {
        match (self.config.protocol, clear) {
            (ScaleProtocol::Toledo8217, false) => self.send(b"T").await,
            (ScaleProtocol::Toledo8217, true) => self.send(b"C").await,
            (ScaleProtocol::MtSics, false) => self.sics("T").await.map(|_| ()),
            (ScaleProtocol::MtSics, true) => Err(ScaleError::Unsupported("clear tare")),
            (ScaleProtocol::Cas, _) => Err(ScaleError::Unsupported("tare")),
        }
    }

    /// Polls until a stable weight or `timeout`.
    pub async fn await_stable(&mut self, timeout: Duration) -> Result<i64, ScaleError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ScaleError::NotStable);
            }
            let r = tokio::time::timeout(left, self.read())
                .await
                .map_err(|_| ScaleError::NotStable)?;
            match r {
                Ok(Reading {
                    milligrams: Some(mg),
                    stable: true,
                    over_capacity: false,
                    ..
                }) => return Ok(mg),
                Ok(_) | Err(ScaleError::Protocol(ParseError::Refused(_))) => {
                    tokio::time::sleep(Duration::from_millis(50).min(left)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Toledo 8217 detection (as the Odoo IoT box does): `E` turns echo mode
    /// on, the scale echoes "hello", `F` turns it off again.
    pub async fn detect_toledo(&mut self) -> Result<bool, ScaleError> {
        self.send(b"Ehello").await?;
        let d = Duration::from_millis(self.config.reply_timeout_ms);
        let echo = async {
            while !self.buf.windows(5).any(|w| w == b"hello") {
                self.fill().await?;
            }
            Ok(())
        };
        let echoed = tokio::time::timeout(d, echo)
            .await
            .unwrap_or(Err(ScaleError::NoReply));
        self.send(b"F").await?;
        match echoed {
            Ok(()) => Ok(true),
            Err(ScaleError::NoReply) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
