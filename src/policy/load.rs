//! Loading: walk the policy directory, parse every file, validate every
//! entry and rule, and compile the whole into one [`Set`] — or report every
//! error found, each with its file, entry and line.
//!
//! Loading is all-or-nothing: a set comes back only when no file has an
//! error. Findings that do not change what the set decides (a rule naming a
//! Zambda missing from the catalog, a role listed twice) are warnings.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use super::file;
use super::lines::{Lines, Section};
use super::model::{
    Actor, Effect, Holdings, Origin, Policy, Role, Rule, Set, Slots, Subject, Table, Target,
    Targets, Zambda, ZambdaKind,
};
use super::split::{self, Piece};

/// A valid policy set, what was read to build it, and what deserves a look.
#[derive(Debug)]
pub struct Loaded {
    pub set: Set,
    pub warnings: Vec<Warning>,
    /// The files read, in the order they were merged.
    pub files: Vec<PathBuf>,
}

/// Why a policy set was refused: one error per line, every error found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct LoadErrors(pub Vec<LoadError>);

/// One reason a policy set was refused, where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", located(.file, .line, .entry, .message))]
pub struct LoadError {
    pub file: PathBuf,
    /// The entry, e.g. `roles[3] (lab-integrations)` or
    /// `roles[3] (lab-integrations).access_policy.rule[1]`.
    pub entry: Option<String>,
    /// 1-based.
    pub line: Option<usize>,
    pub message: String,
}

/// Something worth a look that does not stop the set from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub entry: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Located {
            file: &self.file,
            line: self.line,
            entry: self.entry.as_deref(),
            message: &self.message,
        }
        .fmt(f)
    }
}

/// `file:line: entry: message`, leaving out what is unknown.
struct Located<'a> {
    file: &'a Path,
    line: Option<usize>,
    entry: Option<&'a str>,
    message: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(entry) = self.entry {
            write!(f, ": {entry}")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn located<'a>(
    file: &'a Path,
    line: &Option<usize>,
    entry: &'a Option<String>,
    message: &'a str,
) -> Located<'a> {
    Located {
        file,
        line: *line,
        entry: entry.as_deref(),
        message,
    }
}

fn lines(errors: &[LoadError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Loads every policy file under `dir` (see the module documentation of
/// `policy` for which files are read). A missing directory is an error; an
/// empty one is a valid, empty set (`check` warns about an empty set).
pub fn load_dir(dir: &Path) -> Result<Loaded, LoadErrors> {
    compile_sources(read_sources(dir))
}

/// The policy files under a directory, read but not yet parsed: what hot
/// reload compares to decide whether anything changed.
#[derive(Debug)]
pub struct Sources {
    /// (path, text) of every policy file, in load order.
    pub texts: Vec<(PathBuf, String)>,
    /// Problems met while walking and reading.
    pub errors: Vec<LoadError>,
    /// Findings of the walk that stop nothing (e.g. a FIFO named `x.yaml`).
    pub warnings: Vec<Warning>,
}

/// Walks `dir` and reads every policy file (the first half of
/// [`load_dir`]).
pub fn read_sources(dir: &Path) -> Sources {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let paths = walk(dir, &mut errors, &mut warnings);
    let mut texts = Vec::with_capacity(paths.len());
    for path in paths {
        match read(&path) {
            Ok(text) => texts.push((path, text)),
            Err(error) => errors.push(error),
        }
    }
    Sources {
        texts,
        errors,
        warnings,
    }
}

/// Parses, validates and compiles what [`read_sources`] read (the second
/// half of [`load_dir`]).
pub fn compile_sources(sources: Sources) -> Result<Loaded, LoadErrors> {
    compile(sources.texts, sources.errors, sources.warnings)
}

/// Loads policy files given as (path, text) pairs, as if read from disk in
/// that order; the path names the file in messages and picks the format
/// (`.json` is read as JSON, anything else as YAML).
pub fn load_texts(files: &[(&Path, &str)]) -> Result<Loaded, LoadErrors> {
    let texts: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(path, text)| (path.to_path_buf(), (*text).to_owned()))
        .collect();
    compile(texts, Vec::new(), Vec::new())
}

// ---------------------------------------------------------------------------
// The directory walk

/// Whether a file name is a policy file (not a policy test).
fn is_policy_file(name: &[u8]) -> bool {
    let policy = [b".yaml".as_slice(), b".yml", b".json"]
        .iter()
        .any(|ext| name.ends_with(ext));
    let test = [b".test.yaml".as_slice(), b".test.yml", b".test.json"]
        .iter()
        .any(|ext| name.ends_with(ext));
    policy && !test
}

/// The policy files under `dir`: recursively, entries sorted by name at each
/// level, names starting with `.` skipped, symlinks followed, each real
/// directory and file visited once (which also ends symlink loops).
fn walk(dir: &Path, errors: &mut Vec<LoadError>, warnings: &mut Vec<Warning>) -> Vec<PathBuf> {
    let fail = |errors: &mut Vec<LoadError>, message: String| {
        errors.push(LoadError {
            file: dir.to_path_buf(),
            entry: None,
            line: None,
            message,
        });
    };
    let canonical = match fs::metadata(dir).and_then(|meta| {
        if meta.is_dir() {
            fs::canonicalize(dir)
        } else {
            Err(io::Error::other("not a directory"))
        }
    }) {
        Ok(canonical) => canonical,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fail(errors, "policy directory does not exist".to_owned());
            return Vec::new();
        }
        Err(error) => {
            fail(errors, format!("cannot read policy directory: {error}"));
            return Vec::new();
        }
    };
    let mut walk = Walk {
        seen_dirs: HashSet::from([canonical]),
        seen_files: HashSet::new(),
        files: Vec::new(),
        errors,
        warnings,
    };
    walk.dir(dir);
    walk.files
}

/// State of one directory walk.
struct Walk<'a> {
    /// Real paths of the directories entered and files taken.
    seen_dirs: HashSet<PathBuf>,
    seen_files: HashSet<PathBuf>,
    files: Vec<PathBuf>,
    errors: &'a mut Vec<LoadError>,
    warnings: &'a mut Vec<Warning>,
}

