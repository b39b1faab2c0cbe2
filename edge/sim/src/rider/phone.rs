//! The rider's phone before it rides: reads the enrolment QR code HQ printed for the rider,
//! trades the code for a client certificate at the store, and keeps that identity.
//!
//! As a real phone does, it makes its own key and sends the store only a certificate signing
//! request, so the private key never leaves the device. It talks to the store's enrolment
//! listener over HTTPS only, and trusts it by the QR code: it fetches the store CA, checks its
//! SHA-256 against the code's `ca` fingerprint, and then verifies the listener against that CA
//! before the code leaves the phone. A code issued by HQ reaches the store
//! by sync, so a phone that scans it at once may be told "wrong code" for a moment: it tries
//! again for a while (the store does not count those attempts against it, see the edge's
//! enrolment endpoint), and waits out a `Retry-After` if it is throttled.
//!
//! With a phone directory the identity is kept in `identity.json` there (mode 0600) and reused
//! at the next start, so a restarted simulator does not need a new code.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, KeyPair};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::SimTls;

/// What the QR code starts with; the version says how the rest reads.
const QR_PREFIX: &str = "flashkart-enrol:v1?";
/// How long a phone keeps trying while the code travels from HQ to the store.
const SYNC_PATIENCE: Duration = Duration::from_secs(120);

/// An enrolment QR code's payload: `flashkart-enrol:v1?store=S&rider=R&code=C&ca=F`, where F
/// is the SHA-256 (hex) of the store CA certificate's DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentQr {
    pub store_id: String,
    pub rider_id: String,
    pub code: String,
    pub ca_sha256: String,
}

impl EnrolmentQr {
    /// Parses a payload; every field is required, none may repeat, nothing else may appear.
    pub fn parse(payload: &str) -> Result<Self, PhoneError> {
        let bad = |why: &str| PhoneError::Qr(format!("{why} in `{payload}`"));
        let query = payload
            .trim()
            .strip_prefix(QR_PREFIX)
            .ok_or_else(|| bad("not a FlashKart enrolment code (v1)"))?;
        let (mut store, mut rider, mut code, mut ca) = (None, None, None, None);
        for pair in query.split('&') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad("a field without `=`"))?;
            if value.is_empty()
                || value.len() > 64
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad(&format!(
                    "field `{key}` is not 1-64 letters, digits, - or _"
                )));
            }
            let slot = match key {
                "store" => &mut store,
                "rider" => &mut rider,
                "code" => &mut code,
                "ca" => &mut ca,
                _ => return Err(bad(&format!("unknown field `{key}`"))),
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(bad(&format!("field `{key}` twice")));
            }
        }
        let ca_sha256: String = ca.ok_or_else(|| bad("no CA fingerprint"))?;
        if ca_sha256.len() != 64
            || !ca_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("the CA fingerprint is not 64 lowercase hex digits"));
        }
        Ok(Self {
            store_id: store.ok_or_else(|| bad("no store"))?,
            rider_id: rider.ok_or_else(|| bad("no rider"))?,
            code: code.ok_or_else(|| bad("no code"))?,
            ca_sha256,
        })
    }
}

