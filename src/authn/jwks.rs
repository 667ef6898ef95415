//! Fetching `jwks_url` key sets over HTTP(S): the background refresh loop,
//! one-off refreshes, and the rate-limited re-fetch an unknown `kid`
//! triggers.
//!
//! All fetches of one issuer go through one async lock, so a re-fetch is
//! single-flight: requests that find an unknown `kid` while a fetch is under
//! way wait for it and then look again instead of fetching once more. A
//! failed fetch (transport error, non-2xx status, oversized body, a document
//! that is not a JWKS or holds no usable key) keeps the last good keys.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use super::keys::{self, MAX_KEY_DOCUMENT_BYTES};
use super::Authenticator;
use crate::config;

/// First retry delay after a failed fetch; doubled up to [`MAX_BACKOFF`]
/// (and never beyond the issuer's refresh interval).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The HTTP client for every `jwks_url`.
pub(crate) struct Fetcher {
    client: reqwest::Client,
}

impl Fetcher {
    pub fn new(timeout: Duration) -> Result<Fetcher, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // The client is used from several tokio runtimes (pingora's,
            // the CLI's): a pooled connection belongs to the runtime that
            // opened it and breaks when that runtime ends.
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 3 {
                    attempt.error("more than 3 redirects")
                } else if redirect_allowed(attempt.url()) {
                    attempt.follow()
                } else {
                    attempt.error("redirect to plain http refused")
                }
            }))
            .user_agent(concat!("zambda-guard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Fetcher { client })
    }

    /// GET `url`: 2xx only, at most [`MAX_KEY_DOCUMENT_BYTES`] of body.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let describe = |e: reqwest::Error| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else if e.is_redirect() {
                "bad redirect"
            } else {
                "request failed"
            };
            // The causes say what actually went wrong (DNS, refused, TLS).
            let e = e.without_url();
            let mut text = format!("{kind}: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            text
        };
        let mut response = self
            .client
            .get(url)
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP status {}", status.as_u16()));
        }
        let too_large = || format!("body larger than {MAX_KEY_DOCUMENT_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|len| len > MAX_KEY_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > MAX_KEY_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Same rule as the config's for `jwks_url`: https, or http to loopback.
fn redirect_allowed(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Per-issuer fetch coordination.
pub(crate) struct FetchState {
    /// Held for the whole of every fetch of this issuer; holds the time of
    /// the last re-fetch triggered by an unknown `kid`.
    lock: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped when a fetch of this issuer completes (success or failure).
    epoch: AtomicU64,
    refresh: Duration,
    min_refetch: Duration,
}

impl FetchState {
    pub fn new(issuer: &config::Issuer) -> FetchState {
        FetchState {
            lock: tokio::sync::Mutex::new(None),
            epoch: AtomicU64::new(0),
            refresh: issuer.jwks_refresh,
            min_refetch: issuer.jwks_min_refetch,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }
}

/// Fetches every `jwks_url` of issuer `index`, the fetch lock held by the
/// caller. Returns the first error.
async fn fetch_locked(auth: &Authenticator, index: usize) -> Result<(), String> {
    let (Some(fetcher), Some(issuer)) = (&auth.fetcher, auth.issuers.get(index)) else {
        return Ok(());
    };
    let mut first_error = None;
    for (source, url) in issuer.store.urls() {
        let result = match fetcher.get(url).await {
            Ok(body) => keys::parse_jwks(&body, keys::Origin::Url, issuer.store.allowed()),
            Err(e) => Err(e),
        };
        match &result {
            Ok((keys, _)) => {
                tracing::debug!(issuer = %issuer.name, url, keys = keys.len(), "jwks fetched");
            }
            Err(e) => {
                tracing::warn!(issuer = %issuer.name, url, "jwks fetch failed, keeping the last good keys: {e}");
                first_error.get_or_insert_with(|| format!("{url}: {e}"));
            }
        }
        issuer.store.url_fetched(source, result);
    }
    issuer.fetch.epoch.fetch_add(1, Ordering::AcqRel);
    first_error.map_or(Ok(()), Err)
}

/// One fetch of issuer `index`, waiting for any fetch under way first.
async fn fetch(auth: &Authenticator, index: usize) -> Result<(), String> {
    let Some(issuer) = auth.issuers.get(index) else {
        return Ok(());
    };
    let _turn = issuer.fetch.lock.lock().await;
    fetch_locked(auth, index).await
}

/// The re-fetch an unknown `kid` asks for: at most once per
/// `jwks_min_refetch`, shared by concurrent requests, bounded in time by
/// `jwks_fetch_timeout`. `seen` is the epoch the caller read before looking
/// the `kid` up: if it moved, a fetch finished since and the caller just
/// looks again. True when the caller waited for a fetch (its own or one
/// under way); false when `jwks_min_refetch` ruled one out.
pub(crate) async fn refetch_for_unknown_kid(auth: &Authenticator, index: usize, seen: u64) -> bool {
    let Some(issuer) = auth.issuers.get(index) else {
        return false;
    };
    let attempt = async {
        let mut last_refetch = issuer.fetch.lock.lock().await;
        if issuer.fetch.epoch() != seen {
            return true;
        }
        let now = Instant::now();
        if last_refetch.is_some_and(|last| now.duration_since(last) < issuer.fetch.min_refetch) {
            return false;
        }
        *last_refetch = Some(now);
        tracing::info!(issuer = %issuer.name, "unknown key id: fetching the issuer's keys");
        // Errors are logged and counted inside; the caller looks again.
        let _ = fetch_locked(auth, index).await;
        true
    };
    match tokio::time::timeout(auth.fetch_timeout, attempt).await {
        Ok(waited) => waited,
        Err(_) => {
            tracing::warn!(issuer = %issuer.name, "unknown key id: key fetch did not finish in time");
            true
        }
    }
}

pub(crate) fn spawn_refresh(auth: &Arc<Authenticator>) {
    if auth
        .refresh_spawned
        .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::error!("jwks refresh not started: no tokio runtime");
        auth.refresh_spawned
            .store(false, std::sync::atomic::Ordering::SeqCst);
        return;
    };
    for (index, issuer) in auth.issuers.iter().enumerate() {
        if issuer.store.has_url() {
            runtime.spawn(refresh_loop(Arc::downgrade(auth), index));
        }
    }
}

/// First fetch with backoff until it succeeds, then one every
/// `jwks_refresh`; after a failure, backoff again (capped by the refresh
/// interval). Ends when the authenticator is dropped.
async fn refresh_loop(auth: Weak<Authenticator>, index: usize) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(strong) = auth.upgrade() else {
            return;
        };
        let Some(refresh) = strong.issuers.get(index).map(|i| i.fetch.refresh) else {
            return;
        };
        let delay = match fetch(&strong, index).await {
            Ok(()) => {
                backoff = FIRST_BACKOFF;
                refresh
            }
            Err(_) => {
                let delay = backoff.min(MAX_BACKOFF).min(refresh);
                backoff = backoff.saturating_mul(2);
                delay
            }
        };
        // Do not keep the authenticator alive while sleeping.
        drop(strong);
        tokio::time::sleep(delay).await;
    }
}

pub(crate) async fn refresh_all(auth: &Authenticator) -> Vec<(String, String)> {
    let indexes: Vec<usize> = (0..auth.issuers.len())
        .filter(|&i| auth.issuers[i].store.has_url())
        .collect();
    let results = join_all(indexes.iter().map(|&i| fetch(auth, i)).collect()).await;
    indexes
        .into_iter()
        .zip(results)
        .filter_map(|(i, result)| result.err().map(|e| (auth.issuers[i].name.to_string(), e)))
        .collect()
}

/// Runs futures concurrently on the current task, results in order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
