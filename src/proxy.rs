//! The pingora [`ProxyHttp`] implementation: the one place where outcomes
//! become HTTP statuses.
//!
//! Every request meets the checks of SPEC §1 in their numbered order inside
//! [`Guard::request_filter`]; the first that applies answers with the JSON
//! error body and the request never reaches the upstream (no connection is
//! opened for it). A request that passes carries a [`Forward`] in its
//! context, from which [`Guard::upstream_request_filter`] builds the one
//! canonical request the backend sees.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use pingora_limits::rate::Rate;

use crate::authn::{self, Rejection};
use crate::config::{Enforcement, LogDecisions};
use crate::policy::{self, ZambdaKind};
use crate::route::{self, Route};
use crate::state::State;

/// Headers the proxy sets for the backend; client-sent look-alikes are removed.
pub const ZAMBDA_ID: &str = "x-zambda-id";
pub const ZAMBDA_NAME: &str = "x-zambda-name";
pub const ZAMBDA_ACTOR: &str = "x-zambda-actor";
pub const ZAMBDA_ROLES: &str = "x-zambda-roles";
pub const REQUEST_ID: &str = "x-oystehr-request-id";
const PROJECT_ID_HEADERS: [&str; 2] = ["x-oystehr-project-id", "x-zapehr-project-id"];
const WWW_AUTHENTICATE_REALM: &str = "Bearer realm=\"zambda-guard\"";
/// Refused requests with a body up to this size keep their connection.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// The proxy logic; one per server, shared by every request.
pub struct Guard {
    state: Arc<State>,
    /// The named upstreams, by name.
    upstreams: HashMap<String, Arc<Balancer>>,
    /// Requests per second seen per actor (execute) and per client address
    /// (execute-public), when limits are configured.
    actor_rate: Option<Rate>,
    client_rate: Option<Rate>,
}

/// A named upstream: round robin over its healthy addresses.
pub type Balancer = LoadBalancer<RoundRobin>;

impl Guard {
    pub fn new(state: Arc<State>, upstreams: HashMap<String, Arc<Balancer>>) -> Self {
        let limits = state.config.rate_limits;
        let window = || Rate::new(std::time::Duration::from_secs(1));
        Guard {
            actor_rate: limits.per_actor_per_second.map(|_| window()),
            client_rate: limits.per_client_per_second.map(|_| window()),
            state,
            upstreams,
        }
    }

    /// True when `key` has used up its requests for this second.
    fn over_limit(rate: Option<&Rate>, limit: Option<u64>, key: impl std::hash::Hash) -> bool {
        match (rate, limit) {
            (Some(rate), Some(limit)) => {
                let seen = rate.observe(&key, 1);
                u64::try_from(seen).unwrap_or(0) > limit
            }
            _ => false,
        }
    }
}

/// What a decided request carries between the phases.
pub struct Ctx {
    started: Instant,
    request_id: String,
    route: Option<Route>,
    /// The catalog name once the Zambda is known, for logs and metrics.
    zambda: Option<String>,
    actor: Option<String>,
    decision: Decision,
    /// Why, for the decision log: a refusal's message or the deciding rule.
    reason: Cow<'static, str>,
    forward: Option<Forward>,
    body_bytes: u64,
    /// Set when an allowed origin needs CORS headers on the response.
    cors_origin: Option<String>,
}

/// The outcome label of a request (the `decision` of SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Unauthenticated,
    NotFound,
    BadRequest,
    MethodNotAllowed,
    Unavailable,
    Public,
    WouldDeny,
    RateLimited,
    /// Not decided yet (or a CORS preflight).
    None,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Unauthenticated => "unauthenticated",
            Decision::NotFound => "not_found",
            Decision::BadRequest => "bad_request",
            Decision::MethodNotAllowed => "method_not_allowed",
            Decision::Unavailable => "unavailable",
            Decision::Public => "public",
            Decision::WouldDeny => "would_deny",
            Decision::RateLimited => "rate_limited",
            Decision::None => "none",
        }
    }

    fn is_denial(self) -> bool {
        !matches!(self, Decision::Allow | Decision::Public | Decision::None)
    }
}

