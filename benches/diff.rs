//! `zambda-guard diff` at scale: `Diff::between` two policy sets of 100k
//! actors, 10k roles, 10k Zambdas and 200k rules (issue 7: fast on a large
//! set, computed over roles and distinct rule sets, never every pair).
//!
//! The old set is generated (the `gen` module below, shaped like
//! `support/gen.rs`'s `Spec::AT_SCALE`); the new one is the same text with
//! a change applied:
//!
//! - `unchanged`: nothing changed (the cost of one pass over both sets);
//! - `typical`: a reviewer's everyday change — ten Zambdas added, one
//!   removed, one renamed (rules naming it by name stop matching), one made
//!   authenticated, one rule of a role and one of an actor turned into a
//!   Deny, a hundred new actors;
//! - `broad`: a role allowing every Zambda turned into a Deny, so each of
//!   its holders loses (nearly) the whole catalog.
//!
//! Each prints the pairs it finds, and the bench estimates what deciding
//! every (principal, Zambda) pair of both sets would take instead.
//!
//! `cargo bench --bench diff`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use zambda_guard::policy::{self, Principal, Set};
use zambda_guard::tooling::diff::{Diff, Flip};

/// A small generator of large policy sets, shaped like a real deployment
/// grown large (the shape of `support/gen.rs`'s `Spec::AT_SCALE`, kept
/// here so this benchmark stands alone).
mod gen {
    use std::fmt::Write as _;

    pub const ZAMBDAS: usize = 10_000;
    pub const ROLES: usize = 10_000;
    pub const ACTORS: usize = 100_000;
    /// Files per section, as a team would split them.
    const FILES: usize = 10;

    /// splitmix64: a small seeded PRNG.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed)
        }

        pub fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    pub fn zambda_id(i: usize) -> String {
        format!("00000000-0000-4000-8000-{i:012}")
    }

    pub fn subject(i: usize) -> String {
        format!("{:016x}@clients", Rng::new(i as u64).next())
    }

    /// A Zambda resource, by name or by id.
    fn resource(rng: &mut Rng) -> String {
        let z = rng.below(ZAMBDAS);
        if rng.below(2) == 0 {
            format!("Zambda:Function:fn-{z}")
        } else {
            format!("Zambda:Function:{}", zambda_id(z))
        }
    }

    fn rule(out: &mut String, resources: &[String], effect: &str) {
        let _ = writeln!(
            out,
            "        - action: [Zambda:InvokeFunction]\n          resource: [{}]\n          effect: {effect}",
            resources.join(", ")
        );
    }

    /// `(file name, text)` of every file: 10k Zambdas (one in twenty
    /// public); 10k roles of 10 rules (one in five an inert FHIR rule, one
    /// role in fifty allowing every Zambda, one in ten with a Deny, the
    /// rest Allows of one to three Zambdas); 100k actors holding two roles
    /// and an inline Allow (one in ten a Deny) of one Zambda: 200k rules.
    pub fn generate() -> Vec<(String, String)> {
        let mut files = Vec::new();
        let mut catalog = String::from("zambdas:\n");
        for i in 0..ZAMBDAS {
            let kind = if i % 20 == 19 {
                "public"
            } else {
                "authenticated"
            };
            let _ = writeln!(
                catalog,
                "  - id: {}\n    name: fn-{i}\n    type: {kind}",
                zambda_id(i)
            );
        }
        files.push(("zambdas.yaml".to_owned(), catalog));
        let mut rng = Rng::new(5);
        for file in 0..FILES {
            let mut text = String::from("roles:\n");
            for r in (file..ROLES).step_by(FILES) {
                let _ = writeln!(text, "  - name: role-{r}\n    access_policy:\n      rule:");
                for k in 0..10 {
                    if k % 5 == 4 {
                        text.push_str("        - action: [FHIR:Search, FHIR:Read]\n          resource: [FHIR:Patient]\n          effect: Allow\n");
                    } else if k == 0 && r % 50 == 0 {
                        rule(&mut text, &["Zambda:Function:*".to_owned()], "Allow");
                    } else if k == 1 && r % 10 == 0 {
                        rule(&mut text, &[resource(&mut rng)], "Deny");
                    } else {
                        let resources: Vec<String> =
                            (0..1 + rng.below(3)).map(|_| resource(&mut rng)).collect();
                        rule(&mut text, &resources, "Allow");
                    }
                }
            }
            files.push((format!("roles-{file}.yaml"), text));
        }
        for file in 0..FILES {
            let mut text = String::from("actors:\n");
            for a in (file..ACTORS).step_by(FILES) {
                let _ = writeln!(
                    text,
                    "  - subject: \"{}\"\n    roles: [role-{}, role-{}]\n    access_policy:\n      rule:",
                    subject(a),
                    rng.below(ROLES),
                    rng.below(ROLES)
                );
                let effect = if rng.below(10) == 0 { "Deny" } else { "Allow" };
                rule(&mut text, &[resource(&mut rng)], effect);
            }
            files.push((format!("actors-{file}.yaml"), text));
        }
        files
    }
}

fn load(files: &[(String, String)]) -> Set {
    let paths: Vec<(PathBuf, &str)> = files
        .iter()
        .map(|(name, text)| (PathBuf::from("/policies").join(name), text.as_str()))
        .collect();
    let refs: Vec<(&Path, &str)> = paths.iter().map(|(p, t)| (p.as_path(), *t)).collect();
    policy::load_texts(&refs)
        .unwrap_or_else(|e| panic!("{e}"))
        .set
}

