//! `zambda-guard test`: policy unit tests, kept beside the policies in
//! `*.test.yaml`, `*.test.yml` or `*.test.json` files (which the policy
//! loader skips), decided by [`Set::decide`] — the proxy's own code.
//!
//! # The file format
//!
//! ```yaml
//! policies: ../policies        # optional: the policy directory, relative to
//!                              # this file; default: the config's policies.dir
//! cases:
//!   - name: lab bot may ingest results            # optional; else `case[i]`
//!     principal: {subject: lab-bot@clients}       # + issuer:, roles: [token roles]
//!     zambda: lab-results-ingest                  # id or name
//!     expect: allow                               # allow | deny
//!     rule: {effect: Allow, role: lab-integrations, index: 0}   # optional
//!   - principal:
//!       claims: {sub: dr-alice, roles: [clinician]}  # read with the config's claims
//!     zambda: billing-export
//!     expect: deny
//!     rule: none                                  # no rule matched: implicit deny
//! ```
//!
//! A principal is `subject` (optionally `issuer`, and `roles` the token
//! carries), or `roles` alone (a token whose subject has no actor entry),
//! or `claims`: a token's claims, read as the proxy reads a verified token
//! — the subject from the issuer's `subject_claim`, roles from its
//! `roles_claim`, the issuer picked by `iss` (without `iss`, the configured
//! issuers must agree on both claims). `rule` names the expected deciding
//! rule by any of `effect`, `role` or `actor` (with `issuer` for an
//! issuer-bound entry) and `index`; `none` expects no rule (implicit deny).
//!
//! # Running
//!
//! Everything is read and checked before any case runs: a test file that
//! does not parse, a policy set that does not load, an unknown Zambda, role
//! or actor, or a `rule` that contradicts `expect` is invalid input, and no
//! case runs. Then every case is decided; each failure is reported with its
//! file and line, what was expected and what was decided, by which rule.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use yaml_rust2::parser::{Event, Parser};

use crate::authn::{self, Named, Reading};
use crate::config::Config;
use crate::policy::{Decision, Effect, Origin, Principal, RoleSource, Rule, Set, Zambda};
use crate::store;

/// The suffixes of policy test files.
pub const SUFFIXES: [&str; 3] = [".test.yaml", ".test.yml", ".test.json"];

/// The outcome of a run in which every input was valid.
#[derive(Debug)]
pub struct Report {
    /// Test files run.
    pub files: usize,
    pub passed: usize,
    pub failures: Vec<Failure>,
}

impl Report {
    /// One line per failure, then `N passed, N failed`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for failure in &self.failures {
            out.push_str(&failure.to_string());
            out.push('\n');
        }
        out.push_str(&format!(
            "{} passed, {} failed\n",
            self.passed,
            self.failures.len()
        ));
        out
    }

    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A case whose decision is not the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub file: PathBuf,
    /// 1-based line of the case.
    pub line: Option<usize>,
    /// The case's name, or `case[i]`.
    pub case: String,
    /// `allow`, `deny`, either with ` by <rule>`.
    pub expected: String,
    /// The decision and its deciding rule, as the decision log writes it.
    pub decided: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(
            f,
            ": FAIL {}: expected {}, got {}",
            self.case, self.expected, self.decided
        )
    }
}

/// Why the tests could not run: every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct Invalid(pub Vec<String>);

