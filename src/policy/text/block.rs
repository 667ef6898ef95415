//! The fast path of deserializing: plain block YAML, read by indentation.
//!
//! serde_yaml runs libyaml's full YAML 1.1 machinery (an event list with
//! owned strings, then a visit of it), about 20 MB/s here; at the
//! documented scale that is most of a YAML load. Policy files are almost
//! always a small part of YAML: block mappings and lists, one-line scalars,
//! one-line flow collections, comments. This reads that part into a tree
//! of borrowed nodes and deserializes the file types from it, answering
//! every question the way serde_yaml answers it (`deserialize_str` takes
//! any scalar as written, `deserialize_option` reads an empty or `null`
//! plain scalar as absent, `deserialize_any` resolves plain scalars).
//!
//! It never decides anything: it gives up (`None`) on whatever it does not
//! fully understand, and on every error — anchors, aliases, tags,
//! directives, block scalars, several documents, tabs, control or
//! line-break characters other than `\n`, scalars or flow collections that
//! span lines, plain scalars that `deserialize_any` would resolve to
//! anything but a string, a field the file types refuse. Double-quoted
//! scalars are read with all of YAML's escapes.
//! The caller then parses the text with serde_yaml, which decides and
//! reports. A file this reads gives the same value serde_yaml gives; the
//! differential tests hold it to that.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::lines::block::{is_dash, Line};

/// `text` deserialized as serde_yaml would, or `None` when it is not plain
/// block YAML or does not deserialize.
pub(in crate::policy) fn from_str<T: DeserializeOwned>(text: &str) -> Option<T> {
    let root = read(text)?;
    T::deserialize(Value(&root)).ok()
}

/// The deepest nesting read; policy files need about eight levels.
const MAX_DEPTH: usize = 32;

/// A node of the document.
#[derive(Debug)]
enum Node<'a> {
    /// A scalar as written (`plain`) or quoted.
    Scalar {
        text: Cow<'a, str>,
        plain: bool,
    },
    Seq(Vec<Node<'a>>),
    Map(Vec<(&'a str, Node<'a>)>),
}

impl Node<'_> {
    const EMPTY: Node<'static> = Node::Scalar {
        text: Cow::Borrowed(""),
        plain: true,
    };
}

/// The document's root mapping, or `None`.
fn read(text: &str) -> Option<Node<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Lines that are neither blank nor a comment, without their trailing
    // spaces.
    let mut lines = Vec::new();
    for (number, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !clean(line) {
            return None;
        }
        let content = line.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if indent == 0 && marker(content) {
            // A single leading `---` is the common document header.
            let rest = content.get(3..).unwrap_or_default().trim_start_matches(' ');
            let header = lines.is_empty() && content.starts_with("---");
            if header && (rest.is_empty() || rest.starts_with('#')) {
                continue;
            }
            return None;
        }
        lines.push(Line {
            number: number + 1,
            indent,
            content: content.trim_end_matches(' '),
        });
    }
    let mut reader = Reader { lines, at: 0 };
    let first = *reader.lines.first()?;
    if first.indent != 0 || first.dash() {
        return None;
    }
    reader.at = 1;
    let root = reader.map(0, first.content, 0)?;
    (reader.at == reader.lines.len()).then_some(root)
}

/// No tab, no control character, no line break but `\n` (libyaml also
/// breaks lines at NEL, U+2028 and U+2029), nothing libyaml refuses to
/// read, no `\r` but the one ending the line (already removed).
fn clean(line: &str) -> bool {
    if line.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return true;
    }
    line.chars().all(|c| {
        let c = u32::from(c);
        (0x20..0x7f).contains(&c)
            || (c >= 0xa0 && !matches!(c, 0x2028 | 0x2029 | 0xfeff | 0xfffe | 0xffff))
    })
}

