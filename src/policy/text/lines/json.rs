//! The fast path of the line index for JSON: a small scanner that follows
//! the structure and records exactly what the YAML parser walk would (an
//! object's line is the line of its first key), about ten times faster. It
//! gives up (`None`) on invalid JSON and on keys with escapes, leaving them
//! to the parser.

use super::{Entry, Lines, Section};

/// Indexes JSON `text`, or `None` when the parser should.
pub(crate) fn index(text: &str) -> Option<Lines> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        at: 0,
        line: 1,
    };
    let mut lines = Lines::default();
    scanner.space();
    if scanner.peek()? != b'{' {
        return None;
    }
    scanner.object(|scanner, key| {
        let Some(section) = Section::of_key(key) else {
            return scanner.skip();
        };
        scanner.list(|scanner, line| {
            let mut entry = Entry {
                first: line,
                ..Entry::default()
            };
            scanner.entry(section, &mut entry)?;
            entry.last = scanner.line;
            lines.section_mut(section).push(entry);
            Some(())
        })
    })?;
    scanner.space();
    scanner.peek().is_none().then_some(lines)
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    line: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(byte) = self.peek() {
            match byte {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.at += 1;
        }
    }

    /// Consumes `byte` after optional whitespace.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string at the cursor: its raw content, and whether it has escapes.
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.expect(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.at += 2;
                }
                b'\n' => return None,
                _ => self.at += 1,
            }
        }
        let content = self.bytes.get(start..self.at)?;
        self.at += 1;
        Some((content, escaped))
    }

    /// Skips one value of any kind.
    fn skip(&mut self) -> Option<()> {
        self.space();
        match self.peek()? {
            b'{' => self.object(|scanner, _| scanner.skip()),
            b'[' => self.list(|scanner, _| scanner.skip()),
            b'"' => self.string().map(|_| ()),
            _ => {
                let start = self.at;
                while let Some(byte) = self.peek() {
                    if matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.at += 1;
                }
                (self.at > start).then_some(())
            }
        }
    }

    /// The line the parser gives the value at the cursor: an object's is
    /// its first key's.
    fn value_line(&mut self) -> Option<usize> {
        self.space();
        if self.peek()? != b'{' {
            return Some(self.line);
        }
        let mut ahead = Scanner {
            bytes: self.bytes,
            at: self.at + 1,
            line: self.line,
        };
        ahead.space();
        Some(if ahead.peek()? == b'"' {
            ahead.line
        } else {
            self.line
        })
    }

    /// Walks an object, calling `value` with each key; `value` consumes
    /// the value.
    fn object(&mut self, mut value: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let (key, escaped) = self.string()?;
            if escaped {
                return None;
            }
            self.expect(b':')?;
            value(self, key)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
            self.space();
        }
    }

    /// Walks an array, calling `item` with each item's line; `item`
    /// consumes the item. Anything else is skipped.
    fn list(&mut self, mut item: impl FnMut(&mut Self, usize) -> Option<()>) -> Option<()> {
        self.space();
        if self.peek()? != b'[' {
            return self.skip();
        }
        self.at += 1;
        self.space();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            let line = self.value_line()?;
            item(self, line)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn entry(&mut self, section: Section, entry: &mut Entry) -> Option<()> {
        self.space();
        if self.peek()? != b'{' || section == Section::Zambdas {
            return self.skip();
        }
        self.object(|scanner, key| match key {
            b"access_policy" | b"accessPolicy" if section.has_policy() => {
                scanner.policy(&mut entry.rules)
            }
            b"roles" if section.names_roles() => scanner.list(|scanner, line| {
                entry.roles.push(line);
                scanner.skip()
            }),
            _ => scanner.skip(),
        })
    }

    fn policy(&mut self, rules: &mut Vec<usize>) -> Option<()> {
        self.space();
        if self.peek()? == b'[' {
            // A plain list of rules.
            return self.list(|scanner, line| {
                rules.push(line);
                scanner.skip()
            });
        }
        if self.peek()? != b'{' {
            return self.skip();
        }
        self.object(|scanner, key| {
            if key != b"rule" {
                return scanner.skip();
            }
            scanner.space();
            if scanner.peek()? == b'{' {
                rules.push(scanner.value_line()?);
                return scanner.skip();
            }
            scanner.list(|scanner, line| {
                rules.push(line);
                scanner.skip()
            })
        })
    }
}
