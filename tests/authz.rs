//! End to end: the decision-only service (SPEC §8). A real nginx (Debian's,
//! with `auth_request`) runs the shipped `examples/front-proxies/nginx.conf`
//! in front of the recording backend and asks zambda-guard before it
//! forwards; and for every `authz.source`, a table of requests is answered
//! by the decision service exactly as the inline proxy answers the same
//! request on `listen`, by the same running process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use zambda_guard::echo::{self, Behaviour, Recorder};

const LAB: &str = "/v1/zambda/lab-results-ingest/execute";
const BILLING: &str = "/v1/zambda/billing-export/execute";
const SLOTS: &str = "/v1/zambda/appointment-slots/execute-public";
const IDENTITY: [&str; 5] = [
    "x-zambda-id",
    "x-zambda-name",
    "x-zambda-actor",
    "x-zambda-roles",
    "x-oystehr-request-id",
];

struct World {
    proxy: Proxy,
    authz: SocketAddr,
    backend: Recorder,
    key: SigningKey,
    _jwks: JwksServer,
}

impl World {
    async fn start(source: &str) -> World {
        let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
            .await
            .unwrap();
        let key = SigningKey::rsa1();
        let jwks = JwksServer::start(&[&key]).await;
        let authz = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut setup = Setup::new(addr, &jwks.url());
        setup.extra = format!(
            "project_id: {PROJECT_ID}\nauthz_listen: {authz}\nauthz:\n  source: {source}\n{}",
            if source == "request" {
                "  path_prefix: /authz\n"
            } else {
                ""
            }
        );
        let proxy = Proxy::start(setup).await;
        proxy.ready().await;
        World {
            proxy,
            authz,
            backend,
            key,
            _jwks: jwks,
        }
    }

    fn token(&self, subject: &str) -> String {
        self.key.sign(&claims(subject))
    }
}

/// A request to judge: method, target, and headers (a token among them).
#[derive(Clone, Debug)]
struct Req {
    name: &'static str,
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
}

fn req(name: &'static str, method: &'static str, target: &str) -> Req {
    Req {
        name,
        method,
        target: target.to_string(),
        headers: Vec::new(),
    }
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }
}

