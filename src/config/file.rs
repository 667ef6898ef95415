//! The serde types of `config.yaml`, exactly as the file is written, and
//! their defaults.
//!
//! Every type rejects unknown keys, so a misspelt key is an error rather
//! than a setting silently left at its default. Nothing here checks a
//! value: `validate` turns these types into the ones the program runs
//! with, and they exist nowhere else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::model::{AuthzSource, Enforcement, LogDecisions, LogFormat};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    /// `null` runs the decision service alone (SPEC §8).
    #[serde(default = "default_listen")]
    pub(super) listen: Option<String>,
    #[serde(default = "default_admin_listen")]
    pub(super) admin_listen: String,
    #[serde(default)]
    pub(super) threads: Option<usize>,
    #[serde(default)]
    pub(super) project_id: Option<String>,
    #[serde(default = "default_route_prefix")]
    pub(super) route_prefix: String,
    #[serde(default)]
    pub(super) enforcement: Enforcement,
    #[serde(default)]
    pub(super) upstream: FileUpstream,
    pub(super) auth: FileAuth,
    #[serde(default)]
    pub(super) policies: FilePolicies,
    #[serde(default)]
    pub(super) limits: FileLimits,
    #[serde(default)]
    pub(super) shutdown: FileShutdown,
    #[serde(default)]
    pub(super) cors: Option<FileCors>,
    #[serde(default)]
    pub(super) log: FileLog,
    #[serde(default)]
    pub(super) upstreams: BTreeMap<String, FileNamedUpstream>,
    #[serde(default)]
    pub(super) rate_limits: FileRateLimits,
    #[serde(default)]
    pub(super) tls: Option<FileTls>,
    #[serde(default)]
    pub(super) authz_listen: Option<String>,
    #[serde(default)]
    pub(super) authz: FileAuthz,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
    /// Project sync (SPEC §10); read only by `sync` and `check`.
    #[serde(default)]
    pub(super) oystehr: Option<super::oystehr::FileOystehr>,
    #[serde(default)]
    pub(super) telemetry: FileTelemetry,
}

/// OpenTelemetry traces (SPEC §9).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileTelemetry {
    pub(super) otlp_endpoint: Option<String>,
    pub(super) sample_ratio: f64,
    pub(super) include_actor: bool,
}

impl Default for FileTelemetry {
    fn default() -> Self {
        FileTelemetry {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            include_actor: false,
        }
    }
}

/// The decision-only service (SPEC §8).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileAuthz {
    pub(super) source: Option<AuthzSource>,
    pub(super) path_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub(super) cert_file: PathBuf,
    pub(super) key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileNamedUpstream {
    pub(super) addresses: Vec<String>,
    #[serde(default)]
    pub(super) tls: bool,
    #[serde(default)]
    pub(super) health_check: Option<FileHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHealthCheck {
    #[serde(default = "default_health_path")]
    pub(super) path: String,
    #[serde(default = "default_health_interval")]
    pub(super) interval_seconds: u64,
}

fn default_health_path() -> String {
    "/healthz".into()
}
fn default_health_interval() -> u64 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileRateLimits {
    pub(super) per_actor_per_second: Option<u64>,
    pub(super) per_client_per_second: Option<u64>,
    pub(super) burst: Option<u64>,
    #[serde(default = "default_rate_limit_keys")]
    pub(super) max_keys: usize,
}

fn default_rate_limit_keys() -> usize {
    100_000
}

impl Default for FileRateLimits {
    fn default() -> Self {
        FileRateLimits {
            per_actor_per_second: None,
            per_client_per_second: None,
            burst: None,
            max_keys: default_rate_limit_keys(),
        }
    }
}

fn default_listen() -> Option<String> {
    Some("0.0.0.0:8080".into())
}
fn default_admin_listen() -> String {
    "0.0.0.0:9901".into()
}
fn default_route_prefix() -> String {
    "/v1".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileUpstream {
    pub(super) address: String,
    pub(super) tls: bool,
    pub(super) sni: Option<String>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) insecure_skip_verify: bool,
    pub(super) path_template: Option<String>,
    pub(super) connect_timeout_ms: u64,
    pub(super) read_timeout_ms: u64,
    pub(super) dns_refresh_seconds: u64,
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
            dns_refresh_seconds: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAuth {
    pub(super) issuers: Vec<FileIssuer>,
    #[serde(default = "default_leeway")]
    pub(super) leeway_seconds: u64,
    #[serde(default = "default_subject_claim")]
    pub(super) subject_claim: String,
    #[serde(default)]
    pub(super) roles_claim: Option<String>,
    #[serde(default = "yes")]
    pub(super) forward_authorization: bool,
    #[serde(default = "default_token_cache_entries")]
    pub(super) token_cache_entries: usize,
    #[serde(default = "default_jwks_fetch_timeout_ms")]
    pub(super) jwks_fetch_timeout_ms: u64,
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
pub(super) struct FileIssuer {
    pub(super) issuer: String,
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    #[serde(default)]
    pub(super) algorithms: Vec<String>,
    #[serde(default)]
    pub(super) jwks_url: Option<String>,
    #[serde(default)]
    pub(super) jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) public_key_pem_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) hmac_secret_env: Option<String>,
    #[serde(default = "default_jwks_refresh")]
    pub(super) jwks_refresh_seconds: u64,
    #[serde(default = "default_jwks_min_refetch")]
    pub(super) jwks_min_refetch_seconds: u64,
    #[serde(default)]
    pub(super) subject_claim: Option<String>,
    #[serde(default)]
    pub(super) roles_claim: Option<String>,
}

fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_min_refetch() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FilePolicies {
    pub(super) dir: FileDirs,
    pub(super) watch: bool,
}

/// `policies.dir`: one directory, or a list merged into one set.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum FileDirs {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl Default for FilePolicies {
    fn default() -> Self {
        FilePolicies {
            dir: FileDirs::One(PathBuf::from("policies")),
            watch: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileLimits {
    pub(super) max_body_bytes: u64,
    pub(super) downstream_idle_timeout_seconds: u64,
    pub(super) downstream_read_timeout_seconds: u64,
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
pub(super) struct FileShutdown {
    pub(super) grace_period_seconds: u64,
    pub(super) drain_timeout_seconds: u64,
    pub(super) upgrade_sock: PathBuf,
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
pub(super) struct FileCors {
    pub(super) allowed_origins: Vec<String>,
    #[serde(default = "default_cors_max_age")]
    pub(super) max_age_seconds: u64,
    #[serde(default)]
    pub(super) allow_credentials: bool,
    #[serde(default = "default_cors_headers")]
    pub(super) allowed_headers: Vec<String>,
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
pub(super) struct FileLog {
    pub(super) decisions: LogDecisions,
    pub(super) format: LogFormat,
}
