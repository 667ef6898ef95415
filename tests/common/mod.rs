//! Shared parts of the end-to-end tests: the real `zambda-guard` binary on
//! ports chosen at run time, the recording echo backend, a JWKS served over
//! HTTP from real keys, tokens signed with those keys, and a raw HTTP/1.1
//! client for requests no well-behaved client library would send, whose
//! response reader works on plain and TLS streams alike. TLS certificates
//! and clients are in [`tls`].

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failed test

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[allow(unused_imports)]
pub use zambda_guard::echo::Recorder;

pub mod oystehr;
pub mod tls;

pub const ISSUER: &str = "https://issuer.test/";
pub const AUDIENCE: &str = "https://api.test";
pub const PROJECT_ID: &str = "11111111-2222-3333-4444-555555555555";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn key_path(name: &str) -> PathBuf {
    repo().join("tests/fixtures/keys").join(name)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A port free at the time of asking (pingora cannot report the port of a
/// listener bound to :0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------

/// A signing key from the fixtures, with its kid.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub private_pem: Vec<u8>,
    pub public_pem: Vec<u8>,
}

impl SigningKey {
    pub fn fixture(stem: &str, kid: &str, alg: Algorithm) -> Self {
        SigningKey {
            kid: kid.into(),
            alg,
            private_pem: std::fs::read(key_path(&format!("{stem}-private.pem"))).unwrap(),
            public_pem: std::fs::read(key_path(&format!("{stem}-public.pem"))).unwrap(),
        }
    }

    pub fn rsa1() -> Self {
        Self::fixture("rsa1", "rsa1", Algorithm::RS256)
    }

    pub fn rsa2() -> Self {
        Self::fixture("rsa2", "rsa2", Algorithm::RS256)
    }

    pub fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => EncodingKey::from_rsa_pem(&self.private_pem).unwrap(),
            Algorithm::ES256 | Algorithm::ES384 => {
                EncodingKey::from_ec_pem(&self.private_pem).unwrap()
            }
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&self.private_pem).unwrap(),
            other => panic!("no fixture key for {other:?}"),
        }
    }

    pub fn jwk(&self) -> Value {
        zambda_guard::authn::keys::jwk_from_public_pem(&self.public_pem, &self.kid, self.alg)
    }

    /// Signs `claims` with this key and its kid.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }
}

/// Standard valid claims for `subject`, overridable.
pub fn claims(subject: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": now(),
        "exp": now() + 3600,
    })
}

/// Replaces or adds fields of a JSON object.
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------
// JWKS over HTTP
// ---------------------------------------------------------------------------

