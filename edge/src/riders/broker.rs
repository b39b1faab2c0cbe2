//! The embedded rumqttd broker: its configuration, sized for a Pi, and its threads.
//!
//! rumqttd has no stop API: `Broker::start` blocks its thread joining the listener threads
//! forever. So the broker runs on threads of its own that the daemon never joins; shutting the
//! daemon down stops the riders service (and the process exit ends the broker), so shutdown can
//! never hang on it. The edge talks to the router through a local link (in-process, no socket).
//!
//! Its listeners are bound to loopback, on free ports: devices and simulators connect to the
//! front ([`super::front`]), which gives every connection a unique client id (rumqttd 0.20
//! panics and poisons a listener when a client id is reused after a failed connection) and
//! relays it here.
//!
//! Sizing: rumqttd keeps a commit log per subscription filter in memory. Its sample config
//! reserves 100 MiB x 10 per filter; here segments are small (the store database, not the
//! broker, is the source of truth: offers are re-published from it after a restart).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings, TlsConfig};

use super::ca::ServerFiles;
use super::{Error, RidersConfig};

/// Name of the TLS listener (rider devices), in rumqttd and in the front's logs.
pub const TLS_LISTENER: &str = "riders-tls";
/// Name of the loopback listener (simulators, tests), in rumqttd and in the front's logs.
pub const PLAIN_LISTENER: &str = "riders-plain";

/// The edge's end of the broker.
pub struct Link {
    pub tx: LinkTx,
    pub rx: LinkRx,
}

/// rumqttd's own listeners, on loopback; only the front connects to them.
#[derive(Debug, Clone, Copy)]
pub struct Internal {
    pub tls: SocketAddr,
    pub plain: Option<SocketAddr>,
}

/// Starts the router and the listeners on their own threads and returns the edge's link.
pub fn start(config: &RidersConfig, tls: &ServerFiles, internal: Internal) -> Result<Link, Error> {
    let broker_config = broker_config(config, tls, internal)?;
    let mut broker = rumqttd::Broker::new(broker_config);
    let (tx, rx) = broker
        .link("flashkart-edge")
        .map_err(|e| Error::Broker(format!("local link: {e}")))?;
    std::thread::Builder::new()
        .name("riders-broker".into())
        .spawn(move || {
            if let Err(error) = broker.start() {
                tracing::error!(%error, "the riders' MQTT broker stopped");
            }
        })
        .map_err(|e| Error::Broker(format!("cannot spawn the broker thread: {e}")))?;
    Ok(Link { tx, rx })
}

fn broker_config(
    config: &RidersConfig,
    tls: &ServerFiles,
    internal: Internal,
) -> Result<Config, Error> {
    for addr in std::iter::once(internal.tls).chain(internal.plain) {
        if !addr.ip().is_loopback() {
            return Err(Error::Config(format!(
                "the broker's own listeners must be bound to loopback, not {addr}"
            )));
        }
    }
    let path = |p: &std::path::Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Config(format!("{} is not UTF-8", p.display())))
    };
    let mut servers = HashMap::new();
    servers.insert(
        TLS_LISTENER.to_owned(),
        server(
            TLS_LISTENER,
            internal.tls,
            Some(TlsConfig::Rustls {
                capath: Some(path(&tls.ca)?),
                certpath: path(&tls.cert)?,
                keypath: path(&tls.key)?,
            }),
            config,
        ),
    );
    if let Some(plain) = internal.plain {
        servers.insert(
            PLAIN_LISTENER.to_owned(),
            server(PLAIN_LISTENER, plain, None, config),
        );
    }
    Ok(Config {
        id: 0,
        router: RouterConfig {
            max_connections: config.sizing.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: config.sizing.max_segment_size,
            max_segment_count: config.sizing.max_segment_count,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(servers),
        ..Config::default()
    })
}

fn server(
    name: &str,
    listen: SocketAddr,
    tls: Option<TlsConfig>,
    config: &RidersConfig,
) -> ServerSettings {
    ServerSettings {
        name: name.to_owned(),
        listen,
        tls,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: 5000,
            max_payload_size: config.sizing.max_payload_size,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    }
}

/// Waits until `addr` accepts TCP connections (the listener threads bind asynchronously).
pub async fn wait_listening(addr: SocketAddr, within: Duration) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + within;
    let target = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    loop {
        match tokio::net::TcpStream::connect(target).await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Broker(format!("{addr} is not listening: {error}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
