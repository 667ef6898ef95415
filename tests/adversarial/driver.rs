//! The driver of the table: what a [`Case`] is and what it must get back
//! ([`Expect`]), the proxies the cases are sent to ([`Worlds`]), the
//! transports ([`Transport`]: HTTP/1.1 plain and in TLS, HTTP/2 in TLS,
//! each case's request said again as HTTP/2 by [`h2_form`]), and [`run`],
//! which sends every case and checks the answer, its shape and what the
//! backend saw.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::tls::ClientConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use zambda_guard::echo::{self, Behaviour, Received};

use crate::common::tls::{client_config, handshake, Ca, PairFiles};
use crate::common::*;
use crate::framing::framing_cases;
use crate::headers::header_cases;
use crate::methods::method_cases;
use crate::paths::path_cases;
use crate::policy::{policy_cases, policy_file_cases, POLICY_ACTORS, POLICY_CATALOG, POLICY_ROLES};
use crate::tokens::token_cases;
use crate::*;

/// Which running proxy a case is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// The shipped example policies; project id set; 1 KiB body limit.
    Main,
    /// Policies written by this suite; roles from the token.
    Policy,
}

/// How a case's request travels to the proxy. Every HTTP case runs over
/// each transport it applies to, with the same expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/1.1 over plain TCP: the case's bytes as written.
    Plain,
    /// HTTP/1.1 inside TLS (ALPN `http/1.1`): the same bytes, to a proxy
    /// listening with `tls`.
    Tls,
    /// HTTP/2 inside TLS (ALPN `h2`): the case's request said again as an
    /// HTTP/2 request, where HTTP/2 can say it ([`h2_form`] decides, and
    /// says why not).
    H2,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Plain => "HTTP/1.1",
            Transport::Tls => "HTTP/1.1 over TLS",
            Transport::H2 => "HTTP/2 over TLS",
        }
    }

    /// The `X-Forwarded-Proto` the backend must see.
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Plain => "http",
            Transport::Tls | Transport::H2 => "https",
        }
    }
}

/// What a case does.
pub enum Action {
    /// Raw bytes on a fresh connection to a proxy.
    Http { on: On, raw: Vec<u8> },
    /// `zambda-guard check` over a policy directory holding this file (next
    /// to a small catalog).
    Check { yaml: String },
}

/// What the answer must be. The backend expectation follows from it.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The proxy's own refusal: this status, the JSON error shape; the
    /// backend saw nothing.
    Refused(u16),
    /// Refused by pingora's HTTP parser before any hook (SPEC §1): this
    /// status, no JSON error body; the backend saw nothing.
    Parser(u16),
    /// Forwarded: the backend's answer (200, echo body); the backend saw
    /// exactly one POST with exactly this target.
    Forwarded(String),
    /// `check` exits 2 naming the file (and this text).
    Invalid(&'static str),
    /// `check` exits 0.
    Valid,
    /// HTTP/2 only: the HTTP/2 layer ends the stream or the connection with
    /// an error that says one of these, and no answer; the backend saw
    /// nothing.
    Reset(&'static [&'static str]),
}

/// What a case observed, for extra checks.
pub struct Outcome {
    pub transport: Transport,
    pub response: Option<Response>,
    /// Statuses of further responses on the same connection.
    pub more: Vec<u16>,
    pub received: Vec<Received>,
}

type Check = Box<dyn Fn(&Outcome) -> Result<(), String> + Send + Sync>;

pub struct Case {
    pub name: String,
    pub action: Action,
    pub expect: Expect,
    pub checks: Vec<Check>,
}

pub fn case(name: impl Into<String>, send: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        action: Action::Http {
            on: On::Main,
            raw: send.into(),
        },
        expect,
        checks: Vec::new(),
    }
}

pub fn check_case(name: impl Into<String>, yaml: &str, expect: Expect) -> Case {
    Case {
        name: name.into(),
        action: Action::Check { yaml: yaml.into() },
        expect,
        checks: Vec::new(),
    }
}

