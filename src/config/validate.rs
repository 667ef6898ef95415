//! The translation of the file types into the validated ones: every value
//! checked, every problem reported (not just the first), each naming the
//! file and the key it is about.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{
    File, FileAuth, FileAuthz, FileCors, FileDirs, FileIssuer, FileNamedUpstream, FileTelemetry,
    FileTls, FileUpstream,
};
use super::model::*;
use super::Error;

/// Validates a parsed file; relative paths are taken relative to `base`,
/// and `name` heads every problem.
pub(super) fn validate(file: File, name: &str, base: &Path) -> Result<Config, Error> {
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

pub(super) struct Validator<'a> {
    name: &'a str,
    base: &'a Path,
    problems: Vec<String>,
}

impl Validator<'_> {
    pub(super) fn problem(&mut self, key: &str, message: impl fmt::Display) {
        self.problems
            .push(format!("{}: {key}: {message}", self.name));
    }

    pub(super) fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn socket(&mut self, key: &str, text: &str) -> SocketAddr {
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
        let listen = f.listen.as_ref().map(|l| self.socket("listen", l));
        let authz = self.authz(f.authz_listen.as_deref(), f.authz);
        if listen.is_none() && authz.is_none() {
            self.problem(
                "listen",
                "is null and `authz_listen` is not set: nothing would be served",
            );
        }
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
        let dirs: Vec<PathBuf> = match &f.policies.dir {
            FileDirs::One(dir) => vec![self.path(dir)],
            FileDirs::Many(dirs) => dirs.iter().map(|d| self.path(d)).collect(),
        };
        if dirs.is_empty() {
            self.problem("policies.dir", "list at least one directory");
        }
        let policies = Policies {
            dir: dirs
                .first()
                .cloned()
                .unwrap_or_else(|| self.path(Path::new("policies"))),
            dirs,
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
        if f.rate_limits.burst == Some(0) {
            self.problem(
                "rate_limits.burst",
                "must be at least 1 (or null for the per-second rate)",
            );
        }
        if f.rate_limits.max_keys == 0 {
            self.problem("rate_limits.max_keys", "must be at least 1");
        }
        let tls = f.tls.and_then(|t| self.tls(t));
        let telemetry = self.telemetry(f.telemetry);
        let mut trusted = Vec::new();
        for (i, text) in f.trusted_proxies.iter().enumerate() {
            match crate::client::Cidr::parse(text.trim()) {
                Ok(block) => trusted.push(block),
                Err(why) => self.problem(&format!("trusted_proxies[{i}]"), why),
            }
        }
        let oystehr = f
            .oystehr
            .map(|o| self.oystehr(o, project_id.as_deref(), &policies, &auth, &upstreams));
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
                burst: f.rate_limits.burst,
                max_keys: f.rate_limits.max_keys,
            },
            tls,
            authz,
            trusted_proxies: crate::client::Trusted::new(trusted),
            oystehr,
            telemetry,
        }
    }

    /// `telemetry`: an `http(s)` base URL without query, a ratio in 0..=1.
    fn telemetry(&mut self, f: FileTelemetry) -> Telemetry {
        if !(0.0..=1.0).contains(&f.sample_ratio) {
            self.problem("telemetry.sample_ratio", "must be between 0.0 and 1.0");
        }
        let otlp_endpoint = f.otlp_endpoint.and_then(|text| {
            match url::Url::parse(&text) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.has_host()
                        && u.query().is_none()
                        && u.fragment().is_none() =>
                {
                    Some(text.trim_end_matches('/').to_string())
                }
                _ => {
                    self.problem(
                        "telemetry.otlp_endpoint",
                        format!("{text:?} is not an http or https base URL (for example http://otel-collector:4318)"),
                    );
                    None
                }
            }
        });
        Telemetry {
            otlp_endpoint,
            sample_ratio: f.sample_ratio,
            include_actor: f.include_actor,
        }
    }

    /// `authz_listen` and `authz`: the source is required with a listener
    /// and meaningless without one.
    fn authz(&mut self, listen: Option<&str>, f: FileAuthz) -> Option<Authz> {
        let Some(listen) = listen else {
            if f.source.is_some() || f.path_prefix.is_some() {
                self.problem("authz", "is set but `authz_listen` is not");
            }
            return None;
        };
        let listen = self.socket("authz_listen", listen);
        let Some(source) = f.source else {
            self.problem(
                "authz.source",
                "is required with `authz_listen`: request, forwarded, original_uri or original_url",
            );
            return None;
        };
        let path_prefix = match f.path_prefix {
            Some(_) if source != AuthzSource::Request => {
                self.problem("authz.path_prefix", "applies only to `source: request`");
                None
            }
            Some(p) if !p.starts_with('/') || p.len() < 2 => {
                self.problem(
                    "authz.path_prefix",
                    format!("{p:?} must start with `/` and name a path"),
                );
                None
            }
            Some(p) => Some(p.trim_end_matches('/').to_string()),
            None => None,
        };
        Some(Authz {
            listen,
            source,
            path_prefix,
        })
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
        // Parsed, not resolved, like `upstream.address` (SPEC §7).
        let addresses = u
            .addresses
            .iter()
            .filter_map(|a| match crate::dns::Address::parse(a) {
                Ok(address) => Some(std::sync::Arc::new(address)),
                Err(why) => {
                    self.problem(&format!("{at}.addresses"), why);
                    None
                }
            })
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
        // Parsed, not resolved: `check` does no lookups; `run` resolves a
        // name at start (SPEC §7).
        let address = match crate::dns::Address::parse(&u.address) {
            Ok(address) => address,
            Err(why) => {
                self.problem("upstream.address", why);
                crate::dns::Address::fixed(SocketAddr::from(([127, 0, 0, 1], 0)))
            }
        };
        if u.dns_refresh_seconds == 0 {
            self.problem("upstream.dns_refresh_seconds", "must be at least 1");
        }
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
            address: std::sync::Arc::new(address),
            address_text: u.address,
            tls: u.tls,
            sni,
            ca,
            insecure_skip_verify: u.insecure_skip_verify,
            path_template,
            connect_timeout: Duration::from_millis(u.connect_timeout_ms),
            read_timeout: Duration::from_millis(u.read_timeout_ms),
            dns_refresh: Duration::from_secs(u.dns_refresh_seconds.max(1)),
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
            match validate_jwks_url(&url) {
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
pub(super) fn validate_jwks_url(url: &str) -> Result<(), String> {
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
