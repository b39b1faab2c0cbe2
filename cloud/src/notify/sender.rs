//! The sender: one task draining every outbox. It wakes when a transaction that enqueued has
//! committed, when the earliest retry falls due, and at least every [`IDLE_POLL`] as a
//! backstop; reads at most [`BATCH`] due rows of an outbox at a time (bounded memory however
//! long the backlog); and sends them one after another, so a slow server delays messages but
//! never lets them pile up in memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::OptionalExtension;
use tokio_util::sync::CancellationToken;

use super::config::NotificationsConfig;
use super::email::{EmailError, Mailer};
use super::outbox::{Outbox, Row};
use super::{Channel, Kind, render, webhook};
use crate::metrics::{Metrics, NotificationLabels};
use crate::projection::Backend;

/// Due rows read from one outbox per round.
const BATCH: usize = 32;
/// Longest sleep without a wake-up: an enqueue whose wake-up was missed waits at most this.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// Longest wait between two attempts, however many failed.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Added to the longest send a configuration allows before a row still `sending` in a shared
/// outbox counts as left by a dead instance: room for a paused process and clock skew.
const SEND_MARGIN: Duration = Duration::from_secs(60);

/// The databases with an outbox, and the two the recipient is looked up in.
#[derive(Debug, Clone)]
pub struct Outboxes {
    /// The read model: order confirmed, lines short or substituted, picked up, delivered,
    /// cancelled; also where an order's customer is found. On PostgreSQL it writes HQ's
    /// outbox table (one database), which is then drained once, as HQ's.
    pub readmodel: crate::projection::Projection,
    /// `payments.db`: refunds ([`crate::payments::Payments::outbox`]). `None` when payments
    /// are on PostgreSQL: they write HQ's outbox table there, drained once, as HQ's.
    pub payments: Option<Outbox>,
    /// HQ (`hq.db` or PostgreSQL): password resets; also where a customer's e-mail is found.
    pub hq: crate::hq::Hq,
}

