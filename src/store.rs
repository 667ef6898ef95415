//! The policy store: the one owner of loading policies, for every user.
//!
//! [`load`] is what every command means by "the policy set of this
//! config": the directory read and compiled by [`policy`], then the checks
//! that need the config (every named upstream configured). `run`, `check`,
//! `explain`, `test` and `diff` all load through it, so none of them
//! accepts a set that `run` refuses.
//!
//! [`Store`] holds the live set of a running proxy: the first load, each
//! reload, the metrics of both, and the atomic swap. A load reads the
//! directory once; the fingerprint of what it read is what the next reload
//! compares with, so a change that lands while the first load runs is seen
//! by the next check. Loads are serialised; a panic in one never makes a
//! later one skip its work.
//!
//! `policies.dir` may list several directories: each is read by the
//! policy module's own directory reader, and what they hold is merged into
//! one set, as if it were one directory (a name defined in two of them is
//! the same error as in two files of one).
//!
//! The periodic check ([`Store::poll`]) is cheap when nothing changed: it
//! compares a [`stamp`] of the directories' metadata (every entry's name,
//! size, modification time and inode, and every symlink's target, which is
//! how a ConfigMap swap shows) and reads the files only when the stamp
//! moved, or when the last full read is [`FULL_READ_INTERVAL`] old. The
//! content fingerprint stays the final word on whether anything changed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};

use crate::clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::{self, LoadError, LoadErrors, Loaded, Sources};

/// However unchanged the metadata looks, the files are read in full at
/// least this often (a same-size rewrite that kept its modification time).
pub const FULL_READ_INTERVAL: Duration = Duration::from_secs(300);

/// Loads the config's policy directories as `run` would, without serving
/// them.
pub fn load(config: &Config) -> Result<Loaded, LoadErrors> {
    compile(read_dirs(&config.policies.dirs), Some(config))
}

/// Loads the config's policy directories as `run` would, with `text` in
/// place of the file at `path` (added when no such file exists yet):
/// whether a file about to be written leaves a valid set, checked before
/// it is written.
pub fn load_with(config: &Config, path: &Path, text: String) -> Result<Loaded, LoadErrors> {
    let mut sources = read_dirs(&config.policies.dirs);
    let same = |p: &Path| {
        p.file_name() == path.file_name()
            && match (p.parent(), path.parent()) {
                (Some(a), Some(b)) => {
                    a == b
                        || a.canonicalize()
                            .ok()
                            .zip(b.canonicalize().ok())
                            .is_some_and(|(a, b)| a == b)
                }
                _ => false,
            }
    };
    sources.texts.retain(|(p, _)| !same(p));
    sources.texts.push((path.to_path_buf(), text));
    compile(sources, Some(config))
}