impl Walk<'_> {
    fn fail(&mut self, path: &Path, message: String) {
        self.errors.push(LoadError {
            file: path.to_path_buf(),
            entry: None,
            line: None,
            message,
        });
    }

    /// Visits `dir`'s entries in name order, depth first.
    fn dir(&mut self, dir: &Path) {
        let mut entries = Vec::new();
        match fs::read_dir(dir) {
            Ok(listing) => {
                for entry in listing {
                    match entry {
                        Ok(entry) => {
                            let name = entry.file_name().as_encoded_bytes().to_vec();
                            entries.push((name, entry.path()));
                        }
                        Err(error) => self.fail(dir, format!("cannot list directory: {error}")),
                    }
                }
            }
            Err(error) => self.fail(dir, format!("cannot list directory: {error}")),
        }
        entries.sort();
        for (name, path) in entries {
            // Hidden entries, including Kubernetes' `..data` and its
            // timestamped targets, are only reached through symlinks.
            if !name.starts_with(b".") {
                self.entry(&name, &path);
            }
        }
    }

    fn entry(&mut self, name: &[u8], path: &Path) {
        // `metadata` follows symlinks: a link is what it points to.
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(error) => return self.fail(path, format!("cannot read: {error}")),
        };
        if !meta.is_dir() && !is_policy_file(name) {
            return;
        }
        if !meta.is_dir() && !meta.is_file() {
            self.warnings.push(Warning {
                file: path.to_path_buf(),
                entry: None,
                line: None,
                message: "not a regular file; skipped".to_owned(),
            });
            return;
        }
        let real = match fs::canonicalize(path) {
            Ok(real) => real,
            Err(error) => return self.fail(path, format!("cannot read: {error}")),
        };
        if meta.is_dir() {
            // A directory seen before is skipped, which also ends loops.
            if self.seen_dirs.insert(real) {
                self.dir(path);
            }
        } else if self.seen_files.insert(real) {
            self.files.push(path.to_path_buf());
        }
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    let error = |message: String| LoadError {
        file: path.to_path_buf(),
        entry: None,
        line: None,
        message,
    };
    let bytes = fs::read(path).map_err(|e| error(format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|_| error("not valid UTF-8".to_owned()))
}

// ---------------------------------------------------------------------------
// Parsing

/// One parsed file.
struct Parsed {
    file: Arc<Path>,
    content: file::File,
    lines: Lines,
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "json")
}

