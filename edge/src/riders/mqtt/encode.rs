//! The packets the broker sends, encoded.
//!
//! Why apart from decoding: what the broker sends is a handful of fixed shapes it builds
//! itself; nothing here has to distrust its input the way decoding a device's bytes does.

use bytes::{BufMut, Bytes, BytesMut};

use super::QoS;

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
