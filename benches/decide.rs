//! The decision at scale: `Set::decide` for a verified principal against a
//! set of 100k actors, 10k roles, 10k Zambdas and 200k rules (issue 5's
//! goal: ≤ 1 µs median), and what the proxy does around it per request
//! (the catalog lookup and `roles_of` for `x-zambda-roles`).
//!
//! The set comes from `support/gen.rs`; each iteration decides the next of
//! 4096 random (actor, Zambda) pairs, so caches see a realistic spread
//! rather than one hot pair.
//!
//! `cargo bench --bench decide`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/gen.rs"]
mod gen;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use zambda_guard::policy::{self, Principal};

const ISSUER: &str = "https://issuer.test/";
const PAIRS: usize = 4096;

fn bench(c: &mut Criterion) {
    let spec = gen::Spec::AT_SCALE;
    let files = gen::generate(&spec);
    let texts: Vec<(PathBuf, &str)> = files
        .iter()
        .map(|(name, text)| (PathBuf::from("/policies").join(name), text.as_str()))
        .collect();
    let refs: Vec<(&std::path::Path, &str)> =
        texts.iter().map(|(p, t)| (p.as_path(), *t)).collect();
    let started = Instant::now();
    let loaded = policy::load_texts(&refs).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "set: {:?}, compiled in {:.2} s",
        loaded.set.stats(),
        started.elapsed().as_secs_f64()
    );
    let set = loaded.set;

    let mut rng = gen::Rng::new(42);
    let subjects: Vec<String> = (0..PAIRS)
        .map(|_| gen::subject(rng.below(spec.actors)))
        .collect();
    let names: Vec<String> = (0..PAIRS)
        .map(|_| gen::zambda_name(rng.below(spec.zambdas)))
        .collect();
    let zambdas: Vec<&policy::Zambda> = names.iter().map(|n| set.zambda(n).unwrap()).collect();
    let no_roles: Vec<String> = Vec::new();
    let principals: Vec<Principal<'_>> = subjects
        .iter()
        .map(|s| Principal {
            subject: s,
            issuer: Some(ISSUER),
            token_roles: &no_roles,
        })
        .collect();
    let allowed = (0..PAIRS)
        .filter(|&i| set.decide(&principals[i], zambdas[i]).allowed)
        .count();
    eprintln!("{allowed} of {PAIRS} sampled pairs allowed");

    // A principal whose token also names two roles (the roles claim).
    let token_roles = vec![gen::role_name(7), gen::role_name(4242)];

    let mut group = c.benchmark_group("decision at scale");
    let mut i = 0;
    group.bench_function("decide", |b| {
        b.iter(|| {
            i = (i + 1) % PAIRS;
            black_box(set.decide(black_box(&principals[i]), black_box(zambdas[i])));
        })
    });
    group.bench_function("decide with two token roles", |b| {
        b.iter(|| {
            i = (i + 1) % PAIRS;
            let p = Principal {
                token_roles: &token_roles,
                ..principals[i]
            };
            black_box(set.decide(black_box(&p), black_box(zambdas[i])));
        })
    });
    group.bench_function("catalog lookup + decide + roles_of", |b| {
        b.iter(|| {
            i = (i + 1) % PAIRS;
            let z = set.zambda(black_box(&names[i])).unwrap();
            let d = set.decide(black_box(&principals[i]), z);
            let roles = set.roles_of(&principals[i]);
            black_box((d, roles.join(",")));
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