/// `---` or `...` followed by a space or nothing: a document marker.
fn marker(content: &str) -> bool {
    (content.starts_with("---") || content.starts_with("..."))
        && content.as_bytes().get(3).is_none_or(|&b| b == b' ')
}

struct Reader<'a> {
    lines: Vec<Line<'a>>,
    /// The next line to read.
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.at).copied()
    }

    /// The block node starting at the next line, whose indentation is
    /// `indent`.
    fn node(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        let line = self.peek()?;
        if line.dash() {
            return self.seq(indent, depth);
        }
        self.at += 1;
        self.map(indent, line.content, depth)
    }

    /// A block mapping whose keys sit at column `col`, `first` being the
    /// text of its first entry (already consumed).
    fn map(&mut self, col: usize, first: &'a str, depth: usize) -> Option<Node<'a>> {
        let depth = deeper(depth)?;
        let mut entries = Vec::new();
        let mut text = first;
        loop {
            let Key::Entry(key, rest) = key(text) else {
                return None;
            };
            let value = match rest {
                Some(rest) => inline(rest, depth)?,
                None => match self.peek() {
                    Some(next) if next.indent > col => self.node(next.indent, depth)?,
                    // A list may sit at its key's own column.
                    Some(next) if next.indent == col && next.dash() => self.seq(col, depth)?,
                    _ => Node::EMPTY,
                },
            };
            entries.push((key, value));
            match self.peek() {
                Some(next) if next.indent == col => {
                    self.at += 1;
                    text = next.content;
                }
                Some(next) if next.indent > col => return None,
                _ => return Some(Node::Map(entries)),
            }
        }
    }

    /// A block list whose dashes sit at column `indent`.
    fn seq(&mut self, indent: usize, depth: usize) -> Option<Node<'a>> {
        let depth = deeper(depth)?;
        let mut items = Vec::new();
        while let Some(line) = self.peek().filter(|l| l.indent == indent && l.dash()) {
            self.at += 1;
            let (content, col) = line.item();
            let item = if content.is_empty() || content.starts_with('#') {
                match self.peek() {
                    Some(next) if next.indent > indent => self.node(next.indent, depth)?,
                    _ => Node::EMPTY,
                }
            } else if is_dash(content) {
                // A list in a list on one line.
                return None;
            } else {
                match key(content) {
                    Key::Entry(..) => self.map(col, content, depth)?,
                    Key::Value => inline(content, depth)?,
                    Key::Unread => return None,
                }
            };
            items.push(item);
            if self.peek().is_some_and(|next| next.indent > indent) {
                return None;
            }
        }
        Some(Node::Seq(items))
    }
}

fn deeper(depth: usize) -> Option<usize> {
    (depth < MAX_DEPTH).then_some(depth + 1)
}

/// What a line's content (after its dash, if any) is.
enum Key<'a> {
    /// `name: rest`; `rest` is `None` when nothing but a comment follows
    /// the colon.
    Entry(&'a str, Option<&'a str>),
    /// Not a mapping entry: a scalar or a flow collection.
    Value,
    /// Maybe a mapping entry, one that this does not read (a quoted or
    /// complex key).
    Unread,
}

fn key(text: &str) -> Key<'_> {
    if text.starts_with(['"', '\'', '[', '{']) {
        return Key::Value;
    }
    let bytes = text.as_bytes();
    let colon = bytes
        .iter()
        .enumerate()
        .position(|(i, &b)| b == b':' && bytes.get(i + 1).is_none_or(|&n| n == b' '));
    let Some(colon) = colon else {
        return Key::Value;
    };
    let (Some(name), Some(rest)) = (text.get(..colon), text.get(colon + 1..)) else {
        return Key::Unread;
    };
    // Field names, and the condition keys of Oystehr's rules
    // (`ForAllValues:StringEquals`, `FHIR:Patient.generalPractitioner`).
    let plain_key = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'$' | b':')
        })
        && !name.starts_with(['-', '.', ':'])
        && !name.ends_with(':');
    if !plain_key {
        return Key::Unread;
    }
    let rest = rest.trim_start_matches(' ');
    Key::Entry(
        name,
        (!rest.is_empty() && !rest.starts_with('#')).then_some(rest),
    )
}