/// Reads every directory and merges what they hold, in the order given. A
/// file reached through two directories (one inside the other, as with
/// `[policies, policies/oystehr]`) is read once, where it is first met.
fn read_dirs(dirs: &[PathBuf]) -> Sources {
    let mut all = Sources {
        texts: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let mut seen = HashSet::new();
    for dir in dirs {
        let one = policy::read_sources(dir);
        all.texts.extend(one.texts.into_iter().filter(|(path, _)| {
            // A path that cannot be resolved was still read: keep it.
            path.canonicalize().map_or(true, |real| seen.insert(real))
        }));
        all.errors.extend(one.errors);
        all.warnings.extend(one.warnings);
    }
    all
}

/// Loads a policy directory; with a config, also applies the checks that
/// need it, as `run` would.
pub fn load_dir(dir: &Path, config: Option<&Config>) -> Result<Loaded, LoadErrors> {
    compile(policy::read_sources(dir), config)
}

fn compile(sources: Sources, config: Option<&Config>) -> Result<Loaded, LoadErrors> {
    let loaded = policy::compile_sources(sources)?;
    if let Some(config) = config {
        cross_check(&loaded.set, config)?;
    }
    Ok(loaded)
}

/// What a valid policy set asks of the config: every `upstream` named by a
/// catalog entry must be configured under `upstreams` (refused rather than
/// silently routed to the default upstream); every issuer named by
/// `defaults` must be configured; a `path_template` using `{id}` needs every
/// Zambda to have an id.
fn cross_check(set: &policy::Set, config: &Config) -> Result<(), LoadErrors> {
    let mut errors: Vec<LoadError> = set
        .zambdas()
        .filter_map(|z| {
            let upstream = z.upstream.as_ref()?;
            if config.upstreams.contains_key(upstream) {
                return None;
            }
            Some(LoadError {
                file: z.file.to_path_buf(),
                entry: Some(format!("zambda {}", z.name)),
                line: z.line,
                message: format!(
                    "names upstream {upstream:?}, which is not configured under `upstreams` in the config"
                ),
            })
        })
        .collect();
    for defaults in set.defaults() {
        if !config
            .auth
            .issuers
            .iter()
            .any(|i| i.issuer == defaults.issuer)
        {
            errors.push(LoadError {
                file: defaults.file.to_path_buf(),
                entry: Some(format!("defaults for {}", defaults.issuer)),
                line: defaults.line,
                message: format!(
                    "issuer {:?} is not configured under `auth.issuers`",
                    defaults.issuer
                ),
            });
        }
    }
    let uses_id = config
        .upstream
        .path_template
        .as_ref()
        .is_some_and(|t| t.uses_id());
    if uses_id {
        for z in set.zambdas().filter(|z| !z.has_id()) {
            errors.push(LoadError {
                file: z.file.to_path_buf(),
                entry: Some(format!("zambda {}", z.name)),
                line: z.line,
                message: "has no id, but `upstream.path_template` uses {id}".to_string(),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LoadErrors(errors))
    }
}

/// What a reload found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Same content as the last load: nothing done, nothing counted.
    Unchanged,
    /// A new set is live.
    Installed,
    /// The new content is invalid; the last good set keeps serving.
    Refused,
}

/// The live policy set of a running proxy.
pub struct Store {
    /// `None` until the first set has loaded: requests then get 503.
    current: ArcSwapOption<policy::Set>,
    /// 1 for the start-up load, +1 for each successful reload.
    generation: AtomicU64,
    /// The fingerprint of the content last loaded or refused; held while a
    /// load runs, so loads never overlap.
    last: Mutex<Option<[u8; 32]>>,
    /// The metadata stamp taken before the last full read, and when that
    /// read was.
    polled: Mutex<Option<([u8; 32], Instant)>>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Self {
        Store {
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            last: Mutex::new(None),
            polled: Mutex::new(None),
        }
    }

    /// The live set, for one request to decide against: one lock-free load.
    pub fn current(&self) -> Option<Arc<policy::Set>> {
        self.current.load_full()
    }

    /// True once a set is live.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// How many sets have been made live (0 before the first).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The start-up load (generation 1). Returns the load's warnings.
    pub fn start(
        &self,
        config: &Config,
        metrics: &Metrics,
    ) -> Result<Vec<policy::Warning>, LoadErrors> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        self.note_full_read(&config.policies.dirs, Instant::now());
        let sources = read_dirs(&config.policies.dirs);
        let print = fingerprint(&sources);
        let loaded = compile(sources, Some(config))?;
        *last = Some(print);
        self.install(loaded.set, metrics);
        Ok(loaded.warnings)
    }

    /// Re-reads the policy directory and swaps a changed, valid set in.
    /// An invalid one is refused, logged and counted; the last good set
    /// keeps serving.
    pub fn reload(&self, config: &Config, metrics: &Metrics, why: &str) -> Reload {
        // A poisoned lock only means an earlier load panicked; its record
        // of the content is still the last one attempted.
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        self.note_full_read(&config.policies.dirs, Instant::now());
        let sources = read_dirs(&config.policies.dirs);
        let print = fingerprint(&sources);
        if *last == Some(print) {
            return Reload::Unchanged;
        }
        *last = Some(print);
        match compile(sources, Some(config)) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                // Counted first: whoever sees the new set's decisions also
                // sees its reload counted.
                metrics.policy_reloads.with_label_values(&["ok"]).inc();
                self.install(loaded.set, metrics);
                tracing::info!(
                    generation = self.generation(),
                    trigger = why,
                    "policies reloaded"
                );
                Reload::Installed
            }
            Err(errors) => {
                metrics.policy_reloads.with_label_values(&["error"]).inc();
                metrics.policy_last_reload_success.set(0);
                tracing::error!(
                    trigger = why,
                    "policy reload refused, the last good set keeps serving:\n{errors}"
                );
                Reload::Refused
            }
        }
    }

    /// The periodic check: reloads as [`Store::reload`] does when the
    /// directories' metadata changed since the last full read, or when that
    /// read is [`FULL_READ_INTERVAL`] old; `None` when nothing was read.
    pub fn poll(&self, config: &Config, metrics: &Metrics) -> Option<Reload> {
        self.poll_at(config, metrics, Instant::now())
    }

    fn poll_at(&self, config: &Config, metrics: &Metrics, now: Instant) -> Option<Reload> {
        let current = stamp(&config.policies.dirs);
        let polled = *self.polled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, read_at)) = polled {
            if seen == current && now.saturating_duration_since(read_at) < FULL_READ_INTERVAL {
                return None;
            }
        }
        let why = if polled.is_some_and(|(seen, _)| seen == current) {
            "poll (periodic full read)"
        } else {
            "poll"
        };
        // The read records its own stamp, taken just before it: a change
        // made while it runs moves the stamp again, for the next poll.
        Some(self.reload(config, metrics, why))
    }

    /// Records a full read starting now, with the stamp taken before it.
    fn note_full_read(&self, dirs: &[PathBuf], now: Instant) {
        let stamp = stamp(dirs);
        *self.polled.lock().unwrap_or_else(PoisonError::into_inner) = Some((stamp, now));
    }

    /// Makes `set` live, atomically, after its metrics: whoever sees the set
    /// serving also sees it counted. [`Store::start`] and
    /// [`Store::reload`] call it; tools and tests may install a set they
    /// built themselves.
    pub fn install(&self, set: policy::Set, m: &Metrics) {
        let rules = set.stats().rules();
        m.policy_rules.set(i64::try_from(rules).unwrap_or(i64::MAX));
        m.policy_last_reload_success.set(1);
        m.policy_last_reload_timestamp.set(clock::unix_seconds());
        let generation = self.generation.load(Ordering::Acquire) + 1;
        m.policy_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.current.store(Some(Arc::new(set)));
        self.generation.store(generation, Ordering::Release);
    }
}

