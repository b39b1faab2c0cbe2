//! The scanner read loop over any `AsyncRead`: frames lines, decodes them,
//! logs every refused line with `tracing` and yields only valid scans.

use super::decode::{ScanContext, ScanEvent, decode_scan};
use super::framing::LineFramer;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Per-scanner settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScannerConfig {
    /// A prefix the scanner is programmed to send before each scan.
    pub prefix: Option<String>,
    /// Longest accepted line in bytes.
    pub max_line: usize,
    /// Decoding context (year, variable-measure layouts).
    pub decode: ScanContext,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        Self {
            prefix: None,
            max_line: 4096,
            decode: ScanContext::default(),
        }
    }
}

/// Reads scans from a stream.
#[derive(Debug)]
pub struct ScannerReader<R> {
    reader: R,
    framer: LineFramer,
    ctx: ScanContext,
    label: String,
    ready: VecDeque<ScanEvent>,
}

impl<R: AsyncRead + Unpin> ScannerReader<R> {
    /// Wraps `reader`; `label` names the device in logs.
    pub fn new(reader: R, config: &ScannerConfig, label: impl Into<String>) -> Self {
        Self {
            reader,
            framer: LineFramer::new(config.prefix.clone(), config.max_line),
            ctx: config.decode.clone(),
            label: label.into(),
            ready: VecDeque::new(),
        }
    }

    /// The next valid scan; `Ok(None)` at end of stream (device gone).
    /// Invalid lines are logged and skipped.
    pub async fn next_scan(&mut self) -> io::Result<Option<ScanEvent>> {
        let mut buf = [0u8; 512];
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(Some(ev));
            }
            let n = self.reader.read(&mut buf).await?;
            if n == 0 {
                let dropped = self.framer.reset();
                if dropped > 0 {
                    tracing::warn!(device = %self.label, dropped, "partial scan dropped at end of stream");
                }
                return Ok(None);
            }
            for line in self.framer.push(&buf[..n]) {
                match line
                    .map_err(|e| e.to_string())
                    .and_then(|l| decode_scan(&l, &self.ctx).map_err(|e| e.to_string()))
                {
                    Ok(ev) => self.ready.push_back(ev),
                    Err(error) => tracing::warn!(device = %self.label, %error, "scan refused"),
                }
            }
        }
    }
}

/// Convenience loop: calls `on_scan` for every valid scan until the stream ends.
pub async fn read_scans<R: AsyncRead + Unpin>(
    reader: R,
    config: &ScannerConfig,
    label: &str,
    mut on_scan: impl FnMut(ScanEvent),
) -> io::Result<()> {
    let mut r = ScannerReader::new(reader, config, label);
    while let Some(ev) = r.next_scan().await? {
        on_scan(ev);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn pipe_yields_only_valid_scans() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            tx.write_all(b"\xff\x00garbage\r\n]C0FK-1\r\n]E09506000134352")
                .await?;
            tx.write_all(b"\r\n]C1badAI\n").await?;
            tx.write_all(b"]C0partial").await?;
            io::Result::Ok(())
        });
        let mut got = Vec::new();
        read_scans(rx, &ScannerConfig::default(), "s1", |e| got.push(e))
            .await
            .expect("read");
        writer.await.expect("join").expect("write");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].text(), Some("FK-1"));
        assert_eq!(got[1].gtin(), Some("09506000134352"));
    }
}