/// A value written on the line of its key or dash: a scalar or a flow
/// collection, with nothing after it but a comment.
fn inline(text: &str, depth: usize) -> Option<Node<'_>> {
    match text.as_bytes().first()? {
        b'[' | b'{' => {
            let (node, rest) = flow(text, depth)?;
            end(rest).then_some(node)
        }
        b'"' | b'\'' => {
            let (node, rest) = quoted(text)?;
            end(rest).then_some(node)
        }
        _ => {
            let text = match text.find(" #") {
                Some(comment) => text.get(..comment)?.trim_end_matches(' '),
                None => text,
            };
            let ok = plain_start(text) && !text.ends_with(':') && !text.contains(": ");
            ok.then_some(Node::Scalar {
                text: Cow::Borrowed(text),
                plain: true,
            })
        }
    }
}

/// Nothing, or a comment after at least one space.
fn end(rest: &str) -> bool {
    let trimmed = rest.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < rest.len())
}

/// Whether a plain scalar may start here (YAML's indicators may not start
/// one; `-`, `?` and `:` may in some places, which this leaves to libyaml).
fn plain_start(text: &str) -> bool {
    text.as_bytes().first().is_some_and(|b| {
        !matches!(
            b,
            b'-' | b'?'
                | b':'
                | b','
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'#'
                | b'&'
                | b'*'
                | b'!'
                | b'|'
                | b'>'
                | b'\''
                | b'"'
                | b'%'
                | b'@'
                | b'`'
                | b' '
        )
    })
}

/// A quoted scalar at the start of `text`, and what follows it.
fn quoted(text: &str) -> Option<(Node<'_>, &str)> {
    let quote = *text.as_bytes().first()?;
    let body = text.get(1..)?;
    if quote == b'"' {
        return double_quoted(body);
    }
    let mut owned: Option<String> = None;
    let mut from = 0;
    loop {
        let close = from + body.get(from..)?.find('\'')?;
        if body.as_bytes().get(close + 1) == Some(&b'\'') {
            // `''` is one quote.
            let piece = body.get(from..=close)?;
            owned.get_or_insert_with(String::new).push_str(piece);
            from = close + 2;
            continue;
        }
        let node = quoted_node(owned, body.get(from..close)?);
        return Some((node, body.get(close + 1..)?));
    }
}

/// A quoted scalar: the text unescaped so far (if any), then `last`.
fn quoted_node(owned: Option<String>, last: &str) -> Node<'_> {
    let text = match owned {
        Some(mut owned) => {
            owned.push_str(last);
            Cow::Owned(owned)
        }
        None => Cow::Borrowed(last),
    };
    Node::Scalar { text, plain: false }
}

/// The body of a double-quoted scalar (after its opening quote), and what
/// follows its closing quote. Escapes are YAML's, as libyaml reads them; an
/// escaped line break (a backslash ending the line) is left to libyaml.
fn double_quoted(body: &str) -> Option<(Node<'_>, &str)> {
    let mut owned: Option<String> = None;
    let mut from = 0;
    loop {
        let at = from + body.get(from..)?.find(['"', '\\'])?;
        let piece = body.get(from..at)?;
        if body.as_bytes().get(at) == Some(&b'"') {
            return Some((quoted_node(owned, piece), body.get(at + 1..)?));
        }
        let owned = owned.get_or_insert_with(String::new);
        owned.push_str(piece);
        let escape = *body.as_bytes().get(at + 1)?;
        let (c, len) = match escape {
            b'0' => ('\0', 1),
            b'a' => ('\u{7}', 1),
            b'b' => ('\u{8}', 1),
            b't' => ('\t', 1),
            b'n' => ('\n', 1),
            b'v' => ('\u{b}', 1),
            b'f' => ('\u{c}', 1),
            b'r' => ('\r', 1),
            b'e' => ('\u{1b}', 1),
            b' ' => (' ', 1),
            b'"' => ('"', 1),
            b'/' => ('/', 1),
            b'\\' => ('\\', 1),
            b'N' => ('\u{85}', 1),
            b'_' => ('\u{a0}', 1),
            b'L' => ('\u{2028}', 1),
            b'P' => ('\u{2029}', 1),
            b'x' => (hex(body.get(at + 2..at + 4)?)?, 3),
            b'u' => (hex(body.get(at + 2..at + 6)?)?, 5),
            b'U' => (hex(body.get(at + 2..at + 10)?)?, 9),
            _ => return None,
        };
        owned.push(c);
        from = at + 1 + len;
    }
}

