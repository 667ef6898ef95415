//! Splitting a large block-style YAML policy file into pieces of whole
//! section entries, so that one file can be parsed on several threads and
//! serde_yaml never holds the events of more than a piece at once.
//!
//! A piece is a document of its own: the section key on line 1, then the
//! entries' lines exactly as written. Block YAML nests by indentation, so an
//! entry's lines (values, block scalars, comments) all sit between its dash
//! and the next dash of its section, and parse the same in a piece as in
//! the file. The split is only offered when the file's root holds nothing
//! but the section keys, each once, each opening a block list, so
//! the pieces' sections concatenated are the file's. Whatever a piece
//! cannot parse by itself (an alias of another piece's anchor, a quoted
//! scalar running past its entry) fails in that piece, and the loader then
//! parses the whole file instead.

use super::lines::Section;

/// Entries of one section, as a document of their own.
pub(in crate::policy) struct Piece<'a> {
    pub section: Section,
    /// The entries' lines, from the first dash to the next entry's.
    pub entries: &'a str,
    /// Line of the file where `entries` starts (1-based).
    pub line: usize,
}

impl Piece<'_> {
    /// The piece as a YAML document: the section key, then the entries.
    pub(in crate::policy) fn document(&self) -> String {
        let key = self.section.key();
        let mut document = String::with_capacity(key.len() + 2 + self.entries.len());
        document.push_str(key);
        document.push_str(":\n");
        document.push_str(self.entries);
        document
    }

    /// How far the piece's line numbers are from the file's.
    pub(in crate::policy) fn offset(&self) -> usize {
        self.line.saturating_sub(2)
    }
}

/// Splits `text` into pieces of about `size` bytes each, in file order, or
/// `None` when its root is anything but block lists of the sections.
pub(in crate::policy) fn split(text: &str, size: usize) -> Option<Vec<Piece<'_>>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut splitter = Splitter {
        text,
        size,
        pieces: Vec::new(),
        seen: [false; Section::ALL.len()],
        section: None,
        items: None,
        start: None,
    };
    let mut at = 0;
    for (number, line) in (1..).zip(text.split_inclusive('\n')) {
        splitter.line(line, at, number)?;
        at += line.len();
    }
    splitter.cut(text.len());
    (splitter.section.is_none() || splitter.items.is_some()).then_some(splitter.pieces)
}

struct Splitter<'a> {
    text: &'a str,
    size: usize,
    pieces: Vec<Piece<'a>>,
    /// Sections met so far (a repeated key is left to serde).
    seen: [bool; Section::ALL.len()],
    /// The section being read.
    section: Option<Section>,
    /// The column of its dashes, once its first entry is met.
    items: Option<usize>,
    /// Offset and line where the current piece starts.
    start: Option<(usize, usize)>,
}

impl Splitter<'_> {
    fn line(&mut self, line: &str, at: usize, number: usize) -> Option<()> {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        let content = content.trim_end();
        if content.is_empty() || content.starts_with('#') {
            return Some(());
        }
        let dash = content == "-" || content.starts_with("- ");
        match (self.section, self.items) {
            (Some(_), Some(items)) if indent == items && dash => self.entry(at, number),
            (Some(_), Some(items)) if indent > items => Some(()),
            (Some(_), None) if dash => {
                self.items = Some(indent);
                self.entry(at, number)
            }
            (Some(_), None) => None,
            _ if indent == 0 => self.key(content, at),
            _ => None,
        }
    }

    /// A root line: it must open a section not seen before.
    fn key(&mut self, content: &str, at: usize) -> Option<()> {
        if self.section.is_some() && self.items.is_none() {
            return None;
        }
        let (key, rest) = content.split_once(':')?;
        if !(rest.is_empty() || rest.trim_start().starts_with('#')) || rest.starts_with('#') {
            return None;
        }
        let section = Section::of_key(key.as_bytes())?;
        let seen = self.seen.get_mut(section as usize)?;
        if *seen {
            return None;
        }
        *seen = true;
        self.cut(at);
        self.section = Some(section);
        self.items = None;
        Some(())
    }

    /// An entry starts at `at`: the piece so far ends there when it is
    /// large enough.
    fn entry(&mut self, at: usize, number: usize) -> Option<()> {
        match self.start {
            Some((start, _)) if at - start >= self.size => {
                self.cut(at);
                self.start = Some((at, number));
            }
            Some(_) => {}
            None => self.start = Some((at, number)),
        }
        Some(())
    }

    /// Ends the current piece at `end`.
    fn cut(&mut self, end: usize) {
        if let (Some((start, line)), Some(section)) = (self.start.take(), self.section) {
            if let Some(entries) = self.text.get(start..end) {
                self.pieces.push(Piece {
                    section,
                    entries,
                    line,
                });
            }
        }
    }
}
