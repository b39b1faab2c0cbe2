//! Topic confinement, the isolation rule between riders: a connection from a rider's device
//! may name only topics under `/tenants/<rider id>/` (its will topic, every PUBLISH topic and
//! every SUBSCRIBE filter), checked before anything acts on the packet. Apart from the session
//! because it is the rule the riders' isolation rests on, tested here without a socket.

use super::Refused;
use super::tls::Identity;
use crate::riders::mqtt::{Malformed, Packet};
use crate::riders::topics;

/// Where a connection may publish and subscribe: under its rider's prefix (TLS), or anywhere
/// (the loopback listener, whose clients are the edge's own simulators and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scope {
    Rider(String),
    Trusted,
}

impl Scope {
    pub(super) fn for_identity(identity: Option<&Identity>) -> Self {
        match identity {
            Some(identity) => Self::Rider(format!("{}{}/", topics::ROOT, identity.rider)),
            None => Self::Trusted,
        }
    }

    /// Whether a topic or filter is within the scope.
    pub(super) fn allows(&self, topic: &str) -> bool {
        match self {
            Self::Rider(prefix) => topic.starts_with(prefix.as_str()),
            Self::Trusted => true,
        }
    }

    /// Checks what a packet from the device names: PUBLISH topics and SUBSCRIBE filters must
    /// be within the scope; a second CONNECT is refused.
    pub(super) fn check(&self, packet: &Packet) -> Result<(), Refused> {
        match packet {
            Packet::Connect(_) => Err(Refused::Malformed(Malformed::Shape("a second CONNECT"))),
            Packet::Publish(publish) if !self.allows(&publish.topic) => {
                Err(Refused::OutOfScope("PUBLISH topic", publish.topic.clone()))
            }
            Packet::Subscribe { filters, .. } => {
                match filters.iter().find(|(f, _)| !self.allows(f)) {
                    Some((filter, _)) => {
                        Err(Refused::OutOfScope("SUBSCRIBE filter", filter.clone()))
                    }
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::riders::mqtt::{self, QoS};

    fn publish(topic: &str) -> Packet {
        Packet::Publish(mqtt::Publish {
            topic: topic.into(),
            payload: Bytes::from_static(b"payload"),
            qos: QoS::AtMostOnce,
            retain: false,
            packet_id: None,
        })
    }

    fn subscribe(filters: &[&str]) -> Packet {
        Packet::Subscribe {
            packet_id: 1,
            filters: filters
                .iter()
                .map(|f| ((*f).to_owned(), QoS::AtLeastOnce))
                .collect(),
        }
    }

    #[test]
    fn a_rider_publishes_and_subscribes_under_its_prefix_only() {
        let a = Scope::Rider("/tenants/riderA/".into());
        for good in [
            publish("/tenants/riderA/location"),
            subscribe(&["/tenants/riderA/edge/#"]),
            Packet::PingReq,
            Packet::Unsubscribe {
                packet_id: 1,
                filters: vec!["#".into()],
            },
        ] {
            assert!(a.check(&good).is_ok(), "{good:?}");
        }
        for bad in [
            publish("/tenants/riderB/replies"),
            publish("/tenants/riderA"),
            publish("/tenants/riderAB/replies"),
            subscribe(&["/tenants/riderA/edge/#", "#"]),
            subscribe(&["/tenants/+/edge/#"]),
            subscribe(&["$share/g/tenants/riderA/edge/#"]),
        ] {
            assert!(
                matches!(a.check(&bad), Err(Refused::OutOfScope(..))),
                "{bad:?}"
            );
            assert!(Scope::Trusted.check(&bad).is_ok(), "{bad:?}");
        }
    }
}
