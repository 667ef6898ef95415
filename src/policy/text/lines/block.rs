//! The fast path of the line index: block-style YAML, read line by line.
//!
//! Policy files are almost always block YAML: `key: value` lines, `- `
//! items, one-line flow collections (`roles: [a, b]`), comments. This reads
//! such text by indentation alone, about ten times faster than a full YAML
//! parser, and records exactly what the parser walk would. It gives up
//! (`None`) on anything it does not fully understand — anchors, aliases,
//! tags, directives, several documents, tabs in indentation, quoted scalars
//! or flow collections spanning lines, a flow root — and the caller falls
//! back to the parser. Lines nested deeper than a node that matters (field
//! values, conditions, block scalars, multi-line plain scalars) are skipped
//! without being read: YAML requires them to be indented more than their
//! key, so indentation alone says where they end.

use super::{Entry, Lines, Section};

/// Indexes `text`, or `None` when it is not plain block YAML.
pub(crate) fn index(text: &str) -> Option<Lines> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut indexer = Indexer::default();
    for (number, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        indexer.line(number + 1, line)?;
    }
    indexer.finish()
}

/// An open block node, with the column its keys or dashes sit at.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// The root mapping.
    Root { indent: usize },
    /// The list of entries of a section.
    Section { indent: usize, section: Section },
    /// The mapping of the current entry of a section.
    Entry { indent: usize, section: Section },
    /// The access policy mapping of the current entry.
    Policy { indent: usize, section: Section },
    /// A list whose items' lines are recorded.
    Items { indent: usize, list: List },
    /// A node whose content is not read: every deeper line, and lines at
    /// its own indentation that are items when `dashes`.
    Skip { indent: usize, dashes: bool },
}

/// The lists whose items are recorded.
#[derive(Debug, Clone, Copy)]
enum List {
    Rules(Section),
    Roles(Section),
}

/// What the node after a key (or a `-`) with nothing on its line may be.
#[derive(Debug, Clone, Copy)]
enum Opens {
    Section(Section),
    Entry(Section),
    Policy(Section),
    Rules(Section),
    Roles(Section),
    Item(List),
    Nothing,
}

/// A key or dash with an empty value, waiting for the next line.
#[derive(Debug, Clone, Copy)]
struct Pending {
    indent: usize,
    /// After a key (a list may then start at the key's own column).
    key: bool,
    opens: Opens,
}

#[derive(Default)]
struct Indexer {
    lines: Lines,
    stack: Vec<Frame>,
    pending: Option<Pending>,
    /// The last line that was not blank or a comment.
    previous: usize,
    /// The section whose last entry is still open (its last line unknown).
    open: Option<Section>,
}

/// One line, split into indentation and content (also the line type of
/// the fast deserializer, `text::block`).
#[derive(Debug, Clone, Copy)]
pub(in crate::policy::text) struct Line<'a> {
    /// 1-based.
    pub number: usize,
    pub indent: usize,
    pub content: &'a str,
}

