//! MQTT 3.1.1 on the wire, from the broker's side: the packets a client sends, decoded into
//! values, and the packets the broker sends, encoded.
//!
//! Why our own: the edge's broker ([`super::hub`], [`super::front`]) serves one kind of client
//! (a rider's phone, or a loopback simulator) with one topic tree, and every byte a device
//! sends is checked before anything acts on it. Decoding copies what it keeps (topics,
//! payloads) out of the connection's read buffer, so a message that is still queued somewhere
//! never pins the buffer it arrived in. Every malformed packet is an error value naming what is
//! wrong; nothing here panics.
//!
//! Decoding and topic filters are here; what the broker sends is encoded in `encode.rs`.

use bytes::Bytes;

mod encode;

pub use encode::{
    ConnectCode, PINGRESP, PUBACK, PUBCOMP, PUBREC, UNSUBACK, ack, connack, encode_publish, suback,
};

/// What is wrong with a packet; the connection is closed with this in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("{0}")]
    Shape(&'static str),
    #[error("a packet of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("unsupported protocol {name:?} level {level} (MQTT 3.1.1, level 4, only)")]
    Protocol { name: String, level: u8 },
}

/// Quality of service of a message or a subscription (the broker grants at most 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(clippy::enum_variant_names)] // MQTT's own names for them
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    fn from_bits(bits: u8) -> Result<Self, Malformed> {
        match bits {
            0 => Ok(Self::AtMostOnce),
            1 => Ok(Self::AtLeastOnce),
            2 => Ok(Self::ExactlyOnce),
            _ => Err(Malformed::Shape("QoS 3")),
        }
    }
}

/// The packets a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe {
        packet_id: u16,
        filters: Vec<(String, QoS)>,
    },
    Unsubscribe {
        packet_id: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect,
}

/// A CONNECT's contents (user name and password are read and ignored: identity comes from
/// the client certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub client_id: String,
    pub clean_session: bool,
    /// Seconds; 0 turns the keep-alive off.
    pub keep_alive: u16,
    pub will: Option<Will>,
}

/// A client's last will, published for it when its connection ends without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
}

/// A PUBLISH, with topic and payload copied out of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Present for QoS 1 and 2.
    pub packet_id: Option<u16>,
}

/// The fixed header's length and the remaining length of the packet at the start of `buf`,
/// once they have arrived (`None` until then); an error for a length over `max` or one that
/// is not a valid MQTT variable-length integer.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, Malformed> {
    let mut len: usize = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if len > max {
                return Err(Malformed::TooLarge(len));
            }
            return Ok(Some((2 + i, len)));
        }
    }
    Err(Malformed::Shape("remaining length longer than 4 bytes"))
}

/// Decodes one whole packet: its first byte and its body (after the fixed header).
pub fn decode(first: u8, body: &[u8]) -> Result<Packet, Malformed> {
    let flags = first & 0x0f;
    let fixed_flags = |expected: u8, packet: Packet| {
        if flags == expected {
            Ok(packet)
        } else {
            Err(Malformed::Shape("reserved fixed-header flags"))
        }
    };
    match first >> 4 {
        1 => fixed_flags(0, Packet::Connect(connect(body)?)),
        3 => Ok(Packet::Publish(publish(flags, body)?)),
        4 => fixed_flags(0, Packet::PubAck(packet_id_only(body)?)),
        5 => fixed_flags(0, Packet::PubRec(packet_id_only(body)?)),
        6 => fixed_flags(2, Packet::PubRel(packet_id_only(body)?)),
        7 => fixed_flags(0, Packet::PubComp(packet_id_only(body)?)),
        8 => fixed_flags(2, subscribe(body)?),
        10 => fixed_flags(2, unsubscribe(body)?),
        12 if body.is_empty() => fixed_flags(0, Packet::PingReq),
        14 if body.is_empty() => fixed_flags(0, Packet::Disconnect),
        12 | 14 => Err(Malformed::Shape("PINGREQ or DISCONNECT with a body")),
        _ => Err(Malformed::Shape("a packet type clients do not send")),
    }
}