/// Deserializes one file; an empty or `null` document is an empty file.
pub(super) fn deserialize(path: &Path, text: &str) -> Result<file::File, LoadError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(file::File::default());
    }
    let parsed = if is_json(path) {
        serde_json::from_str::<Option<file::File>>(text).map_err(|error| {
            let suffix = format!(" at line {} column {}", error.line(), error.column());
            let line = Some(error.line()).filter(|&line| line > 0);
            (line, strip(&error, &suffix))
        })
    } else {
        serde_yaml::from_str::<Option<file::File>>(text).map_err(|error| {
            let location = error.location();
            let suffix = location
                .as_ref()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            let mut message = strip(&error, &suffix);
            if message.contains("while scanning an alias") {
                message.push_str(" (a bare `*` must be quoted: \"*\")");
            }
            (location.map(|l| l.line()), message)
        })
    };
    parsed
        .map(Option::unwrap_or_default)
        .map_err(|(line, message)| LoadError {
            file: path.to_path_buf(),
            entry: None,
            line,
            message,
        })
}

/// The message of a serde error without its trailing location.
fn strip(error: impl fmt::Display, suffix: &str) -> String {
    let message = error.to_string();
    match message.strip_suffix(suffix) {
        Some(message) if !suffix.is_empty() => message.to_owned(),
        _ => message,
    }
}

/// Files above this total size are parsed on several threads.
const PARALLEL_BYTES: usize = 1 << 20;

/// YAML files are parsed in pieces of about this size (see `split`).
pub(super) const PIECE_BYTES: usize = 256 << 10;

/// A unit of parsing work.
enum Job<'a> {
    /// Deserialize file `i` whole.
    Content(usize),
    /// Index the lines of file `i` whole.
    Lines(usize),
    /// Deserialize and index piece `k` of file `i`.
    Piece(usize, usize, Piece<'a>),
}

/// What a [`Job`] produced.
enum Done {
    Content(Result<file::File, LoadError>),
    Lines(Lines),
    /// `None` when the piece does not parse by itself.
    Piece(ParsedPiece),
}

impl Job<'_> {
    /// Roughly how long the job takes, to start the longest first.
    fn cost(&self, texts: &[(PathBuf, String)]) -> usize {
        let len = |i: usize| texts.get(i).map_or(0, |(_, text)| text.len());
        match self {
            Job::Content(i) => len(*i),
            // Indexing is about ten times faster than deserializing.
            Job::Lines(i) => len(*i) / 10,
            Job::Piece(_, _, piece) => piece.entries.len(),
        }
    }

    fn run(&self, texts: &[(PathBuf, String)]) -> Option<Done> {
        Some(match self {
            Job::Content(i) => {
                let (path, text) = texts.get(*i)?;
                Done::Content(deserialize(path, text))
            }
            Job::Lines(i) => {
                let (path, text) = texts.get(*i)?;
                Done::Lines(Lines::index(text, is_json(path)))
            }
            Job::Piece(i, _, piece) => {
                let (path, _) = texts.get(*i)?;
                Done::Piece(parse_piece(path, piece))
            }
        })
    }
}