/// Whether `content` (a line without its indentation, or what follows a
/// dash) is a list item: a dash alone or followed by a space.
pub(in crate::policy::text) fn is_dash(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

impl<'a> Line<'a> {
    pub fn dash(&self) -> bool {
        is_dash(self.content)
    }

    /// What follows the dash of an item, and its column.
    pub fn item(&self) -> (&'a str, usize) {
        let rest = self.content.get(1..).unwrap_or_default();
        let content = rest.trim_start_matches(' ');
        (content, self.indent + self.content.len() - content.len())
    }
}

impl Indexer {
    fn line(&mut self, number: usize, text: &str) -> Option<()> {
        let content = text.trim_start_matches(' ');
        let indent = text.len() - content.len();
        if content.trim().is_empty() || content.starts_with('#') {
            return Some(());
        }
        if content.starts_with('\t') || content.contains('\r') {
            return None;
        }
        if indent == 0 && (content.starts_with("---") || content.starts_with("...")) {
            // A single leading `---` is the common document header.
            let rest = content.get(3..).unwrap_or_default().trim();
            let header = content.starts_with("---") && self.previous == 0;
            return (header && (rest.is_empty() || rest.starts_with('#'))).then_some(());
        }
        if content.starts_with('%') {
            return None;
        }
        let line = Line {
            number,
            indent,
            content,
        };
        self.significant(&line)?;
        self.previous = number;
        Some(())
    }

    fn significant(&mut self, line: &Line<'_>) -> Option<()> {
        if self.stack.is_empty() {
            // The root must be a block mapping.
            key_value(line.content)?;
            self.stack.push(Frame::Root {
                indent: line.indent,
            });
        }
        if let Some(pending) = self.pending.take() {
            let same_column_list = pending.key && line.indent == pending.indent && line.dash();
            if line.indent > pending.indent || same_column_list {
                return self.open(pending, line);
            }
            // Nothing came: the value was null, which is fine for a key but
            // not for an item whose line the parser would place oddly.
            if matches!(pending.opens, Opens::Entry(_) | Opens::Item(_)) {
                return None;
            }
        }
        self.pop(line)?;
        self.within(line)
    }

    /// Closes the frames `line` is not part of.
    fn pop(&mut self, line: &Line<'_>) -> Option<()> {
        let (i, dash) = (line.indent, line.dash());
        while let Some(&frame) = self.stack.last() {
            let stays = match frame {
                Frame::Root { indent } => {
                    if i < indent || (i == indent && dash) {
                        return None;
                    }
                    true
                }
                Frame::Section { indent, .. } | Frame::Items { indent, .. } => {
                    i > indent || (i == indent && dash)
                }
                Frame::Entry { indent, .. } | Frame::Policy { indent, .. } => {
                    if i == indent && dash {
                        return None;
                    }
                    i >= indent
                }
                Frame::Skip { indent, dashes } => i > indent || (dashes && i == indent && dash),
            };
            if stays {
                return Some(());
            }
            if let Frame::Section { .. } = frame {
                self.close_entry();
            }
            self.stack.pop();
        }
        None
    }

    /// Reads `line` as part of the innermost open frame.
    fn within(&mut self, line: &Line<'_>) -> Option<()> {
        let frame = *self.stack.last()?;
        match frame {
            Frame::Root { indent } if line.indent == indent => {
                let (key, value) = key_value(line.content)?;
                let Some(section) = Section::of_key(key.as_bytes()) else {
                    return self.value(line, value, Opens::Nothing, |_, _| Some(()));
                };
                // A section in flow style is left to the parser, unless empty.
                if value.starts_with('[') && value != "[]" {
                    return None;
                }
                self.value(line, value, Opens::Section(section), |_, _| Some(()))
            }
            Frame::Section { indent, section } if line.indent == indent => {
                self.close_entry();
                let (content, column) = line.item();
                if empty(content) {
                    self.pending = Some(Pending {
                        indent,
                        key: false,
                        opens: Opens::Entry(section),
                    });
                    return Some(());
                }
                self.entry(section, line.number);
                self.item(section, content, column, line.number)
            }
            Frame::Entry { indent, section } if line.indent == indent => {
                self.entry_key(section, line)
            }
            Frame::Policy { indent, section } if line.indent == indent => {
                let (key, value) = key_value(line.content)?;
                let opens = if key == "rule" {
                    Opens::Rules(section)
                } else {
                    Opens::Nothing
                };
                self.value(line, value, opens, |indexer, number| {
                    if key == "rule" {
                        indexer.current(section)?.rules_flow = Some(number);
                    }
                    Some(())
                })
            }
            Frame::Items { indent, list } if line.indent == indent => {
                let (content, _) = line.item();
                if empty(content) {
                    self.pending = Some(Pending {
                        indent,
                        key: false,
                        opens: Opens::Item(list),
                    });
                    return Some(());
                }
                if content.starts_with("- ") || content == "-" {
                    return None;
                }
                checked(content)?;
                self.record(list, line.number)
            }
            // Deeper lines: content of a node that is not read.
            _ => Some(()),
        }
    }

    /// The content of an item of a section: the start of an entry.
    fn item(
        &mut self,
        section: Section,
        content: &str,
        column: usize,
        number: usize,
    ) -> Option<()> {
        if content.starts_with("- ") || content == "-" {
            return None;
        }
        if key_value(content).is_some() {
            self.stack.push(Frame::Entry {
                indent: column,
                section,
            });
            let line = Line {
                number,
                indent: column,
                content,
            };
            return self.entry_key(section, &line);
        }
        // A one-line flow mapping (or a scalar, which serde rejects).
        checked(content)?;
        let entry = self.current(section)?;
        entry.rules_flow = Some(number);
        entry.roles_flow = Some(number);
        Some(())
    }

    /// A `key: value` line of an entry's mapping.
    fn entry_key(&mut self, section: Section, line: &Line<'_>) -> Option<()> {
        let (key, value) = key_value(line.content)?;
        match key {
            "access_policy" | "accessPolicy" if section.has_policy() => {
                self.value(line, value, Opens::Policy(section), |indexer, number| {
                    indexer.current(section)?.rules_flow = Some(number);
                    Some(())
                })
            }
            "roles" if section.names_roles() => {
                self.value(line, value, Opens::Roles(section), |indexer, number| {
                    indexer.current(section)?.roles_flow = Some(number);
                    Some(())
                })
            }
            _ => self.value(line, value, Opens::Nothing, |_, _| Some(())),
        }
    }

    /// The value of a key: empty (a node may follow on the next lines), a
    /// one-line flow collection (`flow` records it), or a scalar.
    fn value(
        &mut self,
        line: &Line<'_>,
        value: &str,
        opens: Opens,
        flow: impl FnOnce(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        if empty(value) {
            self.pending = Some(Pending {
                indent: line.indent,
                key: true,
                opens,
            });
            return Some(());
        }
        checked(value)?;
        if value.starts_with('[') || value.starts_with('{') {
            return flow(self, line.number);
        }
        Some(())
    }

    /// The first line after a key or dash with an empty value.
    fn open(&mut self, pending: Pending, line: &Line<'_>) -> Option<()> {
        let skip = Frame::Skip {
            indent: pending.indent,
            dashes: pending.key,
        };
        let is_key = key_value(line.content).is_some();
        match pending.opens {
            Opens::Section(section) if line.dash() => {
                self.stack.push(Frame::Section {
                    indent: line.indent,
                    section,
                });
                self.within(line)
            }
            Opens::Entry(section) => {
                self.entry(section, line.number);
                self.item(section, line.content, line.indent, line.number)
            }
            Opens::Policy(section) if is_key => {
                self.stack.push(Frame::Policy {
                    indent: line.indent,
                    section,
                });
                self.within(line)
            }
            Opens::Policy(_) | Opens::Rules(_) | Opens::Roles(_) if line.dash() => {
                // Under a policy key, a plain list of rules.
                let list = match pending.opens {
                    Opens::Policy(section) | Opens::Rules(section) => List::Rules(section),
                    Opens::Roles(section) => List::Roles(section),
                    _ => return None,
                };
                self.stack.push(Frame::Items {
                    indent: line.indent,
                    list,
                });
                self.within(line)
            }
            Opens::Rules(section) if is_key => {
                // A single rule written as a mapping.
                self.record(List::Rules(section), line.number)?;
                self.stack.push(skip);
                Some(())
            }
            Opens::Item(list) => {
                if line.dash() {
                    return None;
                }
                checked(line.content)?;
                self.record(list, line.number)?;
                self.stack.push(Frame::Skip {
                    indent: pending.indent,
                    dashes: false,
                });
                Some(())
            }
            // Anything else is either not read or a type error for serde;
            // a flow collection starting on its own line is left to the parser.
            _ if line.content.starts_with('[') || line.content.starts_with('{') => None,
            _ => {
                self.stack.push(skip);
                Some(())
            }
        }
    }

    fn entry(&mut self, section: Section, number: usize) {
        self.lines.section_mut(section).push(Entry {
            first: number,
            last: number,
            ..Entry::default()
        });
        self.open = Some(section);
    }

    fn close_entry(&mut self) {
        if let Some(section) = self.open.take() {
            let previous = self.previous;
            if let Some(entry) = self.lines.section_mut(section).last_mut() {
                entry.last = entry.last.max(previous);
            }
        }
    }

    fn current(&mut self, section: Section) -> Option<&mut Entry> {
        self.lines.section_mut(section).last_mut()
    }

    fn record(&mut self, list: List, number: usize) -> Option<()> {
        match list {
            List::Rules(section) => self.current(section)?.rules.push(number),
            List::Roles(section) => self.current(section)?.roles.push(number),
        }
        Some(())
    }

    fn finish(mut self) -> Option<Lines> {
        if let Some(Pending {
            opens: Opens::Entry(_) | Opens::Item(_),
            ..
        }) = self.pending
        {
            return None;
        }
        self.close_entry();
        Some(self.lines)
    }
}

/// Whether a value is absent (nothing, or only a comment).
fn empty(value: &str) -> bool {
    value.is_empty() || value.starts_with('#')
}

/// Splits `key: value` (the value without its comment), or `None` when the
/// content is not a simple key line.
fn key_value(content: &str) -> Option<(&str, &str)> {
    let scanned = scan(content)?;
    let separator = scanned.separator?;
    let key = content.get(..separator)?.trim_end();
    let value = content.get(separator + 1..scanned.end)?.trim();
    let bytes = key.as_bytes();
    let key = match bytes.first()? {
        quote @ (b'"' | b'\'') => {
            // A quoted key, without escapes.
            let inner = key.get(1..key.len().checked_sub(1)?)?;
            if bytes.len() < 2 || bytes.last() != Some(quote) || inner.contains(['\\', '"', '\'']) {
                return None;
            }
            inner
        }
        first if b"-?:,[]{}#&*!|>%@`".contains(first) => return None,
        _ => key,
    };
    Some((key, value))
}

/// Checks a value or item that is read on this line only: no anchor, alias
/// or tag; quoted scalars and flow collections close on the line.
fn checked(value: &str) -> Option<()> {
    if value.starts_with(['&', '*', '!', '%', '@', '`']) {
        return None;
    }
    let scanned = scan(value)?;
    (scanned.depth == 0).then_some(())
}

/// What one line's content holds, outside quoted scalars.
struct Scanned {
    /// The first `: ` (or final `:`) outside flow collections.
    separator: Option<usize>,
    /// Where a comment starts (or the end).
    end: usize,
    /// Open flow collections at the end of the line.
    depth: usize,
}

/// Scans one line's content; `None` when a quoted scalar does not close.
fn scan(content: &str) -> Option<Scanned> {
    let bytes = content.as_bytes();
    let mut scanned = Scanned {
        separator: None,
        end: bytes.len(),
        depth: 0,
    };
    // Whether a scalar may start here (start, after `: `, `[`, `{`, `,`).
    let mut token = true;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        let before = i.checked_sub(1).and_then(|j| bytes.get(j).copied());
        match byte {
            b'"' | b'\'' if token => {
                i = skip_quoted(bytes, i)?;
                token = false;
                continue;
            }
            b'#' if before.is_none_or(|b| b == b' ' || b == b'\t') => {
                scanned.end = i;
                break;
            }
            b'[' | b'{' if token || scanned.depth > 0 => {
                scanned.depth += 1;
                token = true;
            }
            b']' | b'}' if scanned.depth > 0 => {
                scanned.depth -= 1;
                token = false;
            }
            b',' if scanned.depth > 0 => token = true,
            b':' if next.is_none_or(|b| b == b' ' || b == b'\t')
                || (scanned.depth > 0 && matches!(before, Some(b'"' | b'\''))) =>
            {
                if scanned.depth == 0 && scanned.separator.is_none() {
                    scanned.separator = Some(i);
                }
                token = true;
            }
            b' ' | b'\t' => {}
            _ => token = false,
        }
        i += 1;
    }
    Some(scanned)
}

/// The index after the quoted scalar starting at `start`, if it closes.
fn skip_quoted(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = *bytes.get(start)?;
    let mut i = start + 1;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            _ if byte == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}
