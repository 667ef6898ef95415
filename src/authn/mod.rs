//! Authentication: from an `Authorization` header to a verified [`Identity`].
//!
//! This module owns everything SPEC §2 says about tokens: bearer extraction
//! ([`bearer()`]), the one reading of claims into an [`Identity`] and a
//! policy principal ([`claims`]), the key sources of each issuer (`jwks_url`, `jwks_file`,
//! `public_key_pem_file`, `hmac_secret_env`; see [`keys`]), their refresh
//! (`jwks`), the token checks (`verify`) and the verified-token cache
//! (`cache`). It knows nothing of policies or of HTTP statuses: it answers
//! [`Identity`] or a [`Rejection`], and the proxy turns a rejection into 401
//! or 503.
//!
//! Invariants:
//! - the algorithm used for a token comes from the issuer's allowlist *and*
//!   the type of the key, never from the token header alone;
//! - each issuer's keys sit behind an `ArcSwap`; a failed load or fetch never
//!   replaces them (last good keys are kept), so a request does one lock-free
//!   load and never waits for I/O except for a rate-limited unknown-`kid`
//!   re-fetch;
//! - a cached verification is used only while the token is unexpired and its
//!   signing key is still in the issuer's current key set;
//! - the token is never logged, stored (only its SHA-256) or echoed; a
//!   rejection carries a fixed short description.

mod bearer;
mod cache;
pub mod claims;
mod jwks;
pub mod keys;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::unix_now;
use crate::config;

pub use bearer::bearer;
pub use claims::{Named, Reading};
pub use keys::jwk_from_public_pem;

/// Tokens longer than this are refused before any parsing. Real access
/// tokens, even with many roles, stay well below it.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Leeway is clamped to this, so time arithmetic cannot wrap whatever the
/// config says.
const MAX_LEEWAY_SECONDS: u64 = 24 * 3600;

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The issuer as configured (the token's `iss`).
    pub issuer: Arc<str>,
    /// The issuer's `subject_claim`: a non-empty string without control
    /// characters.
    pub subject: String,
    /// From the issuer's `roles_claim`, in token order; empty when the claim
    /// is not configured or absent.
    pub roles: Vec<String>,
    /// The token's `exp` (unix seconds).
    pub expires_at: u64,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No bearer token was presented (401 without `error=`).
    Missing,
    /// A token was presented and failed a check (401 with
    /// `error="invalid_token"`). The text is a fixed, short
    /// `error_description` that never contains any part of the token.
    Invalid(&'static str),
    /// The token names a configured issuer whose keys are not loaded yet
    /// (503).
    KeysUnavailable,
}

impl Rejection {
    /// A short text for logs and `error_description`.
    pub fn description(&self) -> &'static str {
        match self {
            Rejection::Missing => "token missing",
            Rejection::Invalid(why) => why,
            Rejection::KeysUnavailable => "issuer keys not loaded yet",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A key source that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `jwks_file` or `public_key_pem_file` that cannot be read or used.
    #[error("issuer {issuer:?}: {path}: {reason}")]
    Source {
        issuer: String,
        path: String,
        reason: String,
    },
    /// Key material that is not a usable public key.
    #[error("{0}")]
    Key(String),
    /// The HTTP client for `jwks_url` fetches could not be built.
    #[error("cannot set up the JWKS HTTP client: {0}")]
    Client(String),
    /// Several of the above, one per line.
    #[error("{}", join_errors(.0))]
    Several(Vec<Error>),
}

fn join_errors(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    fn from_list(mut errors: Vec<Error>) -> Option<Error> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Several(errors)),
        }
    }
}

/// Counters for the metrics module. All monotonic except the gauges noted.
#[derive(Debug, Default)]
pub struct Stats {
    /// Tokens answered from the verified-token cache.
    pub cache_hits: AtomicU64,
    /// Tokens looked up in the cache and not answered from it (only counted
    /// when the cache is enabled).
    pub cache_misses: AtomicU64,
    /// One entry per configured issuer, in config order.
    pub issuers: Vec<Arc<IssuerStats>>,
}

/// Key loading of one issuer. A "refresh" is one load of one key source:
/// a `jwks_url` fetch or a read of a `jwks_file` / `public_key_pem_file`.
#[derive(Debug, Default)]
pub struct IssuerStats {
    pub issuer: String,
    pub refresh_ok: AtomicU64,
    pub refresh_error: AtomicU64,
    /// Gauge: unix seconds of the last successful load; 0 = never.
    pub last_success_unix: AtomicU64,
    /// Gauge: keys currently in the issuer's key set.
    pub keys: AtomicU64,
}

