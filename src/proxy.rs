//! The pingora [`ProxyHttp`] glue around the [`Gate`]: facts out of the
//! session, the outcome onto the wire.
//!
//! [`Guard::request_filter`] reads the request's [`gate::Facts`], asks the gate,
//! and either answers here (a refusal or a CORS preflight, with the JSON
//! body and headers the gate's table gives) or keeps the gate's
//! [`Forward`] in the context. The upstream phases build the one canonical
//! request from that `Forward` alone, and refuse to run without one, so a
//! missed branch fails closed. No check of SPEC §1 lives here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use crate::gate::record::{Answer, Listener, Upstream};
use crate::gate::{self, Forward, Gate, Outcome, Record, Refusal};
use crate::state::State;
use crate::telemetry::{self, RequestTrace};
use crate::wire;
use tracing::Instrument;

const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// A trusted peer's `X-Forwarded-Proto`, when it sent exactly one that is
/// `http` or `https` (in any case).
fn forwarded_proto<'a>(
    mut values: impl Iterator<Item = &'a http::HeaderValue>,
) -> Option<&'static str> {
    let (Some(one), None) = (values.next(), values.next()) else {
        return None;
    };
    let one = one.as_bytes().trim_ascii();
    if one.eq_ignore_ascii_case(b"https") {
        Some("https")
    } else if one.eq_ignore_ascii_case(b"http") {
        Some("http")
    } else {
        None
    }
}

/// Refused requests with a body up to this size keep their connection.
const DRAIN_LIMIT: u64 = 64 * 1024;

pub use crate::upstreams::Balancer;

/// The proxy; one per server, shared by every request.
pub struct Guard {
    gate: Gate,
    /// The named upstreams, by name.
    upstreams: HashMap<String, Arc<Balancer>>,
}

impl Guard {
    pub fn new(state: Arc<State>, upstreams: HashMap<String, Arc<Balancer>>) -> Self {
        Guard {
            gate: Gate::new(state),
            upstreams,
        }
    }

    fn state(&self) -> &State {
        self.gate.state()
    }
}

/// What a request carries between the phases.
pub struct Ctx {
    started: Instant,
    request_id: String,
    /// What the gate decided, for the metrics and the log.
    record: Option<Record>,
    /// The gate's permission to forward, and how.
    forward: Option<Forward>,
    /// The named upstream of `forward`, when it has one.
    balancer: Option<Arc<Balancer>>,
    /// Connection attempts so far (failover to the next address).
    attempts: usize,
    /// Where this request starts in the default upstream's addresses.
    start: Option<usize>,
    body_bytes: u64,
    /// Set when `cors` is configured and the request has an `Origin`.
    cors_origin: Option<String>,
    /// The client's address, as the gate judged it.
    client: Option<std::net::IpAddr>,
    /// The request's spans, when traces are on.
    trace: Option<RequestTrace>,
    /// When the upstream exchange began (the first backend chosen).
    upstream_started: Option<Instant>,
    /// The backend's status, once its response head came.
    upstream_status: Option<u16>,
    /// The upstream exchange, once it ended.
    upstream: Option<Upstream>,
}

impl Guard {
    /// Ends the upstream exchange, once: its time into
    /// `upstream_duration_seconds` and its span closed.
    fn end_upstream(&self, ctx: &mut Ctx) {
        let (Some(started), None) = (ctx.upstream_started, ctx.upstream) else {
            return;
        };
        let upstream = Upstream {
            status: ctx.upstream_status,
            time: started.elapsed(),
        };
        ctx.upstream = Some(upstream);
        let name = ctx.forward.as_ref().and_then(|f| f.upstream.as_deref());
        self.state().metrics.observe_upstream_duration(
            name,
            Upstream::class(upstream.status),
            upstream.time.as_secs_f64(),
        );
        if let Some(trace) = &mut ctx.trace {
            trace.end_upstream(upstream.status);
        }
    }
}

