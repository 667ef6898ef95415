//! Live operations end to end: hot reload through real file-system events
//! (editor saves, created and deleted files, symlinked files and
//! directories, a Kubernetes ConfigMap volume swap), SIGHUP, reload under
//! traffic, readiness, `/metrics` after known traffic, decision logs, and
//! the SIGTERM and SIGQUIT signals.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use zambda_guard::echo::{self, Behaviour};

const ZAMBDA_A: &str = "/v1/zambda/alpha/execute";

/// A policy set where `flip` may invoke `alpha` when `allowed`, `steady`
/// always may and `never` never may.
fn policy(allowed: bool) -> String {
    let effect = if allowed { "Allow" } else { "Deny" };
    format!(
        "zambdas:\n  - id: a-1\n    name: alpha\nroles:\n  - name: base\n    access_policy:\n      rule:\n        - action: Zambda:InvokeFunction\n          resource: Zambda:Function:alpha\n          effect: Allow\n  - name: flipper\n    access_policy:\n      rule:\n        - action: Zambda:InvokeFunction\n          resource: Zambda:Function:alpha\n          effect: {effect}\nactors:\n  - subject: steady\n    roles: [base]\n  - subject: never\n  - subject: flip\n    roles: [flipper]\n"
    )
}

struct Live {
    proxy: Proxy,
    key: SigningKey,
    _jwks: JwksServer,
    _backend: Recorder,
}

impl Live {
    /// A proxy whose policy directory holds `files`, or is laid out by
    /// `layout` (called with the directory the config names).
    async fn start(layout: impl FnOnce(&Path) + 'static) -> Live {
        let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
            .await
            .unwrap();
        let key = SigningKey::rsa1();
        let jwks = JwksServer::start(&[&key]).await;
        let mut setup = Setup::new(addr, &jwks.url());
        setup.policies = Some(Vec::new());
        setup.before_start = Some(Box::new(layout));
        let proxy = Proxy::start(setup).await;
        proxy.ready().await;
        Live {
            proxy,
            key,
            _jwks: jwks,
            _backend: backend,
        }
    }

    fn policies(&self) -> std::path::PathBuf {
        self.proxy.dir.path().join("policies")
    }

    async fn status(&self, subject: &str) -> u16 {
        let token = self.key.sign(&claims(subject));
        self.proxy.post(ZAMBDA_A, Some(&token), &[]).await.status
    }

