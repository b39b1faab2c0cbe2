//! Decoding what riders' devices send: protobuf on the FlashKart leaves, OwnTracks JSON on the
//! OwnTracks layout, so that an off-the-shelf tracker app works with settings alone.
//!
//! Decoding also validates (coordinates in range, ids present): a message that fails here is
//! refused before it can touch the database.

use flashkart_proto::rider as pb;
use prost::Message;
use serde::Deserialize;

use super::topics::Inbound;

/// A position fix, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f64>,
    /// Unix milliseconds; 0 for "now".
    pub at_ms: i64,
}

/// A decoded rider message.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Reply {
        assignment_id: String,
        accept: bool,
    },
    Arrival(Fix),
    Pickup {
        label_id: String,
    },
    Delivered {
        order_id: String,
        fix: Option<Fix>,
        customer_pin: Option<String>,
        /// A contactless order's proof instead of a PIN.
        photo_ref: Option<String>,
        /// Cash collected at the door (the order desk judges it against the order).
        cash_collected_minor: Option<i64>,
    },
    Location(Fix),
    Presence {
        online: bool,
    },
    /// A message the edge has nothing to do with (OwnTracks waypoints, transitions, ...).
    Ignored,
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// Decodes the payload of a message published on `kind`.
pub fn decode(kind: Inbound, payload: &[u8]) -> Result<Command, Malformed> {
    let bad = |e: prost::DecodeError| Malformed(format!("not a valid protobuf message: {e}"));
    match kind {
        Inbound::Reply => {
            let reply = pb::Reply::decode(payload).map_err(bad)?;
            Ok(Command::Reply {
                assignment_id: required("assignment_id", reply.assignment_id)?,
                accept: reply.accept,
            })
        }
        Inbound::Arrival => {
            let arrival = pb::Arrival::decode(payload).map_err(bad)?;
            let position = arrival
                .position
                .ok_or_else(|| Malformed("an arrival carries the position".into()))?;
            Ok(Command::Arrival(fix(&position)?))
        }
        Inbound::Pickup => {
            let pickup = pb::Pickup::decode(payload).map_err(bad)?;
            Ok(Command::Pickup {
                label_id: required("label_id", pickup.label_id.trim().to_owned())?,
            })
        }
        Inbound::Delivered => {
            let delivered = pb::Delivered::decode(payload).map_err(bad)?;
            Ok(Command::Delivered {
                order_id: required("order_id", delivered.order_id)?,
                fix: delivered.position.as_ref().map(fix).transpose()?,
                customer_pin: delivered.customer_pin.filter(|pin| !pin.is_empty()),
                photo_ref: delivered.photo_ref.filter(|photo| !photo.trim().is_empty()),
                cash_collected_minor: delivered.cash_collected_minor,
            })
        }
        Inbound::Location => Ok(Command::Location(fix(
            &pb::Position::decode(payload).map_err(bad)?
        )?)),
        Inbound::Presence => Ok(Command::Presence {
            online: pb::Presence::decode(payload).map_err(bad)?.online,
        }),
        Inbound::OwnTracks => owntracks(payload),
    }
}

/// The OwnTracks JSON fields the edge reads (the app sends many more).
#[derive(Debug, Deserialize)]
struct OwnTracks {
    #[serde(rename = "_type")]
    kind: String,
    lat: Option<f64>,
    lon: Option<f64>,
    acc: Option<f64>,
    /// Unix seconds.
    tst: Option<i64>,
}

fn owntracks(payload: &[u8]) -> Result<Command, Malformed> {
    let message: OwnTracks = serde_json::from_slice(payload)
        .map_err(|e| Malformed(format!("not OwnTracks JSON: {e}")))?;
    match message.kind.as_str() {
        "location" => {
            let (Some(lat), Some(lon)) = (message.lat, message.lon) else {
                return Err(Malformed("an OwnTracks location has lat and lon".into()));
            };
            checked(Fix {
                lat,
                lon,
                accuracy_m: message.acc,
                at_ms: message.tst.unwrap_or(0).saturating_mul(1000),
            })
            .map(Command::Location)
        }
        // The app's last will: the device went away.
        "lwt" => Ok(Command::Presence { online: false }),
        _ => Ok(Command::Ignored),
    }
}

