//! Loads a policy directory the way the proxy does at start-up and reports
//! the load time and the process's peak memory:
//!
//! ```sh
//! cargo run --release --example gen_policies -- /tmp/policies-at-scale
//! cargo run --release --example policy_load -- /tmp/policies-at-scale
//! ```
//!
//! Peak RSS is the kernel's high-water mark (`VmHWM` in
//! `/proc/self/status`), so it includes the file texts and the parse; the
//! RSS after the load, with the compiled set alone kept, is printed too.
//! It allocates with mimalloc, as the `zambda-guard` binary does, so the
//! figures are those of a start-up or reload in the proxy
//! (remove the allocator lines below to measure with the system allocator).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Instant;

/// The binary's allocator (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: policy_load DIR (see examples/gen_policies.rs)"),
    );
    let before = status_kb("VmRSS");
    let started = Instant::now();
    let loaded = zambda_guard::policy::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    let stats = loaded.set.stats();
    let peak = status_kb("VmHWM");
    drop(loaded.warnings);
    let after = status_kb("VmRSS");
    println!(
        "loaded {} files: {} Zambdas, {} roles, {} actors, {} rules ({} Zambda-facing)",
        stats.files,
        stats.zambdas,
        stats.roles,
        stats.actors,
        stats.rules(),
        stats.zambda_rules
    );
    println!("load time: {:.3} s", elapsed.as_secs_f64());
    println!(
        "RSS: {:.1} MB before, {:.1} MB peak (VmHWM), {:.1} MB after with the set kept",
        before / 1024.0,
        peak / 1024.0,
        after / 1024.0
    );
    drop(loaded.set);
}

/// A `kB` line of `/proc/self/status`, in kB.
fn status_kb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}
