//! Every input the fuzz targets ever failed on (`fuzz/regressions/<target>/`),
//! replayed as plain tests so `cargo test` catches a regression without
//! cargo-fuzz, plus the minimised reproducer of each finding spelled out.
//!
//! Each input runs on its own thread with a deadline: a hang fails the test
//! instead of stalling the suite.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use zambda_guard::policy;
use zambda_guard::route;

/// Generous: the slowest fuzz input runs in milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `f` on a thread; fails if it panics or has not finished by the
/// deadline.
fn within_deadline(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    match finished.recv_timeout(DEADLINE) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let _ = worker.join();
            panic!("{what}: panicked");
        }
        // the thread is left running; the test process ends with the test
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {DEADLINE:?}"),
    }
}

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if path.is_file() && !hidden {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

/// What the `policy_load` target does with one input: load it as YAML and
/// as JSON, alone and next to a catalog.
fn load_policy(text: &str) {
    const CATALOG: &str = "zambdas:\n  - {id: alpha-id, name: alpha}\n";
    for name in ["policies/fuzz.yaml", "policies/fuzz.json"] {
        let _ = policy::load_texts(&[(Path::new(name), text)]);
        let _ = policy::load_texts(&[
            (Path::new("policies/catalog.yaml"), CATALOG),
            (Path::new(name), text),
        ]);
    }
}

#[test]
fn policy_load_regressions() {
    for (path, bytes) in inputs("policy_load") {
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        within_deadline(&path.display().to_string(), move || load_policy(&text));
    }
}

#[test]
fn route_parse_regressions() {
    for (path, bytes) in inputs("route_parse") {
        within_deadline(&path.display().to_string(), move || {
            for prefix in ["/v1", ""] {
                if let Ok(t) = route::parse(&bytes, prefix) {
                    assert!(t.zambda.bytes().all(route::is_id_byte));
                    let canonical = route::canonical_path(prefix, &t.zambda, t.route);
                    let again =
                        route::parse(canonical.as_bytes(), prefix).expect("canonical path parses");
                    assert_eq!((again.route, again.zambda), (t.route, t.zambda));
                }
            }
        });
    }
}

/// Found by `policy_load` in its first campaign (2026-11-25, after ~215 000
/// runs): a policy file whose YAML breaks off inside a mapping — here an
/// alias (`*subject"`) where a key was expected, in a flow mapping inside a
/// section's list; minimal: `{"roles":[{*s"}]}` — never finishes loading.
/// The line indexer (`policy::lines`) keeps asking the YAML parser for the
/// next event after the stream has ended. One such file in `policies/`
/// stops the proxy from starting, or wedges a reload, with no error.
#[test]
fn policy_file_broken_inside_a_mapping_loads_or_fails_in_bounded_time() {
    let found = r#"{"zambdas":[{"id":"g","name":"gamma","type":"publkc"}],"roles":[{"name":"j","accessPolicy":{"rule":{"action":"Zam@da:*","resource":"Zambda:Function:gamma","effect":"Allow"}}}],"actors":[{*subject":"x@clients","roles":["j"]}]}"#;
    for (name, text) in [
        (
            "the fuzzer's input, as .yaml",
            ("policies/fuzz.yaml", found),
        ),
        (
            "the fuzzer's input, as .json",
            ("policies/fuzz.json", found),
        ),
        (
            "minimal, as .yaml",
            ("policies/a.yaml", r#"{"roles":[{*s"}]}"#),
        ),
        (
            "minimal, as .json",
            ("policies/a.json", r#"{"actors":[{*s"}]}"#),
        ),
    ] {
        within_deadline(name, move || {
            let result = policy::load_texts(&[(Path::new(text.0), text.1)]);
            assert!(result.is_err(), "a broken file loaded");
        });
    }
}
