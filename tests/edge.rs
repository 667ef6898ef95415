//! Edge mode end to end: an upstream per Zambda with failover and health
//! checks, CORS for browser apps, and rate limits (SPEC §7, §4).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::{Duration, Instant};

use common::*;
use zambda_guard::echo::{self, Behaviour};

/// Three Zambdas: `lab` on upstream `labs`, `bill` on `billing`, `plain` on
/// the default upstream; `caller` may invoke all, `open` is public.
const POLICY: &str = "zambdas:\n  - {id: z-lab, name: lab, upstream: labs}\n  - {id: z-bill, name: bill, upstream: billing}\n  - {id: z-plain, name: plain}\n  - {id: z-open, name: open, type: public, upstream: labs}\nactors:\n  - subject: caller\n    access_policy:\n      rule:\n        - {action: Zambda:InvokeFunction, resource: \"*\", effect: Allow}\n  - subject: other\n    access_policy:\n      rule:\n        - {action: Zambda:InvokeFunction, resource: \"*\", effect: Allow}\n";

async fn backend() -> (std::net::SocketAddr, Recorder) {
    echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap()
}

fn dead() -> std::net::SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// The signing key, its JWKS server, and the default backend.
async fn world() -> (SigningKey, JwksServer, std::net::SocketAddr, Recorder) {
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let (default, rec) = backend().await;
    (key, jwks, default, rec)
}

async fn start(default: std::net::SocketAddr, jwks: &JwksServer, extra: String) -> Proxy {
    let mut setup = Setup::new(default, &jwks.url());
    setup.policies = Some(vec![("p.yaml".into(), POLICY.into())]);
    setup.extra = extra;
    let proxy = Proxy::start(setup).await;
    proxy.ready().await;
    proxy
}

