//! The wire of the sync protocol: endpoints, headers and message bodies.
//!
//! Both halves speak protobuf (the messages in `proto/sync.proto`) over HTTP/2. A body larger
//! than a threshold is compressed with zstd and marked `Content-Encoding: zstd`; decoding caps
//! the decompressed size so a small hostile body cannot balloon in memory. Keeping this in one
//! place means the cloud's server and the edge's client cannot drift apart.

use prost::Message;

/// Learn where the cloud's replica stands (POST, [`HelloRequest`](flashkart_proto::sync::HelloRequest)).
pub const HELLO_PATH: &str = "/sync/v1/hello";
/// Send a chunk of the edge's own changes (POST, `PushRequest`).
pub const PUSH_PATH: &str = "/sync/v1/push";
/// Long-poll for the cloud's changes for this store (POST, `PullRequest`).
pub const PULL_PATH: &str = "/sync/v1/pull";
/// Content type of every request and response body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// The one content coding used.
pub const ZSTD: &str = "zstd";
/// Largest body accepted after decompression.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// A body that cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("body is not a valid message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("zstd (corrupt, or larger than the request's limit): {0}")]
    Compression(#[from] std::io::Error),
    #[error("body exceeds the request's limit")]
    TooLarge,
}

/// An encoded body and whether it is zstd-compressed.
#[derive(Debug, Clone)]
pub struct Body {
    pub bytes: Vec<u8>,
    pub compressed: bool,
}

/// Encodes `message`, compressing it when it is at least `compress_min_bytes` long.
pub fn encode<M: Message>(message: &M, compress_min_bytes: usize) -> Result<Body, WireError> {
    let raw = message.encode_to_vec();
    if raw.len() >= compress_min_bytes {
        let bytes = zstd::bulk::compress(&raw, 3)?;
        if bytes.len() < raw.len() {
            return Ok(Body {
                bytes,
                compressed: true,
            });
        }
    }
    Ok(Body {
        bytes: raw,
        compressed: false,
    })
}

/// Decodes a body that is zstd-compressed when `compressed`, of at most [`MAX_BODY_BYTES`].
pub fn decode<M: Message + Default>(bytes: &[u8], compressed: bool) -> Result<M, WireError> {
    decode_limited(bytes, compressed, MAX_BODY_BYTES)
}

/// Decodes a body of at most `max_bytes` once decompressed: a server that takes a few KiB
/// for a request must not inflate a small zstd bomb to the protocol's maximum.
pub fn decode_limited<M: Message + Default>(
    bytes: &[u8],
    compressed: bool,
    max_bytes: usize,
) -> Result<M, WireError> {
    let max_bytes = max_bytes.min(MAX_BODY_BYTES);
    if compressed {
        // Fails too when the content would exceed the limit.
        let raw = zstd::bulk::decompress(bytes, max_bytes)?;
        Ok(M::decode(raw.as_slice())?)
    } else {
        if bytes.len() > max_bytes {
            return Err(WireError::TooLarge);
        }
        Ok(M::decode(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use flashkart_proto::sync::{Cursor, PullRequest};

    use super::*;

    #[test]
    fn round_trips_with_and_without_compression() -> Result<(), WireError> {
        let request = PullRequest {
            cursors: vec![
                Cursor {
                    origin_site_id: vec![7; 16],
                    db_version: 42,
                    seq: 3,
                };
                100
            ],
            wait_ms: 1000,
            max_bytes: 1 << 20,
        };
        let small = encode(&request, usize::MAX)?;
        assert!(!small.compressed);
        let big = encode(&request, 16)?;
        assert!(big.compressed && big.bytes.len() < small.bytes.len());
        assert_eq!(decode::<PullRequest>(&small.bytes, false)?, request);
        assert_eq!(decode::<PullRequest>(&big.bytes, true)?, request);
        assert!(decode::<PullRequest>(&big.bytes[..big.bytes.len() / 2], true).is_err());
        // A small compressed body that would inflate past the caller's limit is refused.
        let limit = small.bytes.len() - 1;
        assert!(decode_limited::<PullRequest>(&big.bytes, true, limit).is_err());
        assert!(decode_limited::<PullRequest>(&small.bytes, false, limit).is_err());
        Ok(())
    }
}
