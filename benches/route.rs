//! Path parsing: `route::parse` on the request targets the proxy meets —
//! a name, a UUID, a percent-encoded name, a query string, and the
//! refusals (dot segment, encoded slash, no route).
//!
//! `cargo bench --bench route`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use zambda_guard::route;

fn bench(c: &mut Criterion) {
    let cases: [(&str, &[u8]); 7] = [
        ("name", b"/v1/zambda/lab-results-ingest/execute"),
        (
            "uuid",
            b"/v1/zambda/2419a78e-4c0a-411d-b8e2-90dc081f5efa/execute",
        ),
        ("public", b"/v1/zambda/lab-results-ingest/execute-public"),
        (
            "percent-encoded",
            b"/v1/zambda/lab%2Dresults%2Dingest/execute",
        ),
        (
            "query",
            b"/v1/zambda/lab-results-ingest/execute?mode=sync&x=1",
        ),
        ("reject dot segment", b"/v1/zambda/../admin/execute"),
        ("reject encoded slash", b"/v1/zambda/a%2Fb/execute"),
    ];
    let mut group = c.benchmark_group("route::parse");
    for (name, target) in cases {
        group.bench_function(name, |b| {
            b.iter(|| black_box(route::parse(black_box(target), black_box("/v1")).is_ok()))
        });
    }
    group.bench_function("no route", |b| {
        b.iter(|| black_box(route::parse(black_box(b"/v1/zambda/a/b/c/execute"), "/v1").is_ok()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
