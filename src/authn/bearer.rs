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
/// This runs over every byte of every token, several hundred per request:
/// each block of bytes is checked without a branch per byte, so the
/// compiler checks a block in a few vector instructions.
fn is_token68(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0
        && token[..body_len]
            .chunks(32)
            .all(|block| block.iter().fold(true, |ok, &b| ok & token68_byte(b)))
}

/// A byte of a token68 before its padding.
#[inline(always)]
fn token68_byte(b: u8) -> bool {
    // One unsigned comparison per range: below the start wraps around.
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token68_bytes_are_exactly_those_of_the_grammar() {
        for b in 0..=255u8 {
            let expected =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(token68_byte(b), expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn a_bad_byte_anywhere_in_a_long_token_is_found() {
        let good = vec![b'a'; 700];
        assert!(is_token68(&good));
        for at in [0, 1, 31, 32, 33, 63, 64, 500, 699] {
            for bad in [
                b' ', b'=', b',', b'"', 0x80, 0xff, b'@', b'`', b'{', b'[', 0,
            ] {
                let mut token = good.clone();
                token[at] = bad;
                // `=` is padding only at the end.
                let expected = bad == b'=' && at == 699;
                assert_eq!(is_token68(&token), expected, "{bad:#04x} at {at}");
            }
        }
        assert!(is_token68(b"abc=="));
        assert!(!is_token68(b"=="));
        assert!(!is_token68(b""));
    }
}