/// Drains the outboxes (see the module doc of `notify`).
#[derive(Debug)]
pub struct Sender {
    outboxes: Outboxes,
    /// The outboxes by name, in the order they are drained: each table once.
    sources: Vec<(&'static str, Outbox)>,
    config: NotificationsConfig,
    public_url: String,
    mailer: Option<Mailer>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

/// How one attempt at a row ended.
enum Outcome {
    Sent,
    /// Nobody to send it to; never retried.
    Skipped(String),
    /// Someone else moved the row on (it was not pending any more).
    NotClaimed,
    /// Not sent; retried unless it was the last attempt. `claimed`: an attempt was used.
    Failed {
        error: String,
        claimed: bool,
    },
}

impl Sender {
    pub fn new(
        outboxes: Outboxes,
        config: NotificationsConfig,
        public_url: String,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        config.validate()?;
        let mailer = config.smtp.as_ref().map(Mailer::new).transpose()?;
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| format!("notifications: HTTP client: {e}"))?;
        let mut sources = Vec::with_capacity(3);
        if let Backend::Sqlite(db) = outboxes.readmodel.backend() {
            sources.push(("readmodel", Outbox::Sqlite(db.clone())));
        }
        if let Some(payments) = &outboxes.payments {
            sources.push(("payments", payments.clone()));
        }
        sources.push(("hq", outboxes.hq.outbox()));
        Ok(Self {
            outboxes,
            sources,
            config,
            public_url,
            mailer,
            http,
            metrics,
        })
    }

    /// Sends until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut woken = super::enqueued().subscribe();
        self.recover(true).await;
        let mut recovered = tokio::time::Instant::now();
        // Without SMTP e-mails stay pending: configuring it later sends them.
        let channels: &[Channel] = if self.mailer.is_some() {
            &[Channel::Email, Channel::Webhook]
        } else {
            tracing::warn!(
                "no [notifications.smtp]: e-mail notifications wait in their outboxes until one is configured"
            );
            &[Channel::Webhook]
        };
        loop {
            woken.borrow_and_update();
            // Another instance's crash leaves rows `sending` in a shared outbox; nothing here
            // restarts to settle them, so they are looked for as often as the idle poll.
            if recovered.elapsed() >= IDLE_POLL {
                self.recover(false).await;
                recovered = tokio::time::Instant::now();
            }
            let mut full = false;
            for (name, db) in &self.sources {
                let now = crate::clock::now_rfc3339();
                let rows = match db.due(now, channels, BATCH).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        tracing::error!(outbox = name, %error, "reading the outbox");
                        continue;
                    }
                };
                full |= rows.len() >= BATCH;
                for row in rows {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    self.deliver(name, db, row).await;
                }
            }
            let next = self.observe(channels).await;
            if full {
                continue;
            }
            let sleep = next
                .and_then(|at| crate::clock::parse(&at))
                .map(|at| {
                    let wait = at - crate::clock::now();
                    Duration::try_from(wait).unwrap_or(Duration::ZERO)
                })
                .unwrap_or(IDLE_POLL)
                .min(IDLE_POLL);
            tokio::select! {
                _ = woken.changed() => {}
                () = tokio::time::sleep(sleep) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Settles what a crash left `sending` (see `Outbox::recover`): at start every row of this
    /// instance's own outboxes, and rows of shared outboxes claimed longer ago than any send
    /// may take (then again periodically, for instances that died meanwhile).
    async fn recover(&self, at_start: bool) {
        for (name, db) in &self.sources {
            let now = crate::clock::now();
            let claimed_before = if db.shared() {
                Some(crate::clock::rfc3339(now - self.longest_send()))
            } else if at_start {
                None
            } else {
                continue;
            };
            match db.recover(crate::clock::rfc3339(now), claimed_before).await {
                Ok(kinds) => {
                    for kind in kinds {
                        tracing::warn!(
                            outbox = name,
                            kind,
                            "an e-mail was being sent when the cloud stopped: it may or may not have arrived, and is not sent again"
                        );
                        self.count(Channel::Email, &kind, "uncertain");
                    }
                }
                Err(error) => tracing::error!(outbox = name, %error, "recovering the outbox"),
            }
        }
    }

    /// The longest one send may take under this configuration, with a margin.
    fn longest_send(&self) -> Duration {
        let smtp = self.config.smtp.as_ref().map_or(0, |smtp| smtp.timeout_ms);
        let webhook = self
            .config
            .webhook
            .as_ref()
            .map_or(0, |hook| hook.timeout_ms);
        Duration::from_millis(smtp.max(webhook)) + SEND_MARGIN
    }

    /// Sets the pending gauges; returns when the next retry falls due.
    async fn observe(&self, channels: &'static [Channel]) -> Option<String> {
        let mut waiting: BTreeMap<String, i64> = BTreeMap::new();
        let mut next: Option<String> = None;
        for (name, db) in &self.sources {
            let read = db.observe(channels).await;
            match read {
                Ok((counts, due)) => {
                    for (channel, n) in counts {
                        let total = waiting.entry(channel).or_default();
                        *total = total.saturating_add(n);
                    }
                    next = match (next, due) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Err(error) => tracing::error!(outbox = name, %error, "reading the outbox"),
            }
        }
        for channel in [Channel::Email, Channel::Webhook] {
            let n = waiting.get(channel.as_str()).copied().unwrap_or(0);
            self.metrics
                .notifications_pending
                .get_or_create(&crate::metrics::ChannelLabels {
                    channel: channel.as_str().into(),
                })
                .set(n);
        }
        next
    }

    /// One attempt at `row`, and its outcome written down.
    async fn deliver(&self, name: &'static str, db: &Outbox, row: Row) {
        let outcome = self.attempt(db, &row).await;
        let now = crate::clock::now();
        let now_text = crate::clock::rfc3339(now);
        let (id, kind, channel) = (row.id.clone(), row.kind_text.as_str(), row.channel);
        let (state, error, retry_at) = match outcome {
            Outcome::NotClaimed => return,
            Outcome::Sent => {
                tracing::info!(
                    outbox = name,
                    id,
                    kind,
                    channel = channel.as_str(),
                    "notification sent"
                );
                self.count(channel, kind, "sent");
                ("sent", None, None)
            }
            Outcome::Skipped(reason) => {
                tracing::info!(
                    outbox = name,
                    id,
                    kind,
                    channel = channel.as_str(),
                    reason,
                    "notification skipped"
                );
                self.count(channel, kind, "skipped");
                ("skipped", Some(reason), None)
            }
            Outcome::Failed { error, claimed } => {
                let attempts = if claimed {
                    row.attempts.saturating_add(1)
                } else {
                    row.attempts
                };
                if claimed && attempts >= self.config.retry.max_attempts {
                    tracing::warn!(outbox = name, id, kind, channel = channel.as_str(), attempts, %error, "notification given up");
                    self.count(channel, kind, "failed");
                    ("failed", Some(error), None)
                } else {
                    let wait = backoff(self.config.retry.base_ms, attempts.max(1));
                    let at = now + wait;
                    tracing::info!(outbox = name, id, kind, channel = channel.as_str(), attempts, %error, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "notification not sent; retrying");
                    ("pending", Some(error), Some(crate::clock::rfc3339(at)))
                }
            }
        };
        let written = db.settle(id, state, error, retry_at, now_text).await;
        if let Err(error) = written {
            // A sent row stays `sending`: after a restart it is uncertain, never sent twice.
            tracing::error!(outbox = name, %error, state, "recording a notification's outcome");
        }
    }

    async fn attempt(&self, db: &Outbox, row: &Row) -> Outcome {
        let unclaimed = |error: String| Outcome::Failed {
            error,
            claimed: false,
        };
        let Some(kind) = row.kind else {
            return Outcome::Skipped(format!("unknown kind {:?}", row.kind_text));
        };
        match row.channel {
            Channel::Email => {
                let Some(mailer) = &self.mailer else {
                    return unclaimed("no SMTP server configured".into());
                };
                let message = match self.email_for(mailer, kind, row).await {
                    Ok(Ok(message)) => message,
                    Ok(Err(reason)) => return Outcome::Skipped(reason),
                    Err(error) => return unclaimed(error),
                };
                if !self.claim(db, row).await {
                    return Outcome::NotClaimed;
                }
                match mailer.send(message).await {
                    Ok(()) => Outcome::Sent,
                    Err(error) => Outcome::Failed {
                        error: error.to_string(),
                        claimed: true,
                    },
                }
            }
            Channel::Webhook => {
                let Some(config) = &self.config.webhook else {
                    return Outcome::Skipped("no webhook configured".into());
                };
                let customer = match self.customer_of(row).await {
                    Ok(customer) => customer,
                    Err(error) => return unclaimed(error),
                };
                let body = webhook::body(row, customer.as_deref());
                if !self.claim(db, row).await {
                    return Outcome::NotClaimed;
                }
                match webhook::post(&self.http, config, &row.id, body).await {
                    Ok(()) => Outcome::Sent,
                    Err(error) => Outcome::Failed {
                        error: error.to_string(),
                        claimed: true,
                    },
                }
            }
        }
    }

    /// Claims the row (`sending`, committed) right before it goes on the wire.
    async fn claim(&self, db: &Outbox, row: &Row) -> bool {
        crate::faults::crash_point("notify:before-send");
        let (id, now) = (row.id.clone(), crate::clock::now_rfc3339());
        match db.claim(id, now).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(id = row.id, %error, "claiming a notification");
                false
            }
        }
    }

