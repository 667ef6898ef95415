//! TLS for the end-to-end tests: a test CA issuing certificates for
//! `proxy.test` and 127.0.0.1, the certificate and key files a proxy
//! serves (`tls:` in its config), and clients that trust the CA and offer
//! the ALPN protocols asked for.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pingora::tls::{
    version, CertificateDer, ClientConfig, RootCertStore, ServerName, TlsConnector,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;

/// The name the proxy's certificate is issued for; clients resolve it to
/// the proxy's loopback address.
pub const PROXY_NAME: &str = "proxy.test";

/// A test CA that issues leaf certificates.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "zambda-guard test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `proxy.test` and 127.0.0.1: (certificate PEM, key PEM).
    pub fn leaf(&self, serial: u64, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = leaf_params(serial, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn leaf_params(serial: u64, cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec![PROXY_NAME.to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.serial_number = Some(serial.into());
    params.distinguished_name.push(DnType::CommonName, cn);
    params
}

/// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM).
pub fn self_signed(cn: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(77, cn).self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Certificate and key files the proxy serves, in a directory of their own.
pub struct PairFiles {
    dir: tempfile::TempDir,
}

impl PairFiles {
    pub fn new((cert, key): &(String, String)) -> PairFiles {
        let files = PairFiles {
            dir: tempfile::tempdir().unwrap(),
        };
        files.write(cert, key);
        files
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Replaces the files as a renewal tool would: write aside, rename over.
    pub fn write(&self, cert: &str, key: &str) {
        for (path, text) in [(self.key(), key), (self.cert(), cert)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
    }

    /// The `tls:` section of a proxy config serving this pair.
    pub fn yaml(&self) -> String {
        format!(
            "tls:\n  cert_file: {}\n  key_file: {}\n",
            self.cert().display(),
            self.key().display()
        )
    }
}

pub fn roots(ca_pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// A TLS client trusting `ca_pem`, offering `alpn`; TLS 1.2 only when
/// `tls12_only`, else TLS 1.3 and 1.2.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]], tls12_only: bool) -> Arc<ClientConfig> {
    pingora::tls::install_default_crypto_provider();
    let builder = if tls12_only {
        ClientConfig::builder_with_protocol_versions(&[&version::TLS12])
    } else {
        ClientConfig::builder()
    };
    let mut config = builder
        .with_root_certificates(roots(ca_pem))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub type ClientTls = pingora::tls::ClientTlsStream<TcpStream>;

/// Connects to `addr` and completes a handshake for `proxy.test` (5 s at
/// most).
pub async fn handshake(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<ClientTls> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(PROXY_NAME).unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))?
}
