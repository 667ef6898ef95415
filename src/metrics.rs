//! Every metric zambda-guard exports (SPEC §6), with its help text, in one
//! place, and the Prometheus text rendering served on `/metrics`.
//!
//! Labels stay bounded: `route` and `decision` are fixed sets, `zambda` is a
//! catalog name or `unknown`, `issuer` a configured issuer. Subjects, tokens
//! and raw paths never become labels.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use std::sync::OnceLock;

use crate::authn;

/// How many `request_duration` children [`Metrics::observe_request_duration`]
/// keeps resolved; slots past it fall back to a label lookup.
pub const DURATION_SLOTS: usize = 64;

/// Request latency buckets, in seconds: a proxy's added latency is
/// sub-millisecond, the functions behind it take up to seconds.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Decision latency buckets: microseconds on a cache hit, up to the JWKS
/// fetch timeout when an unknown key id triggers a fetch.
const DECISION_BUCKETS: &[f64] = &[
    0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
    1.0, 2.0,
];

/// The `class` label values of the upstream metrics.
pub const UPSTREAM_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    /// `request_duration` children, each resolved on first use: the label
    /// pairs are a small fixed set, so a request finds its histogram
    /// without hashing its labels (see [`Metrics::observe_request_duration`]).
    request_durations: Box<[OnceLock<Histogram>]>,
    pub decision_duration: Histogram,
    pub upstream_responses: IntCounterVec,
    /// `upstream_responses` children by class, each resolved on first use.
    upstream_response_counters: [OnceLock<IntCounter>; UPSTREAM_CLASSES.len()],
    pub upstream_duration: HistogramVec,
    /// The default upstream's `upstream_duration` children by class, each
    /// resolved on first use (as `request_durations`).
    default_upstream_durations: [OnceLock<Histogram>; UPSTREAM_CLASSES.len()],
    pub policy_reloads: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub policy_generation: IntGauge,
    pub policy_last_reload_success: IntGauge,
    pub policy_rules: IntGauge,
    pub policy_last_reload_timestamp: Gauge,
    pub tls_reloads: IntCounterVec,
    pub tls_certificate_not_after: Gauge,
    jwks_refresh: IntCounterVec,
    jwks_keys: IntGaugeVec,
    jwks_last_success: GaugeVec,
    token_cache_hits: IntCounter,
    token_cache_misses: IntCounter,
}

fn name(short: &str) -> String {
    format!("zambda_guard_{short}")
}

impl Metrics {
    /// Creates and registers every metric (once, at start-up).
    /// Observes `seconds` in the `request_duration_seconds` histogram of
    /// (`route`, `decision`). `slot` is the caller's fixed numbering of the
    /// pairs (below [`DURATION_SLOTS`]): the histogram is resolved once per
    /// slot, and later requests skip the label lookup.
    pub fn observe_request_duration(&self, slot: usize, route: &str, decision: &str, seconds: f64) {
        match self.request_durations.get(slot) {
            Some(cell) => cell
                .get_or_init(|| self.request_duration.with_label_values(&[route, decision]))
                .observe(seconds),
            None => self
                .request_duration
                .with_label_values(&[route, decision])
                .observe(seconds),
        }
    }

    /// Counts a backend answer (or its absence) in
    /// `upstream_responses_total`; `class` is one of [`UPSTREAM_CLASSES`].
    pub fn count_upstream_response(&self, class: &str) {
        match UPSTREAM_CLASSES.iter().position(|c| *c == class) {
            Some(slot) => self.upstream_response_counters[slot]
                .get_or_init(|| self.upstream_responses.with_label_values(&[class]))
                .inc(),
            None => self.upstream_responses.with_label_values(&[class]).inc(),
        }
    }

