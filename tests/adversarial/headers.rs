//! Header cases: spoofed identity and forwarding headers, look-alike and
//! duplicated names, project-id checks and the headers the backend must
//! and must not see.

use crate::common::*;
use crate::driver::*;
use crate::kit::*;
use crate::*;

pub fn header_cases() -> Vec<Case> {
    let lab = rs("lab-bot@clients");
    let ops = rs("ops-bot@clients");
    let l = || post(LAB).bearer(&lab);
    let lab_identity = || {
        identity(
            Some("lab-bot@clients"),
            Some("lab-integrations"),
            LAB_ID,
            "lab-results-ingest",
        )
    };
    let mut cases = Vec::new();

    // spoofed identity headers, in every spelling
    for (name, value) in [
        ("X-Zambda-Actor", "dr-alice"),
        ("x-zambda-actor", "dr-alice"),
        ("X-ZAMBDA-ACTOR", "dr-alice"),
        ("x_zambda_actor", "dr-alice"),
        ("x.zambda.actor", "dr-alice"),
        ("X_Zambda-Actor", "dr-alice"),
        ("x-zambda-roles", "clinician"),
        ("x_zambda_roles", "clinician"),
        ("X.Zambda.Roles", "clinician"),
        ("x-zambda-id", BILLING_ID),
        ("x_zambda_id", BILLING_ID),
        ("x-zambda-name", "billing-export"),
        ("x.zambda_name", "billing-export"),
        ("x-zambda-issuer", "https://evil.test/"),
        ("x_oystehr_request_id", "spoofed"),
        ("x.oystehr.request.id", "spoofed"),
    ] {
        cases.push(
            case(format!("spoof: {name}"), l().header(name, value), fwd(LAB)).check(lab_identity()),
        );
    }
    cases.push(
        case(
            "spoof: every identity header twice",
            l().header("x-zambda-actor", "dr-alice")
                .header("x-zambda-actor", "ops-bot@clients")
                .header("x-zambda-roles", "clinician")
                .header("X-Zambda-Roles", "inactive")
                .header("x-zambda-id", BILLING_ID)
                .header("x-zambda-name", "billing-export"),
            fwd(LAB),
        )
        .check(lab_identity()),
    );
    cases.push(
        case(
            "spoof: roles header when the actor holds no role",
            post(BILLING)
                .bearer(&ops)
                .header("x-zambda-roles", "clinician")
                .header("x_zambda_roles", "clinician"),
            fwd(BILLING),
        )
        .check(identity(
            Some("ops-bot@clients"),
            None,
            BILLING_ID,
            "billing-export",
        )),
    );
    cases.push(
        case(
            "spoof: identity headers on execute-public",
            post(SLOTS)
                .header("x-zambda-actor", "dr-alice")
                .header("x_zambda_roles", "clinician")
                .header("x-zambda-id", BILLING_ID),
            fwd(SLOTS),
        )
        .check(identity(None, None, SLOTS_ID, "appointment-slots")),
    );
    cases.push(
        case(
            "spoof: identity headers named in Connection",
            l().header("x-zambda-actor", "dr-alice")
                .header("x-zambda-roles", "clinician")
                .header("connection", "x-zambda-actor, x-zambda-roles, x-zambda-id, x-zambda-name, x-oystehr-request-id"),
            fwd(LAB),
        )
        .check(lab_identity()),
    );
    // pingora refuses to let a client strip the forwarding headers this way
    cases.push(case(
        "spoof: x-forwarded-for named in Connection",
        l().header("x-forwarded-for", "203.0.113.9")
            .header("connection", "x-forwarded-for"),
        Refused(400),
    ));
    cases.push(case(
        "spoof: identity header folded into another (obs-fold)",
        {
            let mut raw = l().header("x-note", "a").bytes();
            let at = raw.windows(9).position(|w| w == b"x-note: a").unwrap() + 9;
            raw.splice(at..at, b"\r\n x-zambda-actor: dr-alice".iter().copied());
            raw
        },
        Parser(400),
    ));
    cases.push(
        case(
            "spoof: request id with characters outside the allowed set",
            l().header("x-oystehr-request-id", "<script>alert(1)</script>"),
            fwd(LAB),
        )
        .check(lab_identity())
        .check(|o| {
            let got = received(o)?.header_values("x-oystehr-request-id");
            if got.iter().any(|v| v.contains('<')) {
                Err(format!("request id forwarded as sent: {got:?}"))
            } else {
                Ok(())
            }
        }),
    );
    cases.push(
        case(
            "spoof: two request ids",
            l().header("x-oystehr-request-id", "one")
                .header("x-oystehr-request-id", "two"),
            fwd(LAB),
        )
        .check(lab_identity()),
    );

    // Authorization on execute-public is never forwarded
    for (what, req) in [
        ("a valid token", post(SLOTS).bearer(&lab)),
        ("a garbage token", post(SLOTS).bearer("garbage")),
        ("Basic", post(SLOTS).header("authorization", "Basic eDp5")),
        (
            "two headers",
            post(SLOTS).bearer(&lab).header("Authorization", "Bearer x"),
        ),
        (
            "upper-case name",
            post(SLOTS).header("AUTHORIZATION", &format!("Bearer {lab}")),
        ),
    ] {
        cases.push(
            case(format!("execute-public with {what}"), req, fwd(SLOTS))
                .check(no_authorization)
                .check(identity(None, None, SLOTS_ID, "appointment-slots")),
        );
    }
    cases.push(
        case("execute forwards the verified Authorization", l(), fwd(LAB)).check(move |o| {
            let got = received(o)?.header_values("authorization");
            if got.len() == 1 && got[0].starts_with("Bearer ey") {
                Ok(())
            } else {
                Err(format!("authorization forwarded as {got:?}"))
            }
        }),
    );

    // X-Forwarded-* games
    cases.extend([
        case(
            "forwarded: XFF appended",
            l().header("x-forwarded-for", "203.0.113.9"),
            fwd(LAB),
        )
        .check(header_is("x-forwarded-for", &["203.0.113.9, 127.0.0.1"])),
        case(
            "forwarded: two XFF headers joined",
            l().header("x-forwarded-for", "203.0.113.9")
                .header("X-Forwarded-For", "198.51.100.1"),
            fwd(LAB),
        )
        .check(header_is(
            "x-forwarded-for",
            &["203.0.113.9, 198.51.100.1, 127.0.0.1"],
        )),
        case(
            "forwarded: XFF proto overridden",
            l().header("x-forwarded-proto", "https"),
            fwd(LAB),
        )
        .check(proto_of_the_listener),
        case(
            "forwarded: XFF proto twice",
            l().header("x-forwarded-proto", "https")
                .header("X-Forwarded-Proto", "wss"),
            fwd(LAB),
        )
        .check(proto_of_the_listener),
        case(
            "forwarded: client address always last",
            l().header("x-forwarded-for", "127.0.0.1, 10.0.0.1"),
            fwd(LAB),
        )
        .check(header_is(
            "x-forwarded-for",
            &["127.0.0.1, 10.0.0.1, 127.0.0.1"],
        )),
        case(
            "forwarded: host forwarded as received",
            l().header("x-forwarded-host", "evil.test"),
            fwd(LAB),
        )
        .check(header_is("host", &["proxy.test"])),
        case(
            "forwarded: rewrite headers do not change the path",
            l().header("x-original-url", BILLING)
                .header("x-rewrite-url", BILLING),
            fwd(LAB),
        )
        .check(lab_identity()),
    ]);

    cases.push(
        case(
            "execute-public with proxy-authorization",
            post(SLOTS).header("proxy-authorization", &format!("Bearer {lab}")),
            fwd(SLOTS),
        )
        .check(header_is("proxy-authorization", &[])),
    );
    cases.push(case(
        "target: absolute-form with userinfo",
        post(&format!("http://user@proxy.test{LAB}")).bearer(&lab),
        Parser(400),
    ));

    // project id headers
    let other = "99999999-2222-3333-4444-555555555555";
    cases.extend([
        case(
            "project: both headers agree",
            l().header("x-oystehr-project-id", PROJECT_ID)
                .header("x-zapehr-project-id", PROJECT_ID),
            fwd(LAB),
        ),
        case(
            "project: upper-case value",
            l().header("x-zapehr-project-id", &PROJECT_ID.to_uppercase()),
            fwd(LAB),
        ),
        case(
            "project: two headers disagree",
            l().header("x-oystehr-project-id", PROJECT_ID)
                .header("x-zapehr-project-id", other),
            Refused(401),
        )
        .check(challenge(false)),
        case(
            "project: same header twice, disagreeing",
            l().header("x-oystehr-project-id", PROJECT_ID)
                .header("x-oystehr-project-id", other),
            Refused(401),
        ),
        case(
            "project: another project",
            l().header("x-oystehr-project-id", other),
            Refused(401),
        ),
        case(
            "project: empty value",
            l().header("x-oystehr-project-id", ""),
            Refused(401),
        ),
        case(
            "project: look-alike header names are not project ids",
            l().header("x_oystehr_project_id", other)
                .header("x.zapehr.project.id", other),
            fwd(LAB),
        )
        .check(header_is("x_oystehr_project_id", &[]))
        .check(header_is("x.zapehr.project.id", &[])),
        case(
            "project: another project on execute-public",
            post(SLOTS).header("x-zapehr-project-id", other),
            Refused(401),
        )
        .check(no_challenge),
        case(
            "project: another project, denied Zambda too (project checked first)",
            post(BILLING)
                .bearer(&rs("dr-alice"))
                .header("x-zapehr-project-id", other),
            Refused(401),
        ),
    ]);
    cases
}
