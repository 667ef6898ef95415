//! Path cases: dot segments plain and encoded, empty segments, encoded
//! separators, parameters, absolute-form and other target forms, the
//! canonical path the backend must get for what is forwarded, and the
//! example policies' decisions reached through those paths.

use crate::driver::*;
use crate::kit::*;
use crate::*;

pub fn path_cases() -> Vec<Case> {
    let lab = rs("lab-bot@clients");
    let p = |target: &str| post(target).bearer(&lab);
    let mut cases = vec![
        // baselines: the same token on the plain route passes
        case("path: baseline by name", p(LAB), fwd(LAB)),
        case(
            "path: baseline by id",
            p(&format!("/v1/zambda/{LAB_ID}/execute")),
            fwd(&format!("/v1/zambda/{LAB_ID}/execute")),
        ),
        case(
            "path: id percent-encoded once is decoded once",
            p("/v1/zambda/lab-results-%69ngest/execute"),
            fwd(LAB),
        ),
        case(
            "path: whole id percent-encoded",
            p("/v1/zambda/%6c%61%62-%72esults-ingest/execute"),
            fwd(LAB),
        ),
        case(
            "path: empty query kept",
            p(&format!("{LAB}?")),
            fwd(&format!("{LAB}?")),
        ),
    ];

    // dot segments, plain and encoded in any case, anywhere in the path
    for target in [
        "/v1/zambda/../zambda/lab-results-ingest/execute",
        "/v1/zambda/lab-results-ingest/../lab-results-ingest/execute",
        "/v1/zambda/./lab-results-ingest/execute",
        "/v1/./zambda/lab-results-ingest/execute",
        "/./v1/zambda/lab-results-ingest/execute",
        "/v1/zambda/lab-results-ingest/execute/..",
        "/v1/zambda/lab-results-ingest/execute/.",
        "/v1/zambda/billing-export/../lab-results-ingest/execute",
        "/v1/zambda/%2e%2e/execute",
        "/v1/zambda/%2E%2E/execute",
        "/v1/zambda/%2E%2e/execute",
        "/v1/zambda/.%2E/execute",
        "/v1/zambda/%2e./execute",
        "/v1/zambda/%2e/execute",
        "/v1/%2e%2e/v1/zambda/lab-results-ingest/execute",
        "/v1/zambda/billing-export/%2e%2e/lab-results-ingest/execute",
        "/v1/zambda/lab-results-ingest/%2E/execute",
        "/v1/zambda/lab-results-ingest/execute/%2e%2e/%2e%2e/billing-export/execute",
    ] {
        cases.push(case(
            format!("path: dot segment {target}"),
            p(target),
            Refused(400),
        ));
    }

    // empty segments
    for target in [
        "/v1//zambda/lab-results-ingest/execute",
        "//v1/zambda/lab-results-ingest/execute",
        "/v1/zambda//lab-results-ingest/execute",
        "/v1/zambda/lab-results-ingest//execute",
        "/v1/zambda/lab-results-ingest/execute//",
        "///v1/zambda/lab-results-ingest/execute",
    ] {
        cases.push(case(
            format!("path: empty segment {target}"),
            p(target),
            Refused(400),
        ));
    }

    // encoded separators, backslashes, parameters
    for target in [
        "/v1/zambda/lab-results-ingest%2fexecute",
        "/v1/zambda/lab-results-ingest%2Fexecute",
        "/v1%2fzambda/lab-results-ingest/execute",
        "/v1/zambda/x%2f..%2fbilling-export/execute",
        "/v1/zambda/%2e%2e%2fbilling-export/execute",
        "/v1/zambda/lab-results-ingest%5cexecute",
        "/v1/zambda/lab-results-ingest%5Cexecute",
        "/v1/zambda/..%5c..%5cbilling-export/execute",
        "/v1/zambda/lab-results-ingest\\execute",
        "/v1/zambda/..\\billing-export/execute",
        "/v1\\zambda\\lab-results-ingest\\execute",
        "/v1/zambda/lab-results-ingest;x=1/execute",
        "/v1/zambda/lab-results-ingest/execute;",
        "/v1/zambda/lab-results-ingest/execute;jsessionid=1",
        "/v1;/zambda/lab-results-ingest/execute",
        "/v1/zambda/;/lab-results-ingest/execute",
        "/v1/zambda/lab-results-ingest%3bx/execute",
    ] {
        cases.push(case(
            format!("path: separator {target}"),
            p(target),
            Refused(400),
        ));
    }

    // NUL, control bytes, fragments, whitespace, bad escapes, non-ASCII
    for target in [
        "/v1/zambda/lab-results-ingest%00/execute",
        "/v1/zambda/lab-results-ingest/execute%00",
        "/v1/zambda/lab-results-ingest%00.json/execute",
        "/v1/zambda/lab-results-ingest/execute%0a",
        "/v1/zambda/lab-results-ingest%0d%0ax-zambda-actor:%20dr-alice/execute",
        "/v1/zambda/lab-results-ingest%09/execute",
        "/v1/zambda/lab-results-ingest%1f/execute",
        "/v1/zambda/lab-results-ingest%7f/execute",
        "/v1/zambda/lab-results-ingest/execute#fragment",
        "/v1/zambda/lab-results-ingest#/../../billing-export/execute",
        "/v1/zambda/lab-results-ingest%23/execute",
        "/v1/zambda/lab-results-ingest/execute?x=1#y",
        "/v1/zambda/lab-results-ingest%20/execute",
        "/v1/zambda/lab-results-ingest%zz/execute",
        "/v1/zambda/lab-results-ingest%2/execute",
        "/v1/zambda/lab-results-ingest/execute%",
        "/v1/zambda/%%32%65%%32%65/execute",
        "/v1/zambda/lab-r%c3%a9sults/execute",
        "/v1/zambda/%c0%ae%c0%ae/execute",
        "/v1/zambda/%ef%bc%8e%ef%bc%8e/execute",
        "/v1/zambda/%u002e%u002e/execute",
        // only one decoding: these are not ids after it
        "/v1/zambda/lab-results-%2569ngest/execute",
        "/v1/zambda/%252e%252e/execute",
        "/v1/zambda/%252fbilling-export/execute",
        // characters outside [A-Za-z0-9_-] in the id, raw or decoded
        "/v1/zambda/lab.results.ingest/execute",
        "/v1/zambda/lab-results-ingest~/execute",
        "/v1/zambda/lab+results/execute",
        "/v1/zambda/*/execute",
        "/v1/zambda/lab-results-ingest:x/execute",
        "/v1/zambda/lab@x/execute",
        "/v1/zambda/%2a/execute",
        "/v1/zambda/%2e/execute",
    ] {
        cases.push(case(
            format!("path: malformed {target:?}"),
            p(target),
            Refused(400),
        ));
    }

    // raw bytes no client library would send
    for (what, target) in [
        (
            "raw NUL",
            b"/v1/zambda/lab-results-ingest\0/execute".to_vec(),
        ),
        (
            "raw control byte",
            b"/v1/zambda/lab-results-ingest\x01/execute".to_vec(),
        ),
        (
            "raw DEL",
            b"/v1/zambda/lab-results-ingest\x7f/execute".to_vec(),
        ),
        (
            "raw non-ASCII",
            "/v1/zambda/lab-résults/execute".as_bytes().to_vec(),
        ),
        (
            "raw UTF-8 fullwidth dots",
            "/v1/zambda/\u{ff0e}\u{ff0e}/execute".as_bytes().to_vec(),
        ),
        (
            "raw space in id",
            b"/v1/zambda/lab results/execute".to_vec(),
        ),
        ("raw tab in id", b"/v1/zambda/lab\tresults/execute".to_vec()),
        ("raw quote in id", b"/v1/zambda/lab\"x/execute".to_vec()),
    ] {
        let mut raw = b"POST ".to_vec();
        raw.extend_from_slice(&target);
        raw.extend_from_slice(
            format!(
                " HTTP/1.1\r\nhost: proxy.test\r\nauthorization: Bearer {lab}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            )
            .as_bytes(),
        );
        cases.push(case(format!("path: {what}"), raw, Refused(400)));
    }

    // well formed, but no route has this shape
    for target in [
        "/v1/zambda/lab-results-ingest/execute/",
        "/V1/zambda/lab-results-ingest/execute",
        "/v1/Zambda/lab-results-ingest/execute",
        "/v1/ZAMBDA/lab-results-ingest/execute",
        "/v1/zambda/lab-results-ingest/Execute",
        "/v1/zambda/lab-results-ingest/EXECUTE",
        "/v1/zambda/appointment-slots/Execute-Public",
        "/v1/zambda/lab-results-ingest/execute/extra",
        "/v1/zambda/lab-results-ingest",
        "/v1/zambda/execute",
        "/v1/zambda/lab-results-ingest/execute%2dpublic",
        "/v1/zambd%61/lab-results-ingest/execute",
        "/v1/zambda/lab-results-ingest/execut%65",
        "/v1/zambda/lab-results-ingest/execute%3B",
        "/v1%20/zambda/lab-results-ingest/execute",
        "/v2/zambda/lab-results-ingest/execute",
        "/v1x/zambda/lab-results-ingest/execute",
        "/zambda/lab-results-ingest/execute",
        "/",
        "/metrics",
        "/readyz",
    ] {
        cases.push(case(
            format!("path: no route {target}"),
            p(target),
            Refused(404),
        ));
    }

    // valid shape, valid token, not this catalog entry (names and ids are
    // case-sensitive; the public route does not serve authenticated ones)
    for target in [
        "/v1/zambda/Lab-Results-Ingest/execute",
        "/v1/zambda/LAB-RESULTS-INGEST/execute",
        "/v1/zambda/2419A78E-4C0A-411D-B8E2-90DC081F5EFA/execute",
        "/v1/zambda/lab-results-ingest/execute-public",
        "/v1/zambda/billing-export/execute-public",
        "/v1/zambda/no-such-zambda/execute",
    ] {
        cases.push(case(
            format!("path: not in catalog {target}"),
            p(target),
            Refused(404),
        ));
    }

    // the example policies: explicit Deny, deny-all role, public via execute
    let alice = rs("dr-alice");
    let former = rs("former-staff");
    cases.extend([
        case(
            "example policies: explicit Deny beats a role's Allow",
            post(BILLING).bearer(&alice),
            Refused(403),
        ),
        case(
            "example policies: explicit Deny by id, asked by id",
            post(&format!("/v1/zambda/{BILLING_ID}/execute")).bearer(&alice),
            Refused(403),
        ),
        case(
            "example policies: deny-all role beats clinician",
            post(LAB).bearer(&former),
            Refused(403),
        ),
        case(
            "example policies: deny-all role, another Zambda",
            post("/v1/zambda/patient-summary/execute").bearer(&former),
            Refused(403),
        ),
        case(
            "example policies: deny-all role, public route needs no policy",
            post(SLOTS).bearer(&former),
            fwd(SLOTS),
        ),
        case(
            "example policies: execute of a public Zambda needs permission",
            p("/v1/zambda/appointment-slots/execute"),
            Refused(403),
        ),
        case(
            "example policies: execute of a public Zambda with permission",
            post("/v1/zambda/appointment-slots/execute").bearer(&alice),
            fwd("/v1/zambda/appointment-slots/execute"),
        ),
        case(
            "example policies: no rule allows",
            p("/v1/zambda/patient-summary/execute"),
            Refused(403),
        ),
    ]);

    // over-long targets
    let long_id = format!("/v1/zambda/{}/execute", "a".repeat(8200));
    cases.push(case("path: id over 8 KiB", p(&long_id), Refused(414)));
    let long_query = format!("{LAB}?q={}", "a".repeat(8200));
    cases.push(case("path: query over 8 KiB", p(&long_query), Refused(414)));
    let big = format!("/v1/zambda/{}/execute", "a".repeat(60_000));
    cases.push(case("path: 60 KB target", p(&big), Refused(414)));
    // http::Uri holds at most 64 KiB: pingora refuses longer targets itself
    let huge = format!("/v1/zambda/{}/execute", "a".repeat(200_000));
    cases.push(case("path: 200 KB target", p(&huge), Parser(400)));
    let dots = format!(
        "/v1/zambda/{}lab-results-ingest/execute",
        "../".repeat(3000)
    );
    cases.push(case("path: 9 KB of ../", p(&dots), Refused(414)));

    // route-like text in the query changes nothing
    for query in [
        "?/v1/zambda/billing-export/execute",
        "?x=/../../billing-export/execute",
        "?%2e%2e%2fbilling-export",
        "?next=/v1/zambda/appointment-slots/execute-public",
    ] {
        let target = format!("{LAB}{query}");
        cases.push(case(
            format!("path: query {query}"),
            p(&target),
            fwd(&target),
        ));
    }
    let target = format!("{BILLING}?/v1/zambda/appointment-slots/execute-public");
    cases.push(
        case(
            "path: public route in the query of an authenticated one",
            post(&target),
            Refused(401),
        )
        .check(challenge(false)),
    );
    let target = format!("{SLOTS}?/v1/zambda/billing-export/execute");
    cases.push(case(
        "path: authenticated route in the query of a public one",
        post(&target),
        fwd(&target),
    ));

    // absolute-form, asterisk-form, authority-form
    cases.extend([
        case(
            "target: absolute-form",
            p(&format!("http://proxy.test{LAB}")),
            fwd(LAB),
        ),
        case(
            "target: absolute-form, upper-case scheme, query",
            p(&format!("HTTP://proxy.test{LAB}?q=1")),
            fwd(&format!("{LAB}?q=1")),
        ),
        case(
            "target: absolute-form https",
            p(&format!("https://proxy.test{LAB}")),
            fwd(LAB),
        ),
        // pingora refuses an authority that differs from Host
        case(
            "target: absolute-form, authority with port, host without",
            p(&format!("https://proxy.test:443{LAB}")),
            Parser(400),
        ),
        case(
            "target: absolute-form with dot segments",
            p("http://proxy.test/v1/zambda/../zambda/billing-export/execute"),
            Refused(400),
        ),
        case(
            "target: absolute-form with encoded slash",
            p("http://proxy.test/v1/zambda/x%2f..%2fbilling-export/execute"),
            Refused(400),
        ),
        case(
            "target: absolute-form of a denied Zambda",
            p(&format!("http://proxy.test{BILLING}")),
            Refused(403),
        ),
        case(
            "target: absolute-form without path",
            p("http://proxy.test"),
            Refused(400),
        ),
        case(
            "target: absolute-form without authority",
            p(&format!("http://{LAB}")),
            Parser(400),
        ),
        case(
            "target: absolute-form, other scheme",
            p(&format!("ftp://proxy.test{LAB}")),
            Refused(400),
        ),
        case("target: asterisk-form POST", p("*"), Refused(400)),
        case(
            "target: asterisk-form OPTIONS",
            p("*").method("OPTIONS"),
            Refused(400),
        ),
        // pingora answers CONNECT itself
        case(
            "target: authority-form CONNECT",
            p("proxy.test:443").method("CONNECT"),
            Parser(405),
        ),
        case(
            "target: CONNECT to a path",
            p(LAB).method("CONNECT"),
            Parser(405),
        ),
    ]);
    cases
}
