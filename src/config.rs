//! `config.yaml`: the file types (serde, unknown keys rejected) and their
//! translation into one validated [`Config`].
//!
//! Serde types live only here, at the edge. After [`Config::load`] the rest
//! of the program holds validated values: socket addresses already resolved,
//! durations as [`Duration`], HMAC secrets read from the environment, paths
//! made absolute relative to the config file. Every problem found is
//! reported, not just the first, each naming the key it is about.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Every problem found in a config file, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct Error {
    pub problems: Vec<String>,
}

impl Error {
    fn one(message: impl Into<String>) -> Self {
        Error {
            problems: vec![message.into()],
        }
    }
}

// ---------------------------------------------------------------------------
// File types
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_admin_listen")]
    admin_listen: String,
    #[serde(default)]
    threads: Option<usize>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default = "default_route_prefix")]
    route_prefix: String,
    #[serde(default)]
    enforcement: Enforcement,
    #[serde(default)]
    upstream: FileUpstream,
    auth: FileAuth,
    #[serde(default)]
    policies: FilePolicies,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    shutdown: FileShutdown,
    #[serde(default)]
    cors: Option<FileCors>,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    upstreams: std::collections::BTreeMap<String, FileNamedUpstream>,
    #[serde(default)]
    rate_limits: FileRateLimits,
    #[serde(default)]
    tls: Option<FileTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNamedUpstream {
    addresses: Vec<String>,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    health_check: Option<FileHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHealthCheck {
    #[serde(default = "default_health_path")]
    path: String,
    #[serde(default = "default_health_interval")]
    interval_seconds: u64,
}

fn default_health_path() -> String {
    "/healthz".into()
}
fn default_health_interval() -> u64 {
    5
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileRateLimits {
    per_actor_per_second: Option<u64>,
    per_client_per_second: Option<u64>,
}

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}
fn default_admin_listen() -> String {
    "0.0.0.0:9901".into()
}
fn default_route_prefix() -> String {
    "/v1".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileUpstream {
    address: String,
    tls: bool,
    sni: Option<String>,
    ca_file: Option<PathBuf>,
    insecure_skip_verify: bool,
    path_template: Option<String>,
    connect_timeout_ms: u64,
    read_timeout_ms: u64,
}

impl Default for FileUpstream {
    fn default() -> Self {
        FileUpstream {
            address: "127.0.0.1:3000".into(),
            tls: false,
            sni: None,
            ca_file: None,
            insecure_skip_verify: false,
            path_template: None,
            connect_timeout_ms: 1000,
            read_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    issuers: Vec<FileIssuer>,
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
    #[serde(default = "default_subject_claim")]
    subject_claim: String,
    #[serde(default)]
    roles_claim: Option<String>,
    #[serde(default = "yes")]
    forward_authorization: bool,
    #[serde(default = "default_token_cache_entries")]
    token_cache_entries: usize,
    #[serde(default = "default_jwks_fetch_timeout_ms")]
    jwks_fetch_timeout_ms: u64,
}

fn default_leeway() -> u64 {
    30
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn yes() -> bool {
    true
}
fn default_token_cache_entries() -> usize {
    100_000
}
fn default_jwks_fetch_timeout_ms() -> u64 {
    2000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIssuer {
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    algorithms: Vec<String>,
    #[serde(default)]
    jwks_url: Option<String>,
    #[serde(default)]
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    public_key_pem_file: Option<PathBuf>,
    #[serde(default)]
    hmac_secret_env: Option<String>,
    #[serde(default = "default_jwks_refresh")]
    jwks_refresh_seconds: u64,
    #[serde(default = "default_jwks_min_refetch")]
    jwks_min_refetch_seconds: u64,
    #[serde(default)]
    subject_claim: Option<String>,
    #[serde(default)]
    roles_claim: Option<String>,
}

fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_min_refetch() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FilePolicies {
    dir: PathBuf,
    watch: bool,
}

impl Default for FilePolicies {
    fn default() -> Self {
        FilePolicies {
            dir: PathBuf::from("policies"),
            watch: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileLimits {
    max_body_bytes: u64,
    downstream_idle_timeout_seconds: u64,
    downstream_read_timeout_seconds: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits {
            max_body_bytes: 6 * 1024 * 1024,
            downstream_idle_timeout_seconds: 60,
            downstream_read_timeout_seconds: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileShutdown {
    grace_period_seconds: u64,
    drain_timeout_seconds: u64,
    upgrade_sock: PathBuf,
}

impl Default for FileShutdown {
    fn default() -> Self {
        FileShutdown {
            grace_period_seconds: 5,
            drain_timeout_seconds: 25,
            upgrade_sock: PathBuf::from("/tmp/zambda-guard.sock"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCors {
    allowed_origins: Vec<String>,
    #[serde(default = "default_cors_max_age")]
    max_age_seconds: u64,
    #[serde(default)]
    allow_credentials: bool,
    #[serde(default = "default_cors_headers")]
    allowed_headers: Vec<String>,
}

fn default_cors_max_age() -> u64 {
    600
}
fn default_cors_headers() -> Vec<String> {
    [
        "authorization",
        "content-type",
        "x-oystehr-project-id",
        "x-zapehr-project-id",
        "x-oystehr-request-id",
    ]
    .map(String::from)
    .to_vec()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileLog {
    decisions: LogDecisions,
    format: LogFormat,
}

// ---------------------------------------------------------------------------
// Validated types
// ---------------------------------------------------------------------------

/// The validated configuration the program runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub threads: usize,
    /// Lower-cased; compared case-insensitively with the project-id headers.
    pub project_id: Option<String>,
    /// `/v1` by default; never ends with `/`; empty means routes at the root.
    pub route_prefix: String,
    pub enforcement: Enforcement,
    pub upstream: Upstream,
    pub auth: Auth,
    pub policies: Policies,
    pub limits: Limits,
    pub shutdown: Shutdown,
    pub cors: Option<Cors>,
    pub log: Log,
    /// Named backends besides the default `upstream` (SPEC §7).
    pub upstreams: std::collections::BTreeMap<String, NamedUpstream>,
    pub rate_limits: RateLimits,
    /// HTTPS on `listen` (SPEC §7); `None` = plain HTTP, the sidecar default.
    pub tls: Option<Tls>,
}

/// The certificate served on `listen`: its files, and the pair they held
/// at load time (read and checked then, so an invalid pair stops the start).
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub pair: crate::pem::Pair,
}

/// A named backend: one or more addresses, round robin, optionally health
/// checked. Timeouts are those of `upstream`.
#[derive(Debug, Clone)]
pub struct NamedUpstream {
    pub name: String,
    pub addresses: Vec<SocketAddr>,
    pub health_check: Option<HealthCheck>,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
}

/// Requests per second allowed, per actor on `execute` and per client
/// address on `execute-public`; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimits {
    pub per_actor_per_second: Option<u64>,
    pub per_client_per_second: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    #[default]
    Enforce,
    DryRun,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub address: SocketAddr,
    /// The address as written, for messages.
    pub address_text: String,
    pub tls: bool,
    /// The name the backend's certificate is verified against (and sent as
    /// SNI); never empty when `tls` is set.
    pub sni: String,
    /// Roots to verify the backend against instead of the system's.
    pub ca: Option<crate::pem::UpstreamCa>,
    /// Only with `tls`: the backend's certificate is not checked at all.
    pub insecure_skip_verify: bool,
    pub path_template: Option<PathTemplate>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// A validated `upstream.path_template`: literal text and the placeholders
/// `{id}`, `{name}` and `{route}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    Id,
    Name,
    Route,
}

impl PathTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("must start with '/', got {text:?}"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {text:?}"))?;
            parts.push(match &after[..close] {
                "id" => TemplatePart::Id,
                "name" => TemplatePart::Name,
                "route" => TemplatePart::Route,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} in {text:?} (use {{id}}, {{name}} or {{route}})"
                    ))
                }
            });
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("stray '}}' in {text:?}"));
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_string()));
        }
        for part in &parts {
            if let TemplatePart::Literal(lit) = part {
                if let Some(bad) = lit.chars().find(|c| !is_template_char(*c)) {
                    return Err(format!("character {bad:?} not allowed in {text:?}"));
                }
            }
        }
        Ok(PathTemplate { parts })
    }

    /// Fills in the placeholders. Ids, names and routes are `[A-Za-z0-9_-]+`,
    /// so the result needs no escaping.
    pub fn render(&self, id: &str, name: &str, route: &str) -> String {
        let mut out = String::with_capacity(64);
        for part in &self.parts {
            out.push_str(match part {
                TemplatePart::Literal(lit) => lit,
                TemplatePart::Id => id,
                TemplatePart::Name => name,
                TemplatePart::Route => route,
            });
        }
        out
    }
}

fn is_template_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/-_.~".contains(c)
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub issuers: Vec<Issuer>,
    pub leeway_seconds: u64,
    pub forward_authorization: bool,
    pub token_cache_entries: usize,
    pub jwks_fetch_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Issuer {
    /// The exact `iss` value tokens carry.
    pub issuer: String,
    /// Non-empty.
    pub audiences: Vec<String>,
    /// Non-empty; `none` cannot be expressed.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Non-empty.
    pub keys: Vec<KeySource>,
    pub jwks_refresh: Duration,
    pub jwks_min_refetch: Duration,
    /// Where the actor is read from; the global value unless overridden.
    pub subject_claim: ClaimPath,
    pub roles_claim: Option<ClaimPath>,
}

/// Where an issuer's verification keys come from.
#[derive(Clone)]
pub enum KeySource {
    JwksUrl(String),
    JwksFile(PathBuf),
    PublicKeyPemFile(PathBuf),
    /// The secret was read from the named environment variable at load time.
    HmacSecret {
        env: String,
        secret: Vec<u8>,
    },
}

impl fmt::Debug for KeySource {
    // Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::JwksUrl(url) => write!(f, "jwks_url {url}"),
            KeySource::JwksFile(path) => write!(f, "jwks_file {}", path.display()),
            KeySource::PublicKeyPemFile(path) => {
                write!(f, "public_key_pem_file {}", path.display())
            }
            KeySource::HmacSecret { env, .. } => write!(f, "hmac_secret_env {env}"),
        }
    }
}

/// Where a claim setting (`subject_claim`, `roles_claim`) finds its value
/// in a token's claims (SPEC §2).
///
/// A text starting with `/` is a JSON pointer (RFC 6901). Any other text is
/// first one top-level claim name, and only when the token has no claim of
/// that name and the text has dots, a dotted path into nested objects. The
/// name comes first because identity providers namespace custom claims with
/// URLs (Auth0 requires `https://example.com/roles`): read as a path, such a
/// name is never found and its roles, Denies included, would be lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    /// As configured, for messages.
    text: String,
    reading: Reading,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    /// The reference tokens of a JSON pointer, `~1` and `~0` already
    /// decoded, so a lookup allocates nothing.
    Pointer(Vec<String>),
    /// The whole text as one name; with dots, the segments to try when no
    /// claim has that name.
    Name { dotted: Option<Vec<String>> },
}

impl ClaimPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("claim name is empty".to_string());
        }
        let reading = match text.strip_prefix('/') {
            Some(pointer) => Reading::Pointer(
                pointer
                    .split('/')
                    .map(|token| pointer_token(text, token))
                    .collect::<Result<_, _>>()?,
            ),
            None if text.contains('.') => {
                let segments: Vec<String> = text.split('.').map(String::from).collect();
                // A typo such as `realm_access..roles` would otherwise be
                // read as a name no token carries: "no roles", silently.
                if segments.iter().any(String::is_empty) {
                    return Err(format!(
                        "claim path {text:?} has an empty segment (a claim named so is reached by a JSON pointer: /{})",
                        text.replace('~', "~0").replace('/', "~1")
                    ));
                }
                Reading::Name {
                    dotted: Some(segments),
                }
            }
            None => Reading::Name { dotted: None },
        };
        Ok(ClaimPath {
            text: text.to_string(),
            reading,
        })
    }

    /// Looks the claim up in a token's claims.
    pub fn get<'v>(&self, claims: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        match &self.reading {
            Reading::Pointer(tokens) => {
                tokens.iter().try_fold(claims, |value, token| match value {
                    serde_json::Value::Array(items) => items.get(array_index(token)?),
                    other => other.get(token.as_str()),
                })
            }
            Reading::Name { dotted } => claims.get(self.text.as_str()).or_else(|| {
                dotted.as_ref().and_then(|segments| {
                    segments
                        .iter()
                        .try_fold(claims, |value, segment| value.get(segment.as_str()))
                })
            }),
        }
    }

    /// One sentence on how the claim will be read, for `check`.
    pub fn describe(&self) -> String {
        match &self.reading {
            Reading::Pointer(_) => format!("JSON pointer {}", self.text),
            Reading::Name { dotted: None } => format!("claim {:?} (top-level name)", self.text),
            Reading::Name { dotted: Some(_) } => format!(
                "claim {:?} (top-level name; as a dotted path only if absent)",
                self.text
            ),
        }
    }
}

