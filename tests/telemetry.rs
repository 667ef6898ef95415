//! Traces, logs and metrics as an operator's pipeline receives them (SPEC
//! §9): the real binary exports to an OTLP/HTTP receiver in this test,
//! which decodes every export with the official protobuf messages.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::io::AsyncWriteExt;
use zambda_guard::echo::{self, Behaviour};

/// How the receiver treats an export.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Decodes it and answers 200.
    Answer,
    /// Reads it and never answers.
    Hang,
}

/// An OTLP/HTTP trace receiver on 127.0.0.1.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    /// `service.name` of the last export's resource.
    service: Arc<Mutex<Option<String>>>,
    paths: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(mode: Mode) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let service = Arc::new(Mutex::new(None));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (s, n, p) = (spans.clone(), service.clone(), paths.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, n, p) = (s.clone(), n.clone(), p.clone());
                tokio::spawn(async move {
                    loop {
                        let Some(RawRequest {
                            target: path, body, ..
                        }) = read_request(&mut stream).await
                        else {
                            return;
                        };
                        if mode == Mode::Hang {
                            // Hold the connection open, unanswered.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        let export = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                        p.lock().unwrap().push(path);
                        for resource in export.resource_spans {
                            let name = resource
                                .resource
                                .iter()
                                .flat_map(|r| &r.attributes)
                                .find_map(|kv| {
                                    (kv.key == "service.name").then(|| text(kv.value.as_ref()))
                                });
                            *n.lock().unwrap() = name.flatten();
                            for scope in resource.scope_spans {
                                s.lock().unwrap().extend(scope.spans);
                            }
                        }
                        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver {
            addr,
            spans,
            service,
            paths,
            task,
        }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until a span of this trace named `name` has arrived.
    async fn wait_for(&self, trace: &[u8], name: &str) -> Vec<Span> {
        eventually(&format!("span {name}"), || {
            self.spans()
                .iter()
                .any(|s| s.trace_id == trace && s.name == name)
        })
        .await;
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        Any::DoubleValue(d) => Some(d.to_string()),
        Any::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(kv.value.as_ref()))
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {:?}", names(spans)))
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The only attribute keys a span may carry by default (SPEC §9's list).
const ALLOWED: [&str; 10] = [
    "http.request.method",
    "http.route",
    "http.response.status_code",
    "zambda_guard.zambda",
    "zambda_guard.decision",
    "zambda_guard.rule",
    "zambda_guard.issuer",
    "zambda_guard.upstream.status_code",
    "zambda_guard.upstream.duration_ms",
    "enduser.id",
];

/// A backend, an issuer serving `rsa1`, and a trace receiver.
struct World {
    backend: echo::Recorder,
    addr: SocketAddr,
    key: SigningKey,
    jwks: JwksServer,
    receiver: Receiver,
}

impl World {
    async fn start(mode: Mode) -> World {
        let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
            .await
            .unwrap();
        let key = SigningKey::rsa1();
        let jwks = JwksServer::start(&[&key]).await;
        World {
            backend,
            addr,
            key,
            jwks,
            receiver: Receiver::start(mode).await,
        }
    }

    /// A ready proxy exporting to `collector` (the receiver when `None`),
    /// with `telemetry_extra` indented under `telemetry:` and `env` added,
    /// logging JSON and exporting every 50 ms.
    async fn proxy(
        &self,
        collector: Option<SocketAddr>,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Proxy {
        let collector = collector.unwrap_or(self.receiver.addr);
        let mut setup = Setup::new(self.addr, &self.jwks.url());
        setup.extra = format!("telemetry:\n  otlp_endpoint: http://{collector}\n{extra}");
        setup.env = [("OTEL_BSP_SCHEDULE_DELAY", "50"), ("LOG_FORMAT", "json")]
            .iter()
            .chain(env)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let proxy = Proxy::start(setup).await;
        proxy.ready().await;
        proxy
    }

    /// dr-alice's call of `patient-summary` with these extra headers.
    async fn call(&self, proxy: &Proxy, token: Option<&str>, headers: &[(&str, &str)]) -> Response {
        let own = self.key.sign(&claims("dr-alice"));
        proxy
            .post(
                "/v1/zambda/patient-summary/execute",
                Some(token.unwrap_or(&own)),
                headers,
            )
            .await
    }
}

fn traceparent(trace: &str, flags: &str) -> String {
    format!("00-{trace}-{CALLER_SPAN}-{flags}")
}

/// The spans of `trace` the receiver has.
fn of_trace(receiver: &Receiver, trace: &str) -> Vec<Span> {
    receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == unhex(trace))
        .collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const SERVER: &str = "POST /v1/zambda/{id}/execute";

#[tokio::test]
async fn a_call_is_one_trace_from_the_caller_through_the_function() {
    let world = World::start(Mode::Answer).await;
    // The test's client is a trusted peer: its sampled flag is followed
    // even though the proxy would record no root trace of its own.
    let proxy = world
        .proxy(
            None,
            "  sample_ratio: 0.0\ntrusted_proxies: [127.0.0.1/32]\n",
            // Every layer at trace level, the exporter's included, with a
            // secret of the exporter's own to keep out of the log.
            &[
                ("RUST_LOG", "trace"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "x-collector-key=collector-secret-42",
                ),
            ],
        )
        .await;
    let token = world.key.sign(&claims("dr-alice"));
    let resp = proxy
        .post(
            "/v1/zambda/patient-summary/execute?mrn=secret-mrn-1234",
            Some(&token),
            &[
                ("traceparent", &traceparent(TRACE, "01")),
                ("tracestate", "vendor=abc"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200);

    // The upstream span ends before the server span: wait for all three.
    world.receiver.wait_for(&unhex(TRACE), SERVER).await;
    eventually("three spans", || {
        of_trace(&world.receiver, TRACE).len() >= 3
    })
    .await;
    let spans = of_trace(&world.receiver, TRACE);
    let server = named(&spans, SERVER);
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(
        hex(&server.parent_span_id),
        CALLER_SPAN,
        "continues the caller's span"
    );
    assert_eq!(attr(server, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(
        attr(server, "http.route").as_deref(),
        Some("/v1/zambda/{id}/execute")
    );
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(server, "zambda_guard.zambda").as_deref(),
        Some("patient-summary")
    );
    assert_eq!(
        attr(server, "zambda_guard.decision").as_deref(),
        Some("allow")
    );
    assert!(attr(server, "zambda_guard.rule").is_some(), "{server:?}");
    assert_eq!(attr(server, "zambda_guard.issuer").as_deref(), Some(ISSUER));
    assert_eq!(
        attr(server, "zambda_guard.upstream.status_code").as_deref(),
        Some("200")
    );
    assert!(attr(server, "zambda_guard.upstream.duration_ms").is_some());

    let token_check = named(&spans, "token check");
    assert_eq!(token_check.parent_span_id, server.span_id);
    assert!(token_check.start_time_unix_nano >= server.start_time_unix_nano);
    assert!(token_check.end_time_unix_nano <= server.end_time_unix_nano);
    let upstream = named(&spans, "POST");
    assert_eq!(upstream.kind, SpanKind::Client as i32);
    assert_eq!(upstream.parent_span_id, server.span_id);
    assert_eq!(
        attr(upstream, "http.response.status_code").as_deref(),
        Some("200")
    );

    // The function sees the same trace, as a child of the upstream span.
    let received = &world.backend.requests()[0];
    assert_eq!(
        received.header_values("traceparent"),
        [format!("00-{TRACE}-{}-01", hex(&upstream.span_id))]
    );
    assert_eq!(received.header_values("tracestate"), ["vendor=abc"]);

    // No token, query or actor in any span; only the listed attributes.
    let signature = token.rsplit('.').next().unwrap();
    for span in &spans {
        for kv in &span.attributes {
            assert!(
                ALLOWED.contains(&kv.key.as_str()),
                "{} on {}",
                kv.key,
                span.name
            );
            assert_ne!(kv.key, "enduser.id", "the actor is off by default");
            let value = text(kv.value.as_ref()).unwrap_or_default();
            for secret in [signature, "secret-mrn-1234", "mrn=", "dr-alice", "Bearer"] {
                assert!(!value.contains(secret), "{secret} in {}={value}", kv.key);
            }
        }
    }
    assert_eq!(
        world.receiver.service.lock().unwrap().as_deref(),
        Some("zambda-guard")
    );
    assert_eq!(world.receiver.paths.lock().unwrap()[0], "/v1/traces");

    // The access line carries the ids of the server span.
    eventually("the decision line", || {
        proxy.logs().contains("\"decision\":\"allow\"")
    })
    .await;
    let line: serde_json::Value = proxy
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "zambda_guard::decision")
        .unwrap();
    assert_eq!(line["trace_id"], TRACE);
    assert_eq!(line["span_id"].as_str().unwrap(), hex(&server.span_id));
    let logs = proxy.logs();
    assert!(logs.lines().count() > 10, "trace level was on: {logs}");
    assert!(!logs.contains(signature), "a token reached the log");
    assert!(
        !logs.contains("collector-secret-42"),
        "the exporter's header reached the log"
    );

    // The new metrics are scraped.
    let metrics = String::from_utf8(get(proxy.admin, "/metrics").await.unwrap().body).unwrap();
    for series in [
        "zambda_guard_upstream_duration_seconds_count{class=\"2xx\",upstream=\"default\"} 1",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "zambda_guard_build_info{revision=\"",
    ] {
        assert!(metrics.contains(series), "{series} not in:\n{metrics}");
    }
    assert!(metrics.contains(",rustc=\""), "{metrics}");
}

#[tokio::test]
async fn an_untrusted_callers_flag_is_not_followed_and_the_actor_is_opt_in() {
    let world = World::start(Mode::Answer).await;
    let proxy = world
        .proxy(None, "  sample_ratio: 0.0\n  include_actor: true\n", &[])
        .await;
    let resp = world
        .call(&proxy, None, &[("traceparent", &traceparent(TRACE, "01"))])
        .await;
    assert_eq!(resp.status, 200);
    // The trace goes on, unsampled: the caller could not choose to be
    // recorded at a ratio of 0.
    let sent = world.backend.requests()[0].header_values("traceparent")[0].to_string();
    assert!(sent.starts_with(&format!("00-{TRACE}-")), "{sent}");
    assert!(sent.ends_with("-00"), "{sent}");
    assert!(!sent.contains(CALLER_SPAN), "{sent}");

    // A proxy that samples every root trace, asked to name the actor.
    let proxy = world.proxy(None, "  include_actor: true\n", &[]).await;
    let other = "0af7651916cd43dd8448eb211c80319c";
    let resp = world
        .call(&proxy, None, &[("traceparent", &traceparent(other, "00"))])
        .await;
    assert_eq!(resp.status, 200);
    let spans = world.receiver.wait_for(&unhex(other), SERVER).await;
    let server = named(&spans, SERVER);
    assert_eq!(attr(server, "enduser.id").as_deref(), Some("dr-alice"));
    // Nothing of the first proxy's unsampled trace was exported.
    assert!(of_trace(&world.receiver, TRACE).is_empty());
}

#[tokio::test]
async fn a_key_fetch_the_token_check_waits_for_is_a_span_of_its_own() {
    let world = World::start(Mode::Answer).await;
    let proxy = world.proxy(None, "", &[]).await;
    // The issuer rotates: the new key's id is unknown until a re-fetch.
    let new = SigningKey::rsa2();
    world.jwks.serve(&[&world.key, &new]);
    let token = new.sign(&claims("dr-alice"));
    let traces = [
        "11111111111111111111111111111111",
        "22222222222222222222222222222222",
        "33333333333333333333333333333333",
    ];
    let mut answered = None;
    for (i, trace) in traces.iter().enumerate() {
        let resp = world
            .call(
                &proxy,
                Some(&token),
                &[("traceparent", &traceparent(trace, "01"))],
            )
            .await;
        if resp.status == 200 {
            answered = Some(*trace);
            break;
        }
        // A re-fetch is allowed once per `jwks_min_refetch_seconds` (1).
        assert!(i + 1 < traces.len(), "never accepted: {}", resp.status);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let spans = world
        .receiver
        .wait_for(&unhex(answered.unwrap()), "JWKS fetch")
        .await;
    let fetch = named(&spans, "JWKS fetch");
    let check = named(&spans, "token check");
    assert_eq!(fetch.parent_span_id, check.span_id);
    assert!(fetch.start_time_unix_nano >= check.start_time_unix_nano);
    assert!(fetch.end_time_unix_nano <= check.end_time_unix_nano);
}

#[tokio::test]
async fn requests_never_wait_on_a_collector_that_hangs_or_is_gone() {
    let world = World::start(Mode::Hang).await;
    let gone: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // A small queue that the stuck exporter fills at once.
    let small = [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2"),
    ];
    for collector in [world.receiver.addr, gone] {
        let proxy = world.proxy(Some(collector), "", &small).await;
        for _ in 0..40 {
            // A bound on liveness, not a speed measurement: a request that
            // waited on the exporter would wait for as long as it hangs.
            let resp = tokio::time::timeout(Duration::from_secs(20), world.call(&proxy, None, &[]))
                .await
                .expect("a request waited on the span exporter");
            assert_eq!(resp.status, 200);
        }
    }
}

#[tokio::test]
async fn pending_spans_are_sent_before_a_drained_process_exits() {
    let world = World::start(Mode::Answer).await;
    // Nothing is exported on a schedule within the test: only the flush
    // at exit can deliver the span.
    let mut proxy = world
        .proxy(None, "", &[("OTEL_BSP_SCHEDULE_DELAY", "600000")])
        .await;
    let trace = "44444444444444444444444444444444";
    let resp = world
        .call(&proxy, None, &[("traceparent", &traceparent(trace, "01"))])
        .await;
    assert_eq!(resp.status, 200);
    assert!(world.receiver.spans().is_empty());
    proxy.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = proxy.child.wait().unwrap();
        (status, proxy)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status:?}");
    let spans = of_trace(&world.receiver, trace);
    assert!(
        spans.iter().any(|s| s.name == SERVER),
        "{:?}",
        names(&spans)
    );
}

#[tokio::test]
async fn the_decision_service_draws_a_server_span_per_request() {
    let world = World::start(Mode::Answer).await;
    let authz_port = free_port();
    let proxy = world
        .proxy(
            None,
            &format!("authz_listen: 127.0.0.1:{authz_port}\nauthz:\n  source: forwarded\n"),
            &[],
        )
        .await;
    let token = world.key.sign(&claims("dr-alice"));
    let trace = "55555555555555555555555555555555";
    let request = format!(
        "GET /auth HTTP/1.1\r\nhost: authz\r\nx-forwarded-method: POST\r\nx-forwarded-uri: /v1/zambda/billing-export/execute\r\nauthorization: Bearer {token}\r\ntraceparent: {}\r\nconnection: close\r\n\r\n",
        traceparent(trace, "01")
    );
    let authz: SocketAddr = format!("127.0.0.1:{authz_port}").parse().unwrap();
    let resp = send(authz, request.as_bytes()).await.unwrap();
    assert_eq!(resp.status, 403);
    let spans = world
        .receiver
        .wait_for(&unhex(trace), "GET /v1/zambda/{id}/execute")
        .await;
    let server = named(&spans, "GET /v1/zambda/{id}/execute");
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(
        attr(server, "zambda_guard.decision").as_deref(),
        Some("deny")
    );
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("403")
    );
    assert_eq!(hex(&server.parent_span_id), CALLER_SPAN);
    assert!(
        spans.iter().all(|s| s.name != "POST"),
        "no upstream span: {:?}",
        names(&spans)
    );
    drop(proxy);
}
