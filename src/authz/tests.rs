//! Where each source describes the judged request, and the statuses front
//! proxies are given.

use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (name, value) in pairs {
        h.append(*name, http::HeaderValue::from_str(value).unwrap());
    }
    h
}

type Want = Result<(&'static str, &'static str), Refusal>;

fn check(
    source: AuthzSource,
    prefix: Option<&str>,
    own: (&str, &str),
    h: &[(&'static str, &str)],
    want: Want,
) {
    let method = http::Method::from_bytes(own.0.as_bytes()).unwrap();
    let map = headers(h);
    let got = describe(source, prefix, &method, own.1.as_bytes(), &map);
    let got = got.map(|d| {
        (
            d.method.as_str().to_string(),
            String::from_utf8_lossy(d.target).to_string(),
        )
    });
    let want = want.map(|(m, t)| (m.to_string(), t.to_string()));
    assert_eq!(got, want, "{source:?} {own:?} {h:?}");
}

const LAB: &str = "/v1/zambda/lab/execute?x=1";

#[test]
fn each_source_reads_its_own_place_only() {
    use AuthzSource::*;
    let missing = |why| Err(Refusal::Described(why));
    // request: the request itself, less the prefix
    check(Request, None, ("POST", LAB), &[], Ok(("POST", LAB)));
    check(
        Request,
        Some("/authz"),
        ("POST", "/authz/v1/zambda/lab/execute"),
        &[],
        Ok(("POST", "/v1/zambda/lab/execute")),
    );
    check(
        Request,
        Some("/authz"),
        ("POST", "/v1/zambda/lab/execute"),
        &[],
        Err(Refusal::Target(route::Reject::NoRoute)),
    );
    check(
        Request,
        Some("/authz"),
        ("POST", "/authzv1/zambda/lab/execute"),
        &[],
        Err(Refusal::Target(route::Reject::NoRoute)),
    );
    // a header of another source is never read
    check(
        Request,
        None,
        ("GET", "/check"),
        &[("x-original-uri", LAB), ("x-forwarded-uri", LAB)],
        Ok(("GET", "/check")),
    );
    // forwarded
    check(
        Forwarded,
        None,
        ("GET", "/auth"),
        &[("x-forwarded-method", "POST"), ("x-forwarded-uri", LAB)],
        Ok(("POST", LAB)),
    );
    check(
        Forwarded,
        None,
        ("GET", "/auth"),
        &[("x-original-method", "POST"), ("x-original-uri", LAB)],
        missing("X-Forwarded-Method missing"),
    );
    check(
        Forwarded,
        None,
        ("GET", "/auth"),
        &[("x-forwarded-method", "POST")],
        missing("X-Forwarded-Uri missing"),
    );
    check(
        Forwarded,
        None,
        ("GET", "/auth"),
        &[
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", LAB),
            ("x-forwarded-uri", "/v1/zambda/other/execute"),
        ],
        missing("X-Forwarded-Uri repeated"),
    );
    // original_uri: raw, as nginx's $request_uri
    check(
        OriginalUri,
        None,
        ("GET", "/auth"),
        &[
            ("x-original-method", "POST"),
            ("x-original-uri", "/v1/zambda/%2e%2e/execute"),
        ],
        Ok(("POST", "/v1/zambda/%2e%2e/execute")),
    );
    check(
        OriginalUri,
        None,
        ("GET", "/auth"),
        &[
            ("x-original-method", "POST"),
            ("x-original-method", "POST"),
            ("x-original-uri", LAB),
        ],
        missing("X-Original-Method repeated"),
    );
    check(
        OriginalUri,
        None,
        ("GET", "/auth"),
        &[("x-original-method", "PO ST"), ("x-original-uri", LAB)],
        Err(Refusal::Described("the described method is not a method")),
    );
    check(
        OriginalUri,
        None,
        ("GET", "/auth"),
        &[
            ("x-original-method", "POST"),
            ("x-original-url", "https://h/v1/zambda/lab/execute"),
        ],
        missing("X-Original-URI missing"),
    );
    // original_url: the path and query of the URL
    check(
        OriginalUrl,
        None,
        ("GET", "/auth"),
        &[
            ("x-original-method", "POST"),
            (
                "x-original-url",
                "https://api.example.com/v1/zambda/lab/execute?x=1",
            ),
        ],
        Ok(("POST", LAB)),
    );
    check(
        OriginalUrl,
        None,
        ("GET", "/auth"),
        &[
            ("x-original-method", "POST"),
            ("x-original-url", "https://api.example.com"),
        ],
        Ok(("POST", "/")),
    );
    check(
        OriginalUrl,
        None,
        ("GET", "/auth"),
        &[
            ("x-original-method", "POST"),
            ("x-original-url", "https://api.example.com?x"),
        ],
        Ok(("POST", "/")),
    );
    check(
        OriginalUrl,
        None,
        ("GET", "/auth"),
        &[
            ("x-original-method", "POST"),
            ("x-original-url", "/v1/zambda/lab/execute"),
        ],
        missing("X-Original-URL is not an absolute URL"),
    );
    check(
        OriginalUrl,
        None,
        ("GET", "/auth"),
        &[("x-original-method", "POST"), ("x-original-uri", LAB)],
        missing("X-Original-URL missing"),
    );
}

#[test]
fn nginx_sources_get_only_the_statuses_nginx_accepts() {
    use AuthzSource::*;
    for (status, nginx) in [
        (200, 200),
        (204, 204),
        (400, 403),
        (401, 401),
        (403, 403),
        (404, 403),
        (405, 403),
        (413, 403),
        (414, 403),
        (429, 500),
        (500, 500),
        (502, 500),
        (503, 500),
    ] {
        for source in [OriginalUri, OriginalUrl] {
            assert_eq!(front_status(source, status), nginx, "{source:?} {status}");
        }
        for source in [Request, Forwarded] {
            assert_eq!(front_status(source, status), status, "{source:?} {status}");
        }
    }
}
