//! The topic tree under `/tenants/<rider id>/`, in one place.
//!
//! The riders' broker (rumqttd's `validate-tenant-prefix`) confines a device holding a client
//! certificate with `O=<rider id>` to
//! `/tenants/<rider id>/`, so the rider id in a topic is the authenticated identity of whoever
//! published there (loopback clients without a certificate are trusted simulators). The edge
//! reads the rider-to-edge leaves of every rider ([`parse`]). The tree is documented for
//! device makers in `README.md` beside this file.

/// The root of every rider's subtree.
pub const ROOT: &str = "/tenants/";

/// A message a rider's device sends to the edge, by the leaf it was published on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    Reply,
    Arrival,
    Pickup,
    Delivered,
    Location,
    Presence,
    /// OwnTracks JSON on `owntracks/<user>/<device>`.
    OwnTracks,
}

impl Inbound {
    /// The leaf name, as used in refusals.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reply => "replies",
            Self::Arrival => "arrival",
            Self::Pickup => "pickup",
            Self::Delivered => "delivered",
            Self::Location => "location",
            Self::Presence => "presence",
            Self::OwnTracks => "owntracks",
        }
    }
}

/// Splits an inbound topic into the rider id and the kind of message; `None` for anything else.
pub fn parse(topic: &str) -> Option<(&str, Inbound)> {
    let rest = topic.strip_prefix(ROOT)?;
    let (rider, leaf) = rest.split_once('/')?;
    if !is_rider_id(rider) {
        return None;
    }
    let kind = match leaf {
        "replies" => Inbound::Reply,
        "arrival" => Inbound::Arrival,
        "pickup" => Inbound::Pickup,
        "delivered" => Inbound::Delivered,
        "location" => Inbound::Location,
        "presence" => Inbound::Presence,
        owntracks => {
            let mut parts = owntracks.split('/');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("owntracks"), Some(user), Some(device), None)
                    if !user.is_empty() && !device.is_empty() =>
                {
                    Inbound::OwnTracks
                }
                _ => return None,
            }
        }
    };
    Some((rider, kind))
}

/// Whether `id` can be a rider id: alphanumeric, so it is one topic level and cannot carry
/// wildcards or separators into a topic.
pub fn is_rider_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The one filter a rider's device subscribes to: everything the edge sends it (offers, acks,
/// errors) is under `edge/`, so a device needs one subscription, whatever the edge adds later.
pub fn edge_filter(rider: &str) -> String {
    format!("{ROOT}{rider}/edge/#")
}

/// Where the edge publishes the offer of `assignment_id` (retained until answered or expired).
pub fn offer(rider: &str, assignment_id: &str) -> String {
    format!("{ROOT}{rider}/edge/offers/{assignment_id}")
}

/// The assignment id of an offer topic of `rider`.
pub fn offer_assignment<'a>(rider: &str, topic: &'a str) -> Option<&'a str> {
    topic
        .strip_prefix(ROOT)?
        .strip_prefix(rider)?
        .strip_prefix("/edge/offers/")
}

/// A rider-to-edge leaf (`replies`, `location`, ...) of `rider`'s subtree.
pub fn leaf(rider: &str, leaf: &str) -> String {
    format!("{ROOT}{rider}/{leaf}")
}

/// Where the edge confirms a command.
pub fn acks(rider: &str) -> String {
    format!("{ROOT}{rider}/edge/acks")
}

/// Where the edge answers a refused or malformed message.
pub fn errors(rider: &str) -> String {
    format!("{ROOT}{rider}/edge/errors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rider_leaves_and_nothing_else() {
        assert_eq!(parse("/tenants/r1/replies"), Some(("r1", Inbound::Reply)));
        assert_eq!(
            parse("/tenants/r1/owntracks/anna/phone"),
            Some(("r1", Inbound::OwnTracks))
        );
        assert_eq!(parse("/tenants/r1/owntracks/anna"), None);
        assert_eq!(parse("/tenants/r1/owntracks/anna/phone/event"), None);
        assert_eq!(parse("/tenants/r-1/replies"), None);
        assert_eq!(parse("/tenants/r1/edge/offers/a1"), None);
        assert_eq!(parse("/tenants/r1/edge/acks"), None);
        assert_eq!(parse("tenants/r1/replies"), None);
        assert_eq!(offer_assignment("r1", &offer("r1", "a9")), Some("a9"));
        assert_eq!(offer_assignment("r2", &offer("r1", "a9")), None);
        assert_eq!(offer_assignment("r1", &acks("r1")), None);
    }
}
