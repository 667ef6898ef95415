//! Method cases: only `POST` reaches a Zambda; every other method, a
//! method in other letter case and an override header are refused with
//! 405, after the path was judged.

use crate::driver::*;
use crate::kit::*;
use crate::*;

pub fn method_cases() -> Vec<Case> {
    let lab = rs("lab-bot@clients");
    let mut cases = Vec::new();
    for method in [
        "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD", "post", "Post",
    ] {
        cases.push(
            case(
                format!("method: {method} on execute"),
                post(LAB).method(method).bearer(&lab),
                Refused(405),
            )
            .check(allow_post),
        );
    }
    cases.extend([
        case(
            "method: GET on execute-public",
            post(SLOTS).method("GET"),
            Refused(405),
        )
        .check(allow_post),
        case(
            "method: GET with a method-override header",
            post(LAB)
                .method("GET")
                .bearer(&lab)
                .header("x-http-method-override", "POST"),
            Refused(405),
        ),
        case(
            "method: a malformed path is judged before the method",
            post("/v1/zambda/%2e%2e/execute").method("GET"),
            Refused(400),
        ),
    ]);
    cases
}