/// A JWKS endpoint on 127.0.0.1 whose key set can be swapped and which can
/// be stopped; counts the fetches it answered.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub keys: Arc<Mutex<Value>>,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: &[&SigningKey]) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), keys).await
    }

    pub async fn start_on(addr: SocketAddr, keys: &[&SigningKey]) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let set = Arc::new(Mutex::new(jwks(keys)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (set2, hits2) = (set.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let body = set2.lock().unwrap().to_string();
                hits2.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                        body.len(),
                        body
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                });
            }
        });
        JwksServer {
            addr,
            keys: set,
            hits,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    pub fn serve(&self, keys: &[&SigningKey]) {
        *self.keys.lock().unwrap() = jwks(keys);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

// ---------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------

/// A running `zambda-guard` process, killed on drop.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

/// Lays out a policy directory, given its path.
pub type Layout = Box<dyn FnOnce(&Path)>;

/// What a test wants of the proxy's config; turned into config.yaml.
pub struct Setup {
    pub upstream: SocketAddr,
    /// The `auth.issuers` list as YAML (indented under `issuers:`).
    pub issuers_yaml: String,
    /// Extra top-level YAML appended to the config.
    pub extra: String,
    /// Extra keys inside `upstream:` (indented two spaces).
    pub upstream_extra: String,
    /// Policy files (name, content); defaults to the shipped examples.
    pub policies: Option<Vec<(String, String)>>,
    /// Extra keys inside `policies:` (indented two spaces).
    pub policies_extra: String,
    pub env: Vec<(String, String)>,
    /// Lays out the policy directory (given its path) before the start,
    /// after `policies` were written.
    pub before_start: Option<Layout>,
}

impl Setup {
    pub fn new(upstream: SocketAddr, jwks_url: &str) -> Self {
        Setup {
            upstream,
            issuers_yaml: format!(
                "    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256, ES256, EdDSA]\n      jwks_url: {jwks_url}\n      jwks_refresh_seconds: 300\n      jwks_min_refetch_seconds: 1\n"
            ),
            extra: String::new(),
            upstream_extra: String::new(),
            policies: None,
            policies_extra: String::new(),
            env: Vec::new(),
            before_start: None,
        }
    }
}

impl Proxy {
    /// Starts the binary and waits until its admin listener answers.
    pub async fn start(setup: Setup) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        match &setup.policies {
            Some(files) => {
                std::fs::create_dir_all(&policies).unwrap();
                for (name, text) in files {
                    std::fs::write(policies.join(name), text).unwrap();
                }
            }
            None => copy_dir(&repo().join("policies"), &policies),
        }
        if let Some(layout) = setup.before_start {
            layout(&policies);
        }
        let config_path = dir.path().join("config.yaml");
        let log = dir.path().join("proxy.log");
        // A port free when asked can be taken before the proxy binds it,
        // and pingora then keeps retrying while whoever holds it answers
        // in its place: start again on other ports when that happens.
        for attempt in 1..=4 {
            let port = free_port();
            let admin_port = free_port();
            let config = format!(
            "listen: 127.0.0.1:{port}\nadmin_listen: 127.0.0.1:{admin_port}\nthreads: 2\n\
             upstream:\n  address: {}\n  connect_timeout_ms: 500\n  read_timeout_ms: 2000\n{}\
             auth:\n  jwks_fetch_timeout_ms: 1000\n  issuers:\n{}\
             policies:\n  dir: policies\n{}\
             shutdown:\n  grace_period_seconds: 0\n  drain_timeout_seconds: 2\n  upgrade_sock: upgrade.sock\n\
             log:\n  decisions: all\n{}",
            setup.upstream,
            setup.upstream_extra,
            setup.issuers_yaml,
            setup.policies_extra,
            setup.extra
        );
            std::fs::write(&config_path, config).unwrap();
            let mut command = Command::new(env!("CARGO_BIN_EXE_zambda-guard"));
            command
                .args(["run", "--config"])
                .arg(&config_path)
                .env("RUST_LOG", "info")
                .envs(setup.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            let mut child = command.spawn().unwrap();
            let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
            wait_for(admin, "/healthz", 200, &log).await;
            if attempt < 4 && lost_a_port(&log).await {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            return Proxy {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                admin,
                dir,
                log,
            };
        }
        unreachable!("the last attempt returns")
    }

    /// Sends a signal (`TERM`, `HUP`, `QUIT`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Starts a second process on the same config with `run --upgrade`; it
    /// takes the listening sockets over when this one gets SIGQUIT.
    pub fn spawn_upgrade(&self) -> Child {
        let log = self.dir.path().join("proxy-upgraded.log");
        Command::new(env!("CARGO_BIN_EXE_zambda-guard"))
            .args(["run", "--upgrade", "--config"])
            .arg(self.dir.path().join("config.yaml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls an admin path until it answers `status` (10 s at most).
    pub async fn wait_for(&self, path: &str, status: u16) {
        wait_for(self.admin, path, status, &self.log).await;
    }

    pub async fn ready(&self) {
        self.wait_for("/readyz", 200).await;
    }

    /// POSTs to a path with optional bearer token and JSON body.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        extra_headers: &[(&str, &str)],
    ) -> Response {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: proxy.test\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
        );
        if let Some(t) = token {
            req.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        for (n, v) in extra_headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("connection: close\r\n\r\n{}");
        send(self.addr, req.as_bytes()).await.unwrap()
    }
}

/// Polls an admin path until it answers `status` (10 s at most).
async fn wait_for(admin: SocketAddr, path: &str, status: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = get(admin, path).await {
            if r.status == status {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not answer {status} in time; proxy log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// True when the proxy could not bind one of its ports: pingora binds as
/// it starts each service and warns at once when a port is in use.
async fn lost_a_port(log: &Path) -> bool {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !read().contains("Starting service: zambda-guard proxy") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    read().contains("is in use")
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the SPEC's error shape and returns the message.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        assert_eq!(body["code"], json!(status), "{body}");
        let id = self
            .header("x-oystehr-request-id")
            .expect("request id header");
        assert_eq!(body["request_id"], json!(id), "{body}");
        body["message"].as_str().expect("message").to_string()
    }
}

/// One HTTP/1.1 request as a stand-in server received it: header names
/// lower-cased, the body read to its `content-length`.
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Reads one request from a stand-in server's connection; `None` when the
/// connection ends before the whole request came.
pub async fn read_request(stream: &mut TcpStream) -> Option<RawRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: std::collections::BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(RawRequest {
        method,
        target,
        headers,
        body: buf[head_end..head_end + length].to_vec(),
    })
}

/// Sends raw bytes and reads one response (10 s at most).
pub async fn send(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(raw).await?;
        read_response(&mut stream, &mut Vec::new()).await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response in time"))?
}

/// Reads one response from a stream; `buf` carries bytes between calls
/// (for pipelining).
pub async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Response> {
    read_one(stream, buf, false).await
}

/// Reads one response from any byte stream (TCP or TLS); a body without
/// length runs to the end of the connection, and an answer to `HEAD`
/// (`head_only`) has none.
pub async fn read_one<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> std::io::Result<Response> {
    let invalid = |e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
    };
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            resp.parse(&buf[..end]).map_err(|e| invalid(&e))?;
            let status = resp.code.unwrap_or(0);
            let headers: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            buf.drain(..end);
            let find = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            let body = if head_only {
                Vec::new()
            } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                read_chunked(stream, buf).await?
            } else if let Some(len) = find("content-length") {
                let len: usize = len.trim().parse().map_err(|e| invalid(&e))?;
                while buf.len() < len {
                    if !fill(stream, buf).await? {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                buf.drain(..len).collect()
            } else {
                while fill(stream, buf).await.unwrap_or(false) {}
                std::mem::take(buf)
            };
            return Ok(Response {
                status,
                headers,
                body,
            });
        }
        if !fill(stream, buf).await? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    for _ in 0..10_000 {
        let line = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if !fill(stream, buf).await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&buf[..line]).trim(), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        buf.drain(..line + 2);
        while buf.len() < size + 2 {
            if !fill(stream, buf).await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
        if size == 0 {
            return Ok(body);
        }
    }
    Err(std::io::ErrorKind::InvalidData.into())
}

/// Reads more bytes; false at the end of the stream.
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// GET on the admin listener.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let req = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    send(addr, req.as_bytes()).await
}

/// Waits until `f` holds (5 s at most), for effects that happen after a
/// response (logging).
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
