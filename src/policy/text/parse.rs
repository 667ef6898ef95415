//! Parsing: every file deserialized into the types of `file` and indexed
//! by `lines`, large YAML files in pieces on several threads (see `split`),
//! results in input order.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use super::lines::Lines;
use super::split::{self, Piece};
use super::{block, file};
use crate::policy::load::LoadError;

/// One parsed file.
pub(in crate::policy) struct Parsed {
    pub file: Arc<Path>,
    pub content: file::File,
    pub lines: Lines,
}

pub(in crate::policy) fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "json")
}

/// Deserializes one file; an empty or `null` document is an empty file.
pub(in crate::policy) fn deserialize(path: &Path, text: &str) -> Result<file::File, LoadError> {
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
    } else if let Some(file) = block::from_str::<Option<file::File>>(text) {
        Ok(file)
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
pub(in crate::policy) const PIECE_BYTES: usize = 256 << 10;

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
pub(in crate::policy) fn parse_all(texts: &[(PathBuf, String)]) -> Vec<Result<Parsed, LoadError>> {
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
pub(in crate::policy) fn parse_piece(path: &Path, piece: &Piece<'_>) -> ParsedPiece {
    let document = piece.document();
    let content = deserialize(path, &document).ok()?;
    let mut lines = Lines::index(&document, false);
    lines.shift(piece.offset());
    Some((content, lines))
}

/// One file and its line index from its pieces, in file order.
pub(in crate::policy) fn merge(pieces: Vec<(file::File, Lines)>) -> (file::File, Lines) {
    let mut content = file::File::default();
    let mut lines = Lines::default();
    for (piece, piece_lines) in pieces {
        content.append(piece);
        lines.append(piece_lines);
    }
    (content, lines)
}
