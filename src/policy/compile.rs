//! The compiler: validates every parsed entry (Zambdas, roles, actors)
//! and the merged whole (unique ids, names and actor keys, defined roles),
//! and compiles the access policies into the slots of a [`Set`]. Each rule
//! is classified and checked by `grammar`; this file decides what a valid
//! rule covers and where each finding is reported (file, entry, line).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::grammar::{classify_rule, is_id, Kind, Resource};
use super::load::{LoadError, LoadErrors, Loaded, Warning};
use super::model::{
    Actor, Client, Defaults, Effect, Holdings, Origin, Policy, Role, Rule, Set, Slots, Subject,
    Table, Target, Targets, Zambda, ZambdaKind,
};
use super::text::file;
use super::text::lines::{Lines, Section};
use super::text::{is_json, parse_all, Parsed};

pub(super) fn compile(
    texts: Vec<(PathBuf, String)>,
    mut errors: Vec<LoadError>,
    warnings: Vec<Warning>,
) -> Result<Loaded, LoadErrors> {
    let mut parsed = Vec::with_capacity(texts.len());
    for result in parse_all(&texts) {
        match result {
            Ok(file) => parsed.push(file),
            Err(error) => errors.push(located_in_json(error, &texts)),
        }
    }
    // The texts are not needed past parsing: free them before the set is
    // built, which lowers the load's peak memory by their size.
    let paths: Vec<PathBuf> = texts.into_iter().map(|(path, _)| path).collect();
    // With a file unread or unparsed, "not defined" and "not in the
    // catalog" may be wrong, so they are not reported.
    let complete = errors.is_empty();
    let mut compiler = Compiler {
        set: Set::empty(),
        errors,
        warnings,
        complete,
        zambda_entries: Vec::new(),
        role_entries: Vec::new(),
        actor_entries: Vec::new(),
        scratch: Vec::new(),
        id_less: false,
    };
    compiler.set.stats.files = paths.len();
    for file in &mut parsed {
        compiler.zambdas(file);
    }
    compiler.catalog();
    for file in &mut parsed {
        compiler.roles(file);
    }
    compiler.role_ids();
    for file in &mut parsed {
        compiler.actors(file);
        compiler.m2ms(file);
        compiler.defaults(file);
    }
    compiler.subjects();
    let stats = &mut compiler.set.stats;
    stats.zambdas = compiler.set.zambdas.len();
    stats.roles = compiler.set.roles.len();
    stats.actors = compiler.set.actors.len();

    let order: HashMap<&Path, usize> = paths
        .iter()
        .enumerate()
        .map(|(i, path)| (path.as_path(), i))
        .collect();
    let position = |file: &Path, line: Option<usize>| (order.get(file).copied(), line);
    let Compiler {
        set,
        mut errors,
        mut warnings,
        ..
    } = compiler;
    if !errors.is_empty() {
        errors.sort_by_key(|e| position(&e.file, e.line));
        return Err(LoadErrors(errors));
    }
    warnings.sort_by_key(|w| position(&w.file, w.line));
    Ok(Loaded {
        set,
        warnings,
        files: paths,
    })
}

/// serde_json errors carry a line but no path: name the entry from the line.
fn located_in_json(mut error: LoadError, texts: &[(PathBuf, String)]) -> LoadError {
    if error.entry.is_some() || !is_json(&error.file) {
        return error;
    }
    let text = texts.iter().find(|(path, _)| *path == error.file);
    if let (Some((_, text)), Some(line)) = (text, error.line) {
        let lines = Lines::index(text, true);
        if let Some((section, index)) = lines.entry_at(line) {
            error.entry = Some(format!("{}[{index}]", section.key()));
        }
    }
    error
}

/// `roles[3] (lab-integrations)`: an entry by position and name.
fn label(section: Section, index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("{}[{index}]", section.key())
    } else {
        format!("{}[{index}] ({name})", section.key())
    }
}

/// A part of an entry that a finding is about.
#[derive(Clone, Copy)]
enum Part {
    /// The entry as a whole.
    Entry,
    /// `access_policy.rule[j]`.
    Rule(usize),
    /// `roles[k]` of an actor.
    Role(usize),
}