/// One reference token of a JSON pointer, unescaped: `~1` is `/`, `~0` is
/// `~`, and any other `~` is an error (RFC 6901 §3).
fn pointer_token(text: &str, token: &str) -> Result<String, String> {
    if token.is_empty() {
        return Err(format!(
            "JSON pointer {text:?} has an empty reference token (no claim is named \"\")"
        ));
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => {
                    return Err(format!(
                        "JSON pointer {text:?}: '~' must be followed by 0 or 1 (write ~0 for '~', ~1 for '/')"
                    ))
                }
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A pointer token as an array index: decimal digits, no leading zero
/// (RFC 6901 §4).
fn array_index(token: &str) -> Option<usize> {
    let canonical = token == "0" || (!token.starts_with('0') && !token.is_empty());
    if canonical && token.bytes().all(|b| b.is_ascii_digit()) {
        token.parse().ok()
    } else {
        None
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone)]
pub struct Policies {
    pub dir: PathBuf,
    pub watch: bool,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub downstream_idle_timeout: Duration,
    pub downstream_read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Shutdown {
    pub grace_period_seconds: u64,
    pub drain_timeout_seconds: u64,
    pub upgrade_sock: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Cors {
    /// Exact origins, or `*`.
    pub allowed_origins: Vec<String>,
    pub max_age_seconds: u64,
    pub allow_credentials: bool,
    /// Lower-cased.
    pub allowed_headers: Vec<String>,
}

impl Cors {
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == "*" || o == origin)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Log {
    pub decisions: LogDecisions,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogDecisions {
    All,
    #[default]
    Denied,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

// ---------------------------------------------------------------------------
// Loading and validation
// ---------------------------------------------------------------------------

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::one(format!("{}: cannot read: {e}", path.display())))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let base = std::path::absolute(&base).unwrap_or(base);
        let name = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Config::from_yaml(&text, &name.display().to_string(), &base)
    }

    /// Validates config text; relative paths are taken relative to `base`.
    pub fn from_yaml(text: &str, name: &str, base: &Path) -> Result<Config, Error> {
        let file: File = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}", l.line()))
                .unwrap_or_default();
            Error::one(format!("{name}{at}: {e}"))
        })?;
        let mut v = Validator {
            name,
            base,
            problems: Vec::new(),
        };
        let config = v.config(file);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(Error {
                problems: v.problems,
            })
        }
    }
}