impl Guard {
    /// Writes a JSON refusal with the headers the gate's table gives.
    async fn respond(&self, session: &mut Session, ctx: &Ctx, r: &Refusal) -> Result<()> {
        let body = r.body(&ctx.request_id);
        let mut h = ResponseHeader::build(r.status(), Some(6))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header(gate::REQUEST_ID, ctx.request_id.as_str())?;
        for (name, value) in r.headers(self.state().config.cors.is_some()) {
            h.insert_header(name, value.as_ref())?;
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

    async fn respond_preflight(&self, session: &mut Session, ctx: &Ctx) -> Result<()> {
        let mut h = ResponseHeader::build(204, Some(8))?;
        h.insert_header("content-length", "0")?;
        h.insert_header(gate::REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(origin) = &ctx.cors_origin {
            self.cors_headers(origin, &mut h, true)?;
        }
        session.write_response_header(Box::new(h), true).await
    }

    fn cors_headers(&self, origin: &str, h: &mut ResponseHeader, preflight: bool) -> Result<()> {
        for (name, value) in self.gate.cors_headers(origin, preflight) {
            h.insert_header(name, value)?;
        }
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Guard {
    type CTX = Ctx;

    /// No downstream modules. pingora's default adds a response compression
    /// module, switched off, that still builds its state for every request;
    /// zambda-guard passes the backend's body on as it came.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            request_id: String::new(),
            record: None,
            forward: None,
            balancer: None,
            attempts: 0,
            start: None,
            body_bytes: 0,
            cors_origin: None,
            client: None,
            trace: None,
            upstream_started: None,
            upstream_status: None,
            upstream: None,
        }
    }

    /// Bounds the downstream connection's idle keep-alive and reads before
    /// anything else runs. A connection whose keep-alive is already off
    /// stays off: the client asked to close it, or the server is shutting
    /// down and the answer must say `Connection: close`.
    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        let limits = &self.state().config.limits;
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(limits.downstream_idle_timeout.as_secs()));
        }
        session.set_read_timeout(Some(limits.downstream_read_timeout));
        Ok(())
    }

