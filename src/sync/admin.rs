//! The sync loop's own admin listener (`oystehr.admin_listen`): `/healthz`
//! (the process is alive) and `/metrics` (Prometheus text), on a plain
//! tokio listener — the loop runs no proxy, so it starts no pingora
//! server.
//!
//! Its metrics are its own registry, in the proxy's naming
//! (`zambda_guard_sync_*`); no label or value carries a credential, a
//! token or a name from the project.

use std::time::Duration;

use prometheus::{Encoder, Gauge, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::render::Counts;

/// A request head must arrive within this long and fit in this many bytes.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_HEAD_BYTES: usize = 8192;

pub struct SyncMetrics {
    registry: Registry,
    pub rounds: IntCounterVec,
    pub last_success: Gauge,
    pub objects: IntGaugeVec,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        SyncMetrics::new()
    }
}

impl SyncMetrics {
    /// Creates and registers every sync metric.
    #[allow(clippy::expect_used)] // constant names and labels Prometheus accepts
    pub fn new() -> Self {
        let registry = Registry::new();
        let rounds = IntCounterVec::new(
            Opts::new(
                "zambda_guard_sync_total",
                "Sync rounds, by result: written (the file changed), unchanged, or failed (nothing written, the last file kept).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let last_success = Gauge::new(
            "zambda_guard_sync_last_success_timestamp_seconds",
            "Unix time of the last round that ended written or unchanged; 0 before the first.",
        )
        .expect("valid metric");
        let objects = IntGaugeVec::new(
            Opts::new(
                "zambda_guard_sync_objects",
                "Objects in the policy file as last synced, by kind: roles, zambdas, m2ms, defaults.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        for result in ["written", "unchanged", "failed"] {
            rounds.with_label_values(&[result]);
        }
        registry
            .register(Box::new(rounds.clone()))
            .expect("registered once");
        registry
            .register(Box::new(last_success.clone()))
            .expect("registered once");
        registry
            .register(Box::new(objects.clone()))
            .expect("registered once");
        SyncMetrics {
            registry,
            rounds,
            last_success,
            objects,
        }
    }

    pub fn success(&self, result: &str, counts: &Counts) {
        self.rounds.with_label_values(&[result]).inc();
        self.last_success.set(crate::clock::unix_seconds());
        for (kind, n) in [
            ("roles", counts.roles),
            ("zambdas", counts.zambdas),
            ("m2ms", counts.m2ms),
            ("defaults", counts.defaults),
        ] {
            self.objects
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn failure(&self) {
        self.rounds.with_label_values(&["failed"]).inc();
    }

    /// The Prometheus text of every sync metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Answers `/healthz` and `/metrics` until the process ends.
pub async fn serve(listener: TcpListener, metrics: std::sync::Arc<SyncMetrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(HEAD_TIMEOUT, answer(stream, &metrics)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, metrics: &SyncMetrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD_BYTES {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET" | "HEAD", "/healthz") => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}
