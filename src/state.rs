//! What the running proxy shares between requests and background tasks.
//!
//! The live policy set sits behind an [`ArcSwapOption`]: a request loads it
//! once (one lock-free load) and decides against that one consistent set; a
//! reload builds and validates a whole new set and swaps it in atomically,
//! or keeps the old one when the new one is invalid.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::authn::Authenticator;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy;

pub struct State {
    pub config: Config,
    /// `None` until the first set has loaded: requests then get 503.
    pub policies: ArcSwapOption<policy::Set>,
    pub auth: Arc<Authenticator>,
    pub metrics: Metrics,
    /// The certificate served on `listen`, when `tls` is configured.
    pub tls: Option<Arc<crate::tls::Certificates>>,
    /// 1 for the start-up load, +1 for each successful reload.
    generation: AtomicU64,
    /// Connections with a request being read or processed now (for
    /// draining on shutdown).
    in_flight: AtomicUsize,
}

/// Counts one connection's request as in flight for as long as it lives.
pub struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why the proxy is not ready, one reason per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady(pub Vec<String>);

impl State {
    /// Builds the state with no policy set loaded yet.
    pub fn new(config: Config, auth: Arc<Authenticator>) -> Self {
        let tls = config
            .tls
            .as_ref()
            .map(|t| Arc::new(crate::tls::Certificates::new(t)));
        let metrics = Metrics::new();
        if let Some(t) = &config.tls {
            metrics
                .tls_certificate_not_after
                .set(t.pair.not_after as f64);
        }
        State {
            config,
            policies: ArcSwapOption::empty(),
            auth,
            metrics,
            tls,
            generation: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Marks a request in flight until the guard is dropped: from the
    /// moment its connection is handed to the HTTP server, before its head
    /// is read, so that a connection accepted just before shutdown counts.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Requests being read or processed now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Loads the policy directory for the first time (generation 1).
    /// Returns the load's warnings.
    pub fn load_policies(&self) -> Result<Vec<policy::Warning>, policy::LoadErrors> {
        let loaded = policy::load_dir(&self.config.policies.dir)?;
        supported(&loaded.set, &self.config)?;
        let rules = loaded.set.stats().rules();
        // Metrics first: whoever sees the set serving also sees it counted.
        let m = &self.metrics;
        m.policy_rules.set(i64::try_from(rules).unwrap_or(i64::MAX));
        m.policy_last_reload_success.set(1);
        m.policy_last_reload_timestamp
            .set(crate::reload::unix_now());
        self.install(loaded.set);
        Ok(loaded.warnings)
    }

    /// Makes `set` the live policy set, atomically, and counts a generation.
    pub fn install(&self, set: policy::Set) {
        self.policies.store(Some(Arc::new(set)));
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.metrics
            .policy_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// How many sets have been made live (0 before the first).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Ready when a policy set is loaded and every issuer has keys.
    pub fn readiness(&self) -> Result<(), NotReady> {
        let mut reasons = Vec::new();
        if self.policies.load().is_none() {
            reasons.push("no policy set loaded yet".to_string());
        }
        for (issuer, why) in self.auth.missing_keys() {
            reasons.push(format!("issuer {issuer} has no keys yet: {why}"));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(NotReady(reasons))
        }
    }
}

/// Checks what a valid policy set asks of the config: every `upstream`
/// named by a catalog entry must be configured under `upstreams`. Refused
/// rather than silently routed to the default upstream.
pub fn supported(set: &policy::Set, config: &Config) -> Result<(), policy::LoadErrors> {
    let errors: Vec<policy::LoadError> = set
        .zambdas()
        .filter_map(|z| {
            let upstream = z.upstream.as_ref()?;
            if config.upstreams.contains_key(upstream) {
                return None;
            }
            Some(policy::LoadError {
                file: z.file.to_path_buf(),
                entry: Some(format!("zambda {}", z.name)),
                line: z.line,
                message: format!(
                    "names upstream {upstream:?}, which is not configured under `upstreams` in the config"
                ),
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(policy::LoadErrors(errors))
    }
}