fn connect(body: &[u8]) -> Result<Connect, Malformed> {
    let short = Malformed::Shape;
    let (name, rest) = string(body).ok_or(short("truncated protocol name"))?;
    let (&level, rest) = rest.split_first().ok_or(short("no protocol level"))?;
    if name != b"MQTT" || level != 4 {
        return Err(Malformed::Protocol {
            name: String::from_utf8_lossy(name).into_owned(),
            level,
        });
    }
    let (&flags, rest) = rest.split_first().ok_or(short("no connect flags"))?;
    if flags & 0x01 != 0 {
        return Err(short("reserved connect flag set"));
    }
    let keep_alive = rest.get(..2).ok_or(short("no keep alive"))?;
    let keep_alive = u16::from_be_bytes([keep_alive[0], keep_alive[1]]);
    let (client_id, mut rest) = utf8(&rest[2..]).ok_or(short("truncated client id"))?;
    let will = if flags & 0x04 != 0 {
        let qos = QoS::from_bits((flags >> 3) & 0x03)?;
        let (topic, after_topic) = utf8(rest).ok_or(short("truncated will topic"))?;
        let (payload, after_will) = string(after_topic).ok_or(short("truncated will message"))?;
        rest = after_will;
        if !is_topic_name(&topic) {
            return Err(short("the will topic is not a topic name"));
        }
        Some(Will {
            topic,
            payload: Bytes::copy_from_slice(payload),
            qos,
        })
    } else {
        if flags & 0x38 != 0 {
            return Err(short("will QoS or retain without a will"));
        }
        None
    };
    if flags & 0x80 != 0 {
        rest = string(rest).ok_or(short("truncated user name"))?.1;
    }
    if flags & 0x40 != 0 {
        if flags & 0x80 == 0 {
            return Err(short("a password without a user name"));
        }
        rest = string(rest).ok_or(short("truncated password"))?.1;
    }
    if !rest.is_empty() {
        return Err(short("bytes after the CONNECT payload"));
    }
    Ok(Connect {
        client_id,
        clean_session: flags & 0x02 != 0,
        keep_alive,
        will,
    })
}

fn publish(flags: u8, body: &[u8]) -> Result<Publish, Malformed> {
    let short = Malformed::Shape;
    let qos = QoS::from_bits((flags >> 1) & 0x03)?;
    let (topic, mut rest) = utf8(body).ok_or(short("truncated PUBLISH topic"))?;
    if !is_topic_name(&topic) {
        return Err(short("the PUBLISH topic is not a topic name"));
    }
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        let id = packet_id_at(rest)?;
        rest = &rest[2..];
        Some(id)
    };
    Ok(Publish {
        topic,
        payload: Bytes::copy_from_slice(rest),
        qos,
        retain: flags & 0x01 != 0,
        packet_id,
    })
}

fn subscribe(body: &[u8]) -> Result<Packet, Malformed> {
    let short = Malformed::Shape;
    let packet_id = packet_id_at(body)?;
    let mut rest = &body[2..];
    let mut filters = Vec::new();
    while !rest.is_empty() {
        let (filter, after) = utf8(rest).ok_or(short("truncated SUBSCRIBE filter"))?;
        let (&options, after) = after
            .split_first()
            .ok_or(short("SUBSCRIBE filter without options"))?;
        if options & 0xfc != 0 {
            return Err(short("reserved SUBSCRIBE option bits"));
        }
        if !is_topic_filter(&filter) {
            return Err(short("not a topic filter"));
        }
        filters.push((filter, QoS::from_bits(options)?));
        rest = after;
    }
    if filters.is_empty() {
        return Err(short("SUBSCRIBE without a filter"));
    }
    Ok(Packet::Subscribe { packet_id, filters })
}

fn unsubscribe(body: &[u8]) -> Result<Packet, Malformed> {
    let packet_id = packet_id_at(body)?;
    let mut rest = &body[2..];
    let mut filters = Vec::new();
    while !rest.is_empty() {
        let (filter, after) = utf8(rest).ok_or(Malformed::Shape("truncated UNSUBSCRIBE"))?;
        filters.push(filter);
        rest = after;
    }
    if filters.is_empty() {
        return Err(Malformed::Shape("UNSUBSCRIBE without a filter"));
    }
    Ok(Packet::Unsubscribe { packet_id, filters })
}

fn packet_id_only(body: &[u8]) -> Result<u16, Malformed> {
    if body.len() != 2 {
        return Err(Malformed::Shape("an acknowledgement of the wrong length"));
    }
    packet_id_at(body)
}

fn packet_id_at(body: &[u8]) -> Result<u16, Malformed> {
    match body.get(..2) {
        Some(&[0, 0]) => Err(Malformed::Shape("packet identifier 0")),
        Some(&[high, low]) => Ok(u16::from_be_bytes([high, low])),
        _ => Err(Malformed::Shape("no packet identifier")),
    }
}

/// An MQTT length-prefixed string at the start of `buf`, and what follows it.
fn string(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = usize::from(u16::from_be_bytes(buf.get(0..2)?.try_into().ok()?));
    Some((buf.get(2..2 + len)?, buf.get(2 + len..)?))
}

/// A length-prefixed UTF-8 string without NUL (MQTT 3.1.1 section 1.5.3).
fn utf8(buf: &[u8]) -> Option<(String, &[u8])> {
    let (bytes, rest) = string(buf)?;
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.contains('\0')).then(|| (text.to_owned(), rest))
}

/// A topic a message may be published to: not empty, no wildcards.
pub fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

/// A subscription filter: not empty; `+` only as a whole level; `#` only as the whole last.
pub fn is_topic_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let ok = match level {
            "#" => last,
            "+" => true,
            level => !level.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `topic` matches `filter`. Topics starting with `$` match no filter that starts with
/// a wildcard (MQTT 3.1.1 section 4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            level => {
                if topic_levels.next() != Some(level) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests;
