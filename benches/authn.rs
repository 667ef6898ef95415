//! Token verification through `Authenticator::authenticate`, for each
//! algorithm family (RS256, PS256, ES256, ES384, EdDSA, HS256):
//!
//! - `cold`: the verified-token cache disabled, so every call parses the
//!   token, picks the key and checks signature and claims;
//! - `cached`: the same token again with the cache on (issue 5's goal for
//!   a hit: ≤ 1 µs): SHA-256 of the token, one shard lookup, the key-still-
//!   trusted check.
//!
//! `cargo bench --bench authn`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/tokens.rs"]
mod tokens;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    for family in tokens::families() {
        let token = tokens::sign(&family, &tokens::claims("bench@clients", 1));
        let cold = tokens::authenticator(family.alg, family.source.clone(), 0);
        let cached = tokens::authenticator(family.alg, family.source.clone(), 100_000);
        // Both accept the token; the second call on `cached` is a hit.
        for auth in [&cold, &cached] {
            let identity = tokens::ready(auth.authenticate(&token)).unwrap();
            assert_eq!(identity.subject, "bench@clients");
        }
        let mut group = c.benchmark_group(format!("authenticate {}", family.name));
        group.bench_function("cold", |b| {
            b.iter(|| black_box(tokens::ready(cold.authenticate(black_box(&token))).is_ok()))
        });
        group.bench_function("cached", |b| {
            b.iter(|| black_box(tokens::ready(cached.authenticate(black_box(&token))).is_ok()))
        });
        group.finish();
        assert_eq!(
            cached
                .stats()
                .cache_misses
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "the cached benchmark must only hit"
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
