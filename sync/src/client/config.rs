//! How the edge reaches the cloud: the sync client's settings, as the edge's config file spells
//! them, with their defaults and the bound on the chunk size the cloud accepts. Apart from the
//! session logic so that the shape of the `[sync]` settings is read in one place.

use std::path::PathBuf;

/// How the edge reaches the cloud. Deserialisable from the edge's config file.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Base URL of the cloud, `https://...` in production, `http://127.0.0.1:...` for the demo.
    pub cloud_url: String,
    /// The store's credential, as issued by HQ when the store was registered.
    pub token: String,
    /// Extra root certificate (PEM) to trust, for a cloud with a private CA.
    pub ca_cert: Option<PathBuf>,
    /// How long one pull waits for cloud changes before answering empty.
    pub long_poll_ms: u64,
    /// Budget of one push or pull, in encoded change bytes (at most [`MAX_CHUNK_BYTES`]).
    pub max_chunk_bytes: usize,
    /// Bodies from this size on are zstd-compressed.
    pub compress_min_bytes: usize,
    /// Most changes merged in one local write, so the store's own writes get in between.
    pub apply_max_changes: usize,
    /// How often the store is checked for new local changes without a nudge.
    pub local_poll_ms: u64,
    /// First retry delay after a failure; doubles up to `backoff_max_ms` (with full jitter).
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Timeout of a request, on top of the long-poll for pulls.
    pub request_timeout_ms: u64,
    /// Speak HTTP/2 from the first byte on plain `http://` (h2c); over TLS, ALPN decides.
    pub http2_prior_knowledge: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            cloud_url: "http://127.0.0.1:7800".into(),
            token: String::new(),
            ca_cert: None,
            long_poll_ms: 25_000,
            max_chunk_bytes: 1 << 20,
            compress_min_bytes: 1024,
            apply_max_changes: 2_000,
            local_poll_ms: 100,
            backoff_initial_ms: 100,
            backoff_max_ms: 30_000,
            request_timeout_ms: 30_000,
            http2_prior_knowledge: true,
        }
    }
}

impl ClientConfig {
    /// Defaults with the cloud's URL and the store's token.
    pub fn new(cloud_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            cloud_url: cloud_url.into(),
            token: token.into(),
            ..Self::default()
        }
    }
}

/// The largest chunk a client may be configured for. A chunk can overrun its budget by the one
/// change that crosses it, and the cloud takes pushes of up to 8 MiB by default.
pub const MAX_CHUNK_BYTES: usize = 4 << 20;
