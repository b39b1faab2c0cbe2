//! Notifications to customers (e-mail over SMTP, signed webhooks for a push provider), sent
//! from outboxes so that a notification exists exactly when the event that causes it does.
//!
//! Each database where such an event is committed (`readmodel.db`: an order confirmed or
//! confirmed partial (items short), a line substituted, a rider on the way, delivered, cancelled; `payments.db`: a refund;
//! HQ's database, `hq.db` or PostgreSQL: a password reset) has a `notify_outbox` table, and the event's own transaction
//! writes the notification into it with [`enqueue`]. So a crash can lose neither the event
//! without its notification nor the other way round, and nothing is sent for an event that
//! was rolled back. Every row has a natural key (kind, what it is about, channel): the same
//! event projected or applied again finds its row there and adds nothing.
//!
//! One sender (`sender.rs`) drains all outboxes. A row is claimed (`sending`, committed)
//! before it goes on the wire and marked `sent` after the server took it; a failed send is
//! retried with exponential backoff and given up (`failed`) after a bounded number of
//! attempts. A row still `sending` after a crash is ambiguous: an e-mail may or may not have
//! been accepted, and SMTP has no way to ask, so it becomes `uncertain` and is not sent again
//! (at most once in that window, counted by a metric); a webhook is sent again with the same
//! `FlashKart-Event-Id`, which the provider deduplicates. The recipient is resolved when the
//! row is sent (order → customer → account e-mail), so an address changed since counts.
//!
//! The parts: `outbox` (the table and its states), `render` (the e-mails' text), `email`
//! (SMTP), `webhook` (signing and posting), `sender` (the loop), `config` (`[notifications]`).

mod config;
mod email;
mod outbox;
mod render;
mod sender;
mod webhook;

pub use config::{NotificationsConfig, RetryConfig, SmtpConfig, SmtpTls, WebhookConfig};
pub use outbox::{Outbox, OutboxEntry, PG_SCHEMA, SCHEMA, enqueue, enqueue_postgres};
pub use sender::{Outboxes, Sender};

use std::sync::OnceLock;

use tokio::sync::watch;

/// What happened, as the outbox stores it (`kind`) and the webhook reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OrderConfirmed,
    ItemsShort,
    LineSubstituted,
    RiderOnTheWay,
    Delivered,
    Cancelled,
    Refunded,
    PasswordReset,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::OrderConfirmed,
        Kind::ItemsShort,
        Kind::LineSubstituted,
        Kind::RiderOnTheWay,
        Kind::Delivered,
        Kind::Cancelled,
        Kind::Refunded,
        Kind::PasswordReset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OrderConfirmed => "order_confirmed",
            Kind::ItemsShort => "items_short",
            Kind::LineSubstituted => "line_substituted",
            Kind::RiderOnTheWay => "rider_on_the_way",
            Kind::Delivered => "delivered",
            Kind::Cancelled => "cancelled",
            Kind::Refunded => "refunded",
            Kind::PasswordReset => "password_reset",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Where it goes: everything about an order by e-mail and to the push provider; a reset
    /// link by e-mail only (a push provider has no business holding it).
    fn channels(self) -> &'static [Channel] {
        match self {
            Kind::PasswordReset => &[Channel::Email],
            _ => &[Channel::Email, Channel::Webhook],
        }
    }
}

/// How a notification travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

/// A notification to enqueue with the event that causes it.
#[derive(Debug, Clone)]
pub struct Notification<'a> {
    pub kind: Kind,
    /// What it is about, unique per kind (an order id, `order/line`, a refund's key): the
    /// natural key that makes enqueueing it again a no-op.
    pub about: &'a str,
    pub order_id: Option<&'a str>,
    /// The customer when the causing transaction knows it; else found from the order when
    /// sent.
    pub customer_id: Option<&'a str>,
    /// What the message says beyond the kind (amounts, lines, a reset link's token).
    pub payload: serde_json::Value,
}

/// Bumped after a transaction that enqueued something has committed; every sender in the
/// process watches it. A process-wide signal because the enqueueing code lives in three
/// databases' write paths that know nothing of the sender; a sender woken for another cloud
/// in the same process (tests) only looks at its outboxes once more.
fn enqueued() -> &'static watch::Sender<u64> {
    static ENQUEUED: OnceLock<watch::Sender<u64>> = OnceLock::new();
    ENQUEUED.get_or_init(|| watch::Sender::new(0))
}

/// Wakes the senders: call after committing a transaction that may have enqueued (not inside
/// it, where the sender could look before the commit and miss the row).
pub fn wake() {
    enqueued().send_modify(|n| *n = n.wrapping_add(1));
}
