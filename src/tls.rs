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
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};
use pingora::upstreams::peer::HttpPeer;
use sha2::{Digest, Sha256};

use crate::config::{self, Config};
use crate::pem::{fingerprint, read_files, timestamp};
pub use crate::pem::{Pair, UpstreamCa};

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
    i64::try_from(crate::clock::unix_now()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