fn fix(position: &pb::Position) -> Result<Fix, Malformed> {
    checked(Fix {
        lat: position.lat,
        lon: position.lon,
        accuracy_m: position.accuracy_m.map(f64::from),
        at_ms: position.at_ms,
    })
}

fn checked(fix: Fix) -> Result<Fix, Malformed> {
    let in_range = fix.lat.is_finite()
        && fix.lon.is_finite()
        && (-90.0..=90.0).contains(&fix.lat)
        && (-180.0..=180.0).contains(&fix.lon)
        && fix.accuracy_m.is_none_or(|a| a.is_finite() && a >= 0.0);
    if in_range {
        Ok(fix)
    } else {
        Err(Malformed(format!(
            "position out of range: lat {} lon {}",
            fix.lat, fix.lon
        )))
    }
}

fn required(field: &str, value: String) -> Result<String, Malformed> {
    if value.is_empty() {
        Err(Malformed(format!("{field} is missing")))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_carries_the_pin_or_the_contactless_photo() {
        let contactless = pb::Delivered {
            order_id: "o1".into(),
            photo_ref: Some("photos/o1.jpg".into()),
            customer_pin: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(
            decode(Inbound::Delivered, &contactless.encode_to_vec()),
            Ok(Command::Delivered {
                order_id: "o1".into(),
                fix: None,
                customer_pin: None,
                photo_ref: Some("photos/o1.jpg".into()),
                cash_collected_minor: None,
            })
        );
        let blank = pb::Delivered {
            order_id: "o1".into(),
            photo_ref: Some("  ".into()),
            customer_pin: Some("1234".into()),
            ..Default::default()
        };
        assert_eq!(
            decode(Inbound::Delivered, &blank.encode_to_vec()),
            Ok(Command::Delivered {
                order_id: "o1".into(),
                fix: None,
                customer_pin: Some("1234".into()),
                photo_ref: None,
                cash_collected_minor: None,
            })
        );
    }

    #[test]
    fn a_delivery_carries_the_cash_collected_as_sent() {
        // Judged by the order desk, which knows whether the order is paid in cash.
        for amount in [Some(2_340), Some(-1), None] {
            let delivered = pb::Delivered {
                order_id: "o1".into(),
                cash_collected_minor: amount,
                ..Default::default()
            };
            assert!(matches!(
                decode(Inbound::Delivered, &delivered.encode_to_vec()),
                Ok(Command::Delivered { cash_collected_minor, .. }) if cash_collected_minor == amount
            ));
        }
    }

    #[test]
    fn owntracks_locations_are_read_and_other_types_ignored() {
        let location =
            br#"{"_type":"location","lat":48.1,"lon":11.5,"acc":12,"tst":1700000000,"tid":"an"}"#;
        assert_eq!(
            decode(Inbound::OwnTracks, location),
            Ok(Command::Location(Fix {
                lat: 48.1,
                lon: 11.5,
                accuracy_m: Some(12.0),
                at_ms: 1_700_000_000_000
            }))
        );
        assert_eq!(
            decode(Inbound::OwnTracks, br#"{"_type":"waypoint","desc":"home"}"#),
            Ok(Command::Ignored)
        );
        assert!(
            decode(
                Inbound::OwnTracks,
                br#"{"_type":"location","lat":91,"lon":0}"#
            )
            .is_err()
        );
        assert!(decode(Inbound::OwnTracks, b"not json").is_err());
    }

    #[test]
    fn protobuf_commands_need_their_fields() {
        assert!(decode(Inbound::Reply, &pb::Reply::default().encode_to_vec()).is_err());
        assert!(decode(Inbound::Reply, &[0xff, 0xff, 0xff]).is_err());
        assert!(decode(Inbound::Arrival, &pb::Arrival::default().encode_to_vec()).is_err());
        let reply = pb::Reply {
            assignment_id: "a1".into(),
            accept: true,
        };
        assert_eq!(
            decode(Inbound::Reply, &reply.encode_to_vec()),
            Ok(Command::Reply {
                assignment_id: "a1".into(),
                accept: true
            })
        );
    }
}
