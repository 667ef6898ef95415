//! The one canonical parse of a request target (SPEC §1).
//!
//! pingora normalises nothing: the target arrives byte for byte as the
//! client sent it. This module screens the whole path before routing and
//! refuses every ambiguous form (dot segments, empty segments, encoded
//! separators, control bytes, `;` parameters, bad escapes, non-ASCII) rather
//! than cleaning it up. Only the `{zambda}` segment is percent-decoded, once.
//! What comes out is a [`Target`] from which the proxy builds the one path it
//! forwards; the raw target is never forwarded.
//!
//! This module knows nothing of HTTP libraries: it takes bytes.

use std::fmt;

/// Longest request target accepted; longer ones get 414.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// Which of the two routes a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Execute,
    ExecutePublic,
}

impl Route {
    /// The last path segment, as used in paths and `{route}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Execute => "execute",
            Route::ExecutePublic => "execute-public",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request target that names one of the routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub route: Route,
    /// The `{zambda}` segment, percent-decoded once; `[A-Za-z0-9_-]+`.
    pub zambda: String,
    /// The query string without `?`, as received (screened for raw bytes only).
    pub query: Option<&'a str>,
}

/// Why a target was refused. Each maps to one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// 400: ambiguous or malformed; the reason is safe to show.
    Malformed(&'static str),
    /// 414
    TooLong,
    /// 404: well formed, but no route has this shape.
    NoRoute,
}

impl Reject {
    pub fn status(self) -> u16 {
        match self {
            Reject::Malformed(_) => 400,
            Reject::TooLong => 414,
            Reject::NoRoute => 404,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Reject::Malformed(why) => why,
            Reject::TooLong => "request target too long",
            Reject::NoRoute => "not found",
        }
    }
}

/// Parses a raw request target against the routes under `prefix` (`/v1`,
/// or empty for routes at the root; validated by config).
pub fn parse<'a>(target: &'a [u8], prefix: &str) -> Result<Target<'a>, Reject> {
    if target.len() > MAX_TARGET_BYTES {
        return Err(Reject::TooLong);
    }
    let path_and_query = origin_form(target)?;
    let (path, query) = match path_and_query.iter().position(|&b| b == b'?') {
        Some(i) => (&path_and_query[..i], Some(&path_and_query[i + 1..])),
        None => (path_and_query, None),
    };
    screen_path(path)?;
    let query = match query {
        Some(q) => Some(screen_query(q)?),
        None => None,
    };
    // The screen guarantees ASCII, so this cannot fail; refuse rather than panic.
    let path = std::str::from_utf8(path).map_err(|_| Reject::Malformed("path is not ASCII"))?;
    let rest = path.strip_prefix(prefix).ok_or(Reject::NoRoute)?;
    let mut segments = rest.split('/');
    // `rest` starts with '/', so the first piece is empty.
    if segments.next() != Some("") || segments.next() != Some("zambda") {
        return Err(Reject::NoRoute);
    }
    let (Some(raw_id), Some(last), None) = (segments.next(), segments.next(), segments.next())
    else {
        return Err(Reject::NoRoute);
    };
    let route = match last {
        "execute" => Route::Execute,
        "execute-public" => Route::ExecutePublic,
        _ => return Err(Reject::NoRoute),
    };
    let zambda = decode_id(raw_id)?;
    Ok(Target {
        route,
        zambda,
        query,
    })
}

/// Returns the path-and-query of an origin-form or absolute-form target.
fn origin_form(target: &[u8]) -> Result<&[u8], Reject> {
    match target.first() {
        Some(b'/') => Ok(target),
        Some(b'*') => Err(Reject::Malformed("asterisk-form target not accepted")),
        None => Err(Reject::Malformed("empty request target")),
        Some(_) => {
            // absolute-form: scheme "://" authority path
            let lower: Vec<u8> = target
                .iter()
                .take(8)
                .map(|b| b.to_ascii_lowercase())
                .collect();
            let skip = if lower.starts_with(b"http://") {
                7
            } else if lower.starts_with(b"https://") {
                8
            } else {
                return Err(Reject::Malformed("request target must be a path"));
            };
            let after = &target[skip..];
            let end = after
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(after.len());
            if end == 0 {
                return Err(Reject::Malformed("absolute-form target without authority"));
            }
            match after.get(end) {
                Some(b'/') => Ok(&after[end..]),
                _ => Err(Reject::Malformed("absolute-form target without a path")),
            }
        }
    }
}