#[tokio::test]
async fn each_upstream_gets_exactly_its_zambdas_and_fails_over() {
    let (key, jwks, default, default_rec) = world().await;
    let (lab_a, lab_a_rec) = backend().await;
    let (lab_b, lab_b_rec) = backend().await;
    let (bill, bill_rec) = backend().await;
    // `labs` lists a dead address too: connections to it fail over
    let extra = format!(
        "upstreams:\n  labs:\n    addresses: [{lab_a}, {}, {lab_b}]\n  billing:\n    addresses: [{bill}]\n",
        dead()
    );
    let proxy = start(default, &jwks, extra).await;
    let token = key.sign(&claims("caller"));
    for _ in 0..6 {
        let r = proxy
            .post("/v1/zambda/lab/execute", Some(&token), &[])
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    for _ in 0..3 {
        assert_eq!(
            proxy
                .post("/v1/zambda/bill/execute", Some(&token), &[])
                .await
                .status,
            200
        );
    }
    assert_eq!(
        proxy
            .post("/v1/zambda/plain/execute", Some(&token), &[])
            .await
            .status,
        200
    );
    assert_eq!(
        proxy
            .post("/v1/zambda/open/execute-public", None, &[])
            .await
            .status,
        200
    );

    let lab_seen: Vec<_> = lab_a_rec
        .requests()
        .into_iter()
        .chain(lab_b_rec.requests())
        .map(|r| r.header("x-zambda-name").unwrap().to_string())
        .collect();
    assert_eq!(lab_seen.len(), 7, "{lab_seen:?}");
    assert!(
        lab_seen.iter().all(|n| n == "lab" || n == "open"),
        "{lab_seen:?}"
    );
    assert!(
        lab_a_rec.count() > 0 && lab_b_rec.count() > 0,
        "round robin used one address only"
    );
    assert_eq!(bill_rec.count(), 3);
    assert!(bill_rec
        .requests()
        .iter()
        .all(|r| r.header("x-zambda-name") == Some("bill")));
    assert_eq!(default_rec.count(), 1);
    assert_eq!(
        default_rec.requests()[0].header("x-zambda-name"),
        Some("plain")
    );
}

#[tokio::test]
async fn an_upstream_with_no_healthy_address_answers_503_at_once() {
    let (key, jwks, default, _rec) = world().await;
    let (bill, bill_rec) = backend().await;
    let extra = format!(
        "upstreams:\n  labs:\n    addresses: [{}]\n    health_check: {{path: /healthz, interval_seconds: 1}}\n  billing:\n    addresses: [{bill}]\n    health_check: {{path: /healthz, interval_seconds: 1}}\n",
        dead()
    );
    let proxy = start(default, &jwks, extra).await;
    let token = key.sign(&claims("caller"));
    // once the health check has run, the dead upstream is skipped entirely
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let r = proxy
            .post("/v1/zambda/lab/execute", Some(&token), &[])
            .await;
        assert!(r.status == 503 || r.status == 502, "{}", r.status);
        if r.status == 503 {
            let message = r.assert_error(503);
            assert_eq!(message, "no healthy upstream");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "503 took {:?}",
                started.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health check never marked the upstream down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // the healthy one is unaffected, and its health checks reach it
    assert_eq!(
        proxy
            .post("/v1/zambda/bill/execute", Some(&token), &[])
            .await
            .status,
        200
    );
    eventually("a health check request", || {
        bill_rec
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.target == "/healthz")
    })
    .await;
}

#[tokio::test]
async fn a_zambda_naming_an_unknown_upstream_stops_the_start() {
    let (_key, jwks, default, _rec) = world().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "upstream: {{address: {default}}}\nauth:\n  issuers:\n    - {{issuer: {ISSUER}, audiences: [{AUDIENCE}], algorithms: [RS256], jwks_url: {}}}\n",
            jwks.url()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zambda-guard"))
        .args(["run", "--config"])
        .arg(dir.path().join("config.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"labs\"") && err.contains("p.yaml"), "{err}");
}

const CORS: &str = "cors:\n  allowed_origins: [https://app.example.com]\n  max_age_seconds: 120\n";

fn preflight(origin: &str) -> String {
    format!(
        "OPTIONS /v1/zambda/open/execute-public HTTP/1.1\r\nhost: x\r\norigin: {origin}\r\naccess-control-request-method: POST\r\naccess-control-request-headers: content-type\r\nconnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn cors_answers_preflights_and_marks_allowed_origins_only() {
    let (_key, jwks, default, rec) = world().await;
    let extra = format!("upstreams:\n  labs:\n    addresses: [{default}]\n  billing:\n    addresses: [{default}]\n{CORS}");
    let proxy = start(default, &jwks, extra).await;

    let ok = send(proxy.addr, preflight("https://app.example.com").as_bytes())
        .await
        .unwrap();
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(ok.header("access-control-allow-methods"), Some("POST"));
    assert!(ok
        .header("access-control-allow-headers")
        .unwrap()
        .contains("content-type"));
    assert_eq!(ok.header("access-control-max-age"), Some("120"));
    assert_eq!(ok.header("vary"), Some("Origin"));
    assert!(ok.header("access-control-allow-credentials").is_none());

    let other = send(proxy.addr, preflight("https://evil.example").as_bytes())
        .await
        .unwrap();
    assert_eq!(other.status, 204);
    assert!(other.header("access-control-allow-origin").is_none());
    assert_eq!(other.header("vary"), Some("Origin"));

    // preflights need no token, even on execute, and reach nothing
    let exec = preflight("https://app.example.com").replace("open/execute-public", "lab/execute");
    assert_eq!(send(proxy.addr, exec.as_bytes()).await.unwrap().status, 204);
    assert_eq!(rec.count(), 0);

    // actual requests: headers for the allowed origin, on success and on refusal
    let r = proxy
        .post(
            "/v1/zambda/open/execute-public",
            None,
            &[("origin", "https://app.example.com")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(r
        .header("access-control-expose-headers")
        .unwrap()
        .contains("x-oystehr-request-id"));
    let denied = proxy
        .post(
            "/v1/zambda/lab/execute",
            None,
            &[("origin", "https://app.example.com")],
        )
        .await;
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let r = proxy
        .post(
            "/v1/zambda/open/execute-public",
            None,
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn without_cors_options_is_405() {
    let (_key, jwks, default, _rec) = world().await;
    let extra = format!(
        "upstreams:\n  labs:\n    addresses: [{default}]\n  billing:\n    addresses: [{default}]\n"
    );
    let proxy = start(default, &jwks, extra).await;
    let r = send(proxy.addr, preflight("https://app.example.com").as_bytes())
        .await
        .unwrap();
    r.assert_error(405);
    assert_eq!(r.header("allow"), Some("POST"));
}

#[tokio::test]
async fn rate_limits_answer_429_per_actor_and_per_client() {
    let (key, jwks, default, rec) = world().await;
    // one request a second, bursts of 3: the first three pass at once, the
    // fourth only a second after the first
    let extra = format!(
        "upstreams:\n  labs:\n    addresses: [{default}]\n  billing:\n    addresses: [{default}]\nrate_limits:\n  per_actor_per_second: 1\n  per_client_per_second: 1\n  burst: 3\n"
    );
    let proxy = start(default, &jwks, extra).await;
    let caller = key.sign(&claims("caller"));
    let other = key.sign(&claims("other"));

    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = proxy
            .post("/v1/zambda/plain/execute", Some(&caller), &[])
            .await;
        if r.status == 429 {
            assert_eq!(r.header("retry-after"), Some("1"));
            r.assert_error(429);
        }
        statuses.push(r.status);
    }
    // another actor has its own budget, whatever the first one used
    let r = proxy
        .post("/v1/zambda/plain/execute", Some(&other), &[])
        .await;
    assert_eq!(r.status, 200);
    let mut public = Vec::new();
    for _ in 0..6 {
        public.push(
            proxy
                .post("/v1/zambda/open/execute-public", None, &[])
                .await
                .status,
        );
    }
    let elapsed = started.elapsed();
    // Exact counts hold while the whole run stays within the first second
    // (it takes milliseconds); on a machine too slow for that, at most one
    // more per elapsed second may pass.
    let extra_allowed = elapsed.as_secs() as usize;
    let passed = statuses.iter().filter(|s| **s == 200).count();
    let public_passed = public.iter().filter(|s| **s == 200).count();
    assert!(
        (3..=3 + extra_allowed).contains(&passed),
        "{statuses:?} in {elapsed:?}"
    );
    assert_eq!(statuses[..3], [200, 200, 200], "the burst passes");
    assert!(
        (3..=3 + extra_allowed).contains(&public_passed),
        "{public:?} in {elapsed:?}"
    );
    assert!(statuses
        .iter()
        .chain(&public)
        .all(|s| *s == 200 || *s == 429));
    assert_eq!(rec.count(), passed + 1 + public_passed);

    // A request is counted once its answer is on the wire: poll until the
    // last one is in, then hold the counts exact.
    let want = ((8 - passed) as f64, (6 - public_passed) as f64);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8(get(proxy.admin, "/metrics").await.unwrap().body).unwrap();
        let count = |route: &str| -> f64 {
            let series = format!("zambda_guard_rate_limited_total{{route=\"{route}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&series).and_then(|v| v.parse().ok()))
                .unwrap_or(0.0)
        };
        let got = (count("execute"), count("execute-public"));
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counted {got:?}, want {want:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // one request's worth comes back after one interval, not a whole burst
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(started.elapsed())).await;
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(
            proxy
                .post("/v1/zambda/plain/execute", Some(&caller), &[])
                .await
                .status,
        );
    }
    assert_eq!(after[0], 200, "{after:?}");
    assert_eq!(after[2], 429, "{after:?}");
}
