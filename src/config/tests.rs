//! Config validation: defaults, the shipped reference file, and every
//! problem reported with the key it is about.

use std::time::Duration;

use super::*;

const ISSUER: &str = "auth:\n  issuers:\n    - issuer: https://auth.test/\n      audiences: [https://api.test]\n      algorithms: [RS256]\n      jwks_url: https://auth.test/jwks.json\n";

fn load(text: &str) -> Result<Config, Error> {
    Config::from_yaml(text, "test.yaml", Path::new("/etc/zg"))
}

/// Asserts `text` is refused with a problem mentioning every fragment.
fn refused(text: &str, fragments: &[&str]) {
    let err = match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    };
    for f in fragments {
        assert!(err.contains(f), "{f:?} not in error:\n{err}");
    }
}

#[test]
fn defaults_follow_the_spec() {
    let c = load(ISSUER).unwrap();
    assert_eq!(c.listen, Some("0.0.0.0:8080".parse().unwrap()));
    assert!(c.authz.is_none());
    assert_eq!(c.admin_listen, "0.0.0.0:9901".parse().unwrap());
    assert_eq!(c.route_prefix, "/v1");
    assert_eq!(c.enforcement, Enforcement::Enforce);
    assert_eq!(
        *c.upstream.address.addresses(),
        ["127.0.0.1:3000".parse().unwrap()]
    );
    assert_eq!(c.upstream.dns_refresh, Duration::from_secs(30));
    assert_eq!(c.upstream.connect_timeout, Duration::from_millis(1000));
    assert_eq!(c.upstream.read_timeout, Duration::from_millis(30_000));
    assert_eq!(c.auth.leeway_seconds, 30);
    assert!(c.auth.forward_authorization);
    assert_eq!(c.auth.token_cache_entries, 100_000);
    assert_eq!(c.auth.jwks_fetch_timeout, Duration::from_millis(2000));
    let i = &c.auth.issuers[0];
    assert_eq!(i.jwks_refresh, Duration::from_secs(300));
    assert_eq!(i.jwks_min_refetch, Duration::from_secs(30));
    assert_eq!(i.subject_claim.to_string(), "sub");
    assert!(i.roles_claim.is_none());
    assert_eq!(c.policies.dir, PathBuf::from("/etc/zg/policies"));
    assert!(c.policies.watch);
    assert_eq!(c.limits.max_body_bytes, 6_291_456);
    assert_eq!(c.shutdown.grace_period_seconds, 5);
    assert_eq!(c.shutdown.drain_timeout_seconds, 25);
    assert!(c.cors.is_none());
    assert_eq!(c.log.decisions, LogDecisions::Denied);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.telemetry, Telemetry::default());
    assert_eq!(c.telemetry.otlp_endpoint, None);
    assert_eq!(c.telemetry.sample_ratio, 1.0);
    assert!(!c.telemetry.include_actor);
    assert!(c.threads >= 1);
    assert!(c.trusted_proxies.blocks().is_empty());
    assert_eq!(c.rate_limits.burst, None);
    assert_eq!(c.rate_limits.max_keys, 100_000);
    assert!(c.warnings().is_empty());
}

#[test]
fn trusted_proxies_and_rate_limit_settings() {
    let c = load(&format!(
        "{ISSUER}trusted_proxies: [10.0.0.0/8, 192.0.2.7, 'fd00::/8', '::/0']\n\
         rate_limits:\n  burst: 20\n  max_keys: 5\n"
    ))
    .unwrap();
    let shown: Vec<String> = c
        .trusted_proxies
        .blocks()
        .iter()
        .map(|b| b.to_string())
        .collect();
    assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8", "::/0"]);
    assert_eq!(c.rate_limits.burst, Some(20));
    assert_eq!(c.rate_limits.max_keys, 5);
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("test.yaml: trusted_proxies: ::/0 trusts every peer"),
        "{warnings:?}"
    );
    refused(
        &format!("{ISSUER}trusted_proxies: [10.0.0.0/8, 10.0.0.1/8, example.com]\n"),
        &[
            "test.yaml: trusted_proxies[1]: \"10.0.0.1/8\" has host bits set",
            "test.yaml: trusted_proxies[2]: \"example.com\" is not an IP address",
        ],
    );
    refused(
        &format!("{ISSUER}rate_limits:\n  burst: 0\n  max_keys: 0\n"),
        &[
            "rate_limits.burst: must be at least 1",
            "rate_limits.max_keys: must be at least 1",
        ],
    );
}