/// A phone's identity at its store: who it is and what it connects with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub store_id: String,
    pub rider_id: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl Identity {
    /// The TLS material the MQTT client presents.
    pub fn tls(&self) -> SimTls {
        SimTls {
            ca_pem: self.ca_pem.clone(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

/// Why the phone could not get or keep its identity.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    #[error("enrolment QR code: {0}")]
    Qr(String),
    #[error("making the phone's key: {0}")]
    Key(#[from] rcgen::Error),
    #[error("the store: {0}")]
    Http(#[from] reqwest::Error),
    #[error(
        "the enrolment listener's CA is not the one in the QR code (its SHA-256 is {served}): \
         not the store, or the code is for another store"
    )]
    WrongCa { served: String },
    #[error("the enrolment listener sent no CA certificate: {0}")]
    NoCa(String),
    #[error("the store refused the enrolment ({status}): {message}")]
    Refused { status: StatusCode, message: String },
    #[error("the store still refused the code after {0:?} (was it issued for this store?)")]
    NeverSynced(Duration),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Stored {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the phone directory holds rider `{held}`, the QR code is for `{scanned}`")]
    OtherRider { held: String, scanned: String },
    #[error("no identity in the phone directory and no enrolment QR code to get one")]
    NotEnrolled,
}

/// The phone's identity: the one kept in `dir` if there is one (and it is the QR code's
/// rider), else a new one enrolled at `enrol_url` (the store's enrolment listener,
/// `https://host:port`) with `qr`, kept in `dir`.
pub async fn identity(
    enrol_url: &str,
    qr: Option<&EnrolmentQr>,
    dir: Option<&Path>,
) -> Result<Identity, PhoneError> {
    let stored = dir.map(|d| d.join("identity.json"));
    if let Some(path) = &stored
        && path.exists()
    {
        let kept = load(path)?;
        match qr {
            Some(qr) if qr.rider_id != kept.rider_id => {
                return Err(PhoneError::OtherRider {
                    held: kept.rider_id,
                    scanned: qr.rider_id.clone(),
                });
            }
            _ => {
                tracing::info!(rider = %kept.rider_id, path = %path.display(),
                    "using the phone's stored certificate");
                return Ok(kept);
            }
        }
    }
    let qr = qr.ok_or(PhoneError::NotEnrolled)?;
    let identity = enrol(enrol_url, qr).await?;
    if let Some(path) = &stored {
        save(path, &identity)?;
    }
    tracing::info!(rider = %qr.rider_id, store = %qr.store_id, "enrolled: certificate received");
    Ok(identity)
}

/// Makes a key, sends its signing request with the code to the pinned store, and waits out
/// the code's sync.
async fn enrol(enrol_url: &str, qr: &EnrolmentQr) -> Result<Identity, PhoneError> {
    let base = enrol_url.trim_end_matches('/');
    let ca_pem = pinned_ca(base, &qr.ca_sha256).await?;
    let key = KeyPair::generate()?;
    let csr_pem = CertificateParams::default()
        .serialize_request(&key)?
        .pem()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
        .https_only(true)
        .build()?;
    let url = format!("{base}/api/v1/riders/{}/enrol", qr.rider_id);
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let response = http
            .post(&url)
            .json(&json!({ "code": qr.code, "csr_pem": csr_pem }))
            .send()
            .await?;
        let status = response.status();
        if status.is_success() {
            let bundle: serde_json::Value = response.json().await?;
            let field = |name: &str| {
                bundle[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| PhoneError::Refused {
                        status,
                        message: format!("the answer has no `{name}`"),
                    })
            };
            return Ok(Identity {
                store_id: qr.store_id.clone(),
                rider_id: qr.rider_id.clone(),
                cert_pem: field("cert_pem")?,
                key_pem: key.serialize_pem(),
                // The CA this phone pinned, not whatever the answer names.
                ca_pem,
            });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let message = response.text().await.unwrap_or_default();
        let wait = match status {
            // Throttled: the store says how long.
            StatusCode::TOO_MANY_REQUESTS => Duration::from_secs(retry_after.unwrap_or(30)),
            // Not on the roster yet, or the code not synced yet: try again a little later.
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND if message.contains("revoked") => {
                return Err(PhoneError::Refused { status, message });
            }
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                pause = (pause * 2).min(Duration::from_secs(5));
                pause
            }
            _ => return Err(PhoneError::Refused { status, message }),
        };
        if started.elapsed() + wait > SYNC_PATIENCE {
            return Err(PhoneError::NeverSynced(SYNC_PATIENCE));
        }
        tracing::info!(rider = %qr.rider_id, %status, wait_ms = wait.as_millis() as u64,
            "the store refused the code for now (not synced yet?); trying again");
        tokio::time::sleep(wait).await;
    }
}

/// The store CA from the enrolment listener, trusted only because its SHA-256 is the QR code's.
/// This first request cannot verify the listener (the phone has no CA yet), so it sends nothing
/// secret; the CA it fetches is checked by hash before anything is sent under it.
async fn pinned_ca(base: &str, ca_sha256: &str) -> Result<String, PhoneError> {
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .danger_accept_invalid_certs(true)
        .https_only(true)
        .build()?;
    let pem = probe
        .get(format!("{base}/api/v1/riders/ca"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or_else(|| PhoneError::NoCa("no certificate in the answer".into()))?
        .map_err(|e| PhoneError::NoCa(e.to_string()))?;
    let served: String = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if served != ca_sha256 {
        return Err(PhoneError::WrongCa { served });
    }
    Ok(pem)
}

fn load(path: &Path) -> Result<Identity, PhoneError> {
    let text = std::fs::read_to_string(path).map_err(|source| PhoneError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| PhoneError::Stored {
        path: path.to_owned(),
        source,
    })
}

/// Writes the identity (it holds the private key) readable by its owner only.
fn save(path: &Path, identity: &Identity) -> Result<(), PhoneError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PhoneError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = serde_json::to_string_pretty(identity).map_err(|source| PhoneError::Stored {
        path: path.to_owned(),
        source,
    })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_qr_payload_names_store_rider_and_code_once_each() {
        assert_eq!(
            EnrolmentQr::parse(&format!(
                "flashkart-enrol:v1?store=store-1&rider=rider1a&code=ABCDE-FGH23&ca={CA}"
            ))
            .ok(),
            Some(EnrolmentQr {
                store_id: "store-1".into(),
                rider_id: "rider1a".into(),
                code: "ABCDE-FGH23".into(),
                ca_sha256: CA.into(),
            })
        );
        for bad in [
            format!("flashkart-enrol:v2?store=s&rider=r&code=c&ca={CA}"),
            format!("flashkart-enrol:v1?store=s&rider=r&ca={CA}"),
            "flashkart-enrol:v1?store=s&rider=r&code=c".to_owned(),
            format!("flashkart-enrol:v1?store=s&rider=r&code=c&code=d&ca={CA}"),
            format!("flashkart-enrol:v1?store=s&rider=r&code=c&x=1&ca={CA}"),
            format!("flashkart-enrol:v1?store=s&rider=r/../x&code=c&ca={CA}"),
            format!("flashkart-enrol:v1?store=s&rider=&code=c&ca={CA}"),
            format!("flashkart-enrol:v1?store=s&rider=r&code=c&ca={}", &CA[1..]),
            format!(
                "flashkart-enrol:v1?store=s&rider=r&code=c&ca={}",
                CA.to_uppercase()
            ),
        ] {
            assert!(EnrolmentQr::parse(&bad).is_err(), "{bad}");
        }
    }
}
