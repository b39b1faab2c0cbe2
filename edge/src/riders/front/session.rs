//! A connection's life from CONNECT to its end: CONNECT read within its timeout, the
//! connection registered (taking over a live one with the same rider and client id) and opened
//! in the hub, and its last will published unless it ended with DISCONNECT. The packets in
//! between are [`super::connection`]'s.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::connection::{Connection, Ending, write};
use super::scope::Scope;
use super::tls::Identity;
use super::{Front, Live, READ_BUFFER, Refused};
use crate::riders::hub::Hub;
use crate::riders::mqtt::{self, ConnectCode, Malformed, Packet};

/// How long a device may take to send CONNECT after connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a taking-over connection waits for the one it replaces to end.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// Connection numbers, unique for the life of the process (across all listeners).
static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

impl Front {
    /// Reads CONNECT, registers the connection (taking over a live one with the same rider and
    /// client id) and serves it until it ends; then publishes its will unless it ended with
    /// DISCONNECT.
    pub(super) async fn session<C>(
        &self,
        client: C,
        peer: SocketAddr,
        identity: Option<Identity>,
    ) -> Result<(), Refused>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut reader, mut writer) = tokio::io::split(client);
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        let read = read_connect(&mut reader, &mut buf, self.inner.max_packet);
        let connect = match tokio::time::timeout(CONNECT_TIMEOUT, read).await {
            Err(_) => return Err(Refused::ConnectTimeout(CONNECT_TIMEOUT)),
            Ok(Err(Refused::Malformed(protocol @ Malformed::Protocol { .. }))) => {
                let refusal = mqtt::connack(ConnectCode::UnacceptableProtocol);
                let _ = write(&mut writer, &refusal).await;
                return Err(protocol.into());
            }
            Ok(connect) => connect?,
        };
        let scope = Scope::for_identity(identity.as_ref());
        if let Some(will) = &connect.will
            && !scope.allows(&will.topic)
        {
            return Err(Refused::OutOfScope("will topic", will.topic.clone()));
        }
        if connect.client_id.is_empty() && !connect.clean_session {
            let _ = write(&mut writer, &mqtt::connack(ConnectCode::IdentifierRejected)).await;
            return Err(Refused::EmptyClientId);
        }
        let number = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        let rider = identity.as_ref().map(|i| i.rider.clone());
        let (cut, done, replaced) = self.register(number, rider.clone(), &connect.client_id);
        // Dropped last: a connection taking this one over waits for it, and so for the will.
        let _done = done.drop_guard();
        let _registered = Deregister {
            front: self,
            number,
        };
        for old in replaced {
            old.cut.cancel();
            if tokio::time::timeout(TAKEOVER_TIMEOUT, old.done.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(client_id = %connect.client_id, "the replaced connection did not close in time");
            }
        }
        let hub = &self.inner.hub;
        let (queue_tx, mut queue) = mpsc::channel(self.inner.queue);
        if !hub.open(number, queue_tx, cut.clone()) {
            let _ = write(&mut writer, &mqtt::connack(ConnectCode::ServerUnavailable)).await;
            return Err(Refused::Full(self.inner.max_connections));
        }
        let _opened = Opened { hub, number };
        tracing::debug!(listener = self.inner.name, %peer, rider = ?rider, client_id = %connect.client_id, number, "connected");
        let mut connection = Connection {
            hub,
            number,
            scope,
            max_packet: self.inner.max_packet,
            next_id: 1,
            inflight: HashSet::new(),
            unreleased: HashSet::new(),
        };
        // 1.5 times the keep-alive, as MQTT 3.1.1 section 3.1.2.10 says.
        let keep_alive = (connect.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
        let ended = connection
            .run(&mut reader, &mut writer, buf, &mut queue, keep_alive, &cut)
            .await;
        let ended = match ended {
            // A device that hangs up, even mid-packet, is not worth a warning.
            Err(Refused::Io(error)) => {
                tracing::debug!(%error, number, "connection ended");
                Ok(Ending::Dropped)
            }
            ended => ended,
        };
        if let Some(will) = connect.will
            && !matches!(ended, Ok(Ending::Disconnected))
        {
            hub.publish_from_client(&will.topic, will.payload, will.qos)
                .await;
        }
        ended.map(|_| ())
    }

    /// Records a live connection and returns its tokens and the live connections it replaces.
    fn register(
        &self,
        number: u64,
        rider: Option<String>,
        client_id: &str,
    ) -> (CancellationToken, CancellationToken, Vec<Live>) {
        let cut = self.inner.shutdown.child_token();
        let done = CancellationToken::new();
        let mut replaced = Vec::new();
        if let Ok(mut live) = self.inner.live.lock() {
            if !client_id.is_empty() {
                for entry in live.values() {
                    if entry.rider == rider && entry.client_id == client_id {
                        replaced.push(Live {
                            rider: entry.rider.clone(),
                            client_id: entry.client_id.clone(),
                            cut: entry.cut.clone(),
                            done: entry.done.clone(),
                        });
                    }
                }
            }
            live.insert(
                number,
                Live {
                    rider,
                    client_id: client_id.to_owned(),
                    cut: cut.clone(),
                    done: done.clone(),
                },
            );
        }
        (cut, done, replaced)
    }
}

