//! Assembles the pingora server from a validated config: the proxy service
//! on `listen`, the admin service on `admin_listen`, and the background
//! service that keeps issuers' keys fresh; the start-up checks that stop the
//! program before it listens (invalid policies, unreadable keys); and the
//! shutdown sequence.
//!
//! Shutdown (SPEC §5). pingora closes its listeners the moment it is told
//! to stop, sleeps its grace period, then drops whatever still runs. The
//! contract wants the opposite order for SIGTERM: keep serving for
//! `grace_period_seconds` (while load balancers notice the pod is going),
//! then stop accepting and let in-flight requests finish within
//! `drain_timeout_seconds`. So our signal watcher holds SIGTERM back for
//! the grace period before handing it to pingora, pingora's own grace
//! period is our drain timeout, and a drain monitor ends the process as
//! soon as no request is in flight rather than sleeping the whole drain.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{
    ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch,
};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use tokio::signal::unix::{signal, SignalKind};

use crate::admin::Admin;
use crate::authn::Authenticator;
use crate::authz::Authz;
use crate::config::Config;
use crate::proxy::Guard;
use crate::state::State;
use pingora::lb::health_check::HttpHealthCheck;
use std::collections::HashMap;

/// Why the proxy could not start. Each is invalid input (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Keys(#[from] crate::authn::Error),
    #[error("invalid policies:\n{0}")]
    Policies(#[from] crate::policy::LoadErrors),
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Telemetry(#[from] crate::telemetry::Error),
}

/// Builds the shared state: key sources that are files read, the policy
/// directory loaded (generation 1).
pub fn prepare(config: Config) -> Result<Arc<State>, StartError> {
    // Host names are looked up once before anything starts (SPEC §7).
    config
        .upstream
        .address
        .resolve()
        .map_err(|e| StartError::Upstream(format!("upstream.address: {e}")))?;
    for (name, named) in &config.upstreams {
        for address in &named.addresses {
            address
                .resolve()
                .map_err(|e| StartError::Upstream(format!("upstreams.{name}.addresses: {e}")))?;
        }
    }
    let auth = Authenticator::new(&config.auth)?;
    let telemetry = crate::telemetry::Telemetry::start(&config)?;
    let state = Arc::new(State::new(config, auth).with_telemetry(telemetry));
    let warnings = state.policies.start(&state.config, &state.metrics)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    for w in crate::tls::warnings(&state.config)
        .into_iter()
        .chain(state.config.warnings())
    {
        tracing::warn!("{w}");
    }
    Ok(state)
}

/// Bounds the reading of a new connection's first request head by
/// `downstream_read_timeout` (pingora would wait up to its fixed 60 s per
/// read). A connection carrying a later request was marked by
/// [`Guard`]'s `persist_connection_context`; its wait for the next request
/// stays bounded by the idle keep-alive timeout.
///
/// Also counts the request in flight from here, before its head is read:
/// counted only once pingora had parsed it, a connection accepted just as a
/// shutdown began looked idle, and the drain could end the process under it.
///
/// And it tells the proxy that the server is shutting down only once the
/// listeners are closed ([`Closed`]): pingora answers with `Connection:
/// close` from the moment shutdown begins, and a client that reconnects at
/// once could land in the accept queue of a listener about to close, whose
/// connections the kernel resets with their requests sent.
struct HeadTimeout<A> {
    inner: Arc<A>,
    read_timeout: Duration,
    state: Arc<State>,
    closed: Closed,
}

impl<A> HeadTimeout<A> {
    fn new(inner: A, read_timeout: Duration, state: Arc<State>) -> Self {
        HeadTimeout {
            inner: Arc::new(inner),
            read_timeout,
            state,
            closed: Closed::default(),
        }
    }
}

/// How long after its listeners closed a shutting-down service still
/// waits for a request on a kept-alive connection before closing it. A busy
/// client has been told `Connection: close` by then; an idle one that sends
/// just as its connection closes meets the race every keep-alive timeout
/// has.
const IDLE_CLOSE_AFTER: Duration = Duration::from_secs(1);

/// A shutdown watch that turns only once the service's listeners are
/// closed: pingora calls an app's cleanup after every accept loop of the
/// service has ended and dropped its listener. After that a client told to
/// reconnect is refused, having sent nothing, and can go elsewhere.
struct Closed {
    tx: tokio::sync::watch::Sender<bool>,
    rx: ShutdownWatch,
}

impl Default for Closed {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        Closed { tx, rx }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for HeadTimeout<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        // pingora's own watch turns as the listeners begin to close: see
        // `Closed` for why the proxy is told later
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.take_connection_user_context() {
            Some(reused) => session.set_connection_user_context(Some(reused)),
            None => session.set_keepalive(Some(self.read_timeout.as_secs().max(1))),
        }
        session.set_read_timeout(Some(self.read_timeout));
        // Pipelined requests (RFC 9112 §9.3.2) are served one after the
        // other, in order, each judged on its own; without this, pingora
        // answers the first and drops the rest. The setting is carried to
        // each later request of the connection, and is a no-op on HTTP/2.
        session.set_pipelining_enabled(true);
        let _in_flight = self.state.begin_request();
        self.inner.process_new_http(session, &self.closed.rx).await
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    /// Runs once the service's listeners are closed. From here every answer
    /// says `Connection: close`; a connection waiting for its next request
    /// is closed only [`IDLE_CLOSE_AFTER`] later, so that a request already
    /// on its way is answered rather than cut.
    async fn http_cleanup(&self) {
        self.closed.tx.send_replace(true);
        tokio::time::sleep(IDLE_CLOSE_AFTER).await;
        self.inner.http_cleanup().await
    }
}

/// Fetches every issuer's keys before the listening sockets are taken over
/// in an upgrade: the old process stops accepting the moment it hands them
/// over, so the new one must be able to answer at once. Retries for up to
/// `patience`; what is still missing then is fetched in the background.
pub fn prefetch_keys(state: &State, patience: Duration) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let failed = state.auth.refresh_all().await;
            if failed.is_empty() || tokio::time::Instant::now() >= deadline {
                for (issuer, why) in failed {
                    tracing::warn!("keys of {issuer} not fetched before the upgrade: {why}");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Keeps the issuers' keys fresh while the server runs.
struct KeyRefresh {
    auth: Arc<Authenticator>,
}

#[async_trait]
impl BackgroundService for KeyRefresh {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.auth.spawn_refresh();
        // The refresh tasks live on this service's runtime until shutdown.
        let _ = shutdown.changed().await;
    }
}

/// Looks the upstream's host name up again every `dns_refresh_seconds`;
/// requests keep using the last addresses meanwhile, and after a failed
/// lookup.
struct DnsRefresh {
    address: Arc<crate::dns::Address>,
    every: Duration,
}

#[async_trait]
impl BackgroundService for DnsRefresh {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
            if let Err(why) = self.address.refresh().await {
                tracing::warn!("{why}");
            }
        }
    }
}

