//! What a decided request comes to: forward it, refuse it, or answer a CORS
//! preflight — and the one table that turns a refusal into its HTTP status,
//! its metric label, its headers and its JSON body.
//!
//! Every status the proxy answers by itself is written in [`Refusal::status`]
//! and nowhere else; every `decision` label in [`Refusal::label`] and
//! [`Pass::label`]. The proxy and any other door only copy these onto the
//! wire.

use std::borrow::Cow;

use bytes::Bytes;

use crate::route::{self, Route};

/// The realm of every `WWW-Authenticate` challenge.
const REALM: &str = "Bearer realm=\"zambda-guard\"";

/// The outcome of [`super::Gate::decide`].
#[derive(Debug)]
pub enum Outcome {
    /// Send the request upstream, exactly as described.
    Forward(Forward),
    /// Answer here; the request never reaches the upstream.
    Refuse(Refusal),
    /// A CORS preflight: answer 204 with the CORS headers (SPEC §4).
    Preflight,
}

/// How a request that passed goes upstream. Built only by the gate, and only
/// after every check of SPEC §1 passed: holding one is the permission to
/// forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The canonical upstream path with the query; never the raw target.
    pub path: String,
    pub zambda_id: String,
    pub zambda_name: String,
    /// The token's subject (`execute` only).
    pub actor: Option<String>,
    /// Every defined role the principal holds, sorted, comma separated;
    /// `None` when it holds none (or on `execute-public`).
    pub roles: Option<String>,
    /// `Authorization` goes upstream (verified, and not switched off).
    pub keep_authorization: bool,
    /// A named upstream; `None` = the default `upstream`.
    pub upstream: Option<String>,
    /// Why it passed.
    pub pass: Pass,
}

/// Why a forwarded request passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// A policy allows the actor.
    Allowed,
    /// `execute-public` of a public Zambda.
    Public,
    /// No policy allows it, but `enforcement: dry_run` forwards it.
    WouldDeny,
}

impl Pass {
    pub fn label(self) -> Label {
        match self {
            Pass::Allowed => Label::Allow,
            Pass::Public => Label::Public,
            Pass::WouldDeny => Label::WouldDeny,
        }
    }
}