/// How a passed request goes upstream.
struct Forward {
    path: String,
    zambda_id: String,
    zambda_name: String,
    actor: Option<String>,
    roles: Option<String>,
    keep_authorization: bool,
    /// A named upstream; `None` = the default `upstream`.
    upstream: Option<Arc<Balancer>>,
    /// Connection attempts so far (failover across a named upstream).
    attempts: usize,
}

/// A request answered by the proxy itself.
struct Refusal {
    status: u16,
    decision: Decision,
    message: Cow<'static, str>,
    www_authenticate: Option<String>,
    allow_header: bool,
    retry_after: bool,
}

impl Refusal {
    fn new(status: u16, decision: Decision, message: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            status,
            decision,
            message: message.into(),
            www_authenticate: None,
            allow_header: false,
            retry_after: false,
        }
    }

    /// 401 with RFC 6750's challenge; `error="invalid_token"` only when a
    /// token was presented.
    fn unauthenticated(route: Route, message: &'static str, token_given: bool) -> Self {
        let mut r = Refusal::new(401, Decision::Unauthenticated, message);
        if route == Route::Execute {
            r.www_authenticate = Some(if token_given {
                format!(
                    "{WWW_AUTHENTICATE_REALM}, error=\"invalid_token\", error_description=\"{message}\""
                )
            } else {
                WWW_AUTHENTICATE_REALM.to_string()
            });
        }
        r
    }
}

/// The result of the checks: forward, or answer here.
enum Verdict {
    Forward(Forward),
    Refuse(Refusal),
    Preflight(String),
}

impl Guard {
    /// SPEC §1's checks, in order. Fills `ctx` with what the log needs.
    async fn check(&self, session: &Session, ctx: &mut Ctx) -> Verdict {
        let config = &self.state.config;
        let req = session.req_header();

        // 1. the target, screened and parsed once, from the bytes on the wire
        let head = raw_request_head(session);
        let raw_target = head
            .as_deref()
            .and_then(request_line_target)
            .unwrap_or_else(|| req.raw_path());
        let target = match route::parse(raw_target, &config.route_prefix) {
            Ok(t) => t,
            Err(e) => {
                let decision = match e {
                    route::Reject::NoRoute => Decision::NotFound,
                    _ => Decision::BadRequest,
                };
                return Verdict::Refuse(Refusal::new(e.status(), decision, e.message()));
            }
        };
        ctx.route = Some(target.route);

        // 2. method
        if req.method != http::Method::POST {
            if req.method == http::Method::OPTIONS {
                if let Some(origin) = self.preflight_origin(req) {
                    return Verdict::Preflight(origin);
                }
            }
            let mut r = Refusal::new(405, Decision::MethodNotAllowed, "method not allowed");
            r.allow_header = true;
            return Verdict::Refuse(r);
        }

        // 3. project id headers
        if let Err(message) = self.check_project_id(req) {
            return Verdict::Refuse(Refusal::unauthenticated(target.route, message, false));
        }

        // per client address on the public route (SPEC §7)
        if target.route == Route::ExecutePublic {
            let client = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            if Self::over_limit(
                self.client_rate.as_ref(),
                config.rate_limits.per_client_per_second,
                client,
            ) {
                return Verdict::Refuse(self.rate_limited(target.route));
            }
        }

        // 4. a policy set to decide with; this one set decides the whole request
        let Some(set) = self.state.policies.load_full() else {
            return Verdict::Refuse(Refusal::new(
                503,
                Decision::Unavailable,
                "policies not loaded yet",
            ));
        };

        // 5. the token (authentication and authorization are timed together)
        let decision_started = Instant::now();
        let identity = match target.route {
            Route::ExecutePublic => None,
            Route::Execute => match self.authenticate(req).await {
                Ok(identity) => Some(identity),
                Err(refusal) => return Verdict::Refuse(refusal),
            },
        };
        ctx.actor = identity.as_ref().map(|i| i.subject.clone());
        if let Some(identity) = &identity {
            let key = (&*identity.issuer, identity.subject.as_str());
            if Self::over_limit(
                self.actor_rate.as_ref(),
                config.rate_limits.per_actor_per_second,
                key,
            ) {
                return Verdict::Refuse(self.rate_limited(target.route));
            }
        }

        // 6. the catalog
        let zambda = match set.zambda(&target.zambda) {
            Some(z)
                if z.kind.invocable_over_http()
                    && (target.route == Route::Execute || z.kind == ZambdaKind::Public) =>
            {
                z
            }
            _ => return Verdict::Refuse(Refusal::new(404, Decision::NotFound, "zambda not found")),
        };
        ctx.zambda = Some(zambda.name.clone());

        // 7. the policy
        let mut decision = Decision::Public;
        let mut roles = None;
        if let Some(identity) = &identity {
            let principal = policy::Principal {
                subject: &identity.subject,
                issuer: Some(&identity.issuer),
                token_roles: &identity.roles,
            };
            let verdict = set.decide(&principal, zambda);
            decision = if verdict.allowed {
                Decision::Allow
            } else if config.enforcement == Enforcement::DryRun {
                Decision::WouldDeny
            } else {
                Decision::Deny
            };
            // The deciding rule is formatted only for a line that is written.
            if self.logs(decision) {
                ctx.reason = match verdict.deciding {
                    Some(rule) => Cow::Owned(rule.to_string()),
                    None => Cow::Borrowed("no rule allows"),
                };
            }
            if decision == Decision::Deny {
                return Verdict::Refuse(Refusal::new(
                    403,
                    Decision::Deny,
                    format!(
                        "actor is not allowed Zambda:InvokeFunction on Zambda:Function:{}",
                        target.zambda
                    ),
                ));
            }
            let held = set.roles_of(&principal);
            if !held.is_empty() {
                roles = Some(held.join(","));
            }
        }
        ctx.decision = decision;
        if identity.is_some() {
            self.state
                .metrics
                .decision_duration
                .observe(decision_started.elapsed().as_secs_f64());
        }

        // 8. the body, when its length is announced
        if let Some(len) = content_length(req) {
            if len > config.limits.max_body_bytes {
                return Verdict::Refuse(Refusal::new(
                    413,
                    Decision::BadRequest,
                    "request body too large",
                ));
            }
        }

        let path = match &config.upstream.path_template {
            Some(t) => t.render(&zambda.id, &zambda.name, target.route.as_str()),
            None => route::canonical_path(&config.route_prefix, &target.zambda, target.route),
        };
        let path = match target.query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        Verdict::Forward(Forward {
            path,
            zambda_id: zambda.id.clone(),
            zambda_name: zambda.name.clone(),
            actor: identity.as_ref().map(|i| i.subject.clone()),
            roles,
            keep_authorization: target.route == Route::Execute && config.auth.forward_authorization,
            upstream: zambda
                .upstream
                .as_ref()
                .and_then(|name| self.upstreams.get(name))
                .cloned(),
            attempts: 0,
        })
    }

