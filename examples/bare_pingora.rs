//! The floor under zambda-guard: a bare pingora 0.9 reverse proxy with the
//! same build, allocator and server settings (one worker thread, a
//! single-threaded runtime, every request forwarded to one upstream with
//! keep-alive) and nothing else — no routing, no authentication, no
//! metrics, no header rewriting. `bench/compare.sh` measures it beside
//! zambda-guard to show how much of the cost is pingora's own.
//!
//! ```sh
//! cargo run --release --example bare_pingora -- LISTEN_ADDR UPSTREAM_ADDR
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        Ok(Box::new(peer))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        panic!("usage: bare_pingora LISTEN_ADDR UPSTREAM_ADDR");
    };
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM_ADDR: ip:port");
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        // Stop at once on SIGTERM (pingora's default grace period is 300 s).
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(&listen);
    proxy.threads = Some(1);
    server.add_service(proxy);
    server.run_forever();
}