/// Why a request is answered by the proxy. Refusals before forwarding come
/// from the gate; the last group happens once a forwarded request meets
/// its body or its upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A `Transfer-Encoding` other than exactly one `chunked` (501); the
    /// connection is closed.
    TransferCoding,
    /// Both `Content-Length` and `Transfer-Encoding` (400, RFC 9112 §6.1);
    /// the connection is closed.
    LengthAndCoding,
    /// The target failed the screen or matched no route (400, 414, 404).
    Target(route::Reject),
    /// A route with another method (405).
    Method,
    /// A project-id header that differs, or two that disagree (401).
    ProjectId { route: Route, why: &'static str },
    /// A rate limit was exceeded (429); the next request of the same key
    /// passes in `retry_after` seconds.
    RateLimited { retry_after: u64 },
    /// No policy set loaded yet (503).
    NoPolicies,
    /// No token, or a token that failed a check (401).
    Unauthenticated {
        why: &'static str,
        token_given: bool,
    },
    /// The token's issuer has no keys yet (503).
    KeysUnavailable,
    /// Not in the catalog, or not invocable on this route (404).
    UnknownZambda,
    /// No rule allows the actor, or a rule denies it (403). `zambda` is the
    /// id or name as the client wrote it.
    Denied { zambda: String },
    /// The body is larger than `limits.max_body_bytes` (413).
    BodyTooLarge,
    /// A named upstream with no healthy address (503).
    NoHealthyUpstream,
    /// The upstream could not be reached or broke off (502).
    UpstreamUnavailable,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
    /// The downstream request broke the protocol mid-way (400).
    BadRequest,
    /// A state the proxy cannot be in; refused rather than forwarded (500).
    Internal(&'static str),
    /// A decision request that does not describe a request: the header
    /// `authz.source` names is missing, repeated or malformed (400).
    Described(&'static str),
}

impl Refusal {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::TransferCoding => 501,
            Refusal::LengthAndCoding => 400,
            Refusal::Target(reject) => reject.status(),
            Refusal::Method => 405,
            Refusal::ProjectId { .. } | Refusal::Unauthenticated { .. } => 401,
            Refusal::RateLimited { .. } => 429,
            Refusal::NoPolicies | Refusal::KeysUnavailable | Refusal::NoHealthyUpstream => 503,
            Refusal::UnknownZambda => 404,
            Refusal::Denied { .. } => 403,
            Refusal::BodyTooLarge => 413,
            Refusal::UpstreamUnavailable => 502,
            Refusal::UpstreamTimeout => 504,
            Refusal::BadRequest | Refusal::Described(_) => 400,
            Refusal::Internal(_) => 500,
        }
    }

    /// The `decision` label of `requests_total` (SPEC §6) for a request
    /// refused before it was forwarded.
    pub fn label(&self) -> Label {
        match self {
            Refusal::Target(route::Reject::NoRoute) | Refusal::UnknownZambda => Label::NotFound,
            Refusal::TransferCoding
            | Refusal::LengthAndCoding
            | Refusal::Target(_)
            | Refusal::BodyTooLarge
            | Refusal::BadRequest
            | Refusal::Described(_) => Label::BadRequest,
            Refusal::Method => Label::MethodNotAllowed,
            Refusal::ProjectId { .. } | Refusal::Unauthenticated { .. } => Label::Unauthenticated,
            Refusal::RateLimited { .. } => Label::RateLimited,
            Refusal::NoPolicies
            | Refusal::KeysUnavailable
            | Refusal::NoHealthyUpstream
            | Refusal::UpstreamUnavailable
            | Refusal::UpstreamTimeout
            | Refusal::Internal(_) => Label::Unavailable,
            Refusal::Denied { .. } => Label::Deny,
        }
    }

    /// The `message` of the JSON body; never any part of a token.
    pub fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Refusal::TransferCoding => "transfer-encoding other than chunked is not supported",
            Refusal::LengthAndCoding => "content-length and transfer-encoding together",
            Refusal::Target(reject) => reject.message(),
            Refusal::Method => "method not allowed",
            Refusal::ProjectId { why, .. }
            | Refusal::Unauthenticated { why, .. }
            | Refusal::Described(why) => why,
            Refusal::RateLimited { .. } => "rate limit exceeded",
            Refusal::NoPolicies => "policies not loaded yet",
            Refusal::KeysUnavailable => "signing keys not available yet",
            Refusal::UnknownZambda => "zambda not found",
            Refusal::Denied { zambda } => {
                return Cow::Owned(format!(
                    "actor is not allowed Zambda:InvokeFunction on Zambda:Function:{zambda}"
                ))
            }
            Refusal::BodyTooLarge => "request body too large",
            Refusal::NoHealthyUpstream => "no healthy upstream",
            Refusal::UpstreamUnavailable => "upstream unavailable",
            Refusal::UpstreamTimeout => "upstream timed out",
            Refusal::BadRequest => "bad request",
            Refusal::Internal(_) => "internal error",
        })
    }

    /// True when the connection must be closed after this answer: where
    /// the request's body ends is in doubt, so nothing after it can be read
    /// as a request.
    pub fn closes_connection(&self) -> bool {
        matches!(self, Refusal::TransferCoding | Refusal::LengthAndCoding)
    }

    /// `{"message": ..., "code": ..., "request_id": ...}`, the shape the
    /// Oystehr SDK reads.
    pub fn body(&self, request_id: &str) -> Bytes {
        error_body(&self.message(), self.status(), request_id)
    }

    /// The headers that come with this refusal besides the content type,
    /// length and request id: RFC 6750's challenge on `execute`, `Allow`
    /// on a 405, `Retry-After` on a 429. `cors` says whether `cors` is
    /// configured (then `OPTIONS` is allowed too).
    pub fn headers(&self, cors: bool) -> impl Iterator<Item = (&'static str, Cow<'static, str>)> {
        let challenge = match self {
            Refusal::Unauthenticated { why, token_given } => Some(challenge(why, *token_given)),
            Refusal::ProjectId {
                route: Route::Execute,
                ..
            } => Some(Cow::Borrowed(REALM)),
            _ => None,
        };
        let allow = matches!(self, Refusal::Method).then_some(Cow::Borrowed(if cors {
            "POST, OPTIONS"
        } else {
            "POST"
        }));
        let retry = match self {
            Refusal::RateLimited { retry_after } => Some(Cow::Owned(retry_after.to_string())),
            _ => None,
        };
        [
            challenge.map(|v| ("www-authenticate", v)),
            allow.map(|v| ("allow", v)),
            retry.map(|v| ("retry-after", v)),
        ]
        .into_iter()
        .flatten()
    }
}

/// 401's challenge: `error="invalid_token"` and a description only when a
/// token was presented (RFC 6750 §3.1).
fn challenge(why: &str, token_given: bool) -> Cow<'static, str> {
    if token_given {
        Cow::Owned(format!(
            "{REALM}, error=\"invalid_token\", error_description=\"{why}\""
        ))
    } else {
        Cow::Borrowed(REALM)
    }
}

/// `{"message": ..., "code": ..., "request_id": ...}`.
fn error_body(message: &str, code: u16, request_id: &str) -> Bytes {
    let body = serde_json::json!({
        "message": message,
        "code": code,
        "request_id": request_id,
    });
    Bytes::from(body.to_string())
}

/// The `decision` label of SPEC §6: what became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
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
}

impl Label {
    /// How many labels there are (their discriminants are `0..COUNT`).
    pub const COUNT: usize = 10;

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Allow => "allow",
            Label::Deny => "deny",
            Label::Unauthenticated => "unauthenticated",
            Label::NotFound => "not_found",
            Label::BadRequest => "bad_request",
            Label::MethodNotAllowed => "method_not_allowed",
            Label::Unavailable => "unavailable",
            Label::Public => "public",
            Label::WouldDeny => "would_deny",
            Label::RateLimited => "rate_limited",
        }
    }

    /// True for every label but a request that was let through.
    pub fn is_denial(self) -> bool {
        !matches!(self, Label::Allow | Label::Public)
    }
}