struct Validator<'a> {
    name: &'a str,
    base: &'a Path,
    problems: Vec<String>,
}

impl Validator<'_> {
    fn problem(&mut self, key: &str, message: impl fmt::Display) {
        self.problems
            .push(format!("{}: {key}: {message}", self.name));
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn socket(&mut self, key: &str, text: &str) -> SocketAddr {
        match text.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(addr)) => addr,
            Ok(None) => {
                self.problem(key, format!("{text:?} resolves to no address"));
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
            Err(e) => {
                self.problem(key, format!("{text:?} is not a host:port ({e})"));
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        }
    }

    fn config(&mut self, f: File) -> Config {
        let listen = self.socket("listen", &f.listen);
        let admin_listen = self.socket("admin_listen", &f.admin_listen);
        let threads = match f.threads {
            Some(0) => {
                self.problem("threads", "must be at least 1 (or null for the CPU count)");
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let route_prefix = self.route_prefix(&f.route_prefix);
        let project_id = f.project_id.map(|p| p.trim().to_ascii_lowercase());
        if project_id.as_deref() == Some("") {
            self.problem("project_id", "is empty (use null to accept any project)");
        }
        let upstream = self.upstream(f.upstream);
        let auth = self.auth(f.auth);
        let policies = Policies {
            dir: self.path(&f.policies.dir),
            watch: f.policies.watch,
        };
        if f.limits.downstream_idle_timeout_seconds == 0 {
            self.problem(
                "limits.downstream_idle_timeout_seconds",
                "must be at least 1",
            );
        }
        if f.limits.downstream_read_timeout_seconds == 0 {
            self.problem(
                "limits.downstream_read_timeout_seconds",
                "must be at least 1",
            );
        }
        let limits = Limits {
            max_body_bytes: f.limits.max_body_bytes,
            downstream_idle_timeout: Duration::from_secs(f.limits.downstream_idle_timeout_seconds),
            downstream_read_timeout: Duration::from_secs(f.limits.downstream_read_timeout_seconds),
        };
        let shutdown = Shutdown {
            grace_period_seconds: f.shutdown.grace_period_seconds,
            drain_timeout_seconds: f.shutdown.drain_timeout_seconds,
            upgrade_sock: self.path(&f.shutdown.upgrade_sock),
        };
        let cors = f.cors.map(|c| self.cors(c));
        let upstreams = f
            .upstreams
            .into_iter()
            .map(|(name, u)| {
                let named = self.named_upstream(&name, u);
                (name, named)
            })
            .collect();
        for (key, value) in [
            (
                "rate_limits.per_actor_per_second",
                f.rate_limits.per_actor_per_second,
            ),
            (
                "rate_limits.per_client_per_second",
                f.rate_limits.per_client_per_second,
            ),
        ] {
            if value == Some(0) {
                self.problem(key, "must be at least 1 (or null for no limit)");
            }
        }
        let tls = f.tls.and_then(|t| self.tls(t));
        Config {
            source: PathBuf::from(self.name),
            listen,
            admin_listen,
            threads,
            project_id,
            route_prefix,
            enforcement: f.enforcement,
            upstream,
            auth,
            policies,
            limits,
            shutdown,
            cors,
            log: Log {
                decisions: f.log.decisions,
                format: f.log.format,
            },
            upstreams,
            rate_limits: RateLimits {
                per_actor_per_second: f.rate_limits.per_actor_per_second,
                per_client_per_second: f.rate_limits.per_client_per_second,
            },
            tls,
        }
    }

    /// Loads the pair now: a start or a `check` with a bad pair fails.
    fn tls(&mut self, t: FileTls) -> Option<Tls> {
        let cert_file = self.path(&t.cert_file);
        let key_file = self.path(&t.key_file);
        match crate::pem::Pair::load(&cert_file, &key_file) {
            Ok(pair) => Some(Tls {
                cert_file,
                key_file,
                pair,
            }),
            Err(e) => {
                self.problem("tls", e);
                None
            }
        }
    }

    fn named_upstream(&mut self, name: &str, u: FileNamedUpstream) -> NamedUpstream {
        let at = format!("upstreams.{name}");
        if name.is_empty() || !name.bytes().all(crate::route::is_id_byte) {
            self.problem(&at, "upstream names must match [A-Za-z0-9_-]+");
        }
        if u.addresses.is_empty() {
            self.problem(&format!("{at}.addresses"), "list at least one host:port");
        }
        if u.tls {
            self.problem(
                &format!("{at}.tls"),
                "TLS to named upstreams is not supported by this build",
            );
        }
        let addresses = u
            .addresses
            .iter()
            .map(|a| self.socket(&format!("{at}.addresses"), a))
            .collect();
        let health_check = u.health_check.map(|h| {
            if !h.path.starts_with('/') {
                self.problem(&format!("{at}.health_check.path"), "must start with '/'");
            }
            if h.interval_seconds == 0 {
                self.problem(
                    &format!("{at}.health_check.interval_seconds"),
                    "must be at least 1",
                );
            }
            HealthCheck {
                path: h.path,
                interval: Duration::from_secs(h.interval_seconds.max(1)),
            }
        });
        NamedUpstream {
            name: name.to_string(),
            addresses,
            health_check,
        }
    }

    fn route_prefix(&mut self, text: &str) -> String {
        let trimmed = text.trim_end_matches('/');
        let valid = trimmed.is_empty()
            || (trimmed.starts_with('/')
                && trimmed[1..].split('/').all(|seg| {
                    !seg.is_empty()
                        && seg != "."
                        && seg != ".."
                        && seg
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
                }));
        if !valid {
            self.problem(
                "route_prefix",
                format!("{text:?} must be empty or like /v1 (plain segments, no escapes)"),
            );
        }
        trimmed.to_string()
    }

    fn upstream(&mut self, u: FileUpstream) -> Upstream {
        let address = self.socket("upstream.address", &u.address);
        let sni = u.sni.unwrap_or_else(|| {
            u.address
                .rsplit_once(':')
                .map_or(u.address.as_str(), |(host, _)| host)
                .trim_matches(['[', ']'])
                .to_string()
        });
        let path_template = u
            .path_template
            .as_deref()
            .and_then(|t| match PathTemplate::parse(t) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.problem("upstream.path_template", e);
                    None
                }
            });
        let ca = match (&u.ca_file, u.tls) {
            (Some(_), false) => {
                self.problem("upstream.ca_file", "only applies with upstream.tls: true");
                None
            }
            (Some(path), true) => match crate::pem::UpstreamCa::load(&self.path(path)) {
                Ok(ca) => Some(ca),
                Err(e) => {
                    self.problem("upstream.ca_file", e);
                    None
                }
            },
            (None, _) => None,
        };
        if u.insecure_skip_verify && !u.tls {
            self.problem(
                "upstream.insecure_skip_verify",
                "only applies with upstream.tls: true",
            );
        }
        if u.insecure_skip_verify && u.ca_file.is_some() {
            self.problem(
                "upstream.insecure_skip_verify",
                "contradicts upstream.ca_file (set one or the other)",
            );
        }
        if u.tls {
            // pingora skips every certificate check for an empty SNI.
            if let Err(e) = pingora::tls::ServerName::try_from(sni.as_str()) {
                self.problem(
                    "upstream.sni",
                    format!("{sni:?} is not a DNS name or IP address to verify the backend's certificate against ({e})"),
                );
            }
        }
        if u.connect_timeout_ms == 0 {
            self.problem("upstream.connect_timeout_ms", "must be at least 1");
        }
        if u.read_timeout_ms == 0 {
            self.problem("upstream.read_timeout_ms", "must be at least 1");
        }
        Upstream {
            address,
            address_text: u.address,
            tls: u.tls,
            sni,
            ca,
            insecure_skip_verify: u.insecure_skip_verify,
            path_template,
            connect_timeout: Duration::from_millis(u.connect_timeout_ms),
            read_timeout: Duration::from_millis(u.read_timeout_ms),
        }
    }

    fn auth(&mut self, a: FileAuth) -> Auth {
        if a.issuers.is_empty() {
            self.problem("auth.issuers", "at least one issuer is required");
        }
        let subject_claim = self.claim("auth.subject_claim", &a.subject_claim);
        let roles_claim = a
            .roles_claim
            .as_deref()
            .and_then(|c| self.claim("auth.roles_claim", c));
        let mut seen = std::collections::HashSet::new();
        let mut issuers = Vec::new();
        for (i, fi) in a.issuers.into_iter().enumerate() {
            if !seen.insert(fi.issuer.clone()) {
                self.problem(
                    &format!("auth.issuers[{i}].issuer"),
                    format!("{:?} is configured twice", fi.issuer),
                );
            }
            if let Some(issuer) = self.issuer(i, fi, subject_claim.as_ref(), roles_claim.as_ref()) {
                issuers.push(issuer);
            }
        }
        if a.leeway_seconds > 3600 {
            self.problem(
                "auth.leeway_seconds",
                format!(
                    "{} is more than an hour of clock skew (at most 3600)",
                    a.leeway_seconds
                ),
            );
        }
        if a.jwks_fetch_timeout_ms == 0 {
            self.problem("auth.jwks_fetch_timeout_ms", "must be at least 1");
        }
        Auth {
            issuers,
            leeway_seconds: a.leeway_seconds,
            forward_authorization: a.forward_authorization,
            token_cache_entries: a.token_cache_entries,
            jwks_fetch_timeout: Duration::from_millis(a.jwks_fetch_timeout_ms),
        }
    }

    fn claim(&mut self, key: &str, text: &str) -> Option<ClaimPath> {
        match ClaimPath::parse(text) {
            Ok(c) => Some(c),
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    fn issuer(
        &mut self,
        i: usize,
        f: FileIssuer,
        subject_claim: Option<&ClaimPath>,
        roles_claim: Option<&ClaimPath>,
    ) -> Option<Issuer> {
        let at = format!("auth.issuers[{i}]");
        let before = self.problems.len();
        if f.issuer.is_empty() {
            self.problem(&format!("{at}.issuer"), "is empty");
        }
        if f.audiences.is_empty() || f.audiences.iter().any(String::is_empty) {
            self.problem(
                &format!("{at}.audiences"),
                "at least one non-empty audience is required (tokens must name one of them in `aud`)",
            );
        }
        let mut algorithms = Vec::new();
        if f.algorithms.is_empty() {
            self.problem(
                &format!("{at}.algorithms"),
                "list the algorithms this issuer signs with",
            );
        }
        for name in &f.algorithms {
            match parse_algorithm(name) {
                Some(alg) => algorithms.push(alg),
                None => self.problem(
                    &format!("{at}.algorithms"),
                    format!(
                        "{name:?} is not accepted (use RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)"
                    ),
                ),
            }
        }
        let mut keys = Vec::new();
        if let Some(url) = f.jwks_url {
            match check_jwks_url(&url) {
                Ok(()) => keys.push(KeySource::JwksUrl(url)),
                Err(e) => self.problem(&format!("{at}.jwks_url"), e),
            }
        }
        if let Some(path) = f.jwks_file {
            keys.push(KeySource::JwksFile(self.path(&path)));
        }
        if let Some(path) = f.public_key_pem_file {
            keys.push(KeySource::PublicKeyPemFile(self.path(&path)));
        }
        if let Some(env) = f.hmac_secret_env {
            match std::env::var(&env) {
                Ok(secret) if secret.len() >= 32 => keys.push(KeySource::HmacSecret {
                    env,
                    secret: secret.into_bytes(),
                }),
                Ok(secret) => self.problem(
                    &format!("{at}.hmac_secret_env"),
                    format!(
                        "the secret in ${env} is {} bytes; at least 32 are required",
                        secret.len()
                    ),
                ),
                Err(_) => self.problem(
                    &format!("{at}.hmac_secret_env"),
                    format!("environment variable ${env} is not set (or not UTF-8)"),
                ),
            }
        }
        if keys.is_empty() && self.problems.len() == before {
            self.problem(
                &at,
                "no key source: set jwks_url, jwks_file, public_key_pem_file or hmac_secret_env",
            );
        }
        let uses_hmac = algorithms.iter().any(|a| is_hmac(*a));
        let has_hmac_env = keys
            .iter()
            .any(|k| matches!(k, KeySource::HmacSecret { .. }));
        if has_hmac_env && !uses_hmac {
            self.problem(
                &format!("{at}.algorithms"),
                "hmac_secret_env is set but no HS256/HS384/HS512 algorithm is allowed",
            );
        }
        if f.jwks_refresh_seconds == 0 {
            self.problem(&format!("{at}.jwks_refresh_seconds"), "must be at least 1");
        }
        if f.jwks_min_refetch_seconds == 0 {
            self.problem(
                &format!("{at}.jwks_min_refetch_seconds"),
                "must be at least 1 (it bounds the fetches unknown key ids can trigger)",
            );
        }
        let subject = match f.subject_claim.as_deref() {
            Some(c) => self.claim(&format!("{at}.subject_claim"), c),
            None => subject_claim.cloned(),
        };
        let roles = match f.roles_claim.as_deref() {
            Some(c) => self.claim(&format!("{at}.roles_claim"), c),
            None => roles_claim.cloned(),
        };
        if self.problems.len() != before {
            return None;
        }
        Some(Issuer {
            issuer: f.issuer,
            audiences: f.audiences,
            algorithms,
            keys,
            jwks_refresh: Duration::from_secs(f.jwks_refresh_seconds),
            jwks_min_refetch: Duration::from_secs(f.jwks_min_refetch_seconds),
            subject_claim: subject?,
            roles_claim: roles,
        })
    }

    fn cors(&mut self, c: FileCors) -> Cors {
        if c.allowed_origins.is_empty() {
            self.problem(
                "cors.allowed_origins",
                "list at least one origin (or set cors: null)",
            );
        }
        if c.allow_credentials && c.allowed_origins.iter().any(|o| o == "*") {
            self.problem(
                "cors.allowed_origins",
                "\"*\" cannot be combined with allow_credentials: true",
            );
        }
        for o in &c.allowed_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                self.problem(
                    "cors.allowed_origins",
                    format!("{o:?} is not an origin like https://app.example.com"),
                );
            }
        }
        Cors {
            allowed_origins: c
                .allowed_origins
                .into_iter()
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
            max_age_seconds: c.max_age_seconds,
            allow_credentials: c.allow_credentials,
            allowed_headers: c
                .allowed_headers
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }
}

/// The algorithms SPEC §2 allows, by their JOSE names. `none` is not one.
pub fn parse_algorithm(name: &str) -> Option<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm::*;
    Some(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        _ => return None,
    })
}

pub fn is_hmac(alg: jsonwebtoken::Algorithm) -> bool {
    use jsonwebtoken::Algorithm::*;
    matches!(alg, HS256 | HS384 | HS512)
}

/// `https` anywhere; plain `http` only to a loopback host (a JWKS fetched in
/// the clear from elsewhere could be swapped by anyone on the path).
fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "{url:?}: plain http is only accepted for loopback addresses; use https"
                ))
            }
        }
        other => Err(format!("{url:?}: scheme {other:?} is not http(s)")),
    }
}

#[cfg(test)]
mod tests;
