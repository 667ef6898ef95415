//! Unit tests for Oystehr's own objects in policy files (SPEC §3, "Oystehr's
//! own objects, unchanged" and "Default roles"): Zambda objects as the API
//! returns them, role ids and stubs, M2M clients and default roles. Each
//! loading rule has a row in one table; semantics are held against
//! `explain` on a grid of principals.

use std::path::Path;

use super::*;

fn load(files: &[(&str, &str)]) -> Result<Loaded, LoadErrors> {
    let files: Vec<(&Path, &str)> = files
        .iter()
        .map(|(path, text)| (Path::new(*path), *text))
        .collect();
    load_texts(&files)
}

/// What loading one file should give.
#[derive(Debug)]
enum Outcome {
    /// Loads, without warnings.
    Loads,
    /// Loads with a warning containing this.
    Warns(&'static str),
    /// Refused, with an error containing this.
    Refused(&'static str),
}

/// A Zambda object exactly as `zambda.list` returns it (SDK 4.2.6's
/// `ZambdaFunction`).
const ZAMBDA_OBJECT: &str = r#"
zambdas:
  - id: 6ea0c7f2-5d6b-4e38-9a43-3b1f1ae4d7a0
    name: get-patient-profile
    runtime: nodejs20.x
    status: Active
    triggerMethod: http_auth
    fileInfo: {name: get-patient-profile.zip, size: 10342, lastModified: "2026-01-02T03:04:05.000Z"}
    memorySize: 1024
    timeoutInSeconds: 27
    executionRoleId: 0d1c0e5e-7d4a-4c3b-9d0a-2b3c4d5e6f70
"#;

/// Two roles with ids, as `role.get` returns them.
const ROLES: &str = "roles:
  - id: r1
    name: one
    description: the first
    accessPolicy:
      rule:
        - {action: Zambda:InvokeFunction, resource: Zambda:Function:*, effect: Allow}
  - id: r2
    name: two
    accessPolicy: {rule: [{action: \"FHIR:Read\", resource: \"FHIR:Patient\", effect: Allow}]}
";

/// Rows of (name, file, outcome): every new loading rule and its error.
fn loading_rules() -> Vec<(&'static str, String, Outcome)> {
    use Outcome::*;
    let zambda = |fields: &str| format!("zambdas:\n  - name: z\n{fields}");
    vec![
        // Zambda objects.
        ("a Zambda object as the API returns it", ZAMBDA_OBJECT.to_owned(), Loads),
        ("schedule is accepted and unused", zambda("    triggerMethod: cron\n    schedule: {expression: \"cron(0 5 * * ? *)\", start: null}\n"), Loads),
        ("status Inactive is accepted", zambda("    status: Inactive\n"), Loads),
        ("an unknown key is still an error", zambda("    runtme: nodejs20.x\n"), Refused("unknown field `runtme`")),
        ("triggerMethod takes Oystehr's values", zambda("    triggerMethod: subscription\n"), Loads),
        ("type takes Oystehr's values", zambda("    type: http_open\n"), Loads),
        ("type and triggerMethod agreeing in other words", zambda("    type: public\n    triggerMethod: http_open\n"), Loads),
        ("type and triggerMethod disagreeing", zambda("    type: authenticated\n    triggerMethod: http_open\n"), Refused("type \"authenticated\" and triggerMethod \"http_open\" disagree")),
        ("an unknown triggerMethod", zambda("    triggerMethod: queue\n"), Refused("triggerMethod must be `authenticated`, `public`, `http_auth`, `http_open`, `cron` or `subscription`, not \"queue\"")),
        ("an unknown type beside a good triggerMethod", zambda("    type: http\n    triggerMethod: http_auth\n"), Refused("type must be")),
        ("a good type beside an unknown triggerMethod", zambda("    type: public\n    triggerMethod: https\n"), Refused("triggerMethod must be")),
        ("a Zambda without an id", zambda(""), Loads),
        ("a bad name without an id", "zambdas:\n  - name: a b\n".to_owned(), Refused("name \"a b\" must match")),
        ("two id-less Zambdas of one name", "zambdas:\n  - name: z\n  - name: z\n".to_owned(), Refused("name \"z\" is already the name of")),
        ("an id-less name equal to another's id", "zambdas:\n  - {id: z, name: y}\n  - name: z\n".to_owned(), Refused("name \"z\" is the id of Zambda \"y\"")),
        // Rules naming Zambdas missing from the catalog.
        ("a Deny naming an unknown Zambda while ids are missing", format!("{}roles:\n  - name: r\n    accessPolicy: {{rule: [{{action: \"*\", resource: Zambda:Function:other, effect: Deny}}]}}\n", zambda("")), Refused("this Deny names Zambda \"other\", which is not in the catalog")),
        ("a non-invoking Deny naming an unknown Zambda while ids are missing", format!("{}roles:\n  - name: r\n    accessPolicy: {{rule: [{{action: Zambda:ReadLogs, resource: Zambda:Function:other, effect: Deny}}]}}\n", zambda("")), Refused("this Deny names Zambda \"other\"")),
        ("a Deny naming an unknown Zambda with every id known", "zambdas:\n  - {id: i, name: z}\nroles:\n  - name: r\n    accessPolicy: {rule: [{action: \"*\", resource: Zambda:Function:other, effect: Deny}]}\n".to_owned(), Warns("Zambda \"other\" is not in the catalog")),
        ("an Allow naming an unknown Zambda while ids are missing", format!("{}roles:\n  - name: r\n    accessPolicy: {{rule: [{{action: \"*\", resource: Zambda:Function:other, effect: Allow}}]}}\n", zambda("")), Warns("Zambda \"other\" is not in the catalog")),
        // Roles: ids, bare rule lists, references by name, id or stub.
        ("a role as the API returns it, with memberCount", format!("{ROLES}  - {{id: r3, name: three, memberCount: 4, accessPolicy: {{rule: []}}}}\n"), Loads),
        ("accessPolicy as a bare list of rules", format!("{ROLES}  - name: three\n    accessPolicy:\n      - {{action: \"*\", resource: \"*\", effect: Deny}}\n"), Loads),
        ("a bare list still checks its rules", format!("{ROLES}  - name: three\n    accessPolicy:\n      - {{action: \"*\", resource: \"Zambda:Function:x*\", effect: Deny}}\n"), Refused("partial wildcards")),
        ("an unknown key in an accessPolicy object", format!("{ROLES}  - name: three\n    accessPolicy: {{rules: []}}\n"), Refused("unknown field `rules`")),
        ("two roles with one id", format!("{ROLES}  - {{id: r1, name: three, accessPolicy: {{rule: []}}}}\n"), Refused("id \"r1\" is already the id of role \"one\"")),
        ("a role id equal to another role's name", format!("{ROLES}  - {{id: one, name: three, accessPolicy: {{rule: []}}}}\n"), Refused("id \"one\" is the name of role \"one\"")),
        ("a role id equal to its own name", "roles:\n  - {id: same, name: same, accessPolicy: {rule: []}}\n".to_owned(), Loads),
        ("a role id with a comma", "roles:\n  - {id: \"a,b\", name: ab, accessPolicy: {rule: []}}\n".to_owned(), Refused("id \"a,b\" contains a comma")),
        ("an actor naming roles by name and by id", format!("{ROLES}actors:\n  - {{subject: s, roles: [one, r2]}}\n"), Loads),
        ("an actor naming roles by stub", format!("{ROLES}actors:\n  - subject: s\n    roles:\n      - {{id: r1, name: one}}\n      - id: r2\n        name: two\n"), Loads),
        ("a stub without its name", format!("{ROLES}actors:\n  - {{subject: s, roles: [{{id: r2}}]}}\n"), Loads),
        ("an unknown role id", format!("{ROLES}actors:\n  - {{subject: s, roles: [r9]}}\n"), Refused("role \"r9\" is not defined")),
        ("a stub of an unknown id", format!("{ROLES}actors:\n  - {{subject: s, roles: [{{id: r9, name: one}}]}}\n"), Refused("role stub: no role has the id \"r9\"")),
        ("a stub whose id is only a role's name", format!("{ROLES}actors:\n  - {{subject: s, roles: [{{id: one, name: one}}]}}\n"), Refused("role stub: no role has the id \"one\"")),
        ("a stub whose id and name disagree", format!("{ROLES}actors:\n  - {{subject: s, roles: [{{id: r1, name: two}}]}}\n"), Refused("role stub \"r1\" names the role \"two\", but the role with that id is \"one\"")),
        ("a stub with an unknown key", format!("{ROLES}actors:\n  - {{subject: s, roles: [{{id: r1, nam: one}}]}}\n"), Refused("unknown field `nam`")),
        ("one role by name and by id", format!("{ROLES}actors:\n  - {{subject: s, roles: [one, r1]}}\n"), Warns("role \"one\" is listed more than once")),
        ("a Deny naming an id-less Zambda by name", format!("{}roles:\n  - name: r\n    accessPolicy: {{rule: [{{action: \"*\", resource: Zambda:Function:z, effect: Deny}}]}}\n", zambda("")), Loads),
    ]
}

#[test]
fn loading_rules_for_oystehr_objects() {
    let rules = loading_rules();
    for (name, text, outcome) in &rules {
        let result = load(&[("p.yaml", text)]);
        match (outcome, result) {
            (Outcome::Loads, Ok(loaded)) => {
                assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
            }
            (Outcome::Warns(fragment), Ok(loaded)) => {
                let warnings: Vec<String> =
                    loaded.warnings.iter().map(ToString::to_string).collect();
                assert!(
                    warnings.iter().any(|w| w.contains(fragment)),
                    "{name}: no warning contains {fragment:?}: {warnings:?}"
                );
            }
            (Outcome::Refused(fragment), Err(errors)) => assert!(
                errors.0.iter().any(|e| e.to_string().contains(fragment)),
                "{name}: no error contains {fragment:?}:\n{errors}"
            ),
            (outcome, Ok(_)) => panic!("{name}: loads, expected {outcome:?}"),
            (outcome, Err(errors)) => panic!("{name}: refused, expected {outcome:?}:\n{errors}"),
        }
    }
}

#[test]
fn zambda_kinds_and_ids_as_the_catalog_holds_them() {
    let text = "zambdas:
  - {name: signed-in, triggerMethod: http_auth}
  - {name: open, triggerMethod: http_open}
  - {name: nightly, triggerMethod: cron}
  - {name: on-change, type: subscription}
  - {id: 11111111-2222-4333-8444-555555555555, name: plain}
";
    let loaded = load(&[("p.yaml", text)]).expect("loads");
    let set = &loaded.set;
    let kinds: Vec<(&str, ZambdaKind, bool, bool)> = set
        .zambdas()
        .map(|z| {
            let http = z.kind.invocable_over_http();
            (z.name.as_str(), z.kind, z.has_id(), http)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("signed-in", ZambdaKind::Authenticated, false, true),
            ("open", ZambdaKind::Public, false, true),
            ("nightly", ZambdaKind::Cron, false, false),
            ("on-change", ZambdaKind::Subscription, false, false),
            ("plain", ZambdaKind::Authenticated, true, true),
        ]
    );
    assert!(set.any_zambda_without_id());
    // An id-less Zambda is found by its name, and its `id` is that name.
    let nightly = set.zambda("nightly").expect("by name");
    assert_eq!(nightly.id, "nightly");
    let plain = set
        .zambda("11111111-2222-4333-8444-555555555555")
        .expect("by id");
    assert_eq!(plain.name, "plain");
    assert_eq!(ZambdaKind::Cron.to_string(), "cron");
    assert_eq!(ZambdaKind::Subscription.to_string(), "subscription");

    let with_ids = load(&[("p.yaml", "zambdas:\n  - {id: a1, name: a}\n")]).expect("loads");
    assert!(!with_ids.set.any_zambda_without_id());
}

#[test]
fn roles_resolve_by_name_id_and_stub_and_show_names() {
    let text = format!(
        "zambdas:\n  - {{id: z1, name: alpha}}\n{ROLES}actors:\n  - {{subject: by-id, roles: [r1]}}\n  - {{subject: by-stub, roles: [{{id: r1, name: one}}]}}\n"
    );
    let loaded = load(&[("p.yaml", &text)]).expect("loads");
    let set = &loaded.set;
    let alpha = set.zambda("alpha").expect("alpha");
    let token_roles =
        |roles: &[&str]| -> Vec<String> { roles.iter().map(|r| r.to_string()).collect() };
    for (subject, tokens, allowed, held) in [
        ("by-id", &[][..], true, &["one"][..]),
        ("by-stub", &[], true, &["one"]),
        ("nobody", &[], false, &[]),
        ("nobody", &["r1"], true, &["one"]),
        ("nobody", &["one", "r2"], true, &["one", "two"]),
        ("nobody", &["r2", "ghost"], false, &["two"]),
    ] {
        let tokens = token_roles(tokens);
        let principal = Principal {
            subject,
            issuer: None,
            token_roles: &tokens,
        };
        let decision = set.decide(&principal, alpha);
        assert_eq!(decision.allowed, allowed, "{subject} {tokens:?}");
        assert_eq!(set.roles_of(&principal), held, "{subject} {tokens:?}");
        let explanation = set.explain(&principal, alpha);
        assert_eq!(explanation.decision, decision, "{subject} {tokens:?}");
        let ignored: Vec<&str> = tokens
            .iter()
            .filter(|t| set.role(t).is_none())
            .map(String::as_str)
            .collect();
        assert_eq!(explanation.ignored_roles, ignored);
    }
    assert_eq!(set.role("r2").map(|r| r.name.as_str()), Some("two"));
    assert_eq!(set.role("two").and_then(|r| r.id.as_deref()), Some("r2"));
    let by_id = set.decide_role("r1", alpha).expect("r1 is a role");
    assert!(by_id.allowed);
}

/// An M2M client exactly as `m2m.get` returns it (SDK 4.2.6's `M2m`).
const M2M_OBJECT: &str = r#"
m2ms:
  - id: 3c2b1a00-1111-4222-8333-444455556666
    clientId: AbCdEf0123456789
    name: lab results
    description: pushes lab results
    profile: Device/3c2b1a00-1111-4222-8333-444455556666
    jwksUrl: https://lab.example/.well-known/jwks.json
    issuer: https://auth.example/
    accessPolicy:
      rule:
        - {action: "FHIR:Create", resource: "FHIR:Observation", effect: Allow}
    roles:
      - {id: r1, name: one}
"#;

/// Rows for `m2ms` and `defaults`.
fn machine_and_default_rules() -> Vec<(&'static str, String, Outcome)> {
    use Outcome::*;
    vec![
        ("an M2M client as the API returns it", format!("{ROLES}{M2M_OBJECT}"), Loads),
        ("an M2M client without an id, name or roles", "m2ms:\n  - clientId: c1\n".to_owned(), Loads),
        ("an M2M client without a clientId", "m2ms:\n  - {id: x, name: y}\n".to_owned(), Refused("missing field `clientId`")),
        ("an unknown key in an M2M client", "m2ms:\n  - {clientId: c1, secret: s}\n".to_owned(), Refused("unknown field `secret`")),
        ("a clientId that is a subject", "m2ms:\n  - clientId: c1@clients\n".to_owned(), Refused("clientId \"c1@clients\" is not an M2M client id")),
        ("an M2M client naming an undefined role", "m2ms:\n  - {clientId: c1, roles: [{id: r9, name: x}]}\n".to_owned(), Refused("m2ms[0] (c1@clients).roles[0]: role stub: no role has the id \"r9\"")),
        ("an M2M client and an actor of one subject", "actors:\n  - subject: c1@clients\nm2ms:\n  - clientId: c1\n".to_owned(), Refused("m2ms[0] (c1@clients): duplicate actor: subject \"c1@clients\" for any issuer is already defined by actors[0] (c1@clients)")),
        ("two M2M clients of one clientId and issuer", "m2ms:\n  - {clientId: c1, issuer: i}\n  - {clientId: c1, issuer: i}\n".to_owned(), Refused("duplicate actor: subject \"c1@clients\" for issuer \"i\"")),
        ("an M2M client bound to an issuer beside an actor for any", "actors:\n  - subject: c1@clients\nm2ms:\n  - {clientId: c1, issuer: i}\n".to_owned(), Loads),
        ("defaults by name, id and stub", format!("{ROLES}defaults:\n  - issuer: https://auth.example/\n    roles: [one, r2]\n  - issuer: https://other.example/\n    roles: [{{id: r1, name: one}}]\n"), Loads),
        ("defaults without an issuer", format!("{ROLES}defaults:\n  - roles: [one]\n"), Refused("missing field `issuer`")),
        ("defaults without roles", "defaults:\n  - issuer: i\n".to_owned(), Refused("missing field `roles`")),
        ("two defaults for one issuer", format!("{ROLES}defaults:\n  - {{issuer: i, roles: [one]}}\n  - {{issuer: i, roles: [two]}}\n"), Refused("defaults[1] (i): issuer \"i\" already has default roles at p.yaml:")),
        ("defaults naming an undefined role", format!("{ROLES}defaults:\n  - {{issuer: i, roles: [one, ghost]}}\n"), Refused("defaults[0] (i).roles[1]: role \"ghost\" is not defined")),
        ("defaults with a stub that disagrees", format!("{ROLES}defaults:\n  - {{issuer: i, roles: [{{id: r2, name: one}}]}}\n"), Refused("role stub \"r2\" names the role \"one\"")),
        ("defaults with a blank issuer", format!("{ROLES}defaults:\n  - {{issuer: \"\", roles: [one]}}\n"), Refused("issuer \"\" is not an issuer")),
    ]
}

#[test]
fn loading_rules_for_m2ms_and_defaults() {
    for (name, text, outcome) in machine_and_default_rules() {
        let result = load(&[("p.yaml", &text)]);
        match (&outcome, result) {
            (Outcome::Loads, Ok(loaded)) => {
                assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
            }
            (Outcome::Refused(fragment), Err(errors)) => assert!(
                errors.0.iter().any(|e| e.to_string().contains(fragment)),
                "{name}: no error contains {fragment:?}:\n{errors}"
            ),
            (outcome, Ok(_)) => panic!("{name}: loads, expected {outcome:?}"),
            (outcome, Err(errors)) => panic!("{name}: refused, expected {outcome:?}:\n{errors}"),
        }
    }
}

#[test]
fn m2m_clients_and_defaults_report_their_lines() {
    let text = "roles:
  - {id: r1, name: one, accessPolicy: []}
  - name: bad
    accessPolicy:
      - {action: \"*\", resource: \"*\", effect: Allow}
      - {action: \"*\", resource: \"Zambda:Function:x*\", effect: Deny}
m2ms:
  - clientId: c1
    roles:
      - one
      - {id: r1, name: two}
defaults:
  - issuer: i
    roles: [one]
  - issuer: i
    roles:
      - ghost
";
    let errors = load(&[("p.yaml", text)]).expect_err("invalid");
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "p.yaml:6: roles[1] (bad).access_policy.rule[1]: resource \"Zambda:Function:x*\": partial wildcards are not supported; write `*` or a full id or name",
            "p.yaml:11: m2ms[0] (c1@clients).roles[1]: role stub \"r1\" names the role \"two\", but the role with that id is \"one\"",
            "p.yaml:15: defaults[1] (i): issuer \"i\" already has default roles at p.yaml:13; list them in one entry",
            "p.yaml:17: defaults[1] (i).roles[0]: role \"ghost\" is not defined",
        ]
    );
    // The same lines when the parser walks the file (an anchor, which the
    // fast reader leaves to it).
    let walked = text.replacen("  - {id: r1", "  - &first {id: r1", 1);
    assert!(text::lines::block::index(&walked).is_none());
    let errors = load(&[("p.yaml", &walked)]).expect_err("invalid");
    let walked_lines: Vec<Option<usize>> = errors.0.iter().map(|e| e.line).collect();
    assert_eq!(
        walked_lines,
        [Some(6), Some(11), Some(15), Some(17)],
        "{errors}"
    );
    let m2m = load(&[("p.yaml", M2M_OBJECT)]).expect_err("roles undefined");
    assert_eq!(m2m.0.len(), 1, "{m2m}");
    assert_eq!(m2m.0[0].line, Some(14), "{m2m}");
}

// ---------------------------------------------------------------------------
// Semantics: defaults, stubs, ids and M2M clients

const A: &str = "https://a.example/";
const B: &str = "https://b.example/";

/// A project in Oystehr's shapes: roles with ids, a deny-all Inactive role,
/// a default patient role for issuer A, staff listed by role id, M2M
/// clients with role stubs.
const PROJECT: &str = r#"
zambdas:
  - {name: alpha, triggerMethod: http_auth}
  - {name: beta, triggerMethod: http_auth}
  - {name: open, triggerMethod: http_open}
roles:
  - id: 0001-patient
    name: Patient
    accessPolicy:
      - {action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Allow}
  - id: 0002-staff
    name: Staff
    accessPolicy:
      rule:
        - {action: Zambda:InvokeFunction, resource: "Zambda:Function:*", effect: Allow}
        - {action: Zambda:InvokeFunction, resource: Zambda:Function:open, effect: Deny}
  - id: 0003-inactive
    name: Inactive
    accessPolicy: [{action: "*", resource: "*", effect: Deny}]
  - id: 0004-beta
    name: Beta
    accessPolicy: [{action: Zambda:InvokeFunction, resource: Zambda:Function:beta, effect: Allow}]
defaults:
  - issuer: https://a.example/
    roles: [{id: 0001-patient, name: Patient}]
actors:
  - subject: nurse
    roles: [0002-staff]
  - subject: left
    issuer: https://a.example/
    roles: [Inactive]
  - subject: bound-to-b
    issuer: https://b.example/
    roles: [Beta]
m2ms:
  - clientId: lab
    issuer: https://a.example/
    roles: [{id: 0004-beta, name: Beta}]
    accessPolicy: {rule: [{action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Deny}]}
"#;

fn project() -> Set {
    match load(&[("project.yaml", PROJECT)]) {
        Ok(loaded) => loaded.set,
        Err(errors) => panic!("project does not load:\n{errors}"),
    }
}

/// (subject, issuer, token roles, Zambda, allowed, the deciding rule's
/// display prefix or "" for none, roles held).
type Row = (
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
    &'static str,
    bool,
    &'static str,
    &'static [&'static str],
);

#[test]
fn defaults_go_to_unlisted_actors_of_their_issuer_only() {
    let set = project();
    let rows: &[Row] = &[
        // An unlisted user of A holds the default patient role.
        (
            "patient-1",
            Some(A),
            &[],
            "alpha",
            true,
            "Allow rule[0] of role \"Patient\"",
            &["Patient"],
        ),
        ("patient-1", Some(A), &[], "beta", false, "", &["Patient"]),
        // Another issuer has no defaults; without an issuer, none apply.
        ("patient-1", Some(B), &[], "alpha", false, "", &[]),
        ("patient-1", None, &[], "alpha", false, "", &[]),
        // Listed for A (with Inactive): the defaults are taken away.
        (
            "left",
            Some(A),
            &[],
            "alpha",
            false,
            "Deny rule[0] of role \"Inactive\"",
            &["Inactive"],
        ),
        // Listed for B only: for A it is unlisted and holds the defaults.
        (
            "bound-to-b",
            Some(A),
            &[],
            "alpha",
            true,
            "Allow rule[0] of role \"Patient\"",
            &["Patient"],
        ),
        (
            "bound-to-b",
            Some(B),
            &[],
            "beta",
            true,
            "Allow rule[0] of role \"Beta\"",
            &["Beta"],
        ),
        // Listed for any issuer, by role id: no defaults.
        (
            "nurse",
            Some(A),
            &[],
            "beta",
            true,
            "Allow rule[0] of role \"Staff\"",
            &["Staff"],
        ),
        (
            "nurse",
            Some(A),
            &[],
            "open",
            false,
            "Deny rule[1] of role \"Staff\"",
            &["Staff"],
        ),
        // A client-credentials subject never holds defaults.
        ("stranger@clients", Some(A), &[], "alpha", false, "", &[]),
        // The M2M client: its inline Deny first, then its stubbed role.
        (
            "lab@clients",
            Some(A),
            &[],
            "alpha",
            false,
            "Deny rule[0] of actor \"lab@clients\"",
            &["Beta"],
        ),
        (
            "lab@clients",
            Some(A),
            &[],
            "beta",
            true,
            "Allow rule[0] of role \"Beta\"",
            &["Beta"],
        ),
        ("lab@clients", Some(B), &[], "beta", false, "", &[]),
        // Token roles by id or name come after the defaults.
        (
            "patient-2",
            Some(A),
            &["0004-beta"],
            "beta",
            true,
            "Allow rule[0] of role \"Beta\"",
            &["Beta", "Patient"],
        ),
        (
            "patient-2",
            Some(A),
            &["Staff"],
            "alpha",
            true,
            "Allow rule[0] of role \"Patient\"",
            &["Patient", "Staff"],
        ),
        (
            "patient-2",
            Some(A),
            &["0003-inactive"],
            "alpha",
            false,
            "Deny rule[0] of role \"Inactive\"",
            &["Inactive", "Patient"],
        ),
        (
            "left",
            Some(A),
            &["Patient"],
            "alpha",
            false,
            "Deny rule[0] of role \"Inactive\"",
            &["Inactive", "Patient"],
        ),
    ];
    for &(subject, issuer, tokens, zambda, allowed, deciding, held) in rows {
        let token_roles: Vec<String> = tokens.iter().map(|r| r.to_string()).collect();
        let principal = Principal {
            subject,
            issuer,
            token_roles: &token_roles,
        };
        let what = format!("{subject} {issuer:?} {tokens:?} {zambda}");
        let zambda = set.zambda(zambda).expect("in the catalog");
        let decision = set.decide(&principal, zambda);
        assert_eq!(decision.allowed, allowed, "{what}: {decision}");
        let rule = decision
            .deciding
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(rule.starts_with(deciding), "{what}: {rule}");
        assert_eq!(
            deciding.is_empty(),
            decision.deciding.is_none(),
            "{what}: {rule}"
        );
        assert_eq!(set.roles_of(&principal), held, "{what}");
    }
}

#[test]
fn explain_names_the_defaults_as_the_source() {
    let set = project();
    let tokens = vec!["Beta".to_owned()];
    let principal = Principal {
        subject: "patient-1",
        issuer: Some(A),
        token_roles: &tokens,
    };
    let alpha = set.zambda("alpha").expect("alpha");
    let explanation = set.explain(&principal, alpha);
    assert!(explanation.actors.is_empty());
    assert_eq!(explanation.defaults.map(|d| d.issuer.as_str()), Some(A));
    let sources: Vec<(&str, String)> = explanation
        .roles
        .iter()
        .map(|held| {
            let source = match held.source {
                RoleSource::Actor(actor) => format!("actor {}", actor.subject),
                RoleSource::Default(defaults) => format!("defaults of {}", defaults.issuer),
                RoleSource::Token => "token".to_owned(),
            };
            (held.role.name.as_str(), source)
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("Patient", format!("defaults of {A}")),
            ("Beta", "token".to_owned())
        ]
    );
    // A listed actor's explanation names no defaults.
    let listed = Principal {
        subject: "left",
        issuer: Some(A),
        token_roles: &[],
    };
    assert!(set.explain(&listed, alpha).defaults.is_none());
    // What `check` and `diff` read.
    assert_eq!(set.default_issuers().collect::<Vec<_>>(), [A]);
    let defaults = set.defaults_of(A).expect("defaults of A");
    let names: Vec<&str> = set
        .default_roles(defaults)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["Patient"]);
    let unlisted: Vec<PolicyId> = set.unlisted_policies(A).collect();
    assert_eq!(unlisted, [set.role_policy("Patient").expect("a role")]);
    assert_eq!(set.unlisted_policies(B).count(), 0);
    let stats = set.stats();
    assert_eq!((stats.actors, stats.m2ms), (4, 1));
    let lab = set.actors().find(|a| a.is_m2m()).expect("the M2M client");
    assert_eq!(lab.subject, "lab@clients");
    assert_eq!(
        lab.client.as_ref().map(|c| c.client_id.as_str()),
        Some("lab")
    );
}

#[test]
fn explain_agrees_with_decide_on_defaults_stubs_ids_and_m2ms() {
    let set = project();
    let subjects = [
        "nurse",
        "left",
        "bound-to-b",
        "lab@clients",
        "patient",
        "x@clients",
    ];
    let issuers = [None, Some(A), Some(B)];
    let token_sets: [&[&str]; 6] = [
        &[],
        &["Patient"],
        &["0002-staff"],
        &["0003-inactive", "ghost"],
        &["Beta", "0004-beta", "0001-patient"],
        &["Staff", "Inactive"],
    ];
    let mut outcomes = [0usize; 3];
    let mut with_defaults = 0;
    for subject in subjects {
        for issuer in issuers {
            for tokens in token_sets {
                let token_roles: Vec<String> = tokens.iter().map(|r| r.to_string()).collect();
                let principal = Principal {
                    subject,
                    issuer,
                    token_roles: &token_roles,
                };
                let mut explained_roles: Vec<&str> = Vec::new();
                for zambda in set.zambdas() {
                    let decision = set.decide(&principal, zambda);
                    let explanation = set.explain(&principal, zambda);
                    let what = format!("{subject} {issuer:?} {tokens:?} {}", zambda.name);
                    assert_eq!(explanation.decision, decision, "{what}");
                    explained_roles = explanation
                        .roles
                        .iter()
                        .map(|h| h.role.name.as_str())
                        .collect();
                    with_defaults += usize::from(explanation.defaults.is_some());
                    outcomes[match (decision.allowed, decision.deciding) {
                        (true, _) => 0,
                        (false, Some(_)) => 1,
                        (false, None) => 2,
                    }] += 1;
                }
                explained_roles.sort_unstable();
                explained_roles.dedup();
                assert_eq!(
                    set.roles_of(&principal),
                    explained_roles,
                    "{subject} {issuer:?} {tokens:?}"
                );
            }
        }
    }
    assert!(outcomes.iter().all(|&n| n > 10), "{outcomes:?}");
    assert!(with_defaults > 10, "{with_defaults}");
}

#[test]
fn the_example_project_loads_unchanged() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/oystehr-project/policies"
    ));
    let loaded = load_dir(dir).unwrap_or_else(|errors| panic!("{errors}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let set = &loaded.set;
    let mut kinds: Vec<String> = set.zambdas().map(|z| z.kind.to_string()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds, ["authenticated", "cron", "public", "subscription"]);
    assert!(!set.any_zambda_without_id());
    assert_eq!(
        set.default_issuers().collect::<Vec<_>>(),
        ["https://auth.example.com/"]
    );
    assert_eq!(set.stats().m2ms, 1);
    assert!(set
        .role("Lab Integration")
        .is_some_and(|role| role.id.is_none()));
}

#[test]
fn a_bad_kind_is_reported_once_and_not_as_a_disagreement() {
    let text = "zambdas:\n  - {name: z, type: http, triggerMethod: http_open}\n";
    let errors = load(&[("p.yaml", text)]).expect_err("invalid");
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["p.yaml:2: zambdas[0] (z): type must be `authenticated`, `public`, `http_auth`, `http_open`, `cron` or `subscription`, not \"http\""]
    );
}
