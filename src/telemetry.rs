//! OpenTelemetry traces (SPEC §9): the tracer, exported over OTLP/HTTP in
//! batches off the request path, and the spans of one request as a door
//! draws them.
//!
//! Spans are made here with the OpenTelemetry API directly, not from
//! `tracing` spans: the attributes are a fixed list written in one place
//! ([`RequestTrace::finish`]), so no log field (a subject, a message) can
//! become a span attribute by accident, and with traces off no span object
//! is ever built — a door asks `State::telemetry` (an `Option`) first.
//!
//! The gate stays free of OpenTelemetry: it notes when the token check and
//! a JWKS fetch it waited for began and ended (`Record::token_check`,
//! `Record::jwks_wait`), and their spans are drawn here after the fact.
//!
//! Export runs on the batch processor's own thread with a blocking HTTP
//! client (no tokio runtime of pingora's is borrowed); a full queue drops
//! spans rather than making a request wait.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::clock::Interval;
use crate::config::Config;

/// The service name when neither `OTEL_SERVICE_NAME` nor
/// `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const SERVICE_NAME: &str = "zambda-guard";

/// How long the exit waits for pending spans to reach the collector.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The name of the `tracing` span a door opens around a traced request:
/// its `trace_id` and `span_id` go on every log line written inside it.
pub const LOG_SPAN: &str = "request";

/// Why traces could not be set up (invalid input: exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("telemetry: {var} is not an http or https URL: {value:?}")]
    Endpoint { var: &'static str, value: String },
    #[error("telemetry: cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The tracer of a running server; absent when traces are off.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    ratio: f64,
    include_actor: bool,
    /// `{prefix}/zambda/{id}/` for `http.route`.
    route_base: Arc<str>,
}

