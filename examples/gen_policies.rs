//! Writes a large, valid policy set to a directory, for benchmarks and
//! load tests:
//!
//! ```sh
//! cargo run --release --example gen_policies -- DIR \
//!     [--actors 100000] [--roles 10000] [--zambdas 10000] [--rules 200000] \
//!     [--roles-per-actor 2] [--per-file 10000] [--format yaml|json] [--seed 5] \
//!     [--m2m-every 10] [--defaults-issuer https://issuer.test/|none]
//! ```
//!
//! The defaults are issue 5's scale. The set is deterministic for given
//! arguments; see `benches/support/gen.rs` for its shape. `DIR` is created
//! when missing; files of an earlier run with the same names are replaced.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/support/gen.rs"]
mod gen;

use std::path::PathBuf;
use std::process::ExitCode;

use gen::{Format, Spec};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_policies: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut spec = Spec::AT_SCALE;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let mut number = |name: &str| -> Result<usize, String> {
            let v = value(name)?;
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match arg.as_str() {
            "--actors" => spec.actors = number("--actors")?,
            "--roles" => spec.roles = number("--roles")?,
            "--zambdas" => spec.zambdas = number("--zambdas")?,
            "--rules" => spec.rules = number("--rules")?,
            "--roles-per-actor" => spec.roles_per_actor = number("--roles-per-actor")?,
            "--per-file" => spec.per_file = number("--per-file")?,
            "--seed" => spec.seed = number("--seed")? as u64,
            "--m2m-every" => spec.m2m_every = number("--m2m-every")?,
            "--defaults-issuer" => {
                let issuer = value("--defaults-issuer")?;
                // The spec holds a static text: the one value of a run.
                spec.defaults_issuer =
                    (issuer != "none").then(|| &*Box::leak(issuer.into_boxed_str()));
            }
            "--format" => {
                spec.format = match value("--format")?.as_str() {
                    "yaml" => Format::Yaml,
                    "json" => Format::Json,
                    other => return Err(format!("--format: yaml or json, not {other}")),
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: gen_policies DIR [--actors N] [--roles N] [--zambdas N] [--rules N] \
                     [--roles-per-actor N] [--per-file N] [--format yaml|json] [--seed N] \
                     [--m2m-every N] [--defaults-issuer URL|none]"
                );
                return Ok(());
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => dir = Some(PathBuf::from(other)),
        }
    }
    let dir = dir.ok_or("usage: gen_policies DIR [options] (--help)")?;
    if spec.zambdas == 0 && spec.rules > 0 {
        return Err("rules need at least one Zambda".into());
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let files = gen::generate(&spec);
    let mut bytes = 0;
    for (name, text) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        bytes += text.len();
    }
    println!(
        "wrote {} files ({:.1} MB) to {}: {} Zambdas, {} roles, {} actors, {} rules",
        files.len(),
        bytes as f64 / 1e6,
        dir.display(),
        spec.zambdas,
        spec.roles,
        spec.actors,
        spec.rules
    );
    Ok(())
}
