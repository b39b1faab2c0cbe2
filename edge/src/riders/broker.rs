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

use super::topics::{self, EdgeLog};
use super::{BrokerSizing, Error, LogSize, RidersConfig};

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
    let sizing = &config.sizing;
    for (name, log) in [
        ("location", sizing.location_log),
        ("command", sizing.command_log),
        ("presence", sizing.presence_log),
        ("rider", sizing.rider_log),
    ] {
        // rumqttd panics on smaller logs, in the router thread, at the first subscription.
        if log.segment_bytes < 1024 || log.segments == 0 {
            return Err(Error::Config(format!(
                "the {name} log needs segments of at least 1024 bytes and at least one segment, \
                 not {} x {}",
                log.segment_bytes, log.segments
            )));
        }
    }
    let mut servers = HashMap::new();
    servers.insert(
        INTERNAL_LISTENER.to_owned(),
        server(INTERNAL_LISTENER, internal, config),
    );
    Ok(Config {
        id: 0,
        router: RouterConfig {
            max_connections: sizing.max_connections,
            max_outgoing_packet_count: 200,
            // For filters other than the edge's and the riders' (a loopback client's own).
            max_segment_size: sizing.command_log.segment_bytes,
            max_segment_count: sizing.command_log.segments,
            custom_segment: Some(log_sizes(sizing)),
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(servers),
        ..Config::default()
    })
}

/// The commit-log bound of every filter the edge and the riders subscribe to, by filter.
fn log_sizes(sizing: &BrokerSizing) -> HashMap<String, SegmentConfig> {
    let segment = |log: LogSize| SegmentConfig {
        max_segment_size: log.segment_bytes,
        max_segment_count: log.segments,
    };
    let mut sizes: HashMap<String, SegmentConfig> = topics::EDGE_FILTERS
        .iter()
        .map(|(filter, log)| {
            let size = match log {
                EdgeLog::Location => sizing.location_log,
                EdgeLog::Command => sizing.command_log,
                EdgeLog::Presence => sizing.presence_log,
            };
            ((*filter).to_owned(), segment(size))
        })
        .collect();
    sizes.insert(topics::RIDER_FILTERS.to_owned(), segment(sizing.rider_log));
    sizes
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RidersConfig {
        RidersConfig::new("s1", "/nonexistent")
    }

    #[test]
    fn every_filter_gets_the_log_of_its_kind() {
        let sizing = BrokerSizing::default();
        let sizes = log_sizes(&sizing);
        let bytes = |filter: &str| sizes[filter].max_segment_size;
        assert_eq!(
            bytes("/tenants/+/location"),
            sizing.location_log.segment_bytes
        );
        assert_eq!(
            bytes("/tenants/+/owntracks/#"),
            sizing.location_log.segment_bytes
        );
        assert_eq!(
            bytes("/tenants/+/replies"),
            sizing.command_log.segment_bytes
        );
        assert_eq!(bytes("/tenants/+/pickup"), sizing.command_log.segment_bytes);
        assert_eq!(
            bytes("/tenants/+/presence"),
            sizing.presence_log.segment_bytes
        );
        assert_eq!(bytes(topics::RIDER_FILTERS), sizing.rider_log.segment_bytes);
        assert_eq!(sizes.len(), topics::EDGE_FILTERS.len() + 1);
    }

    #[test]
    fn a_log_rumqttd_would_panic_on_is_a_config_error() {
        let internal = SocketAddr::from(([127, 0, 0, 1], 1));
        assert!(broker_config(&config(), internal).is_ok());
        for log in [
            LogSize {
                segment_bytes: 1023,
                segments: 2,
            },
            LogSize {
                segment_bytes: 4096,
                segments: 0,
            },
        ] {
            let mut bad = config();
            bad.sizing.presence_log = log;
            let error = broker_config(&bad, internal).err().map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|e| e.contains("presence log")),
                "{error:?}"
            );
        }
        let outside = SocketAddr::from(([0, 0, 0, 0], 1));
        assert!(broker_config(&config(), outside).is_err());
    }
}
