//! The validated configuration: the types the program runs with once
//! `config.yaml` has been read and checked.
//!
//! Nothing here is "maybe invalid": addresses are resolved, durations are
//! typed, HMAC secrets have been read from the environment, paths are
//! absolute, and the texts that name a path template or a claim have been
//! parsed into what they mean.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The validated configuration the program runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, for messages.
    pub source: PathBuf,
    /// The proxy listener; `None` when only the decision service runs.
    pub listen: Option<SocketAddr>,
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
    pub upstreams: BTreeMap<String, NamedUpstream>,
    pub rate_limits: RateLimits,
    /// HTTPS on `listen` (SPEC §7); `None` = plain HTTP, the sidecar default.
    pub tls: Option<Tls>,
    /// The decision-only service (SPEC §8), when `authz_listen` is set.
    pub authz: Option<Authz>,
    /// Peers whose `X-Forwarded-For` is believed (SPEC §1); empty = none.
    pub trusted_proxies: crate::client::Trusted,
    /// Project sync (SPEC §10); `None` = `sync` refuses to run.
    pub oystehr: Option<super::oystehr::Oystehr>,
    pub telemetry: Telemetry,
}

impl Config {
    /// What `check` and the start warn about in this config.
    pub fn warnings(&self) -> Vec<String> {
        self.trusted_proxies
            .blocks()
            .iter()
            .filter(|block| block.is_everything())
            .map(|block| {
                format!(
                    "{}: trusted_proxies: {block} trusts every peer: any client can choose the address that rate limits and logs use",
                    self.source.display()
                )
            })
            .collect()
    }
}

/// The decision-only service: where it listens and where the request it
/// judges is described.
#[derive(Debug, Clone)]
pub struct Authz {
    pub listen: SocketAddr,
    pub source: AuthzSource,
    /// Removed from the front of the target with `source: request`; never
    /// ends with `/`.
    pub path_prefix: Option<String>,
}

/// Where the decision service reads the request it judges (SPEC §8): one
/// place only, so a client cannot pick which header is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthzSource {
    /// The request's own method and target (Envoy, Istio `ext_authz`).
    Request,
    /// `X-Forwarded-Method` and `X-Forwarded-Uri` (Traefik `ForwardAuth`).
    Forwarded,
    /// `X-Original-Method` and `X-Original-URI` (nginx `auth_request`,
    /// set from `$request_uri`).
    OriginalUri,
    /// `X-Original-Method` and the path and query of `X-Original-URL`
    /// (ingress-nginx `auth-url`).
    OriginalUrl,
}

impl AuthzSource {
    /// nginx and ingress-nginx accept only 2xx, 401 and 403 from an auth
    /// subrequest.
    pub fn is_nginx(self) -> bool {
        matches!(self, AuthzSource::OriginalUri | AuthzSource::OriginalUrl)
    }
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
    /// IP literals or host names, resolved and refreshed like
    /// `upstream.address`.
    pub addresses: Vec<std::sync::Arc<crate::dns::Address>>,
    pub health_check: Option<HealthCheck>,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
}

/// Requests per second allowed, per actor on `execute` and per client
/// address on `execute-public`; `None` = unlimited.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub per_actor_per_second: Option<u64>,
    pub per_client_per_second: Option<u64>,
    /// Requests let through at once; `None` = each limit's per-second rate.
    pub burst: Option<u64>,
    /// Keys (actors, client addresses) each limit remembers at most.
    pub max_keys: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_actor_per_second: None,
            per_client_per_second: None,
            burst: None,
            max_keys: 100_000,
        }
    }
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
    /// An IP literal, or a host name resolved at start and every
    /// `dns_refresh` after (SPEC §7); shared with the background refresh.
    pub address: std::sync::Arc<crate::dns::Address>,
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
    pub dns_refresh: Duration,
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

    /// True when the template names `{id}`, which a Zambda without an id
    /// cannot fill.
    pub fn uses_id(&self) -> bool {
        self.parts.contains(&TemplatePart::Id)
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
    /// The first (or only) directory of `dirs`, for messages.
    pub dir: PathBuf,
    /// Every policy directory, in the order given; never empty. Their
    /// files are loaded as one set.
    pub dirs: Vec<PathBuf>,
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

/// OpenTelemetry traces (SPEC §9). Whether they are on also depends on the
/// `OTEL_*` environment, read when the server starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// The OTLP/HTTP base URL (`/v1/traces` is appended); `None` leaves it
    /// to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// The share of root traces recorded, 0.0 to 1.0.
    pub sample_ratio: f64,
    /// Whether spans carry the actor (`enduser.id`).
    pub include_actor: bool,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            include_actor: false,
        }
    }
}
