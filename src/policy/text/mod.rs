//! Reading policy files as text: the on-disk types (`file`), the fast
//! deserializer of plain block YAML (`block`), the readers
//! that recover line numbers (`lines` and its fast paths `lines::block` and
//! `lines::json`), the splitter of large YAML files (`split`) and the
//! parsing driver that runs them (`parse`).
//!
//! The contract, which the compiler relies on for every `file:line` it
//! reports:
//!
//! - **serde decides validity.** A file is valid or not by what serde_yaml
//!   or serde_json say of it (an empty or `null` document is an empty file);
//!   a syntax or shape error is reported once, with serde's line, and an
//!   error in a JSON file is also named by the entry around that line.
//!   `block` reads most YAML files first, several times faster; it gives
//!   up on anything outside plain block YAML and on every error, and
//!   serde_yaml then reads the file. What `block` reads is exactly what
//!   serde_yaml would have made of it (held by differential tests).
//! - **The line readers never fail.** serde keeps no spans, so the text is
//!   read a second time for the lines of each section entry (first and
//!   last), each rule of its access policy and each role it names. The fast
//!   readers (`lines::block` for block YAML, `lines::json` for JSON) record
//!   exactly what the parser walk (`Lines::walk`) records, and give up on
//!   anything they do not fully understand, leaving it to the walk; the walk
//!   is best effort and keeps what it indexed before a syntax error. A line
//!   that is not known is left out of a message, never guessed.
//! - **A split file parses as the whole.** A YAML file of at least two
//!   pieces' size, loaded with several threads available, is cut into
//!   pieces of whole section entries (`split`), each parsed and indexed as a
//!   document of its own and shifted to its place in the file. When the
//!   root is anything but block lists of the known sections, or any piece
//!   does not parse by itself, the file is parsed whole instead, so that its
//!   contents, lines and errors are those of the whole file. JSON files are
//!   always parsed whole.

pub(in crate::policy) mod block;
pub(in crate::policy) mod file;
pub(in crate::policy) mod lines;
mod parse;
pub(in crate::policy) mod split;

#[cfg(test)]
pub(in crate::policy) use parse::{deserialize, merge, parse_piece, PIECE_BYTES};
pub(in crate::policy) use parse::{is_json, parse_all, Parsed};
