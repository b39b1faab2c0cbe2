//! A private CA and a `localhost` server certificate signed by it, written as PEM files: what
//! the TLS tests serve, and what a store trusts in place of the system's roots.

use std::path::{Path, PathBuf};

use flashkart_cloud::config::TlsConfig;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`: (the CA's path, the server's
/// TLS config).
pub fn private_pki(dir: &Path) -> (PathBuf, TlsConfig) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (
        ca_path,
        TlsConfig {
            cert: cert_path,
            key: key_path,
        },
    )
}
