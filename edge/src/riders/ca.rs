//! The store's small certificate authority: the one identity riders' devices and the edge
//! trust, with no cloud round trip at enrolment.
//!
//! The riders' broker (rumqttd, `super::broker`) trusts client certificates issued by this CA
//! and takes the rider id (its tenant) from the subject's Organization, so each rider gets a certificate with
//! `O=<rider id>` from this CA, confining its device to `/tenants/<rider id>/`.
//! Certificates are X.509 v3 with `CA:FALSE` and `extendedKeyUsage=clientAuth` (rustls refuses
//! anything else with an unhelpful handshake error). The CA key stays in `ca_dir` (mode 0600);
//! the server certificate is re-issued at every start so its names follow the configuration
//! (rustls clients refuse an IP address as SNI, so devices connect by host name).
//!
//! Enrolment spends a one-time code whose SHA-256 the cloud put in the roster; the edge records
//! spent codes locally because the roster is cloud-owned. Revocation is per rider (see
//! [`revoke`] and the README for why and how it is enforced).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use flashkart_sync::StoreDb;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rusqlite::OptionalExtension;
use sha2::{Digest, Sha256};

use super::clock;
use super::topics::is_rider_id;
use crate::riders::Error;

pub(crate) const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
pub(crate) const SERVER_CERT: &str = "server.pem";
pub(crate) const SERVER_KEY: &str = "server.key";

/// The store CA, loaded from (or created in) its directory.
pub struct StoreCa {
    dir: PathBuf,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    validity_days: u32,
}

impl std::fmt::Debug for StoreCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The store's TLS listeners' certificate and key (PEM), also written to `ca_dir` where an
/// operator can inspect them.
#[derive(Clone)]
pub struct ServerIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// How the rider's key pair is provided at enrolment.
#[derive(Debug, Clone)]
pub enum ClientKey {
    /// A PKCS#10 certificate signing request in PEM: the private key never leaves the device.
    /// Only its public key is used; the subject and extensions are the CA's choice.
    Csr(String),
    /// The edge generates the key pair (for devices that cannot make a CSR, and the simulator).
    Generate,
}

/// What an enrolled device installs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertBundle {
    pub rider_id: String,
    /// Hex serial number, as recorded in `rider_certs`.
    pub serial: String,
    pub not_after: String,
    pub cert_pem: String,
    /// The private key, when the edge generated it.
    pub key_pem: Option<String>,
    /// The store CA certificate, to verify the broker.
    pub ca_pem: String,
}