    /// Asks the gate (SPEC §1 checks 1–8); answers refusals and preflights
    /// here, keeps a forward for the upstream phases.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let req = session.req_header();
        ctx.request_id = wire::request_id(req);
        if self.state().config.cors.is_some() {
            ctx.cors_origin = req
                .headers
                .get(http::header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .map(String::from);
        }
        let downstream = session.as_downstream();
        ctx.trace = wire::begin_trace(self.state(), downstream, ctx.started);
        let head = wire::raw_head(downstream);
        let target = wire::raw_target(head.as_deref(), req);
        let trusted = &self.state().config.trusted_proxies;
        let mut facts = wire::facts(
            downstream,
            req,
            head.as_deref(),
            &req.method,
            target,
            trusted,
        );
        ctx.client = facts.client;
        let decided = match &ctx.trace {
            None => self.gate.decide(&facts).await,
            Some(trace) => {
                facts.traced = trace.recording();
                let log = trace.log.clone();
                self.gate.decide(&facts).instrument(log).await
            }
        };
        ctx.record = Some(decided.record);
        match decided.outcome {
            Outcome::Forward(forward) => {
                if let Some(name) = &forward.upstream {
                    let Some(balancer) = self.upstreams.get(name) else {
                        // Refused at load time; fail closed all the same.
                        let refusal = Refusal::Internal("upstream not configured");
                        self.respond(session, ctx, &refusal).await?;
                        return Ok(true);
                    };
                    ctx.balancer = Some(Arc::clone(balancer));
                }
                ctx.forward = Some(forward);
                Ok(false)
            }
            Outcome::Refuse(refusal) => {
                if refusal.closes_connection() {
                    // Said before the answer is written, so that it says
                    // `Connection: close`; the body is never read.
                    session.set_keepalive(None);
                } else if refusal != Refusal::BodyTooLarge
                    && wire::content_length(session.req_header()).is_some_and(|n| n <= DRAIN_LIMIT)
                {
                    // Read a small announced body first, so the connection
                    // can carry the next request; anything else closes it.
                    session.drain_request_body().await?;
                }
                self.respond(session, ctx, &refusal).await?;
                Ok(true)
            }
            Outcome::Preflight => {
                self.respond_preflight(session, ctx).await?;
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
            if ctx.body_bytes > self.state().config.limits.max_body_bytes {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body too large",
                ));
            }
        }
        Ok(())
    }

    /// The configured upstream, with every timeout set.
    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if ctx.forward.is_none() {
            // Unreachable by construction: request_filter answers every
            // request it does not forward. Refuse rather than forward.
            return Err(Error::explain(
                ErrorType::HTTPStatus(500),
                "request not decided",
            ));
        }
        ctx.attempts += 1;
        if ctx.upstream_started.is_none() {
            ctx.upstream_started = Some(Instant::now());
            if let Some(trace) = &mut ctx.trace {
                trace.begin_upstream(&session.req_header().method);
            }
        }
        let upstream = &self.state().config.upstream;
        let mut peer = match &ctx.balancer {
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
                // Round robin over every address the name stands for now;
                // a retry (the connection could not be made) takes the next.
                let addresses = upstream.address.addresses();
                let start = *ctx
                    .start
                    .get_or_insert_with(|| upstream.address.next_start());
                let Some(&address) =
                    addresses.get((start + ctx.attempts - 1) % addresses.len().max(1))
                else {
                    return Err(Error::explain(
                        ErrorType::HTTPStatus(502),
                        "upstream has no address",
                    ));
                };
                let mut peer = HttpPeer::new(address, upstream.tls, upstream.sni.clone());
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
            .filter(|name| gate::is_reserved(name.as_str()))
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
        up.insert_header(gate::ZAMBDA_ID, forward.zambda_id.as_str())?;
        up.insert_header(gate::ZAMBDA_NAME, forward.zambda_name.as_str())?;
        if let Some(actor) = &forward.actor {
            up.insert_header(gate::ZAMBDA_ACTOR, actor.as_str())?;
        }
        if let Some(roles) = &forward.roles {
            up.insert_header(gate::ZAMBDA_ROLES, roles.as_str())?;
        }
        up.insert_header(gate::REQUEST_ID, ctx.request_id.as_str())?;

        // The chain goes on with the socket peer, not the client the walk
        // found: the backend sees every hop, as Envoy and HAProxy send it.
        let peer = wire::peer(session.as_downstream());
        let received = up
            .headers
            .get_all(&wire::X_FORWARDED_FOR_NAME)
            .iter()
            .map(|v| v.as_bytes());
        let forwarded_for = gate::forwarded_for(received, peer);
        if let Some(xff) = forwarded_for {
            up.insert_header(wire::X_FORWARDED_FOR, xff)?;
        }
        // A trusted load balancer knows the scheme its client used; anyone
        // else gets the scheme of this listener, which is HTTPS exactly
        // when `tls` is configured.
        let config = &self.state().config;
        let own = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let proto = match peer {
            Some(peer) if config.trusted_proxies.contains(peer) => {
                forwarded_proto(up.headers.get_all(X_FORWARDED_PROTO).iter()).unwrap_or(own)
            }
            _ => own,
        };
        // A static value: no copy of the scheme per request.
        up.insert_header(X_FORWARDED_PROTO, http::HeaderValue::from_static(proto))?;
        // A traced request goes on as a child of the upstream span; without
        // traces, the client's trace headers pass as they came.
        if let Some(trace) = &ctx.trace {
            for name in telemetry::TRACE_HEADERS {
                up.remove_header(name);
            }
            for (name, value) in trace.upstream_headers() {
                up.insert_header(name, value)?;
            }
        }
        Ok(())
    }

    /// Counts the backend's answer by status class.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "the backend switched protocols",
            ));
        }
        let status = resp.status.as_u16();
        ctx.upstream_status = Some(status);
        self.state()
            .metrics
            .count_upstream_response(Upstream::class(Some(status)));
        Ok(())
    }

    /// The upstream exchange ends with the last byte of the backend's body.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if end_of_stream {
            self.end_upstream(ctx);
        }
        Ok(None)
    }

    /// Every response carries the request id (and CORS headers when due).
    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        resp.insert_header(gate::REQUEST_ID, ctx.request_id.as_str())?;
        if let Some(origin) = &ctx.cors_origin {
            self.cors_headers(origin, resp, false)?;
        }
        Ok(())
    }

    /// An upstream with several addresses fails over to its next address
    /// when a connection cannot be made (nothing was sent, so retrying a
    /// POST is safe), until each was tried once.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let addresses = match &ctx.balancer {
            Some(balancer) => balancer.backends().get_backend().len(),
            None => self.state().config.upstream.address.addresses().len(),
        };
        e.set_retry(ctx.attempts < addresses);
        e
    }

    /// Upstream and body-size failures get the JSON error shape too.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let refusal = match failure(e) {
            Some(refusal) => refusal,
            None => {
                // The client went away: nothing to answer.
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                };
            }
        };
        if ctx.forward.is_some() && e.esource() == &pingora::ErrorSource::Upstream {
            self.state().metrics.count_upstream_response("error");
        }
        if ctx.record.is_none() {
            ctx.record = Some(Record::refused(&refusal));
        }
        if session.response_written().is_none() {
            // The connection is not reused after this (see below): the
            // answer must not announce it as kept alive.
            session.set_keepalive(None);
            if ctx.request_id.is_empty() {
                ctx.request_id = wire::request_id(session.req_header());
            }
            if let Err(err) = self.respond(session, ctx, &refusal).await {
                tracing::debug!("could not send error response: {err}");
            }
        }
        FailToProxy {
            error_code: refusal.status(),
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

    /// Counts the request, writes its decision line (the access log, SPEC
    /// §9) and ends its spans.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        // An exchange cut short (an error, a body-less answer) ends here.
        self.end_upstream(ctx);
        let Some(record) = &ctx.record else {
            // Answered by pingora's own parser before any hook ran.
            return;
        };
        let downstream = session.as_downstream();
        let answer = Answer {
            listener: Listener::Proxy,
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            request_id: &ctx.request_id,
            elapsed: ctx.started.elapsed(),
            method: session.req_header().method.as_str(),
            client: ctx.client,
            upstream: ctx.upstream,
            bytes_in: downstream.body_bytes_read() as u64,
            bytes_out: downstream.body_bytes_sent() as u64,
        };
        wire::finish(&self.gate, ctx.trace.take(), record, &answer);
    }
}

/// The refusal an error met while proxying comes to, or `None` when the
/// client went away and nothing can be answered.
fn failure(e: &Error) -> Option<Refusal> {
    use pingora::ErrorSource;
    Some(match e.etype() {
        ErrorType::HTTPStatus(413) => Refusal::BodyTooLarge,
        ErrorType::HTTPStatus(503) => Refusal::NoHealthyUpstream,
        ErrorType::HTTPStatus(502) => Refusal::UpstreamUnavailable,
        ErrorType::HTTPStatus(400) => Refusal::BadRequest,
        ErrorType::HTTPStatus(_) => Refusal::Internal("request failed"),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            Refusal::UpstreamTimeout
        }
        _ => match e.esource() {
            ErrorSource::Upstream => Refusal::UpstreamUnavailable,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    return None
                }
                _ => Refusal::BadRequest,
            },
            _ => Refusal::Internal("internal error"),
        },
    })
}
