//! The verified-token cache: SHA-256 of the whole token → the identity it
//! proved, its issuer, the fingerprint of the key that verified it and the
//! time it stops being acceptable (`exp` + leeway).
//!
//! Bounded: the capacity is split over sharded maps, and a full shard first
//! drops its expired entries (at most once a second), then arbitrary ones,
//! so a flood of distinct valid tokens cannot grow memory. A hit costs one
//! SHA-256, one uncontended shard lock and an `Arc` clone; the caller then
//! checks that the key is still in the issuer's key set.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sha2::{Digest as _, Sha256};

use super::keys::Fingerprint;
use super::Identity;

const SHARDS: usize = 32;

/// Below this capacity one shard holds everything (a split would leave
/// shards too small to be useful).
const MIN_SHARDED_CAPACITY: usize = SHARDS * 16;

/// SHA-256 of a token: the cache key. A full-length hash, so no attacker can
/// make another token collide with a cached one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digest([u8; 32]);

pub(crate) fn digest(token: &str) -> Digest {
    Digest(Sha256::digest(token.as_bytes()).into())
}

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniformly distributed and not chosen by the attacker
        // (that would need a SHA-256 preimage): eight bytes are a hash.
        let d = &self.0;
        state.write_u64(u64::from_le_bytes([
            d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7],
        ]));
    }
}

/// Passes the `u64` written by [`Digest::hash`] through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `Digest`; fold anything else in rather than ignore it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Clone)]
pub(crate) struct Entry {
    pub identity: Arc<Identity>,
    /// Index of the issuer in the authenticator.
    pub issuer: usize,
    /// The key that verified the token.
    pub fingerprint: Fingerprint,
    /// Unix seconds: `exp` + leeway. Not accepted after it.
    pub valid_until: u64,
}

struct Shard {
    map: HashMap<Digest, Entry, BuildHasherDefault<PassThrough>>,
    last_sweep: u64,
}

pub(crate) struct Cache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl Cache {
    /// `None` when `capacity` is 0 (caching disabled).
    pub fn new(capacity: usize) -> Option<Cache> {
        if capacity == 0 {
            return None;
        }
        let shards = if capacity >= MIN_SHARDED_CAPACITY {
            SHARDS
        } else {
            1
        };
        let per_shard = capacity / shards;
        Some(Cache {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::default(),
                        last_sweep: 0,
                    })
                })
                .collect(),
            per_shard,
        })
    }

    fn shard(&self, digest: &Digest) -> MutexGuard<'_, Shard> {
        // Byte 8 is independent of the bytes the map hashes on.
        let index = usize::from(digest.0[8]) % self.shards.len();
        // Every write replaces a whole entry, so a poisoned shard is sound.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry for `digest` if it is still acceptable at `now`.
    pub fn get(&self, digest: &Digest, now: u64) -> Option<Entry> {
        let shard = self.shard(digest);
        let entry = shard.map.get(digest)?;
        (now <= entry.valid_until).then(|| entry.clone())
    }

    pub fn insert(&self, digest: Digest, entry: Entry, now: u64) {
        let mut shard = self.shard(&digest);
        if shard.map.len() >= self.per_shard && !shard.map.contains_key(&digest) {
            if shard.last_sweep != now {
                shard.map.retain(|_, e| now <= e.valid_until);
                shard.last_sweep = now;
            }
            while shard.map.len() >= self.per_shard {
                let Some(victim) = shard.map.keys().next().copied() else {
                    break;
                };
                shard.map.remove(&victim);
            }
        }
        if self.per_shard > 0 {
            shard.map.insert(digest, entry);
        }
    }

    pub fn remove(&self, digest: &Digest) {
        self.shard(digest).map.remove(digest);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.map.len()))
            .sum()
    }
}
