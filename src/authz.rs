//! The decision-only service (SPEC §8): a front proxy that users already
//! run (nginx `auth_request`, ingress-nginx `auth-url`, Traefik
//! `ForwardAuth`, Envoy and Istio `ext_authz`) asks here before it
//! forwards, and the request it describes is decided by the same
//! [`Gate`] as on `listen` — nothing is forwarded from here.
//!
//! `authz.source` names the one place the judged request is described, so
//! a client cannot pick which header is read. The answer is 200 with every
//! identity header the proxy would have sent upstream (empty where the
//! proxy would send none, so a front proxy that copies them overwrites the
//! client's), or the proxy's own refusal. nginx and ingress-nginx accept
//! only 2xx, 401 and 403 from an auth subrequest, so for their sources a
//! 429 or 5xx becomes 500 and every other refusal 403; the proxy's own
//! status always travels in `x-zambda-guard-status`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use crate::config::AuthzSource;
use crate::gate::record::{Answer, Listener};
use crate::gate::{self, Forward, Gate, Outcome, Refusal};
use crate::route;
use crate::state::State;
use crate::wire;
use tracing::Instrument;

/// The header that carries the status the proxy would have answered.
pub const STATUS_HEADER: &str = "x-zambda-guard-status";

/// A small body is read before answering, so the connection can carry
/// the next request; a larger one closes it.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// The decision service; one per server.
pub struct Authz {
    gate: Gate,
    source: AuthzSource,
    path_prefix: Option<String>,
}

impl Authz {
    /// For a state whose config has `authz_listen` set; without it the
    /// service judges the request's own method and target.
    pub fn new(state: Arc<State>) -> Self {
        let (source, path_prefix) = match &state.config.authz {
            Some(a) => (a.source, a.path_prefix.clone()),
            None => (AuthzSource::Request, None),
        };
        Authz {
            gate: Gate::new(state),
            source,
            path_prefix,
        }
    }
}

/// The request being judged: its method and its target, as the front proxy
/// described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described<'a> {
    pub method: Cow<'a, http::Method>,
    pub target: &'a [u8],
}

/// Where `source` says the judged request is: the request's own method and
/// target (less `path_prefix`), or the source's headers, each present
/// exactly once.
pub fn describe<'a>(
    source: AuthzSource,
    path_prefix: Option<&str>,
    method: &'a http::Method,
    target: &'a [u8],
    headers: &'a http::HeaderMap,
) -> Result<Described<'a>, Refusal> {
    let (method_header, target_header) = match source {
        AuthzSource::Request => {
            let target = match path_prefix {
                None => target,
                Some(prefix) => match target.strip_prefix(prefix.as_bytes()) {
                    Some(rest) if rest.first() == Some(&b'/') => rest,
                    _ => return Err(Refusal::Target(route::Reject::NoRoute)),
                },
            };
            return Ok(Described {
                method: Cow::Borrowed(method),
                target,
            });
        }
        AuthzSource::Forwarded => (&FORWARDED_METHOD, &FORWARDED_URI),
        AuthzSource::OriginalUri => (&ORIGINAL_METHOD, &ORIGINAL_URI),
        AuthzSource::OriginalUrl => (&ORIGINAL_METHOD, &ORIGINAL_URL),
    };
    let method = one(headers, method_header)?;
    let method = http::Method::from_bytes(method)
        .map_err(|_| Refusal::Described("the described method is not a method"))?;
    let target = one(headers, target_header)?;
    let target = match source {
        AuthzSource::OriginalUrl => path_of_url(target)?,
        _ => target,
    };
    Ok(Described {
        method: Cow::Owned(method),
        target,
    })
}

/// A header that describes the judged request, with its refusals.
struct SourceHeader {
    name: &'static str,
    missing: &'static str,
    repeated: &'static str,
}