    fn rate_limited(&self, route: Route) -> Refusal {
        self.state
            .metrics
            .rate_limited
            .with_label_values(&[route.as_str()])
            .inc();
        let mut r = Refusal::new(429, Decision::RateLimited, "rate limit exceeded");
        r.retry_after = true;
        r
    }

    async fn authenticate(&self, req: &RequestHeader) -> Result<Arc<authn::Identity>, Refusal> {
        let values: Vec<&[u8]> = req
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let token_given = !values.is_empty();
        let token = match authn::bearer(&values) {
            Ok(Some(token)) => token,
            Ok(None) => {
                return Err(Refusal::unauthenticated(
                    Route::Execute,
                    "bearer token required",
                    false,
                ))
            }
            Err(rejection) => return Err(self.rejection(rejection, token_given)),
        };
        self.state
            .auth
            .authenticate(token)
            .await
            .map_err(|rejection| self.rejection(rejection, true))
    }

    fn rejection(&self, rejection: Rejection, token_given: bool) -> Refusal {
        match rejection {
            Rejection::Missing => {
                Refusal::unauthenticated(Route::Execute, "bearer token required", false)
            }
            Rejection::Invalid(why) => Refusal::unauthenticated(Route::Execute, why, token_given),
            Rejection::KeysUnavailable => {
                Refusal::new(503, Decision::Unavailable, "signing keys not available yet")
            }
        }
    }

