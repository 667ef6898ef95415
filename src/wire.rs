//! What a door reads off a pingora request for the gate: the raw request
//! target, and the header values of [`gate::Facts`]. The proxy and the
//! decision service read requests through here, so they read them alike.

use bytes::Bytes;
use http::HeaderName;
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;

use std::net::IpAddr;

use crate::client::Trusted;
use crate::gate::record::{Answer, Record};
use crate::gate::{self, Facts, Gate, Values};
use crate::route::Route;
use crate::state::State;
use crate::telemetry::{RequestTrace, Summary};

/// The raw request head of an HTTP/1 request, as received.
pub fn raw_head(session: &ServerSession) -> Option<Bytes> {
    session.as_http1().map(|h1| h1.get_headers_raw_bytes())
}

/// The request target as received: from the HTTP/1 request line where
/// there is one, because pingora's parsed target has already lost what the
/// line carried after a `#` (and a fragment in a target is malformed).
pub fn raw_target<'a>(head: Option<&'a [u8]>, req: &'a RequestHeader) -> &'a [u8] {
    head.and_then(request_line_target)
        .unwrap_or_else(|| req.raw_path())
}

/// The request-target of an HTTP/1 request line (`METHOD SP target SP version`).
pub fn request_line_target(head: &[u8]) -> Option<&[u8]> {
    let line_end = head.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = &head[..line_end];
    let start = line.iter().position(|&b| b == b' ')? + 1;
    let len = line[start..].iter().position(|&b| b == b' ')?;
    Some(&line[start..start + len])
}

/// The announced body length.
pub fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Every value of a header.
pub fn values<'a>(req: &'a RequestHeader, name: &HeaderName) -> Values<'a> {
    Values::gather(req.headers.get_all(name).iter().map(|v| v.as_bytes()))
}

/// The header names read on every request, parsed once: a lookup by a
/// `&str` name validates and lower-cases it again each time.
pub static X_FORWARDED_FOR_NAME: HeaderName = HeaderName::from_static(X_FORWARDED_FOR);
static PROJECT_ID_NAMES: [HeaderName; 2] = [
    HeaderName::from_static(gate::PROJECT_ID_HEADERS[0]),
    HeaderName::from_static(gate::PROJECT_ID_HEADERS[1]),
];
static REQUEST_ID_NAME: HeaderName = HeaderName::from_static(gate::REQUEST_ID);
static X_REQUEST_ID_NAME: HeaderName = HeaderName::from_static(gate::X_REQUEST_ID);

/// The facts of a request whose method and target are given (they come
/// from the request itself on `listen`, from where `authz.source` says on
/// `authz_listen`); every other fact is read off the request as received.
pub fn facts<'a>(
    session: &ServerSession,
    req: &'a RequestHeader,
    head: Option<&[u8]>,
    method: &'a http::Method,
    target: &'a [u8],
    trusted: &Trusted,
) -> Facts<'a> {
    let preflight = method == http::Method::OPTIONS;
    Facts {
        method,
        target,
        // Behind a trusted load balancer, the address it speaks for.
        client: peer(session).map(|peer| {
            trusted.client(peer, || {
                req.headers
                    .get_all(&X_FORWARDED_FOR_NAME)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect()
            })
        }),
        authorization: values(req, &http::header::AUTHORIZATION),
        project_ids: values(req, &PROJECT_ID_NAMES[0]).chain(values(req, &PROJECT_ID_NAMES[1])),
        // Only a preflight needs these (and they cost a lookup each).
        origin: preflight
            .then(|| req.headers.get(http::header::ORIGIN))
            .flatten()
            .and_then(|o| o.to_str().ok()),
        preflight_method: preflight
            && req
                .headers
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD),
        content_length: content_length(req),
        // From the bytes received: pingora drops `Content-Length` from the
        // parsed header when `Transfer-Encoding` is present too. A parsed
        // one was received, so the head is scanned only when there is none.
        has_content_length: req.headers.contains_key(http::header::CONTENT_LENGTH)
            || head.is_some_and(|head| head_has_header(head, b"content-length")),
        transfer_encoding: values(req, &http::header::TRANSFER_ENCODING),
        traced: false,
    }
}

/// `X-Forwarded-For`, read as one list across its headers.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The socket peer's address (IPv4-mapped IPv6 read as IPv4).
pub fn peer(session: &ServerSession) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical())
}

/// The spans of a request that arrived at `started`, when traces are on:
/// nothing is built otherwise. A socket peer in `trusted_proxies` decides
/// whether the trace is sampled; anyone else's flag is not followed.
pub fn begin_trace(
    state: &State,
    session: &ServerSession,
    started: std::time::Instant,
) -> Option<RequestTrace> {
    let telemetry = state.telemetry.as_ref()?;
    let req = session.req_header();
    let trusted = peer(session).is_some_and(|p| state.config.trusted_proxies.contains(p));
    Some(telemetry.begin(&req.method, &req.headers, trusted, started))
}

/// What every door does last: counts and logs the decided request (its
/// line written inside its trace) and ends its spans.
pub fn finish(gate: &Gate, trace: Option<RequestTrace>, record: &Record, answer: &Answer<'_>) {
    let Some(trace) = trace else {
        gate.finish(record, answer);
        return;
    };
    trace.log.in_scope(|| gate.finish(record, answer));
    let upstream = answer.upstream;
    trace.finish(&Summary {
        method: answer.method,
        route: record.route.map(Route::as_str),
        status: answer.status,
        zambda: record.zambda.as_deref(),
        decision: record.label.as_str(),
        rule: record.by_rule.then_some(&*record.reason),
        issuer: record.issuer.as_deref(),
        actor: record.actor.as_deref(),
        upstream_status: upstream.and_then(|u| u.status),
        upstream_time: upstream.map(|u| u.time),
        token_check: record.token_check,
        jwks_wait: record.jwks_wait,
    });
}

/// Whether an HTTP/1 request head has a header of this (lower-case) name.
/// The parser has already refused malformed header lines, so a line's name
/// is what comes before its first colon.
pub fn head_has_header(head: &[u8], name: &[u8]) -> bool {
    head.split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| line.iter().position(|&b| b == b':').map(|at| &line[..at]))
        .any(|found| found.eq_ignore_ascii_case(name))
}

/// The request id the answer carries: the client's when reasonable.
pub fn request_id(req: &RequestHeader) -> String {
    let all = |name: &HeaderName| req.headers.get_all(name).into_iter().map(|v| v.as_bytes());
    gate::request_id(all(&REQUEST_ID_NAME), all(&X_REQUEST_ID_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn head_has_header_reads_names_only() {
        let head = b"POST /content-length: HTTP/1.1\r\nHost: x\r\nX-Note: content-length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(head_has_header(head, b"content-length"));
        assert!(head_has_header(head, b"x-note"));
        assert!(!head_has_header(head, b"transfer-encoding"));
        let head = b"POST / HTTP/1.1\nHost: x\nX-Note: content-length: 1\n\n";
        assert!(!head_has_header(head, b"content-length"));
        assert!(head_has_header(head, b"host"));
    }
}
