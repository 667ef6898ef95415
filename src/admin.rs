//! The admin listener: `/healthz` (the process is alive), `/readyz`
//! (policies loaded, every issuer has keys, and every proxy listener
//! accepts connections; 503 with the reasons otherwise) and `/metrics`
//! (Prometheus text).
//!
//! The admin service can start listening a few milliseconds before the
//! proxy service does, so "ready" is not taken on trust: until a connection
//! to every proxy listener has once been accepted, `/readyz` tries one. A
//! listener never stops accepting while the process serves, so once seen,
//! it is not tried again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::state::State;

pub struct Admin {
    state: Arc<State>,
    listening: Listening,
}

impl Admin {
    pub fn new(state: Arc<State>) -> Self {
        // Every listener that serves requests: `listen` and `authz_listen`.
        let listeners = state
            .config
            .listen
            .into_iter()
            .chain(state.config.authz.as_ref().map(|a| a.listen))
            .collect();
        let listening = Listening::new(listeners);
        Admin { state, listening }
    }
}

/// Whether every proxy listener accepts connections yet.
pub struct Listening {
    addresses: Vec<SocketAddr>,
    all: AtomicBool,
}

impl Listening {
    pub fn new(addresses: Vec<SocketAddr>) -> Self {
        Listening {
            addresses,
            all: AtomicBool::new(false),
        }
    }

    /// The first listener that does not accept a connection yet, if any.
    pub async fn not_accepting(&self) -> Option<SocketAddr> {
        if self.all.load(Ordering::Acquire) {
            return None;
        }
        for &address in &self.addresses {
            let target = reachable(address);
            let connected = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(target),
            )
            .await;
            if !matches!(connected, Ok(Ok(_))) {
                return Some(address);
            }
        }
        self.all.store(true, Ordering::Release);
        None
    }
}

/// The address to connect to for a listener: a wildcard listener is tried
/// on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

fn text(status: u16, body: String) -> http::Response<Vec<u8>> {
    let body = body.into_bytes();
    let length = body.len();
    let mut resp = http::Response::new(body);
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(length),
    );
    resp
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => text(200, "ok\n".into()),
            "/readyz" => {
                let mut reasons = match self.state.readiness() {
                    Ok(()) => Vec::new(),
                    Err(not_ready) => not_ready.0,
                };
                if let Some(address) = self.listening.not_accepting().await {
                    reasons.push(format!(
                        "listener {address} does not accept connections yet"
                    ));
                }
                if reasons.is_empty() {
                    text(200, "ready\n".into())
                } else {
                    text(503, format!("not ready\n{}\n", reasons.join("\n")))
                }
            }
            "/metrics" => {
                let mut resp = text(200, self.state.metrics.render(self.state.auth.stats()));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            _ => text(404, "not found\n".into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_once_every_listener_accepts() {
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // a port nothing listens on yet: bound, then closed
        let later = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let later_addr = later.local_addr().unwrap();
        drop(later);
        let wildcard = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), later_addr.port());
        let listening = Listening::new(vec![first.local_addr().unwrap(), wildcard]);
        assert_eq!(listening.not_accepting().await, Some(wildcard));
        assert_eq!(listening.not_accepting().await, Some(wildcard));
        let _later = tokio::net::TcpListener::bind(later_addr).await.unwrap();
        assert_eq!(listening.not_accepting().await, None);
        // seen once, not tried again: still ready with both gone
        drop(first);
        drop(_later);
        assert_eq!(listening.not_accepting().await, None);
    }
}