/// Runs the test files named by `paths` (files, or directories searched
/// recursively for `*.test.{yaml,yml,json}`). `config` is read only when a
/// test file names no `policies` directory or a case gives `claims`.
pub fn run(paths: &[PathBuf], config: &Path) -> Result<Report, Invalid> {
    let mut problems = Vec::new();
    let files = find(paths, &mut problems);
    let mut config = LazyConfig {
        path: config,
        loaded: None,
    };
    let mut sets: HashMap<PathBuf, Option<Set>> = HashMap::new();
    let mut ready = Vec::new();
    for path in &files {
        let Some(file) = read(path, &mut problems) else {
            continue;
        };
        let dir = match &file.content.policies {
            Some(dir) => super::tidy(&path.parent().unwrap_or(Path::new("")).join(dir)),
            None => match config.get() {
                Ok(config) => config.policies.dir.clone(),
                Err(problem) => {
                    problems.push(format!(
                        "{}: names no `policies:` directory, so {problem}",
                        path.display()
                    ));
                    continue;
                }
            },
        };
        // Held to the config as `run` would be, when there is one.
        let held_to = config.get().ok();
        // The config's own set may span several directories.
        let from_config = file.content.policies.is_none();
        let load = || match held_to {
            Some(config) if from_config => store::load(config),
            _ => store::load_dir(&dir, held_to),
        };
        let set = sets.entry(dir.clone()).or_insert_with(|| match load() {
            Ok(loaded) => Some(loaded.set),
            Err(errors) => {
                problems.push(format!("invalid policies in {}:", dir.display()));
                problems.extend(errors.0.iter().map(|e| format!("  {e}")));
                None
            }
        });
        let Some(set) = set.as_ref() else {
            continue;
        };
        for (i, case) in file.content.cases.into_iter().enumerate() {
            let line = file.lines.get(i).copied();
            let label = case.name.clone().unwrap_or_else(|| format!("case[{i}]"));
            match resolve(case, set, &mut config) {
                Ok(resolved) => ready.push(Ready {
                    file: path.clone(),
                    line,
                    label,
                    dir: dir.clone(),
                    case: resolved,
                }),
                Err(problem) => {
                    let at = match line {
                        Some(line) => format!("{}:{line}", path.display()),
                        None => path.display().to_string(),
                    };
                    problems.push(format!("{at}: {label}: {problem}"));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(Invalid(problems));
    }
    let mut report = Report {
        files: files.len(),
        passed: 0,
        failures: Vec::new(),
    };
    for ready in ready {
        let Some(Some(set)) = sets.get(&ready.dir) else {
            continue;
        };
        match ready.case.judge(set) {
            None => report.passed += 1,
            Some((expected, decided)) => report.failures.push(Failure {
                file: ready.file,
                line: ready.line,
                case: ready.label,
                expected,
                decided,
            }),
        }
    }
    Ok(report)
}

// ---------------------------------------------------------------------------
// Finding and reading test files

/// Whether a file name is a policy test's.
pub fn is_test_file(name: &str) -> bool {
    SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

/// The test files `paths` name: files as given, directories searched
/// recursively in name order (names starting with `.` skipped, symlinks
/// followed, each real file and directory once).
fn find(paths: &[PathBuf], problems: &mut Vec<String>) -> Vec<PathBuf> {
    let mut walk = Walk {
        files: Vec::new(),
        seen: HashSet::new(),
        problems,
    };
    for path in paths {
        let path = super::tidy(path);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                let before = walk.files.len();
                walk.enter(&path);
                if walk.files.len() == before {
                    walk.problems.push(format!(
                        "{}: no policy test files (*.test.yaml, *.test.yml, *.test.json) found",
                        path.display()
                    ));
                }
            }
            Ok(_) => walk.take(&path),
            Err(error) => walk
                .problems
                .push(format!("{}: cannot read: {error}", path.display())),
        }
    }
    walk.files
}

struct Walk<'a> {
    files: Vec<PathBuf>,
    /// Real paths of the directories entered and files taken.
    seen: HashSet<PathBuf>,
    problems: &'a mut Vec<String>,
}

impl Walk<'_> {
    fn first_visit(&mut self, path: &Path) -> bool {
        match fs::canonicalize(path) {
            Ok(real) => self.seen.insert(real),
            Err(error) => {
                self.problems
                    .push(format!("{}: cannot read: {error}", path.display()));
                false
            }
        }
    }

    fn take(&mut self, path: &Path) {
        if self.first_visit(path) {
            self.files.push(path.to_path_buf());
        }
    }

    fn enter(&mut self, dir: &Path) {
        if !self.first_visit(dir) {
            return;
        }
        let listing = match fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(error) => {
                self.problems
                    .push(format!("{}: cannot list: {error}", dir.display()));
                return;
            }
        };
        let mut entries: Vec<(String, PathBuf)> = listing
            .filter_map(Result::ok)
            .map(|entry| {
                (
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.path(),
                )
            })
            .filter(|(name, _)| !name.starts_with('.'))
            .collect();
        entries.sort();
        for (name, path) in entries {
            match fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => self.enter(&path),
                Ok(meta) if meta.is_file() && is_test_file(&name) => self.take(&path),
                Ok(_) => {}
                Err(error) => self
                    .problems
                    .push(format!("{}: cannot read: {error}", path.display())),
            }
        }
    }
}

