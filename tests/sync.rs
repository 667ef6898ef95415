//! `zambda-guard sync` end to end: the real binary against a stand-in
//! Oystehr API on loopback, writing into a directory the real proxy reads
//! and hot-reloads. A synced project is enforced; a change in the API
//! reaches the proxy through the loop; an unchanged project writes
//! nothing; every failure (a 5xx, a role the loader refuses, an empty
//! project, wrong credentials, a token that stops working mid-run) writes
//! nothing and the proxy keeps enforcing the last good set; no output
//! carries the client secret or a token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::oystehr::{realistic, Api};
use common::*;
use serde_json::json;
use zambda_guard::echo::{self, Behaviour};

const CLIENT_ID: &str = "sync-client-id-7f3a";
const SECRET: &str = "sync-secret-Zq81-never-logged";

/// The sync's own config: the proxy's issuer and policy directory, and the
/// `oystehr` section pointing at the stand-in.
fn sync_config(dir: &Path, api: &Api, jwks_url: &str, echo: SocketAddr, admin: u16) -> PathBuf {
    let path = dir.join("sync.yaml");
    let text = format!(
        "upstream:\n  address: {echo}\n\
         upstreams:\n  labs:\n    addresses: [{echo}]\n\
         auth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n      jwks_url: {jwks_url}\n\
         policies:\n  dir: policies\n\
         oystehr:\n  project_api_url: {}\n  token_url: {}\n  project_id: {PROJECT_ID}\n  audience: https://api.zapehr.com\n  \
         issuer: {ISSUER}\n  dir: policies/oystehr\n  interval_seconds: 1\n  upstreams: {{lab-ingest: labs}}\n  admin_listen: 127.0.0.1:{admin}\n",
        api.api_url(),
        api.token_url()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn sync_command(config: &Path, secret: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zambda-guard"));
    c.arg("sync")
        .arg("--config")
        .arg(config)
        .env("OYSTEHR_CLIENT_ID", CLIENT_ID)
        .env("OYSTEHR_CLIENT_SECRET", secret)
        .env("RUST_LOG", "debug");
    c
}

/// `sync --once`, run off the async runtime.
async fn once(config: &Path, secret: &str) -> Output {
    let mut command = sync_command(config, secret);
    command.arg("--once");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The file's bytes and its identity (a rename makes a new inode).
fn file_state(path: &Path) -> (Vec<u8>, u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    (
        std::fs::read(path).unwrap(),
        meta.ino(),
        meta.modified().unwrap(),
    )
}

/// The proxy with the synced project, the stand-in API and the sync
/// config; the first file written by `sync --once` before the start, as
/// the chart's init container does.
struct World {
    api: Api,
    proxy: Proxy,
    key: SigningKey,
    config: PathBuf,
    synced: PathBuf,
    sync_admin: SocketAddr,
    outputs: Vec<String>,
    _jwks: JwksServer,
    _backend: Recorder,
}

impl World {
    async fn start() -> World {
        let (echo_addr, backend) =
            echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
                .await
                .unwrap();
        let key = SigningKey::rsa1();
        let jwks = JwksServer::start(&[&key]).await;
        let api = Api::start(realistic(PROJECT_ID, CLIENT_ID, SECRET)).await;
        let admin_port = free_port();
        let scratch = tempfile::tempdir().unwrap().keep();
        let config = sync_config(&scratch, &api, &jwks.url(), echo_addr, admin_port);
        let first = std::sync::Arc::new(std::sync::Mutex::new(None));
        let mut setup = Setup::new(echo_addr, &jwks.url());
        // A staff member listed by hand beside the synced file.
        setup.policies = Some(vec![(
            "staff.yaml".into(),
            "actors:\n  - subject: auth0|dr-rivera\n    roles: [Provider]\n".into(),
        )]);
        setup.extra = format!("upstreams:\n  labs:\n    addresses: [{echo_addr}]\n");
        let (config2, first2) = (config.clone(), first.clone());
        setup.before_start = Some(Box::new(move |policies: &Path| {
            // The sync's config names `policies` beside itself: point it
            // at the proxy's directory.
            let dir = config2.parent().unwrap().join("policies");
            std::os::unix::fs::symlink(policies, &dir).unwrap();
            let mut command = sync_command(&config2, SECRET);
            command.arg("--once");
            let out = command.output().unwrap();
            *first2.lock().unwrap() = Some(out);
        }));
        let proxy = Proxy::start(setup).await;
        let out = first.lock().unwrap().take().unwrap();
        assert!(out.status.success(), "first sync failed:\n{}", text(&out));
        proxy.ready().await;
        World {
            api,
            synced: scratch.join("policies/oystehr/oystehr.json"),
            proxy,
            key,
            config,
            sync_admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            outputs: vec![text(&out)],
            _jwks: jwks,
            _backend: backend,
        }
    }

    async fn call(&self, subject: &str, zambda: &str) -> u16 {
        let token = self.key.sign(&claims(subject));
        self.proxy
            .post(&format!("/v1/zambda/{zambda}/execute"), Some(&token), &[])
            .await
            .status
    }

    /// What the proxy enforces for the synced project, as it was first
    /// synced.
    async fn assert_first_set(&self) {
        // M2M clients, by `<clientId>@clients`, with their roles by stub
        assert_eq!(self.call("client1@clients", "lab-ingest").await, 200);
        assert_eq!(self.call("client1@clients", "update-chart").await, 403);
        assert_eq!(self.call("client2@clients", "update-chart").await, 200);
        assert_eq!(self.call("client3@clients", "book-appointment").await, 403);
        assert_eq!(self.call("client4@clients", "book-appointment").await, 403);
        // from the last page of the list, with an inline policy
        assert_eq!(self.call("client5@clients", "update-chart").await, 200);
        // an unlisted user holds the default patient role; a machine never does
        assert_eq!(self.call("auth0|patient-1", "book-appointment").await, 200);
        assert_eq!(self.call("auth0|patient-1", "update-chart").await, 403);
        assert_eq!(self.call("stranger@clients", "book-appointment").await, 403);
        // staff listed by hand, holding a synced role by name
        assert_eq!(self.call("auth0|dr-rivera", "update-chart").await, 200);
        // cron and subscription Zambdas are not invoked over HTTP
        assert_eq!(self.call("client2@clients", "nightly-report").await, 404);
        assert_eq!(self.call("client2@clients", "on-observation").await, 404);
        // the public one is served without a token
        let public = self
            .proxy
            .post("/v1/zambda/list-slots/execute-public", None, &[])
            .await;
        assert_eq!(public.status, 200);
    }

    fn spawn_loop(&self) -> Child {
        let log = self.config.parent().unwrap().join("sync-loop.log");
        sync_command(&self.config, SECRET)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }

    fn loop_log(&self) -> String {
        std::fs::read_to_string(self.config.parent().unwrap().join("sync-loop.log"))
            .unwrap_or_default()
    }

    /// The value of one sample on the sync's `/metrics`.
    async fn metric(&self, sample: &str) -> f64 {
        let Ok(r) = get(self.sync_admin, "/metrics").await else {
            return 0.0;
        };
        let body = String::from_utf8_lossy(&r.body).to_string();
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn until(&self, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let started = Instant::now();
        while !check().await {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{what}; sync log:\n{}\nproxy log:\n{}",
                self.loop_log(),
                self.proxy.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Neither the secret nor any token the stand-in issued appears in
    /// anything the processes wrote.
    fn assert_no_secret(&self, extra: &[String]) {
        let mut all: Vec<String> = self.outputs.clone();
        all.extend_from_slice(extra);
        all.push(self.loop_log());
        all.push(self.proxy.logs());
        all.push(std::fs::read_to_string(&self.synced).unwrap_or_default());
        let tokens = self.api.tokens();
        assert!(!tokens.is_empty());
        for out in &all {
            assert!(!out.contains(SECRET), "the client secret leaked:\n{out}");
            for t in &tokens {
                assert!(!out.contains(t.as_str()), "a token leaked:\n{out}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synced_project_is_enforced_and_kept_in_step() {
    let w = World::start().await;
    w.assert_first_set().await;

    // The file: Oystehr's shapes, the issuer on clients and defaults,
    // the upstream on the named Zambda, nothing the proxy does not read.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&w.synced).unwrap()).unwrap();
    assert_eq!(file["m2ms"].as_array().unwrap().len(), 5);
    assert_eq!(file["zambdas"].as_array().unwrap().len(), 6);
    assert_eq!(
        file["defaults"],
        json!([{"issuer": ISSUER, "roles": [{"id": "role-patient", "name": "Patient"}]}])
    );
    assert!(file["m2ms"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["issuer"] == ISSUER));
    let lab = file["zambdas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["name"] == "lab-ingest")
        .unwrap();
    assert_eq!(lab["upstream"], "labs");
    assert!(lab.get("runtime").is_none() && lab.get("status").is_none());

    // The requests were the SDK's: bearer token, project-id headers.
    let seen = w.api.seen();
    let role_reads = seen
        .iter()
        .filter(|s| s.target.starts_with("/v1/iam/role/"))
        .count();
    assert_eq!(role_reads, 4);
    let pages = seen
        .iter()
        .filter(|s| s.target.starts_with("/v1/m2m/v2/list"))
        .count();
    assert_eq!(pages, 3);
    for s in seen.iter().filter(|s| s.target.starts_with("/v1/")) {
        assert_eq!(s.headers["x-oystehr-project-id"], PROJECT_ID);
        assert_eq!(s.headers["x-zapehr-project-id"], PROJECT_ID);
        assert!(s.headers["authorization"].starts_with("Bearer stand-in-token-"));
        assert!(s.headers.contains_key("x-oystehr-request-id"));
    }
    let token_requests = seen.iter().filter(|s| s.target == "/oauth/token").count();
    assert_eq!(token_requests, 1);

    // The loop: a role changed in Oystehr reaches the proxy.
    let mut sync = w.spawn_loop();
    w.until("the loop never reported an unchanged round", async || {
        w.metric("zambda_guard_sync_total{result=\"unchanged\"}")
            .await
            >= 1.0
    })
    .await;
    let before = file_state(&w.synced);
    w.api.change(|p| {
        let lab = p.roles.iter_mut().find(|r| r["id"] == "role-lab").unwrap();
        lab["accessPolicy"]["rule"][0]["resource"] =
            json!(["Zambda:Function:lab-ingest", "Zambda:Function:update-chart"]);
    });
    w.until("the role change never reached the proxy", async || {
        w.call("client1@clients", "update-chart").await == 200
    })
    .await;
    assert_ne!(file_state(&w.synced).1, before.1, "written by a rename");
    // An M2M client's roles changed: enforced too.
    w.api
        .change(|p| p.m2ms[2]["roles"] = json!([{"id": "role-patient", "name": "Patient"}]));
    w.until("the client change never reached the proxy", async || {
        w.call("client3@clients", "book-appointment").await == 200
    })
    .await;
    assert!(
        w.metric("zambda_guard_sync_total{result=\"written\"}")
            .await
            >= 2.0
    );
    assert_eq!(
        w.metric("zambda_guard_sync_objects{kind=\"m2ms\"}").await,
        5.0
    );
    assert!(
        w.metric("zambda_guard_sync_last_success_timestamp_seconds")
            .await
            > 0.0
    );

    // Unchanged rounds write nothing: same bytes, same inode, same mtime.
    let steady = file_state(&w.synced);
    let unchanged = w
        .metric("zambda_guard_sync_total{result=\"unchanged\"}")
        .await;
    w.until("no unchanged round", async || {
        w.metric("zambda_guard_sync_total{result=\"unchanged\"}")
            .await
            >= unchanged + 2.0
    })
    .await;
    assert_eq!(file_state(&w.synced), steady);

    // Each failure: counted, nothing written, the proxy keeps the last set.
    type Break = Box<dyn Fn(&mut common::oystehr::Project)>;
    let breaks: Vec<(&str, Break)> = vec![
        (
            "a 5xx on one role",
            Box::new(|p| p.failing_role = Some("role-provider".into())),
        ),
        (
            "a role the loader refuses",
            Box::new(|p| {
                p.roles[2]["accessPolicy"]["rule"][0]["resource"] = json!("Zambda:Function:lab-*");
            }),
        ),
        (
            "an empty project",
            Box::new(|p| {
                p.roles.clear();
                p.zambdas.clear();
                p.m2ms.clear();
                p.project["defaultPatientRole"] = serde_json::Value::Null;
            }),
        ),
    ];
    let good = w.api.project.lock().unwrap().clone();
    for (what, make) in &breaks {
        w.api.change(|p| make(p));
        let failed = w.metric("zambda_guard_sync_total{result=\"failed\"}").await;
        w.until(&format!("{what}: no failed round"), async || {
            w.metric("zambda_guard_sync_total{result=\"failed\"}").await >= failed + 2.0
        })
        .await;
        assert_eq!(file_state(&w.synced), steady, "{what}: the file changed");
        assert_eq!(
            w.call("client1@clients", "update-chart").await,
            200,
            "{what}"
        );
        assert_eq!(
            w.call("client3@clients", "book-appointment").await,
            200,
            "{what}"
        );
        assert_eq!(
            w.call("client4@clients", "book-appointment").await,
            403,
            "{what}"
        );
        let good = good.clone();
        w.api.change(move |p| *p = good);
    }
    assert!(
        w.loop_log()
            .contains("role-provider: HTTP status 500 (after 3 tries)"),
        "{}",
        w.loop_log()
    );
    assert!(w.loop_log().contains("no roles and no Zambdas"));
    assert!(w.loop_log().contains("would make the policy set invalid"));

    // A token that stops working mid-round: that round fails, the next
    // asks for a new token and succeeds.
    let tokens = w.api.tokens().len();
    w.api.change(|p| p.token_uses = Some(3));
    w.until(
        "no new token after the old one stopped working",
        async || w.api.tokens().len() >= tokens + 2,
    )
    .await;
    assert_eq!(file_state(&w.synced), steady);
    w.api.change(|p| p.token_uses = None);
    assert_eq!(w.call("client1@clients", "update-chart").await, 200);

    let metrics = get(w.sync_admin, "/metrics").await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(metrics.contains("zambda_guard_sync_total{result=\"failed\"}"));
    let health = get(w.sync_admin, "/healthz").await.unwrap();
    assert_eq!(health.status, 200);
    let _ = sync.kill();
    let _ = sync.wait();
    w.assert_no_secret(&[metrics]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_fails_closed_and_says_why_without_secrets() {
    let w = World::start().await;
    let steady = file_state(&w.synced);
    let mut outputs = Vec::new();

    // wrong credentials
    let out = once(&w.config, "not-the-secret").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("token request: HTTP status 401"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("not-the-secret"));
    outputs.push(text(&out));

    // each failure: exit 1, the file untouched, the proxy unchanged
    type Break = Box<dyn Fn(&mut common::oystehr::Project)>;
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "5xx",
            Box::new(|p| p.failing_role = Some("role-lab".into())),
            "HTTP status 500",
        ),
        (
            "refused role",
            Box::new(|p| {
                p.roles[0]["accessPolicy"]["rule"][1]["condition"] =
                    json!({"StringEquals": {"x": "y"}})
            }),
            "would make the policy set invalid",
        ),
        (
            "empty",
            Box::new(|p| {
                p.roles.clear();
                p.zambdas.clear();
            }),
            "no roles and no Zambdas",
        ),
        (
            "token expires mid-run",
            Box::new(|p| p.token_uses = Some(2)),
            "HTTP status 401",
        ),
    ];
    let good = w.api.project.lock().unwrap().clone();
    for (what, make, says) in &cases {
        w.api.change(|p| make(p));
        let out = once(&w.config, SECRET).await;
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(text(&out).contains(says), "{what}: {}", text(&out));
        assert_eq!(file_state(&w.synced), steady, "{what}");
        outputs.push(text(&out));
        let good = good.clone();
        w.api.change(move |p| *p = good);
    }
    w.assert_first_set().await;

    // an unchanged project: exit 0, nothing written
    let out = once(&w.config, SECRET).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("unchanged"));
    assert_eq!(file_state(&w.synced), steady);
    outputs.push(text(&out));

    // missing credentials are invalid input: exit 2, naming the variable
    let mut command = sync_command(&w.config, SECRET);
    command.arg("--once").env_remove("OYSTEHR_CLIENT_SECRET");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("OYSTEHR_CLIENT_SECRET"));

    // `check` reads the same config and knows the section
    let out = Command::new(env!("CARGO_BIN_EXE_zambda-guard"))
        .arg("check")
        .arg("--config")
        .arg(&w.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("oystehr sync: project"),
        "{}",
        text(&out)
    );
    w.assert_no_secret(&outputs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_that_fails_writes_no_file() {
    let (echo_addr, _backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap();
    let api = Api::start(realistic(PROJECT_ID, CLIENT_ID, SECRET)).await;
    api.change(|p| p.failing_role = Some("role-inactive".into()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    let config = sync_config(
        dir.path(),
        &api,
        "https://issuer.test/jwks.json",
        echo_addr,
        free_port(),
    );
    let out = once(&config, SECRET).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let synced = dir.path().join("policies/oystehr");
    let left: Vec<_> = std::fs::read_dir(&synced)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files left behind: {left:?}");
    // and with the role back, the file appears
    api.change(|p| p.failing_role = None);
    let out = once(&config, SECRET).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(synced.join("oystehr.json").is_file());
    assert!(text(&out).contains("policy file written"));
}
