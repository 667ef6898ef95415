//! Per-key request rates over one-second windows (SPEC §7 `rate_limits`).
//!
//! The gate asks only "has this key used up its requests for this second?";
//! how the counts are kept is this module's business.

use std::hash::Hash;
use std::time::Duration;

use pingora_limits::rate::Rate;

/// A limit of requests per second per key.
pub struct Limiter {
    rate: Rate,
    per_second: u64,
}

impl Limiter {
    pub fn per_second(per_second: u64) -> Self {
        Limiter {
            rate: Rate::new(Duration::from_secs(1)),
            per_second,
        }
    }

    /// Counts one request for `key`; true when that one is over the limit.
    pub fn exceeded(&self, key: &impl Hash) -> bool {
        let seen = self.rate.observe(key, 1);
        u64::try_from(seen).unwrap_or(0) > self.per_second
    }
}
