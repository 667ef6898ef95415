//! A flood of distinct valid tokens through the verified-token cache: signs
//! one million distinct HS256 tokens (RS256 signing would take too long),
//! passes each once through `Authenticator::authenticate` with a cache
//! bound of `--cache` entries (default 100000, the config default), and
//! prints the process's RSS as it goes. Memory must level off once the
//! cache is full, whatever the number of tokens.
//!
//! ```sh
//! cargo run --release --example cache_flood -- [--tokens 1000000] [--cache 100000]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/support/tokens.rs"]
mod tokens;

use std::sync::atomic::Ordering;
use std::time::Instant;

use jsonwebtoken::Algorithm;

fn main() {
    let mut count: u64 = 1_000_000;
    let mut cache: usize = 100_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .and_then(|v| v.replace('_', "").parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--tokens", Some(v)) => count = v,
            ("--cache", Some(v)) => cache = v as usize,
            _ => panic!("usage: cache_flood [--tokens N] [--cache N]"),
        }
    }
    let family = tokens::families()
        .into_iter()
        .find(|f| f.alg == Algorithm::HS256)
        .unwrap();
    let auth = tokens::authenticator(Algorithm::HS256, tokens::hmac_source(), cache);
    println!("cache bound: {cache} entries; tokens: {count}");
    println!("{:>10}  {:>9}  {:>9}", "tokens", "RSS MB", "peak MB");
    let baseline = rss_mb("VmRSS");
    println!("{:>10}  {:>9.1}  {:>9.1}", 0, baseline, rss_mb("VmHWM"));
    let started = Instant::now();
    let step = (count / 10).max(1);
    let mut at_full = None;
    for n in 1..=count {
        // Distinct subjects and jti: every token is new to the cache.
        let token = tokens::sign(&family, &tokens::claims(&format!("client-{n}@clients"), n));
        tokens::ready(auth.authenticate(&token)).unwrap();
        if n == cache as u64 {
            at_full = Some(rss_mb("VmRSS"));
        }
        if n % step == 0 {
            println!(
                "{:>10}  {:>9.1}  {:>9.1}",
                n,
                rss_mb("VmRSS"),
                rss_mb("VmHWM")
            );
        }
    }
    let stats = auth.stats();
    let end = rss_mb("VmRSS");
    println!(
        "{} tokens in {:.1} s; cache misses {}, hits {}",
        count,
        started.elapsed().as_secs_f64(),
        stats.cache_misses.load(Ordering::Relaxed),
        stats.cache_hits.load(Ordering::Relaxed)
    );
    if let Some(full) = at_full {
        println!(
            "RSS {baseline:.1} MB at start, {full:.1} MB when the cache first held {cache} entries, \
             {end:.1} MB after all {count} tokens (peak {:.1} MB)",
            rss_mb("VmHWM")
        );
    }
}

/// A `kB` line of `/proc/self/status`, in MB.
fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