#[test]
fn the_shipped_reference_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.auth.issuers.len(), 1);
    assert!(c.policies.dir.ends_with("policies"));
}

#[test]
fn problems_name_their_key() {
    refused(&format!("{ISSUER}bogus: 1\n"), &["bogus"]);
    refused(&format!("{ISSUER}upstream:\n  adress: x\n"), &["adress"]);
    refused(
        "auth:\n  issuers: []\n",
        &["auth.issuers", "at least one issuer"],
    );
    refused(
        "auth:\n  issuers:\n    - issuer: https://a/\n      algorithms: [RS256]\n      jwks_url: https://a/j\n",
        &["auth.issuers[0].audiences"],
    );
    refused(
        "auth:\n  issuers:\n    - issuer: https://a/\n      audiences: [x]\n      algorithms: [none]\n      jwks_url: https://a/j\n",
        &["auth.issuers[0].algorithms", "\"none\""],
    );
    refused(
        "auth:\n  issuers:\n    - issuer: https://a/\n      audiences: [x]\n      algorithms: [RS256]\n",
        &["no key source"],
    );
    refused(
        "auth:\n  issuers:\n    - issuer: https://a/\n      audiences: [x]\n      algorithms: [RS256]\n      jwks_url: http://auth.example.com/jwks\n",
        &["jwks_url", "loopback"],
    );
    refused(&format!("{ISSUER}listen: nowhere\n"), &["listen"]);
    refused(
        &ISSUER.replace("auth:\n", "auth:\n  leeway_seconds: 100000\n"),
        &["auth.leeway_seconds"],
    );
    refused(
        &format!("{ISSUER}      jwks_min_refetch_seconds: 0\n"),
        &["auth.issuers[0].jwks_min_refetch_seconds"],
    );
    refused(&format!("{ISSUER}route_prefix: v1\n"), &["route_prefix"]);
    refused(
        &format!("{ISSUER}route_prefix: /v1/../x\n"),
        &["route_prefix"],
    );
    refused(&format!("{ISSUER}enforcement: audit\n"), &["enforcement"]);
    refused(&format!("{ISSUER}threads: 0\n"), &["threads"]);
    refused(
        &format!("{ISSUER}upstream:\n  path_template: /fn/{{nam}}\n"),
        &["upstream.path_template", "{nam}"],
    );
    refused(
        &format!("{ISSUER}upstream:\n  path_template: fn\n"),
        &["must start with '/'"],
    );
    refused(
        &format!("{ISSUER}cors:\n  allowed_origins: ['*']\n  allow_credentials: true\n"),
        &["cors.allowed_origins"],
    );
}

#[test]
fn several_problems_are_reported_together() {
    let err = load(&format!("{ISSUER}threads: 0\nroute_prefix: v1\n"))
        .err()
        .unwrap();
    assert_eq!(err.problems.len(), 2, "{err}");
}

#[test]
fn hmac_secrets_come_from_the_environment() {
    let base = "auth:\n  issuers:\n    - issuer: https://a/\n      audiences: [x]\n      algorithms: [HS256]\n      hmac_secret_env: ";
    // SAFETY of the test: names unique to this test, no other test reads them.
    std::env::set_var("ZG_TEST_SHORT_SECRET", "too-short");
    std::env::set_var("ZG_TEST_GOOD_SECRET", "0123456789abcdef0123456789abcdef");
    refused(&format!("{base}ZG_TEST_SHORT_SECRET\n"), &["at least 32"]);
    refused(&format!("{base}ZG_TEST_UNSET_SECRET\n"), &["not set"]);
    let c = load(&format!("{base}ZG_TEST_GOOD_SECRET\n")).unwrap();
    match &c.auth.issuers[0].keys[0] {
        KeySource::HmacSecret { secret, .. } => assert_eq!(secret.len(), 32),
        other => panic!("{other:?}"),
    }
    assert!(!format!("{:?}", c.auth.issuers[0].keys[0]).contains("0123456789"));
}

