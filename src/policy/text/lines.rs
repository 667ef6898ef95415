//! Line numbers of the entries of a policy file, for error messages and for
//! the `file:line` that every compiled rule carries.
//!
//! serde_yaml keeps no spans, so the text is read a second time. Only the
//! positions the loader reports are recorded: each entry of every section
//! (its first and last line), each rule of its access policy (an object or
//! a plain list of rules), and each role it names.
//!
//! Block-style YAML, the usual shape of policy files, is indexed line by
//! line by [`block`], and JSON by [`json`]; both give up on anything they do
//! not fully understand. Everything else is walked with yaml-rust2's event
//! parser, which has markers but is several times slower. The walk is best
//! effort: on a syntax error what was indexed so far is kept (serde has
//! already reported the error). JSON is YAML for the walk; tabs, which YAML
//! forbids as indentation but JSON allows as whitespace, are read as spaces.

pub(in crate::policy) mod block;
pub(in crate::policy) mod json;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// The sections of a policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::policy) enum Section {
    Zambdas,
    Roles,
    Actors,
    M2ms,
    Defaults,
}

impl Section {
    /// Every section, in the order of `Lines`' fields.
    pub(in crate::policy) const ALL: [Section; 5] = [
        Section::Zambdas,
        Section::Roles,
        Section::Actors,
        Section::M2ms,
        Section::Defaults,
    ];

    pub(in crate::policy) fn key(self) -> &'static str {
        match self {
            Section::Zambdas => "zambdas",
            Section::Roles => "roles",
            Section::Actors => "actors",
            Section::M2ms => "m2ms",
            Section::Defaults => "defaults",
        }
    }

    /// The section a root key opens, if any.
    pub(in crate::policy) fn of_key(key: &[u8]) -> Option<Section> {
        Section::ALL
            .into_iter()
            .find(|section| section.key().as_bytes() == key)
    }

    /// Whether its entries carry an access policy whose rules are indexed.
    pub(in crate::policy) fn has_policy(self) -> bool {
        matches!(self, Section::Roles | Section::Actors | Section::M2ms)
    }

    /// Whether its entries name roles whose lines are indexed.
    pub(in crate::policy) fn names_roles(self) -> bool {
        matches!(self, Section::Actors | Section::M2ms | Section::Defaults)
    }
}

/// Where one entry of a section sits in its file (1-based lines).
#[derive(Debug, Default)]
pub(in crate::policy) struct Entry {
    pub first: usize,
    pub last: usize,
    /// Line of each rule of the entry's access policy.
    pub rules: Vec<usize>,
    /// Line of each role an actor names.
    pub roles: Vec<usize>,
    /// The line of every rule, when the policy is written in flow style on
    /// one line (`access_policy: {rule: [...]}`).
    pub rules_flow: Option<usize>,
    /// The line of every role, for `roles: [a, b]`.
    pub roles_flow: Option<usize>,
}

/// The line index of one file.
#[derive(Debug, Default)]
pub(in crate::policy) struct Lines {
    pub zambdas: Vec<Entry>,
    pub roles: Vec<Entry>,
    pub actors: Vec<Entry>,
    pub m2ms: Vec<Entry>,
    pub defaults: Vec<Entry>,
}

impl Lines {
    /// Indexes `text`; `json` selects the JSON reading of whitespace.
    pub(in crate::policy) fn index(text: &str, json: bool) -> Lines {
        let fast = if json {
            json::index(text)
        } else {
            block::index(text)
        };
        fast.unwrap_or_else(|| Lines::walk(text, json))
    }

    /// Indexes `text` with the YAML parser.
    pub(in crate::policy) fn walk(text: &str, json: bool) -> Lines {
        let mut lines = Lines::default();
        let mut walker = if json && text.contains('\t') {
            Walker::new(Parser::new(Box::new(Detab(text.chars()))))
        } else {
            Walker::new(Parser::new(Box::new(text.chars())))
        };
        // `None` means the text ended early or is not valid YAML.
        let _ = walker.file(&mut lines);
        lines
    }

