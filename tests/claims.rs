//! End to end: how a claim setting names the claim that carries a token's
//! roles (SPEC §2), through the real binary, a JWKS over HTTP and RS256
//! tokens. Three issuers share the key set and differ only in `roles_claim`:
//! a namespaced name (`https://example.com/roles`, the form Auth0 requires),
//! a dotted path, and a JSON pointer. A role from the claim must count like
//! a role from the files — above all a Deny, which must never be lost.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use serde_json::{json, Value};
use zambda_guard::echo::{self, Behaviour, Recorder};

const NESTED_ISSUER: &str = "https://nested.test/";
const POINTER_ISSUER: &str = "https://pointer.test/";

const LAB: &str = "/v1/zambda/lab-results-ingest/execute";
const SUMMARY: &str = "/v1/zambda/patient-summary/execute";

const CATALOG: &str = "zambdas:
  - id: 2419a78e-4c0a-411d-b8e2-90dc081f5efa
    name: lab-results-ingest
  - id: 7d3f0c52-9a4e-4b8e-8f61-2c5b9e0a1d34
    name: patient-summary
";

const ROLES: &str = "roles:
  - name: lab
    access_policy:
      rule:
        - action: Zambda:InvokeFunction
          resource: Zambda:Function:lab-results-ingest
          effect: Allow
  - name: reader
    access_policy:
      rule:
        - action: Zambda:InvokeFunction
          resource: Zambda:Function:patient-summary
          effect: Allow
  - name: suspended
    access_policy:
      rule:
        - action: Zambda:InvokeFunction
          resource: Zambda:Function:*
          effect: Deny
";

/// The lab bot may invoke lab-results-ingest through a role of the files.
const ACTORS: &str = "actors:
  - subject: lab-bot@clients
    roles: [lab]
";

struct World {
    proxy: Proxy,
    backend: Recorder,
    _jwks: JwksServer,
    key: SigningKey,
}

impl World {
    async fn start() -> World {
        let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
            .await
            .unwrap();
        let key = SigningKey::rsa1();
        let jwks = JwksServer::start(&[&key]).await;
        let mut setup = Setup::new(addr, &jwks.url());
        let issuer = |iss: &str, roles_claim: &str| {
            format!(
                "    - issuer: {iss}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n      jwks_url: {}\n      roles_claim: '{roles_claim}'\n",
                jwks.url()
            )
        };
        setup.issuers_yaml = [
            issuer(ISSUER, "https://example.com/roles"),
            issuer(NESTED_ISSUER, "realm_access.roles"),
            issuer(POINTER_ISSUER, "/https:~1~1example.com~1app/roles"),
        ]
        .concat();
        setup.policies = Some(vec![
            ("catalog.yaml".into(), CATALOG.into()),
            ("roles.yaml".into(), ROLES.into()),
            ("actors.yaml".into(), ACTORS.into()),
        ]);
        let proxy = Proxy::start(setup).await;
        proxy.ready().await;
        World {
            proxy,
            backend,
            _jwks: jwks,
            key,
        }
    }

    /// A token of `iss` for `subject`, with `extra` claims.
    fn token(&self, iss: &str, subject: &str, extra: Value) -> String {
        let claims = with(with(claims(subject), json!({ "iss": iss })), extra);
        self.key.sign(&claims)
    }

    /// Asserts a 403 that reached nothing.
    async fn denied(&self, path: &str, token: &str) {
        let before = self.backend.count();
        let resp = self.proxy.post(path, Some(token), &[]).await;
        resp.assert_error(403);
        assert_eq!(
            self.backend.count(),
            before,
            "a denied request reached the backend"
        );
    }

    /// Asserts a 200 that reached the backend once, with these roles.
    async fn allowed(&self, path: &str, token: &str, roles: &str) {
        let before = self.backend.count();
        let resp = self.proxy.post(path, Some(token), &[]).await;
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let got = self.backend.requests();
        assert_eq!(got.len(), before + 1);
        assert_eq!(got[before].header("x-zambda-roles"), Some(roles));
    }
}

#[tokio::test]
async fn a_deny_role_in_a_namespaced_claim_denies() {
    let w = World::start().await;
    // Without the claim, the file role allows.
    let plain = w.token(ISSUER, "lab-bot@clients", json!({}));
    w.allowed(LAB, &plain, "lab").await;
    // The namespaced claim is one top-level name: its Deny must win.
    let suspended = w.token(
        ISSUER,
        "lab-bot@clients",
        json!({ "https://example.com/roles": ["suspended"] }),
    );
    w.denied(LAB, &suspended).await;
    // The space-separated form carries it too.
    let suspended = w.token(
        ISSUER,
        "lab-bot@clients",
        json!({ "https://example.com/roles": "lab suspended" }),
    );
    w.denied(LAB, &suspended).await;
    // And a namespaced Allow grants, for an actor no file lists.
    let reader = w.token(
        ISSUER,
        "nurse",
        json!({ "https://example.com/roles": ["reader"] }),
    );
    w.allowed(SUMMARY, &reader, "reader").await;
    w.denied(SUMMARY, &w.token(ISSUER, "nurse", json!({})))
        .await;
}

#[tokio::test]
async fn a_dotted_path_reaches_a_nested_role() {
    let w = World::start().await;
    let reader = w.token(
        NESTED_ISSUER,
        "nurse",
        json!({ "realm_access": { "roles": ["reader"] } }),
    );
    w.allowed(SUMMARY, &reader, "reader").await;
    w.denied(SUMMARY, &w.token(NESTED_ISSUER, "nurse", json!({})))
        .await;
    let suspended = w.token(
        NESTED_ISSUER,
        "lab-bot@clients",
        json!({ "realm_access": { "roles": ["suspended"] } }),
    );
    w.denied(LAB, &suspended).await;
    // A top-level claim of the whole name comes first.
    let flat = w.token(
        NESTED_ISSUER,
        "lab-bot@clients",
        json!({
            "realm_access.roles": ["suspended"],
            "realm_access": { "roles": [] },
        }),
    );
    w.denied(LAB, &flat).await;
}

#[tokio::test]
async fn a_json_pointer_reaches_a_role_under_an_escaped_name() {
    let w = World::start().await;
    let reader = w.token(
        POINTER_ISSUER,
        "nurse",
        json!({ "https://example.com/app": { "roles": ["reader"] } }),
    );
    w.allowed(SUMMARY, &reader, "reader").await;
    w.denied(SUMMARY, &w.token(POINTER_ISSUER, "nurse", json!({})))
        .await;
    let suspended = w.token(
        POINTER_ISSUER,
        "lab-bot@clients",
        json!({ "https://example.com/app": { "roles": ["suspended"] } }),
    );
    w.denied(LAB, &suspended).await;
}