/// Installs jsonwebtoken's aws-lc-rs crypto provider for the process.
///
/// jsonwebtoken 11 picks a provider from its crate features and panics at the
/// first verification when feature unification enabled more than one; an
/// explicit install rules that out. Idempotent; [`Authenticator::new`] calls
/// it too.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// Verifies bearer tokens against the configured issuers. `Send + Sync`,
/// shared as `Arc`.
pub struct Authenticator {
    issuers: Vec<IssuerState>,
    by_name: HashMap<String, usize>,
    cache: Option<cache::Cache>,
    /// Present when some issuer has a `jwks_url`.
    fetcher: Option<jwks::Fetcher>,
    fetch_timeout: Duration,
    leeway: u64,
    stats: Stats,
    refresh_spawned: AtomicBool,
}

/// One configured issuer: its checks, its keys and their fetch state.
struct IssuerState {
    name: Arc<str>,
    requires: verify::Requirements,
    store: keys::KeyStore,
    fetch: jwks::FetchState,
}

impl Authenticator {
    /// Loads the file-based key sources now (`jwks_file`,
    /// `public_key_pem_file`, HMAC secrets); errors name the issuer and the
    /// file. No network here: `jwks_url` issuers stay without keys until
    /// [`spawn_refresh`](Self::spawn_refresh) or
    /// [`refresh_all`](Self::refresh_all) fetches them.
    pub fn new(auth: &config::Auth) -> Result<Arc<Self>, Error> {
        install_crypto_provider();
        let leeway = auth.leeway_seconds.min(MAX_LEEWAY_SECONDS);
        let mut issuers = Vec::with_capacity(auth.issuers.len());
        let mut by_name = HashMap::new();
        let mut stats = Stats::default();
        let mut errors = Vec::new();
        let mut any_url = false;
        for (index, issuer) in auth.issuers.iter().enumerate() {
            let name: Arc<str> = Arc::from(issuer.issuer.as_str());
            let issuer_stats = Arc::new(IssuerStats {
                issuer: issuer.issuer.clone(),
                ..IssuerStats::default()
            });
            stats.issuers.push(Arc::clone(&issuer_stats));
            let store = keys::KeyStore::new(issuer, Arc::clone(&name), issuer_stats);
            match store.read_files() {
                Ok(loaded) => store.install(loaded),
                Err(mut e) => errors.append(&mut e),
            }
            any_url |= store.has_url();
            by_name.insert(issuer.issuer.clone(), index);
            issuers.push(IssuerState {
                requires: verify::Requirements::new(issuer, leeway),
                fetch: jwks::FetchState::new(issuer),
                store,
                name,
            });
        }
        if let Some(e) = Error::from_list(errors) {
            return Err(e);
        }
        let fetcher = if any_url {
            Some(jwks::Fetcher::new(auth.jwks_fetch_timeout).map_err(Error::Client)?)
        } else {
            None
        };
        Ok(Arc::new(Authenticator {
            issuers,
            by_name,
            cache: cache::Cache::new(auth.token_cache_entries),
            fetcher,
            fetch_timeout: auth.jwks_fetch_timeout,
            leeway,
            stats,
            refresh_spawned: AtomicBool::new(false),
        }))
    }

    /// Spawns, on the current tokio runtime, one task per `jwks_url` issuer:
    /// the first fetch, retried with capped exponential backoff until it
    /// succeeds, then a refresh every `jwks_refresh_seconds` (a failed
    /// refresh is retried sooner, the last good keys serving meanwhile).
    /// The tasks end when the `Authenticator` is dropped. Calling it again
    /// does nothing; without a runtime it logs an error and does nothing.
    pub fn spawn_refresh(self: &Arc<Self>) {
        jwks::spawn_refresh(self);
    }

    /// Fetches every `jwks_url` once, now, and returns the issuers whose
    /// fetch failed with the reason (their previous keys are kept).
    pub async fn refresh_all(&self) -> Vec<(String, String)> {
        jwks::refresh_all(self).await
    }