    /// Moves every line `offset` lines down: the index of a part of a file
    /// that starts `offset` lines into it.
    pub(in crate::policy) fn shift(&mut self, offset: usize) {
        for entry in self
            .zambdas
            .iter_mut()
            .chain(&mut self.roles)
            .chain(&mut self.actors)
            .chain(&mut self.m2ms)
            .chain(&mut self.defaults)
        {
            entry.first += offset;
            entry.last += offset;
            for line in entry.rules.iter_mut().chain(&mut entry.roles) {
                *line += offset;
            }
            for line in [&mut entry.rules_flow, &mut entry.roles_flow]
                .into_iter()
                .flatten()
            {
                *line += offset;
            }
        }
    }

    /// Appends the entries of `other`, the index of a later part of the
    /// same file.
    pub(in crate::policy) fn append(&mut self, mut other: Lines) {
        self.zambdas.append(&mut other.zambdas);
        self.roles.append(&mut other.roles);
        self.actors.append(&mut other.actors);
        self.m2ms.append(&mut other.m2ms);
        self.defaults.append(&mut other.defaults);
    }

    fn section(&self, section: Section) -> &[Entry] {
        match section {
            Section::Zambdas => &self.zambdas,
            Section::Roles => &self.roles,
            Section::Actors => &self.actors,
            Section::M2ms => &self.m2ms,
            Section::Defaults => &self.defaults,
        }
    }

    fn section_mut(&mut self, section: Section) -> &mut Vec<Entry> {
        match section {
            Section::Zambdas => &mut self.zambdas,
            Section::Roles => &mut self.roles,
            Section::Actors => &mut self.actors,
            Section::M2ms => &mut self.m2ms,
            Section::Defaults => &mut self.defaults,
        }
    }

    /// Line where entry `index` of `section` starts.
    pub(in crate::policy) fn entry(&self, section: Section, index: usize) -> Option<usize> {
        self.section(section).get(index).map(|entry| entry.first)
    }

    /// Line of rule `rule` of the access policy of entry `index`.
    pub(in crate::policy) fn rule(
        &self,
        section: Section,
        index: usize,
        rule: usize,
    ) -> Option<usize> {
        let entry = self.section(section).get(index)?;
        entry.rules.get(rule).copied().or(entry.rules_flow)
    }

    /// Line of the `role`-th role named by entry `index` of `section`.
    pub(in crate::policy) fn role(
        &self,
        section: Section,
        index: usize,
        role: usize,
    ) -> Option<usize> {
        let entry = self.section(section).get(index)?;
        entry.roles.get(role).copied().or(entry.roles_flow)
    }

    /// The entry whose lines contain `line`, if any.
    pub(in crate::policy) fn entry_at(&self, line: usize) -> Option<(Section, usize)> {
        Section::ALL.into_iter().find_map(|section| {
            let index = self
                .section(section)
                .iter()
                .position(|entry| entry.first <= line && line <= entry.last)?;
            Some((section, index))
        })
    }
}

type Chars<'a> = Box<dyn Iterator<Item = char> + 'a>;

/// Reads tabs as spaces (JSON whitespace); line numbers are unchanged.
struct Detab<I>(I);

impl<I: Iterator<Item = char>> Iterator for Detab<I> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        self.0.next().map(|c| if c == '\t' { ' ' } else { c })
    }
}

struct Walker<'a> {
    parser: Parser<Chars<'a>>,
}

impl<'a> Walker<'a> {
    fn new(parser: Parser<Chars<'a>>) -> Self {
        Walker { parser }
    }

    /// The next event; `None` at the end of the stream (the parser keeps
    /// answering `StreamEnd` once there, so every loop must stop on it) and
    /// on a syntax error.
    fn next(&mut self) -> Option<(Event, Marker)> {
        match self.parser.next_token() {
            Ok((Event::StreamEnd, _)) | Err(_) => None,
            Ok(event) => Some(event),
        }
    }

    /// Line of the next event, without consuming it.
    fn peek_line(&mut self) -> Option<usize> {
        self.parser.peek().ok().map(|(_, mark)| mark.line())
    }

    /// Consumes the rest of a node whose first event was `first`.
    fn skip(&mut self, first: &Event) -> Option<()> {
        let mut depth: usize = match first {
            Event::MappingStart(..) | Event::SequenceStart(..) => 1,
            _ => return Some(()),
        };
        while depth > 0 {
            match self.next()?.0 {
                Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
                Event::MappingEnd | Event::SequenceEnd => depth -= 1,
                Event::StreamEnd => return None,
                _ => {}
            }
        }
        Some(())
    }