/// Where a finding is: an entry of a file. Labels are only formatted when
/// something is reported.
struct At<'a> {
    file: &'a Arc<Path>,
    lines: &'a Lines,
    section: Section,
    index: usize,
    name: &'a str,
}

impl<'a> At<'a> {
    fn new(file: &'a Parsed, section: Section, index: usize, name: &'a str) -> At<'a> {
        At {
            file: &file.file,
            lines: &file.lines,
            section,
            index,
            name,
        }
    }

    fn label(&self, part: Part) -> String {
        let entry = label(self.section, self.index, self.name);
        match part {
            Part::Entry => entry,
            Part::Rule(j) => format!("{entry}.access_policy.rule[{j}]"),
            Part::Role(k) => format!("{entry}.roles[{k}]"),
        }
    }

    /// The part's line, else the entry's.
    fn line(&self, part: Part) -> Option<usize> {
        let line = match part {
            Part::Entry => None,
            Part::Rule(j) => self.lines.rule(self.section, self.index, j),
            Part::Role(k) => self.lines.role(self.section, self.index, k),
        };
        line.or_else(|| self.lines.entry(self.section, self.index))
    }
}

/// An entry of `actors` or `m2ms`, in the fields they share.
struct Listed {
    subject: String,
    issuer: Option<String>,
    description: Option<String>,
    client: Option<Client>,
    roles: Option<Vec<file::RoleRef>>,
    access_policy: Option<file::AccessPolicy>,
}

struct Compiler {
    set: Set,
    errors: Vec<LoadError>,
    warnings: Vec<Warning>,
    /// Whether every file parsed.
    complete: bool,
    /// Each Zambda's, role's and actor's index within its file's section.
    zambda_entries: Vec<usize>,
    role_entries: Vec<usize>,
    /// Each actor's section (`actors` or `m2ms`) and index within it.
    actor_entries: Vec<(Section, usize)>,
    /// A buffer `policy` reuses.
    scratch: Vec<Target>,
    /// Whether some Zambda of the catalog has no id (known once the
    /// catalog is merged): then a Deny naming an unknown Zambda is an error.
    id_less: bool,
}

impl Compiler {
    fn error(&mut self, at: &At<'_>, part: Part, message: String) {
        self.errors.push(LoadError {
            file: at.file.to_path_buf(),
            entry: Some(at.label(part)),
            line: at.line(part),
            message,
        });
    }

    fn warn(&mut self, at: &At<'_>, part: Part, message: String) {
        self.warnings.push(Warning {
            file: at.file.to_path_buf(),
            entry: Some(at.label(part)),
            line: at.line(part),
            message,
        });
    }

    // The section readers move strings out of the parsed files.

