//! E-mail over SMTP (lettre): the transport `[notifications.smtp]` describes, and the message
//! for an outbox row. The Message-ID is derived from the row's id, so a message that did go
//! out twice (it cannot through this sender, but a relay may retry) is recognisably one.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{SmtpConfig, SmtpTls};
use super::render;

/// Why an e-mail was not handed over.
#[derive(Debug, thiserror::Error)]
pub(super) enum EmailError {
    /// The recipient or sender cannot be written as an address (never retried).
    #[error("address: {0}")]
    Address(String),
    /// Connection refused, TLS failed, the server answered 4xx or 5xx, timed out (retried).
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// The SMTP server and who e-mails come from.
#[derive(Debug, Clone)]
pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub(super) fn new(config: &SmtpConfig) -> Result<Self, String> {
        let host = config.host.as_str();
        let builder = match config.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| format!("notifications.smtp: {e}"))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| format!("notifications.smtp: {e}"))?,
        };
        let mut builder = builder.timeout(Some(Duration::from_millis(config.timeout_ms)));
        if let Some(port) = config.port {
            builder = builder.port(port);
        }
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let from = config
            .from
            .parse()
            .map_err(|e| format!("notifications.smtp.from: {e}"))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// The message for outbox row `id` to `to`.
    pub(super) fn message(
        &self,
        id: &str,
        to: &str,
        email: render::Email,
    ) -> Result<Message, EmailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| EmailError::Address(format!("{to:?}: {e}")))?;
        let domain = self.from.email.domain().to_owned();
        Message::builder()
            .message_id(Some(format!("<{id}@{domain}>")))
            .from(self.from.clone())
            .to(to)
            .subject(email.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(email.body)
            .map_err(|e| EmailError::Address(e.to_string()))
    }

    /// Hands `message` to the server: `Ok` once it answered 250 to the message's data.
    pub(super) async fn send(&self, message: Message) -> Result<(), EmailError> {
        self.transport.send(message).await?;
        Ok(())
    }
}