const FORWARDED_METHOD: SourceHeader = SourceHeader {
    name: "x-forwarded-method",
    missing: "X-Forwarded-Method missing",
    repeated: "X-Forwarded-Method repeated",
};
const FORWARDED_URI: SourceHeader = SourceHeader {
    name: "x-forwarded-uri",
    missing: "X-Forwarded-Uri missing",
    repeated: "X-Forwarded-Uri repeated",
};
const ORIGINAL_METHOD: SourceHeader = SourceHeader {
    name: "x-original-method",
    missing: "X-Original-Method missing",
    repeated: "X-Original-Method repeated",
};
const ORIGINAL_URI: SourceHeader = SourceHeader {
    name: "x-original-uri",
    missing: "X-Original-URI missing",
    repeated: "X-Original-URI repeated",
};
const ORIGINAL_URL: SourceHeader = SourceHeader {
    name: "x-original-url",
    missing: "X-Original-URL missing",
    repeated: "X-Original-URL repeated",
};

/// The value of a header that must be there exactly once.
fn one<'a>(headers: &'a http::HeaderMap, header: &SourceHeader) -> Result<&'a [u8], Refusal> {
    let mut values = headers.get_all(header.name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => Ok(v.as_bytes()),
        (None, _) => Err(Refusal::Described(header.missing)),
        (Some(_), Some(_)) => Err(Refusal::Described(header.repeated)),
    }
}

/// The path and query of an absolute URL, byte for byte (the gate screens
/// them); a URL without a path is the root.
fn path_of_url(url: &[u8]) -> Result<&[u8], Refusal> {
    const NOT_A_URL: Refusal = Refusal::Described("X-Original-URL is not an absolute URL");
    let scheme_end = url.windows(3).position(|w| w == b"://").ok_or(NOT_A_URL)?;
    if scheme_end == 0
        || !url[..scheme_end]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
    {
        return Err(NOT_A_URL);
    }
    let after = &url[scheme_end + 3..];
    match after
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
    {
        Some(at) if after[at] == b'/' => Ok(&after[at..]),
        // `https://host?x` or `https://host#x`: no path, so no route.
        Some(_) | None => Ok(b"/"),
    }
}

/// The status a front proxy of `source` is given for the proxy's `status`.
pub fn front_status(source: AuthzSource, status: u16) -> u16 {
    if !source.is_nginx() || status < 300 || status == 401 || status == 403 {
        return status;
    }
    if status == 429 || status >= 500 {
        500
    } else {
        403
    }
}