impl Case {
    pub fn on(mut self, world: On) -> Self {
        if let Action::Http { on, .. } = &mut self.action {
            *on = world;
        }
        self
    }

    pub fn check(
        mut self,
        f: impl Fn(&Outcome) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push(Box::new(f));
        self
    }
}

pub use Expect::{Forwarded, Parser, Refused};

pub fn fwd(target: &str) -> Expect {
    Forwarded(target.to_string())
}

// ---------------------------------------------------------------------------
// The worlds
// ---------------------------------------------------------------------------

pub struct World {
    pub proxy: Proxy,
    pub backend: Recorder,
}

pub struct Worlds {
    pub main: World,
    pub policy: World,
    pub _jwks: JwksServer,
    /// When the proxies listen with TLS: the files they serve and the
    /// clients that trust them.
    pub tls: Option<Tls>,
}

pub struct Tls {
    pub _files: PairFiles,
    pub http1: Arc<ClientConfig>,
    pub h2: Arc<ClientConfig>,
}

/// A client's end of a connection to a proxy, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

impl Worlds {
    /// Both proxies, listening with TLS when `tls` (a certificate from a
    /// CA of this run), else plain.
    pub async fn start(tls: bool) -> Worlds {
        let key = SigningKey::rsa1();
        let jwks = JwksServer::start(&[&key]).await;
        let tls = tls.then(|| {
            let ca = Ca::new();
            Tls {
                _files: PairFiles::new(&ca.leaf(1, "adversarial")),
                http1: client_config(&ca.pem, &[b"http/1.1"], false),
                h2: client_config(&ca.pem, &[b"h2"], false),
            }
        });
        let files = tls.as_ref().map(|t| &t._files);
        let main = main_world(&jwks, files).await;
        let policy = policy_world(&jwks, files).await;
        Worlds {
            main,
            policy,
            _jwks: jwks,
            tls,
        }
    }

    pub fn get(&self, on: On) -> &World {
        match on {
            On::Main => &self.main,
            On::Policy => &self.policy,
        }
    }

    /// A new connection to `addr` for HTTP/1.1 on `transport`; for TLS the
    /// handshake is done and ALPN chose what was asked for.
    pub async fn connect(
        &self,
        transport: Transport,
        addr: SocketAddr,
    ) -> std::io::Result<Box<dyn Stream>> {
        let tcp = || TcpStream::connect(addr);
        let tls = |h2: bool| {
            let t = self.tls.as_ref().expect("TLS transports need TLS worlds");
            let (config, alpn): (_, &[u8]) = if h2 {
                (t.h2.clone(), b"h2")
            } else {
                (t.http1.clone(), b"http/1.1")
            };
            async move {
                let s = handshake(addr, config).await?;
                if s.get_ref().1.alpn_protocol() != Some(alpn) {
                    return Err(std::io::Error::other(format!(
                        "ALPN chose {:?}",
                        s.get_ref().1.alpn_protocol()
                    )));
                }
                Ok(s)
            }
        };
        Ok(match transport {
            Transport::Plain => Box::new(tcp().await?),
            Transport::Tls => Box::new(tls(false).await?),
            Transport::H2 => Box::new(tls(true).await?),
        })
    }
}

pub async fn backend() -> (SocketAddr, Recorder) {
    echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap()
}

