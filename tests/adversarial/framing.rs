//! Framing cases: request smuggling through `Content-Length` and
//! `Transfer-Encoding`, bodies over the limit, and the HTTP/1 parser's own
//! refusals.

use crate::driver::*;
use crate::kit::*;
use crate::*;

pub fn framing_cases() -> Vec<Case> {
    let lab = rs("lab-bot@clients");
    let head = |extra: &str| {
        format!("POST {LAB} HTTP/1.1\r\nhost: proxy.test\r\nauthorization: Bearer {lab}\r\n{extra}")
    };
    let smuggled = "POST /v1/zambda/billing-export/execute HTTP/1.1\r\nhost: proxy.test\r\ncontent-length: 2\r\n\r\n{}";
    let mut cases = vec![
        // RFC 9112 §6.1: refused, and the connection closed, so neither
        // length decides where a next request starts
        case(
            "framing: CL + TE, a request hidden after the chunked end",
            format!(
                "{}content-length: {}\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
                head(""),
                5 + smuggled.len()
            ),
            Refused(400),
        )
        .check(closes),
        case(
            "framing: TE + CL, CL shorter than the chunked body",
            format!(
                "{}transfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n",
                head("")
            ),
            Refused(400),
        )
        .check(closes),
        case(
            "framing: TE + CL on a request refused anyway",
            format!(
                "POST {BILLING} HTTP/1.1\r\nhost: proxy.test\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n"
            ),
            Refused(400),
        )
        .check(closes),
        case(
            "framing: two different content-lengths",
            format!("{}content-length: 2\r\ncontent-length: 40\r\n\r\n{{}}", head("")),
            Parser(400),
        ),
        case(
            "framing: content-length list with different values",
            format!("{}content-length: 2, 40\r\n\r\n{{}}", head("")),
            Parser(400),
        ),
        case(
            "framing: two equal content-lengths",
            format!("{}content-length: 2\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}", head("")),
            fwd(LAB),
        )
        .check(body_is(b"{}")),
        case(
            "framing: content-length with a sign",
            format!("{}content-length: +2\r\n\r\n{{}}", head("")),
            Parser(400),
        ),
        case(
            "framing: negative content-length",
            format!("{}content-length: -1\r\n\r\n{{}}", head("")),
            Parser(400),
        ),
        case(
            "framing: hex content-length",
            format!("{}content-length: 0x2\r\n\r\n{{}}", head("")),
            Parser(400),
        ),
    ];
    for te in [
        "transfer-encoding: xchunked",
        "transfer-encoding: chunked, identity",
        "transfer-encoding: identity",
        "transfer-encoding: chunked\r\ntransfer-encoding: identity",
        "transfer-encoding: \"chunked\"",
        "transfer-encoding:\x0bchunked",
        "transfer-encoding: chunked\x0b",
        "transfer-encoding : chunked",
        " transfer-encoding: chunked",
        "transfer_encoding: chunked\r\ncontent-length: 1000",
    ] {
        let shown = te
            .replace('\r', "\\r")
            .replace('\n', "\\n")
            .replace('\x0b', "\\v");
        let raw = format!(
            "{}{te}\r\ncontent-length: 5\r\n\r\n0\r\n\r\n{smuggled}",
            head("")
        );
        cases.push(case(
            format!("framing: obfuscated TE {shown:?}"),
            raw,
            Parser(400),
        ));
    }
    // Codings nginx does not take: 501, whatever else the request says,
    // and the connection closed (a chunked decoder elsewhere may disagree
    // on where the body ends). A request hidden after the chunked end
    // never gets an answer of its own.
    for te in [
        "transfer-encoding: chunked, chunked",
        "transfer-encoding: identity, chunked",
        "transfer-encoding: gzip, chunked",
        "transfer-encoding: chunked\r\ntransfer-encoding: chunked",
        "transfer-encoding: identity\r\ntransfer-encoding: chunked",
    ] {
        let shown = te.replace('\r', "\\r").replace('\n', "\\n");
        let raw = format!("{}{te}\r\n\r\n0\r\n\r\n{smuggled}", head(""));
        cases.push(
            case(
                format!("framing: transfer coding {shown:?}"),
                raw,
                Refused(501),
            )
            .check(closes),
        );
    }
    // A last coding other than chunked: pingora's parser refuses it before
    // the gate can answer 501 (and closes the connection).
    for te in ["transfer-encoding: gzip", "transfer-encoding: chunked,"] {
        cases.push(case(
            format!("framing: transfer coding {te:?}"),
            format!("{}{te}\r\n\r\n0\r\n\r\n{smuggled}", head("")),
            Parser(400),
        ));
    }
    cases.extend([
        case(
            "framing: TE upper-case is still chunked",
            format!("{}TRANSFER-ENCODING: CHUNKED\r\nconnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n", head("")),
            fwd(LAB),
        )
        .check(single_framing)
        .check(body_is(b"{}")),
        case(
            "framing: chunk size with leading junk",
            format!("{}transfer-encoding: chunked\r\nconnection: close\r\n\r\n0x2\r\n{{}}\r\n0\r\n\r\n", head("")),
            Refused(400),
        ),
        case(
            "framing: HTTP/1.0 with transfer-encoding",
            format!("POST {LAB} HTTP/1.0\r\nhost: proxy.test\r\nauthorization: Bearer {lab}\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"),
            Parser(400),
        ),
        case(
            "framing: HTTP/1.0",
            post(LAB).bearer(&lab).version("HTTP/1.0"),
            fwd(LAB),
        )
        .check(body_is(b"{}")),
        case(
            "framing: HTTP/1.0 without host",
            post(LAB).bearer(&lab).version("HTTP/1.0").no_host(),
            fwd(LAB),
        ),
        case(
            "framing: HTTP/1.0, denied",
            post(BILLING).bearer(&rs("dr-alice")).version("HTTP/1.0"),
            Refused(403),
        ),
        // RFC 9112 wants a 400 here; pingora forwards it, and no decision
        // depends on Host
        case(
            "framing: HTTP/1.1 without host",
            post(LAB).bearer(&lab).no_host(),
            fwd(LAB),
        )
        .check(header_is("host", &[])),
        case(
            "framing: two hosts",
            post(LAB).bearer(&lab).header("host", "other.test"),
            Parser(400),
        ),
        case(
            "framing: absolute-form authority differs from host",
            post(&format!("http://other.test{LAB}")).bearer(&lab),
            Parser(400),
        ),
        case(
            "framing: unknown HTTP version",
            post(LAB).bearer(&lab).version("HTTP/1.2"),
            Parser(400),
        ),
        case(
            "framing: HTTP/2.0 on the HTTP/1 listener",
            post(LAB).bearer(&lab).version("HTTP/2.0"),
            Parser(400),
        ),
        case(
            "framing: lower-case version",
            post(LAB).bearer(&lab).version("http/1.1"),
            Parser(400),
        ),
        case(
            "framing: no version (HTTP/0.9 style)",
            format!("POST {LAB}\r\n\r\n"),
            Parser(400),
        ),
        case(
            "framing: h2c prior-knowledge preface",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            Parser(400),
        ),
        case(
            "framing: bare LF line endings",
            post(LAB).bearer(&lab).bytes().iter().filter(|&&b| b != b'\r').copied().collect::<Vec<u8>>(),
            fwd(LAB),
        ),
        case(
            "framing: bare CR line endings",
            post(LAB).bearer(&lab).bytes().iter().filter(|&&b| b != b'\n').copied().collect::<Vec<u8>>(),
            Parser(400),
        ),
        case(
            "framing: NUL in a header value",
            post(LAB).bearer(&lab).header("x-note", "a\0b"),
            Parser(400),
        ),
        case(
            "framing: space before the colon",
            post(LAB).bearer(&lab).header("x-zambda-actor ", "dr-alice"),
            Parser(400),
        ),
        case(
            "framing: header without a colon",
            post(LAB).bearer(&lab).header("x-zambda-actor dr-alice", ""),
            Parser(400),
        ),
        case(
            "framing: one 1.1 MB header",
            post(LAB).bearer(&lab).header("x-big", &"a".repeat(1_100_000)),
            Parser(400),
        ),
        case(
            "framing: 300 headers",
            (0..300).fold(post(LAB).bearer(&lab), |r, i| r.header(&format!("x-h{i}"), "v")),
            Parser(400),
        ),
        case(
            "framing: expect 100-continue on a refused request",
            post(BILLING).header("expect", "100-continue"),
            Refused(401),
        ),
        case(
            "framing: body over the limit, announced",
            post(LAB).bearer(&lab).body(vec![b'x'; 1025]),
            Refused(413),
        ),
        case(
            "framing: body over the limit, chunked",
            format!(
                "{}transfer-encoding: chunked\r\nconnection: close\r\n\r\n401\r\n{}\r\n0\r\n\r\n",
                head(""),
                "x".repeat(0x401)
            ),
            Refused(413),
        ),
        case(
            "framing: body at the limit",
            post(LAB).bearer(&lab).body(vec![b'x'; 1024]),
            fwd(LAB),
        ),
        case(
            "framing: huge content-length on a refused request",
            post(BILLING).own_length().header("content-length", "99999999999"),
            Refused(401),
        ),
    ]);
    cases
}
