//! Exact per-key request rates (SPEC §7 `rate_limits`), by the generic cell
//! rate algorithm (GCRA).
//!
//! Each key keeps one number, its theoretical arrival time (TAT): when its
//! next request would be on schedule if it used the rate evenly. A request
//! is let through when the TAT is at most the burst tolerance ahead of now,
//! and then moves the TAT one interval on. That is exact per key — no
//! key's count includes another's, and no window edge lets twice the rate
//! through — and it says when the next request would pass, which is the
//! `Retry-After` of a 429.
//!
//! The keys kept are bounded: each of [`SHARDS`] shards is a
//! least-recently-used map, so under more distinct keys than the bound the
//! ones not seen for longest are forgotten first (and start again with a
//! full burst). Sharding keeps concurrent requests off one lock.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// Shards of the key map; a power of two.
const SHARDS: usize = 16;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A limit of `per_second` requests per second per key, with bursts of up
/// to `burst` requests at once.
pub struct Limiter<K> {
    /// Nanoseconds one request uses up.
    interval: u64,
    /// How far ahead of now a key's TAT may be and still pass.
    tolerance: u64,
    shards: Box<[Mutex<LruCache<K, u64>>]>,
    hasher: RandomState,
    /// Times are nanoseconds since this instant.
    epoch: Instant,
}

impl<K: Hash + Eq> Limiter<K> {
    /// `per_second` and `burst` are at least 1 (config validation);
    /// `max_keys` bounds the keys kept.
    pub fn new(per_second: u64, burst: u64, max_keys: usize) -> Self {
        let per_second = per_second.max(1);
        let interval = (NANOS_PER_SECOND / per_second).max(1);
        let per_shard = NonZeroUsize::new(max_keys.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN);
        Limiter {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Counts one request for `key` now: `Ok` when it may pass, else how
    /// long until the key's next request would.
    pub fn admit(&self, key: K) -> Result<(), Duration> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.admit_at(key, now)
    }

    /// [`Self::admit`] at `now` nanoseconds after the epoch.
    fn admit_at(&self, key: K, now: u64) -> Result<(), Duration> {
        // SHARDS is a power of two: the low bits of the hash pick the shard.
        let shard = (self.hasher.hash_one(&key) as usize) & (SHARDS - 1);
        let Ok(mut keys) = self.shards[shard].lock() else {
            // A panic while holding the lock cannot leave a half-written
            // u64; failing open here would only lift the limit, so refuse.
            return Err(Duration::from_nanos(self.interval));
        };
        let tat = keys.get(&key).map_or(now, |&tat| tat.max(now));
        if tat - now > self.tolerance {
            return Err(Duration::from_nanos(tat - now - self.tolerance));
        }
        keys.put(key, tat.saturating_add(self.interval));
        Ok(())
    }

    /// How many keys are kept now.
    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    fn kept(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }
}

/// The key a client address is limited by: an IPv4 address (also when it
/// came as IPv4-mapped IPv6), or an IPv6 address's /64 — one host usually
/// has a whole /64 to pick addresses from.
pub fn client_key(client: Option<IpAddr>) -> Option<IpAddr> {
    client.map(|ip| match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    })
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_passes_then_one_request_per_interval() {
        // 10 per second: one request every 100 ms, bursts of 3
        let limit = Limiter::new(10, 3, 100);
        for i in 0..3 {
            assert_eq!(limit.admit_at("a", 0), Ok(()), "burst request {i}");
        }
        assert_eq!(
            limit.admit_at("a", 0),
            Err(Duration::from_millis(100)),
            "the fourth at once waits one interval"
        );
        assert_eq!(limit.admit_at("a", 60 * MS), Err(Duration::from_millis(40)));
        assert_eq!(limit.admit_at("a", 100 * MS), Ok(()));
        assert!(limit.admit_at("a", 100 * MS).is_err());
        // other keys are untouched by a's use
        assert_eq!(limit.admit_at("b", 100 * MS), Ok(()));
    }

    #[test]
    fn no_window_edge_lets_twice_the_rate_through() {
        // 5 per second, burst 5, a request every 10 ms for 3 s
        let limit = Limiter::new(5, 5, 10);
        let mut passed = Vec::new();
        for t in (0..3_000).step_by(10) {
            if limit.admit_at("k", t * MS).is_ok() {
                passed.push(t);
            }
        }
        // the burst at once, then exactly one per 200 ms
        assert_eq!(passed[..5], [0, 10, 20, 30, 40]);
        let want: Vec<u64> = (1..15).map(|i| i * 200).collect();
        assert_eq!(passed[5..], want[..]);
    }

    #[test]
    fn refused_requests_do_not_use_up_the_rate() {
        let limit = Limiter::new(1, 1, 10);
        assert_eq!(limit.admit_at("k", 0), Ok(()));
        for t in 1..10 {
            assert!(limit.admit_at("k", t * 100 * MS).is_err());
        }
        assert_eq!(limit.admit_at("k", 1_000 * MS), Ok(()));
    }

    #[test]
    fn kept_keys_are_bounded_least_recent_first() {
        let limit = Limiter::new(1, 1, 64);
        for k in 0..10_000u32 {
            let _ = limit.admit_at(k, 0);
        }
        assert!(limit.kept() <= 64, "kept {}", limit.kept());
        // the most recent key is still limited, the first was forgotten
        assert!(limit.admit_at(9_999, 0).is_err());
        assert_eq!(limit.admit_at(0, 0), Ok(()));
    }

    #[test]
    fn clients_are_keyed_by_ipv4_address_or_ipv6_slash_64() {
        let key = |s: &str| client_key(Some(s.parse().unwrap())).unwrap().to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(client_key(None), None);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        // one request a minute: the wait is most of a minute
        let limit = Limiter::new(1, 1, 10);
        let _ = limit.admit_at("k", 0);
        let slow = Limiter {
            interval: 60 * NANOS_PER_SECOND,
            ..limit
        };
        let _ = slow.admit_at("m", 0);
        assert_eq!(
            slow.admit_at("m", 15 * NANOS_PER_SECOND)
                .map_err(retry_after_seconds),
            Err(45)
        );
    }
}