/// The identity headers of a forward, each present, empty where the proxy
/// would send none.
fn identity(forward: &Forward, request_id: &str) -> [(&'static str, String); 5] {
    [
        (gate::ZAMBDA_ID, forward.zambda_id.clone()),
        (gate::ZAMBDA_NAME, forward.zambda_name.clone()),
        (
            gate::ZAMBDA_ACTOR,
            forward.actor.clone().unwrap_or_default(),
        ),
        (
            gate::ZAMBDA_ROLES,
            forward.roles.clone().unwrap_or_default(),
        ),
        (gate::REQUEST_ID, request_id.to_string()),
    ]
}

impl Authz {
    /// Decides the request a session describes; also says who the client
    /// is. `traced`: the request's spans are recorded.
    async fn decide(
        &self,
        session: &ServerSession,
        traced: bool,
    ) -> (gate::Decided, Option<std::net::IpAddr>) {
        let req = session.req_header();
        let head = wire::raw_head(session);
        let own_target = wire::raw_target(head.as_deref(), req);
        match describe(
            self.source,
            self.path_prefix.as_deref(),
            &req.method,
            own_target,
            &req.headers,
        ) {
            Ok(described) => {
                let trusted = &self.gate.state().config.trusted_proxies;
                let mut facts = wire::facts(
                    session,
                    req,
                    head.as_deref(),
                    &described.method,
                    described.target,
                    trusted,
                );
                facts.traced = traced;
                (self.gate.decide(&facts).await, facts.client)
            }
            Err(refusal) => (gate::Decided::refused(refusal), wire::peer(session)),
        }
    }

    /// The answer to a decision: its header (with the status a front proxy
    /// of this source accepts) and body.
    fn answer(
        &self,
        outcome: &Outcome,
        request_id: &str,
        origin: Option<&str>,
    ) -> pingora::Result<(Box<ResponseHeader>, Bytes)> {
        let (status, body) = match outcome {
            Outcome::Forward(_) => (200, Bytes::new()),
            Outcome::Preflight => (204, Bytes::new()),
            Outcome::Refuse(refusal) => (refusal.status(), refusal.body(request_id)),
        };
        let mut h = ResponseHeader::build(front_status(self.source, status), Some(10))?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header(STATUS_HEADER, status.to_string())?;
        match outcome {
            Outcome::Forward(forward) => {
                for (name, value) in identity(forward, request_id) {
                    h.insert_header(name, value)?;
                }
            }
            Outcome::Preflight => h.insert_header(gate::REQUEST_ID, request_id)?,
            Outcome::Refuse(refusal) => {
                h.insert_header(gate::REQUEST_ID, request_id)?;
                h.insert_header("content-type", "application/json")?;
                let cors = self.gate.state().config.cors.is_some();
                for (name, value) in refusal.headers(cors) {
                    h.insert_header(name, value.as_ref())?;
                }
            }
        }
        if let Some(origin) = origin {
            let preflight = matches!(outcome, Outcome::Preflight);
            for (name, value) in self.gate.cors_headers(origin, preflight) {
                h.insert_header(name, value)?;
            }
        }
        Ok((Box::new(h), body))
    }
}

#[async_trait]
impl HttpServerApp for Authz {
    /// Reads one decision request, decides it, answers, counts and logs it.
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let started = Instant::now();
        match session.read_request().await {
            Ok(true) => {}
            // The client left, or sent what pingora's parser refuses (it
            // answered that itself).
            Ok(false) | Err(_) => return None,
        }
        let limits = &self.gate.state().config.limits;
        if *shutdown.borrow() {
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(limits.downstream_idle_timeout.as_secs()));
        }
        let request_id = wire::request_id(session.req_header());
        let trace = wire::begin_trace(self.gate.state(), &session, started);
        let (decided, client) = match &trace {
            None => self.decide(&session, false).await,
            Some(trace) => {
                let traced = trace.recording();
                self.decide(&session, traced)
                    .instrument(trace.log.clone())
                    .await
            }
        };
        let origin = session
            .req_header()
            .headers
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(String::from);
        let answer = self.answer(&decided.outcome, &request_id, origin.as_deref());
        let head_request = session.req_header().method == http::Method::HEAD;
        if wire::content_length(session.req_header()).is_some_and(|n| n <= DRAIN_LIMIT) {
            if session.drain_request_body().await.is_err() {
                session.set_keepalive(None);
            }
        } else if session
            .req_header()
            .headers
            .contains_key(http::header::CONTENT_LENGTH)
            || session
                .req_header()
                .headers
                .contains_key(http::header::TRANSFER_ENCODING)
        {
            session.set_keepalive(None);
        }
        let status = match answer {
            Ok((header, body)) => {
                let status = header.status.as_u16();
                let written = match session.write_response_header(header).await {
                    Ok(()) if !body.is_empty() && !head_request => {
                        session.write_response_body(body, true).await
                    }
                    other => other,
                };
                if written.is_err() {
                    0
                } else {
                    status
                }
            }
            Err(_) => 0,
        };
        let answer = Answer {
            listener: Listener::Authz,
            status,
            request_id: &request_id,
            elapsed: started.elapsed(),
            method: session.req_header().method.as_str(),
            client,
            upstream: None,
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
        };
        wire::finish(&self.gate, trace, &decided.record, &answer);
        if status == 0 {
            return None;
        }
        let persistent = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(stream) => stream.map(|s| ReusedHttpStream::from_reusable_stream(s, persistent)),
            Err(_) => None,
        }
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        None
    }
}

#[cfg(test)]
mod tests;