/// The character whose code point these hex digits (all of them) give.
fn hex(digits: &str) -> Option<char> {
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    char::from_u32(u32::from_str_radix(digits, 16).ok()?)
}

/// A flow collection at the start of `text` that closes on this line, and
/// what follows it.
fn flow(text: &str, depth: usize) -> Option<(Node<'_>, &str)> {
    let depth = deeper(depth)?;
    let (open, close) = match text.as_bytes().first()? {
        b'[' => (true, b']'),
        b'{' => (false, b'}'),
        _ => return None,
    };
    let mut rest = text.get(1..)?.trim_start_matches(' ');
    let mut items = Vec::new();
    let mut entries = Vec::new();
    if let Some(after) = rest.strip_prefix(char::from(close)) {
        let node = if open {
            Node::Seq(items)
        } else {
            Node::Map(entries)
        };
        return Some((node, after));
    }
    loop {
        if open {
            let (item, after) = flow_item(rest, depth)?;
            items.push(item);
            rest = after;
        } else {
            let colon = rest.find(": ")?;
            let Key::Entry(name, None) = key(rest.get(..colon + 1)?) else {
                return None;
            };
            let (value, after) = flow_item(rest.get(colon + 2..)?.trim_start_matches(' '), depth)?;
            entries.push((name, value));
            rest = after;
        }
        rest = rest.trim_start_matches(' ');
        match rest.as_bytes().first()? {
            b',' => {
                rest = rest.get(1..)?.trim_start_matches(' ');
                if rest.starts_with([']', '}', ',']) {
                    return None;
                }
            }
            &b if b == close => {
                let node = if open {
                    Node::Seq(items)
                } else {
                    Node::Map(entries)
                };
                return Some((node, rest.get(1..)?));
            }
            _ => return None,
        }
    }
}

/// One value inside a flow collection, and what follows it.
fn flow_item(text: &str, depth: usize) -> Option<(Node<'_>, &str)> {
    match text.as_bytes().first()? {
        b'[' | b'{' => flow(text, depth),
        b'"' | b'\'' => quoted(text),
        _ => {
            let len = text.find([',', ']', '}'])?;
            let item = text.get(..len)?.trim_end_matches(' ');
            // A colon inside a flow scalar (`Zambda:InvokeFunction`) is
            // part of it when a character other than a blank or a flow
            // indicator follows it.
            let colon_ok = item.match_indices(':').all(|(i, _)| {
                item.as_bytes()
                    .get(i + 1)
                    .is_some_and(|b| !matches!(b, b' ' | b',' | b'?' | b'[' | b']' | b'{' | b'}'))
            });
            let ok = plain_start(item) && colon_ok && !item.contains(['#', '[', '{', '"', '\'']);
            ok.then_some((
                Node::Scalar {
                    text: Cow::Borrowed(item),
                    plain: true,
                },
                text.get(len..)?,
            ))
        }
    }
}