/// Replaces the first `from` after `anchor` in the file named `file`.
fn edit(files: &mut [(String, String)], file: &str, anchor: &str, from: &str, to: &str) {
    let (_, text) = files.iter_mut().find(|(name, _)| name == file).unwrap();
    let start = text
        .find(anchor)
        .unwrap_or_else(|| panic!("{anchor:?} in {file}"));
    let at = start
        + text[start..]
            .find(from)
            .unwrap_or_else(|| panic!("{from:?} in {file}"));
    text.replace_range(at..at + from.len(), to);
}

/// Which file of the generated set holds `name`.
fn holding<'f>(files: &'f [(String, String)], prefix: &str, name: &str) -> &'f str {
    let (file, _) = files
        .iter()
        .find(|(file, text)| file.starts_with(prefix) && text.contains(name))
        .unwrap();
    file
}

fn typical(old: &[(String, String)]) -> Vec<(String, String)> {
    let mut files = old.to_vec();
    let zambdas = holding(old, "zambdas", "name: fn-17\n").to_owned();
    // Rename fn-17, make fn-19 (public) authenticated, remove fn-23.
    edit(
        &mut files,
        &zambdas,
        "",
        "name: fn-17\n",
        "name: fn-17-v2\n",
    );
    edit(
        &mut files,
        &zambdas,
        "name: fn-19\n",
        "type: public",
        "type: authenticated",
    );
    let removed = format!(
        "  - id: {}\n    name: fn-23\n    type: authenticated\n",
        gen::zambda_id(23)
    );
    edit(&mut files, &zambdas, "", &removed, "");
    // Ten new Zambdas.
    let mut added = String::from("zambdas:\n");
    for i in 0..10 {
        let _ = writeln!(added, "  - id: new-{i}\n    name: new-fn-{i}");
    }
    files.push(("zambdas-new.yaml".to_owned(), added));
    // One rule of role-3, one of actor 5, turned into Denies.
    let role = holding(old, "roles", "name: role-3\n").to_owned();
    edit(
        &mut files,
        &role,
        "name: role-3\n",
        "effect: Allow",
        "effect: Deny",
    );
    let subject = gen::subject(5);
    let actor = holding(old, "actors", &subject).to_owned();
    edit(
        &mut files,
        &actor,
        &subject,
        "effect: Allow",
        "effect: Deny",
    );
    // A hundred new actors holding two roles.
    let mut actors = String::from("actors:\n");
    for i in 0..100 {
        let _ = writeln!(
            actors,
            "  - subject: new-{i}@clients\n    roles: [role-{}, role-{}]",
            i * 7 % gen::ROLES,
            i * 13 % gen::ROLES
        );
    }
    files.push(("actors-new.yaml".to_owned(), actors));
    files
}

fn broad(old: &[(String, String)]) -> Vec<(String, String)> {
    let mut files = old.to_vec();
    // role-0 allows every Zambda (one role in fifty does).
    let role = holding(old, "roles", "name: role-0\n").to_owned();
    edit(
        &mut files,
        &role,
        "name: role-0\n",
        "resource: [Zambda:Function:*]\n          effect: Allow",
        "resource: [Zambda:Function:*]\n          effect: Deny",
    );
    files
}

/// What deciding every pair would cost: decides sampled pairs of `set`
/// and scales up to (actors + roles) x Zambdas, for both sets.
fn brute_force_estimate(set: &Set) -> Duration {
    let subjects: Vec<&str> = set.actors().map(|a| a.subject.as_str()).collect();
    let zambdas: Vec<&policy::Zambda> = set.zambdas().collect();
    let mut rng = gen::Rng::new(7);
    let samples = 200_000;
    let started = Instant::now();
    for _ in 0..samples {
        let principal = Principal {
            subject: subjects[rng.below(subjects.len())],
            issuer: None,
            token_roles: &[],
        };
        black_box(set.decide(&principal, zambdas[rng.below(zambdas.len())]));
    }
    let per_pair = started.elapsed() / samples;
    let pairs = (subjects.len() + set.roles().count()) * zambdas.len();
    per_pair * pairs as u32 * 2
}

fn bench(c: &mut Criterion) {
    let files = gen::generate();
    let started = Instant::now();
    let old = load(&files);
    eprintln!(
        "old set: {:?}, compiled in {:.2} s",
        old.stats(),
        started.elapsed().as_secs_f64()
    );
    let changes = [
        ("unchanged", load(&files)),
        ("typical", load(&typical(&files))),
        ("broad", load(&broad(&files))),
    ];
    eprintln!(
        "deciding every pair of both sets instead: about {:.0} s",
        brute_force_estimate(&old).as_secs_f64()
    );

    let mut group = c.benchmark_group("diff at scale");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, new) in &changes {
        let diff = Diff::between(&old, new);
        eprintln!(
            "{name}: {} newly allowed, {} newly denied; catalog {:?}",
            diff.count(Flip::NewlyAllowed),
            diff.count(Flip::NewlyDenied),
            (
                diff.catalog.added.len(),
                diff.catalog.removed.len(),
                diff.catalog.renamed.len(),
                diff.catalog.retyped.len()
            )
        );
        group.bench_function(*name, |b| b.iter(|| black_box(Diff::between(&old, new))));
    }
    let (_, typical) = &changes[1];
    group.bench_function("typical + text report", |b| {
        b.iter(|| black_box(Diff::between(&old, typical).text().len()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
