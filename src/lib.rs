//! zambda-guard: a reverse proxy that enforces Oystehr-style Zambda invoke
//! permissions in front of any function backend.
//!
//! A request for `POST {prefix}/zambda/{zambda}/execute` reaches the backend
//! only when its bearer token verifies and the token's actor is allowed
//! `Zambda:InvokeFunction` on that Zambda by the policy files; public
//! Zambdas are served on `execute-public` without a token. Everything else
//! is answered by the proxy and never reaches the backend.
//!
//! # Layout
//!
//! - [`config`]: `config.yaml` file types and the validated [`config::Config`].
//! - [`route`]: the one canonical parse of a request target.
//! - [`policy`]: the policy model, file loading and the decision. Pure: no
//!   HTTP, no pingora.
//! - [`authn`]: bearer extraction, key sources (JWKS, PEM, HMAC), token
//!   verification and the verified-token cache.
//! - [`state`]: what the running proxy shares between requests: the live
//!   policy set behind an `ArcSwap`, the authenticator.
//! - [`proxy`]: the pingora `ProxyHttp` implementation; the one place where
//!   outcomes become HTTP statuses.
//! - [`admin`]: `/healthz`, `/readyz` and `/metrics`.
//! - [`metrics`]: every metric and its help text.
//! - [`reload`]: watching the policy directory, key and certificate files;
//!   SIGHUP.
//! - [`server`]: assembles the pingora server from a config.
//! - [`tls`]: the certificate served on `listen`, kept live and re-read
//!   from disk; the checks of the upstream's certificate.
//! - [`pem`]: certificate files read and checked (the served pair, the
//!   upstream's CA), for the config and for [`tls`].
//! - [`explain`]: the decision for one principal and Zambda, for the CLI.
//! - [`tooling`]: policy tests (`test`) and the impact of a change (`diff`).
//! - [`sync`]: `zambda-guard sync`, which keeps a policy file in step with
//!   an Oystehr project over its API, in a process of its own.
//! - [`echo`]: the echo backend of the demo and of the end-to-end tests.
//! - [`demo`]: the zero-setup demonstration (echo backend, generated key).

pub mod admin;
pub mod authn;
pub mod authz;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod dns;
pub mod echo;
pub mod explain;
pub mod gate;
pub mod limit;
pub mod logs;
pub mod metrics;
pub mod pem;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod server;
pub mod state;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod tooling;
pub mod upstreams;
pub mod wire;

/// The crate version, as `--version` and the metrics report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision built (`unknown` when built without git), for
/// `build_info`.
pub const REVISION: &str = env!("ZAMBDA_GUARD_REVISION");

/// The compiler version that built this binary, for `build_info`.
pub const RUSTC: &str = env!("ZAMBDA_GUARD_RUSTC");