    /// The e-mail for `row`: `Ok(Err(reason))` when there is no one to send it to, `Err` when
    /// that could not be found out (retried).
    async fn email_for(
        &self,
        mailer: &Mailer,
        kind: Kind,
        row: &Row,
    ) -> Result<Result<lettre::Message, String>, String> {
        if kind == Kind::PasswordReset {
            let expired = row.payload["expires_at"]
                .as_str()
                .and_then(crate::clock::parse)
                .is_none_or(|at| at <= crate::clock::now());
            if expired {
                return Ok(Err("the reset link expired before it could be sent".into()));
            }
        }
        let Some(customer_id) = self.customer_of(row).await? else {
            return Ok(Err("no customer for this order".into()));
        };
        let address = self
            .outboxes
            .hq
            .account_email(&customer_id)
            .await
            .map_err(|e| e.to_string())?;
        let Some(address) = address else {
            return Ok(Err(format!("customer {customer_id} has no e-mail account")));
        };
        let text = render::email(
            kind,
            row.order_id.as_deref(),
            &row.payload,
            &self.public_url,
        );
        match mailer.message(&row.id, &address, text) {
            Ok(message) => Ok(Ok(message)),
            Err(EmailError::Address(reason)) => Ok(Err(reason)),
            Err(error) => Err(error.to_string()),
        }
    }

    /// The row's customer: its own, or its order's.
    async fn customer_of(&self, row: &Row) -> Result<Option<String>, String> {
        if let Some(customer) = &row.customer_id {
            return Ok(Some(customer.clone()));
        }
        let Some(order_id) = row.order_id.clone() else {
            return Ok(None);
        };
        match self.outboxes.readmodel.backend() {
            Backend::Sqlite(db) => db
                .read(move |conn| {
                    conn.prepare_cached("SELECT customer_id FROM rm_orders WHERE id = ?1")?
                        .query_row([order_id], |r| r.get::<_, Option<String>>(0))
                        .optional()
                        .map(Option::flatten)
                        .map_err(flashkart_sync::Error::from)
                })
                .await
                .map_err(|e| e.to_string()),
            Backend::Postgres(pg) => {
                let client = pg.client().await.map_err(|e| e.to_string())?;
                let row = client
                    .query_opt(
                        "SELECT customer_id FROM rm_orders WHERE id = $1",
                        &[&order_id],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(row.and_then(|row| row.get::<_, Option<String>>(0)))
            }
        }
    }

    fn count(&self, channel: Channel, kind: &str, outcome: &str) {
        self.metrics
            .notifications
            .get_or_create(&NotificationLabels {
                channel: channel.as_str().into(),
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }
}

/// The wait after `attempts` failed sends: `base_ms` doubled for each one after the first, at
/// most [`MAX_BACKOFF`].
fn backoff(base_ms: u64, attempts: u32) -> Duration {
    let factor = 1_u64
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_millis(base_ms.saturating_mul(factor)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1_000, 1), Duration::from_secs(1));
        assert_eq!(backoff(1_000, 2), Duration::from_secs(2));
        assert_eq!(backoff(1_000, 5), Duration::from_secs(16));
        assert_eq!(backoff(1_000, 40), MAX_BACKOFF);
        assert_eq!(backoff(1_000, u32::MAX), MAX_BACKOFF);
        assert_eq!(backoff(u64::MAX, 3), MAX_BACKOFF);
    }
}