/// A test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContent {
    /// The policy directory, relative to the test file.
    #[serde(default)]
    policies: Option<PathBuf>,
    cases: Vec<CaseContent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseContent {
    #[serde(default)]
    name: Option<String>,
    principal: PrincipalContent,
    zambda: String,
    expect: Expect,
    /// `none`, or a mapping (see `RuleContent`).
    #[serde(default)]
    rule: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalContent {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    /// Roles the token carries.
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    claims: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleContent {
    #[serde(default)]
    effect: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    index: Option<usize>,
}

/// A parsed test file and the line of each case.
struct TestFile {
    content: FileContent,
    lines: Vec<usize>,
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "json")
}

fn read(path: &Path, problems: &mut Vec<String>) -> Option<TestFile> {
    let text = match fs::read(path).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            problems.push(format!("{}: not valid UTF-8", path.display()));
            return None;
        }
        Err(error) => {
            problems.push(format!("{}: cannot read: {error}", path.display()));
            return None;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let parsed = if is_json(path) {
        serde_json::from_str::<FileContent>(text).map_err(|error| {
            let suffix = format!(" at line {} column {}", error.line(), error.column());
            (
                Some(error.line()).filter(|&l| l > 0),
                strip(&error, &suffix),
            )
        })
    } else {
        serde_yaml::from_str::<FileContent>(text).map_err(|error| {
            let location = error.location();
            let suffix = location
                .as_ref()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            (location.map(|l| l.line()), strip(&error, &suffix))
        })
    };
    match parsed {
        Ok(content) if content.cases.is_empty() => {
            problems.push(format!("{}: no cases", path.display()));
            None
        }
        Ok(content) => Some(TestFile {
            content,
            lines: case_lines(text, is_json(path)),
        }),
        Err((line, message)) => {
            let at = match line {
                Some(line) => format!("{}:{line}", path.display()),
                None => path.display().to_string(),
            };
            problems.push(format!("{at}: {message}"));
            None
        }
    }
}

/// The message of a serde error without its trailing location.
fn strip(error: impl fmt::Display, suffix: &str) -> String {
    let message = error.to_string();
    match message.strip_suffix(suffix) {
        Some(message) if !suffix.is_empty() => message.to_owned(),
        _ => message,
    }
}

/// The 1-based line where each item of the top-level `cases` list starts
/// (best effort: on a syntax error, the lines found so far).
fn case_lines(text: &str, json: bool) -> Vec<usize> {
    // JSON allows tabs where YAML does not; lines are unchanged.
    let text = if json {
        text.replace('\t', " ")
    } else {
        text.to_owned()
    };
    let mut lines = Vec::new();
    // `None`: the text is not valid YAML; serde has reported it.
    let _ = walk_cases(&mut Parser::new_from_str(&text), &mut lines);
    lines
}

fn walk_cases(parser: &mut Parser<std::str::Chars<'_>>, lines: &mut Vec<usize>) -> Option<()> {
    loop {
        match parser.next_token().ok()?.0 {
            Event::MappingStart(..) => break,
            Event::StreamStart | Event::DocumentStart => continue,
            _ => return Some(()),
        }
    }
    // Nesting below the root mapping; whether the value being read is that
    // of `cases`; whether the next root event is a key.
    let (mut depth, mut in_cases, mut key_next) = (0usize, false, true);
    loop {
        let (event, mark) = parser.next_token().ok()?;
        let item = depth == 1 && in_cases;
        match event {
            Event::Scalar(key, ..) if depth == 0 && key_next => {
                in_cases = key == "cases";
                key_next = false;
            }
            Event::Scalar(..) if depth == 0 => key_next = true,
            Event::Scalar(..) if item => lines.push(mark.line()),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if item {
                    // A block mapping's marker may point past its first
                    // key: that key's line is where the item starts.
                    let line = match (&event, parser.peek()) {
                        (Event::MappingStart(..), Ok((Event::Scalar(..), key))) => key.line(),
                        _ => mark.line(),
                    };
                    lines.push(line);
                }
                depth += 1;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(up) = depth.checked_sub(1) else {
                    return Some(());
                };
                depth = up;
                key_next |= depth == 0;
            }
            Event::StreamEnd | Event::DocumentEnd => return Some(()),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Resolving and judging cases

/// Reads the config once, when first needed.
struct LazyConfig<'a> {
    path: &'a Path,
    loaded: Option<Result<Config, String>>,
}

impl LazyConfig<'_> {
    /// The config, or why it cannot be used.
    fn get(&mut self) -> Result<&Config, String> {
        let path = self.path;
        let loaded = self
            .loaded
            .get_or_insert_with(|| Config::load(path).map_err(|error| error.to_string()));
        loaded
            .as_ref()
            .map_err(|error| format!("the config is needed (give --config): {error}"))
    }
}

/// A case checked against its policy set, ready to decide.
struct Ready {
    file: PathBuf,
    line: Option<usize>,
    label: String,
    dir: PathBuf,
    case: Case,
}

struct Case {
    named: Named,
    issuer: Option<String>,
    zambda: String,
    expect: Expect,
    rule: Option<Expected>,
}

/// The expected deciding rule.
enum Expected {
    /// No rule matched (implicit deny).
    None,
    Rule {
        effect: Option<Effect>,
        origin: ExpectedOrigin,
        index: Option<usize>,
    },
}

enum ExpectedOrigin {
    Any,
    Role(String),
    Actor {
        subject: String,
        issuer: Option<String>,
    },
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Expected::Rule {
            effect,
            origin,
            index,
        } = self
        else {
            return f.write_str("no rule (implicit deny)");
        };
        if let Some(effect) = effect {
            write!(f, "{effect} ")?;
        }
        f.write_str("rule")?;
        if let Some(index) = index {
            write!(f, "[{index}]")?;
        }
        match origin {
            ExpectedOrigin::Any => Ok(()),
            ExpectedOrigin::Role(name) => write!(f, " of role {name:?}"),
            ExpectedOrigin::Actor {
                subject,
                issuer: None,
            } => write!(f, " of actor {subject:?}"),
            ExpectedOrigin::Actor {
                subject,
                issuer: Some(issuer),
            } => write!(f, " of actor {subject:?} of issuer {issuer:?}"),
        }
    }
}