impl StoreCa {
    /// Loads the CA in `dir`, creating it (named after the store) if there is none.
    pub fn load_or_create(dir: &Path, store_id: &str, validity_days: u32) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let (ca_pem, key) = if cert_path.exists() && key_path.exists() {
            let ca_pem = read(&cert_path)?;
            let key = KeyPair::from_pem(&read(&key_path)?)?;
            (ca_pem, key)
        } else {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            params.distinguished_name = name(&format!("FlashKart store {store_id} rider CA"));
            params
                .distinguished_name
                .push(DnType::OrganizationName, "FlashKart");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
            params.serial_number = Some(serial());
            let cert = params.self_signed(&key)?;
            write_private(&key_path, &key.serialize_pem())?;
            write(&cert_path, &cert.pem())?;
            tracing::info!(dir = %dir.display(), "created the store's rider CA");
            (cert.pem(), key)
        };
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ca_pem,
            issuer,
            validity_days,
        })
    }

    /// The CA certificate in PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// SHA-256 (hex) of the CA certificate's DER: what an enrolment QR code pins, so a phone
    /// can tell the store's HTTPS listener from an impostor before it holds the CA.
    pub fn ca_sha256(&self) -> Result<String, Error> {
        let der = rustls_pemfile::certs(&mut self.ca_pem.as_bytes())
            .next()
            .ok_or_else(|| Error::Broker("the store CA file holds no certificate".into()))?
            .map_err(|source| io(&self.dir.join(CA_CERT), source))?;
        Ok(hex(&Sha256::digest(&der)))
    }

    /// Issues the riders' TLS listener's certificate for `localhost` and `names`, and writes it
    /// and its key to `ca_dir`.
    pub fn issue_server_identity(&self, names: &[String]) -> Result<ServerIdentity, Error> {
        let mut sans = vec!["localhost".to_owned()];
        sans.extend(names.iter().filter(|n| *n != "localhost").cloned());
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = name("FlashKart store broker");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(825);
        params.serial_number = Some(serial());
        let cert = params.signed_by(&key, &self.issuer)?;
        let identity = ServerIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        write_private(&self.dir.join(SERVER_KEY), &identity.key_pem)?;
        write(&self.dir.join(SERVER_CERT), &identity.cert_pem)?;
        Ok(identity)
    }

    /// Signs a client certificate for `rider_id` (no bookkeeping: see [`enrol`]).
    pub fn issue(&self, rider_id: &str, key: &ClientKey) -> Result<CertBundle, Error> {
        if !is_rider_id(rider_id) {
            return Err(Error::InvalidRiderId(rider_id.to_owned()));
        }
        let serial = serial();
        let serial_hex = hex(&serial.to_bytes());
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, format!("rider {rider_id}"));
        subject.push(DnType::OrganizationName, rider_id);
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        let not_after = now + time::Duration::days(i64::from(self.validity_days));
        params.not_after = not_after;
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        let (cert, key_pem) = match key {
            ClientKey::Csr(pem) => {
                let mut csr = CertificateSigningRequestParams::from_pem(pem)
                    .map_err(|e| Error::BadCsr(e.to_string()))?;
                csr.params = params;
                (csr.signed_by(&self.issuer)?, None)
            }
            ClientKey::Generate => {
                let pair = KeyPair::generate()?;
                let cert = params.signed_by(&pair, &self.issuer)?;
                (cert, Some(pair.serialize_pem()))
            }
        };
        let not_after = clock::from_unix_ms(not_after.unix_timestamp().saturating_mul(1000));
        Ok(CertBundle {
            rider_id: rider_id.to_owned(),
            serial: serial_hex,
            not_after,
            cert_pem: cert.pem(),
            key_pem,
            ca_pem: self.ca_pem.clone(),
        })
    }
}

