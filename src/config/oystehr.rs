//! The `oystehr` section (SPEC §10): where `zambda-guard sync` reads a
//! project and where it writes the policy file, as written in the file and
//! as validated.
//!
//! Only names of environment variables are configured, never credentials:
//! the proxy reads the same config file and must hold no Oystehr secret.
//! `sync` reads the variables when it starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::model::{Auth, NamedUpstream, Policies};
use super::validate::{validate_jwks_url, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileOystehr {
    project_api_url: String,
    project_id: Option<String>,
    token_url: String,
    audience: String,
    client_id_env: String,
    client_secret_env: String,
    issuer: Option<String>,
    dir: PathBuf,
    file: String,
    interval_seconds: u64,
    upstreams: BTreeMap<String, String>,
    admin_listen: String,
}

impl Default for FileOystehr {
    fn default() -> Self {
        FileOystehr {
            project_api_url: "https://project-api.zapehr.com/v1".into(),
            project_id: None,
            token_url: "https://auth.zapehr.com/oauth/token".into(),
            audience: "https://api.zapehr.com".into(),
            client_id_env: "OYSTEHR_CLIENT_ID".into(),
            client_secret_env: "OYSTEHR_CLIENT_SECRET".into(),
            issuer: None,
            dir: PathBuf::from("policies/oystehr"),
            file: "oystehr.json".into(),
            interval_seconds: 60,
            upstreams: BTreeMap::new(),
            admin_listen: "127.0.0.1:9902".into(),
        }
    }
}

/// The validated `oystehr` section.
#[derive(Debug, Clone)]
pub struct Oystehr {
    /// Never ends with `/`.
    pub project_api_url: String,
    /// Lower-cased; this section's, else the top-level `project_id`.
    pub project_id: String,
    pub token_url: String,
    pub audience: String,
    pub client_id_env: String,
    pub client_secret_env: String,
    /// A configured issuer: written on every M2M client and on the
    /// `defaults` entry.
    pub issuer: String,
    /// Absolute; one of `policies.dirs`.
    pub dir: PathBuf,
    /// A plain `*.json` name inside `dir`.
    pub file: String,
    pub interval: Duration,
    /// Zambda name -> a configured named upstream.
    pub upstreams: BTreeMap<String, String>,
    pub admin_listen: SocketAddr,
}

impl Oystehr {
    /// The file `sync` keeps.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }
}

impl Validator<'_> {
    pub(super) fn oystehr(
        &mut self,
        f: FileOystehr,
        top_project_id: Option<&str>,
        policies: &Policies,
        auth: &Auth,
        upstreams: &BTreeMap<String, NamedUpstream>,
    ) -> Oystehr {
        for (key, url) in [
            ("oystehr.project_api_url", &f.project_api_url),
            ("oystehr.token_url", &f.token_url),
        ] {
            if let Err(why) = validate_jwks_url(url) {
                self.problem(key, why);
            } else if reqwest::Url::parse(url)
                .is_ok_and(|u| u.password().is_some() || !u.username().is_empty())
            {
                self.problem(
                    key,
                    "carries credentials: name them with client_id_env and client_secret_env",
                );
            }
        }
        let project_id = match f.project_id.as_deref().or(top_project_id) {
            Some(id) if !id.trim().is_empty() => id.trim().to_ascii_lowercase(),
            _ => {
                self.problem(
                    "oystehr.project_id",
                    "is null and so is the top-level `project_id`: name the project to sync",
                );
                String::new()
            }
        };
        if f.audience.trim().is_empty() {
            self.problem("oystehr.audience", "is empty");
        }
        for (key, name) in [
            ("oystehr.client_id_env", &f.client_id_env),
            ("oystehr.client_secret_env", &f.client_secret_env),
        ] {
            if !is_env_name(name) {
                self.problem(
                    key,
                    format!(
                        "{name:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
                    ),
                );
            }
        }
        if f.client_id_env == f.client_secret_env {
            self.problem(
                "oystehr.client_secret_env",
                "names the same variable as client_id_env",
            );
        }
        let issuer = match f.issuer {
            Some(issuer) if auth.issuers.iter().any(|i| i.issuer == issuer) => issuer,
            Some(issuer) => {
                self.problem(
                    "oystehr.issuer",
                    format!("{issuer:?} is not configured under `auth.issuers`"),
                );
                issuer
            }
            None => {
                self.problem(
                    "oystehr.issuer",
                    "is required: the issuer of the project's tokens, written on its M2M clients and default role",
                );
                String::new()
            }
        };
        let dir = self.path(&f.dir);
        if !policies.dirs.iter().any(|d| within(&dir, d)) {
            self.problem(
                "oystehr.dir",
                format!(
                    "{} is not one of `policies.dir` (nor inside one): the proxy would never read the synced file",
                    dir.display()
                ),
            );
        }
        if let Err(why) = file_name_rule(&f.file) {
            self.problem("oystehr.file", why);
        }
        if f.interval_seconds == 0 {
            self.problem("oystehr.interval_seconds", "must be at least 1");
        }
        for (zambda, upstream) in &f.upstreams {
            if zambda.is_empty()
                || !zambda
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                self.problem(
                    &format!("oystehr.upstreams.{zambda}"),
                    "is not a Zambda name ([A-Za-z0-9_-]+)",
                );
            }
            if !upstreams.contains_key(upstream) {
                self.problem(
                    &format!("oystehr.upstreams.{zambda}"),
                    format!(
                        "names upstream {upstream:?}, which is not configured under `upstreams`"
                    ),
                );
            }
        }
        let admin_listen = self.socket("oystehr.admin_listen", &f.admin_listen);
        Oystehr {
            project_api_url: f.project_api_url.trim_end_matches('/').to_string(),
            project_id,
            token_url: f.token_url,
            audience: f.audience,
            client_id_env: f.client_id_env,
            client_secret_env: f.client_secret_env,
            issuer,
            dir,
            file: f.file,
            interval: Duration::from_secs(f.interval_seconds.max(1)),
            upstreams: f.upstreams,
            admin_listen,
        }
    }
}

