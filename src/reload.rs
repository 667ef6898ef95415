//! Hot reload of the policy directory, of key files and of the TLS
//! certificate.
//!
//! A watcher thread waits for file-system events under the policy
//! directory (and the directories of `jwks_file`/`public_key_pem_file` key
//! sources and of `tls.cert_file`/`tls.key_file`), debounces them, then
//! re-reads what they touched. The set is swapped only when the content
//! changed and the whole new set is valid; an invalid set is refused,
//! logged with file and line, counted, and the last good set keeps serving
//! (a certificate pair likewise, see [`crate::tls`]). A periodic check
//! (metadata first, see [`crate::store`]) catches what the watcher missed (dropped events, file systems
//! without inotify, a policy directory that is itself a symlink and was
//! re-pointed). SIGHUP runs the same check at once.
//!
//! Kubernetes ConfigMap volumes update by writing a new timestamped
//! directory and renaming the `..data` symlink; watching the directory (not
//! the files) and re-reading through the symlinks handles that.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};

use crate::config::KeySource;
use crate::state::State;
use crate::store::Reload;
use crate::tls;

/// Quiet time after the last event before a reload runs.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A burst of events never delays a reload longer than this.
const DEBOUNCE_MAX: Duration = Duration::from_millis(500);
/// How often the content is checked even without events.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Serialises nothing itself: the [`crate::store::Store`] owns loading and
/// its serialisation; this drives it from events, the poll and SIGHUP.
pub struct Reloader {
    state: Arc<State>,
}

impl Reloader {
    /// For a state whose start-up set (generation 1) was just loaded.
    pub fn new(state: Arc<State>) -> Arc<Self> {
        Arc::new(Reloader { state })
    }

    /// Re-reads the policy directory; reloads when the content changed.
    pub fn reload_policies(&self, why: &str) -> Reload {
        let state = &self.state;
        state.policies.reload(&state.config, &state.metrics, why)
    }

    /// Starts the watcher thread. It runs for the life of the process.
    pub fn spawn_watcher(self: &Arc<Self>) -> std::io::Result<()> {
        let (tx, rx) = channel();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res {
                let _ = tx.send(event);
            }
        })
        .map_err(std::io::Error::other)?;
        let policies = self.state.config.policies.dir.clone();
        for dir in &self.state.config.policies.dirs {
            if let Err(e) = watcher.watch(dir, RecursiveMode::Recursive) {
                tracing::warn!(
                    "cannot watch {}: {e}; relying on the periodic check",
                    dir.display()
                );
            }
            // The parent too, so that a policy directory that is a symlink
            // being re-pointed is noticed at once.
            if let Some(parent) = dir.parent() {
                let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
            }
        }
        let key_dirs = key_file_dirs(&self.state);
        let cert_dirs = self
            .state
            .tls
            .as_ref()
            .map(|c| c.dirs())
            .unwrap_or_default();
        for dir in key_dirs.iter().chain(&cert_dirs) {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!("cannot watch {}: {e}", dir.display());
            }
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name("zambda-guard-reload".into())
            .spawn(move || {
                // Dropping the watcher would stop the events: it lives here.
                let _watcher = watcher;
                me.watch_loop(&rx, &policies, &key_dirs, &cert_dirs);
            })?;
        Ok(())
    }

    fn watch_loop(
        &self,
        rx: &Receiver<notify::Event>,
        policies: &Path,
        key_dirs: &[PathBuf],
        cert_dirs: &[PathBuf],
    ) {
        let mut next_poll = Instant::now() + POLL_INTERVAL;
        loop {
            let wait = next_poll.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(event) => {
                    if !relevant(&event) {
                        continue;
                    }
                    let mut touched = Touched::default();
                    touched.note(&event, policies, key_dirs, cert_dirs);
                    // debounce: wait for DEBOUNCE without a relevant
                    // event, but never longer than DEBOUNCE_MAX in all
                    let started = Instant::now();
                    let mut last = started;
                    loop {
                        let quiet = DEBOUNCE.saturating_sub(last.elapsed());
                        if quiet.is_zero() || started.elapsed() >= DEBOUNCE_MAX {
                            break;
                        }
                        match rx.recv_timeout(quiet) {
                            Ok(e) if relevant(&e) => {
                                touched.note(&e, policies, key_dirs, cert_dirs);
                                last = Instant::now();
                            }
                            Ok(_) => {}
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    if touched.keys {
                        self.reload_keys();
                    }
                    if touched.certs {
                        self.reload_certificate("watch");
                    }
                    if touched.policies {
                        self.reload_policies("watch");
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    // Reads the files only when their metadata moved (or
                    // at the periodic full read).
                    let state = &self.state;
                    state.policies.poll(&state.config, &state.metrics);
                    if !key_dirs.is_empty() {
                        self.reload_keys();
                    }
                    self.reload_certificate("poll");
                    next_poll = Instant::now() + POLL_INTERVAL;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn reload_keys(&self) {
        if let Err(e) = self.state.auth.reload_files() {
            tracing::error!("key file reload refused, keeping the current keys: {e}");
        }
    }

    /// Re-reads the TLS certificate and key (when `tls` is configured); a
    /// changed, valid pair is served from the next handshake on, a bad one
    /// is refused and the pair in service stays.
    pub fn reload_certificate(&self, why: &str) {
        let Some(certs) = &self.state.tls else {
            return;
        };
        let metrics = &self.state.metrics;
        match certs.reload() {
            tls::Reload::Unchanged => {}
            tls::Reload::Reloaded(pair) => {
                metrics.tls_reloads.with_label_values(&["ok"]).inc();
                metrics.tls_certificate_not_after.set(pair.not_after as f64);
                tracing::info!(trigger = why, "TLS certificate reloaded: {pair}");
            }
            tls::Reload::Refused(e) => {
                metrics.tls_reloads.with_label_values(&["error"]).inc();
                tracing::error!(
                    trigger = why,
                    "TLS CERTIFICATE RELOAD REFUSED, still serving the previous certificate ({}): {e}",
                    certs.current()
                );
            }
        }
    }
}

/// Which kinds of watched paths a burst of events touched.
#[derive(Default)]
struct Touched {
    policies: bool,
    keys: bool,
    certs: bool,
}

impl Touched {
    fn note(
        &mut self,
        event: &notify::Event,
        policies: &Path,
        key_dirs: &[PathBuf],
        cert_dirs: &[PathBuf],
    ) {
        for path in &event.paths {
            let in_dir = |dirs: &[PathBuf]| dirs.iter().any(|d| path.parent() == Some(d.as_path()));
            let policy = path.starts_with(policies);
            let key = !policy && in_dir(key_dirs);
            let cert = in_dir(cert_dirs);
            self.keys |= key;
            self.certs |= cert;
            // The policy directory, a ConfigMap's `..data` swap, or the
            // parent where the directory's own symlink may be re-pointed.
            self.policies |= policy || (!key && !cert);
        }
        if event.paths.is_empty() {
            self.policies = true;
        }
    }
}

/// Opening or reading a file is not a change (and the reload itself opens
/// every file: counting those would loop).
fn relevant(event: &notify::Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
}

fn key_file_dirs(state: &State) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = state
        .config
        .auth
        .issuers
        .iter()
        .flat_map(|i| i.keys.iter())
        .filter_map(|k| match k {
            KeySource::JwksFile(p) | KeySource::PublicKeyPemFile(p) => {
                p.parent().map(Path::to_path_buf)
            }
            _ => None,
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}