    fn zambdas(&mut self, file: &mut Parsed) {
        let entries = file.content.zambdas.take().unwrap_or_default();
        let file = &*file;
        for (i, entry) in entries.into_iter().enumerate() {
            let at = At::new(file, Section::Zambdas, i, &entry.name);
            let id = entry.id.as_ref();
            for (what, value) in [("id", id), ("name", Some(&entry.name))] {
                match value {
                    Some(value) if !is_id(value) => {
                        let message = format!("{what} {value:?} must match [A-Za-z0-9_-]+");
                        self.error(&at, Part::Entry, message);
                    }
                    _ => {}
                }
            }
            let kind = self.kind(&at, entry.kind.as_deref(), entry.trigger_method.as_deref());
            if let Some(upstream) = &entry.upstream {
                if upstream.is_empty()
                    || upstream
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control())
                {
                    let message = format!("upstream {upstream:?} is not an upstream name");
                    self.error(&at, Part::Entry, message);
                }
            }
            let index = self.set.zambdas.len() as u32;
            let line = at.line(Part::Entry);
            let has_id = entry.id.is_some();
            self.set.zambdas.push(Zambda {
                id: entry.id.unwrap_or_else(|| entry.name.clone()),
                name: entry.name,
                kind,
                upstream: entry.upstream,
                file: file.file.clone(),
                line,
                index,
                has_id,
            });
            self.zambda_entries.push(i);
        }
    }

    /// The kind `type` and its alias `triggerMethod` give (authenticated
    /// when neither does), reporting a value that names no kind and two
    /// values that name different ones.
    fn kind(&mut self, at: &At<'_>, kind: Option<&str>, trigger: Option<&str>) -> ZambdaKind {
        let mut given = Vec::with_capacity(2);
        for (key, value) in [("type", kind), ("triggerMethod", trigger)] {
            let Some(value) = value else {
                continue;
            };
            match zambda_kind(value) {
                Some(kind) => given.push((key, value, kind)),
                None => {
                    let message = format!(
                        "{key} must be `authenticated`, `public`, `http_auth`, `http_open`, \
                         `cron` or `subscription`, not {value:?}"
                    );
                    self.error(at, Part::Entry, message);
                }
            }
        }
        match given.as_slice() {
            [(key, value, kind), (other_key, other, other_kind)] if kind != other_kind => {
                let message =
                    format!("{key} {value:?} and {other_key} {other:?} disagree; give one of them");
                self.error(at, Part::Entry, message);
                *kind
            }
            [(_, _, kind), ..] => *kind,
            [] => ZambdaKind::Authenticated,
        }
    }

    /// Checks the merged catalog (unique ids, unique names, no name equal to
    /// another Zambda's id) and indexes it by id and by name.
    fn catalog(&mut self) {
        let mut ids: HashMap<&str, &Zambda> = HashMap::new();
        let mut names: HashMap<&str, &Zambda> = HashMap::new();
        let mut problems = Vec::new();
        for zambda in &self.set.zambdas {
            // A Zambda without an id is known by its name alone.
            if zambda.has_id {
                if let Some(first) = ids.insert(&zambda.id, zambda) {
                    ids.insert(&first.id, first);
                    let message = format!(
                        "id {:?} is already the id of {}",
                        zambda.id,
                        describe(first)
                    );
                    problems.push((zambda, message));
                }
            }
            if let Some(first) = names.insert(&zambda.name, zambda) {
                names.insert(&first.name, first);
                let message = format!(
                    "name {:?} is already the name of {}",
                    zambda.name,
                    describe(first)
                );
                problems.push((zambda, message));
            }
        }
        for zambda in &self.set.zambdas {
            match ids.get(zambda.name.as_str()) {
                Some(other) if other.index != zambda.index => {
                    let message =
                        format!("name {:?} is the id of {}", zambda.name, describe(other));
                    problems.push((zambda, message));
                }
                _ => {}
            }
        }
        for (zambda, message) in problems {
            let index = self.zambda_entries.get(zambda.index as usize).copied();
            self.errors.push(LoadError {
                file: zambda.file.to_path_buf(),
                entry: index.map(|i| label(Section::Zambdas, i, &zambda.name)),
                line: zambda.line,
                message,
            });
        }
        // A Zambda may carry its own id as its name; ids win otherwise.
        let mut keys: Table<u32> = names
            .into_iter()
            .map(|(name, zambda)| (name.into(), zambda.index))
            .collect();
        keys.extend(
            ids.into_iter()
                .map(|(id, zambda)| (id.into(), zambda.index)),
        );
        self.set.zambda_keys = keys;
        self.id_less = self.set.any_zambda_without_id();
    }

    fn roles(&mut self, file: &mut Parsed) {
        let entries = file.content.roles.take().unwrap_or_default();
        let file = &*file;
        for (i, entry) in entries.into_iter().enumerate() {
            let at = At::new(file, Section::Roles, i, &entry.name);
            if let Some(problem) = name_problem(&entry.name) {
                self.error(&at, Part::Entry, format!("name {:?} {problem}", entry.name));
            }
            if let Some(problem) = entry.id.as_deref().and_then(name_problem) {
                let message = format!("id {:?} {problem}", entry.id.as_deref().unwrap_or_default());
                self.error(&at, Part::Entry, message);
            }
            let index = self.set.roles.len() as u32;
            match self.set.role_keys.get(entry.name.as_str()) {
                Some(&other) => {
                    let other = self.set.roles.get(other as usize);
                    let message = format!(
                        "role {:?} is already defined{}",
                        entry.name,
                        other
                            .map(|o| format!(" at {}", place(&o.file, o.line)))
                            .unwrap_or_default()
                    );
                    self.error(&at, Part::Entry, message);
                }
                None => {
                    self.set.role_keys.insert(entry.name.as_str().into(), index);
                }
            }
            let origin = Origin::Role {
                name: entry.name.as_str().into(),
            };
            let policy = self.policy(&at, &entry.access_policy, origin);
            // Roles come first: role `i` has policy `i` (see `Set`).
            debug_assert_eq!(policy, index);
            let line = at.line(Part::Entry);
            self.set.roles.push(Role {
                name: entry.name,
                id: entry.id,
                description: entry.description,
                file: file.file.clone(),
                line,
            });
            self.role_entries.push(i);
        }
    }

    /// Checks role ids across files (unique, and never another role's
    /// name, so that a name or id in a file or token names one role) and
    /// indexes the roles by id beside their names.
    fn role_ids(&mut self) {
        let mut ids: HashMap<&str, &Role> = HashMap::new();
        let mut problems = Vec::new();
        for (index, role) in self.set.roles.iter().enumerate() {
            let Some(id) = role.id.as_deref() else {
                continue;
            };
            if let Some(first) = ids.insert(id, role) {
                ids.insert(id, first);
                let message = format!("id {id:?} is already the id of {}", describe_role(first));
                problems.push((index, message));
            }
            match self.set.role_keys.get(id) {
                Some(&other) if other as usize != index => {
                    let other = self.set.roles.get(other as usize);
                    let message = format!(
                        "id {id:?} is the name of {}",
                        other.map(describe_role).unwrap_or_default()
                    );
                    problems.push((index, message));
                }
                _ => {}
            }
        }
        let keys: Vec<(Box<str>, u32)> = ids
            .into_iter()
            .filter_map(|(id, role)| {
                let index = *self.set.role_keys.get(role.name.as_str())?;
                Some((id.into(), index))
            })
            .collect();
        for (index, message) in problems {
            let (Some(role), Some(&i)) = (self.set.roles.get(index), self.role_entries.get(index))
            else {
                continue;
            };
            self.errors.push(LoadError {
                file: role.file.to_path_buf(),
                entry: Some(label(Section::Roles, i, &role.name)),
                line: role.line,
                message,
            });
        }
        for (id, index) in keys {
            self.set.role_keys.entry(id).or_insert(index);
        }
    }

    /// The roles an entry lists, by name, id or stub, in order without
    /// repeats; every reference that names no role is reported.
    fn listed_roles(&mut self, at: &At<'_>, refs: &[file::RoleRef]) -> Vec<u32> {
        let mut roles: Vec<u32> = Vec::with_capacity(refs.len());
        for (k, role_ref) in refs.iter().enumerate() {
            let found = match role_ref {
                file::RoleRef::Key(key) => match self.set.role_keys.get(key.as_str()) {
                    Some(&role) => Ok(role),
                    None => Err(format!("role {key:?} is not defined")),
                },
                file::RoleRef::Stub { id, name } => self.stub(id, name.as_deref()),
            };
            match found {
                Ok(role) if roles.contains(&role) => {
                    let name = self.set.roles.get(role as usize).map(|r| r.name.as_str());
                    let message = format!("role {:?} is listed more than once", name.unwrap_or(""));
                    self.warn(at, Part::Role(k), message);
                }
                Ok(role) => roles.push(role),
                // With a file unread, the role may be defined there.
                Err(message) if self.complete => self.error(at, Part::Role(k), message),
                Err(_) => {}
            }
        }
        roles
    }

    /// The role a stub `{id, name}` names: the role with that id (never a
    /// role merely named so), whose name must be the stub's.
    fn stub(&self, id: &str, name: Option<&str>) -> Result<u32, String> {
        let found = self
            .set
            .role_keys
            .get(id)
            .and_then(|&index| Some((index, self.set.roles.get(index as usize)?)))
            .filter(|(_, role)| role.id.as_deref() == Some(id));
        let Some((index, role)) = found else {
            return Err(format!("role stub: no role has the id {id:?}"));
        };
        match name {
            Some(name) if name != role.name => Err(format!(
                "role stub {id:?} names the role {name:?}, but the role with that id is {:?}",
                role.name
            )),
            _ => Ok(index),
        }
    }

    fn actors(&mut self, file: &mut Parsed) {
        let entries = file.content.actors.take().unwrap_or_default();
        let file = &*file;
        for (i, entry) in entries.into_iter().enumerate() {
            self.actor(
                file,
                (Section::Actors, i),
                Listed {
                    subject: entry.subject,
                    issuer: entry.issuer,
                    description: entry.description,
                    client: None,
                    roles: entry.roles,
                    access_policy: entry.access_policy,
                },
            );
        }
    }

    /// M2M clients: actors whose subject is `<clientId>@clients`, keyed and
    /// checked for duplicates together with `actors`.
    fn m2ms(&mut self, file: &mut Parsed) {
        let entries = file.content.m2ms.take().unwrap_or_default();
        let file = &*file;
        for (i, entry) in entries.into_iter().enumerate() {
            self.actor(
                file,
                (Section::M2ms, i),
                Listed {
                    subject: format!("{}@clients", entry.client_id),
                    issuer: entry.issuer,
                    description: entry.description,
                    client: Some(Client {
                        client_id: entry.client_id,
                        id: entry.id,
                        name: entry.name,
                    }),
                    roles: entry.roles,
                    access_policy: entry.access_policy,
                },
            );
            self.set.stats.m2ms += 1;
        }
    }

    /// Validates and adds one entry of `actors` or `m2ms` (`entry`: the
    /// section and the index within it).
    fn actor(&mut self, file: &Parsed, entry_at: (Section, usize), entry: Listed) {
        let (section, index) = entry_at;
        let at = &At::new(file, section, index, &entry.subject);
        if let Some(Client { client_id, .. }) = &entry.client {
            if client_id.is_empty()
                || client_id
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '@')
            {
                let message = format!("clientId {client_id:?} is not an M2M client id");
                self.error(at, Part::Entry, message);
            }
        }
        if entry.subject.is_empty()
            || entry.subject.trim() != entry.subject
            || entry.subject.chars().any(char::is_control)
        {
            let message = format!("subject {:?} is not a token subject", entry.subject);
            self.error(at, Part::Entry, message);
        }
        if let Some(issuer) = &entry.issuer {
            self.issuer(at, issuer);
        }
        let roles = self.listed_roles(at, entry.roles.as_deref().unwrap_or_default());
        let policy = entry.access_policy.as_ref().map(|policy| {
            let origin = Origin::Actor {
                subject: entry.subject.as_str().into(),
                issuer: entry.issuer.as_deref().map(Arc::from),
            };
            self.policy(at, policy, origin)
        });
        let line = at.line(Part::Entry);
        self.set.actors.push(Actor {
            subject: entry.subject,
            issuer: entry.issuer,
            description: entry.description,
            client: entry.client,
            file: file.file.clone(),
            line,
            roles: roles.into_boxed_slice(),
            policy,
        });
        self.actor_entries.push(entry_at);
    }

    fn issuer(&mut self, at: &At<'_>, issuer: &str) {
        if issuer.is_empty() || issuer.chars().any(|c| c.is_whitespace() || c.is_control()) {
            let message = format!("issuer {issuer:?} is not an issuer");
            self.error(at, Part::Entry, message);
        }
    }

    /// Default roles per issuer: one entry per issuer, every role defined.
    fn defaults(&mut self, file: &mut Parsed) {
        let entries = file.content.defaults.take().unwrap_or_default();
        let file = &*file;
        for (i, entry) in entries.into_iter().enumerate() {
            let at = At::new(file, Section::Defaults, i, &entry.issuer);
            self.issuer(&at, &entry.issuer);
            let roles = self.listed_roles(&at, &entry.roles);
            let index = self.set.defaults.len() as u32;
            if let Some(&first) = self.set.default_issuers.get(entry.issuer.as_str()) {
                let first = self.set.defaults.get(first as usize);
                let message = format!(
                    "issuer {:?} already has default roles{}; list them in one entry",
                    entry.issuer,
                    first
                        .map(|d| format!(" at {}", place(&d.file, d.line)))
                        .unwrap_or_default()
                );
                self.error(&at, Part::Entry, message);
            } else {
                self.set
                    .default_issuers
                    .insert(entry.issuer.as_str().into(), index);
            }
            self.set.defaults.push(Defaults {
                issuer: entry.issuer.clone(),
                file: file.file.clone(),
                line: at.line(Part::Entry),
                roles: roles.into_boxed_slice(),
            });
        }
    }

    /// Indexes actors by subject, reporting two entries with one key.
    fn subjects(&mut self) {
        let mut subjects: Table<Subject> = Table::default();
        subjects.reserve(self.set.actors.len());
        let mut bound: HashMap<&str, Vec<(Box<str>, Holdings)>> = HashMap::new();
        let mut duplicates = Vec::new();
        for (index, actor) in self.set.actors.iter().enumerate() {
            let holdings = Holdings {
                actor: index as u32,
                policy: actor.policy,
                roles: actor.roles.clone(),
            };
            let first = match &actor.issuer {
                Some(issuer) => {
                    let entries = bound.entry(actor.subject.as_str()).or_default();
                    match entries.iter().find(|(i, _)| **i == **issuer) {
                        Some((_, first)) => Some(first.actor),
                        None => {
                            entries.push((issuer.as_str().into(), holdings));
                            None
                        }
                    }
                }
                None => {
                    let subject = subjects.entry(actor.subject.as_str().into()).or_default();
                    match &subject.any {
                        Some(first) => Some(first.actor),
                        None => {
                            subject.any = Some(holdings);
                            None
                        }
                    }
                }
            };
            if let Some(first) = first {
                duplicates.push((index as u32, first));
            }
        }
        for (index, first) in duplicates {
            let (Some(actor), Some(first_actor)) = (
                self.set.actors.get(index as usize),
                self.set.actors.get(first as usize),
            ) else {
                continue;
            };
            let whose = match &actor.issuer {
                Some(issuer) => format!("issuer {issuer:?}"),
                None => "any issuer".to_owned(),
            };
            let entry = |actor: &Actor, index: u32| {
                let (section, i) = self
                    .actor_entries
                    .get(index as usize)
                    .copied()
                    .unwrap_or((Section::Actors, 0));
                label(section, i, &actor.subject)
            };
            let message = format!(
                "duplicate actor: subject {:?} for {whose} is already defined by {} at {}",
                actor.subject,
                entry(first_actor, first),
                place(&first_actor.file, first_actor.line)
            );
            self.errors.push(LoadError {
                file: actor.file.to_path_buf(),
                entry: Some(entry(actor, index)),
                line: actor.line,
                message,
            });
        }
        for (subject, entries) in bound {
            subjects.entry(subject.into()).or_default().bound = entries.into_boxed_slice();
        }
        self.set.subjects = subjects;
    }

    /// Validates and compiles one access policy; returns its index.
    fn policy(&mut self, at: &At<'_>, policy: &file::AccessPolicy, origin: Origin) -> u32 {
        let first_rule = self.set.rules.len() as u32;
        let first_target = self.set.targets.len() as u32;
        let mut all = Slots::EMPTY;
        let mut targets = std::mem::take(&mut self.scratch);
        targets.clear();
        for (j, rule) in policy.rule.0.iter().enumerate() {
            let checked = classify_rule(rule);
            let valid = checked.problems.is_empty();
            for problem in checked.problems {
                self.error(at, Part::Rule(j), problem);
            }
            let (Kind::Zambda { invokes, resources }, Some(effect)) =
                (checked.kind, checked.effect)
            else {
                self.set.stats.inert_rules += 1;
                continue;
            };
            self.set.stats.zambda_rules += 1;
            if valid {
                self.missing(at, j, effect, invokes, &resources);
            }
            if !invokes || !valid {
                continue;
            }
            let rule_targets = match self.targets(&resources) {
                Some(zambdas) if zambdas.is_empty() => continue,
                Some(zambdas) => Targets::Some(zambdas.into_boxed_slice()),
                None => Targets::All,
            };
            let index = self.set.rules.len() as u32;
            match &rule_targets {
                Targets::All => all.offer(effect, index),
                Targets::Some(zambdas) => targets.extend(zambdas.iter().map(|&zambda| {
                    let mut slots = Slots::EMPTY;
                    slots.offer(effect, index);
                    Target { zambda, slots }
                })),
            }
            self.set.rules.push(Rule {
                effect,
                origin: origin.clone(),
                index: j,
                file: at.file.clone(),
                line: at.line(Part::Rule(j)),
                targets: rule_targets,
            });
        }
        // One entry per Zambda holding its earliest Deny and Allow; entries
        // that decide nothing beyond `all` are dropped.
        targets.sort_unstable_by_key(|target| target.zambda);
        targets.dedup_by(|later, kept| {
            let same = later.zambda == kept.zambda;
            if same {
                kept.slots = kept.slots.first_of(later.slots);
            }
            same
        });
        targets.retain(|target| all.first_of(target.slots) != all);
        let first = targets.first().copied().unwrap_or(Target::NONE);
        self.set.targets.extend(targets.iter().skip(1));
        self.scratch = targets;
        let index = self.set.policies.len() as u32;
        self.set.policies.push(Policy {
            all,
            first,
            more: (first_target, self.set.targets.len() as u32),
        });
        self.set
            .policy_rules
            .push((first_rule, self.set.rules.len() as u32));
        index
    }

    /// Reports the Zambdas a valid Zambda-facing rule names that are not in
    /// the catalog. Usually a warning: the rule covers nothing. But while
    /// some Zambda is known by name only, the name may be that Zambda's id,
    /// and a Deny must never silently cover nothing: then it is an error.
    fn missing(
        &mut self,
        at: &At<'_>,
        rule: usize,
        effect: Effect,
        invokes: bool,
        resources: &[Resource<'_>],
    ) {
        if !self.complete {
            return;
        }
        let refuse = effect == Effect::Deny && self.id_less;
        for resource in resources {
            let Resource::Named(name) = resource else {
                continue;
            };
            if self.set.zambda_keys.contains_key(*name) {
                continue;
            }
            if refuse {
                let message = format!(
                    "this Deny names Zambda {name:?}, which is not in the catalog; \
                     it may be the id of a Zambda defined without one, so name the \
                     Zambda as the catalog does or give the catalog its ids"
                );
                self.error(at, Part::Rule(rule), message);
            } else if invokes {
                let message = format!("Zambda {name:?} is not in the catalog");
                self.warn(at, Part::Rule(rule), message);
            }
        }
    }

    /// The Zambdas a valid invoking rule covers: `None` for every Zambda,
    /// else their catalog indexes (names missing from the catalog are
    /// reported by `missing`).
    fn targets(&self, resources: &[Resource<'_>]) -> Option<Vec<u32>> {
        let mut zambdas = Vec::with_capacity(resources.len());
        for resource in resources {
            match resource {
                Resource::All => return None,
                Resource::Named(name) => zambdas.extend(self.set.zambda_keys.get(*name)),
            }
        }
        zambdas.sort_unstable();
        zambdas.dedup();
        Some(zambdas)
    }
}

/// The kind a `type` or `triggerMethod` value names: zambda-guard's words
/// and Oystehr's trigger methods alike.
fn zambda_kind(value: &str) -> Option<ZambdaKind> {
    Some(match value {
        "authenticated" | "http_auth" => ZambdaKind::Authenticated,
        "public" | "http_open" => ZambdaKind::Public,
        "cron" => ZambdaKind::Cron,
        "subscription" => ZambdaKind::Subscription,
        _ => return None,
    })
}

fn describe(zambda: &Zambda) -> String {
    format!(
        "Zambda {:?} ({})",
        zambda.name,
        place(&zambda.file, zambda.line)
    )
}

fn describe_role(role: &Role) -> String {
    format!("role {:?} ({})", role.name, place(&role.file, role.line))
}

fn place(file: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    }
}

/// Why a role name is unusable, if it is. Names are matched exactly against
/// the token's roles and listed comma-separated in `x-zambda-roles`.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.trim() != name {
        Some("starts or ends with whitespace")
    } else if name.chars().any(|c| c.is_control() || c == ',') {
        Some("contains a comma or a control character")
    } else {
        None
    }
}