    /// Re-reads the file key sources (`jwks_file`, `public_key_pem_file`) of
    /// every issuer. All or nothing: on any error every issuer keeps its
    /// current keys and the errors are returned.
    pub fn reload_files(&self) -> Result<(), Error> {
        let mut loaded = Vec::with_capacity(self.issuers.len());
        let mut errors = Vec::new();
        for issuer in &self.issuers {
            match issuer.store.read_files() {
                Ok(files) => loaded.push(files),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if let Some(e) = Error::from_list(errors) {
            return Err(e);
        }
        for (issuer, files) in self.issuers.iter().zip(loaded) {
            issuer.store.install(files);
        }
        Ok(())
    }

    /// The whole decision for one token (already taken out of the header by
    /// [`bearer()`]): cache, issuer, key, signature, claims, subject, roles.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Identity>, Rejection> {
        self.authenticate_noting(token, &mut None).await
    }

    /// [`authenticate`](Self::authenticate), noting in `fetch_wait` when the
    /// check waited for a JWKS fetch (an unknown key id), for a trace.
    pub async fn authenticate_noting(
        &self,
        token: &str,
        fetch_wait: &mut Option<crate::clock::Interval>,
    ) -> Result<Arc<Identity>, Rejection> {
        if token.is_empty() {
            return Err(Rejection::Invalid("malformed token"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Invalid("token too large"));
        }
        let now = unix_now();
        let digest = match &self.cache {
            Some(cache) => {
                let digest = cache::digest(token);
                if let Some(hit) = cache.get(&digest, now) {
                    let key_still_trusted = self
                        .issuers
                        .get(hit.issuer)
                        .is_some_and(|issuer| issuer.store.load().contains(&hit.fingerprint));
                    if key_still_trusted {
                        self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(hit.identity);
                    }
                    cache.remove(&digest);
                }
                self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
                Some(digest)
            }
            None => None,
        };
        let verified = self.verify(token, fetch_wait).await?;
        if let (Some(cache), Some(digest)) = (&self.cache, digest) {
            // A token accepted only thanks to the leeway on `nbf` is not
            // cached: it is re-checked until it is valid without leeway.
            if verified.not_before.is_none_or(|nbf| nbf <= now) {
                cache.insert(
                    digest,
                    cache::Entry {
                        identity: Arc::clone(&verified.identity),
                        issuer: verified.issuer,
                        fingerprint: verified.fingerprint,
                        valid_until: verified.identity.expires_at.saturating_add(self.leeway),
                    },
                    now,
                );
            }
        }
        Ok(verified.identity)
    }

    /// Issuers without usable keys yet, each with a reason; empty = ready.
    /// An issuer with a `jwks_url` counts as missing until that URL has been
    /// fetched successfully once, even if its other sources have keys.
    pub fn missing_keys(&self) -> Vec<(String, String)> {
        self.issuers
            .iter()
            .filter_map(|issuer| {
                issuer
                    .store
                    .missing()
                    .map(|reason| (issuer.name.to_string(), reason))
            })
            .collect()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Signature and claims checks, without the cache.
    async fn verify(
        &self,
        token: &str,
        fetch_wait: &mut Option<crate::clock::Interval>,
    ) -> Result<verify::Verified, Rejection> {
        let parsed = verify::parse(token)?;
        let index = *self
            .by_name
            .get(parsed.issuer.as_str())
            .ok_or(Rejection::Invalid("issuer not accepted"))?;
        let issuer = self
            .issuers
            .get(index)
            .ok_or(Rejection::Invalid("issuer not accepted"))?;
        let alg = parsed.header.alg;
        let validation = issuer
            .requires
            .validation(alg)
            .ok_or(Rejection::Invalid("algorithm not allowed"))?;
        let kid = parsed.header.kid.as_deref();

        // Read the fetch epoch before the keys: if a fetch lands in between,
        // the re-fetch below sees a newer epoch and just looks again.
        let epoch = issuer.fetch.epoch();
        let mut set = issuer.store.load_full();
        let mut found = verify::lookup(&set, kid, alg);
        if matches!(found, verify::Lookup::UnknownKid) && issuer.store.has_url() {
            let began = std::time::Instant::now();
            if jwks::refetch_for_unknown_kid(self, index, epoch).await {
                *fetch_wait = Some(crate::clock::Interval::since(began));
            }
            set = issuer.store.load_full();
            found = verify::lookup(&set, kid, alg);
        }
        let candidates = match found {
            verify::Lookup::Keys(keys) => keys,
            verify::Lookup::Unavailable => return Err(Rejection::KeysUnavailable),
            // A jwks_url never fetched yet may well hold the key.
            _ if set.pending => return Err(Rejection::KeysUnavailable),
            verify::Lookup::UnknownKid => return Err(Rejection::Invalid("unknown key id")),
            verify::Lookup::NoKeyForAlg => return Err(Rejection::Invalid("no key for algorithm")),
            verify::Lookup::KidRequired => return Err(Rejection::Invalid("key id required")),
        };
        let (key, claims) = verify::verify_signature(token, &candidates, validation)?;
        let identity = Identity::from_claims(&claims, &issuer.name, issuer.requires.reading())?;
        Ok(verify::Verified {
            identity: Arc::new(identity),
            issuer: index,
            fingerprint: key.fingerprint,
            not_before: claims::numeric_claim(&claims, "nbf"),
        })
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "issuers",
                &self.issuers.iter().map(|i| &*i.name).collect::<Vec<_>>(),
            )
            .field("cache", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}
