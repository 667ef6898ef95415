//! `zambda-guard sync` (SPEC §10): keeps one policy file in step with an
//! Oystehr project.
//!
//! A round reads the whole project ([`api`]), writes it as Oystehr objects
//! ([`render`]), loads every policy directory with that text in place of
//! the file through the store's own loader, and only then writes the file,
//! atomically, if its bytes changed. Any failure on the way — a read, an
//! empty project, a set the loader refuses — writes nothing: the last file
//! stays, so the proxy keeps enforcing the last good set. The loop runs a
//! round every `interval_seconds` and serves `/healthz` and `/metrics`
//! ([`admin`]) on `oystehr.admin_listen`.
//!
//! It is its own process, so the proxy never holds Oystehr credentials.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::store;

pub mod admin;
pub mod api;
pub mod render;

pub use admin::SyncMetrics;
use api::{Api, Credentials, Secret};
use render::Counts;

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file was written with new content.
    Written(Counts),
    /// The project gives the bytes the file already holds.
    Unchanged(Counts),
}

/// Why a round wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("reading the project failed: {0}")]
    Fetch(#[from] api::Error),
    #[error("the project has no roles and no Zambdas: refusing to replace the policy file with an empty one")]
    Empty,
    #[error("the synced file would make the policy set invalid:\n{0}")]
    Invalid(String),
    #[error("cannot write {path}: {why}")]
    Write { path: String, why: String },
}

/// Why `sync` cannot start (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("{0}: the config has no `oystehr` section: nothing to sync")]
    NoSection(String),
    #[error("environment variable {0} (the M2M client's {1}) is not set or is empty")]
    Missing(String, &'static str),
    #[error("{0}")]
    Client(String),
}

/// The synchroniser of one config: the API client and the metrics.
pub struct Sync {
    config: Config,
    settings: crate::config::Oystehr,
    api: Arc<Api>,
    pub metrics: Arc<SyncMetrics>,
}

impl Sync {
    /// Reads the credentials from the environment variables the config
    /// names.
    pub fn new(config: Config) -> Result<Sync, Invalid> {
        let settings = config
            .oystehr
            .clone()
            .ok_or_else(|| Invalid::NoSection(config.source.display().to_string()))?;
        let read = |name: &str, what: &'static str| match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err(Invalid::Missing(name.to_string(), what)),
        };
        let credentials = Credentials {
            client_id: read(&settings.client_id_env, "client id")?,
            client_secret: read(&settings.client_secret_env, "client secret")?,
        };
        let api = Api::new(settings.clone(), credentials).map_err(Invalid::Client)?;
        Ok(Sync {
            config,
            settings,
            api,
            metrics: Arc::new(SyncMetrics::new()),
        })
    }

    /// One round, counted and logged.
    pub async fn round(&self) -> Result<Outcome, Failure> {
        let result = self.attempt().await;
        let path = self.settings.path();
        match &result {
            Ok(Outcome::Written(c)) => {
                self.metrics.success("written", c);
                tracing::info!(
                    file = %path.display(),
                    roles = c.roles, zambdas = c.zambdas, m2ms = c.m2ms, defaults = c.defaults,
                    "synced: policy file written"
                );
            }
            Ok(Outcome::Unchanged(c)) => {
                self.metrics.success("unchanged", c);
                tracing::info!(file = %path.display(), "synced: project unchanged, nothing written");
            }
            Err(why) => {
                self.metrics.failure();
                tracing::error!(
                    file = %path.display(),
                    "sync failed, the last policy file is kept: {why}"
                );
            }
        }
        result
    }

    async fn attempt(&self) -> Result<Outcome, Failure> {
        let settings = &self.settings;
        let snapshot = self.api.snapshot().await?;
        if snapshot.roles.is_empty() && snapshot.zambdas.is_empty() {
            return Err(Failure::Empty);
        }
        let (text, counts) = render::render(&snapshot, settings).map_err(|why| Failure::Write {
            path: settings.path().display().to_string(),
            why,
        })?;
        let path = settings.path();
        let write_error = |e: std::io::Error| Failure::Write {
            path: path.display().to_string(),
            why: e.to_string(),
        };
        std::fs::create_dir_all(&settings.dir).map_err(write_error)?;
        let config = self.config.clone();
        let candidate = path.clone();
        let checked_text = text.clone();
        let checked = tokio::task::spawn_blocking(move || {
            store::load_with(&config, &candidate, checked_text).map(|_| ())
        })
        .await
        .map_err(|e| Failure::Invalid(e.to_string()))?;
        checked.map_err(|e| Failure::Invalid(e.to_string()))?;
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            return Ok(Outcome::Unchanged(counts));
        }
        write_atomically(&path, text.as_bytes()).map_err(write_error)?;
        Ok(Outcome::Written(counts))
    }

    /// Rounds every `interval_seconds`, forever, with the admin listener.
    pub async fn run_loop(self) -> std::io::Result<()> {
        let settings = self.settings.clone();
        let listener = tokio::net::TcpListener::bind(settings.admin_listen).await?;
        tracing::info!(
            admin = %settings.admin_listen,
            file = %settings.path().display(),
            interval_seconds = settings.interval.as_secs(),
            "zambda-guard {} sync starting",
            crate::VERSION
        );
        tokio::spawn(admin::serve(listener, self.metrics.clone()));
        let mut ticks = tokio::time::interval(settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let _ = self.round().await;
        }
    }
}

/// Writes `bytes` to a hidden temporary file beside `path` (the loader
/// skips names starting with `.`), flushes it, and renames it over `path`:
/// a reader sees the old file or the new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        // The rename itself survives a crash once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests;