#[test]
fn claims_and_overrides() {
    let c = load(
        "auth:\n  roles_claim: realm_access.roles\n  issuers:\n    - issuer: https://a/\n      audiences: [x]\n      algorithms: [RS256]\n      jwks_url: http://127.0.0.1:1/j\n      subject_claim: client_id\n    - issuer: https://b/\n      audiences: [x]\n      algorithms: [ES256]\n      jwks_url: http://localhost:1/j\n",
    )
    .unwrap();
    let (a, b) = (&c.auth.issuers[0], &c.auth.issuers[1]);
    assert_eq!(a.subject_claim.to_string(), "client_id");
    assert_eq!(b.subject_claim.to_string(), "sub");
    let roles = b.roles_claim.as_ref().unwrap();
    let claims = serde_json::json!({"realm_access": {"roles": ["r1"]}});
    assert_eq!(roles.get(&claims), Some(&serde_json::json!(["r1"])));
}

/// Claim setting, claims, what the setting must find there (SPEC §2).
type ClaimCase<'a> = (&'a str, serde_json::Value, Option<serde_json::Value>);

#[test]
fn claim_settings_read_names_paths_and_pointers() {
    use serde_json::json;
    let cases: Vec<ClaimCase<'_>> = vec![
        // a plain name
        ("roles", json!({"roles": ["a"]}), Some(json!(["a"]))),
        ("roles", json!({"other": ["a"]}), None),
        // a namespaced name is one claim, not a path through "https://example"
        (
            "https://example.com/roles",
            json!({"https://example.com/roles": ["suspended"]}),
            Some(json!(["suspended"])),
        ),
        (
            "https://example.com/roles",
            json!({"https://example": {"com/roles": ["nested"]}}),
            Some(json!(["nested"])),
        ),
        ("https://example.com/roles", json!({"roles": ["a"]}), None),
        // a dotted text: the top-level name first, the path only without it
        (
            "realm_access.roles",
            json!({"realm_access": {"roles": ["r1"]}}),
            Some(json!(["r1"])),
        ),
        (
            "realm_access.roles",
            json!({"realm_access.roles": ["flat"], "realm_access": {"roles": ["nested"]}}),
            Some(json!(["flat"])),
        ),
        (
            "realm_access.roles",
            json!({"realm_access.roles": null, "realm_access": {"roles": ["nested"]}}),
            Some(json!(null)),
        ),
        ("realm_access.roles", json!({"realm_access": ["r1"]}), None),
        (
            "a.b.c",
            json!({"a": {"b": {"c": "deep"}}}),
            Some(json!("deep")),
        ),
        // JSON pointers, with their escapes
        (
            "/realm_access/roles",
            json!({"realm_access": {"roles": ["r1"]}}),
            Some(json!(["r1"])),
        ),
        (
            "/realm_access/roles",
            json!({"/realm_access/roles": ["flat"]}),
            None,
        ),
        (
            "/https:~1~1example.com~1roles",
            json!({"https://example.com/roles": ["x"]}),
            Some(json!(["x"])),
        ),
        ("/a~0b", json!({"a~b": 1}), Some(json!(1))),
        ("/a~01", json!({"a~1": 1, "a/": 2}), Some(json!(1))),
        ("/a.b", json!({"a.b": 1, "a": {"b": 2}}), Some(json!(1))),
        ("/groups/1", json!({"groups": ["x", "y"]}), Some(json!("y"))),
        ("/groups/01", json!({"groups": ["x", "y"]}), None),
        ("/groups/2", json!({"groups": ["x", "y"]}), None),
        ("/groups/-", json!({"groups": ["x", "y"]}), None),
    ];
    for (text, claims, expected) in cases {
        let path = ClaimPath::parse(text).unwrap();
        assert_eq!(path.get(&claims), expected.as_ref(), "{text} in {claims}");
        assert_eq!(path.to_string(), text);
    }
}

