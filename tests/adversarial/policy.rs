//! The policy world's cases: policies written by this suite, roles from
//! the token (a dotted `roles_claim`, and a second, HMAC issuer), Deny
//! against Allow, names against ids, public Zambdas; and the policy files
//! `check` must refuse or accept.

use serde_json::{json, Value};

use crate::common::*;
use crate::driver::*;
use crate::kit::*;
use crate::*;

pub const POLICY_CATALOG: &str = "\
zambdas:
  - {id: 0a1b2c3d-0000-4000-8000-00000000000a, name: alpha}
  - {id: 0a1b2c3d-0000-4000-8000-00000000000b, name: beta}
  - {id: 0a1b2c3d-0000-4000-8000-00000000000c, name: open, type: public}
";

pub const POLICY_ROLES: &str = "\
roles:
  - name: invoke-all
    access_policy:
      rule:
        - {action: Zambda:InvokeFunction, resource: 'Zambda:Function:*', effect: Allow}
  - name: alpha-only
    access_policy:
      rule: {action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Allow}
  - name: no-beta
    access_policy:
      rule:
        - {action: Zambda:InvokeFunction, resource: Zambda:Function:beta, effect: Deny}
  - name: deny-all
    access_policy:
      rule:
        - {action: '*', resource: '*', effect: Deny}
  - name: fhir-reader
    access_policy:
      rule:
        - action: [FHIR:Read, FHIR:Search]
          resource: ['FHIR:Patient']
          effect: Allow
          condition: {StringEquals: {FHIR:Patient.id: '%currentUser.profile'}}
  - name: service-wide
    access_policy:
      rule:
        - {action: 'Zambda:*', resource: Zambda, effect: Allow}
";

pub const POLICY_ACTORS: &str = "\
actors:
  # a role from the token may grant; this inline Deny still wins on alpha
  - subject: inline-deny
    access_policy:
      rule:
        - {action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Deny}
  - subject: file-alpha
    roles: [alpha-only]
  # only tokens of the HMAC issuer are this actor
  - subject: bound
    issuer: https://hmac.test/
    roles: [invoke-all]
";

const ALPHA: &str = "/v1/zambda/alpha/execute";
const ALPHA_BY_ID: &str = "/v1/zambda/0a1b2c3d-0000-4000-8000-00000000000a/execute";
const BETA: &str = "/v1/zambda/beta/execute";
const BETA_BY_ID: &str = "/v1/zambda/0a1b2c3d-0000-4000-8000-00000000000b/execute";
const OPEN_PUBLIC: &str = "/v1/zambda/open/execute-public";
const OPEN_EXECUTE: &str = "/v1/zambda/open/execute";

/// RS256 token of the policy world with `app_metadata.roles`.
fn with_roles(subject: &str, roles: Value) -> String {
    let mut c = claims(subject);
    if !roles.is_null() {
        c["app_metadata"] = json!({ "roles": roles });
    }
    SigningKey::rsa1().sign(&c)
}

/// HS256 token of the HMAC issuer with `roles`.
fn hmac_with_roles(subject: &str, roles: Value) -> String {
    let mut c = with(claims(subject), json!({"iss": HMAC_ISSUER}));
    if !roles.is_null() {
        c["roles"] = roles;
    }
    hs256(&c, &hmac_key())
}

fn roles_header(want: &'static str) -> impl Fn(&Outcome) -> Result<(), String> {
    move |o| {
        let got = received(o)?.header_values("x-zambda-roles");
        let want: Vec<&str> = if want.is_empty() { vec![] } else { vec![want] };
        if got == want {
            Ok(())
        } else {
            Err(format!("x-zambda-roles {got:?}, want {want:?}"))
        }
    }
}

