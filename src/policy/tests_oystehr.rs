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
