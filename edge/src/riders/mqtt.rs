//! MQTT 3.1.1 on the wire, from the broker's side: the packets a client sends, decoded into
//! values, and the packets the broker sends, encoded.
//!
//! Why our own: the edge's broker ([`super::hub`], [`super::front`]) serves one kind of client
//! (a rider's phone, or a loopback simulator) with one topic tree, and every byte a device
//! sends is checked before anything acts on it. Decoding copies what it keeps (topics,
//! payloads) out of the connection's read buffer, so a message that is still queued somewhere
//! never pins the buffer it arrived in. Every malformed packet is an error value naming what is
//! wrong; nothing here panics.

use bytes::{BufMut, Bytes, BytesMut};

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

/// CONNACK return codes (MQTT 3.1.1 table 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCode {
    Accepted = 0,
    UnacceptableProtocol = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
}

pub fn connack(code: ConnectCode) -> [u8; 4] {
    // Sessions never outlive their connection, so "session present" is always 0.
    [0x20, 2, 0, code as u8]
}

/// A PUBLISH to send; `packet_id` is required for QoS 1.
pub fn encode_publish(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    packet_id: Option<u16>,
) -> Bytes {
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let len = 2 + topic.len() + id_len + payload.len();
    let mut packet = BytesMut::with_capacity(len + 5);
    packet.put_u8(0x30 | (qos as u8) << 1 | u8::from(retain));
    put_remaining_length(&mut packet, len);
    // Topics come from the hub, which only takes topics that arrived in a packet (u16-long).
    packet.put_u16(u16::try_from(topic.len()).unwrap_or(u16::MAX));
    packet.put_slice(topic.as_bytes());
    if qos != QoS::AtMostOnce {
        packet.put_u16(packet_id.unwrap_or(1));
    }
    packet.put_slice(payload);
    packet.freeze()
}

/// PUBACK, PUBREC or PUBCOMP (first byte 0x40, 0x50, 0x70) for `packet_id`.
pub fn ack(first: u8, packet_id: u16) -> [u8; 4] {
    let [high, low] = packet_id.to_be_bytes();
    [first, 2, high, low]
}

pub const PUBACK: u8 = 0x40;
pub const PUBREC: u8 = 0x50;
pub const PUBCOMP: u8 = 0x70;
pub const UNSUBACK: u8 = 0xb0;
pub const PINGRESP: [u8; 2] = [0xd0, 0];

/// SUBACK with a granted QoS per filter.
pub fn suback(packet_id: u16, granted: &[QoS]) -> Bytes {
    let mut packet = BytesMut::with_capacity(4 + granted.len() + 3);
    packet.put_u8(0x90);
    put_remaining_length(&mut packet, 2 + granted.len());
    packet.put_u16(packet_id);
    for qos in granted {
        packet.put_u8(*qos as u8);
    }
    packet.freeze()
}