/// The shipped example policies, project id set, a 1 KiB body limit; the
/// issuer takes RS256 and ES256 from the JWKS and HS256 with a secret, with
/// a 120 s leeway (the time cases sit 60 s inside and 180 s outside it).
pub async fn main_world(jwks: &JwksServer, tls: Option<&PairFiles>) -> World {
    let (addr, backend) = backend().await;
    let mut setup = Setup::new(addr, &jwks.url());
    setup.issuers_yaml = format!(
        "    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256, ES256, HS256]\n      jwks_url: {}\n      hmac_secret_env: {HMAC_ENV}\n      jwks_refresh_seconds: 300\n      jwks_min_refetch_seconds: 1\n  leeway_seconds: 120\n",
        jwks.url()
    );
    setup.extra = format!(
        "project_id: {PROJECT_ID}\nlimits:\n  max_body_bytes: 1024\n{}",
        tls.map(PairFiles::yaml).unwrap_or_default()
    );
    setup.env.push((HMAC_ENV.into(), HMAC_SECRET.into()));
    let proxy = Proxy::start(setup).await;
    proxy.ready().await;
    World { proxy, backend }
}

/// Policies written here; the RSA issuer reads roles from the dotted claim
/// `app_metadata.roles`, the HMAC issuer from `roles`.
async fn policy_world(jwks: &JwksServer, tls: Option<&PairFiles>) -> World {
    let (addr, backend) = backend().await;
    let mut setup = Setup::new(addr, &jwks.url());
    setup.issuers_yaml = format!(
        "    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n      jwks_url: {}\n      roles_claim: app_metadata.roles\n\
         \x20   - issuer: {HMAC_ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [HS256]\n      hmac_secret_env: {HMAC_ENV}\n      roles_claim: roles\n",
        jwks.url()
    );
    setup.env.push((HMAC_ENV.into(), HMAC_SECRET.into()));
    setup.policies = Some(vec![
        ("catalog.yaml".into(), POLICY_CATALOG.into()),
        ("roles.yaml".into(), POLICY_ROLES.into()),
        ("actors.yaml".into(), POLICY_ACTORS.into()),
    ]);
    setup.extra = tls.map(PairFiles::yaml).unwrap_or_default();
    let proxy = Proxy::start(setup).await;
    proxy.ready().await;
    World { proxy, backend }
}