/// Where spans go: `telemetry.otlp_endpoint` (with `/v1/traces`), else
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces`; `None` when none is set
/// or `OTEL_SDK_DISABLED` is `true`.
pub fn endpoint(
    config: &crate::config::Telemetry,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, Error> {
    let set = |var: &str| {
        env(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let (var, url) = if let Some(base) = &config.otlp_endpoint {
        ("telemetry.otlp_endpoint", format!("{base}/v1/traces"))
    } else if let Some(full) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", full)
    } else if let Some(base) = set("OTEL_EXPORTER_OTLP_ENDPOINT") {
        let base = base.trim_end_matches('/');
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("{base}/v1/traces"))
    } else {
        return Ok(None);
    };
    match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(Some(url)),
        _ => Err(Error::Endpoint { var, value: url }),
    }
}

impl Telemetry {
    /// The tracer for `config` and the process environment; `None` when
    /// traces are off.
    pub fn start(config: &Config) -> Result<Option<Telemetry>, Error> {
        let Some(url) = endpoint(&config.telemetry, |var| std::env::var(var).ok())? else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| Error::Exporter(e.to_string()))?;
        let named = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
        let named = named("OTEL_SERVICE_NAME")
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|attrs| {
                attrs
                    .split(',')
                    .any(|kv| kv.trim_start().starts_with("service.name="))
            });
        let mut resource = Resource::builder();
        if !named {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let resource = resource
            .with_attribute(KeyValue::new("service.version", crate::VERSION))
            .build();
        let ratio = config.telemetry.sample_ratio;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("zambda-guard");
        Ok(Some(Telemetry {
            provider,
            tracer,
            ratio,
            include_actor: config.telemetry.include_actor,
            route_base: format!("{}/zambda/{{id}}/", config.route_prefix).into(),
        }))
    }

    /// Sends the spans still queued, for at most [`FLUSH_TIMEOUT`], and
    /// stops the exporter. Called once, as the process ends.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!("telemetry: pending spans not all sent: {e}");
        }
    }

    /// Opens the server span of a request that arrived at `started`,
    /// continuing an incoming `traceparent`/`tracestate`. Its sampled flag
    /// is followed only when the peer is `trusted` (a `trusted_proxies`
    /// peer); anyone else's request is sampled at `sample_ratio`, so a
    /// client cannot have all of its calls recorded.
    pub fn begin(
        &self,
        method: &http::Method,
        headers: &http::HeaderMap,
        trusted: bool,
        started: Instant,
    ) -> RequestTrace {
        let incoming = TraceContextPropagator::new().extract(&Incoming(headers));
        let remote = incoming.span().span_context().clone();
        let parent = if !remote.is_valid() {
            Context::new()
        } else if trusted {
            incoming
        } else {
            let flags = remote.trace_flags().with_sampled(draw(self.ratio));
            Context::new().with_remote_span_context(SpanContext::new(
                remote.trace_id(),
                remote.span_id(),
                flags,
                true,
                remote.trace_state().clone(),
            ))
        };
        let anchor = Anchor::new(started);
        let method = method_name(method);
        let span = self
            .tracer
            .span_builder(method)
            .with_kind(SpanKind::Server)
            .with_start_time(anchor.at(started))
            .with_attributes([KeyValue::new("http.request.method", method)])
            .start_with_context(&self.tracer, &parent);
        let cx = parent.with_span(span);
        let ids = cx.span().span_context().clone();
        // The highest level, so that whatever RUST_LOG says, the lines
        // written inside carry the ids.
        let log = tracing::error_span!(
            LOG_SPAN,
            trace_id = %ids.trace_id(),
            span_id = %ids.span_id()
        );
        RequestTrace {
            tracer: self.tracer.clone(),
            cx,
            anchor,
            include_actor: self.include_actor,
            route_base: Arc::clone(&self.route_base),
            upstream: None,
            log,
        }
    }
}

/// What the server span says of a decided and answered request: the
/// fixed list of SPEC §9, as plain values (the door reads them off the
/// gate's record and its answer).
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary<'a> {
    /// The method received.
    pub method: &'a str,
    /// The route's path segment (`execute`, `execute-public`), if routed.
    pub route: Option<&'a str>,
    /// The status sent; 0 when none could be.
    pub status: u16,
    pub zambda: Option<&'a str>,
    pub decision: &'a str,
    /// The deciding rule, when a policy decided.
    pub rule: Option<&'a str>,
    pub issuer: Option<&'a str>,
    /// The actor, written only with `telemetry.include_actor`.
    pub actor: Option<&'a str>,
    pub upstream_status: Option<u16>,
    pub upstream_time: Option<Duration>,
    pub token_check: Option<Interval>,
    pub jwks_wait: Option<Interval>,
}

/// The spans of one request, from its arrival to its answer.
pub struct RequestTrace {
    tracer: SdkTracer,
    /// Holds the server span.
    cx: Context,
    anchor: Anchor,
    include_actor: bool,
    route_base: Arc<str>,
    /// The upstream exchange's client span, while it runs.
    upstream: Option<Context>,
    /// The `tracing` span log lines of this request are written in.
    pub log: tracing::Span,
}

impl RequestTrace {
    /// True when the request's spans are recorded (sampled).
    pub fn recording(&self) -> bool {
        self.cx.span().is_recording()
    }

    /// Opens the client span of the upstream exchange, once per request
    /// (a retry on another address stays in the same span).
    pub fn begin_upstream(&mut self, method: &http::Method) {
        if self.upstream.is_some() {
            return;
        }
        let method = method_name(method);
        let span = self
            .tracer
            .span_builder(method)
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("http.request.method", method)])
            .start_with_context(&self.tracer, &self.cx);
        self.upstream = Some(self.cx.with_span(span));
    }

    /// The `traceparent` and `tracestate` the upstream request carries:
    /// the upstream span's (the server span's before it opened).
    pub fn upstream_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Outgoing(Vec::with_capacity(2));
        TraceContextPropagator::new()
            .inject_context(self.upstream.as_ref().unwrap_or(&self.cx), &mut out);
        out.0
    }

    /// Ends the upstream span with the backend's status (`None`: no
    /// response came).
    pub fn end_upstream(&mut self, status: Option<u16>) {
        let Some(cx) = self.upstream.take() else {
            return;
        };
        let span = cx.span();
        if span.is_recording() {
            match status {
                Some(code) => {
                    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                    // A client span fails on any 4xx or 5xx (semantic conventions).
                    if code >= 400 {
                        span.set_status(Status::error("error status"));
                    }
                }
                None => span.set_status(Status::error("no response")),
            }
        }
        span.end();
    }

    /// Ends the server span with the attributes of SPEC §9's fixed list,
    /// after drawing the token check (and the JWKS fetch it waited for).
    pub fn finish(mut self, done: &Summary<'_>) {
        self.end_upstream(None);
        let span = self.cx.span();
        if !span.is_recording() {
            span.end();
            return;
        }
        if let Some(check) = done.token_check {
            self.token_spans(check, done);
        }
        if let Some(route) = done.route {
            let template = format!("{}{route}", self.route_base);
            span.update_name(format!("{} {template}", method_name_str(done.method)));
            span.set_attribute(KeyValue::new("http.route", template));
        }
        if done.status > 0 {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(done.status),
            ));
        }
        let text = |key: &'static str, value: Option<&str>| {
            if let Some(value) = value {
                span.set_attribute(KeyValue::new(key, value.to_string()));
            }
        };
        text("zambda_guard.zambda", done.zambda);
        text("zambda_guard.decision", Some(done.decision));
        text("zambda_guard.rule", done.rule);
        text("zambda_guard.issuer", done.issuer);
        if self.include_actor {
            text("enduser.id", done.actor);
        }
        if let Some(code) = done.upstream_status {
            span.set_attribute(KeyValue::new(
                "zambda_guard.upstream.status_code",
                i64::from(code),
            ));
        }
        if let Some(time) = done.upstream_time {
            span.set_attribute(KeyValue::new(
                "zambda_guard.upstream.duration_ms",
                time.as_secs_f64() * 1000.0,
            ));
        }
        // A server span fails on a 5xx only (semantic conventions).
        if done.status >= 500 || done.status == 0 {
            span.set_status(Status::error(done.decision.to_string()));
        }
        span.end();
    }

    /// The token check's span and, inside it, the JWKS fetch it waited for.
    fn token_spans(&self, check: Interval, done: &Summary<'_>) {
        let mut builder = self
            .tracer
            .span_builder("token check")
            .with_kind(SpanKind::Internal)
            .with_start_time(self.anchor.at(check.start));
        if let Some(issuer) = done.issuer {
            builder =
                builder.with_attributes([KeyValue::new("zambda_guard.issuer", issuer.to_string())]);
        }
        let token = self
            .cx
            .with_span(builder.start_with_context(&self.tracer, &self.cx));
        if let Some(wait) = done.jwks_wait {
            let mut fetch = self
                .tracer
                .span_builder("JWKS fetch")
                .with_kind(SpanKind::Internal)
                .with_start_time(self.anchor.at(wait.start))
                .start_with_context(&self.tracer, &token);
            opentelemetry::trace::Span::end_with_timestamp(&mut fetch, self.anchor.at(wait.end));
        }
        token.span().end_with_timestamp(self.anchor.at(check.end));
    }
}

/// Wall-clock times for the monotonic instants of one request.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    instant: Instant,
    wall: SystemTime,
}

impl Anchor {
    fn new(instant: Instant) -> Self {
        Anchor {
            wall: SystemTime::now() - instant.elapsed(),
            instant,
        }
    }

    fn at(&self, instant: Instant) -> SystemTime {
        self.wall + instant.saturating_duration_since(self.instant)
    }
}

/// The method as the semantic conventions name it: a known method as it
/// is, anything else `_OTHER` (its span named `HTTP`).
fn method_name(method: &http::Method) -> &'static str {
    method_name_str(method.as_str())
}

fn method_name_str(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("_OTHER")
}

/// A sampling draw for a trace whose caller is not trusted to decide.
fn draw(ratio: f64) -> bool {
    // A fresh `RandomState` is seeded differently each time: a cheap
    // random number without another dependency.
    let bits = RandomState::new().build_hasher().finish() >> 11;
    (bits as f64) / ((1u64 << 53) as f64) < ratio
}

/// The incoming trace headers; a header sent twice is not believed.
struct Incoming<'a>(&'a http::HeaderMap);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut values = self.0.get_all(key).iter();
        match (values.next(), values.next()) {
            (Some(one), None) => one.to_str().ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The trace headers for the upstream request.
struct Outgoing(Vec<(&'static str, String)>);

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        let name = match key {
            "traceparent" => "traceparent",
            "tracestate" => "tracestate",
            _ => return,
        };
        if !value.is_empty() {
            self.0.push((name, value));
        }
    }
}

/// The trace headers a traced request replaces on its way upstream.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

#[cfg(test)]
mod tests;