    /// Waits until `flip` gets `status`; returns how long that took.
    async fn until_flip(&self, status: u16, what: &str) -> Duration {
        let started = Instant::now();
        loop {
            if self.status("flip").await == status {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what}: flip never got {status}; log:\n{}",
                self.proxy.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("swp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn editor_saves_created_and_deleted_files_reload() {
    let live = Live::start(|dir| std::fs::write(dir.join("p.yaml"), policy(true)).unwrap()).await;
    assert_eq!(live.status("flip").await, 200);
    let p = live.policies().join("p.yaml");

    write_atomically(&p, &policy(false));
    let took = live.until_flip(403, "editor save").await;
    println!("reload after an editor save took {} ms", took.as_millis());

    // an invalid write is refused; the last good set keeps serving (written
    // whole: a truncated file caught between truncate and write is valid)
    write_atomically(&p, "zambdas: [oops\n");
    std::fs::write(
        live.policies().join("extra.yaml"),
        "roles:\n  - name: base\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(live.status("flip").await, 403);
    assert_eq!(live.status("steady").await, 200);
    eventually("the refusal in the log", || {
        live.proxy.logs().contains("policy reload refused")
    })
    .await;

    // deleting the bad file and fixing the other makes it valid again
    std::fs::remove_file(live.policies().join("extra.yaml")).unwrap();
    std::fs::write(&p, policy(true)).unwrap();
    live.until_flip(200, "fix").await;

    // a new file joins the set: a deny-all role for flip
    std::fs::write(
        &p,
        policy(true).replace("roles: [flipper]", "roles: [flipper, off]"),
    )
    .unwrap();
    std::fs::write(
        live.policies().join("off.yaml"),
        "roles:\n  - name: off\n    access_policy:\n      rule:\n        - {action: \"*\", resource: \"*\", effect: Deny}\n",
    )
    .unwrap();
    live.until_flip(403, "created file").await;
}

#[tokio::test]
async fn a_directory_of_symlinks_and_a_symlinked_directory_reload() {
    // policies/ is a symlink to real-a/, whose p.yaml is a symlink to a file elsewhere
    let live = Live::start(|dir| {
        let root = dir.parent().unwrap();
        std::fs::remove_dir_all(dir).ok();
        std::fs::create_dir(root.join("store")).unwrap();
        std::fs::write(root.join("store/v1.yaml"), policy(true)).unwrap();
        std::fs::create_dir(root.join("real-a")).unwrap();
        symlink(root.join("store/v1.yaml"), root.join("real-a/p.yaml")).unwrap();
        symlink(root.join("real-a"), dir).unwrap();
    })
    .await;
    let root = live.proxy.dir.path().to_path_buf();
    assert_eq!(live.status("flip").await, 200);

    // the symlinked file's target changes
    write_atomically(&root.join("store/v1.yaml"), &policy(false));
    let took = live.until_flip(403, "symlinked file").await;
    println!(
        "reload through a symlinked file took {} ms",
        took.as_millis()
    );

    // the directory symlink is re-pointed at another directory
    std::fs::create_dir(root.join("real-b")).unwrap();
    std::fs::write(root.join("real-b/p.yaml"), policy(true)).unwrap();
    symlink(root.join("real-b"), root.join("policies.new")).unwrap();
    std::fs::rename(root.join("policies.new"), root.join("policies")).unwrap();
    let took = live.until_flip(200, "re-pointed directory").await;
    println!(
        "reload after re-pointing the directory took {} ms",
        took.as_millis()
    );
}

/// Lays out a ConfigMap volume exactly as the kubelet does: files in a
/// timestamped directory, `..data` pointing at it, and a symlink per key.
fn configmap_version(dir: &Path, stamp: &str, text: &str) {
    let versioned = dir.join(format!("..{stamp}"));
    std::fs::create_dir(&versioned).unwrap();
    std::fs::write(versioned.join("p.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{stamp}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if !dir.join("p.yaml").exists() {
        symlink("..data/p.yaml", dir.join("p.yaml")).unwrap();
    }
}

#[tokio::test]
async fn a_kubernetes_configmap_update_reloads() {
    let live =
        Live::start(|dir| configmap_version(dir, "2026_11_25_10_00_00.000000001", &policy(true)))
            .await;
    assert_eq!(live.status("flip").await, 200);
    let dir = live.policies();
    let started = Instant::now();
    configmap_version(&dir, "2026_11_25_10_05_00.000000002", &policy(false));
    std::fs::remove_dir_all(dir.join("..2026_11_25_10_00_00.000000001")).unwrap();
    live.until_flip(403, "configmap swap").await;
    println!(
        "reload after a ConfigMap swap took {} ms",
        started.elapsed().as_millis()
    );
    // each file is read once: no duplicate-definition error from ..data
    assert!(
        !live.proxy.logs().contains("refused"),
        "{}",
        live.proxy.logs()
    );
}

#[tokio::test]
async fn sighup_reloads_when_watching_is_off() {
    let (addr, _backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap();
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let mut setup = Setup::new(addr, &jwks.url());
    setup.policies = Some(vec![("p.yaml".into(), policy(true))]);
    setup.policies_extra = "  watch: false\n".into();
    let proxy = Proxy::start(setup).await;
    proxy.ready().await;
    let token = key.sign(&claims("flip"));
    assert_eq!(proxy.post(ZAMBDA_A, Some(&token), &[]).await.status, 200);
    std::fs::write(proxy.dir.path().join("policies/p.yaml"), policy(false)).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        proxy.post(ZAMBDA_A, Some(&token), &[]).await.status,
        200,
        "reloaded without SIGHUP"
    );
    proxy.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.post(ZAMBDA_A, Some(&token), &[]).await.status != 403 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload:\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the process survived the signal
    assert_eq!(get(proxy.admin, "/healthz").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_traffic_never_decides_wrong() {
    let live = Live::start(|dir| std::fs::write(dir.join("p.yaml"), policy(true)).unwrap()).await;
    let steady = live.key.sign(&claims("steady"));
    let never = live.key.sign(&claims("never"));
    let flip = live.key.sign(&claims("flip"));
    let p = live.policies().join("p.yaml");
    let addr = live.proxy.addr;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let (steady, never, flip) = (steady.clone(), never.clone(), flip.clone());
        tokio::spawn(async move {
            let mut wrong = Vec::new();
            let mut count = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && count < 20_000 {
                for (token, ok) in [
                    (&steady, &[200u16][..]),
                    (&never, &[403]),
                    (&flip, &[200, 403]),
                ] {
                    let raw = format!(
                        "POST {ZAMBDA_A} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let status = send(addr, raw.as_bytes()).await.map_or(0, |r| r.status);
                    if !ok.contains(&status) {
                        wrong.push(status);
                    }
                    count += 1;
                }
            }
            (count, wrong)
        })
    };
    // hundreds of rewrites, every fifth one invalid; a few of each kind
    // stay long enough to be loaded for sure (the watcher debounces bursts)
    let mut last_valid = true;
    for i in 0..300 {
        if i % 5 == 4 {
            write_atomically(&p, "roles:\n  - name: base\n    bogus: 1\n");
        } else {
            last_valid = i % 2 == 0;
            write_atomically(&p, &policy(last_valid));
        }
        let pause = if i % 100 == 3 || i % 100 == 4 { 700 } else { 5 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    write_atomically(&p, &policy(!last_valid));
    let final_status = if last_valid { 403 } else { 200 };
    live.until_flip(final_status, "final write").await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (count, wrong) = traffic.await.unwrap();
    assert!(count > 100, "too little traffic to mean anything: {count}");
    assert!(
        wrong.is_empty(),
        "{} wrong answers of {count}: {wrong:?}",
        wrong.len()
    );
    println!("{count} requests during 301 rewrites, 0 wrong");

    // The final decision can show before the last reload: when the last
    // set loaded during the burst already decided that way, the watcher may
    // still be about to refuse the invalid write just before the final one.
    // The final, valid content must be what the proxy reports in the end.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics =
            String::from_utf8(get(live.proxy.admin, "/metrics").await.unwrap().body).unwrap();
        if metric(&metrics, "zambda_guard_policy_last_reload_success") == 1.0 {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the last reload never reported success:\n{metrics}\n{}",
            live.proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metric(&metrics, "zambda_guard_policy_reloads_total{result=\"ok\"}") >= 1.0);
    assert!(
        metric(
            &metrics,
            "zambda_guard_policy_reloads_total{result=\"error\"}"
        ) >= 1.0
    );
    assert_eq!(live.status("flip").await, final_status);
}

/// The value of one sample line in a Prometheus text exposition.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} not in:\n{text}"))
}

#[tokio::test]
async fn metrics_count_known_traffic_and_reloads() {
    let live = Live::start(|dir| std::fs::write(dir.join("p.yaml"), policy(true)).unwrap()).await;
    let p = &live.proxy;
    let token = live.key.sign(&claims("steady"));
    for _ in 0..3 {
        assert_eq!(p.post(ZAMBDA_A, Some(&token), &[]).await.status, 200);
    }
    let never = live.key.sign(&claims("never"));
    assert_eq!(p.post(ZAMBDA_A, Some(&never), &[]).await.status, 403);
    assert_eq!(p.post(ZAMBDA_A, None, &[]).await.status, 401);
    assert_eq!(
        p.post("/v1/zambda/ghost/execute", Some(&token), &[])
            .await
            .status,
        404
    );
    assert_eq!(p.post("/nowhere", None, &[]).await.status, 404);
    assert_eq!(
        p.post("/v1/zambda/%2e%2e/execute", None, &[]).await.status,
        400
    );

    // one valid and one invalid reload; an unchanged poll counts nothing
    std::fs::write(live.policies().join("p.yaml"), policy(false)).unwrap();
    live.until_flip(403, "reload").await;
    std::fs::write(live.policies().join("p.yaml"), "nope: [").unwrap();
    eventually("the refused reload", || p.logs().contains("refused")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let text = String::from_utf8(get(p.admin, "/metrics").await.unwrap().body).unwrap();
    let req = |route: &str, decision: &str, zambda: &str| {
        metric(
            &text,
            &format!("zambda_guard_requests_total{{decision=\"{decision}\",listener=\"proxy\",route=\"{route}\",zambda=\"{zambda}\"}}"),
        )
    };
    assert!(req("execute", "allow", "alpha") >= 3.0);
    assert_eq!(req("execute", "unauthenticated", "unknown"), 1.0);
    assert_eq!(req("execute", "not_found", "unknown"), 1.0);
    assert_eq!(req("none", "not_found", "unknown"), 1.0);
    assert_eq!(req("none", "bad_request", "unknown"), 1.0);
    assert!(req("execute", "deny", "alpha") >= 1.0);
    assert!(
        metric(
            &text,
            "zambda_guard_upstream_responses_total{class=\"2xx\"}"
        ) >= 3.0
    );
    assert_eq!(
        metric(&text, "zambda_guard_policy_reloads_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "zambda_guard_policy_reloads_total{result=\"error\"}"),
        1.0
    );
    assert_eq!(metric(&text, "zambda_guard_policy_generation"), 2.0);
    assert_eq!(
        metric(&text, "zambda_guard_policy_last_reload_success"),
        0.0
    );
    assert_eq!(metric(&text, "zambda_guard_policy_rules"), 2.0);
    assert!(metric(&text, "zambda_guard_policy_last_reload_timestamp_seconds") > 1.7e9);
    assert!(metric(&text, "zambda_guard_token_cache_hits_total") >= 2.0);
    assert!(metric(&text, "zambda_guard_token_cache_misses_total") >= 1.0);
    assert_eq!(
        metric(
            &text,
            &format!("zambda_guard_jwks_keys{{issuer=\"{ISSUER}\"}}")
        ),
        1.0
    );
    assert!(
        metric(
            &text,
            &format!("zambda_guard_jwks_refresh_total{{issuer=\"{ISSUER}\",result=\"ok\"}}")
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            &format!("zambda_guard_jwks_last_success_timestamp_seconds{{issuer=\"{ISSUER}\"}}")
        ) > 1.7e9
    );
    assert!(metric(&text, "zambda_guard_decision_duration_seconds_count") >= 4.0);
    assert!(text.contains("zambda_guard_request_duration_seconds_bucket{decision=\"allow\",route=\"execute\",le=\"0.001\"}"));
    assert!(text.contains(&format!(
        "zambda_guard_build_info{{revision=\"{}\",rustc=\"{}\",version=\"{}\"}} 1",
        zambda_guard::REVISION,
        zambda_guard::RUSTC,
        env!("CARGO_PKG_VERSION")
    )));
    // bounded labels: no subject, token or raw path ever becomes one
    for leak in ["steady", "never", "%2e", "nowhere", "ghost"] {
        assert!(!text.contains(leak), "{leak} leaked into metrics");
    }
}

#[tokio::test]
async fn not_ready_until_the_jwks_server_comes_up() {
    let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap();
    let jwks_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let url = format!("http://{jwks_addr}/jwks.json");
    let proxy = Proxy::start(Setup::new(addr, &url)).await;
    let key = SigningKey::rsa1();
    let token = key.sign(&claims("lab-bot@clients"));
    proxy.wait_for("/readyz", 503).await;
    let body = String::from_utf8(get(proxy.admin, "/readyz").await.unwrap().body).unwrap();
    assert!(body.contains(ISSUER), "{body}");
    proxy
        .post("/v1/zambda/lab-results-ingest/execute", Some(&token), &[])
        .await
        .assert_error(503);
    let _jwks = JwksServer::start_on(jwks_addr, &[&key]).await;
    proxy.ready().await;
    let resp = proxy
        .post("/v1/zambda/lab-results-ingest/execute", Some(&token), &[])
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(backend.count(), 1);
}

#[tokio::test]
async fn json_decision_logs_carry_the_deciding_rule_and_never_a_token() {
    let (addr, _backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap();
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let mut setup = Setup::new(addr, &jwks.url());
    setup.env = vec![
        ("LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "trace".into()),
    ];
    let proxy = Proxy::start(setup).await;
    proxy.ready().await;
    let alice = key.sign(&claims("dr-alice"));
    let forged = format!("{}x", &alice[..alice.len() - 1]);
    proxy
        .post("/v1/zambda/billing-export/execute", Some(&alice), &[])
        .await
        .assert_error(403);
    proxy
        .post("/v1/zambda/billing-export/execute", Some(&forged), &[])
        .await
        .assert_error(401);
    assert_eq!(
        proxy
            .post("/v1/zambda/patient-summary/execute", Some(&alice), &[])
            .await
            .status,
        200
    );
    eventually("three decision lines", || {
        proxy
            .logs()
            .matches("\"target\":\"zambda_guard::decision\"")
            .count()
            >= 3
    })
    .await;
    let logs = proxy.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["target"] == "zambda_guard::decision")
        .collect();
    assert_eq!(lines.len(), 3, "{logs}");
    // Flat: every field at the top level, none nested under `fields`.
    assert!(lines.iter().all(|l| l.get("fields").is_none()), "{logs}");
    let deny = &lines[0];
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["rule"], deny["reason"]);
    assert_eq!(deny["status"], 403);
    assert_eq!(deny["zambda"], "billing-export");
    assert_eq!(deny["actor"], "dr-alice");
    assert_eq!(deny["route"], "execute");
    assert!(
        deny["reason"].as_str().unwrap().contains("no-billing"),
        "{deny}"
    );
    assert!(deny["request_id"].as_str().is_some());
    assert!(deny["latency_ms"].as_f64().is_some());
    assert_eq!(lines[1]["decision"], "unauthenticated");
    assert!(lines[1].get("rule").is_none(), "{logs}");
    // The access log of a forwarded call (SPEC §9).
    let allow = &lines[2];
    assert_eq!(allow["decision"], "allow");
    assert_eq!(allow["method"], "POST");
    assert_eq!(allow["client"], "127.0.0.1");
    assert_eq!(allow["issuer"], ISSUER);
    assert_eq!(allow["upstream_status"], 200);
    assert!(allow["upstream_ms"].as_f64().is_some(), "{allow}");
    assert_eq!(allow["bytes_in"], 2);
    assert!(
        allow["bytes_out"].as_u64().is_some_and(|n| n > 0),
        "{allow}"
    );
    assert!(allow["timestamp"].as_str().is_some(), "{allow}");
    assert_eq!(allow["level"], "INFO");
    for token in [&alice, &forged] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token reached the logs");
    }
    // trace level was on: the log is not trivially empty
    assert!(logs.lines().count() > 10, "{logs}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let (addr, backend) = echo::serve(
        "127.0.0.1:0".parse().unwrap(),
        Behaviour {
            delay: Some(Duration::from_millis(1200)),
        },
    )
    .await
    .unwrap();
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let mut proxy = Proxy::start(Setup::new(addr, &jwks.url())).await;
    proxy.ready().await;
    let token = key.sign(&claims("lab-bot@clients"));
    let raw = format!(
        "POST /v1/zambda/lab-results-ingest/execute HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    );
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move { send(addr, raw.as_bytes()).await });
    eventually("the request to reach the backend", || backend.count() == 1).await;
    proxy.signal("TERM");
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status, 200, "in-flight request cut by SIGTERM");
    // and the process then exits on its own
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            assert!(status.success() || status.code().is_some(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clients that each keep one connection busy, sending the next request as
/// soon as the last is answered, and open a new connection when told
/// `Connection: close` or when one breaks. A client ends when a connection
/// is refused (nothing was sent on it) or, between two requests, once
/// `stop` is set. A request written and never answered is a lost one.
struct KeepAliveLoad {
    answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl KeepAliveLoad {
    fn start(addr: std::net::SocketAddr, raw: String, clients: usize) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        use tokio::io::AsyncWriteExt;
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (raw, answered, stop) = (raw.clone(), answered.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut lost = Vec::new();
                    'connections: while !stop.load(Relaxed) {
                        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                            break;
                        };
                        let mut buf = Vec::new();
                        while !stop.load(Relaxed) {
                            if stream.write_all(raw.as_bytes()).await.is_err() {
                                continue 'connections;
                            }
                            match read_response(&mut stream, &mut buf).await {
                                Ok(r) => {
                                    answered.fetch_add(1, Relaxed);
                                    if r.status != 200 {
                                        lost.push(format!("status {}", r.status));
                                    }
                                    if r.header("connection") == Some("close") {
                                        continue 'connections;
                                    }
                                }
                                Err(e) => {
                                    lost.push(e.to_string());
                                    continue 'connections;
                                }
                            }
                        }
                    }
                    lost
                })
            })
            .collect();
        KeepAliveLoad {
            answered,
            stop,
            clients,
        }
    }

    /// Waits until `n` requests were answered: every connection busy,
    /// several times over.
    async fn answered_at_least(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.answered.load(std::sync::atomic::Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the load did not get going");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the clients; the requests answered and every loss.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut lost = Vec::new();
        for client in self.clients {
            let l = tokio::time::timeout(Duration::from_secs(15), client)
                .await
                .expect("a client hung")
                .unwrap();
            lost.extend(l);
        }
        (
            self.answered.load(std::sync::atomic::Ordering::Relaxed),
            lost,
        )
    }
}

fn assert_none_lost(when: &str, answered: usize, lost: &[String]) {
    assert!(
        lost.is_empty(),
        "{} of {} requests lost {when}: {:?}",
        lost.len(),
        answered + lost.len(),
        &lost[..lost.len().min(5)]
    );
    println!("{answered} requests {when}, none lost");
}

async fn wait_for_exit(child: &mut std::process::Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{what} did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A proxy in front of the echo backend, with a [`KeepAliveLoad`] of 16
/// clients under way; the JWKS server must live as long as the proxy.
async fn proxy_under_keep_alive_load() -> (Proxy, KeepAliveLoad, Recorder, JwksServer) {
    let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap();
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let proxy = Proxy::start(Setup::new(addr, &jwks.url())).await;
    proxy.ready().await;
    let token = key.sign(&claims("lab-bot@clients"));
    let raw = format!(
        "POST /v1/zambda/lab-results-ingest/execute HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 2\r\n\r\n{{}}"
    );
    let load = KeepAliveLoad::start(proxy.addr, raw, 16);
    load.answered_at_least(200).await;
    (proxy, load, backend, jwks)
}

/// Starts `run --upgrade`, sends the old process SIGQUIT once the new one
/// waits on the upgrade socket, and waits for the old one to exit.
async fn hand_over(old: &mut Proxy) -> std::process::Child {
    let new = old.spawn_upgrade();
    let sock = old.dir.path().join("upgrade.sock");
    eventually("the upgrade socket", || sock.exists()).await;
    old.signal("QUIT");
    wait_for_exit(&mut old.child, "the old process, after SIGQUIT,").await;
    new
}

/// A SIGTERM drain under keep-alive load loses no request. Two ways it
/// did: the proxy's keep-alive bound switched keep-alive back on after
/// pingora had switched it off for the shutdown, so no answer said
/// `Connection: close` and the connections were cut between two requests;
/// and clients told to close before the listener closed reconnected into
/// its accept queue, which the kernel resets with the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drain_under_keep_alive_load_loses_no_request() {
    let (mut proxy, load, _backend, _jwks) = proxy_under_keep_alive_load().await;
    proxy.signal("TERM");
    wait_for_exit(&mut proxy.child, "the proxy, after SIGTERM,").await;
    // every client ends on its own: its next connection is refused
    let (answered, lost) = load.finish().await;
    assert_none_lost("across the drain", answered, &lost);
}

/// The same over a SIGQUIT hand-over: the old process's kept-alive
/// connections are told to close once it stops accepting, and their
/// clients carry on with the new process on the same listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_upgrade_under_keep_alive_load_loses_no_request() {
    let (mut old, load, backend, _jwks) = proxy_under_keep_alive_load().await;
    let mut new = hand_over(&mut old).await;
    // the new process serves the same connections' successors
    let before = backend.count();
    eventually("requests served by the new process", || {
        backend.count() > before + 100
    })
    .await;
    let (answered, lost) = load.finish().await;
    let _ = new.kill();
    let _ = new.wait();
    assert_none_lost("across the hand-over", answered, &lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_hands_the_sockets_to_an_upgraded_process() {
    let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap();
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let mut old = Proxy::start(Setup::new(addr, &jwks.url())).await;
    old.ready().await;
    let token = key.sign(&claims("lab-bot@clients"));
    let raw = format!(
        "POST /v1/zambda/lab-results-ingest/execute HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    );
    let proxy_addr = old.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let raw = raw.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut count = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && count < 50_000 {
                match send(proxy_addr, raw.as_bytes()).await {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(e.to_string()),
                }
                count += 1;
            }
            (count, failures)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut new = old.spawn_upgrade();
    // the new process waits on the upgrade socket; then the old one hands over
    let sock = old.dir.path().join("upgrade.sock");
    eventually("the upgrade socket", || sock.exists()).await;
    old.signal("QUIT");
    let deadline = Instant::now() + Duration::from_secs(15);
    while old.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "old process did not exit:\n{}",
            old.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (count, failures) = traffic.await.unwrap();
    let served_by_new = send(proxy_addr, raw.as_bytes()).await.unwrap();
    let _ = new.kill();
    let _ = new.wait();
    assert!(count > 20, "too little traffic: {count}");
    assert!(
        failures.is_empty(),
        "{} of {count} failed during the hand-over: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(served_by_new.status, 200);
    assert!(backend.count() > count / 2);
    println!("{count} requests across the hand-over, none refused");
}

/// `/readyz` says ready only once the proxy listener accepts connections.
/// The test holds the proxy's port with a socket that is bound but does
/// not listen, so pingora's bind fails and it retries every second while
/// the admin listener already answers: not ready, naming the listener.
/// Released, the proxy binds, and the first 200 means a connection is
/// accepted.
#[tokio::test]
async fn ready_waits_for_the_proxy_listener() {
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let (upstream, _rec) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap();
    let holder = tokio::net::TcpSocket::new_v4().unwrap();
    holder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listen = holder.local_addr().unwrap();
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("policies"), &dir.path().join("policies"));
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {listen}\nadmin_listen: {admin}\nupstream:\n  address: {upstream}\n\
             auth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      \
             algorithms: [RS256]\n      jwks_url: {}\npolicies:\n  dir: policies\n\
             shutdown:\n  grace_period_seconds: 0\n  drain_timeout_seconds: 1\n  upgrade_sock: upgrade.sock\n",
            jwks.url()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zambda-guard"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // policies and keys come first; the listener cannot
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        if let Ok(r) = get(admin, "/readyz").await {
            let body = String::from_utf8_lossy(&r.body).into_owned();
            assert_ne!(r.status, 200, "ready while the listener cannot bind");
            if !body.contains("no policy set") && !body.contains("has no keys") {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "never got past policies and keys"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        body.contains(&format!(
            "listener {listen} does not accept connections yet"
        )),
        "{body}"
    );
    assert!(tokio::net::TcpStream::connect(listen).await.is_err());

    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if get(admin, "/readyz").await.is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready after the port was freed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = send(
        listen,
        b"POST /v1/zambda/x/nope HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    let _ = child.kill();
    let _ = child.wait();
}