impl Expected {
    fn matches(&self, deciding: Option<&Rule>) -> bool {
        let (
            Expected::Rule {
                effect,
                origin,
                index,
            },
            Some(rule),
        ) = (self, deciding)
        else {
            return matches!((self, deciding), (Expected::None, None));
        };
        let origin_matches = match (origin, &rule.origin) {
            (ExpectedOrigin::Any, _) => true,
            (ExpectedOrigin::Role(want), Origin::Role { name }) => **name == **want,
            (
                ExpectedOrigin::Actor { subject, issuer },
                Origin::Actor {
                    subject: s,
                    issuer: i,
                },
            ) => {
                **s == **subject
                    && issuer
                        .as_deref()
                        .is_none_or(|want| i.as_deref() == Some(want))
            }
            _ => false,
        };
        origin_matches
            && effect.is_none_or(|effect| effect == rule.effect)
            && index.is_none_or(|index| index == rule.index)
    }
}

impl Case {
    /// `None` when the case passes, else (expected, decided).
    fn judge(&self, set: &Set) -> Option<(String, String)> {
        let principal = self.named.principal(self.issuer.as_deref());
        // Resolved against this set, so the Zambda is in its catalog; were
        // it not, the proxy would answer 404: a deny.
        let zambda = set.zambda(&self.zambda);
        let decision = match zambda {
            Some(zambda) => set.decide(&principal, zambda),
            None => Decision::IMPLICIT_DENY,
        };
        let allowed = self.expect == Expect::Allow;
        let rule_ok = self
            .rule
            .as_ref()
            .is_none_or(|rule| rule.matches(decision.deciding));
        if decision.allowed == allowed && rule_ok {
            return None;
        }
        let mut expected = if allowed { "allow" } else { "deny" }.to_owned();
        if let Some(rule) = &self.rule {
            expected.push_str(&format!(" by {rule}"));
        }
        let mut decided = decision.to_string();
        // An unlisted actor's roles come from no line of the case: say so.
        if let (Some(zambda), Some(rule)) = (zambda, decision.deciding) {
            if let Some(issuer) = through_defaults(set, &principal, zambda, rule) {
                decided.push_str(&format!(", a role held from the defaults of {issuer}"));
            }
        }
        Some((expected, decided))
    }
}

/// The issuer whose defaults gave `principal` the role `rule` belongs to,
/// when that is how it holds the role.
fn through_defaults<'s>(
    set: &'s Set,
    principal: &Principal<'_>,
    zambda: &Zambda,
    rule: &Rule,
) -> Option<&'s str> {
    let Origin::Role { name } = &rule.origin else {
        return None;
    };
    set.explain(principal, zambda)
        .roles
        .iter()
        .find(|held| held.role.name == **name)
        .and_then(|held| match held.source {
            RoleSource::Default(defaults) => Some(defaults.issuer.as_str()),
            RoleSource::Actor(_) | RoleSource::Token => None,
        })
}

