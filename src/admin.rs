//! The admin listener: `/healthz` (the process is alive), `/readyz`
//! (policies loaded and every issuer has keys; 503 with the reasons
//! otherwise) and `/metrics` (Prometheus text).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::state::State;

pub struct Admin {
    state: Arc<State>,
}

impl Admin {
    pub fn new(state: Arc<State>) -> Self {
        Admin { state }
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
            "/readyz" => match self.state.readiness() {
                Ok(()) => text(200, "ready\n".into()),
                Err(not_ready) => text(503, format!("not ready\n{}\n", not_ready.0.join("\n"))),
            },
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