    /// Every project-id header value must equal the configured project id
    /// (when set) and each other, case-insensitively.
    fn check_project_id(&self, req: &RequestHeader) -> Result<(), &'static str> {
        let mut seen: Option<String> = None;
        for name in PROJECT_ID_HEADERS {
            for value in req.headers.get_all(name) {
                let value = std::str::from_utf8(value.as_bytes())
                    .map_err(|_| "invalid project id header")?
                    .trim()
                    .to_ascii_lowercase();
                if let Some(expected) = &self.state.config.project_id {
                    if &value != expected {
                        return Err("project id does not match");
                    }
                }
                match &seen {
                    Some(first) if first != &value => return Err("conflicting project id headers"),
                    _ => seen = Some(value),
                }
            }
        }
        Ok(())
    }

    /// The origin of a CORS preflight this proxy should answer: every
    /// preflight on a route when `cors` is configured.
    fn preflight_origin(&self, req: &RequestHeader) -> Option<String> {
        let cors = self.state.config.cors.as_ref()?;
        let origin = req.headers.get(http::header::ORIGIN)?.to_str().ok()?;
        req.headers
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
        // Answered for any origin; the CORS headers go to allowed ones only.
        let _ = cors;
        Some(origin.to_string())
    }

    /// The CORS response headers for an allowed origin.
    fn cors_headers(&self, origin: &str, h: &mut ResponseHeader, preflight: bool) -> Result<()> {
        let Some(cors) = &self.state.config.cors else {
            return Ok(());
        };
        h.insert_header("vary", "Origin")?;
        if !cors.allows(origin) {
            return Ok(());
        }
        h.insert_header("access-control-allow-origin", origin)?;
        if cors.allow_credentials {
            h.insert_header("access-control-allow-credentials", "true")?;
        }
        if preflight {
            h.insert_header("access-control-allow-methods", "POST")?;
            h.insert_header(
                "access-control-allow-headers",
                cors.allowed_headers.join(", "),
            )?;
            h.insert_header("access-control-max-age", cors.max_age_seconds.to_string())?;
        } else {
            h.insert_header("access-control-expose-headers", REQUEST_ID)?;
        }
        Ok(())
    }

    /// Writes a JSON error answer.
    async fn respond(&self, session: &mut Session, ctx: &Ctx, r: &Refusal) -> Result<()> {
        let body = error_body(&r.message, r.status, &ctx.request_id);
        let mut h = ResponseHeader::build(r.status, Some(6))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header(REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(challenge) = &r.www_authenticate {
            h.insert_header("www-authenticate", challenge.as_str())?;
        }
        if r.retry_after {
            h.insert_header("retry-after", "1")?;
        }
        if r.allow_header {
            let allow = if self.state.config.cors.is_some() {
                "POST, OPTIONS"
            } else {
                "POST"
            };
            h.insert_header("allow", allow)?;
        }
        if let Some(origin) = &ctx.cors_origin {
            self.cors_headers(origin, &mut h, false)?;
        }
        // An answer to HEAD has no body: HTTP/1 would drop it, but on
        // HTTP/2 a DATA frame after it makes the response malformed
        // (RFC 9113 §8.1.1) and the client sees no status at all.
        if session.req_header().method == http::Method::HEAD {
            return session.write_response_header(Box::new(h), true).await;
        }
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(body), true).await
    }

    async fn respond_preflight(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        origin: &str,
    ) -> Result<()> {
        let mut h = ResponseHeader::build(204, Some(8))?;
        h.insert_header("content-length", "0")?;
        h.insert_header(REQUEST_ID, ctx.request_id.as_str())?;
        self.cors_headers(origin, &mut h, true)?;
        session.write_response_header(Box::new(h), true).await
    }

    /// True when a request with this outcome gets a decision log line.
    fn logs(&self, decision: Decision) -> bool {
        match self.state.config.log.decisions {
            LogDecisions::All => true,
            LogDecisions::Denied => decision.is_denial(),
            LogDecisions::None => false,
        }
    }

    fn log_decision(&self, ctx: &Ctx, status: u16) {
        if !self.logs(ctx.decision) {
            return;
        }
        tracing::info!(
            target: "zambda_guard::decision",
            request_id = %ctx.request_id,
            route = ctx.route.map_or("none", Route::as_str),
            zambda = ctx.zambda.as_deref().unwrap_or("unknown"),
            actor = ctx.actor.as_deref().unwrap_or("-"),
            decision = ctx.decision.as_str(),
            status,
            reason = %ctx.reason,
            latency_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            "decision"
        );
    }
}

