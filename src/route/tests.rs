//! Table-driven tests of the target parser: every malformed form SPEC §1
//! names, their percent-encoded variants, and the shapes that are well formed
//! but match no route.

use super::*;

/// What a target should come to.
#[derive(Debug)]
enum Want {
    /// Routed: route and decoded id.
    Ok(Route, &'static str),
    Bad,
    TooLong,
    NotFound,
}

fn check(target: &[u8], want: Want) {
    let got = parse(target, "/v1");
    let shown = String::from_utf8_lossy(target);
    match (&want, &got) {
        (Want::Ok(route, id), Ok(t)) => {
            assert_eq!((t.route, t.zambda.as_str()), (*route, *id), "{shown}")
        }
        (Want::Bad, Err(Reject::Malformed(_)))
        | (Want::TooLong, Err(Reject::TooLong))
        | (Want::NotFound, Err(Reject::NoRoute)) => {}
        _ => panic!("{shown}: wanted {want:?}, got {got:?}"),
    }
}

use Route::{Execute as E, ExecutePublic as P};

#[test]
fn well_formed_routes() {
    let table: &[(&[u8], Want)] = &[
        (b"/v1/zambda/alpha/execute", Want::Ok(E, "alpha")),
        (b"/v1/zambda/alpha/execute-public", Want::Ok(P, "alpha")),
        (
            b"/v1/zambda/2419a78e-4c0a-411d-b8e2-90dc081f5efa/execute",
            Want::Ok(E, "2419a78e-4c0a-411d-b8e2-90dc081f5efa"),
        ),
        (
            b"/v1/zambda/lab_results-2/execute",
            Want::Ok(E, "lab_results-2"),
        ),
        // only the id segment is decoded, once
        (b"/v1/zambda/al%70ha/execute", Want::Ok(E, "alpha")),
        (b"/v1/zambda/al%70ha/execute?x=1", Want::Ok(E, "alpha")),
        (b"/v1/zambda/a/execute?", Want::Ok(E, "a")),
        // absolute-form is judged by its path
        (b"http://example.com/v1/zambda/a/execute", Want::Ok(E, "a")),
        (
            b"HTTPS://example.com:8443/v1/zambda/a/execute?q=1",
            Want::Ok(E, "a"),
        ),
        // route-like text in the query does not change the route
        (
            b"/v1/zambda/a/execute?/v1/zambda/b/execute-public",
            Want::Ok(E, "a"),
        ),
    ];
    for (target, want) in table {
        check(
            target,
            match want {
                Want::Ok(r, id) => Want::Ok(*r, id),
                _ => unreachable!(),
            },
        );
    }
}

#[test]
fn malformed_paths_are_400() {
    let table: &[&[u8]] = &[
        b"/v1/zambda/../zambda/a/execute",
        b"/v1/zambda/a/../b/execute",
        b"/v1/./zambda/a/execute",
        b"/v1/zambda/a/execute/..",
        b"/v1/zambda/a/execute/.",
        b"/v1/zambda/%2e%2e/execute",
        b"/v1/zambda/%2E%2e/execute",
        b"/v1/zambda/.%2E/execute",
        b"/v1/%2e/zambda/a/execute",
        b"/v1//zambda/a/execute",
        b"//v1/zambda/a/execute",
        b"/v1/zambda//execute",
        b"/v1/zambda/a%2fb/execute",
        b"/v1/zambda/a%2Fb/execute",
        b"/v1%2Fzambda/a/execute",
        b"/v1/zambda/a%5cb/execute",
        b"/v1/zambda/a%5Cb/execute",
        b"/v1/zambda/a\\b/execute",
        b"/v1\\zambda/a/execute",
        b"/v1/zambda/a;x=1/execute",
        b"/v1/zambda/a/execute;jsessionid=1",
        b"/v1/zambda/a%00/execute",
        b"/v1/zambda/a\0/execute",
        b"/v1/zambda/a%0a/execute",
        b"/v1/zambda/a%0D%0A/execute",
        b"/v1/zambda/a\x01/execute",
        b"/v1/zambda/a%7f/execute",
        b"/v1/zambda/a\x7f/execute",
        b"/v1/zambda/a%/execute",
        b"/v1/zambda/a%2/execute",
        b"/v1/zambda/a%zz/execute",
        b"/v1/zambda/a%g0/execute",
        b"/v1/zambda/caf\xc3\xa9/execute",
        b"/v1/zambda/caf%C3%A9/execute",
        b"/v1/zambda/a b/execute",
        b"/v1/zambda/a/execute#frag",
        b"/v1/zambda/a/execute?x=1#frag",
        b"/v1/zambda/a/execute?x=\x01",
        // the id must be valid after one decoding, never two
        b"/v1/zambda/%252e%252e/execute",
        b"/v1/zambda/al%2570ha/execute",
        b"/v1/zambda/a.b/execute",
        b"/v1/zambda/a%20b/execute",
        b"/v1/zambda/a~b/execute",
        b"/v1/zambda/a%2eb/execute",
        // not an origin-form path
        b"*",
        b"example.com:443",
        b"v1/zambda/a/execute",
        b"",
        b"http://example.com",
        b"http:///v1/zambda/a/execute",
        b"ftp://example.com/v1/zambda/a/execute",
        b"http://example.com/v1/zambda/../a/execute",
    ];
    for target in table {
        check(target, Want::Bad);
    }
}

#[test]
fn well_formed_but_not_a_route_is_404() {
    let table: &[&[u8]] = &[
        b"/",
        b"/v1",
        b"/v1/",
        b"/v1/zambda",
        b"/v1/zambda/a",
        b"/v1/zambda/a/execute/",
        b"/v1/zambda/a/Execute",
        b"/v1/zambda/a/EXECUTE-PUBLIC",
        b"/V1/zambda/a/execute",
        b"/v1/Zambda/a/execute",
        b"/v1/zambda/a/execute/extra",
        b"/v1/zambda/a/b/execute",
        b"/v2/zambda/a/execute",
        b"/v1x/zambda/a/execute",
        b"/prefix/v1/zambda/a/execute",
        b"/v1/zambda/a/execute-private",
        // fixed parts match literally, undecoded
        b"/v1/zambd%61/a/execute",
        b"/%761/zambda/a/execute",
        b"/v1/zambda/a/execut%65",
        b"/v1/zambda/a/execute%3b",
        b"/healthz",
    ];
    for target in table {
        check(target, Want::NotFound);
    }
}

#[test]
fn over_long_targets_are_414() {
    let mut long = b"/v1/zambda/".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_TARGET_BYTES));
    long.extend_from_slice(b"/execute");
    check(&long, Want::TooLong);

    // exactly at the limit is judged on its merits
    let mut at_limit = b"/v1/zambda/".to_vec();
    let pad = MAX_TARGET_BYTES - at_limit.len() - b"/execute".len();
    at_limit.extend(std::iter::repeat_n(b'a', pad));
    at_limit.extend_from_slice(b"/execute");
    assert_eq!(at_limit.len(), MAX_TARGET_BYTES);
    assert!(parse(&at_limit, "/v1").is_ok());
}

#[test]
fn query_is_kept_as_received() {
    let t = parse(b"/v1/zambda/a/execute?b=%2F..&c=1", "/v1").unwrap();
    assert_eq!(t.query, Some("b=%2F..&c=1"));
    let t = parse(b"/v1/zambda/a/execute", "/v1").unwrap();
    assert_eq!(t.query, None);
}

#[test]
fn other_prefixes() {
    let t = parse(b"/zambda/a/execute", "").unwrap();
    assert_eq!((t.route, t.zambda.as_str()), (Route::Execute, "a"));
    let t = parse(b"/api/v2/zambda/a/execute-public", "/api/v2").unwrap();
    assert_eq!((t.route, t.zambda.as_str()), (Route::ExecutePublic, "a"));
    assert_eq!(
        parse(b"/v1/zambda/a/execute", "/api/v2"),
        Err(Reject::NoRoute)
    );
}

#[test]
fn canonical_path_is_built_from_parts() {
    assert_eq!(
        canonical_path("/v1", "alpha", Route::ExecutePublic),
        "/v1/zambda/alpha/execute-public"
    );
    assert_eq!(canonical_path("", "a", Route::Execute), "/zambda/a/execute");
}