#[test]
fn claim_settings_say_how_they_are_read() {
    for (text, described) in [
        ("sub", "claim \"sub\" (top-level name)"),
        (
            "https://example.com/roles",
            "claim \"https://example.com/roles\" (top-level name; as a dotted path only if absent)",
        ),
        (
            "realm_access.roles",
            "claim \"realm_access.roles\" (top-level name; as a dotted path only if absent)",
        ),
        ("/realm_access/roles", "JSON pointer /realm_access/roles"),
    ] {
        assert_eq!(ClaimPath::parse(text).unwrap().describe(), described);
    }
}

#[test]
fn claim_settings_refuse_what_cannot_name_a_claim() {
    for (text, fragment) in [
        ("", "empty"),
        ("realm_access..roles", "empty segment"),
        (".roles", "empty segment"),
        ("roles.", "/roles."),
        ("/", "empty reference token"),
        ("/realm_access//roles", "empty reference token"),
        ("/roles/", "empty reference token"),
        ("/a~2b", "'~' must be followed by 0 or 1"),
        ("/a~", "'~' must be followed by 0 or 1"),
    ] {
        let err = ClaimPath::parse(text).err().unwrap_or_default();
        assert!(
            err.contains(fragment),
            "{text:?}: {fragment:?} not in {err:?}"
        );
    }
    // through the config: the problem names its key
    refused(
        &format!("{ISSUER}  roles_claim: /a~2b\n"),
        &["auth.roles_claim", "~"],
    );
    refused(
        &ISSUER.replace(
            "jwks_url: https://auth.test/jwks.json\n",
            "jwks_url: https://auth.test/jwks.json\n      subject_claim: a..b\n",
        ),
        &["auth.issuers[0].subject_claim", "empty segment"],
    );
}

#[test]
fn path_template_renders_placeholders() {
    let t = PathTemplate::parse("/function/{name}/{route}?id={id}").err();
    assert!(t.is_some(), "'?' is not allowed in a template");
    let t = PathTemplate::parse("/function/{name}/{route}/{id}").unwrap();
    assert_eq!(t.render("i-1", "n", "execute"), "/function/n/execute/i-1");
}

/// Writes a self-signed certificate and its key into `dir` as `tls.crt`
/// and `tls.key`; returns the certificate PEM.
fn write_pair(dir: &Path) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    std::fs::write(dir.join("tls.crt"), &cert).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    cert
}

#[test]
fn tls_is_off_by_default_and_checked_when_on() {
    let c = load(ISSUER).unwrap();
    assert!(c.tls.is_none());
    assert!(!c.upstream.tls && !c.upstream.insecure_skip_verify && c.upstream.ca.is_none());

    let dir = tempfile::tempdir().unwrap();
    let cert = write_pair(dir.path());
    let base = dir.path();
    let on = |extra: &str| Config::from_yaml(&format!("{ISSUER}{extra}"), "test.yaml", base);
    let c = on("tls:\n  cert_file: tls.crt\n  key_file: tls.key\n").unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.cert_file, base.join("tls.crt"));
    assert!(tls.pair.serial.len() > 1);

    // a bad pair stops the load, naming the key and the file
    std::fs::write(
        base.join("other.key"),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let err = on("tls:\n  cert_file: tls.crt\n  key_file: other.key\n")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tls:") && err.contains("does not match"),
        "{err}"
    );
    let err = on("tls:\n  cert_file: missing.crt\n  key_file: tls.key\n")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("missing.crt") && err.contains("cannot read"),
        "{err}"
    );
    assert!(on("tls:\n  cert_file: tls.crt\n").is_err());

    // upstream TLS: SNI from the address, the CA file loaded
    std::fs::write(base.join("ca.pem"), &cert).unwrap();
    let c = on("upstream:\n  address: localhost:8443\n  tls: true\n  ca_file: ca.pem\n").unwrap();
    assert!(c.upstream.tls);
    assert_eq!(c.upstream.sni, "localhost");
    assert!(c.upstream.ca.is_some());
    let c = on("upstream:\n  address: 127.0.0.1:8443\n  tls: true\n  insecure_skip_verify: true\n")
        .unwrap();
    assert!(c.upstream.insecure_skip_verify);
    assert_eq!(c.upstream.sni, "127.0.0.1");
    let c =
        on("upstream:\n  address: 127.0.0.1:8443\n  tls: true\n  sni: backend.internal\n").unwrap();
    assert_eq!(c.upstream.sni, "backend.internal");

    for (extra, fragment) in [
        ("upstream:\n  ca_file: ca.pem\n", "upstream.ca_file"),
        (
            "upstream:\n  insecure_skip_verify: true\n",
            "upstream.insecure_skip_verify",
        ),
        (
            "upstream:\n  tls: true\n  ca_file: ca.pem\n  insecure_skip_verify: true\n",
            "contradicts",
        ),
        (
            "upstream:\n  tls: true\n  ca_file: missing.pem\n",
            "missing.pem",
        ),
        (
            "upstream:\n  tls: true\n  ca_file: tls.key\n",
            "no CA certificate",
        ),
        ("upstream:\n  tls: true\n  sni: ''\n", "upstream.sni"),
        (
            "upstream:\n  tls: true\n  sni: 'not a name'\n",
            "upstream.sni",
        ),
    ] {
        let err = on(extra).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains(fragment),
            "{extra}: {fragment:?} not in {err:?}"
        );
    }
}

