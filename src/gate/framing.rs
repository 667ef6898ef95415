//! How an HTTP/1.1 request says where its body ends, judged as strictly as
//! nginx does (SPEC §1 precise rules, RFC 9112 §6).
//!
//! A `Transfer-Encoding` other than exactly one `chunked` is refused with
//! 501: a list such as `chunked, chunked` or `identity, chunked` is read
//! one way by one server and another way by the next, and that difference
//! is what request smuggling lives on. `Transfer-Encoding` together with
//! `Content-Length` is refused with 400 (RFC 9112 §6.1), because a front
//! end that used the other length would see a different next request. Both
//! refusals close the connection: after them, nobody knows where the next
//! request starts.

use super::{trim, Refusal, Values};

/// The framing refusal of a request, if any. `transfer_encoding` is every
/// `Transfer-Encoding` value in order (several headers read as one list);
/// `content_length` says whether any `Content-Length` header was sent.
pub(super) fn refusal(transfer_encoding: &Values<'_>, content_length: bool) -> Option<Refusal> {
    let values = transfer_encoding.as_slice();
    if values.is_empty() {
        return None;
    }
    let mut codings = values
        .iter()
        .flat_map(|value| value.split(|&b| b == b','))
        .map(trim);
    // exactly one element, `chunked` in any letter case, nothing else
    let only_chunked = matches!(
        (codings.next(), codings.next()),
        (Some(first), None) if first.eq_ignore_ascii_case(b"chunked")
    );
    if !only_chunked {
        return Some(Refusal::TransferCoding);
    }
    if content_length {
        return Some(Refusal::LengthAndCoding);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(values: &[&str], content_length: bool) -> Option<u16> {
        let values = Values::gather(values.iter().map(|v| v.as_bytes()));
        refusal(&values, content_length).map(|r| r.status())
    }

    #[test]
    fn only_one_chunked_coding_passes() {
        let cases: &[(&[&str], bool, Option<u16>)] = &[
            (&[], false, None),
            (&[], true, None),
            (&["chunked"], false, None),
            (&["Chunked"], false, None),
            (&["CHUNKED"], false, None),
            (&[" chunked\t"], false, None),
            (&["chunked"], true, Some(400)),
            (&["chunked, chunked"], false, Some(501)),
            (&["chunked", "chunked"], false, Some(501)),
            (&["identity, chunked"], false, Some(501)),
            (&["identity"], false, Some(501)),
            (&["gzip"], false, Some(501)),
            (&["gzip, chunked"], false, Some(501)),
            (&["chunked,"], false, Some(501)),
            (&[",chunked"], false, Some(501)),
            (&["chunkedx"], false, Some(501)),
            (&["\"chunked\""], false, Some(501)),
            (&[""], false, Some(501)),
            // an unsupported coding is reported first, as nginx does
            (&["gzip"], true, Some(501)),
        ];
        for (values, content_length, want) in cases {
            assert_eq!(
                judge(values, *content_length),
                *want,
                "transfer-encoding {values:?}, content-length {content_length}"
            );
        }
    }
}
