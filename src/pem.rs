//! Certificate files read and checked: the pair served on `listen` and the
//! CA certificates the upstream is verified against.
//!
//! Reading PEM files is all this module does. The config checks both kinds
//! of file at load time (so a start or a `check` with a bad file fails), and
//! the TLS module keeps the served pair live and hands the CA to pingora's
//! connector; keeping the reading here lets the config use it without
//! depending on the certificate resolver, which itself depends on the
//! config.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use pingora::protocols::tls::CaType;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{CertificateDer, CryptoProvider, PrivateKeyDer, RootCertStore, RusTlsError};
use pingora::utils::tls::WrappedX509;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate (with its chain) and the private key that matches it.
#[derive(Clone)]
pub struct Pair {
    pub(crate) certified: Arc<CertifiedKey>,
    /// Digest of the two files as read, to tell a change from a re-read.
    pub(crate) fingerprint: [u8; 32],
    /// The leaf's subject, e.g. `CN=api.example.com`.
    pub subject: String,
    /// The leaf's serial number, hex bytes separated by `:`.
    pub serial: String,
    /// The leaf's validity, in Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl fmt::Debug for Pair {
    // The key stays out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pair({self})")
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "subject {}, serial {}, valid until {}",
            self.subject,
            self.serial,
            timestamp(self.not_after)
        )
    }
}

impl Pair {
    /// Reads and checks the pair in `cert_file` and `key_file`.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Pair, String> {
        let (cert, key) = read_files(cert_file, key_file)?;
        Pair::parse(&cert, &key, cert_file, key_file)
    }

    /// Checks a pair given as PEM text: at least one certificate (the leaf
    /// first, then its chain), a PKCS#8, PKCS#1 or SEC1 private key, and
    /// the key matching the leaf. The paths are for messages.
    pub fn parse(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_file: &Path,
        key_file: &Path,
    ) -> Result<Pair, String> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: not a PEM certificate file ({e})", cert_file.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "{}: no certificate (no PEM `CERTIFICATE` block)",
                cert_file.display()
            ));
        }
        let mut info = None;
        for (i, der) in chain.iter().enumerate() {
            let parsed = X509Certificate::from_der(der).map_err(|e| {
                format!(
                    "{}: certificate {} is not valid X.509 ({e})",
                    cert_file.display(),
                    i + 1
                )
            })?;
            if i == 0 {
                let cert = parsed.1;
                info = Some((
                    cert.subject().to_string(),
                    cert.raw_serial_as_string(),
                    cert.validity().not_before.timestamp(),
                    cert.validity().not_after.timestamp(),
                ));
            }
        }
        let (subject, serial, not_before, not_after) = info.unwrap_or_default();
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
            format!(
                "{}: no usable private key ({e}; a PEM PKCS#8, PKCS#1 or SEC1 key is expected, not encrypted)",
                key_file.display()
            )
        })?;
        let fingerprint = fingerprint(cert_pem, key_pem);
        let certified = CertifiedKey::from_der(chain, key, &*provider()?).map_err(|e| match e {
            RusTlsError::InconsistentKeys(_) => format!(
                "the private key in {} does not match the certificate in {}",
                key_file.display(),
                cert_file.display()
            ),
            e => format!("{}: unusable private key ({e})", key_file.display()),
        })?;
        Ok(Pair {
            certified: Arc::new(certified),
            fingerprint,
            subject,
            serial,
            not_before,
            not_after,
        })
    }

    /// The leaf certificate, DER encoded.
    pub fn leaf(&self) -> &[u8] {
        self.certified.cert.first().map_or(&[], |c| c.as_ref())
    }
}

/// The crypto provider pingora's TLS uses (ring), installed as the process
/// default if nothing else was.
fn provider() -> Result<Arc<CryptoProvider>, String> {
    pingora::tls::install_default_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .ok_or_else(|| "no TLS crypto provider is installed".to_string())
}

pub(crate) fn read_files(cert_file: &Path, key_file: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
    };
    Ok((read(cert_file)?, read(key_file)?))
}

pub(crate) fn fingerprint(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [cert, key] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The CA certificates of `upstream.ca_file`: the only roots the backend's
/// chain is verified against when set.
#[derive(Clone)]
pub struct UpstreamCa {
    pub(crate) certs: Arc<CaType>,
}

impl fmt::Debug for UpstreamCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamCa({} certificate(s))", self.certs.len())
    }
}

impl UpstreamCa {
    /// Reads every certificate of a PEM file. Each must be usable as a
    /// trust anchor, as the connector will use it.
    pub fn load(path: &Path) -> Result<UpstreamCa, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let ders = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: not a PEM certificate file ({e})", path.display()))?;
        if ders.is_empty() {
            return Err(format!(
                "{}: no CA certificate (no PEM `CERTIFICATE` block)",
                path.display()
            ));
        }
        let mut store = RootCertStore::empty();
        let mut certs = Vec::with_capacity(ders.len());
        for (i, der) in ders.into_iter().enumerate() {
            let bad = |e: String| {
                format!(
                    "{}: certificate {} is not usable as a CA ({e})",
                    path.display(),
                    i + 1
                )
            };
            store.add(der.clone()).map_err(|e| bad(e.to_string()))?;
            let wrapped = WrappedX509::try_new(der.to_vec(), |raw| {
                X509Certificate::from_der(raw).map(|(_, cert)| cert)
            })
            .map_err(|e| bad(e.to_string()))?;
            certs.push(wrapped);
        }
        Ok(UpstreamCa {
            certs: Arc::from(certs),
        })
    }
}

/// A Unix time as X.509 tools print it (`Nov 25 10:00:00 2026 +00:00`).
pub(crate) fn timestamp(unix: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
}

#[cfg(test)]
pub(crate) mod tests;