#[test]
fn the_decision_service_needs_a_source_and_may_run_alone() {
    let c = load(&format!(
        "listen: null\nauthz_listen: 127.0.0.1:9191\nauthz:\n  source: original_uri\n{ISSUER}"
    ))
    .unwrap();
    assert_eq!(c.listen, None);
    let authz = c.authz.unwrap();
    assert_eq!(authz.listen, "127.0.0.1:9191".parse().unwrap());
    assert_eq!(authz.source, AuthzSource::OriginalUri);

    let c = load(&format!(
        "authz_listen: 127.0.0.1:9191\nauthz: {{source: request, path_prefix: /authz/}}\n{ISSUER}"
    ))
    .unwrap();
    assert_eq!(c.authz.unwrap().path_prefix.as_deref(), Some("/authz"));

    refused(
        &format!("authz_listen: 127.0.0.1:9191\n{ISSUER}"),
        &["authz.source", "required"],
    );
    refused(
        &format!("listen: null\n{ISSUER}"),
        &["listen", "nothing would be served"],
    );
    refused(
        &format!("authz: {{source: request}}\n{ISSUER}"),
        &["authz", "authz_listen"],
    );
    refused(
        &format!(
            "authz_listen: 127.0.0.1:9191\nauthz: {{source: forwarded, path_prefix: /a}}\n{ISSUER}"
        ),
        &["authz.path_prefix", "source: request"],
    );
    refused(
        &format!("authz_listen: 127.0.0.1:9191\nauthz: {{source: nginx}}\n{ISSUER}"),
        &["unknown variant"],
    );
}

#[test]
fn telemetry_settings_are_checked() {
    let c = load(&format!(
        "{ISSUER}telemetry:\n  otlp_endpoint: https://collector.test:4318/\n  sample_ratio: 0.25\n  include_actor: true\nlog:\n  decisions: all\n"
    ))
    .unwrap();
    assert_eq!(
        c.telemetry.otlp_endpoint.as_deref(),
        Some("https://collector.test:4318")
    );
    assert_eq!(c.telemetry.sample_ratio, 0.25);
    assert!(c.telemetry.include_actor);
    assert_eq!(c.log.decisions, LogDecisions::All);
    for (value, fragment) in [
        ("otlp_endpoint: collector:4318", "telemetry.otlp_endpoint"),
        ("otlp_endpoint: ftp://collector", "telemetry.otlp_endpoint"),
        (
            "otlp_endpoint: http://c:4318/?x=1",
            "telemetry.otlp_endpoint",
        ),
        ("sample_ratio: 1.5", "telemetry.sample_ratio"),
        ("sample_ratio: -0.1", "telemetry.sample_ratio"),
        ("sampel_ratio: 0.5", "sampel_ratio"),
    ] {
        refused(&format!("{ISSUER}telemetry:\n  {value}\n"), &[fragment]);
    }
}
