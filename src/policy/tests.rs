//! Unit tests for the policy module: semantics through one table and one
//! `check` helper, then loading (errors, lines, directory walks), `explain`
//! against `decide`, and the shipped example policies.

use std::path::{Path, PathBuf};

use super::*;

const ALPHA_ID: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const BETA_ID: &str = "aaaaaaaa-0000-4000-8000-000000000002";

/// The catalog most cases run against.
const CATALOG: &str = "
zambdas:
  - id: aaaaaaaa-0000-4000-8000-000000000001
    name: alpha
  - id: aaaaaaaa-0000-4000-8000-000000000002
    name: beta
    type: authenticated
  - id: aaaaaaaa-0000-4000-8000-000000000003
    name: gamma
    type: public
";

/// Who asks: subject, issuer, token roles.
#[derive(Clone, Copy)]
struct Who {
    subject: &'static str,
    issuer: Option<&'static str>,
    token_roles: &'static [&'static str],
}

const ALICE: Who = Who {
    subject: "alice",
    issuer: None,
    token_roles: &[],
};

fn who(subject: &'static str) -> Who {
    Who { subject, ..ALICE }
}

fn from(subject: &'static str, issuer: &'static str) -> Who {
    Who {
        subject,
        issuer: Some(issuer),
        token_roles: &[],
    }
}

