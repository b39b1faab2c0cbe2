//! The daemon's side of sync with the cloud: its config section, the client task, and the
//! inbox that turns rows arriving from the cloud into store work.
//!
//! The sync client (in `flashkart-sync`) only merges rows. What the store must *do* about them
//! lives here: a routed order whose rows arrived is reserved and queued (`orders::arrive`), a
//! cancellation the cloud requested is honoured (`orders::honour_cancel`), and new assignments
//! are offered to riders at once. Each order is handled in its own write, so one bad order
//! cannot hold up the others.

use std::sync::Arc;

use flashkart_sync::StoreDb;
use flashkart_sync::change_log;
use flashkart_sync::client::{self, ClientConfig, SyncStatus};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::error::Error;
use crate::events::Event;
use crate::riders::Riders;
use crate::work::orders;
use crate::work::trace::trace_id;

/// Starts the sync client and the inbox; both end with `shutdown`.
pub fn start(
    config: &ClientConfig,
    db: StoreDb,
    app: Arc<App>,
    riders: Option<Arc<Riders>>,
    shutdown: CancellationToken,
) -> Result<(watch::Receiver<SyncStatus>, tokio::task::JoinHandle<()>), Error> {
    let handle = client::spawn(config.clone(), db, shutdown.clone())
        .map_err(|e| Error::Config(format!("sync: {e}")))?;
    tracing::info!(cloud = %config.cloud_url, "syncing with the cloud");
    let status = handle.status.clone();
    let link = tokio::spawn(announce_link(
        app.clone(),
        handle.status.clone(),
        shutdown.clone(),
    ));
    let inbox = tokio::spawn(run_inbox(app, riders, handle.status.clone(), shutdown));
    let task = tokio::spawn(async move {
        if let Err(error) = handle.task.await {
            tracing::error!(%error, "the sync client task failed");
        }
        if let Err(error) = link.await {
            tracing::error!(%error, "the sync link announcer failed");
        }
        if let Err(error) = inbox.await {
            tracing::error!(%error, "the sync inbox task failed");
        }
    });
    Ok((status, task))
}

/// Tells the live stream each time the cloud link comes up or goes down: the tablets' offline
/// banner follows it without polling.
async fn announce_link(
    app: Arc<App>,
    mut status: watch::Receiver<SyncStatus>,
    shutdown: CancellationToken,
) {
    let mut online = status.borrow_and_update().online;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = status.changed() => if changed.is_err() { return },
        }
        let now = status.borrow_and_update().clone();
        if now.online != online {
            online = now.online;
            tracing::info!(
                link = if online { "up" } else { "down" },
                last_error = ?now.last_error,
                "cloud link changed"
            );
            app.hub.publish(vec![Event::Sync {
                seq: app.hub.next_seq(),
                online,
                last_error: now.last_error,
                last_success_unix_ms: now.last_success_unix_ms,
            }]);
        }
    }
}

async fn run_inbox(
    app: Arc<App>,
    riders: Option<Arc<Riders>>,
    mut status: watch::Receiver<SyncStatus>,
    shutdown: CancellationToken,
) {
    // Work left over from before a restart is handled first.
    let mut pulled = u64::MAX;
    // After a restore, store work waits for the cloud to send back what the old database wrote.
    let mut catch_up = crate::backup::CatchUp::after_restore(app.db.path());
    loop {
        let now = status.borrow_and_update().clone();
        let now_pulled = now.pulled_changes;
        if !catch_up.hold_back(&app, &now).await && now_pulled != pulled {
            pulled = now_pulled;
            if let Err(error) = process(&app).await {
                tracing::warn!(%error, "processing rows from the cloud");
            }
            if let Some(riders) = &riders {
                riders.roster_changed();
                riders.assignments_changed();
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = status.changed() => if changed.is_err() { return },
        }
    }
}

/// This store's own changes after `acked_db_version` (the last the cloud acknowledged): what
/// sync still has to push.
///
/// The client's own `lag_changes` is only recounted after a push the cloud answered, so while
/// the cloud is unreachable (or before the first session) it stays at 0 however many moves
/// wait; the status endpoint counts here instead. Until the first session of a run,
/// `acked_db_version` is 0 and the count includes changes an earlier run already pushed: an
/// upper bound, never an undercount.
pub fn unacked_changes(
    conn: &rusqlite::Connection,
    site: &[u8; 16],
    acked_db_version: i64,
) -> Result<u64, Error> {
    Ok(change_log::local_changes_after(
        conn,
        site,
        acked_db_version,
    )?)
}

/// Handles every order that arrived or was cancelled since the last look.
pub async fn process(app: &App) -> Result<(), Error> {
    let store_id = app.store_id.clone();
    let (arrived, cancelled) = app
        .read(move |conn| {
            let arrived = conn
                .prepare_cached(
                    "SELECT o.id FROM orders o
                     WHERE o.store_id = ?1 AND o.cancel_requested_at IS NULL
                       AND NOT EXISTS (SELECT 1 FROM order_progress p WHERE p.order_id = o.id)
                       AND EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id)
                     ORDER BY o.placed_at",
                )?
                .query_map([&store_id], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let cancelled = conn
                .prepare_cached(
                    "SELECT o.id FROM orders o JOIN order_progress p ON p.order_id = o.id
                     WHERE o.store_id = ?1 AND o.cancel_requested_at IS NOT NULL
                       AND p.status NOT IN
                         ('CANCELLED', 'PICKED_UP', 'DELIVERED', 'CLOSED', 'REFUNDED')",
                )?
                .query_map([&store_id], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((arrived, cancelled))
        })
        .await?;
    for order_id in arrived {
        let id = order_id.clone();
        match app
            .write("cloud", move |conn, ctx| orders::arrive(conn, ctx, &id))
            .await
        {
            Ok(arrival) => {
                tracing::info!(order_id, trace_id = %trace_id(&order_id), status = ?arrival.status, "order arrived")
            }
            Err(error) => {
                tracing::warn!(order_id, trace_id = %trace_id(&order_id), %error, "order could not be taken in")
            }
        }
    }
    for order_id in cancelled {
        let id = order_id.clone();
        match app
            .write("cloud", move |conn, ctx| {
                orders::honour_cancel(conn, ctx, &id)
            })
            .await
        {
            Ok(_) => {
                tracing::info!(order_id, trace_id = %trace_id(&order_id), "cancellation honoured")
            }
            Err(error) => {
                tracing::warn!(order_id, trace_id = %trace_id(&order_id), %error, "cancellation not honoured")
            }
        }
    }
    Ok(())
}
