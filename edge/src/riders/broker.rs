//! The embedded rumqttd broker: its configuration, sized for a Pi, and its threads.
//!
//! rumqttd has no stop API: `Broker::start` blocks its thread joining the listener threads
//! forever. So the broker runs on threads of its own that the daemon never joins; shutting the
//! daemon down stops the riders service (and the process exit ends the broker), so shutdown can
//! never hang on it. The edge talks to the router through a local link (in-process, no socket).
//!
//! Its one listener is bound to loopback, on a free port, without TLS: devices and simulators
//! connect to the front ([`super::front`]), which terminates TLS, confines each rider to its
//! topics, gives every connection a unique client id (rumqttd 0.20 panics and poisons a
//! listener when a client id is reused after a failed connection) and relays it here.
//!
//! Sizing: rumqttd keeps a commit log per subscription filter in memory. Its sample config
//! reserves 100 MiB x 10 per filter; here segments are small, and smaller still for the
//! riders' own filters (see [`super::BrokerSizing`]): the store database, not the broker, is
//! the source of truth, and offers are re-published from it after a restart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Config, ConnectionSettings, RouterConfig, SegmentConfig, ServerSettings};

use super::{Error, RidersConfig, topics};

/// Name of rumqttd's loopback listener, in its logs.
const INTERNAL_LISTENER: &str = "riders-internal";

/// The edge's end of the broker.
pub struct Link {
    pub tx: LinkTx,
    pub rx: LinkRx,
}

/// Starts the router and its listener at `internal` (loopback; only the front connects to it)
/// on their own threads and returns the edge's link.
pub fn start(config: &RidersConfig, internal: SocketAddr) -> Result<Link, Error> {
    let broker_config = broker_config(config, internal)?;
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

fn broker_config(config: &RidersConfig, internal: SocketAddr) -> Result<Config, Error> {
    if !internal.ip().is_loopback() {
        return Err(Error::Config(format!(
            "the broker's own listener must be bound to loopback, not {internal}"
        )));
    }
    let mut servers = HashMap::new();
    servers.insert(
        INTERNAL_LISTENER.to_owned(),
        server(INTERNAL_LISTENER, internal, config),
    );
    Ok(Config {
        id: 0,
        router: RouterConfig {
            max_connections: config.sizing.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: config.sizing.max_segment_size,
            max_segment_count: config.sizing.max_segment_count,
            custom_segment: Some(HashMap::from([(
                topics::RIDER_FILTERS.to_owned(),
                SegmentConfig {
                    max_segment_size: config.sizing.rider_segment_size,
                    max_segment_count: config.sizing.rider_segment_count,
                },
            )])),
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(servers),
        ..Config::default()
    })
}

fn server(name: &str, listen: SocketAddr, config: &RidersConfig) -> ServerSettings {
    ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
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