    /// Observes an upstream exchange in `upstream_duration_seconds`;
    /// `upstream` is a named upstream, `None` the default one.
    pub fn observe_upstream_duration(&self, upstream: Option<&str>, class: &str, seconds: f64) {
        let slot = UPSTREAM_CLASSES.iter().position(|c| *c == class);
        match (upstream, slot) {
            (None, Some(slot)) => self.default_upstream_durations[slot]
                .get_or_init(|| {
                    self.upstream_duration
                        .with_label_values(&["default", class])
                })
                .observe(seconds),
            (name, _) => self
                .upstream_duration
                .with_label_values(&[name.unwrap_or("default"), class])
                .observe(seconds),
        }
    }

    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let m = Metrics {
            requests: counter_vec(
                r,
                "requests_total",
                "Requests answered, by listener (proxy or authz), route, decision and Zambda (catalog name, or unknown).",
                &["listener", "route", "decision", "zambda"],
            ),
            request_duration: histogram_vec(
                r,
                "request_duration_seconds",
                "Time from the request's arrival to the end of its response, by route and decision.",
                &["route", "decision"],
                REQUEST_BUCKETS,
            ),
            request_durations: (0..DURATION_SLOTS).map(|_| OnceLock::new()).collect(),
            decision_duration: histogram(
                r,
                "decision_duration_seconds",
                "Time spent authenticating the token and authorizing the call.",
                DECISION_BUCKETS,
            ),
            upstream_responses: counter_vec(
                r,
                "upstream_responses_total",
                "Responses from the function backend by status class, or error when none came.",
                &["class"],
            ),
            upstream_duration: histogram_vec(
                r,
                "upstream_duration_seconds",
                "Time from choosing the function backend to the end of its response, by upstream (default or a named upstream) and status class (or error when none came).",
                &["upstream", "class"],
                REQUEST_BUCKETS,
            ),
            upstream_response_counters: Default::default(),
            default_upstream_durations: Default::default(),
            policy_reloads: counter_vec(
                r,
                "policy_reloads_total",
                "Policy reloads that found changed content, by result (ok or error).",
                &["result"],
            ),
            rate_limited: counter_vec(
                r,
                "rate_limited_total",
                "Requests refused with 429 because a rate limit was exceeded, by route.",
                &["route"],
            ),
            policy_generation: int_gauge(
                r,
                "policy_generation",
                "Generation of the live policy set: 1 for the start-up load, one more per successful reload.",
            ),
            policy_last_reload_success: int_gauge(
                r,
                "policy_last_reload_success",
                "Whether the last policy load attempt succeeded (1) or was refused (0).",
            ),
            policy_rules: int_gauge(
                r,
                "policy_rules",
                "Rules in the live policy set, Zambda rules and inert rules of other services.",
            ),
            policy_last_reload_timestamp: gauge(
                r,
                "policy_last_reload_timestamp_seconds",
                "Unix time of the last successful policy load.",
            ),
            tls_reloads: counter_vec(
                r,
                "tls_certificate_reloads_total",
                "Re-reads of the served certificate and key that found changed files, by result (ok, or error when the old pair kept serving).",
                &["result"],
            ),
            tls_certificate_not_after: gauge(
                r,
                "tls_certificate_not_after_timestamp_seconds",
                "Unix time the certificate served on the proxy listener expires; 0 when the listener is plain HTTP.",
            ),
            jwks_refresh: counter_vec(
                r,
                "jwks_refresh_total",
                "Fetches of an issuer's JWKS, by issuer and result (ok or error).",
                &["issuer", "result"],
            ),
            jwks_keys: int_gauge_vec(
                r,
                "jwks_keys",
                "Verification keys currently held for an issuer.",
                &["issuer"],
            ),
            jwks_last_success: gauge_vec(
                r,
                "jwks_last_success_timestamp_seconds",
                "Unix time an issuer's keys were last loaded successfully.",
                &["issuer"],
            ),
            token_cache_hits: int_counter(
                r,
                "token_cache_hits_total",
                "Tokens accepted from the verified-token cache without verifying the signature again.",
            ),
            token_cache_misses: int_counter(
                r,
                "token_cache_misses_total",
                "Tokens not found in the verified-token cache.",
            ),
            registry,
        };
        let build = int_gauge_vec(
            &m.registry,
            "build_info",
            "Always 1; the labels tell which build is running: version, git revision (unknown when built without git) and compiler version.",
            &["version", "revision", "rustc"],
        );
        build
            .with_label_values(&[crate::VERSION, crate::REVISION, crate::RUSTC])
            .set(1);
        // The standard process_* metrics (memory, CPU, open files, start
        // time), unprefixed as every dashboard expects them.
        #[cfg(target_os = "linux")]
        if let Err(e) = m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::error!("process metrics not registered: {e}");
        }
        m
    }

    /// The Prometheus text exposition of every metric, with the key and
    /// cache figures brought up to date from the authenticator first.
    pub fn render(&self, auth: &authn::Stats) -> String {
        sync_counter(&self.token_cache_hits, auth.cache_hits.load(RELAXED));
        sync_counter(&self.token_cache_misses, auth.cache_misses.load(RELAXED));
        for issuer in &auth.issuers {
            let name = issuer.issuer.as_str();
            sync_counter(
                &self.jwks_refresh.with_label_values(&[name, "ok"]),
                issuer.refresh_ok.load(RELAXED),
            );
            sync_counter(
                &self.jwks_refresh.with_label_values(&[name, "error"]),
                issuer.refresh_error.load(RELAXED),
            );
            self.jwks_keys
                .with_label_values(&[name])
                .set(i64::try_from(issuer.keys.load(RELAXED)).unwrap_or(i64::MAX));
            let last = issuer.last_success_unix.load(RELAXED);
            if last > 0 {
                self.jwks_last_success
                    .with_label_values(&[name])
                    .set(last as f64);
            }
        }
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// Raises a counter to a total kept elsewhere (counters only go up).
fn sync_counter(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    if let Err(e) = r.register(Box::new(c.clone())) {
        tracing::error!("metric not registered: {e}");
    }
    c
}

// Metric options are built from the constant names and label sets above;
// constructing them fails only for an invalid name, which the unit tests
// would catch. This runs once at start-up, never on the request path.

#[allow(clippy::expect_used)]
fn counter_vec(r: &Registry, n: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name(n), help), labels).expect("valid metric");
    register(r, c)
}