/// Sends `method target` with `headers` (and a two-byte body on POST).
async fn send_raw(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: bool,
) -> Response {
    let mut raw =
        format!("{method} {target} HTTP/1.1\r\nhost: front.test\r\nconnection: close\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    if body {
        raw.push_str("content-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
    } else {
        raw.push_str("\r\n");
    }
    send(addr, raw.as_bytes()).await.unwrap()
}

/// The request as a decision request of `source`.
fn described(source: &str, r: &Req) -> (String, String, Vec<(String, String)>) {
    let mut headers = r.headers.clone();
    let (method, target) = match source {
        "request" => (r.method.to_string(), format!("/authz{}", r.target)),
        "forwarded" => {
            headers.push(("x-forwarded-method".into(), r.method.into()));
            headers.push(("x-forwarded-uri".into(), r.target.clone()));
            ("GET".into(), "/auth".into())
        }
        "original_uri" => {
            headers.push(("x-original-method".into(), r.method.into()));
            headers.push(("x-original-uri".into(), r.target.clone()));
            ("GET".into(), "/auth".into())
        }
        _ => {
            headers.push(("x-original-method".into(), r.method.into()));
            headers.push((
                "x-original-url".into(),
                format!("https://api.example.com{}", r.target),
            ));
            ("GET".into(), "/auth".into())
        }
    };
    (method, target, headers)
}

fn table(w: &World) -> Vec<Req> {
    let lab = w.token("lab-bot@clients");
    let alice = w.token("dr-alice");
    let mut forged = lab.clone();
    forged.push('x');
    vec![
        req("allowed", "POST", &format!("{LAB}?panel=cbc"))
            .bearer(&lab)
            .header("x-oystehr-request-id", "req-1"),
        req("allowed with project id", "POST", LAB)
            .bearer(&lab)
            .header("x-oystehr-project-id", PROJECT_ID),
        req("denied", "POST", BILLING).bearer(&alice),
        req("unknown zambda", "POST", "/v1/zambda/nope/execute").bearer(&lab),
        req("dot segment", "POST", "/v1/zambda/../execute").bearer(&lab),
        req("encoded slash", "POST", "/v1/zambda/a%2fb/execute").bearer(&lab),
        req("no route", "POST", "/v1/zambda/lab-results-ingest/execute/").bearer(&lab),
        req("no token", "POST", LAB),
        req("forged token", "POST", LAB).bearer(&forged),
        req("public", "POST", SLOTS),
        req("public ignores a token", "POST", SLOTS).bearer(&forged),
        req("wrong method", "GET", LAB).bearer(&lab),
        req("project id mismatch", "POST", LAB).bearer(&lab).header(
            "x-oystehr-project-id",
            "99999999-2222-3333-4444-555555555555",
        ),
        req("two project ids that disagree", "POST", SLOTS)
            .header("x-oystehr-project-id", PROJECT_ID)
            .header("x-zapehr-project-id", "x"),
    ]
}

/// The nginx rule (SPEC §8) for the nginx sources.
fn nginx_status(status: u16) -> u16 {
    match status {
        200..=299 | 401 | 403 => status,
        429 | 500.. => 500,
        _ => 403,
    }
}

/// For every source: the decision service answers each request of the
/// table as the inline proxy does, status and identity alike.
async fn same_answers_as_the_inline_proxy(source: &str) {
    let w = World::start(source).await;
    let mut failures = Vec::new();
    for r in table(&w) {
        w.backend.clear();
        let inline = send_raw(
            w.proxy.addr,
            r.method,
            &r.target,
            &r.headers,
            r.method == "POST",
        )
        .await;
        let upstream = w.backend.requests();
        let (method, target, headers) = described(source, &r);
        let decided = send_raw(w.authz, &method, &target, &headers, false).await;
        let told = decided
            .header("x-zambda-guard-status")
            .and_then(|s| s.parse::<u16>().ok());
        let want_status = if source.starts_with("original") {
            nginx_status(inline.status)
        } else {
            inline.status
        };
        if told != Some(inline.status) || decided.status != want_status {
            failures.push(format!(
                "{}: inline {}, decision service {} ({told:?})",
                r.name, inline.status, decided.status
            ));
            continue;
        }
        if inline.status == 200 {
            let Some(seen) = upstream.first() else {
                failures.push(format!("{}: the inline proxy forwarded nothing", r.name));
                continue;
            };
            let id_given = r.headers.iter().any(|(n, _)| n == "x-oystehr-request-id");
            for name in IDENTITY {
                // A request id is made anew per request unless the client gave one.
                if name == "x-oystehr-request-id" && !id_given {
                    continue;
                }
                let sent = seen.header(name).unwrap_or("");
                let answered = decided.header(name);
                if answered != Some(sent) {
                    failures.push(format!(
                        "{}: {name}: upstream {sent:?}, decision {answered:?}",
                        r.name
                    ));
                }
            }
        } else {
            let inline_body = inline.json();
            let body = decided.json();
            if body["code"] != inline_body["code"] || body["message"] != inline_body["message"] {
                failures.push(format!("{}: body {body} vs {inline_body}", r.name));
            }
            if inline.header("www-authenticate") != decided.header("www-authenticate") {
                failures.push(format!("{}: challenge differs", r.name));
            }
        }
    }
    assert!(failures.is_empty(), "{source}:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn request_source_answers_as_the_inline_proxy() {
    same_answers_as_the_inline_proxy("request").await;
}

#[tokio::test]
async fn forwarded_source_answers_as_the_inline_proxy() {
    same_answers_as_the_inline_proxy("forwarded").await;
}

#[tokio::test]
async fn original_uri_source_answers_as_the_inline_proxy() {
    same_answers_as_the_inline_proxy("original_uri").await;
}

#[tokio::test]
async fn original_url_source_answers_as_the_inline_proxy() {
    same_answers_as_the_inline_proxy("original_url").await;
}

#[tokio::test]
async fn only_the_configured_source_describes_the_request() {
    let w = World::start("original_uri").await;
    let lab = w.token("lab-bot@clients");
    let auth = ("authorization".to_string(), format!("Bearer {lab}"));
    // Another source's headers are not read: the request is not described.
    let other = vec![
        auth.clone(),
        ("x-forwarded-method".to_string(), "POST".to_string()),
        ("x-forwarded-uri".to_string(), LAB.to_string()),
    ];
    let r = send_raw(w.authz, "GET", "/auth", &other, false).await;
    assert_eq!(
        (r.status, r.header("x-zambda-guard-status")),
        (403, Some("400"))
    );
    // A repeated source header is refused, never one of them picked.
    let repeated = vec![
        auth.clone(),
        ("x-original-method".to_string(), "POST".to_string()),
        (
            "x-original-uri".to_string(),
            "/v1/zambda/appointment-slots/execute-public".to_string(),
        ),
        ("x-original-uri".to_string(), LAB.to_string()),
    ];
    let r = send_raw(w.authz, "GET", "/auth", &repeated, false).await;
    assert_eq!(
        (r.status, r.header("x-zambda-guard-status")),
        (403, Some("400"))
    );
    assert!(r.json()["message"].as_str().unwrap().contains("repeated"));
    // Its own target is not what is judged.
    let r = send_raw(w.authz, "POST", LAB, std::slice::from_ref(&auth), false).await;
    assert_eq!(r.header("x-zambda-guard-status"), Some("400"));
    // The decisions are counted on their own listener (after each answer
    // is written, so give the last one a moment).
    let want = "zambda_guard_requests_total{decision=\"bad_request\",listener=\"authz\",route=\"none\",zambda=\"unknown\"} 3";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = get(w.proxy.admin, "/metrics").await.unwrap();
        let text = String::from_utf8_lossy(&metrics.body).to_string();
        if text.contains(want) {
            break;
        }
        assert!(Instant::now() < deadline, "{want} not in:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(w.backend.count(), 0);
}

// ---------------------------------------------------------------------------
// A real nginx in front
// ---------------------------------------------------------------------------

struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> String {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(String::from)
        .expect("nginx is needed for this test (apt-get install nginx-light)")
}

/// Starts nginx with the shipped configuration, in front of `backend`,
/// asking `authz`.
async fn nginx(backend: SocketAddr, authz: SocketAddr) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let shipped =
        std::fs::read_to_string(repo().join("examples/front-proxies/nginx.conf")).unwrap();
    let site = shipped
        .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
        .replace("@AUTHZ@", &authz.to_string())
        .replace("@BACKEND@", &backend.to_string());
    std::fs::write(dir.path().join("site.conf"), site).unwrap();
    let d = dir.path().display();
    let main = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
    let child = Command::new(nginx_binary())
        .args(["-p"])
        .arg(dir.path())
        .args(["-c"])
        .arg(dir.path().join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Nginx {
        child,
        addr,
        _dir: dir,
    }
}

#[tokio::test]
async fn a_real_nginx_enforces_permissions_through_the_decision_service() {
    let w = World::start("original_uri").await;
    let front = nginx(w.backend_addr().await, w.authz).await;
    let lab = w.token("lab-bot@clients");
    let alice = w.token("dr-alice");
    let spoofs: Vec<(String, String)> = [
        "X-Zambda-Id",
        "x-zambda-name",
        "X-ZAMBDA-ACTOR",
        "x-zambda-roles",
        "x_zambda_actor",
        "x.zambda.actor",
        "x_zambda_roles",
        "x_oystehr_project_id",
    ]
    .iter()
    .map(|n| (n.to_string(), "spoofed".to_string()))
    .collect();

    // Allowed: arrives once, with the identity the inline proxy sends.
    w.backend.clear();
    let inline = send_raw(
        w.proxy.addr,
        "POST",
        &format!("{LAB}?panel=cbc"),
        &[("authorization".into(), format!("Bearer {lab}"))],
        true,
    )
    .await;
    assert_eq!(inline.status, 200);
    let want = w.backend.requests()[0].clone();
    w.backend.clear();
    let mut headers = spoofs.clone();
    headers.push(("authorization".into(), format!("Bearer {lab}")));
    let r = send_raw(
        front.addr,
        "POST",
        &format!("{LAB}?panel=cbc"),
        &headers,
        true,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let got = w.backend.requests();
    assert_eq!(got.len(), 1, "the allowed request arrives once");
    let got = &got[0];
    assert_eq!(
        got.target,
        format!("{LAB}?panel=cbc"),
        "the target goes upstream unchanged"
    );
    for name in IDENTITY {
        if name == "x-oystehr-request-id" {
            assert!(got.header(name).is_some(), "a request id");
            continue;
        }
        assert_eq!(got.header(name), want.header(name), "{name}: {got:?}");
    }
    for (name, _) in &spoofs {
        assert!(
            got.header_values(name).iter().all(|v| *v != "spoofed"),
            "{name} arrived: {got:?}"
        );
    }
    assert!(
        got.header("authorization").is_some(),
        "execute keeps Authorization"
    );

    // Public: arrives without identity or Authorization.
    w.backend.clear();
    let mut headers = spoofs.clone();
    headers.push(("authorization".into(), format!("Bearer {lab}")));
    let r = send_raw(front.addr, "POST", SLOTS, &headers, true).await;
    assert_eq!(r.status, 200);
    let got = &w.backend.requests()[0];
    assert_eq!(got.header("x-zambda-name"), Some("appointment-slots"));
    assert_eq!(got.header("x-zambda-actor"), None);
    assert_eq!(got.header("x-zambda-roles"), None);
    assert_eq!(
        got.header("authorization"),
        None,
        "execute-public drops Authorization"
    );
    assert!(got.header_values("x-zambda-actor").is_empty());

    // Refused: never arrive; 401 and 403 stay, the rest per the nginx rule.
    w.backend.clear();
    type Case = (
        &'static str,
        String,
        Vec<(String, String)>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "denied",
            BILLING.into(),
            vec![("authorization".into(), format!("Bearer {alice}"))],
            403,
            "403",
        ),
        ("no token", LAB.into(), vec![], 401, "401"),
        (
            "unknown zambda",
            "/v1/zambda/nope/execute".into(),
            vec![("authorization".into(), format!("Bearer {lab}"))],
            403,
            "404",
        ),
        (
            "dot segment",
            "/v1/zambda/%2e%2e/execute".into(),
            vec![("authorization".into(), format!("Bearer {lab}"))],
            403,
            "400",
        ),
        (
            "not public",
            "/v1/zambda/lab-results-ingest/execute-public".into(),
            vec![],
            403,
            "404",
        ),
    ];
    for (name, target, headers, status, told) in cases {
        let r = send_raw(front.addr, "POST", &target, &headers, true).await;
        assert_eq!(r.status, status, "{name}");
        assert_eq!(r.header("x-zambda-guard-status"), Some(told), "{name}");
        if status == 401 {
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|c| c.starts_with("Bearer")),
                "{name}"
            );
        }
    }
    assert_eq!(
        w.backend.count(),
        0,
        "a refused request reached the backend"
    );
}

impl World {
    /// The backend's address, as the proxy was configured with it.
    async fn backend_addr(&self) -> SocketAddr {
        let config = std::fs::read_to_string(self.proxy.dir.path().join("config.yaml")).unwrap();
        let line = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("address: "))
            .unwrap();
        line.parse().unwrap()
    }
}

#[tokio::test]
async fn the_decision_service_runs_alone_with_listen_null() {
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = repo().join("policies");
    let authz = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: null\nadmin_listen: {admin}\nauthz_listen: {authz}\nauthz:\n  source: forwarded\n\
             auth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n      jwks_url: {}\n\
             policies:\n  dir: {}\nshutdown:\n  grace_period_seconds: 0\n  upgrade_sock: {}/upgrade.sock\n",
            jwks.url(),
            policies.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zambda-guard"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(admin, "/readyz").await.is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let token = key.sign(&claims("lab-bot@clients"));
    let headers = vec![
        ("authorization".to_string(), format!("Bearer {token}")),
        ("x-forwarded-method".to_string(), "POST".to_string()),
        ("x-forwarded-uri".to_string(), LAB.to_string()),
    ];
    let r = send_raw(authz, "GET", "/auth", &headers, false).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-zambda-name"), Some("lab-results-ingest"));
    assert_eq!(r.header("x-zambda-actor"), Some("lab-bot@clients"));
}
