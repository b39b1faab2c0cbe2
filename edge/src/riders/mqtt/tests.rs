//! Decoding refuses every malformed packet with a value, never a panic.

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