/// Removes a connection from the live set when its task ends, however it ends.
struct Deregister<'a> {
    front: &'a Front,
    number: u64,
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        if let Ok(mut live) = self.front.inner.live.lock() {
            live.remove(&self.number);
        }
    }
}

/// Removes a connection and its subscriptions from the hub when its task ends.
struct Opened<'a> {
    hub: &'a Hub,
    number: u64,
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        self.hub.close(self.number);
    }
}

/// Reads until `buf` starts with a whole packet, which must be an MQTT 3.1.1 CONNECT of at
/// most `max` bytes; what follows it stays in `buf`.
async fn read_connect<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<mqtt::Connect, Refused> {
    loop {
        if buf.first().is_some_and(|&first| first != 0x10) {
            return Err(Refused::NotConnect);
        }
        if let Some((header, len)) = mqtt::frame(buf, max)?
            && buf.len() >= header + len
        {
            let packet = mqtt::decode(buf[0], &buf[header..header + len])?;
            buf.advance(header + len);
            return match packet {
                Packet::Connect(connect) => Ok(connect),
                _ => Err(Refused::NotConnect),
            };
        }
        if buf.capacity() - buf.len() < READ_BUFFER / 4 {
            buf.reserve(READ_BUFFER);
        }
        match reader.read_buf(buf).await {
            Ok(0) => return Err(Refused::Closed),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Refused::Closed);
            }
            Err(error) => return Err(Refused::Io(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_packet(client_id: &str) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
        body.extend_from_slice(&u16::try_from(client_id.len()).unwrap_or(0).to_be_bytes());
        body.extend_from_slice(client_id.as_bytes());
        let mut packet = vec![0x10, u8::try_from(body.len()).unwrap_or(0)];
        packet.extend(body);
        packet
    }

    #[tokio::test]
    async fn read_connect_leaves_what_follows_and_refuses_other_first_packets() {
        let mut stream = connect_packet("phone");
        stream.extend([0xc0, 0]);
        let mut buf = BytesMut::new();
        let connect = read_connect(&mut &stream[..], &mut buf, 100).await;
        assert_eq!(connect.ok().map(|c| c.client_id), Some("phone".to_owned()));
        assert_eq!(&buf[..], &[0xc0, 0], "the PINGREQ after CONNECT is kept");

        for (bytes, refused) in [
            (&[0x30, 2, 0, 0][..], "NotConnect"),
            (&[0x10, 0xff, 0xff, 0xff, 0x7f][..], "TooLarge"),
            (&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01][..], "Shape"),
            (&[0x10, 20, 0, 4][..], "Closed"),
            (&[0x10, 2, 0, 4][..], "Shape"),
        ] {
            let mut buf = BytesMut::new();
            let error = read_connect(&mut &bytes[..], &mut buf, 100)
                .await
                .err()
                .map(|e| format!("{e:?}"));
            assert!(
                error.as_deref().is_some_and(|e| e.contains(refused)),
                "{bytes:?}: {error:?}"
            );
        }
    }
}
