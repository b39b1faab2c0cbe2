//! The cloud aggregator at HQ: the sync server with one replica per store, the shared catalog
//! fanned out to every store, store registration and credentials, order intake with routing
//! (`intake`, `routing`, `area`), the read model every store's changes are projected into
//! (`projection`), and the JSON API for customers and HQ (`api`), behind the route table
//! (`routes`) and the HTTP plumbing it shares with the sync endpoints (`http`).
//!
//! [`start`] opens the databases, binds the listener (port 0 picks one; the bound address is
//! in [`RunningCloud::addr`]) and serves until the shutdown token is cancelled; [`Cloud`] is
//! the handle for writing into store replicas and the catalog.

mod api;
pub mod area;
pub mod catalog_writes;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod dispatch;
mod error;
mod faults;
pub mod hq;
mod http;
pub mod intake;
pub mod leases;
pub mod metrics;
pub mod notify;
pub mod payments;
pub mod postgres;
pub mod projection;
pub mod readmodel;
pub mod registry;
mod routes;
pub mod routing;
mod serve;
pub mod store_writes;
pub mod storefront;
pub mod stores;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flashkart_sync::StoreDb;
use flashkart_sync::server::{Replica, ReplicaLimits};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::CloudConfig;
pub use error::CloudError;
pub use http::ApiError;

use crate::hq::Hq;
use crate::intake::Intake;
use crate::payments::Payments;
use crate::projection::Projection;
use crate::readmodel::{ChangeCounter, ReadModel};
use crate::registry::{Registry, hex, token_hash};
use crate::store_writes::StoreWrites;
use crate::stores::{DbOptions, Stores};

/// A handle on a running cloud.
#[derive(Debug, Clone)]
pub struct Cloud {
    registry: Registry,
    stores: Arc<Stores>,
    projection: Projection,
    dashboard: dashboard::Dashboard,
    hq: Hq,
}

impl Cloud {
    /// Registers a new store, returning the bearer token; an existing id is refused.
    pub async fn register_store(&self, store_id: &str) -> Result<String, CloudError> {
        let token = self.registry.register(store_id).await?;
        self.stores.replica(store_id).await?;
        Ok(token)
    }

    /// Issues a registered store a new token (the old one stops working); `release_site`
    /// also unbinds its edge database, see [`Registry::rotate`].
    pub async fn rotate_store_token(
        &self,
        store_id: &str,
        release_site: bool,
    ) -> Result<String, CloudError> {
        self.registry.rotate(store_id, release_site).await
    }

    /// The replica of a store: write the cloud's rows for the store through
    /// [`Replica::write`] so the store's long-poll wakes.
    pub async fn replica(&self, store_id: &str) -> Result<Arc<Replica>, CloudError> {
        self.stores.replica(store_id).await
    }

    /// The read model (orders, timelines, stock per store, riders).
    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// HQ's dashboard (its published snapshots; a build on demand).
    pub fn dashboard(&self) -> &dashboard::Dashboard {
        &self.dashboard
    }

    /// HQ's database (profiles, roster, customers, ratings).
    pub fn hq(&self) -> &Hq {
        &self.hq
    }

    /// The catalog database (read it freely).
    pub fn catalog(&self) -> &StoreDb {
        self.stores.catalog()
    }

