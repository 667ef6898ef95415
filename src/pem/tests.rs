//! Certificate pairs and the upstream CA file read and checked, with
//! certificates generated here.

use super::*;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};

/// A self-signed certificate for `localhost` with this serial and common
/// name: (certificate PEM, key PEM).
pub(crate) fn generate(serial: u64, cn: &str) -> (String, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.serial_number = Some(serial.into());
    params.distinguished_name.push(DnType::CommonName, cn);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

pub(crate) fn parse(cert: &str, key: &str) -> Result<Pair, String> {
    Pair::parse(
        cert.as_bytes(),
        key.as_bytes(),
        Path::new("tls.crt"),
        Path::new("tls.key"),
    )
}

#[test]
fn a_matching_pair_loads_and_describes_its_leaf() {
    let (cert, key) = generate(0x0102_0304, "api.test");
    let pair = parse(&cert, &key).unwrap();
    assert_eq!(pair.subject, "CN=api.test");
    assert_eq!(pair.serial, "01:02:03:04");
    assert!(pair.not_before < pair.not_after);
    assert!(pair.to_string().contains("serial 01:02:03:04"), "{pair}");
    assert!(!format!("{pair:?}").contains("PRIVATE"), "{pair:?}");
    // the DER leaf is the certificate of the file
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    assert_eq!(pair.leaf(), der.as_ref());
}

#[test]
fn rsa_and_ed25519_keys_load_too() {
    for fixture in ["rsa1-private.pem", "ed25519-private.pem"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(fixture);
        let key_pem = std::fs::read_to_string(path).unwrap();
        let key = KeyPair::from_pem(&key_pem).unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap().pem();
        parse(&cert, &key_pem).unwrap_or_else(|e| panic!("{fixture}: {e}"));
    }
}

#[test]
fn bad_pairs_are_refused_naming_the_file() {
    let (cert, key) = generate(1, "one");
    let (other_cert, other_key) = generate(2, "two");
    let mismatch = parse(&cert, &other_key).unwrap_err();
    assert!(
        mismatch.contains("does not match") && mismatch.contains("tls.key"),
        "{mismatch}"
    );
    assert!(parse(&other_cert, &key).is_err());

    let no_cert = parse("", &key).unwrap_err();
    assert!(
        no_cert.contains("tls.crt") && no_cert.contains("no certificate"),
        "{no_cert}"
    );
    let no_key = parse(&cert, "").unwrap_err();
    assert!(
        no_key.contains("tls.key") && no_key.contains("no usable private key"),
        "{no_key}"
    );
    // a key where the certificate should be, and the other way round
    assert!(parse(&key, &key).unwrap_err().contains("no certificate"));
    assert!(parse(&cert, &cert)
        .unwrap_err()
        .contains("no usable private key"));
    // a PEM block that is not a certificate
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let bad = parse(garbage, &key).unwrap_err();
    assert!(bad.contains("not valid X.509"), "{bad}");
    // broken base64
    let broken = cert.replace('M', "*");
    assert!(parse(&broken, &key).is_err());
}

#[test]
fn the_upstream_ca_file_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap().pem();
    let (other, _) = generate(9, "other");
    std::fs::write(&path, format!("{ca}{other}")).unwrap();
    let loaded = UpstreamCa::load(&path).unwrap();
    assert_eq!(format!("{loaded:?}"), "UpstreamCa(2 certificate(s))");

    std::fs::write(&path, "").unwrap();
    assert!(UpstreamCa::load(&path)
        .unwrap_err()
        .contains("no CA certificate"));
    std::fs::write(
        &path,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(UpstreamCa::load(&path)
        .unwrap_err()
        .contains("not usable as a CA"));
    assert!(UpstreamCa::load(&dir.path().join("missing.pem"))
        .unwrap_err()
        .contains("cannot read"));
}
