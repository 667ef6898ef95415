//! The decision of SPEC §1 for one request, from plain facts to a typed
//! outcome. It knows no pingora and no HTTP library's request type: the
//! proxy (and any other door) reads [`Facts`] off its request, calls
//! [`Gate::decide`], and puts the [`Outcome`] on the wire.
//!
//! Every check of SPEC §1 is in [`Gate::decide`], in its numbered order; the
//! first that applies wins. A [`Forward`] is built at its end only, after
//! every check passed, and it is the only thing that lets a request reach
//! an upstream. The forwarded path is rebuilt from the parsed target (or
//! from `path_template`), never copied from the raw target.
//!
//! The gate writes into no context: it returns the outcome with a
//! [`Record`] of what the metrics and the decision log need, and
//! [`record`] counts and logs it the same way for every door.
//!
//! Layout: `outcome.rs` is the one table from a refusal to its status,
//! label, headers and body; `headers.rs` the header rules that do not
//! depend on the decision; `record.rs` the metrics and the decision line.

mod framing;
mod headers;
mod outcome;
pub mod record;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

pub use headers::{
    forwarded_for, is_reserved, request_id, PROJECT_ID_HEADERS, REQUEST_ID, X_REQUEST_ID,
    ZAMBDA_ACTOR, ZAMBDA_ID, ZAMBDA_NAME, ZAMBDA_ROLES,
};
pub use outcome::{Forward, Label, Outcome, Pass, Refusal};
pub use record::Record;

use crate::authn::{self, Rejection};
use crate::config::{Cors, Enforcement, LogDecisions};
use crate::limit::Limiter;
use crate::policy::ZambdaKind;
use crate::route::{self, Route};
use crate::state::State;

/// The values of one request header, in order. Most headers come once, so
/// only a repeated one allocates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Values<'a> {
    #[default]
    Absent,
    One(&'a [u8]),
    Many(Vec<&'a [u8]>),
}

impl<'a> Values<'a> {
    /// Gathers every value from an iterator.
    pub fn gather(mut values: impl Iterator<Item = &'a [u8]>) -> Self {
        let Some(first) = values.next() else {
            return Values::Absent;
        };
        let Some(second) = values.next() else {
            return Values::One(first);
        };
        let mut all = vec![first, second];
        all.extend(values);
        Values::Many(all)
    }

    /// Adds the values of another header (the two project-id headers are
    /// judged together).
    pub fn chain(self, more: Values<'a>) -> Self {
        match (self, more) {
            (Values::Absent, v) | (v, Values::Absent) => v,
            (a, b) => Values::Many(a.as_slice().iter().chain(b.as_slice()).copied().collect()),
        }
    }

    pub fn as_slice(&self) -> &[&'a [u8]] {
        match self {
            Values::Absent => &[],
            Values::One(v) => std::slice::from_ref(v),
            Values::Many(v) => v,
        }
    }
}

/// What the gate needs to know of a request: plain values, read off the
/// request by whichever door received it.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub method: &'a http::Method,
    /// The request target exactly as received (origin- or absolute-form).
    pub target: &'a [u8],
    /// The client's address.
    pub client: Option<IpAddr>,
    /// Every `Authorization` value.
    pub authorization: Values<'a>,
    /// Every value of both project-id headers.
    pub project_ids: Values<'a>,
    /// `Origin`, when it is text (needed for a CORS preflight only).
    pub origin: Option<&'a str>,
    /// An `Access-Control-Request-Method` header is present.
    pub preflight_method: bool,
    /// The announced body length (`Content-Length`).
    pub content_length: Option<u64>,
    /// A `Content-Length` header was sent, whatever its value.
    pub has_content_length: bool,
    /// Every `Transfer-Encoding` value (HTTP/1 only; HTTP/2 has none).
    pub transfer_encoding: Values<'a>,
    /// The door records this request in a trace: the deciding rule is
    /// wanted even when no decision line will be written.
    pub traced: bool,
}

/// The outcome and what the metrics and the decision log need of it.
#[derive(Debug)]
pub struct Decided {
    pub outcome: Outcome,
    pub record: Record,
}

impl Decided {
    /// A request refused before the gate could read it (a decision request
    /// that does not describe one).
    pub fn refused(refusal: Refusal) -> Self {
        Decided {
            record: Record::refused(&refusal),
            outcome: Outcome::Refuse(refusal),
        }
    }
}

/// Decides requests. One per server, shared by every request.
pub struct Gate {
    state: Arc<State>,
    /// Requests per second per actor (execute) and per client address
    /// (execute-public), when limits are configured.
    actor_rate: Option<Limiter<(Arc<str>, String)>>,
    client_rate: Option<Limiter<Option<IpAddr>>>,
}