/// Enrols a rider's device: checks the one-time `code` against the roster (active rider, code
/// not spent, rider not revoked here), issues the certificate and records it and the spent code
/// in one transaction. HTTP-free; the daemon puts it behind its enrolment endpoint.
pub async fn enrol(
    db: &StoreDb,
    ca: &StoreCa,
    rider_id: &str,
    code: &str,
    key: ClientKey,
) -> Result<CertBundle, Error> {
    let bundle = ca.issue(rider_id, &key)?;
    let code_sha256 = hex(&Sha256::digest(code.trim().as_bytes()));
    let record = bundle.clone();
    let bundle = db
        .write(move |conn| {
            let roster: Option<(bool, Option<String>, Option<String>)> = conn
                .query_row(
                    "SELECT active, enrolment_code_sha256, enrolment_code_expires_at
                     FROM riders WHERE id = ?1",
                    [&record.rider_id],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let Some((true, expected, expires_at)) = roster else {
                return Err(Error::UnknownRider(record.rider_id.clone()));
            };
            let revoked: bool = conn.query_row(
                "SELECT count(*) > 0 FROM rider_revocations WHERE rider_id = ?1",
                [&record.rider_id],
                |row| row.get(0),
            )?;
            if revoked {
                return Err(Error::Revoked(record.rider_id.clone()));
            }
            // Only the roster's current code can work. Without one that is unspent and
            // unexpired there is nothing to guess, which the throttle needs to know.
            let Some(expected) = expected.map(|e| e.to_ascii_lowercase()) else {
                return Err(Error::NoPendingCode);
            };
            let spent: bool = conn.query_row(
                "SELECT count(*) > 0 FROM rider_enrolment_codes_used WHERE code_sha256 = ?1",
                [&expected],
                |row| row.get(0),
            )?;
            let now = clock::now();
            // Timestamps share one format, so they compare as text; a code without an expiry
            // was put on the roster before HQ issued expiring codes.
            let expired = expires_at.as_ref().filter(|at| at.as_str() <= now.as_str());
            if spent || expired.is_some() {
                if let Some(expires_at) = expired
                    && expected == code_sha256
                {
                    tracing::warn!(rider = %record.rider_id, %expires_at, "enrolment refused: the code expired");
                }
                return Err(Error::NoPendingCode);
            }
            if expected != code_sha256 {
                return Err(Error::BadEnrolmentCode);
            }
            conn.execute(
                "INSERT INTO rider_enrolment_codes_used (code_sha256, rider_id, used_at)
                 VALUES (?1, ?2, ?3)",
                (&code_sha256, &record.rider_id, &now),
            )?;
            conn.execute(
                "INSERT INTO rider_certs (serial, rider_id, issued_at, not_after)
                 VALUES (?1, ?2, ?3, ?4)",
                (&record.serial, &record.rider_id, &now, &record.not_after),
            )?;
            Ok(record)
        })
        .await?;
    tracing::info!(rider = %bundle.rider_id, serial = %bundle.serial, "rider enrolled");
    Ok(bundle)
}

/// What `store_certificates` calls the riders' CA.
pub const RIDERS_CA_ROW: &str = "riders-ca";

/// Records the riders' CA fingerprint in `store_certificates` (synced to the cloud, where HQ
/// pins it in enrolment QR codes). Writes only when it changed, so a restart adds no change
/// to sync.
pub async fn record_fingerprint(db: &StoreDb, store_id: &str, sha256: &str) -> Result<(), Error> {
    let (store_id, sha256) = (store_id.to_owned(), sha256.to_owned());
    db.write(move |conn| {
        let known: Option<String> = conn
            .query_row(
                "SELECT sha256 FROM store_certificates WHERE id = ?1 AND store_id = ?2",
                (RIDERS_CA_ROW, &store_id),
                |row| row.get(0),
            )
            .optional()?;
        if known.as_deref() != Some(sha256.as_str()) {
            conn.execute(
                "INSERT INTO store_certificates (id, store_id, sha256, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET store_id = excluded.store_id,
                     sha256 = excluded.sha256, updated_at = excluded.updated_at",
                (RIDERS_CA_ROW, &store_id, &sha256, clock::now()),
            )?;
            tracing::info!(store_id, %sha256, "riders' CA fingerprint recorded for HQ");
        }
        Ok::<_, Error>(())
    })
    .await
}

/// Revokes a rider at this store: every certificate issued to it is marked revoked and the
/// rider is listed in `rider_revocations`. The running service stops listening to the rider
/// and withdraws its offers ([`crate::riders::Riders::revoke`] also tells it at once).
///
/// The TLS handshake itself takes no CRL: a revoked certificate completes it, and the broker's
/// tenant check then refuses the connection at CONNECT (CONNACK "not authorized"; the service
/// also closes the rider's live connections); anything that still reaches the service from the
/// rider is dropped.
pub async fn revoke(db: &StoreDb, rider_id: &str, reason: &str) -> Result<(), Error> {
    let rider = rider_id.to_owned();
    let reason = reason.to_owned();
    db.write(move |conn| {
        let now = clock::now();
        conn.execute(
            "INSERT INTO rider_revocations (rider_id, revoked_at, reason) VALUES (?1, ?2, ?3)
             ON CONFLICT (rider_id) DO UPDATE SET reason = excluded.reason",
            (&rider, &now, &reason),
        )?;
        conn.execute(
            "UPDATE rider_certs SET revoked_at = ?2 WHERE rider_id = ?1 AND revoked_at IS NULL",
            (&rider, &now),
        )?;
        Ok::<_, Error>(())
    })
    .await?;
    tracing::info!(rider = rider_id, "rider revoked");
    Ok(())
}

/// The SHA-256 (hex) the roster stores for an enrolment code.
pub fn enrolment_code_sha256(code: &str) -> String {
    hex(&Sha256::digest(code.trim().as_bytes()))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// A fresh, positive, unique serial number (a UUIDv7: time-ordered, first bit clear).
fn serial() -> SerialNumber {
    SerialNumber::from_slice(uuid::Uuid::now_v7().as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| io(path, source))
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| io(path, source))
}

fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| io(path, source))?;
    file.write_all(contents.as_bytes())
        .map_err(|source| io(path, source))
}