#[async_trait]
impl ProxyHttp for Guard {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            request_id: String::new(),
            route: None,
            zambda: None,
            actor: None,
            decision: Decision::None,
            reason: Cow::Borrowed(""),
            forward: None,
            body_bytes: 0,
            cors_origin: None,
        }
    }

    /// Bounds the downstream connection's idle keep-alive and reads before
    /// anything else runs.
    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        let limits = &self.state.config.limits;
        session.set_keepalive(Some(limits.downstream_idle_timeout.as_secs()));
        session.set_read_timeout(Some(limits.downstream_read_timeout));
        Ok(())
    }

    /// Decides the request (SPEC §1 checks 1–8); answers refusals here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.request_id = request_id(session.req_header());
        if self.state.config.cors.is_some() {
            ctx.cors_origin = session
                .req_header()
                .headers
                .get(http::header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .map(String::from);
        }
        match self.check(session, ctx).await {
            Verdict::Forward(forward) => {
                ctx.forward = Some(forward);
                Ok(false)
            }
            Verdict::Refuse(refusal) => {
                ctx.decision = refusal.decision;
                if ctx.reason.is_empty() || refusal.decision != Decision::Deny {
                    ctx.reason = refusal.message.clone();
                }
                // Read a small announced body first, so the connection can
                // carry the next request; anything else closes it.
                if refusal.status != 413
                    && content_length(session.req_header()).is_some_and(|n| n <= DRAIN_LIMIT)
                {
                    session.drain_request_body().await?;
                }
                self.respond(session, ctx, &refusal).await?;
                Ok(true)
            }
            Verdict::Preflight(origin) => {
                self.respond_preflight(session, ctx, &origin).await?;
                Ok(true)
            }
        }
    }

    /// Counts body bytes for bodies whose length was not announced.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > self.state.config.limits.max_body_bytes {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body too large",
                ));
            }
        }
        Ok(())
    }

    /// The configured upstream, with every timeout set.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(forward) = ctx.forward.as_mut() else {
            // Unreachable by construction: request_filter answers every
            // request it does not forward. Refuse rather than forward.
            return Err(Error::explain(
                ErrorType::HTTPStatus(500),
                "request not decided",
            ));
        };
        forward.attempts += 1;
        let upstream = &self.state.config.upstream;
        let mut peer = match &forward.upstream {
            Some(balancer) => match balancer.select(b"", 256) {
                Some(backend) => HttpPeer::new(backend, false, String::new()),
                None => {
                    return Err(Error::explain(
                        ErrorType::HTTPStatus(503),
                        "no healthy upstream",
                    ))
                }
            },
            None => {
                let mut peer = HttpPeer::new(upstream.address, upstream.tls, upstream.sni.clone());
                crate::tls::configure_peer(&mut peer, upstream);
                peer
            }
        };
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.total_connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        peer.options.write_timeout = Some(upstream.read_timeout);
        peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    /// Builds the canonical upstream request: path, identity headers,
    /// forwarding headers; removes client look-alikes of identity headers.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(forward) = &ctx.forward else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(500),
                "request not decided",
            ));
        };
        let uri: http::Uri = forward
            .path
            .parse()
            .map_err(|_| Error::explain(ErrorType::HTTPStatus(500), "bad upstream path"))?;
        up.set_uri(uri);

        // Empty, and so never allocated, unless a look-alike was sent.
        let spoofed: Vec<http::HeaderName> = up
            .headers
            .keys()
            .filter(|name| is_reserved_header(name.as_str()))
            .cloned()
            .collect();
        for name in spoofed {
            up.remove_header(&name);
        }
        if !forward.keep_authorization {
            up.remove_header(&http::header::AUTHORIZATION);
        }
        // A Zambda call is a plain request: never ask the backend to switch
        // protocols (an upgraded tunnel would carry unchecked requests).
        up.remove_header(&http::header::UPGRADE);
        up.insert_header(ZAMBDA_ID, forward.zambda_id.as_str())?;
        up.insert_header(ZAMBDA_NAME, forward.zambda_name.as_str())?;
        if let Some(actor) = &forward.actor {
            up.insert_header(ZAMBDA_ACTOR, actor.as_str())?;
        }
        if let Some(roles) = &forward.roles {
            up.insert_header(ZAMBDA_ROLES, roles.as_str())?;
        }
        up.insert_header(REQUEST_ID, ctx.request_id.as_str())?;

        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let forwarded_for = forwarded_for(up, client);
        if let Some(xff) = forwarded_for {
            up.insert_header("x-forwarded-for", xff)?;
        }
        // The proxy listener is HTTPS exactly when `tls` is configured.
        let proto = if self.state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        up.insert_header("x-forwarded-proto", proto)?;
        Ok(())
    }

    /// Counts the backend's answer by status class.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "the backend switched protocols",
            ));
        }
        let class = match resp.status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.state
            .metrics
            .upstream_responses
            .with_label_values(&[class])
            .inc();
        Ok(())
    }

    /// Every response carries the request id (and CORS headers when due).
    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        resp.insert_header(REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(origin) = &ctx.cors_origin {
            self.cors_headers(origin, resp, false)?;
        }
        Ok(())
    }

    /// A named upstream fails over to its next address when a connection
    /// cannot be made (nothing was sent, so retrying a POST is safe).
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(forward) = &ctx.forward {
            if let Some(balancer) = &forward.upstream {
                let addresses = balancer.backends().get_backend().len();
                e.set_retry(forward.attempts < addresses);
            }
        }
        e
    }

    /// Upstream and body-size failures get the JSON error shape too.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (code, message) = match e.etype() {
            ErrorType::HTTPStatus(413) => (413, "request body too large"),
            ErrorType::HTTPStatus(503) => (503, "no healthy upstream"),
            ErrorType::HTTPStatus(code) => (*code, "request failed"),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &pingora::ErrorSource::Upstream =>
            {
                (504, "upstream timed out")
            }
            _ => match e.esource() {
                pingora::ErrorSource::Upstream => (502, "upstream unavailable"),
                pingora::ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        (0, "")
                    }
                    _ => (400, "bad request"),
                },
                _ => (500, "internal error"),
            },
        };
        if ctx.forward.is_some() && e.esource() == &pingora::ErrorSource::Upstream {
            self.state
                .metrics
                .upstream_responses
                .with_label_values(&["error"])
                .inc();
        }
        if code > 0 && session.response_written().is_none() {
            if ctx.request_id.is_empty() {
                ctx.request_id = request_id(session.req_header());
            }
            let refusal = Refusal::new(code, ctx.decision, message);
            if let Err(err) = self.respond(session, ctx, &refusal).await {
                tracing::debug!("could not send error response: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Marks a kept-alive connection as carrying a later request (see
    /// `server::HeadTimeout`).
    fn persist_connection_context(
        &self,
        _session: &Session,
        _ctx: &Ctx,
    ) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        Some(Box::new(()))
    }

    /// Expected refusals are not errors worth a log line each.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, e: &Error) -> bool {
        matches!(e.etype(), ErrorType::HTTPStatus(_))
    }

    /// Counts the request and writes its decision log line (SPEC §6).
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.map_or("none", Route::as_str);
        let decision = match ctx.decision {
            // a CORS preflight is answered without a token or a policy
            Decision::None => Decision::Public,
            d => d,
        };
        let zambda = ctx.zambda.as_deref().unwrap_or("unknown");
        let m = &self.state.metrics;
        m.requests
            .with_label_values(&[route, decision.as_str(), zambda])
            .inc();
        m.request_duration
            .with_label_values(&[route, decision.as_str()])
            .observe(ctx.started.elapsed().as_secs_f64());
        self.log_decision(ctx, status);
    }
}