pub fn policy_cases() -> Vec<Case> {
    let c = |name: &str, target: &str, token: &str, expect: Expect| {
        case(
            format!("policy: {name}"),
            post(target).bearer(token),
            expect,
        )
        .on(On::Policy)
    };
    let mut cases = vec![
        // a role granted by the token, a Deny inline
        c(
            "token role grants, inline Deny wins",
            ALPHA,
            &with_roles("inline-deny", json!(["invoke-all"])),
            Refused(403),
        ),
        c(
            "inline Deny named by name also covers the id",
            ALPHA_BY_ID,
            &with_roles("inline-deny", json!(["invoke-all"])),
            Refused(403),
        ),
        c(
            "token role grants what the inline Deny leaves",
            BETA,
            &with_roles("inline-deny", json!(["invoke-all"])),
            fwd(BETA),
        )
        .check(roles_header("invoke-all")),
        // a Deny from the token beats the files' Allow
        c(
            "file role allows, token role denies all",
            ALPHA,
            &with_roles("file-alpha", json!(["deny-all"])),
            Refused(403),
        ),
        c(
            "file role alone allows",
            ALPHA,
            &with_roles("file-alpha", Value::Null),
            fwd(ALPHA),
        )
        .check(roles_header("alpha-only")),
        c(
            "file role does not reach beyond its Zambda",
            BETA,
            &with_roles("file-alpha", Value::Null),
            Refused(403),
        ),
        c(
            "token Deny by name covers the id",
            BETA_BY_ID,
            &with_roles("nobody", json!(["invoke-all", "no-beta"])),
            Refused(403),
        ),
        c(
            "token Deny by name",
            BETA,
            &with_roles("nobody", json!(["no-beta", "invoke-all"])),
            Refused(403),
        ),
        // unknown role names
        c(
            "unknown role only",
            ALPHA,
            &with_roles("nobody", json!(["ghost"])),
            Refused(403),
        ),
        c(
            "unknown role next to a known one",
            ALPHA,
            &with_roles("nobody", json!(["ghost", "invoke-all"])),
            fwd(ALPHA),
        )
        .check(roles_header("invoke-all")),
        c(
            "role name in another case",
            ALPHA,
            &with_roles("nobody", json!(["INVOKE-ALL", "Invoke-All"])),
            Refused(403),
        ),
        c(
            "role name with a space",
            ALPHA,
            &with_roles("nobody", json!(["invoke-all "])),
            Refused(403),
        ),
        c(
            "role named *",
            ALPHA,
            &with_roles("nobody", json!(["*"])),
            Refused(403),
        ),
        c(
            "role named like a resource",
            ALPHA,
            &with_roles("nobody", json!(["Zambda:Function:alpha"])),
            Refused(403),
        ),
        c(
            "roles as one space-separated string",
            ALPHA,
            &with_roles("nobody", json!("ghost invoke-all")),
            fwd(ALPHA),
        )
        .check(roles_header("invoke-all")),
        c(
            "roles sorted, without duplicates",
            ALPHA,
            &with_roles(
                "file-alpha",
                json!(["invoke-all", "alpha-only", "invoke-all"]),
            ),
            fwd(ALPHA),
        )
        .check(roles_header("alpha-only,invoke-all")),
        c(
            "only inert rules grant nothing",
            ALPHA,
            &with_roles("nobody", json!(["fhir-reader"])),
            Refused(403),
        ),
        c(
            "resource `Zambda` covers every Zambda",
            BETA,
            &with_roles("nobody", json!(["service-wide"])),
            fwd(BETA),
        ),
        c(
            "no roles, no actor entry",
            ALPHA,
            &with_roles("nobody", Value::Null),
            Refused(403),
        ),
        // a roles claim that cannot be read fails closed (it may carry a Deny)
        c(
            "roles claim a number",
            ALPHA,
            &with_roles("file-alpha", json!(5)),
            Refused(401),
        ),
        c(
            "roles claim an object",
            ALPHA,
            &with_roles("file-alpha", json!({"deny": "all"})),
            Refused(401),
        ),
        c(
            "roles claim with a non-string",
            ALPHA,
            &with_roles("file-alpha", json!(["invoke-all", 1])),
            Refused(401),
        ),
        c(
            "roles claim at the wrong path is not read",
            ALPHA,
            &SigningKey::rsa1().sign(&with(claims("nobody"), json!({"roles": ["invoke-all"]}))),
            Refused(403),
        ),
        // actors bound to an issuer
        c(
            "non-ASCII subject is forwarded intact",
            ALPHA,
            &with_roles("dr-ålice\u{2028}", json!(["invoke-all"])),
            fwd(ALPHA),
        )
        .check(|o| {
            let got = received(o)?.header_values("x-zambda-actor");
            if got == ["dr-ålice\u{2028}"] {
                Ok(())
            } else {
                Err(format!("x-zambda-actor {got:?}"))
            }
        }),
        c(
            "subject with DEL",
            ALPHA,
            &with_roles("dr-alice\u{7f}", json!(["invoke-all"])),
            Refused(401),
        ),
        c(
            "issuer-bound actor, its issuer",
            ALPHA,
            &hmac_with_roles("bound", Value::Null),
            fwd(ALPHA),
        ),
        c(
            "issuer-bound actor, another issuer",
            ALPHA,
            &with_roles("bound", Value::Null),
            Refused(403),
        ),
        c(
            "HMAC issuer's roles claim",
            ALPHA,
            &hmac_with_roles("nobody", json!("invoke-all")),
            fwd(ALPHA),
        ),
        c(
            "HMAC token claiming the RSA issuer",
            ALPHA,
            &hs256(&claims("bound"), &hmac_key()),
            Refused(401),
        ),
        // public Zambdas
        c(
            "execute of a public Zambda needs permission",
            OPEN_EXECUTE,
            &with_roles("nobody", Value::Null),
            Refused(403),
        ),
        c(
            "execute of a public Zambda with permission",
            OPEN_EXECUTE,
            &with_roles("nobody", json!(["invoke-all"])),
            fwd(OPEN_EXECUTE),
        ),
    ];
    cases.push(
        case(
            "policy: execute-public ignores a deny-all token",
            post(OPEN_PUBLIC).bearer(&with_roles("nobody", json!(["deny-all"]))),
            fwd(OPEN_PUBLIC),
        )
        .on(On::Policy)
        .check(no_authorization)
        .check(roles_header("")),
    );
    cases
}

