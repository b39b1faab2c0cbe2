//! Starting and stopping the daemon: open the store database, rebuild the stock summary,
//! serve HTTP, and on shutdown drain requests within a grace period and close the database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flashkart_sync::schema::store::MIGRATIONS;
use flashkart_sync::{StoreConfig, StoreDb};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;
use crate::work::stock;
use crate::{Error, api};

/// A started daemon.
#[derive(Debug)]
pub struct Running {
    /// The address the HTTP API is bound to (the real port when configured with port 0).
    pub local_addr: SocketAddr,
    /// The riders' enrolment listener (HTTPS), when the daemon runs the riders' broker.
    pub enrol_addr: Option<SocketAddr>,
    /// The riders' broker's TLS listener, when the daemon runs it.
    pub riders_tls_addr: Option<SocketAddr>,
    /// The riders' broker's loopback listener, when configured (simulators, tests).
    pub riders_plain_addr: Option<SocketAddr>,
    pub db_path: PathBuf,
    task: JoinHandle<Result<(), Error>>,
}

impl Running {
    /// Waits until the daemon has shut down (after the shutdown token is cancelled) and its
    /// database is closed.
    pub async fn wait(self) -> Result<(), Error> {
        self.task.await.map_err(|e| Error::Io {
            context: "the server task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
    }
}

/// Starts the daemon; it runs until `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, Error> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Io {
            context: format!("binding {}", config.listen),
            source,
        })?;
    start_on(config, listener, shutdown).await
}

/// Starts the daemon and waits for it to stop.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await
}

/// Starts the daemon on an already bound listener.
pub async fn start_on(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, Error> {
    config.validate()?;
    let local_addr = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the bound address".into(),
        source,
    })?;
    let db_path = config.db_path();
    // One daemon per data directory; `flashkart-edge restore` checks the same lock.
    let data_dir_lock = crate::backup::DataDirLock::acquire(&config.data_dir())
        .map_err(|e| Error::Conflict(e.to_string()))?;
    let mut store_config = StoreConfig::new(&db_path);
    store_config.synchronous = config.synchronous;
    store_config.extension_dir = config.extension_dir.clone();
    let db = StoreDb::open(store_config, MIGRATIONS).await?;
    tracing::info!(path = %db_path.display(), store_id = %config.store_id, "store database ready");

    db.write(stock::rebuild_summary).await?;
    let app = Arc::new(App::new(db.clone(), &config, shutdown.clone()));
    // The dummy hash unknown ids are verified against, made now rather than at the first
    // unknown sign-in (which would then take twice as long as a known one).
    tokio::task::spawn_blocking(crate::work::staff::warm_up)
        .await
        .map_err(|e| Error::PinHash(e.to_string()))?;
    app.bootstrap_manager(config.manager_pin.clone()).await?;
    if config.dev_endpoints {
        tracing::warn!("dev endpoints are on (/api/v1/dev/*): not for production");
    }

    // Scheduled backups of the store database (on unless `[backup] enabled = false`).
    let backup_task = config.backup.enabled.then(|| {
        crate::backup::spawn(
            crate::backup::Schedule::from_config(&config),
            app.clone(),
            shutdown.clone(),
        )
    });

    // Store hardware (none unless configured): the manager's tasks end with `shutdown`.
    let devices_task = crate::devices::start(&app, shutdown.clone())?;

    // The riders' MQTT broker (only with a `[riders]` section).
    let riders = match &config.riders {
        Some(section) => Some(Arc::new(
            crate::link::riders::start(
                section,
                &config.store_id,
                &config.data_dir(),
                db.clone(),
                app.clone(),
            )
            .await?,
        )),
        None => None,
    };
    if let Some(riders) = &riders {
        let _ = app.riders.set(riders.gauge());
        let _ = app.rider_roster.set(riders.roster());
    }
    let riders_tls_addr = riders.as_ref().map(|r| r.tls_addr());
    let riders_plain_addr = riders.as_ref().and_then(|r| r.plain_addr());

    // Sync with the cloud (only with a `[sync]` section).
    let sync_task = match &config.sync {
        Some(sync) => {
            let (status, task) = crate::link::sync::start(
                sync,
                db.clone(),
                app.clone(),
                riders.clone(),
                shutdown.clone(),
            )?;
            let _ = app.sync.set(status);
            Some(task)
        }
        None => None,
    };

    // The riders' enrolment listener (HTTPS with the store CA's certificate), with the broker.
    let enrolment = match (&config.riders, &riders) {
        (Some(section), Some(riders)) => {
            let listener = TcpListener::bind(section.enrol_listen)
                .await
                .map_err(|source| Error::Io {
                    context: format!("binding the enrolment listener {}", section.enrol_listen),
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| Error::Io {
                context: "reading the enrolment listener's address".into(),
                source,
            })?;
            let task = api::https::serve(
                listener,
                riders.server_identity(),
                api::enrolment_router(app.clone(), riders.clone()),
                shutdown.clone(),
            )?;
            tracing::info!(%addr, "riders enrolment listening (HTTPS)");
            Some((addr, task))
        }
        _ => None,
    };
    let enrol_addr = enrolment.as_ref().map(|(addr, _)| *addr);

    let router = api::router(app.clone());
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    tracing::info!(addr = %local_addr, "HTTP API listening");
    let task = tokio::spawn(async move {
        let stop = shutdown.clone();
        let mut server = tokio::spawn(
            // With the peer's address: sign-in failures count per client.
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .into_future(),
        );
        let served = tokio::select! {
            served = &mut server => served,
            () = shutdown.cancelled() => {
                tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining requests");
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(served) => served,
                    Err(_) => {
                        tracing::warn!("grace period over: dropping the remaining connections");
                        server.abort();
                        Ok(Ok(()))
                    }
                }
            }
        };
        if let Some((_, task)) = enrolment
            && let Err(error) = task.await
        {
            tracing::error!(%error, "enrolment listener failed");
        }
        if let Some(sync_task) = sync_task
            && let Err(error) = sync_task.await
        {
            tracing::error!(%error, "sync task failed");
        }
        // Not `Arc::try_unwrap`: a connection the server is still closing may hold the
        // router, and with it a clone of the handle.
        if let Some(riders) = riders {
            riders.shutdown().await;
        }
        if let Some(devices_task) = devices_task
            && let Err(error) = devices_task.await
        {
            tracing::error!(%error, "device task failed");
        }
        if let Some(backup_task) = backup_task
            && let Err(error) = backup_task.await
        {
            tracing::error!(%error, "backup task failed");
        }
        drop(app);
        let closed = db.close().await;
        // Released only once the database is closed: a restore may go ahead from here.
        drop(data_dir_lock);
        match served {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "HTTP server failed"),
            Err(error) => tracing::error!(%error, "HTTP server task failed"),
        }
        closed?;
        tracing::info!("stopped");
        Ok(())
    });
    Ok(Running {
        local_addr,
        enrol_addr,
        riders_tls_addr,
        riders_plain_addr,
        db_path,
        task,
    })
}