fn main_cases(attacker: &JwksServer) -> Vec<Case> {
    let mut cases = path_cases();
    cases.extend(method_cases());
    cases.extend(token_cases(attacker));
    cases.extend(header_cases());
    cases.extend(framing_cases());
    cases
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

/// Runs every case over `transport`; returns the failures (name and why).
/// The caller passes only the cases that apply to the transport.
pub async fn run(worlds: &Worlds, transport: Transport, cases: &[&Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let result = match &case.action {
            Action::Http { on, raw } => {
                run_http(worlds, transport, worlds.get(*on), case, raw).await
            }
            Action::Check { yaml } => run_check(case, yaml).await,
        };
        if let Err(why) = result {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    failures
}

async fn run_http(
    worlds: &Worlds,
    transport: Transport,
    world: &World,
    case: &Case,
    raw: &[u8],
) -> Result<(), String> {
    world.backend.clear();
    let addr = world.proxy.addr;
    let expect = match transport {
        Transport::H2 => h2_expectation(&case.name, &case.expect),
        Transport::Plain | Transport::Tls => case.expect.clone(),
    };
    let (response, more) = match transport {
        Transport::Plain | Transport::Tls => match worlds.connect(transport, addr).await {
            Ok(stream) => exchange(stream, raw).await,
            Err(e) => (Err(e), Vec::new()),
        },
        Transport::H2 => {
            let request = h2_form(raw, &case.expect).map_err(|why| format!("not HTTP/2: {why}"))?;
            let stream = worlds
                .connect(transport, addr)
                .await
                .map_err(|e| format!("no connection: {e}"))?;
            (h2_exchange(stream, request).await, Vec::new())
        }
    };
    if let Expect::Reset(why) = expect {
        let outcome = Outcome {
            transport,
            received: world.backend.requests(),
            response: None,
            more,
        };
        return match response {
            Err(e) if why.iter().any(|w| e.to_string().contains(w)) => nothing_reached(&outcome),
            Err(e) => Err(format!("reset with {e}, want one saying {why:?}")),
            Ok(r) => Err(format!("status {} (want a reset saying {why:?})", r.status)),
        };
    }
    let response = response.map_err(|e| format!("no response: {e}"))?;
    let outcome = Outcome {
        transport,
        received: world.backend.requests(),
        response: Some(response),
        more,
    };
    let r = outcome.response.as_ref().ok_or("no response")?;
    let shown = || {
        String::from_utf8_lossy(&r.body)
            .chars()
            .take(200)
            .collect::<String>()
    };
    match &expect {
        Expect::Refused(status) => {
            if r.status != *status {
                return Err(format!("status {} (want {status}): {}", r.status, shown()));
            }
            if raw.starts_with(b"HEAD ") {
                if r.header("content-type") != Some("application/json") {
                    return Err(format!("content-type {:?}", r.header("content-type")));
                }
            } else {
                json_error(r, *status)?;
            }
            nothing_reached(&outcome)?;
        }
        Expect::Parser(status) => {
            if r.status != *status {
                return Err(format!(
                    "status {} (want parser's {status}): {}",
                    r.status,
                    shown()
                ));
            }
            if serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| v.get("code").is_some()) {
                return Err(format!(
                    "expected pingora's plain answer, got JSON {}",
                    shown()
                ));
            }
            nothing_reached(&outcome)?;
        }
        Expect::Forwarded(target) => {
            if r.status != 200 {
                return Err(format!("status {} (want 200): {}", r.status, shown()));
            }
            let body: Value = serde_json::from_slice(&r.body)
                .map_err(|_| format!("not the backend's body: {}", shown()))?;
            if body["status"] != json!(200) || body["output"]["echo"] != json!(true) {
                return Err(format!("not the backend's body: {}", shown()));
            }
            let got: Vec<(&str, &str)> = outcome
                .received
                .iter()
                .map(|r| (r.method.as_str(), r.target.as_str()))
                .collect();
            if got != [("POST", target.as_str())] {
                return Err(format!(
                    "backend saw {got:?}, want exactly one POST {target}"
                ));
            }
        }
        Expect::Invalid(_) | Expect::Valid | Expect::Reset(_) => {
            return Err("not an HTTP expectation".into())
        }
    }
    if !matches!(expect, Expect::Parser(_)) && r.header("x-oystehr-request-id").is_none() {
        return Err("response without x-oystehr-request-id".into());
    }
    for token in bearer_tokens(raw) {
        let echoed = |hay: &[u8]| hay.windows(token.len()).any(|w| w == token.as_bytes());
        if echoed(&r.body) || r.headers.iter().any(|(_, v)| echoed(v.as_bytes())) {
            return Err("the token was echoed in the response".into());
        }
    }
    // one request per connection: anything more was smuggled in
    if !outcome.more.is_empty() {
        return Err(format!(
            "further responses on the connection: {:?}",
            outcome.more
        ));
    }
    for check in &case.checks {
        check(&outcome)?;
    }
    Ok(())
}

fn json_error(r: &Response, status: u16) -> Result<(), String> {
    if r.header("content-type") != Some("application/json") {
        return Err(format!("content-type {:?}", r.header("content-type")));
    }
    let body: Value = serde_json::from_slice(&r.body).map_err(|e| format!("body not JSON: {e}"))?;
    let id = r.header("x-oystehr-request-id").unwrap_or_default();
    if body["code"] != json!(status)
        || body["request_id"] != json!(id)
        || !body["message"].is_string()
    {
        return Err(format!("error body {body}"));
    }
    Ok(())
}

fn nothing_reached(o: &Outcome) -> Result<(), String> {
    if o.received.is_empty() {
        Ok(())
    } else {
        let got: Vec<&str> = o.received.iter().map(|r| r.target.as_str()).collect();
        Err(format!("refused, yet the backend received {got:?}"))
    }
}

/// Bearer tokens long enough to recognise, from the Authorization headers
/// of a raw request.
fn bearer_tokens(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    text.split("\r\n")
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("authorization").then_some(value)
        })
        .filter_map(|value| value.split_whitespace().nth(1).map(String::from))
        .filter(|t| t.len() >= 24)
        .map(|t| t[t.len() - 24..].to_string())
        .collect()
}

