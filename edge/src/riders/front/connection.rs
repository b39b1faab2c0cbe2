//! The packets of an accepted MQTT session: CONNACK, then the device's packets answered whole
//! and in order (QoS 1 and 2 acknowledgements, subscriptions, pings) while the hub's messages
//! for it are written out, within the inflight limit and the keep-alive deadline.

use std::collections::HashSet;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::scope::Scope;
use super::{READ_BUFFER, Refused};
use crate::riders::hub::{Hub, Message};
use crate::riders::mqtt::{self, ConnectCode, Malformed, Packet, QoS};

/// QoS 1 messages sent to a device and not yet acknowledged, and QoS 2 messages from it not
/// yet released, at most; past the first the session waits for PUBACKs before sending more.
const MAX_INFLIGHT: usize = 32;

/// How a connection ended: whether its will is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The device sent DISCONNECT: no will.
    Disconnected,
    /// Anything else (the device went away or fell silent, the edge cut it).
    Dropped,
}

/// After CONNECT / CONNACK, what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Disconnect,
}

/// One accepted connection's MQTT state.
pub(super) struct Connection<'a> {
    pub(super) hub: &'a Hub,
    pub(super) number: u64,
    pub(super) scope: Scope,
    pub(super) max_packet: usize,
    /// The next packet identifier to try for a QoS 1 message to the device.
    pub(super) next_id: u16,
    /// QoS 1 messages sent and not yet acknowledged.
    pub(super) inflight: HashSet<u16>,
    /// QoS 2 messages received (and delivered) whose PUBREL has not come yet.
    pub(super) unreleased: HashSet<u16>,
}

impl Connection<'_> {
    /// Sends CONNACK, then reads and answers the device's packets and writes what the hub
    /// queues for it, until DISCONNECT, the device goes away or falls silent, a bad packet, or
    /// `cut`. Packets are acted on whole and in order; a packet's scope is checked before
    /// anything else sees it.
    pub(super) async fn run<R, W>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        mut buf: BytesMut,
        queue: &mut mpsc::Receiver<Message>,
        keep_alive: Option<Duration>,
        cut: &CancellationToken,
    ) -> Result<Ending, Refused>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        write(writer, &mqtt::connack(ConnectCode::Accepted)).await?;
        let mut deadline = keep_alive.map(|k| tokio::time::Instant::now() + k);
        loop {
            while let Some((header, len)) = mqtt::frame(&buf, self.max_packet)? {
                if buf.len() < header + len {
                    break;
                }
                let packet = mqtt::decode(buf[0], &buf[header..header + len])?;
                buf.advance(header + len);
                if let Some(keep_alive) = keep_alive {
                    deadline = Some(tokio::time::Instant::now() + keep_alive);
                }
                if self.handle(packet, writer).await? == Flow::Disconnect {
                    return Ok(Ending::Disconnected);
                }
            }
            if buf.is_empty() && buf.capacity() > 4 * READ_BUFFER {
                // A large packet went through: do not keep its buffer for the connection's life.
                buf = BytesMut::with_capacity(READ_BUFFER);
            } else if buf.capacity() - buf.len() < READ_BUFFER / 4 {
                buf.reserve(READ_BUFFER);
            }
            let silence = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cut.cancelled() => return Ok(Ending::Dropped),
                read = reader.read_buf(&mut buf) => {
                    if read.map_err(Refused::Io)? == 0 {
                        return Ok(Ending::Dropped);
                    }
                }
                Some(message) = queue.recv(), if self.inflight.len() < MAX_INFLIGHT => {
                    self.send(writer, &message).await?;
                }
                () = silence => {
                    return Err(Refused::Protocol("no packet within 1.5 times the keep-alive"));
                }
            }
        }
    }

    async fn handle<W: AsyncWrite + Unpin>(
        &mut self,
        packet: Packet,
        writer: &mut W,
    ) -> Result<Flow, Refused> {
        self.scope.check(&packet)?;
        match packet {
            Packet::Connect(_) => return Err(Malformed::Shape("a second CONNECT").into()),
            Packet::Publish(publish) => match (publish.qos, publish.packet_id) {
                (QoS::ExactlyOnce, Some(id)) => {
                    // Delivered once, at the first copy; a resent copy before PUBREL is not.
                    if !self.unreleased.contains(&id) {
                        if self.unreleased.len() >= MAX_INFLIGHT {
                            return Err(Refused::Protocol(
                                "too many QoS 2 messages awaiting PUBREL",
                            ));
                        }
                        self.unreleased.insert(id);
                        self.forward(&publish.topic, publish.payload, publish.qos)
                            .await?;
                    }
                    write(writer, &mqtt::ack(mqtt::PUBREC, id)).await?;
                }
                (QoS::AtLeastOnce, Some(id)) => {
                    self.forward(&publish.topic, publish.payload, publish.qos)
                        .await?;
                    write(writer, &mqtt::ack(mqtt::PUBACK, id)).await?;
                }
                _ => {
                    self.forward(&publish.topic, publish.payload, publish.qos)
                        .await?;
                }
            },
            Packet::PubAck(id) => {
                self.inflight.remove(&id);
            }
            Packet::PubRec(_) | Packet::PubComp(_) => {
                return Err(Refused::Protocol(
                    "PUBREC or PUBCOMP, but the broker sends nothing at QoS 2",
                ));
            }
            Packet::PubRel(id) => {
                self.unreleased.remove(&id);
                write(writer, &mqtt::ack(mqtt::PUBCOMP, id)).await?;
            }
            Packet::Subscribe { packet_id, filters } => {
                let (granted, retained) = self.hub.subscribe(self.number, &filters);
                write(writer, &mqtt::suback(packet_id, &granted)).await?;
                for message in &retained {
                    self.send(writer, message).await?;
                }
            }
            Packet::Unsubscribe { packet_id, filters } => {
                self.hub.unsubscribe(self.number, &filters);
                write(writer, &mqtt::ack(mqtt::UNSUBACK, packet_id)).await?;
            }
            Packet::PingReq => write(writer, &mqtt::PINGRESP).await?,
            Packet::Disconnect => return Ok(Flow::Disconnect),
        }
        Ok(Flow::Continue)
    }

    async fn forward(&self, topic: &str, payload: Bytes, qos: QoS) -> Result<(), Refused> {
        if self.hub.publish_from_client(topic, payload, qos).await {
            Ok(())
        } else {
            Err(Refused::Protocol("the edge is shutting down"))
        }
    }

    async fn send<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        message: &Message,
    ) -> Result<(), Refused> {
        let packet_id = (message.qos != QoS::AtMostOnce).then(|| self.next_packet_id());
        if let Some(id) = packet_id {
            self.inflight.insert(id);
        }
        let packet = mqtt::encode_publish(
            &message.topic,
            &message.payload,
            message.qos,
            message.retain,
            packet_id,
        );
        write(writer, &packet).await
    }

    /// A packet identifier (1..=65535) not in flight.
    fn next_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_id;
            self.next_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.contains(&id) {
                return id;
            }
        }
    }
}

pub(super) async fn write<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
) -> Result<(), Refused> {
    writer.write_all(bytes).await.map_err(Refused::Io)?;
    writer.flush().await.map_err(Refused::Io)
}