/// Parses and indexes every file, on as many threads as there are CPUs
/// when the files are large, longest work first; results come back in
/// input order. A large YAML file is parsed in pieces of whole entries (see
/// `split`), and whole when a piece does not parse by itself, so that its
/// errors are those of the whole file.
fn parse_all(texts: &[(PathBuf, String)]) -> Vec<Result<Parsed, LoadError>> {
    let bytes: usize = texts.iter().map(|(_, text)| text.len()).sum();
    let threads = if bytes < PARALLEL_BYTES {
        1
    } else {
        thread::available_parallelism().map_or(1, |n| n.get())
    };
    let mut jobs = Vec::new();
    let mut counts = vec![0; texts.len()];
    for ((i, (path, text)), count) in texts.iter().enumerate().zip(&mut counts) {
        let pieces = (threads > 1 && !is_json(path) && text.len() >= 2 * PIECE_BYTES)
            .then(|| split::split(text, PIECE_BYTES))
            .flatten()
            .filter(|pieces| pieces.len() > 1);
        match pieces {
            Some(pieces) => {
                *count = pieces.len();
                jobs.extend(
                    pieces
                        .into_iter()
                        .enumerate()
                        .map(|(k, piece)| Job::Piece(i, k, piece)),
                );
            }
            None => jobs.extend([Job::Content(i), Job::Lines(i)]),
        }
    }
    jobs.sort_by_key(|job| std::cmp::Reverse(job.cost(texts)));

    let mut results = Results::new(texts.len());
    results.gather(&jobs, run_jobs(&jobs, threads, texts));
    drop(jobs);
    let mut again = Vec::new();
    let pieces = std::mem::take(&mut results.pieces);
    for (i, (file, count)) in pieces.into_iter().zip(counts).enumerate() {
        if count == 0 {
            continue;
        }
        let mut file = file;
        file.sort_unstable_by_key(|(k, _)| *k);
        let parsed: Option<Vec<(file::File, Lines)>> = (file.len() == count)
            .then(|| file.into_iter().map(|(_, parsed)| parsed).collect())
            .flatten();
        match parsed {
            Some(parsed) => {
                let (content, lines) = merge(parsed);
                results.content(i, Ok(content));
                results.lines(i, lines);
            }
            None => again.extend([Job::Content(i), Job::Lines(i)]),
        }
    }
    if !again.is_empty() {
        results.gather(&again, run_jobs(&again, threads, texts));
    }

    texts
        .iter()
        .zip(results.contents.into_iter().zip(results.indexes))
        .map(|((path, _), (content, lines))| {
            let content = content.unwrap_or_else(|| {
                Err(LoadError {
                    file: path.clone(),
                    entry: None,
                    line: None,
                    message: "internal error while parsing".to_owned(),
                })
            })?;
            Ok(Parsed {
                file: Arc::from(path.as_path()),
                content,
                lines: lines.unwrap_or_default(),
            })
        })
        .collect()
}

/// A piece of a file, parsed (see [`Done::Piece`]).
type ParsedPiece = Option<(file::File, Lines)>;

/// What the jobs of [`parse_all`] produced, per file.
struct Results {
    contents: Vec<Option<Result<file::File, LoadError>>>,
    indexes: Vec<Option<Lines>>,
    /// (piece number, piece) of files parsed in pieces, in no order.
    pieces: Vec<Vec<(usize, ParsedPiece)>>,
}

impl Results {
    fn new(files: usize) -> Results {
        Results {
            contents: (0..files).map(|_| None).collect(),
            indexes: (0..files).map(|_| None).collect(),
            pieces: (0..files).map(|_| Vec::new()).collect(),
        }
    }

    fn content(&mut self, i: usize, content: Result<file::File, LoadError>) {
        if let Some(slot) = self.contents.get_mut(i) {
            *slot = Some(content);
        }
    }

    fn lines(&mut self, i: usize, lines: Lines) {
        if let Some(slot) = self.indexes.get_mut(i) {
            *slot = Some(lines);
        }
    }

