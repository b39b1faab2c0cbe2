//! Splits a scanner's byte stream into scans: one line each, terminated by
//! CR, LF or CRLF, optionally starting with a configured prefix. Oversized or
//! non-UTF-8 lines are reported and dropped whole, never cut into pieces.

/// Why a line was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Longer than the configured maximum.
    #[error("line longer than {max} bytes dropped")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// Bytes that are not UTF-8 (line noise, wrong baud rate).
    #[error("line is not UTF-8 ({len} bytes) dropped")]
    NotUtf8 {
        /// Line length.
        len: usize,
    },
    /// The configured prefix is missing.
    #[error("line does not start with the configured prefix {expected:?}")]
    MissingPrefix {
        /// The prefix.
        expected: String,
    },
}

/// Incremental line framer.
#[derive(Debug)]
pub struct LineFramer {
    prefix: Option<String>,
    max_len: usize,
    buf: Vec<u8>,
    overflow: bool,
    last_cr: bool,
}

impl LineFramer {
    /// A framer with an optional prefix and a maximum line length in bytes.
    pub fn new(prefix: Option<String>, max_len: usize) -> Self {
        Self {
            prefix,
            max_len,
            buf: Vec::new(),
            overflow: false,
            last_cr: false,
        }
    }

    /// Feeds bytes; returns every line completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<String, FrameError>> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' && self.last_cr {
                self.last_cr = false;
                continue;
            }
            self.last_cr = b == b'\r';
            if b == b'\r' || b == b'\n' {
                if let Some(line) = self.finish() {
                    out.push(line);
                }
            } else if self.buf.len() >= self.max_len {
                self.overflow = true;
            } else {
                self.buf.push(b);
            }
        }
        out
    }

    /// Drops a partial line (after a disconnect); returns how many bytes were dropped.
    pub fn reset(&mut self) -> usize {
        let n = self.buf.len();
        self.buf.clear();
        self.overflow = false;
        self.last_cr = false;
        n
    }

    fn finish(&mut self) -> Option<Result<String, FrameError>> {
        let buf = std::mem::take(&mut self.buf);
        if std::mem::take(&mut self.overflow) {
            return Some(Err(FrameError::TooLong { max: self.max_len }));
        }
        if buf.is_empty() {
            return None;
        }
        let len = buf.len();
        let line = match String::from_utf8(buf) {
            Ok(l) => l,
            Err(_) => return Some(Err(FrameError::NotUtf8 { len })),
        };
        Some(match &self.prefix {
            Some(p) => line
                .strip_prefix(p.as_str())
                .map(str::to_string)
                .ok_or_else(|| FrameError::MissingPrefix {
                    expected: p.clone(),
                }),
            None => Ok(line),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminators_and_split_reads() {
        let mut f = LineFramer::new(None, 64);
        assert!(f.push(b"]C0A").is_empty());
        assert_eq!(f.push(b"B\r"), vec![Ok("]C0AB".to_string())]);
        assert!(f.push(b"\n").is_empty(), "LF of a CRLF split across reads");
        assert_eq!(
            f.push(b"x\ny\r\nz\r"),
            vec![Ok("x".into()), Ok("y".into()), Ok("z".into())]
        );
        assert!(f.push(b"\r\n\n").is_empty(), "empty lines are skipped");
    }

    #[test]
    fn errors() {
        let mut f = LineFramer::new(Some("#".into()), 4);
        assert_eq!(f.push(b"#ab\n"), vec![Ok("ab".into())]);
        assert_eq!(
            f.push(b"ab\n"),
            vec![Err(FrameError::MissingPrefix {
                expected: "#".into()
            })]
        );
        assert_eq!(
            f.push(b"#abcdef\nok\r"),
            vec![
                Err(FrameError::TooLong { max: 4 }),
                Err(FrameError::MissingPrefix {
                    expected: "#".into()
                })
            ]
        );
        assert_eq!(
            f.push(b"\xff\xfe\n"),
            vec![Err(FrameError::NotUtf8 { len: 2 })]
        );
        f.push(b"#par");
        assert_eq!(f.reset(), 4);
    }
}