async fn run_check(case: &Case, yaml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).map_err(|e| e.to_string())?;
    std::fs::write(policies.join("catalog.yaml"), POLICY_CATALOG).map_err(|e| e.to_string())?;
    std::fs::write(policies.join("case.yaml"), yaml).map_err(|e| e.to_string())?;
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, check_config()).map_err(|e| e.to_string())?;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_zambda-guard"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let code = out.status.code().unwrap_or(-1);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match &case.expect {
        Expect::Invalid(fragment) => {
            if code != 2 {
                return Err(format!("check exited {code}, want 2: {text}"));
            }
            if !text.contains("case.yaml") || !text.contains(fragment) {
                return Err(format!(
                    "error does not name the file and {fragment:?}: {text}"
                ));
            }
        }
        Expect::Valid => {
            if code != 0 {
                return Err(format!("check exited {code}, want 0: {text}"));
            }
        }
        _ => return Err("not a policy expectation".into()),
    }
    Ok(())
}

fn check_config() -> String {
    format!(
        "listen: 127.0.0.1:1\nadmin_listen: 127.0.0.1:2\nupstream:\n  address: 127.0.0.1:3\n\
         auth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n      public_key_pem_file: {}\n\
         policies:\n  dir: policies\n",
        key_path("rsa1-public.pem").display()
    )
}

/// Sends `raw` on a new connection; returns the first response and the
/// statuses of any further ones the proxy sends on that connection.
pub async fn exchange(
    mut stream: Box<dyn Stream>,
    raw: &[u8],
) -> (std::io::Result<Response>, Vec<u16>) {
    let head_only = raw.starts_with(b"HEAD ");
    // The proxy may answer and close before reading everything (oversized
    // heads): a failed write still leaves its answer to read.
    if stream.write_all(raw).await.is_ok() {
        let _ = stream.flush().await;
    }
    let mut buf = Vec::new();
    let first = match tokio::time::timeout(
        Duration::from_secs(10),
        read_one(&mut stream, &mut buf, head_only),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no response in 10 s",
        )),
    };
    let mut more = Vec::new();
    if first.is_ok() {
        for _ in 0..4 {
            match tokio::time::timeout(
                Duration::from_secs(1),
                read_one(&mut stream, &mut buf, false),
            )
            .await
            {
                Ok(Ok(r)) => more.push(r.status),
                _ => break,
            }
        }
    }
    (first, more)
}

/// Prints the failures and the summary line where CI logs show it (past
/// the test harness's capture), and returns the summary.
pub fn report(suite: &str, total: usize, failures: &[String]) -> String {
    let summary = format!(
        "{} passed, {} failed",
        total - failures.len(),
        failures.len()
    );
    let mut err = std::io::stderr().lock();
    for f in failures {
        let _ = writeln!(err, "FAILED {f}");
    }
    let _ = writeln!(err, "{suite}:");
    let _ = writeln!(err, "{summary}");
    summary
}

// ---------------------------------------------------------------------------
// HTTP/2
// ---------------------------------------------------------------------------