/// MQTT's variable-length remaining length (lengths here are bounded by the packet limit).
fn put_remaining_length(packet: &mut BytesMut, len: usize) {
    let mut remaining = len;
    loop {
        let mut byte = (remaining % 128) as u8;
        remaining /= 128;
        if remaining > 0 {
            byte |= 0x80;
        }
        packet.put_u8(byte);
        if remaining == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_len(prefix: &[u8], text: &str) -> Vec<u8> {
        let mut out = prefix.to_vec();
        out.extend_from_slice(&u16::try_from(text.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    fn connect_body(flags: u8, client_id: &str, rest: &[u8]) -> Vec<u8> {
        let mut body = with_len(&[0, 4, b'M', b'Q', b'T', b'T', 4, flags, 0, 30], client_id);
        body.extend_from_slice(rest);
        body
    }

    #[test]
    fn reads_a_connect_with_will_user_and_password() {
        let mut rest = with_len(&[], "/tenants/r1/presence");
        rest = with_len(&rest, "gone");
        rest = with_len(&rest, "user");
        rest = with_len(&rest, "secret");
        let body = connect_body(0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02, "phone", &rest);
        assert_eq!(
            decode(0x10, &body),
            Ok(Packet::Connect(Connect {
                client_id: "phone".into(),
                clean_session: true,
                keep_alive: 30,
                will: Some(Will {
                    topic: "/tenants/r1/presence".into(),
                    payload: Bytes::from_static(b"gone"),
                    qos: QoS::AtLeastOnce,
                }),
            }))
        );
    }

    #[test]
    fn bad_connects_are_errors_not_panics() {
        let protocol = |name: &str, level: u8| {
            let mut body = with_len(&[], name);
            body.extend([level, 0x02, 0, 30, 0, 0]);
            decode(0x10, &body)
        };
        assert!(matches!(
            protocol("MQIsdp", 3),
            Err(Malformed::Protocol { level: 3, .. })
        ));
        assert!(matches!(
            protocol("MQTT", 5),
            Err(Malformed::Protocol { level: 5, .. })
        ));
        for body in [
            &b""[..],
            &[0, 4, b'M', b'Q'][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 5, b'a'][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x03, 0, 30, 0, 0][..],
            &[
                0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 2, 0xff, 0xfe,
            ][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 0, 9][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x22, 0, 30, 0, 0][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x42, 0, 30, 0, 0, 0, 0][..],
            &[
                0, 4, b'M', b'Q', b'T', b'T', 4, 0x1e, 0, 30, 0, 0, 0, 1, b'a', 0, 0,
            ][..],
            &[
                0, 4, b'M', b'Q', b'T', b'T', 4, 0x06, 0, 30, 0, 0, 0, 1, b'#', 0, 0,
            ][..],
            &[
                0, 4, b'M', b'Q', b'T', b'T', 4, 0x06, 0, 30, 0, 0, 0, 3, b'a', b'/', b'b',
            ][..],
            &[0xff, 0xff, 0, 0][..],
        ] {
            assert!(decode(0x10, body).is_err(), "{body:?}");
        }
        assert!(decode(0x11, &connect_body(0x02, "x", &[])).is_err());
    }

    #[test]
    fn reads_publishes_of_each_qos_and_refuses_bad_ones() {
        let mut body = with_len(&[], "/tenants/r1/replies");
        body.extend([0, 7]);
        body.extend(b"yes");
        assert_eq!(
            decode(0x33, &body),
            Ok(Packet::Publish(Publish {
                topic: "/tenants/r1/replies".into(),
                payload: Bytes::from_static(b"yes"),
                qos: QoS::AtLeastOnce,
                retain: true,
                packet_id: Some(7),
            }))
        );
        let Ok(Packet::Publish(at_most_once)) = decode(0x30, &body) else {
            panic!("QoS 0 publish")
        };
        assert_eq!(at_most_once.packet_id, None);
        assert_eq!(&at_most_once.payload[..], &[0, 7, b'y', b'e', b's']);
        for (first, body) in [
            (0x36, body.clone()),
            (0x32, with_len(&[], "/tenants/r1/replies")),
            (0x32, with_len(&[], "a").into_iter().chain([0, 0]).collect()),
            (0x30, with_len(&[], "")),
            (0x30, with_len(&[], "a/+/b")),
            (0x30, with_len(&[], "a/#")),
            (0x30, vec![0, 9, b'a']),
        ] {
            assert!(decode(first, &body).is_err(), "{first:#x} {body:?}");
        }
    }

    #[test]
    fn reads_subscribes_and_unsubscribes() {
        let mut body = with_len(&[0, 3], "/tenants/r1/edge/#");
        body.push(1);
        body = with_len(&body, "a/+/c");
        body.push(2);
        assert_eq!(
            decode(0x82, &body),
            Ok(Packet::Subscribe {
                packet_id: 3,
                filters: vec![
                    ("/tenants/r1/edge/#".into(), QoS::AtLeastOnce),
                    ("a/+/c".into(), QoS::ExactlyOnce),
                ],
            })
        );
        assert_eq!(
            decode(0xa2, &with_len(&[0, 4], "a/b")),
            Ok(Packet::Unsubscribe {
                packet_id: 4,
                filters: vec!["a/b".into()],
            })
        );
        for (first, body) in [
            (0x80, body.clone()),
            (0x82, vec![0, 1]),
            (0x82, vec![0, 0, 0, 1, b'a', 0]),
            (0x82, with_len(&[0, 1], "a")),
            (
                0x82,
                with_len(&[0, 1], "a").into_iter().chain([3]).collect(),
            ),
            (
                0x82,
                with_len(&[0, 1], "a/#/b").into_iter().chain([0]).collect(),
            ),
            (
                0x82,
                with_len(&[0, 1], "a+").into_iter().chain([0]).collect(),
            ),
            (0xa2, vec![0, 1]),
        ] {
            assert!(decode(first, &body).is_err(), "{first:#x} {body:?}");
        }
    }

    #[test]
    fn reads_the_small_packets() {
        assert_eq!(decode(0x40, &[0, 9]), Ok(Packet::PubAck(9)));
        assert_eq!(decode(0x62, &[1, 0]), Ok(Packet::PubRel(256)));
        assert_eq!(decode(0xc0, &[]), Ok(Packet::PingReq));
        assert_eq!(decode(0xe0, &[]), Ok(Packet::Disconnect));
        for (first, body) in [
            (0x40, &[0, 0][..]),
            (0x40, &[0][..]),
            (0x60, &[0, 1][..]),
            (0xc0, &[0][..]),
            (0xe1, &[][..]),
            (0x20, &[0, 0][..]),
            (0x90, &[0, 1, 0][..]),
            (0x00, &[][..]),
            (0xf0, &[][..]),
        ] {
            assert!(decode(first, body).is_err(), "{first:#x} {body:?}");
        }
    }

    #[test]
    fn frames_are_read_once_their_length_has_arrived() {
        assert_eq!(frame(&[0x30], 100), Ok(None));
        assert_eq!(frame(&[0x30, 5], 100), Ok(Some((2, 5))));
        assert_eq!(frame(&[0x30, 0x80], 1000), Ok(None));
        assert_eq!(frame(&[0x30, 0x80, 0x01], 1000), Ok(Some((3, 128))));
        assert_eq!(
            frame(&[0x30, 0xff, 0x01], 100),
            Err(Malformed::TooLarge(255))
        );
        assert!(frame(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX).is_err());
    }

    #[test]
    fn encodes_what_the_broker_sends() {
        let packet = encode_publish("a/b", b"xy", QoS::AtLeastOnce, true, Some(258));
        assert_eq!(
            &packet[..],
            &[0x33, 9, 0, 3, b'a', b'/', b'b', 1, 2, b'x', b'y']
        );
        let long = encode_publish("t", &[7; 200], QoS::AtMostOnce, false, None);
        assert_eq!(&long[..3], &[0x30, (203 % 128) | 0x80, 1]);
        assert_eq!(long.len(), 3 + 203);
        assert_eq!(
            decode(long[0], &long[3..]).map(|p| matches!(p, Packet::Publish(_))),
            Ok(true)
        );
        assert_eq!(
            &suback(5, &[QoS::AtLeastOnce, QoS::AtMostOnce])[..],
            &[0x90, 4, 0, 5, 1, 0]
        );
        assert_eq!(ack(PUBACK, 513), [0x40, 2, 2, 1]);
        assert_eq!(connack(ConnectCode::UnacceptableProtocol), [0x20, 2, 0, 1]);
    }

    #[test]
    fn filters_match_topics_as_mqtt_says() {
        for (filter, topic, expected) in [
            ("/tenants/r1/edge/#", "/tenants/r1/edge/offers/a1", true),
            ("/tenants/r1/edge/#", "/tenants/r1/edge", true),
            ("/tenants/r1/edge/#", "/tenants/r12/edge/acks", false),
            ("/tenants/+/location", "/tenants/r1/location", true),
            ("/tenants/+/location", "/tenants/r1/location/x", false),
            ("/tenants/+/owntracks/#", "/tenants/r1/owntracks/u/d", true),
            ("a/+", "a/", true),
            ("a/+", "a", false),
            ("#", "a/b/c", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("a/b", "a/b", true),
            ("a/b", "a/b/", false),
        ] {
            assert_eq!(matches(filter, topic), expected, "{filter} {topic}");
        }
        assert!(is_topic_filter("/tenants/+/edge/#"));
        assert!(is_topic_filter("#"));
        assert!(!is_topic_filter("a/#/b"));
        assert!(!is_topic_filter("a/b#"));
        assert!(!is_topic_filter(""));
    }
}