impl Gate {
    pub fn new(state: Arc<State>) -> Self {
        let limits = state.config.rate_limits;
        let burst = |rate: u64| limits.burst.unwrap_or(rate);
        Gate {
            actor_rate: limits
                .per_actor_per_second
                .map(|rate| Limiter::new(rate, burst(rate), limits.max_keys)),
            client_rate: limits
                .per_client_per_second
                .map(|rate| Limiter::new(rate, burst(rate), limits.max_keys)),
            state,
        }
    }

    /// The shared state this gate decides with.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// SPEC §1's checks 1–8, in order; the first that applies wins.
    pub async fn decide(&self, facts: &Facts<'_>) -> Decided {
        let mut learned = record::Learned::default();
        let outcome = self.checks(facts, &mut learned).await;
        let record = Record::new(learned, &outcome);
        Decided { outcome, record }
    }

    /// The checks themselves; `record` gathers what was learned on the way.
    async fn checks(&self, facts: &Facts<'_>, record: &mut record::Learned) -> Outcome {
        let config = &self.state.config;

        // 0. the framing: a body whose end is in doubt is not judged at all
        if let Some(refusal) = framing::refusal(&facts.transfer_encoding, facts.has_content_length)
        {
            return Outcome::Refuse(refusal);
        }

        // 1. the target, screened and parsed once, from the bytes received
        let target = match route::parse(facts.target, &config.route_prefix) {
            Ok(target) => target,
            Err(reject) => return Outcome::Refuse(Refusal::Target(reject)),
        };
        record.route = Some(target.route);

        // 2. the method (a CORS preflight is answered when `cors` is set)
        if facts.method != http::Method::POST {
            if facts.method == http::Method::OPTIONS
                && config.cors.is_some()
                && facts.origin.is_some()
                && facts.preflight_method
            {
                return Outcome::Preflight;
            }
            return Outcome::Refuse(Refusal::Method);
        }

        // 3. project-id headers
        if let Err(why) = project_id(config.project_id.as_deref(), &facts.project_ids) {
            return Outcome::Refuse(Refusal::ProjectId {
                route: target.route,
                why,
            });
        }

        // per client address on the public route (SPEC §7)
        if target.route == Route::ExecutePublic {
            if let Some(limit) = &self.client_rate {
                if let Err(wait) = limit.admit(crate::limit::client_key(facts.client)) {
                    return Outcome::Refuse(Refusal::RateLimited {
                        retry_after: crate::limit::retry_after_seconds(wait),
                    });
                }
            }
        }

        // 4. a policy set; this one set decides the whole request
        let Some(set) = self.state.policies.current() else {
            return Outcome::Refuse(Refusal::NoPolicies);
        };

        // 5. the token (authentication and authorization are timed together)
        let started = Instant::now();
        let identity = match target.route {
            Route::ExecutePublic => None,
            Route::Execute => {
                let checked = self
                    .authenticate(&facts.authorization, &mut record.jwks_wait)
                    .await;
                record.token_check = Some(crate::clock::Interval::since(started));
                match checked {
                    Ok(identity) => Some(identity),
                    Err(refusal) => return Outcome::Refuse(refusal),
                }
            }
        };
        if let Some(identity) = &identity {
            record.actor = Some(identity.subject.clone());
            record.issuer = Some(identity.issuer.clone());
            if let Some(limit) = &self.actor_rate {
                let key = (identity.issuer.clone(), identity.subject.clone());
                if let Err(wait) = limit.admit(key) {
                    return Outcome::Refuse(Refusal::RateLimited {
                        retry_after: crate::limit::retry_after_seconds(wait),
                    });
                }
            }
        }

        // 6. the catalog: cron and subscription Zambdas are never invoked
        // over HTTP; an authenticated one is not found on the public route,
        // so the catalog is not disclosed there
        let Some(zambda) = set.zambda(&target.zambda) else {
            return Outcome::Refuse(Refusal::UnknownZambda);
        };
        if !zambda.kind.invocable_over_http() {
            record.zambda = Some(zambda.name.clone());
            return Outcome::Refuse(Refusal::UnknownZambda);
        }
        if target.route == Route::ExecutePublic && zambda.kind != ZambdaKind::Public {
            return Outcome::Refuse(Refusal::UnknownZambda);
        }
        record.zambda = Some(zambda.name.clone());

        // 7. the policy
        let mut pass = Pass::Public;
        let mut roles = None;
        if let Some(identity) = &identity {
            let principal = identity.principal();
            let verdict = set.decide(&principal, zambda);
            pass = if verdict.allowed {
                Pass::Allowed
            } else {
                Pass::WouldDeny
            };
            // The deciding rule is formatted only for a line that is written.
            if facts.traced
                || self.logs(if verdict.allowed {
                    Label::Allow
                } else {
                    Label::Deny
                })
            {
                record.rule = Some(match verdict.deciding {
                    Some(rule) => Cow::Owned(rule.to_string()),
                    None => Cow::Borrowed("no rule allows"),
                });
            }
            record.decision_time = Some(started.elapsed());
            if !verdict.allowed && config.enforcement == Enforcement::Enforce {
                return Outcome::Refuse(Refusal::Denied {
                    zambda: target.zambda,
                });
            }
            let held = set.roles_of(&principal);
            if !held.is_empty() {
                roles = Some(held.join(","));
            }
        }

        // 8. the body, when its length is announced
        if facts
            .content_length
            .is_some_and(|len| len > config.limits.max_body_bytes)
        {
            return Outcome::Refuse(Refusal::BodyTooLarge);
        }

        let mut path = match &config.upstream.path_template {
            Some(t) => t.render(&zambda.id, &zambda.name, target.route.as_str()),
            None => route::canonical_path(&config.route_prefix, &target.zambda, target.route),
        };
        if let Some(query) = target.query {
            path.push('?');
            path.push_str(query);
        }
        Outcome::Forward(Forward {
            path,
            zambda_id: zambda.id.clone(),
            zambda_name: zambda.name.clone(),
            actor: identity.as_ref().map(|i| i.subject.clone()),
            roles,
            keep_authorization: target.route == Route::Execute && config.auth.forward_authorization,
            upstream: zambda.upstream.clone(),
            pass,
        })
    }