    /// Writes the shared catalog; the change fans out to every store.
    pub async fn write_catalog<T, E, F>(&self, write: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<flashkart_sync::Error> + Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, E> + Send + 'static,
    {
        self.stores.write_catalog(write).await
    }
}

/// A started cloud: where it listens, its handle, and its serving task.
#[derive(Debug)]
pub struct RunningCloud {
    pub addr: SocketAddr,
    pub cloud: Cloud,
    task: JoinHandle<Result<(), CloudError>>,
}

impl RunningCloud {
    /// Waits until the cloud has shut down and closed its databases.
    pub async fn wait(self) -> Result<(), CloudError> {
        self.task
            .await
            .map_err(|e| CloudError::Task(e.to_string()))?
    }
}

/// Runs the cloud until `shutdown` is cancelled.
pub async fn run(config: CloudConfig, shutdown: CancellationToken) -> Result<(), CloudError> {
    start(config, shutdown).await?.wait().await
}

/// Opens the databases, binds the listener and starts serving.
pub async fn start(
    config: CloudConfig,
    shutdown: CancellationToken,
) -> Result<RunningCloud, CloudError> {
    start_with(config, shutdown, None).await
}

/// Like [`start`], handing applied store changes to `read_model` besides the built-in counter.
pub async fn start_with(
    config: CloudConfig,
    shutdown: CancellationToken,
    read_model: Option<Arc<dyn ReadModel>>,
) -> Result<RunningCloud, CloudError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| CloudError::Io {
        path: config.data_dir.clone(),
        source,
    })?;
    let admin_token = match &config.admin_token {
        Some(token) => token.clone(),
        None => admin_token_file(&config.data_dir)?,
    };
    let options = DbOptions {
        data_dir: config.data_dir.clone(),
        synchronous: config.synchronous,
        extension_dir: config.extension_dir.clone(),
    };
    config
        .cluster
        .validate()
        .map_err(|message| CloudError::Config {
            path: "[cluster]".into(),
            message,
        })?;
    // Another instance learns that a store it does not serve is in contact at the holder's
    // lease renewals, up to two renewals (two thirds of the lease) late: with a shorter grace,
    // connected stores served elsewhere flicker offline there.
    if config.database_url.is_some()
        && config.intake.offline_grace_ms.saturating_mul(3)
            <= config.cluster.lease_ms.saturating_mul(2)
    {
        tracing::warn!(
            offline_grace_ms = config.intake.offline_grace_ms,
            lease_ms = config.cluster.lease_ms,
            "[intake] offline_grace_ms is not above two thirds of [cluster] lease_ms: stores \
             served by another instance may look offline here between its renewals"
        );
    }
    let postgres = match &config.database_url {
        Some(url) => Some(postgres::Postgres::connect(url).await?),
        None => None,
    };
    let registry = open_registry(&options, postgres.clone()).await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let limits = ReplicaLimits {
        max_wait: Duration::from_millis(config.sync.max_wait_ms),
        max_pull_bytes: config.sync.max_pull_bytes,
        max_pending_bytes: config.sync.max_pending_bytes,
    };
    let stores = Arc::new(
        Stores::open(
            options.clone(),
            limits,
            config.sync.fanout_chunk_bytes,
            metrics.clone(),
        )
        .await?,
    );
    for store_id in registry.store_ids().await? {
        stores.replica(&store_id).await?;
    }
    let hq = match &postgres {
        Some(postgres) => Hq::open_postgres(postgres.clone()).await?,
        None => Hq::open(options.config(config.data_dir.join("hq.db"))).await?,
    };
    let projection = match &postgres {
        Some(postgres) => Projection::open_postgres(postgres.clone()).await?,
        None => Projection::open(options.config(config.data_dir.join("readmodel.db"))).await?,
    };
    let storefront =
        storefront::Storefront::open(options.config(config.data_dir.join("storefront.db"))).await?;
    // Whatever was committed to a replica but not projected before the last stop is caught up
    // from the read model's cursors.
    for store_id in registry.store_ids().await? {
        projection.mark_dirty(&store_id);
    }
    let gateway: Option<Arc<dyn payments::gateway::Gateway>> = match &config.payments.stripe {
        Some(stripe) => Some(Arc::new(
            payments::gateway::stripe::StripeGateway::new(stripe.clone())
                .map_err(|e| CloudError::Payments(e.to_string()))?,
        )),
        None => None,
    };
    let payments = Arc::new(
        match &postgres {
            Some(pg) => {
                Payments::open_postgres(
                    pg.clone(),
                    config.payments.clone(),
                    gateway,
                    metrics.clone(),
                )
                .await
            }
            None => {
                Payments::open(
                    options.config(config.data_dir.join("payments.db")),
                    config.payments.clone(),
                    gateway,
                    metrics.clone(),
                )
                .await
            }
        }
        .map_err(|e| CloudError::Payments(e.to_string()))?,
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| CloudError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| CloudError::Listen {
        addr: config.listen,
        source,
    })?;
    let leases =
        match &postgres {
            Some(pg) => {
                let scheme = if config.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                let url = config.cluster.advertised(addr, scheme).map_err(|message| {
                    CloudError::Config {
                        path: "[cluster]".into(),
                        message,
                    }
                })?;
                let ttl = Duration::from_millis(config.cluster.lease_ms);
                Some(Arc::new(leases::Leases::open(pg.clone(), url, ttl).await?))
            }
            None => None,
        };
    let store_writes = Arc::new(match (&postgres, &leases) {
        (Some(pg), Some(leases)) => {
            StoreWrites::journaled(stores.clone(), pg.clone(), leases.clone()).await?
        }
        _ => StoreWrites::direct(stores.clone()),
    });
    let catalog_writes = Arc::new(match &postgres {
        Some(pg) => catalog_writes::CatalogWrites::journaled(stores.clone(), pg.clone()).await?,
        None => catalog_writes::CatalogWrites::direct(stores.clone()),
    });
    let intake = Arc::new(Intake::new(
        config.intake.clone(),
        hq.clone(),
        projection.clone(),
        stores.clone(),
        store_writes.clone(),
        payments.clone(),
    ));
    // A store served by another instance is online here when its holder heard from it.
    if let Some(leases) = &leases {
        intake.liveness.share(leases.clone());
    }
    let dashboard = dashboard::Dashboard::new(
        hq.clone(),
        projection.clone(),
        stores.clone(),
        intake.clone(),
        Duration::from_millis(config.intake.offline_grace_ms),
    );
    let counter = ChangeCounter::default();
    let prometheus = Arc::new(metrics.registry(&counter));
    let mut read_models: Vec<Arc<dyn ReadModel>> =
        vec![Arc::new(counter), Arc::new(projection.clone())];
    read_models.extend(read_model);
    let read_model: Arc<dyn ReadModel> = Arc::new(All(read_models));
    // Requests for stores another instance serves are sent on to it; a pull may wait the whole
    // long-poll there.
    let forwarder = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.sync.max_wait_ms) + Duration::from_secs(30))
        .build()
        .map_err(|e| CloudError::Config {
            path: "[cluster]".into(),
            message: format!("forwarding client: {e}"),
        })?;
    let state = http::AppState {
        registry: registry.clone(),
        stores: stores.clone(),
        store_writes: store_writes.clone(),
        catalog_writes: catalog_writes.clone(),
        read_model,
        metrics: metrics.clone(),
        prometheus,
        admin_token_sha256: token_hash(&admin_token),
        compress_min_bytes: config.sync.compress_min_bytes,
        shutdown: shutdown.clone(),
        hq: hq.clone(),
        projection: projection.clone(),
        intake: intake.clone(),
        payments: payments.clone(),
        dashboard: dashboard.clone(),
        storefront: storefront.clone(),
        rider_speed_kmh: config.dispatch.rider_speed_kmh,
        // Stripe retries a refused delivery for days; 20 refusals a minute is far above what
        // a misconfigured secret produces and far below what guessing one needs.
        webhook_throttle: Arc::new(http::throttle::FailureThrottle::new(
            20,
            Duration::from_secs(60),
        )),
        sign_in_throttle: Arc::new(http::throttle::FailureThrottle::new(
            config.hq.max_failed_sign_ins.max(1),
            Duration::from_secs(config.hq.sign_in_window_s.max(1)),
        )),
        hq_settings: config.hq.clone(),
        customers: Arc::new(http::state::CustomerGate::new(config.customers.clone())),
        intake_grace_ms: config.intake.offline_grace_ms,
        enrolment_code_ttl: time::Duration::hours(i64::from(
            config.riders.enrolment_code_ttl_hours,
        )),
        limits: Arc::new(config.http.clone()),
        leases: leases.clone(),
        forwarder,
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        url = %format!("{scheme}://{addr}"),
        data_dir = %config.data_dir.display(),
        "cloud listening"
    );
    // Links in notifications lead to the customer app, which this listener serves unless
    // `public_url` names where customers reach it.
    let public_url = config
        .notifications
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let sender = notify::Sender::new(
        notify::Outboxes {
            readmodel: projection.clone(),
            payments: payments.outbox(),
            hq: hq.clone(),
        },
        config.notifications.clone(),
        public_url,
        metrics.clone(),
    )
    .map_err(|message| CloudError::Config {
        path: "[notifications]".into(),
        message,
    })?;
    let cloud = Cloud {
        registry: registry.clone(),
        stores: stores.clone(),
        projection: projection.clone(),
        dashboard: dashboard.clone(),
        hq: hq.clone(),
    };
    let router = routes::router(state);
    let task = tokio::spawn(async move {
        let fanout = {
            let stores = stores.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { stores.run_fanout(shutdown).await })
        };
        // Short reports are rare (one per order a store could not fill); when the handler is
        // behind, the projector waits for it.
        let (shorts_tx, shorts_rx) = tokio::sync::mpsc::channel(256);
        let projecting = {
            let (projection, stores, shutdown) =
                (projection.clone(), stores.clone(), shutdown.clone());
            tokio::spawn(async move {
                projection.run(stores, shorts_tx, shutdown).await;
            })
        };
        let shorts = tokio::spawn(intake.run_short_handler(shorts_rx, shutdown.clone()));
        let dispatching = tokio::spawn(
            dispatch::live::LiveDispatch::new(
                config.dispatch.clone(),
                hq.clone(),
                projection.clone(),
                store_writes.clone(),
                metrics.clone(),
                leases.clone(),
            )
            .run(shutdown.clone()),
        );
        let journaling = tokio::spawn(store_writes.clone().run(shutdown.clone()));
        let cataloguing = tokio::spawn(catalog_writes.clone().run(shutdown.clone()));
        let paying = tokio::spawn(payments.clone().run(
            stores.clone(),
            projection.clone(),
            shutdown.clone(),
        ));
        let showing = tokio::spawn(dashboard.run(shutdown.clone()));
        let leasing = {
            let (leases, shutdown) = (leases.clone(), shutdown.clone());
            tokio::spawn(async move {
                if let Some(leases) = leases {
                    leases.run(shutdown).await;
                }
            })
        };
        let notifying = tokio::spawn(sender.run(shutdown.clone()));
        let indexing = {
            let (storefront, catalog, written, shutdown) = (
                storefront.clone(),
                stores.catalog().clone(),
                stores.catalog_written(),
                shutdown.clone(),
            );
            tokio::spawn(async move { storefront.run_feed(catalog, written, shutdown).await })
        };
        let served = serve::serve(
            listener,
            router,
            config.tls.as_ref(),
            &config.http,
            shutdown.clone(),
        )
        .await;
        shutdown.cancel();
        for (name, task) in [
            ("catalog fan-out", fanout),
            ("projector", projecting),
            ("short handler", shorts),
            ("dispatch", dispatching),
            ("store write journal", journaling),
            ("catalog journal", cataloguing),
            ("payments", paying),
            ("dashboard", showing),
            ("notifications", notifying),
            ("storefront index", indexing),
            ("store leases", leasing),
        ] {
            if let Err(error) = task.await {
                tracing::warn!(%error, task = name, "background task");
            }
        }
        stores.close().await?;
        projection.close().await?;
        storefront.close().await?;
        hq.close().await?;
        payments
            .close()
            .await
            .map_err(|e| CloudError::Payments(e.to_string()))?;
        registry.close().await?;
        if let Some(postgres) = &postgres {
            postgres.close();
        }
        tracing::info!("cloud stopped");
        served
    });
    Ok(RunningCloud { addr, cloud, task })
}

