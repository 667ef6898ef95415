//! Differential tests of the fast YAML reader (`text::block`) against
//! serde_yaml: whatever the fast reader reads must be exactly what
//! serde_yaml reads, and it must give up on everything it does not fully
//! understand. A table of chosen texts, every policy file the repository
//! ships, the scale generator's files, and seeded random documents and
//! mutations.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::load::read_sources;
use super::tests::seeded_random;
use super::text::file::File;
use super::text::{block, is_json};

#[path = "../../benches/support/gen.rs"]
mod gen;

/// Any document, as `deserialize_any` sees it (what the file types ask
/// for when a value may be a string, a list or a mapping).
#[derive(Debug, PartialEq)]
enum Tree {
    Str(String),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
    /// Null, a boolean or a number.
    Other(String),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Tree, D::Error> {
        struct TreeVisitor;

        impl<'de> Visitor<'de> for TreeVisitor {
            type Value = Tree;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("anything")
            }
            fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
                Ok(Tree::Str(v.to_owned()))
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Other("null".into()))
            }
            fn visit_none<E>(self) -> Result<Tree, E> {
                Ok(Tree::Other("none".into()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
                Ok(Tree::Other(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
                Ok(Tree::Other(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
                Ok(Tree::Other(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
                Ok(Tree::Other(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Tree::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Tree>()? {
                    entries.push(entry);
                }
                Ok(Tree::Map(entries))
            }
        }

        deserializer.deserialize_any(TreeVisitor)
    }
}

/// Holds the differential property for `text` as `T`: when the fast reader
/// reads it, serde_yaml reads it to the same value. Returns whether the
/// fast reader read it.
fn agrees<T: DeserializeOwned + Debug>(text: &str) -> bool {
    let Some(fast) = block::from_str::<T>(text) else {
        return false;
    };
    match serde_yaml::from_str::<T>(text) {
        Ok(slow) => assert_eq!(
            format!("{fast:?}"),
            format!("{slow:?}"),
            "the fast reader and serde_yaml disagree on:\n{text}"
        ),
        Err(error) => panic!("the fast reader read what serde_yaml refuses ({error}):\n{text}"),
    }
    true
}

/// Whether the fast reader should read a text or give it to serde_yaml.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fast {
    Reads,
    GivesUp,
}

fn check(text: &str, expected: Fast) {
    let read_tree = agrees::<Tree>(text);
    let read_file = agrees::<Option<File>>(text);
    let got = if read_tree {
        Fast::Reads
    } else {
        Fast::GivesUp
    };
    assert_eq!(got, expected, "as any document:\n{text}");
    // A text the file types take is read as a file too.
    if expected == Fast::Reads && serde_yaml::from_str::<Option<File>>(text).is_ok() {
        assert!(
            read_file,
            "read as a document but not as a policy file:\n{text}"
        );
    }
}

#[test]
fn reads_plain_block_yaml_as_serde_yaml_does() {
    use Fast::*;
    let cases: &[(&str, Fast)] = &[
        ("zambdas:\n  - name: a\n    id: x\n", Reads),
        ("---\nzambdas:\n- name: a\n", Reads),
        ("--- # header\nroles: []\n", Reads),
        ("zambdas: []\n\n# the end\n", Reads),
        ("roles:\n  - name: r\n    access_policy:\n      rule:\n        - action: [Zambda:InvokeFunction]\n          resource: [\"Zambda:Function:*\"]\n          effect: Allow\n", Reads),
        ("roles:\n- name: r\n  accessPolicy:\n  - action: Zambda:InvokeFunction\n    resource: 'Zambda:Function:*'\n    effect: Deny\n", Reads),
        ("actors:\n  - subject: \"a@clients\"\n    roles: [{id: r1, name: R1}, r2]\n", Reads),
        ("actors:\n  - subject: a # a comment\n    description: it's #1 with a:colon\n", Reads),
        ("actors:\n  - subject: 'it''s'\n    description: \"q: # not a comment\"\n", Reads),
        ("a:\n  b:\n    c: d\n  e:\n  - f\n  - g\n", Reads),
        ("a:\n  - f\n  -\n  - g\n", GivesUp),
        ("a: http://host:8080/path?x=1\nb: [a, [b, c], {d: e}]\nc: {}\n", Reads),
        ("a: x\r\nb: y\r\n", Reads),
        ("\u{feff}a: b\n", Reads),
        ("a: unicode é ✓\n", Reads),
        ("cond:\n  ForAllValues:StringEquals:\n    FHIR:Patient.id: \"%currentUser\"\n", Reads),
        ("a:    spaced   \nb:\n    - deep\n", Reads),
        // Scalars that `deserialize_any` resolves: left to serde_yaml.
        ("a: 12\n", GivesUp),
        ("a: true\n", GivesUp),
        ("a: ~\n", GivesUp),
        ("a: .inf\n", GivesUp),
        ("a: -1\n", GivesUp),
        ("a: 1e5\n", GivesUp),
        ("a: 0x1f\n", GivesUp),
        ("a: [+1, 2.5]\n", GivesUp),
        ("a: 12345678-1234-1234-1234-123456789012\n", GivesUp),
        // Role ids are strings, whatever they start with.
        ("a: [9e1b2c3d-0002-4a00-8000-00000000a002, 0a1b]\n", Reads),
        ("a: inf\nb: nan\nc: 1x\n", Reads),
        ("a:\n", GivesUp),
        // What plain block YAML is not.
        ("a: &anchor x\nb: *anchor\n", GivesUp),
        ("a: !tag x\n", GivesUp),
        ("a: |\n  block\n", GivesUp),
        ("a: >\n  folded\n", GivesUp),
        ("a: plain\n  continued\n", GivesUp),
        ("a: [x,\n  y]\n", GivesUp),
        ("a: \"x\n  y\"\n", GivesUp),
        ("a: \"esc\\n\"\n", Reads),
        (r#"a: "\u00e9\x41\U0001F600\"\\\/\ \t\0\N\_\L\P\e\a\b\v\f\r""#, Reads),
        (r#"a: ["\"x\"", {b: "\u263a"}]"#, Reads),
        (r#"a: "\ud800""#, GivesUp),
        (r#"a: "\U00110000""#, GivesUp),
        (r#"a: "\q""#, GivesUp),
        (r#"a: "\x4""#, GivesUp),
        ("a: \"line \\\n  break\"\n", GivesUp),
        ("a: b: c\n", GivesUp),
        ("a: - b\n", GivesUp),
        ("\"a\": b\n", GivesUp),
        ("? a\n: b\n", GivesUp),
        ("a:\tb\n", GivesUp),
        ("a:\n\t- b\n", GivesUp),
        ("a: b\rc\n", GivesUp),
        ("a: b\u{85}c\n", GivesUp),
        ("a: b\u{2028}c\n", GivesUp),
        ("a: b\u{1}c\n", GivesUp),
        ("a: b\n---\nc: d\n", GivesUp),
        ("a: b\n...\n", GivesUp),
        ("%YAML 1.1\n---\na: b\n", GivesUp),
        ("- a\n- b\n", GivesUp),
        ("  a: b\n", GivesUp),
        ("a: b\n  c: d\n", GivesUp),
        ("a:\n  - b\n c: d\n", GivesUp),
        ("a:\n    b: c\n  d: e\n", GivesUp),
        ("a:\n- b\n  - c\n", GivesUp),
        ("a: [b, ]\n", GivesUp),
        ("a: [b, , c]\n", GivesUp),
        ("a: [b:, c]\n", GivesUp),
        ("a: [b: c]\n", GivesUp),
        ("a: {b}\n", GivesUp),
        ("a: \"b\"c\n", GivesUp),
        ("a: \"b\"#c\n", GivesUp),
        ("a: @b\n", GivesUp),
        ("a: `b\n", GivesUp),
        ("a: b:\n", GivesUp),
        ("a:\n  - - b\n", GivesUp),
        ("a: b\na: c\n", Reads),
        ("a: 'unterminated\n", GivesUp),
        ("a: [unterminated\n", GivesUp),
        ("# only a comment\n", GivesUp),
    ];
    for (text, expected) in cases {
        check(text, *expected);
    }
}

#[test]
fn gives_up_on_what_the_file_types_refuse() {
    // serde_yaml then reports the error, with its line.
    for text in [
        "zambdas:\n  - name: a\n    colour: red\n",
        "zambdas:\n  - id: x\n",
        "unknown: []\n",
        "roles:\n  - name: r\n    access_policy: {rule: [{action: a, resource: b}]}\n",
        "zambdas:\n  name: a\n",
        "zambdas: []\nzambdas: []\n",
        "defaults:\n  - issuer: i\n",
    ] {
        assert!(block::from_str::<Option<File>>(text).is_none(), "{text}");
        assert!(
            serde_yaml::from_str::<Option<File>>(text).is_err(),
            "{text}"
        );
    }
}

/// The YAML policy files the repository ships, read as the loader finds
/// and reads them (`read_sources`: no policy tests, no hidden files).
fn shipped_policy_files() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["policies", "examples/oystehr-project/policies"] {
        let sources = read_sources(&root.join(dir));
        assert!(sources.errors.is_empty(), "{:?}", sources.errors);
        files.extend(sources.texts.into_iter().filter(|(path, _)| !is_json(path)));
    }
    assert!(files.len() >= 5, "{files:?}");
    files
}

#[test]
fn reads_every_shipped_policy_file() {
    for (path, text) in shipped_policy_files() {
        assert!(
            agrees::<Option<File>>(&text),
            "{} is not read by the fast reader",
            path.display()
        );
    }
}

#[test]
fn reads_the_scale_generators_files() {
    let spec = gen::Spec {
        actors: 300,
        roles: 40,
        zambdas: 40,
        rules: 900,
        per_file: 100,
        m2m_every: 3,
        defaults_issuer: Some(gen::ISSUER),
        ..gen::Spec::AT_SCALE
    };
    let files = gen::generate(&spec);
    assert!(files.len() >= 6);
    for (name, text) in files {
        assert!(
            agrees::<Option<File>>(&text),
            "{name} is not read by the fast reader"
        );
    }
}

/// The policy tests' fixed-seed generator (`tests::seeded_random`), so that
/// a failure replays, with a pick from a list.
struct Rng(Box<dyn FnMut(usize) -> usize>);

impl Rng {
    fn new() -> Rng {
        Rng(Box::new(seeded_random()))
    }

    fn below(&mut self, n: usize) -> usize {
        (self.0)(n)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "name",
    "id",
    "roles",
    "a",
    "b",
    "rule",
    "x:y",
    "effect",
    "\"q\"",
    "a b",
    "1",
    "-k",
    "k-",
    "?",
    "a#",
    "ForAll:Eq",
];

const VALUES: &[&str] = &[
    "",
    "a",
    "b c",
    "\"q\"",
    "'it''s'",
    "\"a: b\"",
    "x # c",
    "x#y",
    "http://h:1/p",
    "null",
    "~",
    "123",
    "0x1f",
    "true",
    "-1",
    ".5",
    "&a x",
    "*a",
    "!t x",
    "|",
    ">",
    "[a, b]",
    "[]",
    "{}",
    "{id: r1, name: N}",
    "[a, [b]]",
    "[Zambda:InvokeFunction, Zambda:Function:*]",
    "[a:b, c]",
    "[a:, c]",
    "\"a\\\"b\"",
    r#""\u00e9\n\x41""#,
    r#""\U0001F600\\""#,
    r#""\ud800""#,
    r#""\""#,
    "'x",
    "\"x",
    "a: b",
    "x:",
    "@x",
    "%x",
    "a\tb",
    "[a,]",
    "[a b]",
    "{a}",
    "- x",
    "? x",
    ": x",
    "#",
    "é",
    "Allow",
    "[\"Zambda:Function:*\"]",
    "9e1b2c3d-0002-4a00",
    "1e5",
    "[1, 2e3, 0o7, 9e1b]",
    "+.5",
    "NaN",
    "{a: [b, c], d: 'e'}",
];

/// A document of random lines: keys, items, values and comments at random
/// indentations, most of them near the previous line's.
fn random_document(rng: &mut Rng) -> String {
    let mut out = String::new();
    if rng.below(8) == 0 {
        out.push_str("---\n");
    }
    let mut indent = 0usize;
    for _ in 0..1 + rng.below(12) {
        indent = match rng.below(6) {
            0 => 0,
            1 => indent + 2,
            2 => indent.saturating_sub(2),
            3 => indent + 1,
            _ => indent,
        }
        .min(8);
        out.push_str(&" ".repeat(indent));
        match rng.below(8) {
            0 => out.push_str(&format!("{}:", rng.pick(KEYS))),
            1 | 2 => out.push_str(&format!("{}: {}", rng.pick(KEYS), rng.pick(VALUES))),
            3 => out.push_str(&format!("- {}", rng.pick(VALUES))),
            4 => out.push_str(&format!("- {}: {}", rng.pick(KEYS), rng.pick(VALUES))),
            5 => out.push('-'),
            6 => out.push_str("# comment"),
            _ => {}
        }
        out.push('\n');
    }
    out
}

/// Keys and values the fast reader reads (`VALUES` and `KEYS` hold others).
const GOOD_KEYS: &[&str] = &[
    "name",
    "id",
    "roles",
    "a",
    "b-c",
    "x:y",
    "ForAll:Eq",
    "$x",
    "a.b",
];
const GOOD_VALUES: &[&str] = &[
    "a",
    "b c",
    "\"q\"",
    "'it''s'",
    "\"a: b # c\"",
    "x # c",
    "x#y",
    "http://h:1/p",
    "[a, b]",
    "[]",
    "{}",
    "{id: r1, name: N}",
    "[a, [b], {c: d}]",
    "[Zambda:InvokeFunction, Zambda:Function:*]",
    "é ✓",
    "''",
    "\"\"",
    "a,b]{",
    r#""\u00e9\t\"\\""#,
];

/// A random well-formed document in block style, written with the choices
/// YAML leaves open (compact mappings in list items, lists at their key's
/// column, flow collections, comments, blank lines, CRLF).
fn random_tree(rng: &mut Rng) -> String {
    fn value(rng: &mut Rng, out: &mut String, indent: usize, depth: usize, after_key: bool) {
        let choice = if depth >= 4 { 0 } else { rng.below(4) };
        match choice {
            0 | 1 => {
                out.push(' ');
                out.push_str(rng.pick(GOOD_VALUES));
                out.push_str(if rng.below(6) == 0 { " # note\n" } else { "\n" });
            }
            2 => {
                out.push('\n');
                // A list at the key's own column, or deeper.
                let at = if after_key && rng.below(2) == 0 {
                    indent
                } else {
                    indent + 2
                };
                list(rng, out, at, depth + 1);
            }
            _ => {
                out.push('\n');
                let at = indent + 2 + rng.below(2);
                map(rng, out, at, depth + 1, None);
            }
        }
    }
    fn map(rng: &mut Rng, out: &mut String, indent: usize, depth: usize, first: Option<()>) {
        let mut keys: Vec<&str> = Vec::new();
        for k in 0..1 + rng.below(4) {
            let key = rng.pick(GOOD_KEYS);
            if keys.contains(&key) {
                continue;
            }
            keys.push(key);
            if k > 0 || first.is_none() {
                out.push_str(&" ".repeat(indent));
            }
            if rng.below(8) == 0 {
                out.push_str("# between\n");
                out.push_str(&" ".repeat(indent));
            }
            out.push_str(key);
            out.push(':');
            value(rng, out, indent, depth, true);
            if rng.below(10) == 0 {
                out.push('\n');
            }
        }
    }
    fn list(rng: &mut Rng, out: &mut String, indent: usize, depth: usize) {
        for _ in 0..1 + rng.below(3) {
            out.push_str(&" ".repeat(indent));
            out.push('-');
            match rng.below(3) {
                0 => {
                    let spaces = 1 + rng.below(2);
                    out.push_str(&" ".repeat(spaces));
                    map(rng, out, indent + 1 + spaces, depth + 1, Some(()));
                }
                1 if depth < 4 => {
                    out.push('\n');
                    map(rng, out, indent + 2, depth + 1, None);
                }
                _ => value(rng, out, indent, depth, false),
            }
        }
    }
    let mut out = String::new();
    if rng.below(6) == 0 {
        out.push_str("--- # doc\n");
    }
    map(rng, &mut out, 0, 0, None);
    if rng.below(8) == 0 {
        out = out.replace('\n', "\r\n");
    }
    out
}

#[test]
fn random_documents_are_read_as_serde_yaml_reads_them_or_given_up() {
    let mut rng = Rng::new();
    let (mut lines_read, mut trees_read) = (0, 0);
    for _ in 0..10_000 {
        // Random lines: mostly not YAML, or not plain block YAML.
        let text = random_document(&mut rng);
        lines_read += usize::from(agrees::<Tree>(&text));
        agrees::<Option<File>>(&text);
        // Well-formed documents, now and then broken in one place.
        let mut text = random_tree(&mut rng);
        if rng.below(3) == 0 {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let at = rng.below(lines.len());
            let broken = match rng.below(3) {
                0 => format!(" {}", lines[at]),
                1 => lines[at].trim_start_matches(' ').to_owned(),
                _ => format!("{}  {}:\n", lines[at], rng.pick(KEYS)),
            };
            text = lines[..at].concat() + &broken + &lines[at + 1..].concat();
        }
        trees_read += usize::from(agrees::<Tree>(&text));
        agrees::<Option<File>>(&text);
    }
    // The property is not vacuous: documents of both kinds are read.
    assert!(lines_read > 50, "read {lines_read} random-line documents");
    assert!(
        trees_read > 5_000,
        "read {trees_read} of 10000 random trees"
    );
}

/// Bytes that change what YAML means when put in the wrong place.
const MUTATIONS: &[&str] = &[
    " ", "  ", ":", ": ", "#", " #", "-", "- ", "\"", "'", "[", "]", "{", "}", ",", "\t", "\r",
    "\n", "\n  ", "&a ", "*a", "!", "|", ">", "?", "%", "@", "---\n", "...", "\\", "~", "null",
    "1", "é",
];

#[test]
fn mutated_policy_files_are_read_as_serde_yaml_reads_them_or_given_up() {
    let texts: Vec<String> = shipped_policy_files()
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    let mut rng = Rng::new();
    let (mut read, mut total) = (0, 0);
    for _ in 0..6_000 {
        let mut text = texts[rng.below(texts.len())].clone();
        for _ in 0..1 + rng.below(3) {
            let mut at = rng.below(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let end = (at + rng.below(3)).min(text.len());
            let end = (end..=text.len())
                .find(|&e| text.is_char_boundary(e))
                .unwrap_or(text.len());
            text.replace_range(at..end, rng.pick(MUTATIONS));
        }
        total += 1;
        read += usize::from(agrees::<Option<File>>(&text));
        agrees::<Tree>(&text);
    }
    assert!(read * 10 > total, "read {read} of {total}");
}
