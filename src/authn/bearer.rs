//! Taking the bearer token out of the `Authorization` header values
//! (RFC 6750 §2.1). Tokens anywhere else (query, cookie) are never looked at.

use super::Rejection;

/// The bearer token of a request, given all its `Authorization` values.
///
/// - no header: `Ok(None)`; two or more headers: an error (SPEC: 401);
/// - scheme `Bearer` in any letter case, then one or more spaces, then a
///   token68 (`A-Z a-z 0-9 - . _ ~ + /`, then `=` padding only); spaces
///   around it are ignored;
/// - another scheme (`Basic ...`) or an empty value: `Ok(None)`, no token;
/// - `Bearer` with an empty or malformed token: an error.
pub fn bearer<'a>(authorization: &[&'a [u8]]) -> Result<Option<&'a str>, Rejection> {
    let value = match authorization {
        [] => return Ok(None),
        [one] => trim_spaces(one),
        _ => return Err(Rejection::Invalid("multiple authorization headers")),
    };
    let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let token = trim_spaces(rest);
    if token.is_empty() {
        return Err(Rejection::Invalid("token missing"));
    }
    if !is_token68(token) {
        return Err(Rejection::Invalid("malformed authorization header"));
    }
    // token68 is ASCII, so this cannot fail; no unwrap on the request path.
    std::str::from_utf8(token)
        .map(Some)
        .map_err(|_| Rejection::Invalid("malformed authorization header"))
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// RFC 7235 `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0 && token[..body_len].iter().all(|&b| TOKEN68[usize::from(b)])
}

/// The bytes of a token68 before its padding, as a table: this check runs
/// over every byte of every token, several hundred per request.
const TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};
