//! The shape of the house, checked: no import circles between the crate's
//! top-level modules, and the modules that decide know no pingora.
//!
//! Imports are read from the source text (`crate::name` paths and
//! `use crate::{a, b}` groups); unit-test files (`tests.rs`) are left out,
//! since tests may reach anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/gate/mod.rs` -> `gate`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level modules a source text imports.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn graph() -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for file in files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let module = module_of(&src, &file);
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(imports(&text).into_iter().filter(|d| *d != module));
        texts.entry(module).or_default().push_str(&text);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    (graph, texts)
}

/// Every cycle through `start`, as the modules it passes.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_string()]];
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if next == start {
                return Some(path.clone());
            }
            if !path.contains(next) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn the_import_reader_sees_paths_and_groups() {
    let text = "use crate::config::{self, X};\nuse crate::{policy, route::Route};\nfn f() { crate::clock::unix_now(); }";
    let want: BTreeSet<String> = ["config", "policy", "route", "clock"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(imports(text), want);
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(cycle_through(&g, "a").is_some(), "a circle is found");
}

#[test]
fn no_import_circles_between_modules() {
    let (graph, _) = graph();
    assert!(graph.len() > 10, "the source tree was not read: {graph:?}");
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_deciding_modules_know_no_pingora() {
    let (graph, texts) = graph();
    for module in [
        "gate", "policy", "route", "store", "authn", "limit", "client", "sync",
    ] {
        let text = &texts[module];
        for crate_path in ["pingora::", "pingora_"] {
            assert!(!text.contains(crate_path), "{module} uses {crate_path}");
        }
        assert!(
            !graph[module].contains("proxy") && !graph[module].contains("server"),
            "{module} imports the proxy or the server: {:?}",
            graph[module]
        );
    }
    // The sync is its own process: nothing the proxy runs depends on it.
    for (module, imports) in &graph {
        assert!(
            module == "sync" || !imports.contains("sync"),
            "{module} imports sync"
        );
    }
    let policy = &texts["policy"];
    for word in ["tokio", "http::", "crate::config"] {
        assert!(!policy.contains(word), "policy mentions {word}");
    }
}