    /// The verified identity of `execute`'s bearer token, or the refusal.
    async fn authenticate(
        &self,
        authorization: &Values<'_>,
        fetch_wait: &mut Option<crate::clock::Interval>,
    ) -> Result<Arc<authn::Identity>, Refusal> {
        let token_given = !matches!(authorization, Values::Absent);
        let token = match authn::bearer(authorization.as_slice()) {
            Ok(Some(token)) => token,
            Ok(None) => return Err(refusal(Rejection::Missing, false)),
            Err(rejection) => return Err(refusal(rejection, token_given)),
        };
        self.state
            .auth
            .authenticate_noting(token, fetch_wait)
            .await
            .map_err(|rejection| refusal(rejection, true))
    }

    /// True when a request with this label gets a decision log line.
    pub fn logs(&self, label: Label) -> bool {
        match self.state.config.log.decisions {
            LogDecisions::All => true,
            LogDecisions::Denied => label.is_denial(),
            LogDecisions::None => false,
        }
    }

    /// The CORS response headers for `origin`: `Vary` always, the rest for
    /// allowed origins only; a preflight also gets the allowed method,
    /// headers and max age. Empty when `cors` is not configured.
    pub fn cors_headers(&self, origin: &str, preflight: bool) -> Vec<(&'static str, String)> {
        match &self.state.config.cors {
            Some(cors) => cors_headers(cors, origin, preflight),
            None => Vec::new(),
        }
    }

    /// Counts the request and writes its decision line (SPEC §6).
    pub fn finish(&self, record: &Record, answer: &record::Answer<'_>) {
        record::count(&self.state.metrics, record, answer);
        if self.logs(record.label) {
            record::log(record, answer);
        }
    }
}

/// An authentication failure as a refusal.
fn refusal(rejection: Rejection, token_given: bool) -> Refusal {
    match rejection {
        Rejection::Missing => Refusal::Unauthenticated {
            why: "bearer token required",
            token_given: false,
        },
        Rejection::Invalid(why) => Refusal::Unauthenticated { why, token_given },
        Rejection::KeysUnavailable => Refusal::KeysUnavailable,
    }
}

/// Every project-id header value must equal the configured project id
/// (when set) and each other, case-insensitively; surrounding spaces are
/// ignored.
fn project_id(expected: Option<&str>, values: &Values<'_>) -> Result<(), &'static str> {
    let mut seen: Option<&[u8]> = None;
    for value in values.as_slice() {
        let value = trim(value);
        if std::str::from_utf8(value).is_err() {
            return Err("invalid project id header");
        }
        if let Some(expected) = expected {
            if !value.eq_ignore_ascii_case(expected.as_bytes()) {
                return Err("project id does not match");
            }
        }
        match seen {
            Some(first) if !first.eq_ignore_ascii_case(value) => {
                return Err("conflicting project id headers")
            }
            _ => seen = Some(value),
        }
    }
    Ok(())
}

/// Strips the optional white space (spaces, tabs) around a header value or
/// list element.
fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn cors_headers(cors: &Cors, origin: &str, preflight: bool) -> Vec<(&'static str, String)> {
    let mut h = vec![("vary", "Origin".to_string())];
    if !cors.allows(origin) {
        return h;
    }
    h.push(("access-control-allow-origin", origin.to_string()));
    if cors.allow_credentials {
        h.push(("access-control-allow-credentials", "true".to_string()));
    }
    if preflight {
        h.push(("access-control-allow-methods", "POST".to_string()));
        h.push((
            "access-control-allow-headers",
            cors.allowed_headers.join(", "),
        ));
        h.push(("access-control-max-age", cors.max_age_seconds.to_string()));
    } else {
        h.push(("access-control-expose-headers", REQUEST_ID.to_string()));
    }
    h
}
