//! What the running proxy shares between requests and background tasks.
//!
//! The live policy set is the [`Store`]'s: a request loads it once (one
//! lock-free load) and decides against that one consistent set; a reload
//! builds and validates a whole new set and swaps it in atomically, or
//! keeps the old one when the new one is invalid.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::authn::Authenticator;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

pub struct State {
    pub config: Config,
    /// The live policy set, its loads and reloads.
    pub policies: Store,
    pub auth: Arc<Authenticator>,
    pub metrics: Metrics,
    /// The certificate served on `listen`, when `tls` is configured.
    pub tls: Option<Arc<crate::tls::Certificates>>,
    /// The tracer, when traces are on (SPEC §9); a door checks this first
    /// and builds no span at all when it is `None`.
    pub telemetry: Option<crate::telemetry::Telemetry>,
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
            policies: Store::new(),
            auth,
            metrics,
            tls,
            telemetry: None,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The state with traces exported through `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Option<crate::telemetry::Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
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

    /// Ready when a policy set is loaded and every issuer has keys.
    pub fn readiness(&self) -> Result<(), NotReady> {
        let mut reasons = Vec::new();
        if !self.policies.is_loaded() {
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
