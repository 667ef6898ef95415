//! The served pair's reload, the upstream peer's checks and the validity
//! warnings, with certificates generated here.

use super::*;

use crate::pem::tests::{generate, parse};

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
fn peers_get_the_configured_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, generate(1, "ca").0).unwrap();
    let mut upstream = config::Upstream {
        address: std::sync::Arc::new(crate::dns::Address::fixed("127.0.0.1:443".parse().unwrap())),
        address_text: "127.0.0.1:443".into(),
        tls: true,
        sni: "backend.test".into(),
        ca: Some(UpstreamCa::load(&path).unwrap()),
        insecure_skip_verify: false,
        path_template: None,
        connect_timeout: std::time::Duration::from_secs(1),
        read_timeout: std::time::Duration::from_secs(1),
        dns_refresh: std::time::Duration::from_secs(30),
    };
    let peer = |u: &config::Upstream| {
        let mut p = HttpPeer::new(u.address.addresses()[0], u.tls, u.sni.clone());
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
