//! Policy loading at scale: `policy::load_dir` on a directory of 100k
//! actors, 10k roles, 10k Zambdas and 200k rules (issue 5's goal: ≤ 1 s),
//! written as YAML (the usual format) and as JSON. Peak memory of a load is
//! measured by `examples/policy_load.rs` in a process of its own.
//!
//! `cargo bench --bench policy_load`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/gen.rs"]
mod gen;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

/// The binary's allocator, so that repeated loads in one process cost what
/// a reload in the running proxy costs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy load at scale");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    for format in [gen::Format::Yaml, gen::Format::Json] {
        let spec = gen::Spec {
            format,
            ..gen::Spec::AT_SCALE
        };
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in gen::generate(&spec) {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let stats = zambda_guard::policy::load_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .set
            .stats();
        assert_eq!(stats.rules(), spec.rules);
        group.bench_function(format.extension(), |b| {
            b.iter(|| black_box(zambda_guard::policy::load_dir(dir.path()).is_ok()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