/// The raw request head of an HTTP/1 request, as received. pingora's parsed
/// target has already lost what the request line carried after a `#`, and
/// a fragment in a request target is malformed: judge the bytes themselves.
fn raw_request_head(session: &Session) -> Option<Bytes> {
    session
        .as_downstream()
        .as_http1()
        .map(|h1| h1.get_headers_raw_bytes())
}

/// The request-target of an HTTP/1 request line (`METHOD SP target SP version`).
fn request_line_target(head: &[u8]) -> Option<&[u8]> {
    let line_end = head.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = &head[..line_end];
    let start = line.iter().position(|&b| b == b' ')? + 1;
    let len = line[start..].iter().position(|&b| b == b' ')?;
    Some(&line[start..start + len])
}

/// The client's request id when it is a reasonable token, else a new UUID.
fn request_id(req: &RequestHeader) -> String {
    let mut values = req.headers.get_all(REQUEST_ID).iter();
    if let (Some(v), None) = (values.next(), values.next()) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c))
        {
            if let Ok(s) = v.to_str() {
                return s.to_string();
            }
        }
    }
    uuid::Uuid::new_v4().to_string()
}

/// True for a client header that could pose as one the proxy sets or
/// checks: the identity headers and the request id in any case or with `_`
/// or `.` in place of `-`, anything else under `x-zambda-`, and `_`/`.`
/// spellings of the project-id headers (which some backends read as the
/// real ones, though the proxy never checked them). Header names arrive
/// lower-cased. Runs for every forwarded header, so it compares in place.
fn is_reserved_header(name: &str) -> bool {
    let name = name.as_bytes();
    // Every reserved spelling starts with `x` and a separator.
    if name.len() < 3 || !name[0].eq_ignore_ascii_case(&b'x') || normalized(name[1]) != b'-' {
        return false;
    }
    const PREFIX: &str = "x-zambda-";
    (name.len() >= PREFIX.len() && spelled_as(&name[..PREFIX.len()], PREFIX))
        || spelled_as(name, REQUEST_ID)
        || PROJECT_ID_HEADERS
            .iter()
            .any(|real| spelled_as(name, real) && name != real.as_bytes())
}