/// A case's HTTP/1.1 request said as HTTP/2: the same method, target (as
/// `:path`), headers and body, with `Host` as `:authority`. Errs, saying
/// why, for what HTTP/2 cannot say, so the case runs over HTTP/1.1 only:
/// - the HTTP/1 parser's own answers and anything it would refuse (line
///   endings, versions, bad header bytes, obs-fold): HTTP/2 has no text
///   framing;
/// - the framing headers RFC 9113 §8.2.2 forbids (`Connection` other than
///   `close`, which is dropped, `Transfer-Encoding`, `Keep-Alive`, `Proxy-Connection`, `Upgrade`,
///   `TE`) and bodies that disagree with their `Content-Length`;
/// - a `Host` other than one `proxy.test`, and targets not in origin
///   form: HTTP/2 carries `:authority` and `:scheme` instead;
/// - targets the client library cannot put in `:path` byte for byte
///   (fragments, raw control bytes, spaces, non-ASCII): those are sent raw
///   by `h2_pseudo_header_and_path_tricks`.
pub fn h2_form(raw: &[u8], expect: &Expect) -> Result<http::Request<Vec<u8>>, &'static str> {
    if matches!(expect, Expect::Parser(_)) {
        return Err("the HTTP/1 parser's answer");
    }
    let mut headers = vec![httparse::EMPTY_HEADER; 400];
    let mut req = httparse::Request::new(&mut headers);
    let end = match req.parse(raw) {
        Ok(httparse::Status::Complete(end)) => end,
        _ => return Err("not a well-formed HTTP/1.1 head"),
    };
    let crlf_only = raw[..end]
        .iter()
        .enumerate()
        .all(|(i, &b)| b != b'\n' || (i > 0 && raw[i - 1] == b'\r'));
    if req.version != Some(1) || !crlf_only {
        return Err("HTTP/1 versions and line endings");
    }
    let target = req.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err("a target not in origin form");
    }
    let uri: http::Uri = format!("https://proxy.test{target}")
        .parse()
        .map_err(|_| "a :path the HTTP/2 client cannot send")?;
    if uri.path_and_query().map(|p| p.as_str()) != Some(target) {
        return Err("a :path the HTTP/2 client cannot send");
    }
    let method = http::Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| "a bad method")?;
    if method == http::Method::CONNECT {
        return Err("CONNECT has no :path in HTTP/2");
    }
    let mut builder = http::Request::builder().method(method).uri(uri);
    let (mut hosts, mut length) = (Vec::new(), Vec::new());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            // HTTP/1's one request per connection; an HTTP/2 stream ends
            "connection" if h.value.eq_ignore_ascii_case(b"close") => {}
            "connection" | "transfer-encoding" | "keep-alive" | "proxy-connection" | "upgrade"
            | "te" => return Err("a framing header HTTP/2 forbids"),
            "host" => hosts.push(h.value),
            _ => {
                if name == "content-length" {
                    length.push(h.value);
                }
                let name = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| "a header name HTTP/2 cannot carry")?;
                let value = http::HeaderValue::from_bytes(h.value)
                    .map_err(|_| "a header value HTTP/2 cannot carry")?;
                builder = builder.header(name, value);
            }
        }
    }
    if hosts != [b"proxy.test"] {
        return Err("a Host other than one proxy.test");
    }
    let body = raw[end..].to_vec();
    let announced = match length.as_slice() {
        [] => 0,
        [one] => std::str::from_utf8(one)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or("an HTTP/1 content-length")?,
        _ => return Err("an HTTP/1 content-length"),
    };
    if announced != body.len() {
        return Err("a body that is not its content-length");
    }
    builder.body(body).map_err(|_| "not a request")
}

/// The cases HTTP/2 answers differently from HTTP/1.1, each with why. Both
/// still prove that nothing reached the backend.
pub const H2_DIFFERENCES: [(&str, Expect); 1] = [
    // pingora's HTTP/2 server takes 64 KiB of headers at most (HTTP/1: 1
    // MiB); the h2 layer drops the connection before any hook runs.
    (
        "token: oversized (600 KB)",
        // The server's reset, or, when it closes while the client is still
        // writing the header block, the client's broken pipe.
        Expect::Reset(&["too_many_continuations", "broken pipe"]),
    ),
];

/// What a case must get over HTTP/2.
fn h2_expectation(name: &str, expect: &Expect) -> Expect {
    H2_DIFFERENCES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or_else(|| expect.clone(), |(_, e)| e.clone())
}