/// Policy files that must not load: a Zambda-facing rule written wrong can
/// never silently vanish (or silently widen).
pub fn policy_file_cases() -> Vec<Case> {
    let rule = |action: &str, resource: &str, effect: &str| {
        format!(
            "roles:\n  - name: r\n    access_policy:\n      rule:\n        - action: '{action}'\n          resource: '{resource}'\n          effect: {effect}\n"
        )
    };
    let mut cases = Vec::new();
    for (resource, why) in [
        ("*:Function:alpha", "wildcard"),
        ("Zambda:*:alpha", "wildcard"),
        ("*:*:alpha", "wildcard"),
        ("*:Function:*", "wildcard"),
        ("Zambda:Function:alph*", ""),
        ("Zambda:Func*:alpha", ""),
        ("Zambda:Function:*alpha", ""),
        ("zambda:Function:alpha", ""),
        ("ZAMBDA:Function:alpha", ""),
        ("Zambda:function:alpha", ""),
        ("Zambda:Function:alpha:extra", ""),
        ("Zambda:Function:", ""),
        ("Zambda::alpha", ""),
    ] {
        for effect in ["Deny", "Allow"] {
            cases.push(check_case(
                format!("policy file: resource {resource:?} ({effect})"),
                &rule("Zambda:InvokeFunction", resource, effect),
                Expect::Invalid(why),
            ));
        }
    }
    for action in [
        "*:InvokeFunction",
        "*:*",
        "zambda:InvokeFunction",
        "Zambda:invokefunction",
        "Zambda:Invoke*",
        "Zambda:",
        "InvokeFunction",
    ] {
        cases.push(check_case(
            format!("policy file: action {action:?}"),
            &rule(action, "Zambda:Function:alpha", "Deny"),
            Expect::Invalid(""),
        ));
    }
    for (what, yaml) in [
        ("effect in lower case", rule("Zambda:InvokeFunction", "Zambda:Function:alpha", "deny")),
        (
            "effect missing",
            "roles:\n  - name: r\n    access_policy:\n      rule:\n        - {action: Zambda:InvokeFunction, resource: Zambda:Function:alpha}\n".into(),
        ),
        (
            "condition on a Zambda Deny",
            "roles:\n  - name: r\n    access_policy:\n      rule:\n        - action: Zambda:InvokeFunction\n          resource: Zambda:Function:alpha\n          effect: Deny\n          condition: {StringEquals: {x: y}}\n".into(),
        ),
        (
            "misspelt key",
            "roles:\n  - name: r\n    access_policy:\n      rule:\n        - {action: Zambda:InvokeFunction, resources: Zambda:Function:alpha, effect: Deny}\n".into(),
        ),
        ("actor naming an undefined role", "actors:\n  - subject: s\n    roles: [ghost]\n".into()),
        (
            "duplicate actor",
            "actors:\n  - subject: s\n  - subject: s\n".into(),
        ),
    ] {
        cases.push(check_case(format!("policy file: {what}"), &yaml, Expect::Invalid("")));
    }
    for resource in [
        "*",
        "*:*:*",
        "Zambda",
        "Zambda:*",
        "Zambda:*:*",
        "Zambda:Function",
        "Zambda:Function:*",
        "Zambda:Function:not-in-catalog",
    ] {
        cases.push(check_case(
            format!("policy file: resource {resource:?} is valid"),
            &rule("Zambda:InvokeFunction", resource, "Deny"),
            Expect::Valid,
        ));
    }
    cases.push(check_case(
        "policy file: inert FHIR rule with a condition is valid",
        "roles:\n  - name: r\n    access_policy:\n      rule:\n        - action: FHIR:Read\n          resource: FHIR:Patient\n          effect: Allow\n          condition: {StringEquals: {x: y}}\n",
        Expect::Valid,
    ));
    cases
}