/// The built-in counter, the projection and a caller's read model.
#[derive(Debug)]
struct All(Vec<Arc<dyn ReadModel>>);

impl ReadModel for All {
    fn project(&self, store_id: &str, changes: &[flashkart_proto::sync::Change]) {
        for model in &self.0 {
            model.project(store_id, changes);
        }
    }
}

/// The admin token kept in `<data_dir>/admin_token`, created (owner-only) on first start.
fn admin_token_file(data_dir: &Path) -> Result<String, CloudError> {
    let path = data_dir.join("admin_token");
    let io = |source| CloudError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(token) => Ok(token.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0_u8; 32];
            rand::rng().fill_bytes(&mut secret);
            let token = format!("fka_{}", hex(&secret));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(io)?;
            std::io::Write::write_all(&mut file, token.as_bytes()).map_err(io)?;
            tracing::info!(path = %path.display(), "generated the admin token");
            Ok(token)
        }
        Err(e) => Err(io(e)),
    }
}

/// What [`register_offline`] does to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Register a new store; an existing id is refused.
    New,
    /// Issue an existing store a new token, keeping its edge binding unless `release_site`.
    Rotate { release_site: bool },
}

/// Registers a store, or rotates its token, directly in the registry database of `config`
/// (the CLI; works whether or not the cloud is running). The replica is created when the
/// cloud next sees the store.
pub async fn register_offline(
    config: &CloudConfig,
    store_id: &str,
    registration: Registration,
) -> Result<String, CloudError> {
    let options = DbOptions {
        data_dir: config.data_dir.clone(),
        synchronous: config.synchronous,
        extension_dir: config.extension_dir.clone(),
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|source| CloudError::Io {
        path: config.data_dir.clone(),
        source,
    })?;
    let postgres = match &config.database_url {
        Some(url) => Some(postgres::Postgres::connect(url).await?),
        None => None,
    };
    let registry = open_registry(&options, postgres.clone()).await?;
    let token = match registration {
        Registration::New => registry.register(store_id).await,
        Registration::Rotate { release_site } => registry.rotate(store_id, release_site).await,
    };
    registry.close().await?;
    if let Some(postgres) = &postgres {
        postgres.close();
    }
    token
}

/// The registry in PostgreSQL when the cloud has one, else in `registry.db`.
async fn open_registry(
    options: &DbOptions,
    postgres: Option<postgres::Postgres>,
) -> Result<Registry, CloudError> {
    match postgres {
        Some(postgres) => Registry::open_postgres(postgres).await,
        None => Registry::open(options.config(options.data_dir.join("registry.db"))).await,
    }
}