#[allow(clippy::expect_used)]
fn int_counter(r: &Registry, n: &str, help: &str) -> IntCounter {
    register(
        r,
        IntCounter::with_opts(Opts::new(name(n), help)).expect("valid metric"),
    )
}

#[allow(clippy::expect_used)]
fn int_gauge(r: &Registry, n: &str, help: &str) -> IntGauge {
    register(
        r,
        IntGauge::with_opts(Opts::new(name(n), help)).expect("valid metric"),
    )
}

#[allow(clippy::expect_used)]
fn gauge(r: &Registry, n: &str, help: &str) -> Gauge {
    register(
        r,
        Gauge::with_opts(Opts::new(name(n), help)).expect("valid metric"),
    )
}

#[allow(clippy::expect_used)]
fn int_gauge_vec(r: &Registry, n: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name(n), help), labels).expect("valid metric"),
    )
}

#[allow(clippy::expect_used)]
fn gauge_vec(r: &Registry, n: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(
        r,
        GaugeVec::new(Opts::new(name(n), help), labels).expect("valid metric"),
    )
}

#[allow(clippy::expect_used)]
fn histogram(r: &Registry, n: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name(n), help).buckets(buckets.to_vec());
    register(r, Histogram::with_opts(opts).expect("valid metric"))
}

#[allow(clippy::expect_used)]
fn histogram_vec(
    r: &Registry,
    n: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name(n), help).buckets(buckets.to_vec());
    register(r, HistogramVec::new(opts, labels).expect("valid metric"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_renders_with_help_and_type() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["proxy", "execute", "allow", "x"])
            .inc();
        m.request_duration
            .with_label_values(&["execute", "allow"])
            .observe(0.001);
        m.decision_duration.observe(0.000_002);
        m.upstream_responses.with_label_values(&["2xx"]).inc();
        m.upstream_duration
            .with_label_values(&["default", "2xx"])
            .observe(0.01);
        m.policy_reloads.with_label_values(&["ok"]).inc();
        let stats = authn::Stats::default();
        let text = m.render(&stats);
        for (metric, kind) in [
            ("requests_total", "counter"),
            ("request_duration_seconds", "histogram"),
            ("decision_duration_seconds", "histogram"),
            ("upstream_responses_total", "counter"),
            ("upstream_duration_seconds", "histogram"),
            ("policy_reloads_total", "counter"),
            ("policy_generation", "gauge"),
            ("policy_last_reload_success", "gauge"),
            ("policy_rules", "gauge"),
            ("policy_last_reload_timestamp_seconds", "gauge"),
            ("token_cache_hits_total", "counter"),
            ("token_cache_misses_total", "counter"),
            ("build_info", "gauge"),
        ] {
            let full = format!("zambda_guard_{metric}");
            assert!(
                text.contains(&format!("# TYPE {full} {kind}")),
                "{full} {kind} missing:\n{text}"
            );
            let help = text
                .lines()
                .find(|l| l.starts_with(&format!("# HELP {full} ")))
                .unwrap_or_else(|| panic!("no help for {full}"));
            assert!(help.ends_with('.'), "help is not a sentence: {help}");
        }
        assert!(text.contains(&format!(
            "zambda_guard_build_info{{revision=\"{}\",rustc=\"{}\",version=\"{}\"}} 1",
            crate::REVISION,
            crate::RUSTC,
            crate::VERSION
        )));
        assert!(!crate::REVISION.is_empty() && !crate::RUSTC.is_empty());
        #[cfg(target_os = "linux")]
        for metric in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{metric} ")),
                "{metric} missing:\n{text}"
            );
        }
    }

    #[test]
    fn counters_follow_totals_kept_elsewhere() {
        let c = IntCounter::new("c", "c").unwrap();
        sync_counter(&c, 5);
        sync_counter(&c, 3);
        sync_counter(&c, 7);
        assert_eq!(c.get(), 7);
    }
}