    /// Files the results of `jobs`.
    fn gather(&mut self, jobs: &[Job<'_>], done: Vec<Option<Done>>) {
        for (job, done) in jobs.iter().zip(done) {
            match (job, done) {
                (Job::Content(i), Some(Done::Content(content))) => self.content(*i, content),
                (Job::Lines(i), Some(Done::Lines(lines))) => self.lines(*i, lines),
                (Job::Piece(i, k, _), Some(Done::Piece(parsed))) => {
                    if let Some(file) = self.pieces.get_mut(*i) {
                        file.push((*k, parsed));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Runs `jobs` on up to `threads` threads, this one included; results come
/// back in job order. A helper that cannot be started is not needed, and
/// one that panicked leaves its jobs without a result (`None`).
fn run_jobs(jobs: &[Job<'_>], threads: usize, texts: &[(PathBuf, String)]) -> Vec<Option<Done>> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(i) else {
                return done;
            };
            done.push((i, job.run(texts)));
        }
    };
    let finished: Vec<(usize, Option<Done>)> = thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(jobs.len()))
            .filter_map(|_| thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        let mut done = work();
        for helper in helpers {
            done.extend(helper.join().unwrap_or_default());
        }
        done
    });
    let mut done: Vec<Option<Done>> = jobs.iter().map(|_| None).collect();
    for (i, result) in finished {
        if let Some(slot) = done.get_mut(i) {
            *slot = result;
        }
    }
    done
}

/// Deserializes and indexes one piece of the YAML file `path`; `None` when
/// the piece does not parse by itself.
pub(super) fn parse_piece(path: &Path, piece: &Piece<'_>) -> ParsedPiece {
    let document = piece.document();
    let content = deserialize(path, &document).ok()?;
    let mut lines = Lines::index(&document, false);
    lines.shift(piece.offset());
    Some((content, lines))
}

/// One file and its line index from its pieces, in file order.
pub(super) fn merge(pieces: Vec<(file::File, Lines)>) -> (file::File, Lines) {
    let mut content = file::File::default();
    let mut lines = Lines::default();
    for (piece, piece_lines) in pieces {
        content.append(piece);
        lines.append(piece_lines);
    }
    (content, lines)
}

// ---------------------------------------------------------------------------
// Validation and compilation

fn compile(
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
        actor_entries: Vec::new(),
        scratch: Vec::new(),
    };
    compiler.set.stats.files = paths.len();
    for file in &mut parsed {
        compiler.zambdas(file);
    }
    compiler.catalog();
    for file in &mut parsed {
        compiler.roles(file);
    }
    for file in &mut parsed {
        compiler.actors(file);
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
            Part::Role(k) => self.lines.actor_role(self.index, k),
        };
        line.or_else(|| self.lines.entry(self.section, self.index))
    }
}

struct Compiler {
    set: Set,
    errors: Vec<LoadError>,
    warnings: Vec<Warning>,
    /// Whether every file parsed.
    complete: bool,
    /// Each Zambda's and each actor's index within its file's section.
    zambda_entries: Vec<usize>,
    actor_entries: Vec<usize>,
    /// A buffer `policy` reuses.
    scratch: Vec<Target>,
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
            for (what, value) in [("id", &entry.id), ("name", &entry.name)] {
                if !is_id(value) {
                    let message = format!("{what} {value:?} must match [A-Za-z0-9_-]+");
                    self.error(&at, Part::Entry, message);
                }
            }
            let kind = match entry.kind.as_deref() {
                None | Some("authenticated") => ZambdaKind::Authenticated,
                Some("public") => ZambdaKind::Public,
                Some(other) => {
                    let message =
                        format!("type must be `authenticated` or `public`, not {other:?}");
                    self.error(&at, Part::Entry, message);
                    ZambdaKind::Authenticated
                }
            };
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
            self.set.zambdas.push(Zambda {
                id: entry.id,
                name: entry.name,
                kind,
                upstream: entry.upstream,
                file: file.file.clone(),
                line,
                index,
            });
            self.zambda_entries.push(i);
        }
    }

    /// Requirements the merged catalog (unique ids, unique names, no name equal to
    /// another Zambda's id) and indexes it by id and by name.
    fn catalog(&mut self) {
        let mut ids: HashMap<&str, &Zambda> = HashMap::new();
        let mut names: HashMap<&str, &Zambda> = HashMap::new();
        let mut problems = Vec::new();
        for zambda in &self.set.zambdas {
            if let Some(first) = ids.insert(&zambda.id, zambda) {
                ids.insert(&first.id, first);
                let message = format!(
                    "id {:?} is already the id of {}",
                    zambda.id,
                    describe(first)
                );
                problems.push((zambda, message));
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
    }

    fn roles(&mut self, file: &mut Parsed) {
        let entries = file.content.roles.take().unwrap_or_default();
        let file = &*file;
        for (i, entry) in entries.into_iter().enumerate() {
            let at = At::new(file, Section::Roles, i, &entry.name);
            if let Some(problem) = name_problem(&entry.name) {
                self.error(&at, Part::Entry, format!("name {:?} {problem}", entry.name));
            }
            let index = self.set.roles.len() as u32;
            match self.set.role_names.get(entry.name.as_str()) {
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
                    self.set
                        .role_names
                        .insert(entry.name.as_str().into(), index);
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
        }
    }

    fn actors(&mut self, file: &mut Parsed) {
        let entries = file.content.actors.take().unwrap_or_default();
        let file = &*file;
        for (i, entry) in entries.into_iter().enumerate() {
            let at = At::new(file, Section::Actors, i, &entry.subject);
            if entry.subject.is_empty()
                || entry.subject.trim() != entry.subject
                || entry.subject.chars().any(char::is_control)
            {
                let message = format!("subject {:?} is not a token subject", entry.subject);
                self.error(&at, Part::Entry, message);
            }
            if let Some(issuer) = &entry.issuer {
                if issuer.is_empty() || issuer.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    self.error(
                        &at,
                        Part::Entry,
                        format!("issuer {issuer:?} is not an issuer"),
                    );
                }
            }
            let names = entry.roles.as_deref().unwrap_or_default();
            let mut roles: Vec<u32> = Vec::with_capacity(names.len());
            for (k, name) in names.iter().enumerate() {
                match self.set.role_names.get(name.as_str()) {
                    Some(role) if roles.contains(role) => {
                        let message = format!("role {name:?} is listed more than once");
                        self.warn(&at, Part::Role(k), message);
                    }
                    Some(&role) => roles.push(role),
                    None if self.complete => {
                        let message = format!("role {name:?} is not defined");
                        self.error(&at, Part::Role(k), message);
                    }
                    None => {}
                }
            }
            let policy = entry.access_policy.as_ref().map(|policy| {
                let origin = Origin::Actor {
                    subject: entry.subject.as_str().into(),
                    issuer: entry.issuer.as_deref().map(Arc::from),
                };
                self.policy(&at, policy, origin)
            });
            let line = at.line(Part::Entry);
            self.set.actors.push(Actor {
                subject: entry.subject,
                issuer: entry.issuer,
                description: entry.description,
                file: file.file.clone(),
                line,
                roles: roles.into_boxed_slice(),
                policy,
            });
            self.actor_entries.push(i);
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
                let i = self
                    .actor_entries
                    .get(index as usize)
                    .copied()
                    .unwrap_or_default();
                label(Section::Actors, i, &actor.subject)
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
            let checked = check_rule(rule);
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
            if !invokes || !valid {
                continue;
            }
            let rule_targets = match self.targets(at, j, &resources) {
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

    /// The Zambdas a valid invoking rule covers: `None` for every Zambda,
    /// else their catalog indexes (names missing from the catalog warned).
    fn targets(
        &mut self,
        at: &At<'_>,
        rule: usize,
        resources: &[Resource<'_>],
    ) -> Option<Vec<u32>> {
        let mut zambdas = Vec::with_capacity(resources.len());
        for resource in resources {
            match resource {
                Resource::All => return None,
                Resource::Named(name) => match self.set.zambda_keys.get(*name) {
                    Some(&zambda) => zambdas.push(zambda),
                    None if self.complete => {
                        let message = format!("Zambda {name:?} is not in the catalog");
                        self.warn(at, Part::Rule(rule), message);
                    }
                    None => {}
                },
            }
        }
        zambdas.sort_unstable();
        zambdas.dedup();
        Some(zambdas)
    }
}

fn describe(zambda: &Zambda) -> String {
    format!(
        "Zambda {:?} ({})",
        zambda.name,
        place(&zambda.file, zambda.line)
    )
}

fn place(file: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    }
}

/// `[A-Za-z0-9_-]+`: Zambda ids and names.
pub(super) fn is_id(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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

// ---------------------------------------------------------------------------
// Rules

/// What a rule is to zambda-guard.
enum Kind<'r> {
    /// Not about Zambdas (FHIR, Z3, …): counted, never evaluated.
    Inert,
    /// Zambda-facing: `invokes` when an action covers `Zambda:InvokeFunction`.
    Zambda {
        invokes: bool,
        resources: Vec<Resource<'r>>,
    },
}

/// What a valid Zambda resource covers.
enum Resource<'r> {
    All,
    /// `Zambda:Function:<id-or-name>`.
    Named(&'r str),
}

struct Checked<'r> {
    effect: Option<Effect>,
    kind: Kind<'r>,
    problems: Vec<String>,
}

/// Whether a string is a wildcard or names the Zambda service (any case).
fn zambda_service(service: &str) -> bool {
    service == "*" || service.eq_ignore_ascii_case("Zambda")
}

/// The service of an action or resource: what comes before the first `:`.
fn service(value: &str) -> &str {
    value.split_once(':').map_or(value, |(service, _)| service)
}

/// A part holding a wildcard character without being the wildcard `*`.
fn partial_glob(part: &str) -> bool {
    part != "*" && part.contains(['*', '?'])
}

/// Requirements one rule: shape everywhere; exactness where it faces Zambdas.
fn check_rule(rule: &file::Rule) -> Checked<'_> {
    let mut problems = Vec::new();
    let effect = match rule.effect.as_str() {
        "Allow" => Some(Effect::Allow),
        "Deny" => Some(Effect::Deny),
        other => {
            problems.push(format!("effect must be `Allow` or `Deny`, not {other:?}"));
            None
        }
    };
    let actions = &rule.action.0;
    let resources = &rule.resource.0;
    if actions.is_empty() {
        problems.push("action must name at least one action".to_owned());
    }
    if resources.is_empty() {
        problems.push("resource must name at least one resource".to_owned());
    }
    for action in actions {
        let shaped = match action.split_once(':') {
            None => action == "*",
            Some((service, name)) => !service.is_empty() && !name.is_empty() && !name.contains(':'),
        };
        if !shaped || action.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(format!("action {action:?} must be `*` or `service:Action`"));
        }
    }
    for resource in resources {
        let shaped = resource.split(':').all(|part| !part.is_empty())
            && !resource.chars().any(char::is_control)
            && !service(resource).chars().any(char::is_whitespace);
        if !shaped {
            problems.push(format!(
                "resource {resource:?} must be `*` or `service[:...]`, with no empty part"
            ));
        }
    }
    let facing = actions.iter().any(|a| zambda_service(service(a)))
        && resources.iter().any(|r| zambda_service(service(r)));
    if !facing {
        return Checked {
            effect,
            kind: Kind::Inert,
            problems,
        };
    }

    let mut invokes = false;
    for action in actions {
        let Some((service, name)) = action.split_once(':') else {
            invokes |= action == "*";
            continue;
        };
        if !zambda_service(service) {
            continue;
        }
        if service == "*" {
            problems.push(format!(
                "action {action:?}: write `*` for every action of every service"
            ));
        } else if service != "Zambda" {
            problems.push(format!(
                "action {action:?}: the service is written `Zambda`"
            ));
        } else if partial_glob(name) {
            problems.push(format!(
                "action {action:?}: partial wildcards are not supported; write `Zambda:*` or the full action"
            ));
        } else if name.eq_ignore_ascii_case("InvokeFunction") && name != "InvokeFunction" {
            problems.push(format!(
                "action {action:?}: the action is written `Zambda:InvokeFunction`"
            ));
        } else {
            invokes |= name == "*" || name == "InvokeFunction";
        }
    }

    let mut covered = Vec::new();
    for resource in resources {
        if !zambda_service(service(resource)) {
            continue;
        }
        match zambda_resource(resource) {
            Ok(target) => covered.push(target),
            Err(problem) => problems.push(format!("resource {resource:?}: {problem}")),
        }
    }
    if rule.condition.is_some() {
        problems.push(
            "a condition cannot be evaluated on a rule that applies to Zambdas; \
             remove it, or keep the Zambda actions and resources in a rule of their own"
                .to_owned(),
        );
    }
    Checked {
        effect,
        kind: Kind::Zambda {
            invokes,
            resources: covered,
        },
        problems,
    }
}

/// Parses a resource whose service is `*` or Zambda (any case):
/// `service[:type[:id]]`, exactly spelled, no partial globs, and no
/// specific part after a wildcard.
fn zambda_resource(resource: &str) -> Result<Resource<'_>, String> {
    let mut parts = [""; 3];
    let mut count = 0;
    for part in resource.split(':') {
        let Some(slot) = parts.get_mut(count) else {
            return Err(
                "a Zambda resource has at most three parts, `Zambda:Function:<id-or-name>`"
                    .to_owned(),
            );
        };
        *slot = part;
        count += 1;
    }
    let parts = parts.get(..count).unwrap_or_default();
    if parts.iter().any(|part| partial_glob(part)) {
        return Err(
            "partial wildcards are not supported; write `*` or a full id or name".to_owned(),
        );
    }
    let mut wildcard = false;
    for (position, part) in parts.iter().enumerate() {
        if *part == "*" {
            wildcard = true;
            continue;
        }
        if wildcard {
            return Err("a wildcard part cannot be followed by a specific one".to_owned());
        }
        match position {
            0 if *part != "Zambda" => return Err("the service is written `Zambda`".to_owned()),
            1 if *part != "Function" => {
                return Err("the resource type is written `Function` (or `*`)".to_owned())
            }
            2 if !is_id(part) => {
                return Err(format!(
                    "{part:?} is not a Zambda id or name ([A-Za-z0-9_-]+)"
                ))
            }
            _ => {}
        }
    }
    Ok(match parts.get(2) {
        Some(&id) if id != "*" => Resource::Named(id),
        _ => Resource::All,
    })
}
