//! `[notifications]` in the cloud's configuration: where links in messages point, the SMTP
//! server e-mails go through, the push provider's webhook, and how sends are retried. Kept
//! beside the sender so `config.rs` only names the section.

use crate::payments::gateway::stripe::Secret;

/// How notifications are delivered. Without `[notifications.smtp]` e-mails wait in their
/// outboxes (and are sent once it is configured); without `[notifications.webhook]` push
/// webhooks are skipped.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Where customers reach the web app, for the links in messages (`{public_url}/#/orders/…`);
    /// the cloud's own listener (`http://{listen}`) when unset.
    pub public_url: Option<String>,
    pub smtp: Option<SmtpConfig>,
    pub webhook: Option<WebhookConfig>,
    pub retry: RetryConfig,
}

/// The SMTP server e-mails are handed to.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// 25 without TLS, 587 with STARTTLS, 465 with TLS when unset.
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// The sender, `FlashKart <orders@example.com>` or a bare address.
    pub from: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Longest one SMTP conversation may take, in milliseconds.
    #[serde(default = "default_smtp_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_smtp_timeout_ms() -> u64 {
    10_000
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP: only for a relay on the same host or network (and the tests).
    None,
    /// Plain connection upgraded with STARTTLS, which the server must offer.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// The push provider's endpoint: each notification is POSTed there, signed with `secret`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    /// Longest one delivery may take, in milliseconds.
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_webhook_timeout_ms() -> u64 {
    10_000
}

/// Retries of a failed send: `base_ms`, then twice as long each time (at most an hour), up
/// to `max_attempts` sends in all; then the notification is given up as failed.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    pub base_ms: u64,
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_ms: 2_000,
            max_attempts: 10,
        }
    }
}

impl NotificationsConfig {
    /// Refuses what would only fail at the first send: a URL that is not http(s), a sender
    /// that is not an address, credentials without both halves, no attempt at all.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.public_url
            && !is_http_url(url)
        {
            return Err(format!(
                "notifications.public_url must start with http:// or https://: {url:?}"
            ));
        }
        if let Some(smtp) = &self.smtp {
            if smtp.host.trim().is_empty() {
                return Err("notifications.smtp.host is empty".into());
            }
            smtp.from.parse::<lettre::message::Mailbox>().map_err(|e| {
                format!(
                    "notifications.smtp.from {:?} is not an address: {e}",
                    smtp.from
                )
            })?;
            if smtp.username.is_some() != smtp.password.is_some() {
                return Err(
                    "notifications.smtp: give both username and password, or neither".into(),
                );
            }
            if smtp.timeout_ms == 0 {
                return Err("notifications.smtp.timeout_ms must be above 0".into());
            }
        }
        if let Some(webhook) = &self.webhook {
            if !is_http_url(&webhook.url) {
                return Err(format!(
                    "notifications.webhook.url must start with http:// or https://: {:?}",
                    webhook.url
                ));
            }
            if webhook.secret.expose().len() < 16 {
                return Err("notifications.webhook.secret must be at least 16 bytes".into());
            }
            if webhook.timeout_ms == 0 {
                return Err("notifications.webhook.timeout_ms must be above 0".into());
            }
        }
        if self.retry.max_attempts == 0 || self.retry.base_ms == 0 {
            return Err("notifications.retry: base_ms and max_attempts must be above 0".into());
        }
        Ok(())
    }
}

fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_the_field_named() {
        let parse = |text: &str| toml::from_str::<NotificationsConfig>(text).map(|c| c.validate());
        assert_eq!(parse("").ok(), Some(Ok(())));
        let ok = "[smtp]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\nfrom = \"FlashKart <orders@example.com>\"\n";
        assert_eq!(parse(ok).ok(), Some(Ok(())));
        let refused = |text: &str, field: &str| {
            let error = parse(text).expect("parses").expect_err(text);
            assert!(error.contains(field), "{error}");
        };
        refused("public_url = \"ftp://x\"", "public_url");
        refused("[smtp]\nhost = \"h\"\nfrom = \"not an address\"", "from");
        refused(
            "[smtp]\nhost = \"h\"\nfrom = \"a@example.com\"\nusername = \"u\"",
            "username and password",
        );
        refused(
            "[webhook]\nurl = \"http://x\"\nsecret = \"short\"",
            "secret",
        );
        refused("[retry]\nmax_attempts = 0", "retry");
        assert!(parse("[smtp]\nhost = \"h\"\nfrom = \"a@example.com\"\ntls = \"ssl\"").is_err());
    }
}