/// Sends one request on a new HTTP/2 connection and reads its answer. A
/// stream or connection reset is an error (no response).
async fn h2_exchange(
    stream: Box<dyn Stream>,
    request: http::Request<Vec<u8>>,
) -> std::io::Result<Response> {
    let h2_err = |e: h2::Error| std::io::Error::other(format!("HTTP/2: {e}"));
    let (mut client, connection) = h2::client::handshake(stream).await.map_err(h2_err)?;
    let connection = tokio::spawn(connection);
    let (parts, body) = request.into_parts();
    let (response, mut send) = client
        .send_request(http::Request::from_parts(parts, ()), body.is_empty())
        .map_err(h2_err)?;
    if !body.is_empty() {
        // The proxy may answer before reading everything (413): a failed
        // send still leaves its answer to read.
        let _ = send.send_data(bytes::Bytes::from(body), true);
    }
    let read = async {
        let response = response.await.map_err(h2_err)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut data = response.into_body();
        let mut body = Vec::new();
        while let Some(chunk) = data.data().await {
            let chunk = chunk.map_err(h2_err)?;
            let _ = data.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    };
    let result = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no response in 10 s")));
    connection.abort();
    result
}

// ---------------------------------------------------------------------------
// The table tests, one per transport
// ---------------------------------------------------------------------------

/// The whole table: the main world's cases, the policy world's, the policy
/// files'.
pub fn table(attacker: &JwksServer) -> Vec<Case> {
    let mut cases = main_cases(attacker);
    cases.extend(policy_cases());
    cases.extend(policy_file_cases());
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.as_str()),
            "case name used twice: {}",
            c.name
        );
    }
    assert!(cases.len() > 300, "the table lost cases: {}", cases.len());
    cases
}

/// Runs the table over `transport` against worlds started for it and
/// fails listing every failed case. Cases that do not apply are counted by
/// reason and printed; at least `at_least` cases must run.
pub async fn table_over(transport: Transport, at_least: usize) {
    let worlds = Worlds::start(transport != Transport::Plain).await;
    // a second JWKS endpoint that only an attacker's token names
    let attacker = JwksServer::start(&[&SigningKey::rsa2()]).await;
    let cases = table(&attacker);
    for (name, _) in &H2_DIFFERENCES {
        assert!(
            cases.iter().any(|c| c.name == *name),
            "H2_DIFFERENCES names no case {name:?}"
        );
    }
    let mut not_run: std::collections::BTreeMap<&str, usize> = Default::default();
    let applicable: Vec<&Case> = cases
        .iter()
        .filter(|c| {
            let why_not = match (&c.action, transport) {
                (Action::Http { .. }, Transport::Plain | Transport::Tls) => None,
                (Action::Http { raw, .. }, Transport::H2) => h2_form(raw, &c.expect).err(),
                (Action::Check { .. }, Transport::Plain) => None,
                // `zambda-guard check` reads files; no listener is involved
                (Action::Check { .. }, _) => Some("a policy-file check, no request"),
            };
            if let Some(why) = why_not {
                *not_run.entry(why).or_default() += 1;
            }
            why_not.is_none()
        })
        .collect();

    let started = Instant::now();
    let failures = run(&worlds, transport, &applicable).await;
    let suite = format!(
        "adversarial table over {} ({:.1} s)",
        transport.name(),
        started.elapsed().as_secs_f64()
    );
    for (why, n) in &not_run {
        eprintln!("not over {}: {n} case(s): {why}", transport.name());
    }
    let summary = report(&suite, applicable.len(), &failures);
    assert!(
        failures.is_empty(),
        "{summary}:\n{}\n\nmain proxy log (tail):\n{}",
        failures.join("\n"),
        tail(&worlds.main.proxy.logs(), 40)
    );
    assert!(
        applicable.len() >= at_least,
        "only {} cases ran over {}",
        applicable.len(),
        transport.name()
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
