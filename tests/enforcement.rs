//! End to end: the real binary in front of the recording echo backend, with
//! a JWKS served over HTTP and tokens signed with real keys. Allowed
//! requests reach the backend exactly once, in canonical form; every refusal
//! answers the JSON error shape and reaches nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::Duration;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use zambda_guard::echo::{self, Behaviour};

const LAB: &str = "/v1/zambda/lab-results-ingest/execute";
const LAB_ID: &str = "2419a78e-4c0a-411d-b8e2-90dc081f5efa";

struct World {
    proxy: Proxy,
    backend: Recorder,
    jwks: JwksServer,
    key: SigningKey,
}

impl World {
    async fn start() -> World {
        World::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut Setup)) -> World {
        let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
            .await
            .unwrap();
        let key = SigningKey::rsa1();
        let jwks = JwksServer::start(&[&key]).await;
        let mut setup = Setup::new(addr, &jwks.url());
        tweak(&mut setup);
        let proxy = Proxy::start(setup).await;
        proxy.ready().await;
        World {
            proxy,
            backend,
            jwks,
            key,
        }
    }

    fn token(&self, subject: &str) -> String {
        self.key.sign(&claims(subject))
    }

    /// Asserts a refusal: status, JSON shape, nothing reached the backend.
    async fn refused(&self, resp: Response, status: u16) -> String {
        let message = resp.assert_error(status);
        assert_eq!(
            self.backend.count(),
            0,
            "a refused request reached the backend"
        );
        message
    }
}

#[tokio::test]
async fn allowed_request_reaches_backend_once_in_canonical_form() {
    let w = World::start().await;
    let token = w.token("lab-bot@clients");
    let resp = w
        .proxy
        .post(
            &format!("{LAB}?panel=cbc"),
            Some(&token),
            &[
                ("x-oystehr-request-id", "req-123"),
                ("x-forwarded-for", "203.0.113.7"),
                ("x-oystehr-project-id", PROJECT_ID),
            ],
        )
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body = resp.json();
    assert_eq!(body["status"], 200);
    assert_eq!(body["output"]["echo"], true);
    assert_eq!(resp.header("x-oystehr-request-id"), Some("req-123"));

    let got = w.backend.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, format!("{LAB}?panel=cbc"));
    assert_eq!(r.header("x-zambda-id"), Some(LAB_ID));
    assert_eq!(r.header("x-zambda-name"), Some("lab-results-ingest"));
    assert_eq!(r.header("x-zambda-actor"), Some("lab-bot@clients"));
    assert_eq!(r.header("x-zambda-roles"), Some("lab-integrations"));
    assert_eq!(r.header("x-oystehr-request-id"), Some("req-123"));
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(r.header("host"), Some("proxy.test"));
    assert_eq!(r.header("x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"));
    assert_eq!(r.header("x-forwarded-proto"), Some("http"));
    assert_eq!(r.body, b"{}");
}

#[tokio::test]
async fn zambda_by_id_and_percent_encoded_name_reach_the_canonical_path() {
    let w = World::start().await;
    let token = w.token("lab-bot@clients");
    let resp = w
        .proxy
        .post(&format!("/v1/zambda/{LAB_ID}/execute"), Some(&token), &[])
        .await;
    assert_eq!(resp.status, 200);
    let resp = w
        .proxy
        .post("/v1/zambda/lab-results-%69ngest/execute", Some(&token), &[])
        .await;
    assert_eq!(resp.status, 200);
    let got = w.backend.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].target, format!("/v1/zambda/{LAB_ID}/execute"));
    assert_eq!(got[1].target, LAB);
    assert!(got.iter().all(|r| r.header("x-zambda-id") == Some(LAB_ID)));
    // a generated request id when the client sent none
    let id = got[0].header("x-oystehr-request-id").unwrap();
    assert_eq!(id.len(), 36, "{id}");
}