fn screen_path(path: &[u8]) -> Result<(), Reject> {
    let mut i = 0;
    while i < path.len() {
        match path[i] {
            b'%' => {
                let byte = hex_pair(path, i + 1).ok_or(Reject::Malformed("bad percent escape"))?;
                match byte {
                    b'/' | b'\\' => return Err(Reject::Malformed("encoded slash or backslash")),
                    0x00..=0x1f | 0x7f => {
                        return Err(Reject::Malformed("encoded control character"))
                    }
                    0x80..=0xff => return Err(Reject::Malformed("encoded non-ASCII byte")),
                    _ => {}
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(Reject::Malformed("backslash in path")),
            b';' => return Err(Reject::Malformed("';' parameters in path")),
            b'#' => return Err(Reject::Malformed("fragment in request target")),
            0x00..=0x1f | 0x7f => return Err(Reject::Malformed("control character in path")),
            b' ' => return Err(Reject::Malformed("space in path")),
            0x80..=0xff => return Err(Reject::Malformed("non-ASCII byte in path")),
            _ => {}
        }
        i += 1;
    }
    // Segments: the first piece before the leading '/' is empty; an empty
    // segment anywhere but at the very end is `//`. A trailing slash is well
    // formed (and matches no route).
    let pieces: Vec<&[u8]> = path.split(|&b| b == b'/').skip(1).collect();
    let last = pieces.len().saturating_sub(1);
    for (n, seg) in pieces.iter().enumerate() {
        if seg.is_empty() && n != last {
            return Err(Reject::Malformed("empty path segment"));
        }
        if is_dot_segment(seg) {
            return Err(Reject::Malformed("dot segment in path"));
        }
    }
    Ok(())
}

/// `.` or `..`, with any of the dots percent-encoded in any case.
fn is_dot_segment(seg: &[u8]) -> bool {
    let mut dots = 0;
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'.' {
            i += 1;
        } else if seg[i] == b'%' && hex_pair(seg, i + 1) == Some(b'.') {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

fn screen_query(query: &[u8]) -> Result<&str, Reject> {
    if let Some(&b) = query
        .iter()
        .find(|&&b| !(0x21..=0x7e).contains(&b) || b == b'#')
    {
        return Err(Reject::Malformed(if b == b'#' {
            "fragment in request target"
        } else {
            "invalid byte in query string"
        }));
    }
    std::str::from_utf8(query).map_err(|_| Reject::Malformed("invalid byte in query string"))
}

fn hex_pair(bytes: &[u8], at: usize) -> Option<u8> {
    let hi = hex_value(*bytes.get(at)?)?;
    let lo = hex_value(*bytes.get(at + 1)?)?;
    Some(hi << 4 | lo)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes the `{zambda}` segment exactly once and checks the result
/// is `[A-Za-z0-9_-]+`. The screen has already validated every escape.
fn decode_id(raw: &str) -> Result<String, Reject> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = if bytes[i] == b'%' {
            let b = hex_pair(bytes, i + 1).ok_or(Reject::Malformed("bad percent escape"))?;
            i += 3;
            b
        } else {
            i += 1;
            bytes[i - 1]
        };
        if !is_id_byte(b) {
            return Err(Reject::Malformed(
                "zambda id or name must match [A-Za-z0-9_-]+",
            ));
        }
        out.push(char::from(b));
    }
    if out.is_empty() {
        return Err(Reject::Malformed("empty zambda id"));
    }
    Ok(out)
}

/// `[A-Za-z0-9_-]`, the characters of Zambda ids and names.
pub fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The path forwarded upstream when no `path_template` is set.
/// Built by appending into one allocation, with room for a query (no
/// formatting machinery per request).
pub fn canonical_path(prefix: &str, zambda: &str, route: Route) -> String {
    const ZAMBDA: &str = "/zambda/";
    let route = route.as_str();
    let mut path = String::with_capacity(prefix.len() + zambda.len() + route.len() + 64);
    for part in [prefix, ZAMBDA, zambda, "/", route] {
        path.push_str(part);
    }
    path
}

#[cfg(test)]
mod tests;