fn with_token_roles(subject: &'static str, token_roles: &'static [&'static str]) -> Who {
    Who {
        subject,
        issuer: None,
        token_roles,
    }
}

#[derive(Debug)]
enum Expect {
    /// Allowed; the deciding rule's display starts with this.
    Allow(&'static str),
    /// Denied by an explicit Deny whose display starts with this.
    Deny(&'static str),
    /// Denied because no rule allows.
    NoRule,
    /// The files do not load; some error's display contains this.
    Error(&'static str),
}

struct Case {
    name: &'static str,
    /// Policy files besides the catalog.
    files: Vec<(&'static str, String)>,
    who: Who,
    zambda: &'static str,
    expect: Expect,
}

fn case(
    name: &'static str,
    policy: String,
    who: Who,
    zambda: &'static str,
    expect: Expect,
) -> Case {
    Case {
        name,
        files: vec![("policy.yaml", policy)],
        who,
        zambda,
        expect,
    }
}

/// Alice with an inline policy of one rule.
fn alice_rule(action: &str, resource: &str, effect: &str) -> String {
    format!(
        "actors:
  - subject: alice
    access_policy:
      rule:
        - action: {action:?}
          resource: {resource:?}
          effect: {effect}
"
    )
}

fn allow(action: &str, resource: &str) -> String {
    alice_rule(action, resource, "Allow")
}

fn load(files: &[(&str, &str)]) -> Result<Loaded, LoadErrors> {
    let files: Vec<(&Path, &str)> = files
        .iter()
        .map(|(path, text)| (Path::new(*path), *text))
        .collect();
    load_texts(&files)
}

fn principal<'a>(who: &'a Who, token_roles: &'a [String]) -> Principal<'a> {
    Principal {
        subject: who.subject,
        issuer: who.issuer,
        token_roles,
    }
}

/// Loads `files` (with the catalog first), decides for `who` on `zambda`
/// (an id or name), checks the outcome, and that `explain` agrees.
fn check(name: &str, files: &[(&str, &str)], who: Who, zambda: &str, expect: &Expect) {
    let mut all = vec![("catalog.yaml", CATALOG)];
    all.extend_from_slice(files);
    let loaded = match (load(&all), expect) {
        (Err(errors), Expect::Error(fragment)) => {
            assert!(
                errors.0.iter().any(|e| e.to_string().contains(fragment)),
                "{name}: no error contains {fragment:?}:\n{errors}"
            );
            return;
        }
        (Err(errors), _) => panic!("{name}: does not load:\n{errors}"),
        (Ok(_), Expect::Error(fragment)) => panic!("{name}: loads, expected {fragment:?}"),
        (Ok(loaded), _) => loaded,
    };
    let set = &loaded.set;
    let zambda = set
        .zambda(zambda)
        .unwrap_or_else(|| panic!("{name}: no Zambda {zambda}"));
    let token_roles: Vec<String> = who.token_roles.iter().map(|r| r.to_string()).collect();
    let principal = principal(&who, &token_roles);
    let decision = set.decide(&principal, zambda);
    let rule = decision.deciding.map(ToString::to_string);
    match expect {
        Expect::Allow(prefix) | Expect::Deny(prefix) => {
            let allowed = matches!(expect, Expect::Allow(_));
            assert_eq!(decision.allowed, allowed, "{name}: {decision}");
            let rule = rule.unwrap_or_default();
            assert!(rule.starts_with(prefix), "{name}: deciding rule {rule:?}");
        }
        Expect::NoRule => assert!(
            !decision.allowed && decision.deciding.is_none(),
            "{name}: {decision}"
        ),
        Expect::Error(_) => unreachable!(),
    }
    assert_eq!(
        set.explain(&principal, zambda).decision,
        decision,
        "{name}: explain disagrees"
    );
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let role = |name: &str, action: &str, resource: &str, effect: &str| {
        format!(
            "
  - name: {name}
    access_policy:
      rule:
        - action: {action:?}
          resource: {resource:?}
          effect: {effect}"
        )
    };
    let roles = |defs: &[String]| format!("roles:{}\n", defs.concat());
    vec![
        // Actions, every wildcard position.
        case("action *", allow("*", "Zambda:Function:alpha"), ALICE, "alpha", Allow("Allow rule[0] of actor \"alice\"")),
        case("action Zambda:*", allow("Zambda:*", "Zambda:Function:alpha"), ALICE, "alpha", Allow("Allow rule[0]")),
        case("action Zambda:InvokeFunction", allow("Zambda:InvokeFunction", "Zambda:Function:alpha"), ALICE, "alpha", Allow("Allow rule[0]")),
        case("another Zambda action does not invoke", allow("Zambda:GetFunction", "Zambda:Function:alpha"), ALICE, "alpha", NoRule),
        case("a FHIR action on every resource is inert", allow("FHIR:*", "*"), ALICE, "alpha", NoRule),
        // Resources, every wildcard position.
        case("resource *", allow("Zambda:InvokeFunction", "*"), ALICE, "beta", Allow("Allow rule[0]")),
        case("resource *:*", allow("Zambda:InvokeFunction", "*:*"), ALICE, "beta", Allow("Allow rule[0]")),
        case("resource *:*:*", allow("Zambda:InvokeFunction", "*:*:*"), ALICE, "beta", Allow("Allow rule[0]")),
        case("resource Zambda", allow("Zambda:InvokeFunction", "Zambda"), ALICE, "beta", Allow("Allow rule[0]")),
        case("resource Zambda:*", allow("Zambda:InvokeFunction", "Zambda:*"), ALICE, "beta", Allow("Allow rule[0]")),
        case("resource Zambda:*:*", allow("Zambda:InvokeFunction", "Zambda:*:*"), ALICE, "beta", Allow("Allow rule[0]")),
        case("resource Zambda:Function", allow("Zambda:InvokeFunction", "Zambda:Function"), ALICE, "beta", Allow("Allow rule[0]")),
        case("resource Zambda:Function:*", allow("Zambda:InvokeFunction", "Zambda:Function:*"), ALICE, "gamma", Allow("Allow rule[0]")),
        case("a named Zambda covers only itself", allow("*", "Zambda:Function:alpha"), ALICE, "beta", NoRule),
        case("rule by id, called by name", allow("*", &format!("Zambda:Function:{ALPHA_ID}")), ALICE, "alpha", Allow("Allow rule[0]")),
        case("rule by name, called by id", allow("*", "Zambda:Function:alpha"), ALICE, ALPHA_ID, Allow("Allow rule[0]")),
        case("names are case-sensitive", allow("*", "Zambda:Function:Alpha"), ALICE, "alpha", NoRule),
        case("a public Zambda needs permission on execute", allow("*", "Zambda:Function:alpha"), ALICE, "gamma", NoRule),
        // Forbidden forms.
        case("*:Function:x", allow("*", "*:Function:alpha"), ALICE, "alpha", Error("a wildcard part cannot be followed by a specific one")),
        case("Zambda:*:x", allow("*", "Zambda:*:alpha"), ALICE, "alpha", Error("a wildcard part cannot be followed")),
        case("*:*:x", allow("*", "*:*:alpha"), ALICE, "alpha", Error("a wildcard part cannot be followed")),
        case("partial glob in an id", allow("*", "Zambda:Function:alp*"), ALICE, "alpha", Error("partial wildcards are not supported")),
        case("partial glob in a type", allow("*", "Zambda:Func*"), ALICE, "alpha", Error("partial wildcards")),
        case("partial glob in an action", allow("Zambda:Invoke*", "Zambda:Function:alpha"), ALICE, "alpha", Error("\"Zambda:Invoke*\": partial wildcards")),
        case("service case in an action", allow("zambda:InvokeFunction", "Zambda:Function:alpha"), ALICE, "alpha", Error("\"zambda:InvokeFunction\": the service is written `Zambda`")),
        case("action case", alice_rule("Zambda:invokeFunction", "Zambda:Function:beta", "Deny"), ALICE, "alpha", Error("the action is written `Zambda:InvokeFunction`")),
        case("service case in a resource", alice_rule("*", "zambda:Function:alpha", "Deny"), ALICE, "alpha", Error("\"zambda:Function:alpha\": the service is written `Zambda`")),
        case("type case in a resource", allow("*", "Zambda:function:alpha"), ALICE, "alpha", Error("the resource type is written `Function`")),
        case("another resource type", allow("*", "Zambda:Secret:alpha"), ALICE, "alpha", Error("the resource type is written `Function`")),
        case("*:InvokeFunction", allow("*:InvokeFunction", "Zambda:Function:alpha"), ALICE, "alpha", Error("write `*` for every action")),
        case("*:* action", alice_rule("*:*", "*", "Deny"), ALICE, "alpha", Error("\"*:*\": write `*`")),
        case("four parts", allow("*", "Zambda:Function:alpha:v2"), ALICE, "alpha", Error("at most three parts")),
        case("not an id", allow("*", "Zambda:Function:al.pha"), ALICE, "alpha", Error("\"al.pha\" is not a Zambda id or name")),
        case("effect case", alice_rule("*", "*", "allow"), ALICE, "alpha", Error("effect must be `Allow` or `Deny`, not \"allow\"")),
        case("action without service", allow("InvokeFunction", "Zambda:Function:alpha"), ALICE, "alpha", Error("\"InvokeFunction\" must be `*` or `service:Action`")),
        case("action with whitespace", allow("Zambda: InvokeFunction", "Zambda:Function:alpha"), ALICE, "alpha", Error("must be `*` or `service:Action`")),
        case("empty part in an inert resource", allow("FHIR:Read", "FHIR::Patient"), ALICE, "alpha", Error("with no empty part")),
        case(
            "condition on a Zambda-facing rule",
            "actors:\n  - subject: alice\n    access_policy:\n      rule:\n        - action: Zambda:InvokeFunction\n          resource: \"*\"\n          effect: Deny\n          condition: {StringEquals: {x: y}}\n".to_owned(),
            ALICE, "alpha", Error("a condition cannot be evaluated"),
        ),
        case(
            "empty action list",
            "actors:\n  - subject: alice\n    access_policy:\n      rule: {action: [], resource: \"*\", effect: Deny}\n".to_owned(),
            ALICE, "alpha", Error("action must name at least one action"),
        ),
        // Deny precedence and the deciding rule.
        case(
            "a role's Deny beats an inline Allow",
            format!("{}{}", roles(&[role("blocked", "*", "Zambda:Function:alpha", "Deny")]), "actors:\n  - subject: alice\n    roles: [blocked]\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Allow}}\n"),
            ALICE, "alpha", Deny("Deny rule[0] of role \"blocked\""),
        ),
        case(
            "an inline Deny beats a role's Allow",
            format!("{}{}", roles(&[role("all", "*", "*", "Allow")]), "actors:\n  - subject: alice\n    roles: [all]\n    access_policy: {rule: {action: \"*\", resource: Zambda:Function:beta, effect: Deny}}\n"),
            ALICE, "beta", Deny("Deny rule[0] of actor \"alice\""),
        ),
        case(
            "a token role's Deny beats a file role's Allow",
            format!("{}{}", roles(&[role("all", "*", "*", "Allow"), role("blocked", "*", "*", "Deny")]), "actors:\n  - subject: carol\n    roles: [all]\n"),
            with_token_roles("carol", &["blocked"]), "alpha", Deny("Deny rule[0] of role \"blocked\""),
        ),
        case(
            "a defined token role allows",
            roles(&[role("all", "*", "*", "Allow")]),
            with_token_roles("nobody-in-files", &["all"]), "beta", Allow("Allow rule[0] of role \"all\""),
        ),
        case(
            "an undefined token role is ignored",
            roles(&[role("all", "*", "*", "Allow")]),
            with_token_roles("nobody-in-files", &["admin"]), "beta", NoRule,
        ),
        case(
            "a deny-all role beats everything",
            format!("{}{}", roles(&[role("all", "*", "Zambda:Function:*", "Allow"), role("inactive", "*", "*", "Deny")]), "actors:\n  - subject: alice\n    roles: [all, inactive]\n"),
            ALICE, "alpha", Deny("Deny rule[0] of role \"inactive\""),
        ),
        case(
            "a Deny on another Zambda does not apply",
            format!("{}{}", roles(&[role("all", "*", "*", "Allow"), role("no-beta", "*", "Zambda:Function:beta", "Deny")]), "actors:\n  - subject: alice\n    roles: [no-beta, all]\n"),
            ALICE, "alpha", Allow("Allow rule[0] of role \"all\""),
        ),
        case(
            "the first Allow decides: inline before roles",
            format!("{}{}", roles(&[role("all", "*", "*", "Allow")]), "actors:\n  - subject: alice\n    roles: [all]\n    access_policy: {rule: [{action: FHIR:Read, resource: FHIR:Patient, effect: Allow}, {action: \"*\", resource: \"*\", effect: Allow}]}\n"),
            ALICE, "alpha", Allow("Allow rule[1] of actor \"alice\""),
        ),
        case(
            "within a policy a later Deny beats an earlier Allow",
            "actors:\n  - subject: alice\n    access_policy:\n      rule:\n        - {action: \"*\", resource: \"*\", effect: Allow}\n        - {action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Deny}\n        - {action: \"*\", resource: \"*\", effect: Deny}\n".to_owned(),
            ALICE, "alpha", Deny("Deny rule[1] of actor \"alice\""),
        ),
        case(
            "the first Deny decides: file roles in listed order",
            format!("{}{}", roles(&[role("d1", "*", "*", "Deny"), role("d2", "*", "Zambda:Function:alpha", "Deny")]), "actors:\n  - subject: alice\n    roles: [d2, d1]\n"),
            ALICE, "alpha", Deny("Deny rule[0] of role \"d2\""),
        ),
        case(
            "a role held from the file and the token counts once",
            format!("{}{}", roles(&[role("all", "*", "*", "Allow")]), "actors:\n  - subject: carol\n    roles: [all]\n"),
            with_token_roles("carol", &["all", "all"]), "alpha", Allow("Allow rule[0] of role \"all\""),
        ),
        // Issuers.
        case(
            "an issuer-bound actor matches its issuer",
            "actors:\n  - subject: svc\n    issuer: https://a.example/\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Allow}}\n".to_owned(),
            from("svc", "https://a.example/"), "alpha", Allow("Allow rule[0] of actor \"svc\" of issuer \"https://a.example/\""),
        ),
        case(
            "an issuer-bound actor does not match another issuer",
            "actors:\n  - subject: svc\n    issuer: https://a.example/\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Allow}}\n".to_owned(),
            from("svc", "https://b.example/"), "alpha", NoRule,
        ),
        case(
            "an issuer-bound actor does not match a token without issuer",
            "actors:\n  - subject: svc\n    issuer: https://a.example/\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Allow}}\n".to_owned(),
            who("svc"), "alpha", NoRule,
        ),
        case(
            "an any-issuer actor matches every issuer",
            "actors:\n  - subject: svc\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Allow}}\n".to_owned(),
            from("svc", "https://b.example/"), "alpha", Allow("Allow rule[0] of actor \"svc\" ("),
        ),
        case(
            "both entries apply: the any entry's Deny wins",
            "actors:\n  - subject: svc\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Deny}}\n  - subject: svc\n    issuer: https://a.example/\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Allow}}\n".to_owned(),
            from("svc", "https://a.example/"), "alpha", Deny("Deny rule[0] of actor \"svc\" ("),
        ),
        case(
            "both entries apply: the issuer-bound entry decides first",
            "actors:\n  - subject: svc\n    roles: [all]\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Allow}}\n  - subject: svc\n    issuer: https://a.example/\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Allow}}\nroles:\n  - name: all\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Allow}}\n".to_owned(),
            from("svc", "https://a.example/"), "alpha", Allow("Allow rule[0] of actor \"svc\" of issuer"),
        ),
        case(
            "both entries apply: roles of both are held",
            format!("{}{}", roles(&[role("all", "*", "*", "Allow"), role("no-alpha", "*", "Zambda:Function:alpha", "Deny")]), "actors:\n  - subject: svc\n    roles: [no-alpha]\n  - subject: svc\n    issuer: https://a.example/\n    roles: [all]\n"),
            from("svc", "https://a.example/"), "alpha", Deny("Deny rule[0] of role \"no-alpha\""),
        ),
        // Shapes.
        case(
            "rule as a single object, strings for action and resource",
            "actors:\n  - subject: alice\n    access_policy:\n      rule:\n        action: Zambda:InvokeFunction\n        resource: Zambda:Function:alpha\n        effect: Allow\n".to_owned(),
            ALICE, "alpha", Allow("Allow rule[0]"),
        ),
        case(
            "lists for action and resource",
            "actors:\n  - subject: alice\n    access_policy:\n      rule:\n        - action: [FHIR:Read, Zambda:InvokeFunction]\n          resource: [FHIR:Patient, Zambda:Function:beta, Zambda:Function:alpha]\n          effect: Allow\n".to_owned(),
            ALICE, "alpha", Allow("Allow rule[0]"),
        ),
        case(
            "accessPolicy on an actor",
            "actors:\n  - subject: alice\n    accessPolicy: {rule: [{action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Allow}]}\n".to_owned(),
            ALICE, "alpha", Allow("Allow rule[0]"),
        ),
        case("a real Oystehr role loads and decides", real_role(), with_token_roles("dr", &["Provider"]), "beta", Allow("Allow rule[5] of role \"Provider\"")),
        case("a real Oystehr role's Deny", real_role(), with_token_roles("dr", &["Provider"]), "alpha", Deny("Deny rule[6] of role \"Provider\"")),
        // Load errors.
        case(
            "duplicate Zambda id",
            format!("zambdas:\n  - id: {ALPHA_ID}\n    name: delta\n"),
            ALICE, "alpha", Error("id \"aaaaaaaa-0000-4000-8000-000000000001\" is already the id of Zambda \"alpha\" (catalog.yaml:3)"),
        ),
        case(
            "duplicate Zambda name",
            "zambdas:\n  - id: delta-id\n    name: beta\n".to_owned(),
            ALICE, "alpha", Error("policy.yaml:2: zambdas[0] (beta): name \"beta\" is already the name of Zambda \"beta\""),
        ),
        case(
            "a name equal to another Zambda's id",
            format!("zambdas:\n  - id: delta\n    name: {BETA_ID}\n"),
            ALICE, "alpha", Error("policy.yaml:2: zambdas[0] (aaaaaaaa-0000-4000-8000-000000000002): name \"aaaaaaaa-0000-4000-8000-000000000002\" is the id of Zambda \"beta\" (catalog.yaml:5)"),
        ),
        case(
            "a name equal to its own id",
            "zambdas:\n  - id: delta\n    name: delta\nactors:\n  - subject: alice\n    access_policy: {rule: {action: \"*\", resource: Zambda:Function:delta, effect: Allow}}\n".to_owned(),
            ALICE, "delta", Allow("Allow rule[0]"),
        ),
        case(
            "a role defined twice",
            roles(&[role("all", "*", "*", "Allow"), role("all", "*", "*", "Deny")]),
            ALICE, "alpha", Error("roles[1] (all): role \"all\" is already defined at policy.yaml:2"),
        ),
        case(
            "an actor defined twice",
            "actors:\n  - subject: alice\n  - subject: bob\n  - subject: alice\n".to_owned(),
            ALICE, "alpha", Error("policy.yaml:4: actors[2] (alice): duplicate actor: subject \"alice\" for any issuer is already defined by actors[0] (alice) at policy.yaml:2"),
        ),
        case(
            "one subject under two issuers",
            "actors:\n  - subject: svc\n    issuer: https://a.example/\n  - subject: svc\n    issuer: https://b.example/\n  - subject: svc\n".to_owned(),
            from("svc", "https://a.example/"), "alpha", NoRule,
        ),
        case(
            "an undefined role",
            "actors:\n  - subject: alice\n    roles:\n      - ghost\n".to_owned(),
            ALICE, "alpha", Error("policy.yaml:4: actors[0] (alice).roles[0]: role \"ghost\" is not defined"),
        ),
        case("an unknown key in a rule", "actors:\n  - subject: alice\n    access_policy: {rule: {action: \"*\", resource: \"*\", effect: Allow, sid: x}}\n".to_owned(), ALICE, "alpha", Error("unknown field `sid`")),
        case("an unknown top-level key", "policies: []\n".to_owned(), ALICE, "alpha", Error("policy.yaml:1: unknown field `policies`")),
        case("an unknown key on an actor", "actors:\n  - subject: alice\n    role: [x]\n".to_owned(), ALICE, "alpha", Error("actors[0]: unknown field `role`")),
        case("an id outside [A-Za-z0-9_-]", "zambdas:\n  - id: a/b\n    name: delta\n".to_owned(), ALICE, "alpha", Error("zambdas[0] (delta): id \"a/b\" must match")),
        case("an unknown Zambda type", "zambdas:\n  - id: d\n    name: delta\n    type: private\n".to_owned(), ALICE, "alpha", Error("type must be `authenticated`, `public`, `http_auth`, `http_open`, `cron` or `subscription`, not \"private\"")),
        case("a role name with a comma", roles(&[role("a,b", "*", "*", "Allow")]), ALICE, "alpha", Error("contains a comma")),
        case("an unquoted *", "actors:\n  - subject: alice\n    access_policy: {rule: {action: *, resource: \"*\", effect: Deny}}\n".to_owned(), ALICE, "alpha", Error("policy.yaml:3: did not find expected alphabetic or numeric character at line 3 column 37, while scanning an alias at line 3 column 36 (a bare `*` must be quoted: \"*\")")),
        case("a type error", "actors:\n  - subject: alice\n    roles: lab\n".to_owned(), ALICE, "alpha", Error("policy.yaml:3: actors[0].roles: invalid type: string \"lab\", expected a sequence")),
    ]
}

/// A role as Oystehr returns it, mixing services.
fn real_role() -> String {
    r#"
roles:
  - id: 0d7f4a2e-8a57-4d8e-9f0e-2b1c3d4e5f60
    name: Provider
    description: Providers of the practice
    accessPolicy:
      rule:
        - action: [FHIR:Search, FHIR:Read]
          effect: Allow
          resource: [FHIR:Patient, FHIR:Encounter, FHIR:Appointment]
          condition:
            ForAllValues:StringEquals:
              FHIR:Patient.generalPractitioner: "%currentUser.profile"
        - action: [FHIR:Create, FHIR:Update]
          effect: Allow
          resource: FHIR:Communication
        - action: Z3:GetObject
          effect: Allow
          resource: [Z3:*, Z3:practice-docs/consent forms/*]
        - action: [Messaging:SendTransactionalSMS]
          effect: Allow
          resource: Messaging:*
        - action: App:ListAllApplications
          effect: Allow
          resource: App:Application:*
        - action: [Zambda:InvokeFunction]
          effect: Allow
          resource: [Zambda:Function:*]
        - action: Zambda:InvokeFunction
          effect: Deny
          resource: Zambda:Function:alpha
"#
    .to_owned()
}

#[test]
fn table() {
    let cases = cases();
    assert!(cases.len() >= 45, "{} cases", cases.len());
    for case in &cases {
        let files: Vec<(&str, &str)> = case
            .files
            .iter()
            .map(|(path, text)| (*path, text.as_str()))
            .collect();
        check(case.name, &files, case.who, case.zambda, &case.expect);
    }
}

// ---------------------------------------------------------------------------
// Roles, explain, stats

/// Roles, actors of both kinds and a mix of rules, for `fixture`.
const FIXTURE: &str = r#"
roles:
  - name: all
    access_policy: {rule: {action: "*", resource: "*", effect: Allow}}
  - name: no-alpha
    access_policy:
      rule:
        - {action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Deny}
        - {action: FHIR:Read, resource: FHIR:Patient, effect: Allow}
  - name: beta-only
    access_policy: {rule: {action: Zambda:*, resource: [Zambda:Function:beta, Zambda:Function:nowhere], effect: Allow}}
  - name: deny-all
    access_policy: {rule: {action: "*", resource: "*", effect: Deny}}
actors:
  - subject: alice
    roles: [beta-only]
  - subject: alice
    issuer: https://a.example/
    roles: [all, no-alpha]
    access_policy: {rule: {action: Zambda:InvokeFunction, resource: Zambda:Function:gamma, effect: Deny}}
  - subject: bob
    roles: [all]
    access_policy:
      rule:
        - {action: "*", resource: Zambda:Function:beta, effect: Deny}
        - {action: "*", resource: "Zambda:Function:aaaaaaaa-0000-4000-8000-000000000001", effect: Allow}
  - subject: carol
    issuer: https://b.example/
    roles: [deny-all, beta-only]
"#;

/// A set with roles, actors of both kinds and a mix of rules.
fn fixture() -> Set {
    match load(&[("catalog.yaml", CATALOG), ("policy.yaml", FIXTURE)]) {
        Ok(loaded) => loaded.set,
        Err(errors) => panic!("fixture does not load:\n{errors}"),
    }
}

#[test]
fn explain_agrees_with_decide_everywhere() {
    let set = fixture();
    let subjects = ["alice", "bob", "carol", "dave"];
    let issuers = [None, Some("https://a.example/"), Some("https://b.example/")];
    let token_sets: [&[&str]; 5] = [
        &[],
        &["all"],
        &["no-alpha", "ghost"],
        &["deny-all"],
        &["beta-only", "all", "beta-only"],
    ];
    let mut checked = 0;
    let mut outcomes = [0usize; 3];
    for subject in subjects {
        for issuer in issuers {
            for tokens in token_sets {
                let token_roles: Vec<String> = tokens.iter().map(|r| r.to_string()).collect();
                let principal = Principal {
                    subject,
                    issuer,
                    token_roles: &token_roles,
                };
                for zambda in set.zambdas() {
                    let decision = set.decide(&principal, zambda);
                    let explanation = set.explain(&principal, zambda);
                    assert_eq!(
                        explanation.decision, decision,
                        "{subject} {issuer:?} {tokens:?} {}",
                        zambda.name
                    );
                    outcomes[match (decision.allowed, decision.deciding) {
                        (true, _) => 0,
                        (false, Some(_)) => 1,
                        (false, None) => 2,
                    }] += 1;
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 4 * 3 * 5 * 3);
    // The grid exercises allows, explicit denies and implicit denies.
    assert!(outcomes.iter().all(|&n| n > 10), "{outcomes:?}");
}

#[test]
fn explain_lists_roles_sources_and_matching_rules() {
    let set = fixture();
    let token_roles = vec!["deny-all".to_owned(), "ghost".to_owned(), "all".to_owned()];
    let principal = Principal {
        subject: "alice",
        issuer: Some("https://a.example/"),
        token_roles: &token_roles,
    };
    let alpha = set.zambda("alpha").expect("alpha is in the catalog");
    let explanation = set.explain(&principal, alpha);
    let actors: Vec<Option<&str>> = explanation
        .actors
        .iter()
        .map(|a| a.issuer.as_deref())
        .collect();
    assert_eq!(actors, [Some("https://a.example/"), None]);
    let roles: Vec<(&str, &str)> = explanation
        .roles
        .iter()
        .map(|held| {
            let source = match held.source {
                RoleSource::Actor(actor) if actor.issuer.is_some() => "bound entry",
                RoleSource::Actor(_) => "any entry",
                RoleSource::Default(_) => "defaults",
                RoleSource::Token => "token",
            };
            (held.role.name.as_str(), source)
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("all", "bound entry"),
            ("no-alpha", "bound entry"),
            ("beta-only", "any entry"),
            ("deny-all", "token"),
        ]
    );
    assert_eq!(explanation.ignored_roles, ["ghost"]);
    let matching: Vec<String> = explanation
        .matching
        .iter()
        .map(|rule| format!("{} rule[{}] of {}", rule.effect, rule.index, rule.origin))
        .collect();
    assert_eq!(
        matching,
        [
            "Allow rule[0] of role \"all\"",
            "Deny rule[0] of role \"no-alpha\"",
            "Deny rule[0] of role \"deny-all\"",
        ]
    );
    assert_eq!(
        explanation.decision.to_string(),
        "denied by Deny rule[0] of role \"no-alpha\" (policy.yaml:8)"
    );
}

#[test]
fn roles_of_lists_defined_roles_sorted_once() {
    let set = fixture();
    let token_roles = vec!["deny-all".to_owned(), "ghost".to_owned(), "all".to_owned()];
    let principal = Principal {
        subject: "alice",
        issuer: Some("https://a.example/"),
        token_roles: &token_roles,
    };
    assert_eq!(
        set.roles_of(&principal),
        ["all", "beta-only", "deny-all", "no-alpha"]
    );
    let stranger = Principal {
        subject: "nobody",
        issuer: None,
        token_roles: &[],
    };
    assert!(set.roles_of(&stranger).is_empty());
}

#[test]
fn decide_role_judges_one_role() {
    let set = fixture();
    let alpha = set.zambda("alpha").expect("alpha is in the catalog");
    let beta = set.zambda("beta").expect("beta is in the catalog");
    let allowed = |role, zambda| set.decide_role(role, zambda).map(|d| d.allowed);
    assert_eq!(allowed("all", alpha), Some(true));
    assert_eq!(allowed("no-alpha", alpha), Some(false));
    assert_eq!(allowed("beta-only", alpha), Some(false));
    assert_eq!(allowed("beta-only", beta), Some(true));
    assert_eq!(allowed("ghost", beta), None);
}

#[test]
fn stats_count_zambda_facing_and_inert_rules() {
    let set = fixture();
    let stats = set.stats();
    assert_eq!((stats.zambdas, stats.roles, stats.actors), (3, 4, 4));
    // Only `FHIR:Read` on `FHIR:Patient` is inert.
    assert_eq!((stats.zambda_rules, stats.inert_rules), (7, 1));
    assert_eq!(stats.rules(), 8);
}

#[test]
fn a_zambda_from_another_set_is_decided_by_its_id() {
    let old = fixture();
    // The same Zambdas in another order, and one more: indexes differ.
    let catalog = format!(
        "zambdas:\n  - {{id: new-one, name: delta}}\n  - {{id: {BETA_ID}, name: beta}}\n  - {{id: {ALPHA_ID}, name: alpha}}\n"
    );
    let new = load(&[("catalog.yaml", &catalog), ("policy.yaml", FIXTURE)])
        .expect("loads")
        .set;
    let bob = Principal {
        subject: "bob",
        issuer: None,
        token_roles: &[],
    };
    let alpha = old.zambda("alpha").expect("alpha is in the catalog");
    let beta = old.zambda("beta").expect("beta is in the catalog");
    let gamma = old.zambda("gamma").expect("gamma is in the catalog");
    assert_eq!(
        new.decide(&bob, alpha),
        new.decide(&bob, new.zambda("alpha").unwrap())
    );
    assert!(new.decide(&bob, alpha).allowed);
    assert!(!new.decide(&bob, beta).allowed);
    assert_eq!(new.decide(&bob, gamma), Decision::IMPLICIT_DENY);
    // Gone from the new catalog, even when a new Zambda is named after its
    // id: nothing to allow.
    let renamed = "zambdas:\n  - {id: other, name: aaaaaaaa-0000-4000-8000-000000000003}\n";
    let newer = load(&[("catalog.yaml", renamed), ("policy.yaml", FIXTURE)])
        .expect("loads")
        .set;
    let all = ["all".to_owned()];
    let holder = Principal {
        subject: "anyone",
        issuer: None,
        token_roles: &all,
    };
    assert!(
        newer
            .decide(&holder, newer.zambda("other").unwrap())
            .allowed
    );
    assert_eq!(newer.decide(&holder, gamma), Decision::IMPLICIT_DENY);
    assert_eq!(Set::empty().decide(&bob, alpha), Decision::IMPLICIT_DENY);
}

#[test]
fn unknown_zambdas_in_rules_are_warnings() {
    let set = load(&[
        ("catalog.yaml", CATALOG),
        ("p.yaml", "roles:\n  - name: r\n    access_policy:\n      rule:\n        - {action: \"*\", resource: Zambda:Function:nowhere, effect: Deny}\n"),
    ])
    .expect("loads");
    let warnings: Vec<String> = set.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["p.yaml:5: roles[0] (r).access_policy.rule[0]: Zambda \"nowhere\" is not in the catalog"]
    );
}

#[test]
fn the_set_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Set>();
    shared::<Loaded>();
    shared::<LoadErrors>();
}

#[test]
fn empty_files_and_sections_are_empty() {
    let loaded = load(&[
        ("a.yaml", ""),
        ("b.yaml", "# only a comment\n"),
        ("c.yaml", "zambdas:\nroles: null\nactors: []\n"),
        ("d.json", " \n"),
        ("e.json", "null"),
        ("f.yaml", "---\n"),
    ])
    .expect("loads");
    assert_eq!(loaded.set.stats().zambdas, 0);
    assert_eq!(loaded.files.len(), 6);
}

// ---------------------------------------------------------------------------
// Load errors: every error, with file, entry and line

#[test]
fn errors_name_file_entry_and_line() {
    let roles = "\
roles:
  - name: ok
    access_policy:
      rule:
        - action: Zambda:InvokeFunction
          resource: Zambda:Function:*
          effect: Allow
  - name: lab-integrations
    access_policy:
      rule:
        - action: Zambda:InvokeFunction
          resource: Zambda:Function:alpha
          effect: Allow
        - action: Zambda:invokeFunction
          resource: Zambda:Function:lab-*
          effect: Deny
";
    let actors = "\
actors:
  - subject: bob
    roles: [ok]
  - subject: eve
    roles:
      - ok
      - missing
";
    let errors = load(&[
        ("catalog.yaml", CATALOG),
        ("roles.yaml", roles),
        ("actors.yaml", actors),
    ])
    .expect_err("invalid");
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "roles.yaml:14: roles[1] (lab-integrations).access_policy.rule[1]: action \"Zambda:invokeFunction\": the action is written `Zambda:InvokeFunction`",
            "roles.yaml:14: roles[1] (lab-integrations).access_policy.rule[1]: resource \"Zambda:Function:lab-*\": partial wildcards are not supported; write `*` or a full id or name",
            "actors.yaml:7: actors[1] (eve).roles[1]: role \"missing\" is not defined",
        ]
    );
    let first = &errors.0[0];
    assert_eq!(first.file, PathBuf::from("roles.yaml"));
    assert_eq!(first.line, Some(14));
    assert_eq!(
        first.entry.as_deref(),
        Some("roles[1] (lab-integrations).access_policy.rule[1]")
    );
    assert_eq!(errors.to_string(), lines.join("\n"));
}

#[test]
fn syntax_errors_carry_their_line_and_other_files_still_report() {
    let broken = "actors:\n  - subject: a\n   roles: [x]\n";
    let duplicate = "zambdas:\n  - id: one-id\n    name: one\n  - id: two-id\n    name: one\n";
    let errors = load(&[("a.yaml", broken), ("b.yaml", duplicate)]).expect_err("invalid");
    assert_eq!(errors.0.len(), 2, "{errors}");
    assert_eq!(errors.0[0].file, PathBuf::from("a.yaml"));
    assert_eq!(errors.0[0].line, Some(3), "{errors}");
    assert_eq!(
        errors.0[1].to_string(),
        "b.yaml:4: zambdas[1] (one): name \"one\" is already the name of Zambda \"one\" (b.yaml:2)"
    );
}

#[test]
fn json_files_load_and_report_lines() {
    let good = "{\n\t\"roles\": [\n\t\t{\"name\": \"r\", \"accessPolicy\": {\"rule\": [\n\t\t\t{\"action\": \"*\", \"resource\": \"*\", \"effect\": \"Allow\"},\n\t\t\t{\"action\": \"Zambda:*\", \"resource\": \"Zambda:Function:nowhere\", \"effect\": \"Deny\"}\n\t\t]}}\n\t]\n}\n";
    let loaded = load(&[("roles.json", good)]).expect("loads");
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["roles.json:5: roles[0] (r).access_policy.rule[1]: Zambda \"nowhere\" is not in the catalog"]
    );
    let rule = loaded.set.rules.first().expect("one rule");
    assert_eq!(
        rule.to_string(),
        "Allow rule[0] of role \"r\" (roles.json:4)"
    );

    let unknown =
        "{\"actors\": [\n  {\"subject\": \"a\"},\n  {\"subject\": \"b\",\n   \"role\": []}\n]}\n";
    let errors = load(&[("actors.json", unknown)]).expect_err("invalid");
    let error = &errors.0[0];
    assert_eq!(error.line, Some(4));
    assert_eq!(error.entry.as_deref(), Some("actors[1]"));
    assert!(error.message.starts_with("unknown field `role`"), "{error}");
}

#[test]
fn rules_display_where_they_come_from() {
    let loaded = load(&[
        ("policies/catalog.yaml", CATALOG),
        (
            "policies/actors.yaml",
            "actors:\n  - subject: abc@clients\n    access_policy:\n      rule:\n        - action: Zambda:InvokeFunction\n          resource: Zambda:Function:*\n          effect: Deny\n",
        ),
    ])
    .expect("loads");
    let rule = loaded.set.rules.first().expect("one rule");
    assert_eq!(
        rule.to_string(),
        "Deny rule[0] of actor \"abc@clients\" (policies/actors.yaml:5)"
    );
}

// ---------------------------------------------------------------------------
// The line index: the fast block-YAML reader against the YAML parser

/// Block YAML in shapes the fast reader must accept.
const BLOCK_SHAPES: &[&str] = &[
    "---\n# header\nroles:\n- name: a\n  access_policy:\n    rule:\n    - action: x\n      resource: y\n      effect: Allow\n    -   action: z\n        resource: \"w: v\"\n        effect: Deny\n  description: d\nactors: []\n",
    "actors:\n  -\n    subject: a\n    roles:\n      -   r1\n      - 'r2' # comment\n      -\n        r3\n  - subject: b\n    roles: [r1, \"r,2\"]   # flow\n    access_policy: {rule: [{action: \"*\", resource: \"*\", effect: Deny}]}\n  - {subject: c, roles: [r1]}\n",
    "roles:\r\n  - name: a\r\n    description: |\r\n      - not: an item\r\n      rule: x\r\n    accessPolicy:\r\n      rule:\r\n        action: x\r\n        resource: y\r\n        effect: Allow\r\n",
    "zambdas:\n  - id: a\n    name: b\n    type: public\n\n\n  # between entries\n  - id: c\n    name: d # trailing\nroles:\n  - name: long\n    description: a plain scalar\n      that goes on\n      and on, with commas\n    access_policy:\n      \"rule\":\n        - action: [FHIR:Read, Zambda:InvokeFunction]\n          resource:\n            - FHIR:Patient\n            - Zambda:Function:b\n          effect: Allow\n          condition:\n            ForAllValues:StringEquals:\n              - a\n              - {b: c}\n        - {action: \"*\", resource: \"*\", effect: Deny}\n        - \"not a rule\"\n",
    "other: 1\nroles:\nactors:\nzambdas: []\n",
    // Oystehr's objects: bare rule lists (deeper and at the key's column),
    // M2M clients and defaults naming roles by stub.
    "roles:\n  - id: r1\n    name: a\n    memberCount: 3\n    accessPolicy:\n      - action: \"*\"\n        resource: \"*\"\n        effect: Allow\n      - {action: x, resource: y, effect: Deny}\n  - name: b\n    accessPolicy:\n    - action: x\n      resource: y\n      effect: Allow\n  - name: c\n    accessPolicy: [{action: x, resource: y, effect: Allow}]\nm2ms:\n  - clientId: c1\n    roles:\n      - {id: r1, name: a}\n      - id: r1\n        name: a\n      - b\n    accessPolicy:\n      rule:\n        - {action: x, resource: y, effect: Allow}\ndefaults:\n  - issuer: https://i.example/\n    roles: [a, {id: r1}]\n  - issuer: j\n    roles:\n    - a\n",
];

/// YAML the fast reader must leave to the parser.
const PARSER_SHAPES: &[&str] = &[
    "roles:\n  - &base\n    name: a\n",
    "roles:\n  - name: a\n    access_policy:\n      rule: [\n        {action: x, resource: y, effect: Allow}\n      ]\n",
    "roles:\n  - name: \"a\n    b\"\n",
    "roles:\n\t- name: a\n",
    "{\"roles\": []}\n",
    "roles: [{name: a, access_policy: {rule: []}}]\n",
    "roles:\n  - name: a\n---\nroles: []\n",
    "actors:\n  - subject: a\n    roles: *all\n",
];

/// Asserts that the fast reader agrees with the parser on `text` (where it
/// reads it at all) and returns whether it did.
fn same_lines(text: &str) -> bool {
    let Some(fast) = text::lines::block::index(text) else {
        return false;
    };
    let slow = text::lines::Lines::walk(text, false);
    same(&fast, &slow, text);
    true
}

/// Asserts that two line indexes of `text` agree on everything asked of
/// them (entries' first lines, rules' and roles' lines).
fn same(fast: &text::lines::Lines, slow: &text::lines::Lines, text: &str) {
    for section in text::lines::Section::ALL {
        let firsts = |lines: &text::lines::Lines| {
            let count = (0..)
                .take_while(|&i| lines.entry(section, i).is_some())
                .count();
            (0..count)
                .map(|i| lines.entry(section, i))
                .collect::<Vec<_>>()
        };
        assert_eq!(firsts(fast), firsts(slow), "{} in {text}", section.key());
    }
    for section in text::lines::Section::ALL {
        let entries = match section {
            text::lines::Section::Zambdas => &slow.zambdas,
            text::lines::Section::Roles => &slow.roles,
            text::lines::Section::Actors => &slow.actors,
            text::lines::Section::M2ms => &slow.m2ms,
            text::lines::Section::Defaults => &slow.defaults,
        };
        for (i, entry) in entries.iter().enumerate() {
            for (j, &line) in entry.rules.iter().enumerate() {
                assert_eq!(
                    fast.rule(section, i, j),
                    Some(line),
                    "rule {i}.{j} in {text}"
                );
            }
            for (k, &line) in entry.roles.iter().enumerate() {
                assert_eq!(
                    fast.role(section, i, k),
                    Some(line),
                    "role {i}.{k} in {text}"
                );
            }
        }
    }
}

/// JSON in shapes the fast reader must accept (and agree on).
const JSON_SHAPES: &[&str] = &[
    "{\n\t\"roles\": [\n\t\t{\"name\": \"r\", \"accessPolicy\": {\"rule\": [\n\t\t\t{\"action\": \"*\", \"resource\": \"*\", \"effect\": \"Allow\"},\n\t\t\t{\n\t\t\t\"action\": \"Zambda:*\", \"resource\": [\"a\", \"b\\\"c\"], \"effect\": \"Deny\"}\n\t\t]}}\n\t]\n}\n",
    "{\"actors\":[{\"subject\":\"a\",\"roles\":[\n\"x\",\n\"y\"],\n\"access_policy\":{\"rule\":\n{\"action\":\"*\",\"resource\":\"*\",\"effect\":\"Deny\",\"condition\":{\"a\":[1,2.5e3,true,null,{}]}}}},\n{}, 3, \"s\"],\n\"zambdas\": [{\"id\": \"z\", \"name\": \"n\"}], \"other\": {\"roles\": [1]}}",
    "{}",
    "  {\"roles\": null, \"actors\": []}  \n",
    "{\"roles\": [{\"id\": \"r1\", \"name\": \"a\", \"accessPolicy\": [\n {\"action\": \"*\", \"resource\": \"*\", \"effect\": \"Allow\"},\n {\"action\": \"x\", \"resource\": \"y\", \"effect\": \"Deny\"}]}],\n \"m2ms\": [{\"clientId\": \"c1\",\n  \"roles\": [{\"id\": \"r1\", \"name\": \"a\"},\n   \"a\"]}],\n \"defaults\": [{\"issuer\": \"i\", \"roles\": [\n\"a\"]}]}\n",
];

/// Asserts that the fast JSON reader agrees with the parser on `text`.
fn same_json_lines(text: &str) -> bool {
    let Some(fast) = text::lines::json::index(text) else {
        return false;
    };
    let slow = text::lines::Lines::walk(text, true);
    same(&fast, &slow, text);
    true
}

#[test]
fn the_fast_json_reader_agrees_with_the_parser() {
    for text in JSON_SHAPES {
        assert!(
            serde_json::from_str::<serde_json::Value>(text).is_ok(),
            "invalid:\n{text}"
        );
        assert!(same_json_lines(text), "not read fast:\n{text}");
    }
    for text in ["{\"ro\\u006ces\": []}", "[1]", "{\"roles\": [}", "{} x"] {
        assert!(
            text::lines::json::index(text).is_none(),
            "read fast:\n{text}"
        );
    }
    // The catalog, the fixture and the shipped policies, as JSON.
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
    let mut texts: Vec<String> = vec![CATALOG.to_owned(), FIXTURE.to_owned(), real_role()];
    for name in ["catalog.yaml", "roles.yaml", "actors.yaml"] {
        texts.push(std::fs::read_to_string(dir.join(name)).expect("shipped file"));
    }
    let mut random = seeded_random();
    for yaml in texts {
        let value: serde_json::Value = serde_yaml::from_str(&yaml).expect("valid YAML");
        let compact = serde_json::to_string(&value).unwrap();
        for json in [
            compact.clone(),
            serde_json::to_string_pretty(&value).unwrap(),
        ] {
            assert!(same_json_lines(&json), "not read fast:\n{json}");
        }
        // Line breaks anywhere between tokens.
        for _ in 0..200 {
            let mut json = String::new();
            let mut in_string = false;
            let mut previous = ' ';
            for c in compact.chars() {
                let between = !in_string && matches!(c, '{' | '[' | '"' | ',' | ':' | '}' | ']');
                if between && random(4) == 0 {
                    json.push_str(if random(2) == 0 { "\n" } else { "\n\t " });
                }
                if c == '"' && previous != '\\' {
                    in_string = !in_string;
                }
                json.push(c);
                previous = c;
            }
            assert!(
                serde_json::from_str::<serde_json::Value>(&json).is_ok(),
                "{json}"
            );
            assert!(same_json_lines(&json), "not read fast:\n{json}");
        }
    }
}

#[test]
fn the_fast_line_reader_agrees_with_the_parser() {
    for text in BLOCK_SHAPES {
        assert!(
            serde_yaml::from_str::<serde_yaml::Value>(text).is_ok(),
            "invalid:\n{text}"
        );
        assert!(same_lines(text), "not read fast:\n{text}");
    }
    for text in PARSER_SHAPES {
        assert!(
            text::lines::block::index(text).is_none(),
            "read fast:\n{text}"
        );
    }
    let mut texts: Vec<String> = vec![CATALOG.to_owned(), FIXTURE.to_owned(), real_role()];
    for case in cases() {
        texts.extend(case.files.into_iter().map(|(_, text)| text));
    }
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
    for name in ["catalog.yaml", "roles.yaml", "actors.yaml"] {
        texts.push(std::fs::read_to_string(dir.join(name)).expect("shipped file"));
    }
    texts.retain(|text| serde_yaml::from_str::<serde_yaml::Value>(text).is_ok());
    let fast = texts.iter().filter(|text| same_lines(text)).count();
    // Nearly everything the tests write is block YAML.
    assert!(fast * 10 >= texts.len() * 9, "{fast} of {}", texts.len());

    // Mangled variants: wherever the text is still valid YAML and the fast
    // reader takes it, it must agree with the parser.
    let mut random = seeded_random();
    texts.extend(BLOCK_SHAPES.iter().map(|text| text.to_string()));
    let (mut valid, mut agreed) = (0, 0);
    for round in 0..4000 {
        let base = &texts[round % texts.len()];
        let mut rows: Vec<String> = base.lines().map(str::to_owned).collect();
        for _ in 0..1 + random(3) {
            if rows.is_empty() {
                break;
            }
            let at = random(rows.len());
            let row = rows[at].clone();
            let indent = row.len() - row.trim_start().len();
            match random(9) {
                0 => drop(rows.remove(at)),
                1 => rows.insert(at, row),
                2 => rows[at] = format!("  {row}"),
                3 => rows[at] = row.replacen("  ", "", 1),
                4 => rows.insert(at, "  # note".to_owned()),
                5 => rows[at] = row.replacen("- ", "", 1),
                6 => rows[at] = format!("{}- {}", &row[..indent], &row[indent..]),
                7 => rows[at] = format!(" {row}"),
                _ => rows.insert(
                    at,
                    format!("{}x: |\n{}  - y: z", &row[..indent], &row[..indent]),
                ),
            }
        }
        let text = rows.join("\n");
        if serde_yaml::from_str::<serde_yaml::Value>(&text).is_ok() {
            valid += 1;
            agreed += usize::from(same_lines(&text));
        }
    }
    assert!(valid > 1000 && agreed > valid / 2, "{agreed} of {valid}");
}

// ---------------------------------------------------------------------------
// Directory walks

/// Files a loader splits into pieces, beside `BLOCK_SHAPES`.
const PIECE_SHAPES: &[&str] = &[
    "\u{feff}# header\nzambdas:\n- id: a\n  name: b\n# between sections\n- id: c\n  name: d\nroles:   # the roles\n  - name: r\n    description: |\n      - not: an item\n\n      still text\n    access_policy: {rule: [{action: \"*\", resource: \"*\", effect: Allow}]}\n  -\n    name: s\n    access_policy:\n      rule:\n        action: Zambda:InvokeFunction\n        resource: Zambda:Function:b\n        effect: Deny\n  - {name: t, access_policy: {rule: []}}\n",
    "actors:\r\n  - subject: a\r\n    roles: [r, s]\r\n  # a comment\r\n  - subject: b\r\n    issuer: i\r\n    roles:\r\n      - r\r\n      - s\r\n    access_policy:\r\n      rule:\r\n        - action: [Zambda:InvokeFunction]\r\n          resource: [Zambda:Function:b]\r\n          effect: Allow\r\n          condition: null\r\n",
    "roles:\n  - name: a\n    access_policy:\n      rule: &rules\n        - {action: \"*\", resource: \"*\", effect: Allow}\n  - name: b\n    access_policy:\n      rule: *rules\n",
    "roles:\n  - name: \"a\n  - b\"\n    access_policy: {rule: []}\n  - name: c\n    access_policy: {rule: []}\n",
    "roles:\n  - name: a\n    access_policy: {rule: []}\n  - name: a\n    access_policy: {rule: []}\nactors:\n  - subject: s\n    roles: [a, b]\n",
    "zambdas:\n  - {name: n, triggerMethod: cron, schedule: {expression: x}}\n  - name: m\nm2ms:\n  - clientId: c1\n    roles:\n      - {id: r1, name: a}\n    accessPolicy:\n      - {action: x, resource: y, effect: Allow}\n  - clientId: c2\ndefaults:\n  - issuer: i\n    roles: [a]\n  - issuer: j\n    roles:\n      - id: r1\n        name: a\n",
];

/// Parses `text` in pieces of about `size` bytes, as a large file is
/// loaded: `None` when it is not split or a piece does not parse alone.
fn in_pieces(text: &str, size: usize) -> Option<(text::file::File, text::lines::Lines)> {
    let pieces = text::split::split(text, size).filter(|pieces| pieces.len() > 1)?;
    let path = Path::new("p.yaml");
    let parsed: Option<Vec<_>> = pieces
        .iter()
        .map(|piece| text::parse_piece(path, piece))
        .collect();
    Some(text::merge(parsed?))
}

/// Asserts that `text` parsed in pieces (where it is) is `text` parsed
/// whole, and returns whether it was.
fn same_in_pieces(text: &str, size: usize) -> bool {
    let Some((content, lines)) = in_pieces(text, size) else {
        return false;
    };
    let whole = text::deserialize(Path::new("p.yaml"), text)
        .unwrap_or_else(|e| panic!("parsed in pieces, not whole ({e}):\n{text}"));
    assert_eq!(format!("{content:?}"), format!("{whole:?}"), "{text}");
    // Each piece may be indexed by the fast reader or the parser: the
    // lines they answer agree.
    let whole_lines = text::lines::Lines::index(text, false);
    same(&lines, &whole_lines, text);
    same(&whole_lines, &lines, text);
    true
}

#[test]
fn a_file_parsed_in_pieces_is_the_file_parsed_whole() {
    for (text, pieced) in PIECE_SHAPES
        .iter()
        .zip([true, true, false, false, true, true])
    {
        assert_eq!(same_in_pieces(text, 1), pieced, "{text}");
    }
    for text in [
        "---\nroles:\n  - name: a\n",
        "roles: []\nactors:\n  - subject: a\n",
        "roles:\nactors:\n  - subject: a\n  - subject: b\n",
        "roles:\n  - name: a\nother: 1\n",
        "roles:\n  - name: a\nroles:\n  - name: b\n",
        "roles:\n  - name: a\n - name: b\n",
    ] {
        assert!(text::split::split(text, 1).is_none(), "split:\n{text}");
    }
    let mut texts: Vec<String> = vec![CATALOG.to_owned(), FIXTURE.to_owned(), real_role()];
    texts.extend(
        BLOCK_SHAPES
            .iter()
            .chain(PIECE_SHAPES)
            .map(|text| text.to_string()),
    );
    for case in cases() {
        texts.extend(case.files.into_iter().map(|(_, text)| text));
    }
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
    for name in ["catalog.yaml", "roles.yaml", "actors.yaml"] {
        texts.push(std::fs::read_to_string(dir.join(name)).expect("shipped file"));
    }
    texts.retain(|text| same_in_pieces(text, 1));
    assert!(texts.len() >= 20, "{}", texts.len());

    // Mangled variants: wherever every piece parses, the whole parses to
    // the same file and the same lines.
    let mut random = seeded_random();
    let mut agreed = 0;
    for round in 0..4000 {
        let base = &texts[round % texts.len()];
        let mut rows: Vec<String> = base.split('\n').map(str::to_owned).collect();
        for _ in 0..1 + random(3) {
            let at = random(rows.len());
            let row = rows[at].clone();
            match random(6) {
                0 => drop(rows.remove(at)),
                1 => rows.insert(at, row),
                2 => rows[at] = format!("  {row}"),
                3 => rows[at] = row.trim_start().to_owned(),
                4 => rows[at] = row.replacen("  ", "", 1),
                _ => rows.insert(
                    at,
                    format!("{}- x", &row[..row.len() - row.trim_start().len()]),
                ),
            }
            if rows.is_empty() {
                break;
            }
        }
        agreed += usize::from(same_in_pieces(&rows.join("\n"), 1 + random(100)));
    }
    assert!(agreed > 300, "{agreed}");
}

#[test]
fn a_large_file_loads_in_pieces_with_the_errors_of_the_whole() {
    let mut text = "zambdas:\n  - id: alpha\n    name: alpha-fn\nroles:\n".to_owned();
    let mut roles = 0;
    while text.len() < 4 * text::PIECE_BYTES {
        text.push_str(&format!(
            "  - name: role-{roles}\n    access_policy:\n      rule:\n        - action: [Zambda:InvokeFunction]\n          resource: [Zambda:Function:alpha]\n          effect: Allow\n"
        ));
        roles += 1;
    }
    let path = Path::new("big.yaml");
    let line_of = |text: &str, needle: &str| {
        text.lines()
            .position(|line| line.ends_with(needle))
            .map(|i| i + 1)
    };
    let loaded = load_texts(&[(path, &text)]).expect("valid");
    assert_eq!(loaded.set.stats().roles, roles);
    let last = format!("role-{}", roles - 1);
    let role = loaded.set.role(&last).expect("defined");
    assert_eq!(role.line, line_of(&text, &format!(" {last}")));

    // An error deep in the file reads as when the file is parsed whole.
    let bad = text.replacen(
        "  - name: role-5000\n",
        "  - name: role-5000\n    colour: red\n",
        1,
    );
    let errors = load_texts(&[(path, &bad)]).expect_err("invalid");
    let whole = text::deserialize(path, &bad).expect_err("invalid");
    assert_eq!(errors.0, vec![whole]);
    assert_eq!(errors.0[0].line, line_of(&bad, "colour: red"));

    // An alias to an anchor in another piece loads, parsed whole.
    let aliased = text
        .replacen("      rule:\n", "      rule: &first\n", 1)
        .replacen(
            &format!("  - name: {last}\n    access_policy:\n      rule:\n        - action: [Zambda:InvokeFunction]\n          resource: [Zambda:Function:alpha]\n          effect: Allow\n"),
            &format!("  - name: {last}\n    access_policy:\n      rule: *first\n"),
            1,
        );
    assert_ne!(aliased, text);
    let loaded = load_texts(&[(path, &aliased)]).expect("valid");
    assert_eq!(loaded.set.stats().rules(), roles);
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create dir");
    }
    std::fs::write(path, text).expect("write file");
}

fn relative(loaded: &Loaded, root: &Path) -> Vec<String> {
    loaded
        .files
        .iter()
        .map(|file| {
            let file = file.strip_prefix(root).expect("under root");
            file.to_string_lossy().into_owned()
        })
        .collect()
}

fn zambda(id: &str) -> String {
    format!("zambdas:\n  - id: {id}\n    name: name-{id}\n")
}

#[test]
fn walk_recurses_in_name_order_and_skips_tests_and_hidden_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("b.yaml"), &zambda("b"));
    write(
        &root.join("a.json"),
        "{\"zambdas\": [{\"id\": \"a\", \"name\": \"name-a\"}]}",
    );
    write(&root.join("sub/c.yml"), &zambda("c"));
    write(&root.join("sub/deeper/d.yaml"), &zambda("d"));
    write(&root.join("a0/e.yaml"), &zambda("e"));
    write(&root.join("cases.test.yaml"), "not: [policy");
    write(&root.join("sub/cases.test.json"), "{");
    write(&root.join("cases.test.yml"), "{");
    write(&root.join(".hidden.yaml"), "{");
    write(&root.join(".git/config.yaml"), "{");
    write(&root.join("README.md"), "# not a policy");
    let loaded = load_dir(root).expect("loads");
    assert_eq!(
        relative(&loaded, root),
        [
            "a.json",
            "a0/e.yaml",
            "b.yaml",
            "sub/c.yml",
            "sub/deeper/d.yaml"
        ]
    );
    let ids: Vec<&str> = loaded.set.zambdas().map(|z| z.id.as_str()).collect();
    assert_eq!(ids, ["a", "e", "b", "c", "d"]);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[cfg(unix)]
#[test]
fn walk_reads_a_configmap_volume_once() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let data = root.join("..2024_01_01_00_00_00.123");
    write(&data.join("catalog.yaml"), CATALOG);
    write(
        &data.join("actors.yaml"),
        &allow("*", "Zambda:Function:alpha"),
    );
    write(&data.join("cases.test.yaml"), "{");
    symlink("..2024_01_01_00_00_00.123", root.join("..data")).expect("symlink");
    for name in ["catalog.yaml", "actors.yaml", "cases.test.yaml"] {
        symlink(format!("..data/{name}"), root.join(name)).expect("symlink");
    }
    let loaded = load_dir(root).expect("loads");
    assert_eq!(relative(&loaded, root), ["actors.yaml", "catalog.yaml"]);
    let alpha = loaded.set.zambda("alpha").expect("alpha");
    let alice = Principal {
        subject: "alice",
        issuer: None,
        token_roles: &[],
    };
    assert!(loaded.set.decide(&alice, alpha).allowed);
}

#[cfg(unix)]
#[test]
fn walk_follows_symlinks_once_and_survives_loops() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("real");
    write(&real.join("a.yaml"), &zambda("a"));
    write(&real.join("sub/b.yaml"), &zambda("b"));
    symlink(&real, real.join("sub/loop")).expect("symlink");
    symlink(real.join("sub"), real.join("again")).expect("symlink");
    symlink(real.join("a.yaml"), real.join("same.yaml")).expect("symlink");
    // The directory itself may be a symlink.
    let link = dir.path().join("link");
    symlink(&real, &link).expect("symlink");
    let loaded = load_dir(&link).expect("loads");
    assert_eq!(relative(&loaded, &link), ["a.yaml", "again/b.yaml"]);
}

#[cfg(unix)]
#[test]
fn walk_reports_dangling_symlinks() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().expect("tempdir");
    symlink(dir.path().join("gone.yaml"), dir.path().join("x.yaml")).expect("symlink");
    let errors = load_dir(dir.path()).expect_err("invalid");
    assert_eq!(errors.0.len(), 1);
    assert!(errors.0[0].message.starts_with("cannot read"), "{errors}");
}

#[test]
fn a_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let errors = load_dir(&missing).expect_err("missing");
    assert_eq!(
        errors.to_string(),
        format!("{}: policy directory does not exist", missing.display())
    );
    let file = dir.path().join("file.yaml");
    write(&file, "");
    assert!(load_dir(&file).is_err());
}

#[test]
fn an_empty_directory_is_an_empty_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("notes.txt"), "not a policy");
    let loaded = load_dir(dir.path()).expect("loads");
    assert_eq!(loaded.set.stats(), Stats::default());
    assert!(loaded.files.is_empty());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let alpha = load(&[("c.yaml", CATALOG)]).expect("loads");
    let alpha = alpha.set.zambda("alpha").expect("alpha");
    let anyone = Principal {
        subject: "alice",
        issuer: None,
        token_roles: &[],
    };
    assert_eq!(loaded.set.decide(&anyone, alpha), Decision::IMPLICIT_DENY);
}

// ---------------------------------------------------------------------------
// The shipped example policies

#[test]
fn shipped_policies_decide_as_documented() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
    let loaded = match load_dir(dir) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("shipped policies do not load:\n{errors}"),
    };
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let set = &loaded.set;
    let kinds: Vec<(&str, ZambdaKind)> = set.zambdas().map(|z| (z.name.as_str(), z.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("lab-results-ingest", ZambdaKind::Authenticated),
            ("patient-summary", ZambdaKind::Authenticated),
            ("billing-export", ZambdaKind::Authenticated),
            ("appointment-slots", ZambdaKind::Public),
        ]
    );
    assert_eq!(
        set.zambda("2419a78e-4c0a-411d-b8e2-90dc081f5efa")
            .map(|z| z.name.as_str()),
        Some("lab-results-ingest")
    );
    let mut names: Vec<&str> = set.role_names().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["clinician", "inactive", "lab-integrations", "no-billing"]
    );

    // (subject, Zambda, deciding rule or None for "no rule allows")
    let lab = (
        "Allow rule[0] of role \"lab-integrations\"",
        "roles.yaml:14)",
    );
    let clinician = ("Allow rule[0] of role \"clinician\"", "roles.yaml:25)");
    let no_billing = ("Deny rule[0] of role \"no-billing\"", "roles.yaml:41)");
    let inactive = ("Deny rule[0] of role \"inactive\"", "roles.yaml:51)");
    let ops = (
        "Allow rule[0] of actor \"ops-bot@clients\"",
        "actors.yaml:24)",
    );
    let expectations = [
        ("lab-bot@clients", "lab-results-ingest", Some(lab)),
        ("lab-bot@clients", "patient-summary", None),
        ("lab-bot@clients", "billing-export", None),
        ("dr-alice", "patient-summary", Some(clinician)),
        ("dr-alice", "lab-results-ingest", Some(clinician)),
        ("dr-alice", "appointment-slots", Some(clinician)),
        ("dr-alice", "billing-export", Some(no_billing)),
        ("ops-bot@clients", "billing-export", Some(ops)),
        ("ops-bot@clients", "patient-summary", None),
        ("former-staff", "patient-summary", Some(inactive)),
        ("former-staff", "lab-results-ingest", Some(inactive)),
        ("former-staff", "appointment-slots", Some(inactive)),
        ("stranger", "appointment-slots", None),
    ];
    for (subject, zambda, deciding) in expectations {
        let principal = Principal {
            subject,
            issuer: Some("https://auth.example.com/"),
            token_roles: &[],
        };
        let zambda = set.zambda(zambda).expect("in the catalog");
        let decision = set.decide(&principal, zambda);
        let rule = decision.deciding.map(ToString::to_string);
        match deciding {
            Some((prefix, place)) => {
                let rule = rule.unwrap_or_default();
                assert!(
                    rule.starts_with(prefix),
                    "{subject} on {}: {rule}",
                    zambda.name
                );
                assert!(
                    rule.ends_with(place),
                    "{subject} on {}: {rule}",
                    zambda.name
                );
                assert_eq!(decision.allowed, prefix.starts_with("Allow"));
            }
            None => assert_eq!(rule, None, "{subject} on {}", zambda.name),
        }
        assert_eq!(set.explain(&principal, zambda).decision, decision);
    }
    let alice = Principal {
        subject: "dr-alice",
        issuer: None,
        token_roles: &[],
    };
    assert_eq!(set.roles_of(&alice), ["clinician", "no-billing"]);
    assert_eq!(set.stats().inert_rules, 1);
}

// ---------------------------------------------------------------------------
// Scale (run with `cargo test --release -- --ignored --nocapture scale`)

/// The targets: loading 10k Zambdas, 10k roles, 100k actors and 200k rules
/// within a second, and a median decision within a microsecond for actors
/// picked at random (the cache-cold case). Wall-clock bounds: run it on a
/// quiet machine; the CPU time it prints is the steadier figure.
#[test]
#[ignore = "slow: builds 100k actors and 200k rules"]
fn scale() {
    use std::fmt::Write as _;
    use std::time::Instant;

    let dir = tempfile::tempdir().expect("tempdir");
    let (zambdas, roles, actors) = (10_000, 10_000, 100_000);
    let mut catalog = String::from("zambdas:\n");
    for z in 0..zambdas {
        let _ = write!(
            catalog,
            "  - id: 00000000-0000-4000-8000-{z:012}\n    name: fn-{z}\n"
        );
    }
    write(&dir.path().join("catalog.yaml"), &catalog);
    // 10k roles x 10 rules = 100k rules, in 2 files; 100k actors x 1 rule
    // = 100k rules, in 4 files (one per team, say).
    let role_files = 2;
    for file in 0..role_files {
        let mut text = String::from("roles:\n");
        for r in (file..roles).step_by(role_files) {
            let _ = write!(
                text,
                "  - name: role-{r}\n    access_policy:\n      rule:\n"
            );
            for k in 0..10 {
                let z = (r * 7 + k * 13) % zambdas;
                let effect = if k == 9 { "Deny" } else { "Allow" };
                let resource = if k == 0 && r % 100 == 0 {
                    "Zambda:Function:*".to_owned()
                } else {
                    format!("Zambda:Function:fn-{z}")
                };
                let _ = write!(
                    text,
                    "        - action: Zambda:InvokeFunction\n          resource: {resource}\n          effect: {effect}\n"
                );
            }
        }
        write(&dir.path().join(format!("roles-{file}.yaml")), &text);
    }
    let actor_files = 4;
    for file in 0..actor_files {
        let mut text = String::from("actors:\n");
        for a in (file..actors).step_by(actor_files) {
            let _ = write!(
                text,
                "  - subject: client-{a}@clients\n    roles: [role-{}, role-{}]\n    access_policy:\n      rule:\n        - action: Zambda:InvokeFunction\n          resource: Zambda:Function:fn-{}\n          effect: Allow\n",
                a % roles,
                (a * 31) % roles,
                a % zambdas
            );
        }
        write(&dir.path().join(format!("actors/team-{file}.yaml")), &text);
    }

    // CPU time tells the load's cost apart from other work on the machine.
    let cpu = || -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    };
    let (start, cpu_start) = (Instant::now(), cpu());
    let loaded = load_dir(dir.path()).expect("loads");
    let load_time = start.elapsed();
    let cpu_ticks = cpu().zip(cpu_start).map(|(end, start)| end - start);
    let set = &loaded.set;
    let stats = set.stats();
    assert_eq!(stats.zambda_rules, 200_000);
    println!("load: {load_time:?}, CPU {cpu_ticks:?} ticks, {stats:?}");

    println!(
        "sizes: Rule {} Actor {} Role {} Zambda {}",
        std::mem::size_of::<Rule>(),
        std::mem::size_of::<Actor>(),
        std::mem::size_of::<Role>(),
        std::mem::size_of::<Zambda>()
    );
    let token_roles = vec!["role-5".to_owned(), "role-77".to_owned()];
    let zs: Vec<&Zambda> = set.zambdas().collect();
    let subjects: Vec<String> = (0..actors).map(|a| format!("client-{a}@clients")).collect();
    let n = 1_000_000;
    let mut times = Vec::with_capacity(n / 1000);
    let mut allowed = 0;
    for batch in 0..n / 1000 {
        let start = Instant::now();
        for i in 0..1000 {
            let k = batch * 1000 + i;
            let principal = Principal {
                subject: &subjects[(k * 104_729) % actors],
                issuer: Some("https://auth.example.com/"),
                token_roles: &token_roles,
            };
            let zambda = zs[(k * 7919) % zs.len()];
            allowed += usize::from(set.decide(&principal, zambda).allowed);
        }
        times.push(start.elapsed() / 1000);
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
    println!("decide, random actors: median {median:?} per call, {allowed} allowed");
    let start = Instant::now();
    for k in 0..n {
        let principal = Principal {
            subject: &subjects[k % 64],
            issuer: Some("https://auth.example.com/"),
            token_roles: &token_roles,
        };
        let zambda = zs[(k * 7919) % 64];
        allowed += usize::from(set.decide(&principal, zambda).allowed);
    }
    println!(
        "decide, 64 hot actors: mean {:?} per call ({allowed} allowed in all)",
        start.elapsed() / n as u32
    );
    assert!(median.as_nanos() < 1_000, "{median:?}");
    assert!(load_time.as_secs_f64() < 1.0, "{load_time:?}");
}

/// A fixed-seed xorshift generator: `random(n)` is in `0..n` (0 for 0), the
/// same sequence on every run.
pub(super) fn seeded_random() -> impl FnMut(usize) -> usize {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    move |below| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below.max(1) as u64) as usize
    }
}