#[tokio::test]
async fn refusals_answer_json_and_reach_nothing() {
    let w = World::start_with(|s| {
        s.extra =
            "project_id: 11111111-2222-3333-4444-555555555555\nlimits:\n  max_body_bytes: 100\n"
                .into();
    })
    .await;
    let lab = w.token("lab-bot@clients");
    let alice = w.token("dr-alice");
    let p = &w.proxy;

    w.refused(
        p.post("/v1/zambda/%2e%2e/execute", Some(&lab), &[]).await,
        400,
    )
    .await;
    w.refused(
        p.post("/v1//zambda/lab-results-ingest/execute", Some(&lab), &[])
            .await,
        400,
    )
    .await;
    let long = format!("/v1/zambda/{}/execute", "a".repeat(9000));
    w.refused(p.post(&long, Some(&lab), &[]).await, 414).await;
    w.refused(p.post(&format!("{LAB}/"), Some(&lab), &[]).await, 404)
        .await;
    w.refused(
        p.post("/v1/zambda/lab-results-ingest/Execute", Some(&lab), &[])
            .await,
        404,
    )
    .await;

    let get = format!(
        "GET {LAB} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {lab}\r\nconnection: close\r\n\r\n"
    );
    let resp = send(p.addr, get.as_bytes()).await.unwrap();
    assert_eq!(resp.header("allow"), Some("POST"));
    w.refused(resp, 405).await;

    let resp = p.post(LAB, None, &[]).await;
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer realm=\"zambda-guard\"")
    );
    w.refused(resp, 401).await;

    let resp = p.post(LAB, Some("not-a-token"), &[]).await;
    let challenge = resp.header("www-authenticate").unwrap().to_string();
    assert!(
        challenge.starts_with(
            "Bearer realm=\"zambda-guard\", error=\"invalid_token\", error_description=\""
        ),
        "{challenge}"
    );
    assert!(
        !resp.body.windows(11).any(|w| w == b"not-a-token"),
        "token echoed"
    );
    w.refused(resp, 401).await;

    let other_project = [(
        "x-oystehr-project-id",
        "99999999-2222-3333-4444-555555555555",
    )];
    w.refused(p.post(LAB, Some(&lab), &other_project).await, 401)
        .await;
    let upper = PROJECT_ID.to_uppercase();
    let disagree = [
        ("x-oystehr-project-id", PROJECT_ID),
        (
            "x-zapehr-project-id",
            "00000000-2222-3333-4444-555555555555",
        ),
    ];
    w.refused(p.post(LAB, Some(&lab), &disagree).await, 401)
        .await;
    let public_wrong = p
        .post(
            "/v1/zambda/appointment-slots/execute-public",
            None,
            &other_project,
        )
        .await;
    assert!(public_wrong.header("www-authenticate").is_none());
    w.refused(public_wrong, 401).await;

    // explicit deny overriding an allow, and an implicit deny
    let msg = w
        .refused(
            p.post("/v1/zambda/billing-export/execute", Some(&alice), &[])
                .await,
            403,
        )
        .await;
    assert!(msg.contains("billing-export"), "{msg}");
    w.refused(
        p.post("/v1/zambda/patient-summary/execute", Some(&lab), &[])
            .await,
        403,
    )
    .await;
    // unknown Zambda, and an authenticated one on the public route
    w.refused(
        p.post("/v1/zambda/no-such-zambda/execute", Some(&lab), &[])
            .await,
        404,
    )
    .await;
    w.refused(
        p.post("/v1/zambda/lab-results-ingest/execute-public", None, &[])
            .await,
        404,
    )
    .await;
    w.refused(
        p.post("/v1/zambda/no-such-zambda/execute-public", None, &[])
            .await,
        404,
    )
    .await;

    // body over the limit, announced by content-length
    let big = format!(
        "POST {LAB} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {lab}\r\ncontent-length: 200\r\nconnection: close\r\n\r\n{}",
        "x".repeat(200)
    );
    w.refused(send(p.addr, big.as_bytes()).await.unwrap(), 413)
        .await;

    // and the right project id in any case passes
    let ok = p
        .post(LAB, Some(&lab), &[("x-zapehr-project-id", &upper)])
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(w.backend.count(), 1);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let w = World::start_with(|s| s.extra = "limits:\n  max_body_bytes: 100\n".into()).await;
    let lab = w.token("lab-bot@clients");
    let chunk = "x".repeat(150);
    let raw = format!(
        "POST {LAB} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {lab}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let resp = send(w.proxy.addr, raw.as_bytes()).await.unwrap();
    resp.assert_error(413);
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let w = World::start().await;
    let k = &w.key;
    let base = claims("lab-bot@clients");
    let mut cases: Vec<(&str, String)> = vec![
        (
            "expired",
            k.sign(&with(base.clone(), json!({"exp": now() - 120}))),
        ),
        (
            "not yet valid",
            k.sign(&with(base.clone(), json!({"nbf": now() + 600}))),
        ),
        (
            "wrong issuer",
            k.sign(&with(base.clone(), json!({"iss": "https://evil.test/"}))),
        ),
        (
            "wrong audience",
            k.sign(&with(base.clone(), json!({"aud": "https://other.test"}))),
        ),
        (
            "missing exp",
            k.sign(&with(base.clone(), json!({"exp": null}))),
        ),
        (
            "missing aud",
            k.sign(&with(base.clone(), json!({"aud": null}))),
        ),
        (
            "empty subject",
            k.sign(&with(base.clone(), json!({"sub": ""}))),
        ),
        (
            "numeric subject",
            k.sign(&with(base.clone(), json!({"sub": 42}))),
        ),
    ];
    // alg none
    let header = b64(br#"{"alg":"none","typ":"JWT","kid":"rsa1"}"#);
    let payload = b64(base.to_string().as_bytes());
    cases.push(("alg none", format!("{header}.{payload}.")));
    // HS256 signed with the RSA public key
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa1".into());
    let confused =
        jsonwebtoken::encode(&hs, &base, &EncodingKey::from_secret(&k.public_pem)).unwrap();
    cases.push(("HS256 with the RSA public key", confused));
    // unknown kid
    let mut other = SigningKey::rsa2();
    other.kid = "never-published".into();
    cases.push(("unknown kid", other.sign(&base)));
    // tampered payload
    let good = k.sign(&base);
    let parts: Vec<&str> = good.split('.').collect();
    let evil = b64(with(base.clone(), json!({"sub": "dr-alice"}))
        .to_string()
        .as_bytes());
    cases.push((
        "tampered payload",
        format!("{}.{evil}.{}", parts[0], parts[2]),
    ));
    cases.push(("truncated", good[..good.len() - 10].to_string()));

    for (what, token) in &cases {
        let resp = w.proxy.post(LAB, Some(token), &[]).await;
        assert_eq!(
            resp.status,
            401,
            "{what}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
    assert_eq!(w.backend.count(), 0);
    // and the untampered token is fine
    assert_eq!(w.proxy.post(LAB, Some(&good), &[]).await.status, 200);
}

#[tokio::test]
async fn rotated_key_is_picked_up_through_unknown_kid_refetch() {
    let w = World::start().await;
    let new_key = SigningKey::rsa2();
    let token = new_key.sign(&claims("lab-bot@clients"));
    // not published yet
    assert_eq!(w.proxy.post(LAB, Some(&token), &[]).await.status, 401);
    w.jwks.serve(&[&w.key, &new_key]);
    // the re-fetch is rate limited (1 s in this setup): wait it out
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = w.proxy.post(LAB, Some(&token), &[]).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

#[tokio::test]
async fn removed_key_stops_being_accepted_cached_tokens_included() {
    let w = World::start_with(|s| {
        s.issuers_yaml = s
            .issuers_yaml
            .replace("jwks_refresh_seconds: 300", "jwks_refresh_seconds: 1");
    })
    .await;
    let token = w.token("lab-bot@clients");
    assert_eq!(w.proxy.post(LAB, Some(&token), &[]).await.status, 200);
    assert_eq!(w.proxy.post(LAB, Some(&token), &[]).await.status, 200);
    w.jwks.serve(&[&SigningKey::rsa2()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = w.proxy.post(LAB, Some(&token), &[]).await.status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "removed key still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn keys_survive_the_jwks_server_going_away() {
    let w = World::start().await;
    let first = w.token("lab-bot@clients");
    assert_eq!(w.proxy.post(LAB, Some(&first), &[]).await.status, 200);
    w.jwks.stop();
    // cached token, and a fresh token signed by the same (cached) key
    assert_eq!(w.proxy.post(LAB, Some(&first), &[]).await.status, 200);
    let fresh = w
        .key
        .sign(&with(claims("lab-bot@clients"), json!({"jti": "fresh"})));
    assert_eq!(w.proxy.post(LAB, Some(&fresh), &[]).await.status, 200);
    assert_eq!(w.backend.count(), 3);
}

#[tokio::test]
async fn issuer_without_keys_is_503_and_not_ready() {
    let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap();
    // nothing listens on this port
    let dead = format!("http://127.0.0.1:{}/jwks.json", free_port());
    let proxy = Proxy::start(Setup::new(addr, &dead)).await;
    proxy.wait_for("/readyz", 503).await;
    let token = SigningKey::rsa1().sign(&claims("lab-bot@clients"));
    proxy.post(LAB, Some(&token), &[]).await.assert_error(503);
    // public Zambdas need no keys
    let resp = proxy
        .post("/v1/zambda/appointment-slots/execute-public", None, &[])
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(backend.count(), 1);
}

#[tokio::test]
async fn public_zambda_needs_no_token_and_gets_no_identity() {
    let w = World::start().await;
    let lab = w.token("lab-bot@clients");
    let resp = w
        .proxy
        .post(
            "/v1/zambda/appointment-slots/execute-public",
            Some(&lab),
            &[("x-zambda-actor", "admin"), ("x-zambda-roles", "clinician")],
        )
        .await;
    assert_eq!(resp.status, 200);
    let got = w.backend.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.target, "/v1/zambda/appointment-slots/execute-public");
    assert_eq!(r.header("x-zambda-name"), Some("appointment-slots"));
    assert!(r.header("x-zambda-id").is_some());
    assert!(
        r.header_values("authorization").is_empty(),
        "authorization forwarded on execute-public"
    );
    assert!(r.header_values("x-zambda-actor").is_empty());
    assert!(r.header_values("x-zambda-roles").is_empty());
}

#[tokio::test]
async fn spoofed_identity_headers_are_removed() {
    let w = World::start().await;
    let lab = w.token("lab-bot@clients");
    let spoof = [
        ("X-Zambda-Actor", "dr-alice"),
        ("x_zambda_roles", "clinician"),
        ("x.zambda.id", "billing-export"),
        ("X-ZAMBDA-NAME", "billing-export"),
        ("x-zambda-extra", "1"),
        ("x_oystehr_request_id", "spoof"),
        ("connection", "x-zambda-actor"),
    ];
    let resp = w.proxy.post(LAB, Some(&lab), &spoof).await;
    assert_eq!(resp.status, 200);
    let r = &w.backend.requests()[0];
    assert_eq!(r.header_values("x-zambda-actor"), vec!["lab-bot@clients"]);
    assert_eq!(r.header_values("x-zambda-roles"), vec!["lab-integrations"]);
    assert_eq!(r.header_values("x-zambda-id"), vec![LAB_ID]);
    assert_eq!(r.header_values("x-zambda-name"), vec!["lab-results-ingest"]);
    for (name, _) in &r.headers {
        assert!(
            !name.contains('_') && !name.contains('.') && name != "x-zambda-extra",
            "look-alike header {name} forwarded"
        );
    }
}

#[tokio::test]
async fn authorization_forwarding_and_path_template_follow_config() {
    let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap();
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let mut setup = Setup::new(addr, &jwks.url());
    setup
        .issuers_yaml
        .push_str("  forward_authorization: false\n");
    setup.upstream_extra = "  path_template: /function/{name}/{route}/{id}\n".into();
    let proxy = Proxy::start(setup).await;
    proxy.ready().await;
    let token = key.sign(&claims("lab-bot@clients"));
    let resp = proxy.post(&format!("{LAB}?a=1"), Some(&token), &[]).await;
    assert_eq!(resp.status, 200, "{}", proxy.logs());
    let r = &backend.requests()[0];
    assert_eq!(
        r.target,
        format!("/function/lab-results-ingest/execute/{LAB_ID}?a=1")
    );
    assert!(r.header_values("authorization").is_empty());
}

#[tokio::test]
async fn dry_run_forwards_would_be_denials_and_logs_them() {
    let w = World::start_with(|s| s.extra = "enforcement: dry_run\n".into()).await;
    let alice = w.token("dr-alice");
    let resp = w
        .proxy
        .post("/v1/zambda/billing-export/execute", Some(&alice), &[])
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(w.backend.count(), 1);
    // authentication is not relaxed
    w.proxy
        .post("/v1/zambda/billing-export/execute", None, &[])
        .await
        .assert_error(401);
    assert_eq!(w.backend.count(), 1);
    eventually("the would_deny log line", || {
        w.proxy.logs().contains("would_deny")
    })
    .await;
}

#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    // nothing listens upstream
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start(Setup::new(dead, &jwks.url())).await;
    proxy.ready().await;
    let token = key.sign(&claims("lab-bot@clients"));
    proxy.post(LAB, Some(&token), &[]).await.assert_error(502);

    // a backend slower than read_timeout_ms (2 s in this setup)
    let (slow, _rec) = echo::serve(
        "127.0.0.1:0".parse().unwrap(),
        Behaviour {
            delay: Some(Duration::from_secs(4)),
        },
    )
    .await
    .unwrap();
    let proxy = Proxy::start(Setup::new(slow, &jwks.url())).await;
    proxy.ready().await;
    proxy.post(LAB, Some(&token), &[]).await.assert_error(504);
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let w = World::start().await;
    let alice = w.token("dr-alice");
    let expired = w
        .key
        .sign(&with(claims("dr-alice"), json!({"exp": now() - 600})));
    w.proxy
        .post("/v1/zambda/billing-export/execute", Some(&alice), &[])
        .await
        .assert_error(403);
    w.proxy
        .post(LAB, Some(&expired), &[])
        .await
        .assert_error(401);
    assert_eq!(
        w.proxy
            .post("/v1/zambda/patient-summary/execute", Some(&alice), &[])
            .await
            .status,
        200
    );
    eventually("three decision lines", || {
        w.proxy.logs().matches("zambda_guard::decision").count() >= 3
    })
    .await;
    let logs = w.proxy.logs();
    for token in [&alice, &expired] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "token in logs:\n{logs}");
    }
    assert!(
        logs.contains("no-billing"),
        "deciding rule missing from the log:\n{logs}"
    );
}