/// A digest of every file the loader would read, names and contents, and of
/// what it could not read.
fn fingerprint(sources: &Sources) -> [u8; 32] {
    let mut h = Sha256::new();
    for (path, text) in &sources.texts {
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update((text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    for e in &sources.errors {
        h.update(e.to_string().as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// A digest of the directories' metadata: for every entry under them
/// (following symlinks, as the loader does), its path, type, size,
/// modification time and inode, and for a symlink its target. It changes
/// whenever a file is written, replaced, renamed or re-pointed; it is read
/// with a few system calls per entry and never opens a file.
fn stamp(dirs: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut seen = std::collections::HashSet::new();
    for dir in dirs {
        stamp_entry(&mut h, dir, 0, &mut seen);
    }
    h.finalize().into()
}

/// How deep symlinked directories are followed for the stamp (the loader
/// refuses loops; this only has to end).
const STAMP_DEPTH: usize = 16;

fn stamp_entry(
    h: &mut Sha256,
    path: &Path,
    depth: usize,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) {
    use std::os::unix::fs::MetadataExt;
    h.update(path.as_os_str().as_encoded_bytes());
    h.update([0]);
    if let Ok(target) = std::fs::read_link(path) {
        h.update(b"link:");
        h.update(target.as_os_str().as_encoded_bytes());
        h.update([0]);
    }
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            h.update(format!("error:{:?}", e.kind()).as_bytes());
            return;
        }
    };
    for n in [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        u64::from(meta.is_dir()),
    ] {
        h.update(n.to_le_bytes());
    }
    if !meta.is_dir() || depth >= STAMP_DEPTH || !seen.insert((meta.dev(), meta.ino())) {
        return;
    }
    let mut names: Vec<PathBuf> = match std::fs::read_dir(path) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            h.update(format!("error:{:?}", e.kind()).as_bytes());
            return;
        }
    };
    names.sort();
    for name in names {
        stamp_entry(h, &name, depth + 1, seen);
    }
    seen.remove(&(meta.dev(), meta.ino()));
}

#[cfg(test)]
mod tests;