/// `oystehr.file`: a plain name the loader reads as a policy file, and not
/// a policy test: no `/`, not hidden, ending `.json`, not `*.test.json`.
fn file_name_rule(name: &str) -> Result<(), String> {
    if name.contains('/') || name.contains('\\') {
        Err(format!("{name:?} must be a plain file name, without '/'"))
    } else if name.starts_with('.') {
        Err(format!(
            "{name:?} starts with '.': the loader skips hidden files"
        ))
    } else if !name.ends_with(".json") || name.len() <= ".json".len() {
        Err(format!("{name:?} must end with .json"))
    } else if name.ends_with(".test.json") {
        Err(format!(
            "{name:?} ends with .test.json: policy tests are not loaded as policies"
        ))
    } else {
        Ok(())
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether the absolute directory `dir` is `policies` or inside it (the
/// loader reads policy directories recursively), compared after dropping
/// `.` parts; a `..` part never counts as inside.
fn within(dir: &Path, policies: &Path) -> bool {
    fn clean(p: &Path) -> Vec<std::path::Component<'_>> {
        p.components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    }
    let (dir, policies) = (clean(dir), clean(policies));
    dir.starts_with(&policies)
        && !dir[policies.len()..]
            .iter()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}

#[cfg(test)]
mod tests {
    use super::file_name_rule;

    #[test]
    fn file_names() {
        for good in ["oystehr.json", "project-a.json"] {
            assert!(file_name_rule(good).is_ok(), "{good}");
        }
        for bad in [
            "a/b.json",
            ".oystehr.json",
            "oystehr.yaml",
            ".json",
            "oystehr.test.json",
            "../x.json",
        ] {
            assert!(file_name_rule(bad).is_err(), "{bad}");
        }
    }
}