/// Checks a case against the set it runs on.
fn resolve(case: CaseContent, set: &Set, config: &mut LazyConfig<'_>) -> Result<Case, String> {
    let Some(zambda) = set.zambda(&case.zambda) else {
        return Err(format!("zambda {:?} is not in the catalog", case.zambda));
    };
    let rule = case
        .rule
        .map(|rule| expected_rule(rule, case.expect, set))
        .transpose()?;
    let p = case.principal;
    let (named, issuer) = match p.claims {
        Some(claims) => {
            if p.subject.is_some() || p.issuer.is_some() || p.roles.is_some() {
                return Err(
                    "principal: give either `claims` or `subject`/`issuer`/`roles`, not both"
                        .to_owned(),
                );
            }
            let config = config
                .get()
                .map_err(|problem| format!("claims are read as the config says, so {problem}"))?;
            from_claims(&claims, config)?
        }
        None => {
            if p.subject.is_none() && p.roles.is_none() {
                return Err("principal: give `subject`, `roles` or `claims`".to_owned());
            }
            if p.issuer.is_some() && p.subject.is_none() {
                return Err("principal: `issuer` needs a `subject`".to_owned());
            }
            // A token always has a subject; with none given, one that no
            // actor entry can have (entries' subjects are never empty).
            let named = Named {
                subject: p.subject.unwrap_or_default(),
                roles: p.roles.unwrap_or_default(),
            };
            (named, p.issuer)
        }
    };
    Ok(Case {
        named,
        issuer,
        zambda: zambda.id.clone(),
        expect: case.expect,
        rule,
    })
}

/// Reads `rule:` and checks that it can be met.
fn expected_rule(rule: Value, expect: Expect, set: &Set) -> Result<Expected, String> {
    const SHAPE: &str =
        "rule must be `none` or a mapping of effect (Allow | Deny), role or actor (+ issuer), index";
    let content = match rule {
        Value::String(text) if text == "none" => {
            return match expect {
                Expect::Deny => Ok(Expected::None),
                Expect::Allow => Err(
                    "rule: `none` means an implicit deny, but the case expects allow".to_owned(),
                ),
            };
        }
        Value::Object(_) => {
            serde_json::from_value::<RuleContent>(rule).map_err(|error| format!("rule: {error}"))?
        }
        _ => return Err(SHAPE.to_owned()),
    };
    let effect = match content.effect.as_deref() {
        None => None,
        Some("Allow") => Some(Effect::Allow),
        Some("Deny") => Some(Effect::Deny),
        Some(other) => {
            return Err(format!(
                "rule: effect must be `Allow` or `Deny`, not {other:?}"
            ))
        }
    };
    match (effect, expect) {
        (Some(Effect::Deny), Expect::Allow) => {
            return Err("rule: a Deny rule cannot decide an allow".to_owned())
        }
        (Some(Effect::Allow), Expect::Deny) => {
            return Err("rule: an Allow rule cannot decide a deny".to_owned())
        }
        _ => {}
    }
    let origin = match (content.role, content.actor, content.issuer) {
        (Some(_), Some(_), _) => return Err("rule: give `role` or `actor`, not both".to_owned()),
        (Some(_), None, Some(_)) | (None, None, Some(_)) => {
            return Err("rule: `issuer` goes with `actor`".to_owned())
        }
        (Some(role), None, None) => {
            if set.role(&role).is_none() {
                return Err(format!("rule: role {role:?} is not defined"));
            }
            ExpectedOrigin::Role(role)
        }
        (None, Some(subject), issuer) => {
            let exists = set.actors().any(|actor| {
                actor.subject == subject
                    && actor.has_access_policy()
                    && issuer
                        .as_deref()
                        .is_none_or(|issuer| actor.issuer.as_deref() == Some(issuer))
            });
            if !exists {
                return Err(format!(
                    "rule: no actor entry {subject:?}{} has an inline access policy",
                    issuer
                        .as_deref()
                        .map(|i| format!(" of issuer {i:?}"))
                        .unwrap_or_default()
                ));
            }
            ExpectedOrigin::Actor { subject, issuer }
        }
        (None, None, None) => {
            if effect.is_none() && content.index.is_none() {
                return Err(SHAPE.to_owned());
            }
            ExpectedOrigin::Any
        }
    };
    Ok(Expected::Rule {
        effect,
        origin,
        index: content.index,
    })
}

/// Subject, roles and issuer from a token's claims, read by the proxy's
/// own rule ([`authn::claims`]).
fn from_claims(claims: &Value, config: &Config) -> Result<(Named, Option<String>), String> {
    if !claims.is_object() {
        return Err("claims must be a mapping of claim names to values".to_owned());
    }
    let issuer = match claims.get("iss") {
        None => None,
        Some(Value::String(iss)) => Some(iss.clone()),
        Some(_) => return Err("claims: `iss` must be a string".to_owned()),
    };
    let reading = Reading::for_claims(&config.auth, issuer.as_deref())
        .map_err(|problem| format!("claims: {problem}"))?;
    let named = authn::claims::read(claims, reading)
        .map_err(|why| format!("claims: the proxy would refuse the token: {why}"))?;
    Ok((named, issuer))
}
