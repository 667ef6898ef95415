//! What a decided request leaves behind: its metrics and its decision log
//! line (SPEC §6), written the same way whichever door answered it.
//!
//! Labels stay bounded: `zambda` is a catalog name or `unknown`, never a
//! subject, a token or a raw path; the subject appears only as a log field.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::outcome::{Label, Outcome, Refusal};
use crate::clock::Interval;
use crate::metrics::Metrics;
use crate::route::Route;

/// What the gate learned on its way through the checks.
#[derive(Debug, Default)]
pub(super) struct Learned {
    pub route: Option<Route>,
    pub zambda: Option<String>,
    pub actor: Option<String>,
    /// The deciding rule, formatted only when its line will be written.
    pub rule: Option<Cow<'static, str>>,
    pub decision_time: Option<Duration>,
    pub issuer: Option<Arc<str>>,
    pub token_check: Option<Interval>,
    pub jwks_wait: Option<Interval>,
}

/// What the metrics and the decision log need of a decided request.
#[derive(Debug, Clone)]
pub struct Record {
    /// `None` when the target matched no route.
    pub route: Option<Route>,
    /// The catalog name, once the Zambda is known.
    pub zambda: Option<String>,
    /// The token's subject, once verified.
    pub actor: Option<String>,
    pub label: Label,
    /// A refusal's message, or the deciding rule of a policy decision.
    pub reason: Cow<'static, str>,
    /// Authentication and authorization together, when a token was decided.
    pub decision_time: Option<Duration>,
    /// The verified token's issuer.
    pub issuer: Option<Arc<str>>,
    /// When the token was checked, when one was.
    pub token_check: Option<Interval>,
    /// When the token check waited for a JWKS fetch.
    pub jwks_wait: Option<Interval>,
    /// True when `reason` is the deciding rule of a policy decision.
    pub by_rule: bool,
}

impl Record {
    pub(super) fn new(learned: Learned, outcome: &Outcome) -> Self {
        let by_rule = learned.rule.is_some();
        let (label, reason) = match outcome {
            Outcome::Forward(f) => (f.pass.label(), learned.rule.unwrap_or_default()),
            Outcome::Refuse(r @ Refusal::Denied { .. }) => {
                (r.label(), learned.rule.unwrap_or_default())
            }
            Outcome::Refuse(r) => (r.label(), r.message()),
            // A preflight is answered without a token or a policy.
            Outcome::Preflight => (Label::Public, Cow::Borrowed("")),
        };
        // A refusal after the policy (a rate limit, the body size) is
        // explained by its message, not by the rule that allowed.
        let by_rule = by_rule
            && matches!(
                outcome,
                Outcome::Forward(_) | Outcome::Refuse(Refusal::Denied { .. })
            );
        Record {
            route: learned.route,
            zambda: learned.zambda,
            actor: learned.actor,
            label,
            reason,
            decision_time: learned.decision_time,
            issuer: learned.issuer,
            token_check: learned.token_check,
            jwks_wait: learned.jwks_wait,
            by_rule,
        }
    }

    /// The record of a request refused before the gate could decide it
    /// (a protocol error while reading it).
    pub fn refused(refusal: &Refusal) -> Self {
        Record {
            route: None,
            zambda: None,
            actor: None,
            label: refusal.label(),
            reason: refusal.message(),
            decision_time: None,
            issuer: None,
            token_check: None,
            jwks_wait: None,
            by_rule: false,
        }
    }
}

/// Which door answered: the `listener` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `listen`: the proxy.
    Proxy,
    /// `authz_listen`: the decision-only service.
    Authz,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy",
            Listener::Authz => "authz",
        }
    }
}

/// How the request was answered.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub listener: Listener,
    /// The status sent; 0 when none could be.
    pub status: u16,
    pub request_id: &'a str,
    /// From the request's arrival to the end of its answer.
    pub elapsed: Duration,
    /// The request's method as received (on `authz_listen`, the decision
    /// request's own).
    pub method: &'a str,
    /// The client's address (behind trusted proxies, the one they name).
    pub client: Option<IpAddr>,
    /// The backend's answer, when the request was forwarded.
    pub upstream: Option<Upstream>,
    /// Body bytes read from the client and written to it.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The backend's part in a forwarded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream {
    /// The backend's status; `None` when no response came.
    pub status: Option<u16>,
    /// From choosing the backend to the end of its response.
    pub time: Duration,
}

impl Upstream {
    /// The `class` label of a backend answer: `2xx` ... `5xx`, or `error`.
    pub fn class(status: Option<u16>) -> &'static str {
        let [c1, c2, c3, c4, c5, error] = crate::metrics::UPSTREAM_CLASSES;
        match status {
            None => error,
            Some(100..=199) => c1,
            Some(200..=299) => c2,
            Some(300..=399) => c3,
            Some(400..=499) => c4,
            Some(_) => c5,
        }
    }
}

/// Counts the request in `requests_total`, `request_duration_seconds`,
/// `decision_duration_seconds` and `rate_limited_total`.
pub fn count(m: &Metrics, record: &Record, answer: &Answer<'_>) {
    let route = record.route.map_or("none", Route::as_str);
    let label = record.label.as_str();
    let zambda = record.zambda.as_deref().unwrap_or("unknown");
    m.requests
        .with_label_values(&[answer.listener.as_str(), route, label, zambda])
        .inc();
    let slot = record.route.map_or(0, |r| r as usize + 1) * Label::COUNT + record.label as usize;
    m.observe_request_duration(slot, route, label, answer.elapsed.as_secs_f64());
    if let Some(time) = record.decision_time {
        m.decision_duration.observe(time.as_secs_f64());
    }
    if record.label == Label::RateLimited {
        m.rate_limited.with_label_values(&[route]).inc();
    }
}

/// Writes the decision line, which is also the access log, on the
/// `zambda_guard::decision` target (SPEC §9).
pub fn log(record: &Record, answer: &Answer<'_>) {
    let upstream = answer.upstream.as_ref();
    tracing::info!(
        target: "zambda_guard::decision",
        request_id = %answer.request_id,
        listener = answer.listener.as_str(),
        method = answer.method,
        client = answer.client.map(tracing::field::display),
        issuer = record.issuer.as_deref(),
        route = record.route.map_or("none", Route::as_str),
        zambda = record.zambda.as_deref().unwrap_or("unknown"),
        actor = record.actor.as_deref().unwrap_or("-"),
        decision = record.label.as_str(),
        status = answer.status,
        reason = %record.reason,
        rule = record.by_rule.then_some(&*record.reason),
        upstream_status = upstream.and_then(|u| u.status),
        upstream_ms = upstream.map(|u| u.time.as_secs_f64() * 1000.0),
        bytes_in = answer.bytes_in,
        bytes_out = answer.bytes_out,
        latency_ms = answer.elapsed.as_secs_f64() * 1000.0,
        "decision"
    );
}
