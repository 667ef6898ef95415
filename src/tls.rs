//! TLS at the edge (SPEC §7): the certificate served on `listen`, kept live
//! and re-read from disk, and the checks of the upstream's certificate.
//!
//! Downstream. [`Certificates`] is the listener's certificate resolver:
//! every handshake takes the pair in service with one `ArcSwap` load, so a
//! renewed pair is presented from the next handshake on, with no restart
//! and no effect on connections already open. A pair read from disk goes
//! into service only when both files read, parse, and the key matches the
//! certificate; otherwise it is refused and the pair in service stays.
//! Versions: pingora's rustls acceptor builds its `ServerConfig` with TLS 1.2
//! and TLS 1.3 only (`builder_with_protocol_versions(&[TLS12, TLS13])`), and
//! rustls implements nothing older, so a TLS 1.0/1.1 client gets a
//! `protocol_version` alert. ALPN offers `h2`, then `http/1.1`; a client
//! without ALPN speaks HTTP/1.1.
//!
//! Upstream. With `upstream.tls: true`, pingora's connector verifies the
//! backend's chain against the system roots, or against only the
//! certificates of `upstream.ca_file`, and its name against `upstream.sni`.
//! [`configure_peer`] hands those settings to each peer;
//! `upstream.insecure_skip_verify` is the one way to switch the checks off.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::tls::CaType;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{
    CertificateDer, ClientHello, CryptoProvider, PrivateKeyDer, ResolvesServerCert, RootCertStore,
    RusTlsError,
};
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{self, Config};

/// A certificate (with its chain) and the private key that matches it.
#[derive(Clone)]
pub struct Pair {
    certified: Arc<CertifiedKey>,
    /// Digest of the two files as read, to tell a change from a re-read.
    fingerprint: [u8; 32],
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

fn read_files(cert_file: &Path, key_file: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
    };
    Ok((read(cert_file)?, read(key_file)?))
}

fn fingerprint(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [cert, key] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// What a [`Certificates::reload`] found.
#[derive(Debug)]
pub enum Reload {
    /// The files hold what was last tried: nothing done.
    Unchanged,
    /// A new pair is in service.
    Reloaded(Arc<Pair>),
    /// The files changed but do not make a usable pair; the pair in service
    /// stays. The message names the file and the problem.
    Refused(String),
}

/// The pair served on `listen`, re-read from its files on demand.
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    live: ArcSwap<Pair>,
    /// Digest of what the files held at the last attempt, good or bad, so
    /// an unchanged bad pair is reported once, not on every poll.
    last: Mutex<[u8; 32]>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("live", &self.live.load())
            .finish()
    }
}

impl Certificates {
    /// Starts with the pair the config loaded.
    pub fn new(tls: &config::Tls) -> Certificates {
        Certificates {
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
            last: Mutex::new(tls.pair.fingerprint),
            live: ArcSwap::from_pointee(tls.pair.clone()),
        }
    }

    /// The pair in service.
    pub fn current(&self) -> Arc<Pair> {
        self.live.load_full()
    }

    /// The directories holding the two files (to be watched).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.cert_file, &self.key_file]
            .iter()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Re-reads the files; puts the pair in service when they changed and
    /// make a usable pair.
    pub fn reload(&self) -> Reload {
        let read = read_files(&self.cert_file, &self.key_file);
        let print = match &read {
            Ok((cert, key)) => fingerprint(cert, key),
            Err(e) => Sha256::digest(e.as_bytes()).into(),
        };
        let Ok(mut last) = self.last.lock() else {
            return Reload::Unchanged;
        };
        if *last == print {
            return Reload::Unchanged;
        }
        *last = print;
        match read.and_then(|(cert, key)| Pair::parse(&cert, &key, &self.cert_file, &self.key_file))
        {
            Ok(pair) => {
                let pair = Arc::new(pair);
                self.live.store(pair.clone());
                Reload::Reloaded(pair)
            }
            Err(e) => Reload::Refused(e),
        }
    }

    /// pingora's settings for the listener: this resolver, HTTP/2 and
    /// HTTP/1.1 by ALPN. (pingora fixes the versions to TLS 1.2 and 1.3.)
    pub fn settings(self: &Arc<Self>) -> pingora::Result<TlsSettings> {
        // The paths are ignored when a resolver is set.
        let mut settings = TlsSettings::intermediate("", "")?;
        settings.set_cert_resolver(self.clone());
        settings.enable_h2();
        Ok(settings)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.live.load().certified.clone())
    }
}

/// The CA certificates of `upstream.ca_file`: the only roots the backend's
/// chain is verified against when set.
#[derive(Clone)]
pub struct UpstreamCa {
    certs: Arc<CaType>,
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

/// Gives a peer built for the default upstream its TLS checks: the CA of
/// `upstream.ca_file` when set (else pingora uses the system roots), and
/// no verification at all only with `insecure_skip_verify`.
pub fn configure_peer(peer: &mut HttpPeer, upstream: &config::Upstream) {
    if !upstream.tls {
        return;
    }
    if let Some(ca) = &upstream.ca {
        peer.options.ca = Some(ca.certs.clone());
    }
    if upstream.insecure_skip_verify {
        peer.options.verify_cert = false;
        peer.options.verify_hostname = false;
    }
}

/// What `check` prints and the start logs about TLS: verification switched
/// off, a certificate expired, not yet valid or close to expiry.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.upstream.tls && config.upstream.insecure_skip_verify {
        warnings.push(format!(
            "upstream.insecure_skip_verify is true: the certificate of {} is NOT verified; \
             anyone on the path can impersonate the backend and read every request, tokens included",
            config.upstream.address_text
        ));
    }
    if let Some(tls) = &config.tls {
        warnings.extend(validity_warning(&tls.pair, &tls.cert_file, unix_now()));
    }
    warnings
}

/// Certificates this close to expiry get a warning.
const EXPIRY_WARNING_SECONDS: i64 = 14 * 24 * 3600;

fn validity_warning(pair: &Pair, cert_file: &Path, now: i64) -> Option<String> {
    let file = cert_file.display();
    if now > pair.not_after {
        Some(format!(
            "{file}: the certificate expired at {}; clients will refuse it",
            timestamp(pair.not_after)
        ))
    } else if now < pair.not_before {
        Some(format!(
            "{file}: the certificate is not valid before {}; clients will refuse it until then",
            timestamp(pair.not_before)
        ))
    } else if pair.not_after - now < EXPIRY_WARNING_SECONDS {
        Some(format!(
            "{file}: the certificate expires at {}, in less than 14 days",
            timestamp(pair.not_after)
        ))
    } else {
        None
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A Unix time as X.509 tools print it (`Nov 25 10:00:00 2026 +00:00`).
fn timestamp(unix: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
}

#[cfg(test)]
mod tests;
