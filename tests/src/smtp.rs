//! aiosmtpd (PyPI, run by `scripts/smtp-sink`) as the SMTP server of the notification tests:
//! a real SMTP implementation on a free port that hands every message it accepted to the test,
//! instead of a mock of what we think a mail server does.
//!
//! [`SmtpSink::wait_for`] awaits messages as they arrive (the sink prints each one before it
//! answers 250), so tests never sleep and guess. Put a [`crate::relay::Relay`] in front to
//! stage an outage without losing what arrived.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Time for the first start: `scripts/smtp-sink` makes a virtualenv and installs aiosmtpd.
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope's sender and recipients (SMTP `MAIL FROM`, `RCPT TO`).
    pub from: String,
    pub to: Vec<String>,
    /// The message as received: headers, a blank line, the body.
    pub data: String,
}

impl Mail {
    /// The first header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let head = head.split("\n\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = value.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }

    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// The body as text, quoted-printable decoded if it was sent so.
    pub fn body(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .or_else(|| self.data.split_once("\n\n"))
            .map_or("", |(_, body)| body);
        let quoted = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
        if quoted {
            decode_quoted_printable(body)
        } else {
            body.replace("\r\n", "\n")
        }
    }
}

/// RFC 2045 quoted-printable: `=\r\n` is a soft break, `=XX` a byte.
fn decode_quoted_printable(text: &str) -> String {
    let text = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

/// A running aiosmtpd. Killed when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: watch::Receiver<Vec<Mail>>,
    _child: Child,
}

impl SmtpSink {
    /// Installs aiosmtpd if needed, starts it on a free port and waits until it listens.
    pub async fn start() -> Self {
        let script = crate::workspace_root().join("scripts/smtp-sink");
        let mut child = Command::new(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("smtp-sink stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .expect("smtp-sink did not start in time")
            .expect("smtp-sink stdout")
            .expect("smtp-sink exited before listening");
        let addr: SocketAddr = first
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from smtp-sink: {first:?}"));
        let (sender, mails) = watch::channel(Vec::new());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let value: serde_json::Value = match serde_json::from_str(&line) {
                    Ok(value) => value,
                    Err(e) => panic!("smtp-sink printed {line:?}: {e}"),
                };
                let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
                let mail = Mail {
                    from: text("from"),
                    to: value["to"]
                        .as_array()
                        .map(|to| {
                            to.iter()
                                .filter_map(|t| t.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    data: text("data"),
                };
                sender.send_modify(|mails| mails.push(mail));
            }
        });
        Self {
            addr,
            mails,
            _child: child,
        }
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.borrow().clone()
    }

    /// Waits (at most `limit`) until `done` holds for the messages received; returns them.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[Mail]) -> bool,
    ) -> Vec<Mail> {
        let mut mails = self.mails.clone();
        let waited = tokio::time::timeout(limit, mails.wait_for(|m| done(m))).await;
        match waited {
            Ok(Ok(mails)) => mails.clone(),
            Ok(Err(_)) => panic!("{what}: the SMTP sink stopped"),
            Err(_) => panic!("{what}: not within {limit:?}; received {:#?}", self.mails()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_soft_breaks_and_bytes_are_decoded() {
        assert_eq!(
            decode_quoted_printable("http://x/#/reset/ab=\r\ncd and =3D sign\r\n"),
            "http://x/#/reset/abcd and = sign\n"
        );
    }
}
