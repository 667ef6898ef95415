//! Loading, the public entry: walk the policy directory (`walk`), read
//! every file with its line numbers (`text`), validate every entry and rule
//! and compile the whole into one [`Set`] (`compile`, with the rule grammar
//! in `grammar`) — or report every error found, each with its file, entry
//! and line. This file holds the entry points and the error and warning
//! types they return.
//!
//! Loading is all-or-nothing: a set comes back only when no file has an
//! error. Findings that do not change what the set decides (a rule naming a
//! Zambda missing from the catalog, a role listed twice) are warnings.

use std::fmt;
use std::path::{Path, PathBuf};

use super::compile::compile;
use super::model::Set;
use super::walk::{read, walk};

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
