//! Certificate pairs, their reload, the upstream CA file and the warnings,
//! with certificates generated here.

use super::*;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};

/// A self-signed certificate for `localhost` with this serial and common
/// name: (certificate PEM, key PEM).
fn generate(serial: u64, cn: &str) -> (String, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.serial_number = Some(serial.into());
    params.distinguished_name.push(DnType::CommonName, cn);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn parse(cert: &str, key: &str) -> Result<Pair, String> {
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
fn reload_swaps_only_for_a_changed_valid_pair() {
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("tls.crt");
    let key_file = dir.path().join("tls.key");
    let write = |(cert, key): &(String, String)| {
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
    };
    let first = generate(1, "first");
    write(&first);
    let tls = config::Tls {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        pair: Pair::load(&cert_file, &key_file).unwrap(),
    };
    let certs = Certificates::new(&tls);
    assert_eq!(certs.dirs(), vec![dir.path().to_path_buf()]);
    assert!(matches!(certs.reload(), Reload::Unchanged));

    let second = generate(2, "second");
    write(&second);
    match certs.reload() {
        Reload::Reloaded(pair) => assert_eq!(pair.subject, "CN=second"),
        other => panic!("{other:?}"),
    }
    assert_eq!(certs.current().serial, "02");
    assert!(matches!(certs.reload(), Reload::Unchanged));

    // a new certificate with the old key: refused once, then unchanged
    std::fs::write(&cert_file, &generate(3, "third").0).unwrap();
    match certs.reload() {
        Reload::Refused(e) => assert!(e.contains("does not match"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(certs.reload(), Reload::Unchanged));
    assert_eq!(certs.current().subject, "CN=second");

    // a missing file is refused too, and the pair stays
    std::fs::remove_file(&key_file).unwrap();
    match certs.reload() {
        Reload::Refused(e) => assert!(e.contains("cannot read"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(certs.current().subject, "CN=second");

    write(&first);
    assert!(matches!(certs.reload(), Reload::Reloaded(_)));
    assert_eq!(certs.current().subject, "CN=first");
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

#[test]
fn peers_get_the_configured_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, generate(1, "ca").0).unwrap();
    let mut upstream = config::Upstream {
        address: "127.0.0.1:443".parse().unwrap(),
        address_text: "127.0.0.1:443".into(),
        tls: true,
        sni: "backend.test".into(),
        ca: Some(UpstreamCa::load(&path).unwrap()),
        insecure_skip_verify: false,
        path_template: None,
        connect_timeout: std::time::Duration::from_secs(1),
        read_timeout: std::time::Duration::from_secs(1),
    };
    let peer = |u: &config::Upstream| {
        let mut p = HttpPeer::new(u.address, u.tls, u.sni.clone());
        configure_peer(&mut p, u);
        p
    };
    let verified = peer(&upstream);
    assert_eq!(verified.options.ca.as_ref().map(|c| c.len()), Some(1));
    assert!(verified.options.verify_cert && verified.options.verify_hostname);

    upstream.ca = None;
    let system_roots = peer(&upstream);
    assert!(system_roots.options.ca.is_none());
    assert!(system_roots.options.verify_cert && system_roots.options.verify_hostname);

    upstream.insecure_skip_verify = true;
    let insecure = peer(&upstream);
    assert!(!insecure.options.verify_cert && !insecure.options.verify_hostname);
}

#[test]
fn validity_warnings() {
    let (cert, key) = generate(1, "x");
    let mut pair = parse(&cert, &key).unwrap();
    let file = Path::new("tls.crt");
    let day = 24 * 3600;
    pair.not_before = 1000 * day;
    pair.not_after = 2000 * day;
    assert_eq!(validity_warning(&pair, file, 1500 * day), None);
    let expired = validity_warning(&pair, file, 2001 * day).unwrap();
    assert!(expired.contains("expired"), "{expired}");
    let early = validity_warning(&pair, file, 999 * day).unwrap();
    assert!(early.contains("not valid before"), "{early}");
    let soon = validity_warning(&pair, file, 1990 * day).unwrap();
    assert!(soon.contains("less than 14 days"), "{soon}");
}
