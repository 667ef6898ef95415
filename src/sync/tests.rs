#![allow(clippy::unwrap_used)]

use super::api::{M2m, Role, Snapshot, Stub, Zambda};
use super::render::render;
use crate::config::Config;

fn config(dir: &std::path::Path) -> Config {
    let text = "auth:\n  issuers:\n    - issuer: https://auth.test/\n      jwks_url: https://auth.test/jwks.json\n      audiences: [https://api.test]\n      algorithms: [RS256]\n\
                project_id: 11111111-2222-3333-4444-555555555555\n\
                upstreams:\n  labs:\n    addresses: [127.0.0.1:4000]\n\
                policies:\n  dir: [policies, synced]\n\
                oystehr:\n  issuer: https://auth.test/\n  dir: synced\n  upstreams: {lab-ingest: labs}\n";
    Config::from_yaml(text, "config.yaml", dir).unwrap()
}

fn stub(id: &str, name: &str) -> Stub {
    Stub {
        id: id.into(),
        name: name.into(),
    }
}

fn snapshot() -> Snapshot {
    let policy = |name: &str| serde_json::json!({"rule": [{"resource": format!("Zambda:Function:{name}"), "effect": "Allow", "action": "Zambda:InvokeFunction"}]});
    Snapshot {
        roles: vec![
            Role {
                id: "r2".into(),
                name: "Staff".into(),
                description: Some(String::new()),
                access_policy: Some(policy("lab-ingest")),
            },
            Role {
                id: "r1".into(),
                name: "Patient".into(),
                description: Some("self sign-up".into()),
                access_policy: Some(policy("book")),
            },
        ],
        zambdas: vec![
            Zambda {
                id: "z2".into(),
                name: "lab-ingest".into(),
                trigger_method: "http_auth".into(),
            },
            Zambda {
                id: "z1".into(),
                name: "book".into(),
                trigger_method: "http_open".into(),
            },
        ],
        m2ms: vec![M2m {
            id: "m1".into(),
            client_id: "abc".into(),
            name: Some("lab feed".into()),
            description: None,
            access_policy: None,
            roles: vec![stub("r2", "Staff")],
        }],
        default_patient_role: Some(stub("r1", "Patient")),
    }
}

#[test]
fn the_file_is_sorted_deterministic_and_carries_issuer_and_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let settings = config.oystehr.clone().unwrap();
    let (bytes, counts) = render(&snapshot(), &settings).unwrap();
    let mut reversed = snapshot();
    reversed.roles.reverse();
    reversed.zambdas.reverse();
    assert_eq!(render(&reversed, &settings).unwrap().0, bytes);
    assert_eq!(
        (counts.roles, counts.zambdas, counts.m2ms, counts.defaults),
        (2, 2, 1, 1)
    );
    let value: serde_json::Value = serde_json::from_str(&bytes).unwrap();
    assert_eq!(value["zambdas"][0]["name"], "book");
    assert_eq!(value["zambdas"][1]["upstream"], "labs");
    assert!(value["zambdas"][0].get("upstream").is_none());
    assert_eq!(value["roles"][0]["name"], "Patient");
    assert!(value["roles"][1].get("description").is_none());
    assert_eq!(value["m2ms"][0]["issuer"], "https://auth.test/");
    assert_eq!(value["defaults"][0]["issuer"], "https://auth.test/");
    assert_eq!(value["defaults"][0]["roles"][0]["id"], "r1");
    // object keys sorted inside policies, whatever order the API used
    let text = bytes;
    let rule = text.find("\"action\"").unwrap();
    assert!(rule < text.find("\"effect\"").unwrap());
}

#[test]
fn the_file_loads_through_the_store_with_the_rest_of_the_set() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::create_dir_all(dir.path().join("synced")).unwrap();
    let config = config(dir.path());
    let settings = config.oystehr.clone().unwrap();
    let (bytes, _) = render(&snapshot(), &settings).unwrap();
    let loaded = crate::store::load_with(&config, &settings.path(), bytes).unwrap();
    assert_eq!(loaded.set.stats().roles, 2);
    // the same role defined in another file: the candidate is refused
    std::fs::write(
        dir.path().join("policies/extra.yaml"),
        "roles:\n  - name: Staff\n    access_policy: {rule: []}\n",
    )
    .unwrap();
    let (bytes, _) = render(&snapshot(), &settings).unwrap();
    assert!(crate::store::load_with(&config, &settings.path(), bytes).is_err());
}

#[test]
fn the_config_rules_of_the_section() {
    let base = std::path::Path::new("/srv");
    let good = "auth:\n  issuers:\n    - issuer: https://auth.test/\n      jwks_url: https://auth.test/jwks.json\n      audiences: [https://api.test]\n      algorithms: [RS256]\n";
    let bad = |section: &str, top: &str| -> String {
        let text = format!("{good}{top}policies:\n  dir: [policies, synced]\noystehr:\n{section}");
        match Config::from_yaml(&text, "c.yaml", base) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let ok = "  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n";
    assert_eq!(bad(ok, ""), "");
    // inside a policy directory is fine: the loader reads recursively
    assert_eq!(
        bad(
            "  issuer: https://auth.test/\n  dir: policies/oystehr\n  project_id: p\n",
            ""
        ),
        ""
    );
    for (section, top, expect) in [
        ("  issuer: https://auth.test/\n  dir: synced\n", "", "oystehr.project_id"),
        ("  dir: synced\n  project_id: p\n", "", "oystehr.issuer: is required"),
        ("  issuer: https://other.test/\n  dir: synced\n  project_id: p\n", "", "not configured"),
        ("  issuer: https://auth.test/\n  dir: elsewhere\n  project_id: p\n", "", "oystehr.dir"),
        ("  issuer: https://auth.test/\n  dir: policies/../x\n  project_id: p\n", "", "oystehr.dir"),
        ("  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n  file: x.test.json\n", "", "oystehr.file"),
        ("  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n  file: .x.json\n", "", "oystehr.file"),
        ("  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n  file: x.yaml\n", "", "oystehr.file"),
        ("  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n  project_api_url: http://api.example.com/v1\n", "", "oystehr.project_api_url"),
        ("  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n  token_url: https://id:pw@auth.example.com/t\n", "", "oystehr.token_url"),
        ("  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n  client_secret_env: 'A-B'\n", "", "oystehr.client_secret_env"),
        ("  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n  interval_seconds: 0\n", "", "oystehr.interval_seconds"),
        ("  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n  upstreams: {a: nowhere}\n", "", "oystehr.upstreams.a"),
        ("  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n  bogus: 1\n", "", "unknown field"),
    ] {
        let got = bad(section, top);
        assert!(got.contains(expect), "{section}: {got}");
    }
    // the top-level project_id is the fallback
    assert_eq!(
        bad(
            "  issuer: https://auth.test/\n  dir: synced\n",
            "project_id: ABC\n"
        ),
        ""
    );
    // loopback may be plain http
    assert_eq!(
        bad("  issuer: https://auth.test/\n  dir: synced\n  project_id: p\n  project_api_url: http://127.0.0.1:9/v1\n  token_url: http://localhost:9/t\n", ""),
        ""
    );
}
