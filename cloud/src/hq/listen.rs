//! How an instance on a shared PostgreSQL notices what other instances change in HQ's records.
//!
//! Each instance keeps the store profiles in memory (routing reads them for every order) and
//! bumps its `changed` watch when HQ's records change (the dashboard rebuilds). A write on
//! one instance refreshes that instance's copy at once; the others learn of it through
//! PostgreSQL's LISTEN/NOTIFY: the writing transaction calls `pg_notify` on [`CHANNEL`] (so
//! the notice goes out exactly when the write commits, and never for a rolled-back one), and
//! every instance keeps one connection LISTENing, re-reading the profiles when told.
//!
//! Why LISTEN/NOTIFY and not a version row checked before use: `stores()` is read on every
//! order from memory, without a round trip, and the dashboard waits on the watch rather than
//! asking; a notification keeps both as they are and reaches the other instances within
//! milliseconds, where polling a version row would either cost a query per order or lag by
//! its period. Notifications are not stored, so one sent while the listening connection is
//! down is lost: the listener therefore re-reads everything each time it (re)connects, after
//! its LISTEN is in place, and reconnects with a backoff whenever the connection fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::Hq;
use crate::CloudError;
use crate::postgres::Postgres;

/// The notification channel of HQ's changes.
const CHANNEL: &str = "flashkart_hq";
/// Waits between reconnection attempts: from the first to the longest.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What changed, as the notification's payload says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// A store profile (or its pause): the copy in memory is re-read.
    Stores,
    /// Another of HQ's records the dashboard shows (rider, coupon, rating).
    Records,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Stores => "stores",
            Change::Records => "records",
        }
    }
}

/// Tells the other instances about `change` when `tx` commits.
pub(super) async fn announce(
    tx: &tokio_postgres::Transaction<'_>,
    change: Change,
) -> Result<(), CloudError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &change.as_str()])
        .await?;
    Ok(())
}

/// Notices heard and not yet acted on.
#[derive(Debug, Default)]
struct Heard {
    stores: bool,
    records: bool,
    /// The connection ended.
    closed: bool,
}

/// Listens until `stop`, reconnecting after any failure.
pub(super) async fn follow(hq: Hq, postgres: Postgres, stop: CancellationToken) {
    let mut wait = RETRY_FIRST;
    loop {
        match listen(&hq, &postgres, &stop, &mut wait).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "HQ change listener lost its connection; reconnecting");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// One listening connection: `Ok` when stopped, `Err` when the connection failed.
async fn listen(
    hq: &Hq,
    postgres: &Postgres,
    stop: &CancellationToken,
    wait: &mut Duration,
) -> Result<(), CloudError> {
    let (client, mut connection) = postgres.dedicated().await?;
    // What the connection heard since the loop last looked: a few flags, however many notices
    // arrive, since any number of them needs one re-read.
    let heard = Arc::new(Mutex::new(Heard::default()));
    let wake = Arc::new(Notify::new());
    let (heard_by_driver, wake_loop) = (heard.clone(), wake.clone());
    // The connection's driver: it carries the client's queries and hands on notifications.
    let driver = tokio::spawn(async move {
        let note = |apply: &dyn Fn(&mut Heard)| {
            if let Ok(mut heard) = heard_by_driver.lock() {
                apply(&mut heard);
            }
            wake_loop.notify_one();
        };
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notice))) => {
                    if notice.payload() == Change::Stores.as_str() {
                        note(&|heard| heard.stores = true);
                    } else {
                        note(&|heard| heard.records = true);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::debug!(%error, "HQ change listener connection");
                    note(&|heard| heard.closed = true);
                    return;
                }
                None => {
                    note(&|heard| heard.closed = true);
                    return;
                }
            }
        }
    });
    let listened = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        // Whatever changed while nobody here listened.
        hq.reload_stores().await?;
        *wait = RETRY_FIRST;
        loop {
            tokio::select! {
                () = wake.notified() => {}
                () = stop.cancelled() => return Ok(()),
            }
            let now = heard
                .lock()
                .map(|mut heard| std::mem::take(&mut *heard))
                .unwrap_or_default();
            if now.stores {
                hq.reload_stores().await?;
            } else if now.records {
                hq.touched();
            }
            if now.closed {
                return Err(CloudError::Postgres(
                    "the listening connection closed".into(),
                ));
            }
        }
    };
    let result = listened.await;
    drop(client);
    driver.abort();
    result
}