    /// Line of a node that starts with (`first`, `mark`): for a block
    /// mapping, the marker points past its first key, so the first key's
    /// line is used instead.
    fn node_line(&mut self, first: &Event, mark: Marker) -> usize {
        match first {
            Event::MappingStart(..) => match self.parser.peek() {
                Ok((Event::Scalar(..), key)) => key.line(),
                _ => mark.line(),
            },
            _ => mark.line(),
        }
    }

    /// Walks a mapping whose `MappingStart` was consumed, calling `value`
    /// for each scalar key with the first event of its value; `value` must
    /// consume the value node.
    fn mapping(
        &mut self,
        mut value: impl FnMut(&mut Self, &str, Event, Marker) -> Option<()>,
    ) -> Option<()> {
        loop {
            let (key, _) = self.next()?;
            match key {
                Event::MappingEnd => return Some(()),
                Event::Scalar(key, ..) => {
                    let (first, mark) = self.next()?;
                    value(self, &key, first, mark)?;
                }
                other => {
                    self.skip(&other)?;
                    let (first, _) = self.next()?;
                    self.skip(&first)?;
                }
            }
        }
    }

    /// Walks a sequence whose first event is `first` (anything else is
    /// skipped), calling `item` with each item's index, first event and line.
    fn sequence(
        &mut self,
        first: Event,
        mut item: impl FnMut(&mut Self, usize, Event, usize) -> Option<()>,
    ) -> Option<()> {
        if !matches!(first, Event::SequenceStart(..)) {
            return self.skip(&first);
        }
        let mut index = 0;
        loop {
            let (first, mark) = self.next()?;
            if first == Event::SequenceEnd {
                return Some(());
            }
            let line = self.node_line(&first, mark);
            item(self, index, first, line)?;
            index += 1;
        }
    }

    fn file(&mut self, lines: &mut Lines) -> Option<()> {
        let (mut first, _) = self.next()?;
        while matches!(first, Event::StreamStart | Event::DocumentStart) {
            first = self.next()?.0;
        }
        if !matches!(first, Event::MappingStart(..)) {
            return Some(());
        }
        self.mapping(|walker, key, first, _| {
            let Some(section) = Section::of_key(key.as_bytes()) else {
                return walker.skip(&first);
            };
            walker.sequence(first, |walker, _, first, line| {
                let mut entry = Entry {
                    first: line,
                    ..Entry::default()
                };
                walker.entry(section, first, &mut entry)?;
                // The next event (the next item, or what follows the list)
                // starts the line after the entry's last one.
                let next = walker.peek_line().unwrap_or(usize::MAX);
                entry.last = next.saturating_sub(1).max(line);
                lines.section_mut(section).push(entry);
                Some(())
            })
        })
    }

    fn entry(&mut self, section: Section, first: Event, entry: &mut Entry) -> Option<()> {
        if !matches!(first, Event::MappingStart(..)) || section == Section::Zambdas {
            return self.skip(&first);
        }
        self.mapping(|walker, key, first, _| match key {
            "access_policy" | "accessPolicy" if section.has_policy() => {
                walker.policy(first, &mut entry.rules)
            }
            "roles" if section.names_roles() => walker.sequence(first, |walker, _, first, line| {
                entry.roles.push(line);
                walker.skip(&first)
            }),
            _ => walker.skip(&first),
        })
    }

    fn policy(&mut self, first: Event, rules: &mut Vec<usize>) -> Option<()> {
        if matches!(first, Event::SequenceStart(..)) {
            // A plain list of rules.
            return self.sequence(first, |walker, _, first, line| {
                rules.push(line);
                walker.skip(&first)
            });
        }
        if !matches!(first, Event::MappingStart(..)) {
            return self.skip(&first);
        }
        self.mapping(|walker, key, first, mark| {
            if key != "rule" {
                return walker.skip(&first);
            }
            if matches!(first, Event::MappingStart(..)) {
                rules.push(walker.node_line(&first, mark));
                return walker.skip(&first);
            }
            walker.sequence(first, |walker, _, first, line| {
                rules.push(line);
                walker.skip(&first)
            })
        })
    }
}