/// Every failure, giving up included: the caller asks serde_yaml instead.
#[derive(Debug)]
struct GiveUp;

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not plain block YAML")
    }
}

impl std::error::Error for GiveUp {}

impl de::Error for GiveUp {
    fn custom<T: fmt::Display>(_: T) -> Self {
        GiveUp
    }
}

/// What serde_yaml reads as null in a plain scalar.
fn null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Whether serde_yaml's `deserialize_any` reads this plain scalar as a
/// string: not null, not a boolean, not anything that may be a number.
fn plain_string(text: &str) -> bool {
    !null(text)
        && !matches!(text, "true" | "True" | "TRUE" | "false" | "False" | "FALSE")
        && !maybe_number(text)
}

/// Every text serde_yaml reads as a number, and some it does not: a sign,
/// then `.` (`.5`, `.inf`, `.nan`) or a `0x`/`0o`/`0b` prefix, or nothing
/// but digits, dots, exponents and signs. A role id such as
/// `9e1b2c3d-0002-…` has other letters and is a string.
fn maybe_number(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    unsigned.starts_with(['.'])
        || unsigned.starts_with("0x")
        || unsigned.starts_with("0o")
        || unsigned.starts_with("0b")
        || (unsigned.bytes().any(|b| b.is_ascii_digit())
            && unsigned
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')))
}

/// Deserializer methods that give up whatever they are asked.
macro_rules! give_up {
    ($($method:ident($($arg:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $(_: $arg,)* _: V) -> Result<V::Value, GiveUp> {
                Err(GiveUp)
            }
        )*
    };
}

/// A node, as a serde deserializer.
#[derive(Clone, Copy)]
struct Value<'n, 'a>(&'n Node<'a>);

impl<'de> de::Deserializer<'de> for Value<'_, '_> {
    type Error = GiveUp;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        match self.0 {
            Node::Scalar { text, plain } if !plain || plain_string(text) => visitor.visit_str(text),
            Node::Scalar { .. } => Err(GiveUp),
            Node::Seq(items) => visitor.visit_seq(Items(items.iter())),
            Node::Map(entries) => visitor.visit_map(Entries {
                entries: entries.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        match self.0 {
            Node::Scalar { text, .. } => visitor.visit_str(text),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        match self.0 {
            Node::Scalar { text, plain: true } if null(text) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        visitor.visit_unit()
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        match self.0 {
            Node::Seq(_) => self.deserialize_any(visitor),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, GiveUp> {
        match self.0 {
            Node::Map(_) => self.deserialize_any(visitor),
            _ => Err(GiveUp),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, GiveUp> {
        self.deserialize_map(visitor)
    }

    // Nothing in the file types asks for these; serde_yaml's answers to
    // them are not mirrored, so asking gives up.
    give_up! {
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_unit();
        deserialize_unit_struct(&'static str);
        deserialize_newtype_struct(&'static str);
        deserialize_tuple(usize);
        deserialize_tuple_struct(&'static str, usize);
        deserialize_enum(&'static str, &'static [&'static str]);
    }
}

/// The items of a list.
struct Items<'n, 'a>(std::slice::Iter<'n, Node<'a>>);

impl<'de> de::SeqAccess<'de> for Items<'_, '_> {
    type Error = GiveUp;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, GiveUp> {
        self.0
            .next()
            .map(|item| seed.deserialize(Value(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// The entries of a mapping; keys are read as strings, as serde_yaml
/// reads them for the file types.
struct Entries<'n, 'a> {
    entries: std::slice::Iter<'n, (&'a str, Node<'a>)>,
    value: Option<&'n Node<'a>>,
}

impl<'de> de::MapAccess<'de> for Entries<'_, '_> {
    type Error = GiveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, GiveUp> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        let key: StrDeserializer<'_, GiveUp> = key.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, GiveUp> {
        let value = self.value.take().ok_or(GiveUp)?;
        seed.deserialize(Value(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