/// A header-name byte with case and the `_`/`.` separators folded.
fn normalized(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// True when `name` is `want` (lower case, `-` separators) up to case and
/// separator spelling.
fn spelled_as(name: &[u8], want: &str) -> bool {
    name.len() == want.len()
        && name
            .iter()
            .zip(want.bytes())
            .all(|(&b, w)| normalized(b) == w)
}

/// `X-Forwarded-For` with the client address appended to what was received.
fn forwarded_for(up: &RequestHeader, client: Option<IpAddr>) -> Option<String> {
    use std::fmt::Write as _;
    let mut all = String::new();
    let previous = up
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    for hop in previous {
        if !all.is_empty() {
            all.push_str(", ");
        }
        all.push_str(hop);
    }
    if let Some(ip) = client {
        if !all.is_empty() {
            all.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(all, "{ip}");
    }
    (!all.is_empty()).then_some(all)
}

fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `{"message": ..., "code": ..., "request_id": ...}`, the shape the Oystehr
/// SDK reads.
pub fn error_body(message: &str, code: u16, request_id: &str) -> Bytes {
    let body = serde_json::json!({
        "message": message,
        "code": code,
        "request_id": request_id,
    });
    Bytes::from(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_headers_in_every_spelling() {
        for name in [
            "x-zambda-id",
            "x_zambda_id",
            "x.zambda.actor",
            "x-zambda_roles",
            "x-zambda-anything",
            "x_oystehr_request_id",
            "x-oystehr-request-id",
            "x_oystehr_project_id",
            "x.zapehr.project.id",
            "X-Zambda-Id",
            "x-zambda-",
        ] {
            assert!(is_reserved_header(name), "{name}");
        }
        for name in [
            "x-zambdaid",
            "authorization",
            "x-request-id",
            "zambda-id",
            "x-oystehr-project-id",
            "x-zapehr-project-id",
            "x",
            "x-",
            "x-zambda",
            "x-oystehr-request-idx",
            "x-oystehr-project",
            "y-zambda-id",
        ] {
            assert!(!is_reserved_header(name), "{name}");
        }
    }

    #[test]
    fn request_line_target_is_the_raw_second_field() {
        let head = b"POST /v1/zambda/a/execute#frag HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(
            request_line_target(head),
            Some(&b"/v1/zambda/a/execute#frag"[..])
        );
        assert_eq!(request_line_target(b"GET\r\n\r\n"), None);
    }

    #[test]
    fn error_body_shape() {
        let body: serde_json::Value =
            serde_json::from_slice(&error_body("forbidden", 403, "r-1")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"message": "forbidden", "code": 403, "request_id": "r-1"})
        );
    }
}