/// Builds the pingora server for `state`; `upgrade` takes the listening
/// sockets over from a running instance (SIGQUIT hand-over).
pub fn build(state: Arc<State>, upgrade: bool) -> Server {
    let config = &state.config;
    let conf = ServerConf {
        threads: config.threads,
        // pingora's grace period runs after its listeners closed: our drain
        grace_period_seconds: Some(config.shutdown.drain_timeout_seconds),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: config.shutdown.upgrade_sock.display().to_string(),
        // With one worker thread there is nothing to steal: a plain
        // single-threaded runtime saves the work-stealing scheduler's cost
        // on every task (about a tenth of the CPU per request, see
        // docs/BENCHMARKS.md). With several, stealing keeps them balanced.
        work_stealing: config.threads > 1,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut balancers = HashMap::new();
    let mut health_checks = Vec::new();
    for (name, named) in &config.upstreams {
        let (mut balancer, has_names) =
            crate::upstreams::balancer(&named.addresses, config.upstream.dns_refresh);
        if let Some(hc) = &named.health_check {
            let mut check = HttpHealthCheck::new("localhost", false);
            if let Ok(req) = pingora::http::RequestHeader::build("GET", hc.path.as_bytes(), None) {
                check.req = req;
            }
            check.peer_template.options.connection_timeout = Some(config.upstream.connect_timeout);
            check.peer_template.options.read_timeout = Some(config.upstream.connect_timeout);
            balancer.set_health_check(Box::new(check));
            balancer.health_check_frequency = Some(hc.interval);
        }
        // Health checks and name lookups run in the balancer's own
        // background service.
        if named.health_check.is_some() || has_names {
            let service = background_service(&format!("upstream {name}"), balancer);
            balancers.insert(name.clone(), service.task());
            health_checks.push(service);
        } else {
            balancers.insert(name.clone(), Arc::new(balancer));
        }
    }
    let proxy = config.listen.map(|listen| {
        let mut inner = pingora::proxy::HttpProxy::new(
            Guard::new(state.clone(), balancers),
            server.configuration.clone(),
        );
        inner.handle_init_modules();
        let mut proxy = Service::new(
            "zambda-guard proxy".to_string(),
            HeadTimeout::new(inner, config.limits.downstream_read_timeout, state.clone()),
        );
        match &state.tls {
            // HTTPS only: never a plain-HTTP fallback on a TLS listener.
            Some(certs) => match certs.settings() {
                Ok(settings) => {
                    tracing::info!("serving HTTPS on {listen}: {}", certs.current());
                    proxy.add_tls_with_settings(&listen.to_string(), None, settings);
                }
                Err(e) => tracing::error!("cannot serve TLS on {listen}: {e}; not listening"),
            },
            None => proxy.add_tcp(&listen.to_string()),
        }
        proxy.threads = Some(config.threads);
        proxy
    });
    let authz = config.authz.as_ref().map(|authz| {
        let mut service = Service::new(
            "zambda-guard authz".to_string(),
            HeadTimeout::new(
                Authz::new(state.clone()),
                config.limits.downstream_read_timeout,
                state.clone(),
            ),
        );
        service.add_tcp(&authz.listen.to_string());
        service.threads = Some(config.threads);
        service
    });

    let mut admin = Service::new("zambda-guard admin".to_string(), Admin::new(state.clone()));
    admin.add_tcp(&config.admin_listen.to_string());
    admin.threads = Some(1);

    let mut refresh = background_service(
        "zambda-guard keys",
        KeyRefresh {
            auth: state.auth.clone(),
        },
    );
    refresh.threads = Some(1);

    if let Some(proxy) = proxy {
        server.add_service(proxy);
    }
    if let Some(authz) = authz {
        server.add_service(authz);
    }
    server.add_service(admin);
    server.add_service(refresh);
    if config.upstream.address.is_name() {
        let mut dns = background_service(
            "zambda-guard upstream dns",
            DnsRefresh {
                address: config.upstream.address.clone(),
                every: config.upstream.dns_refresh,
            },
        );
        dns.threads = Some(1);
        server.add_service(dns);
    }
    for mut check in health_checks {
        check.threads = Some(1);
        server.add_service(check);
    }
    server
}

/// SIGQUIT, SIGTERM and SIGINT as SPEC §5 wants them (see the module doc).
struct Signals {
    grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => {
                tracing::info!("SIGQUIT: handing the listening sockets over");
                ShutdownSignal::GracefulUpgrade
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = term.recv() => {
                tracing::info!(
                    grace_seconds = self.grace.as_secs(),
                    "SIGTERM: still serving for the grace period, then draining"
                );
                tokio::select! {
                    _ = tokio::time::sleep(self.grace) => ShutdownSignal::GracefulTerminate,
                    _ = int.recv() => ShutdownSignal::FastShutdown,
                }
            }
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Draining found nothing in flight for [`DRAIN_SETTLE`]: the process
    /// may exit now, without sleeping the rest of the drain timeout.
    Drained,
    /// The server stopped by itself (fast shutdown, or the drain timeout).
    Finished,
}

/// Reports [`Stopped::Drained`] once draining has started and no request
/// has been in flight for [`DRAIN_SETTLE`]. The settle time covers a
/// connection accepted just before the listeners closed whose task has not
/// started yet.
fn spawn_drain_monitor(server: &Server, state: Arc<State>, done: mpsc::Sender<Stopped>) {
    let mut phases = server.watch_execution_phase();
    std::thread::spawn(move || {
        loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
        tracing::info!(in_flight = state.in_flight(), "draining");
        let mut idle_since: Option<std::time::Instant> = None;
        loop {
            if state.in_flight() > 0 {
                idle_since = None;
            } else if idle_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                >= DRAIN_SETTLE
            {
                tracing::info!("drained");
                let _ = done.send(Stopped::Drained);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

/// How long nothing must be in flight before a draining process exits. It
/// covers a connection the listener accepted just as shutdown began whose
/// task has not reached the HTTP server yet; 100 ms lost one request in
/// ~3,600 across a SIGQUIT hand-over when both cores were busy.
const DRAIN_SETTLE: Duration = Duration::from_millis(250);

/// Runs until a shutdown signal; returns when the server has stopped or
/// has drained, and says which. The caller ends the process.
pub fn run(state: Arc<State>, upgrade: bool) -> Stopped {
    let grace = Duration::from_secs(state.config.shutdown.grace_period_seconds);
    if upgrade {
        prefetch_keys(&state, Duration::from_secs(10));
    }
    let server = build(state.clone(), upgrade);
    let (done, stopped) = mpsc::channel();
    spawn_drain_monitor(&server, state.clone(), done.clone());
    let serve = move || {
        server.run(RunArgs {
            shutdown_signal: Box::new(Signals { grace }),
        });
        let _ = done.send(Stopped::Finished);
    };
    // The server runs on a thread of its own so that a drained process
    // need not wait for pingora's drain timeout to end.
    if let Err(e) = std::thread::Builder::new()
        .name("zambda-guard-server".into())
        .spawn(serve)
    {
        tracing::error!("cannot start the server thread: {e}");
        return Stopped::Finished;
    }
    let how = stopped.recv().unwrap_or(Stopped::Finished);
    // Whichever way it ended (drain, hand-over, SIGINT), the spans of the
    // last requests go out before the process does.
    if let Some(telemetry) = &state.telemetry {
        telemetry.shutdown();
    }
    how
}
