//! Policy tooling, run as a user runs it: `zambda-guard test` (passing and
//! failing policy tests, their output and exit codes), `explain --format
//! json` (allow, explicit deny, implicit deny, token roles, issuer-bound
//! actors) and `zambda-guard diff` — over the example policies and over
//! generated ones. `diff` is also held against deciding every pair, on
//! small random policy sets from a seeded generator (a property test).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;
use zambda_guard::policy::{self, Principal, Set};
use zambda_guard::tooling::diff::{Diff, Flip, Who};

fn zg(args: &[&str]) -> Output {
    zg_in(&repo(), args)
}

fn zg_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zambda-guard"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A config using `policies` beside it, with a real key file.
fn write_config(dir: &Path, roles_claim: &str) -> PathBuf {
    let config = dir.join("config.yaml");
    write(
        &config,
        &format!(
            "auth:\n  roles_claim: {roles_claim}\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n      public_key_pem_file: {}\npolicies:\n  dir: policies\n",
            key_path("rsa1-public.pem").display()
        ),
    );
    config
}

/// A small policy set: `reader` allows alpha, `blocker` denies beta, `all`
/// allows every Zambda; ann reads, bob holds all three, carl has an
/// inline policy, and dora is bound to the test issuer.
const POLICIES: &str = "\
zambdas:
  - {id: a-1, name: alpha}
  - {id: b-2, name: beta}
  - {id: c-3, name: gamma, type: public}
roles:
  - name: reader
    access_policy:
      rule:
        - {action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Allow}
  - name: blocker
    access_policy:
      rule:
        - {action: FHIR:Read, resource: FHIR:Patient, effect: Allow}
        - {action: Zambda:InvokeFunction, resource: Zambda:Function:b-2, effect: Deny}
  - name: all
    access_policy:
      rule:
        - {action: \"*\", resource: \"*\", effect: Allow}
actors:
  - subject: ann
    roles: [reader]
  - subject: bob
    roles: [all, blocker]
  - subject: carl
    access_policy:
      rule:
        - {action: Zambda:InvokeFunction, resource: Zambda:Function:gamma, effect: Allow}
  - subject: dora
    issuer: https://issuer.test/
    roles: [all]
";

/// A temporary directory holding `policies/set.yaml` (POLICIES).
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("policies/set.yaml"), POLICIES);
    dir
}

// ---------------------------------------------------------------------------
// zambda-guard test

#[test]
fn the_shipped_example_tests_pass() {
    for target in ["policies", "policies/examples.test.yaml"] {
        let o = zg(&["test", target]);
        assert_eq!(o.status.code(), Some(0), "{}", all(&o));
        assert_eq!(stdout(&o), "14 passed, 0 failed\n", "{target}");
    }
    // The same with the config named explicitly.
    let o = zg(&["test", "--config", "config.yaml", "policies"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
}

#[test]
fn failing_cases_report_file_line_expected_and_decided() {
    let dir = fixture();
    let root = dir.path().display().to_string();
    let file = dir.path().join("tests/set.test.yaml");
    write(
        &file,
        "policies: ../policies
cases:
  - name: ann reads alpha
    principal: {subject: ann}
    zambda: alpha
    expect: allow
    rule: {effect: Allow, role: reader, index: 0}

  - name: ann writes beta
    principal: {subject: ann}
    zambda: beta
    expect: allow

  - name: bob is blocked from beta
    principal: {subject: bob}
    zambda: b-2
    expect: deny
    rule: {effect: Deny, role: blocker, index: 1}

  - name: bob may read alpha
    principal: {subject: bob}
    zambda: alpha
    expect: deny

  # Right decision, wrong rule.
  - name: ann's alpha comes from all
    principal: {subject: ann, roles: [all]}
    zambda: alpha
    expect: allow
    rule: {role: all}

  - principal: {subject: carl}
    zambda: gamma
    expect: allow
    rule: {actor: carl, index: 0}
",
    );
    let o = zg(&["test", &file.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    let f = file.display();
    // `..` is kept as written (folding it is wrong across symlinks).
    let roles = format!("{root}/tests/../policies/set.yaml");
    assert_eq!(
        stdout(&o),
        format!(
            "{f}:9: FAIL ann writes beta: expected allow, got denied: no rule allows\n\
             {f}:20: FAIL bob may read alpha: expected deny, got allowed by Allow rule[0] of role \"all\" ({roles}:18)\n\
             {f}:26: FAIL ann's alpha comes from all: expected allow by rule of role \"all\", got allowed by Allow rule[0] of role \"reader\" ({roles}:9)\n\
             3 passed, 3 failed\n"
        )
    );
}

#[test]
fn a_failing_case_can_be_fixed() {
    // The same case fails against one policy set and passes against the
    // next: what a user sees while changing a policy.
    let dir = fixture();
    let file = dir.path().join("policies/set.test.yaml");
    write(
        &file,
        "policies: .\ncases:\n  - {principal: {subject: ann}, zambda: beta, expect: allow}\n",
    );
    let target = dir.path().join("policies").display().to_string();
    let o = zg(&["test", &target]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(stdout(&o).ends_with("0 passed, 1 failed\n"), "{}", all(&o));

    let fixed = POLICIES.replace(
        "resource: Zambda:Function:alpha,",
        "resource: [Zambda:Function:alpha, Zambda:Function:beta],",
    );
    write(&dir.path().join("policies/set.yaml"), &fixed);
    let o = zg(&["test", &target]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert_eq!(stdout(&o), "1 passed, 0 failed\n");
}

#[test]
fn invalid_input_is_exit_code_2_and_runs_nothing() {
    let case = |extra: &str| format!("policies: policies\ncases:\n{extra}");
    let table: Vec<(String, &str)> = vec![
        (
            case("  - {principal: {subject: ann}, zambda: alpha, expect: allow}\n  - {principal: {subject: ann}, zambda: nope, expect: deny}\n"),
            "x.test.yaml:4: case[1]: zambda \"nope\" is not in the catalog",
        ),
        (
            case("  - principal: {subject: ann}\n    zambda: alpha\n    expect: maybe\n"),
            "x.test.yaml:5: cases[0].expect: unknown variant `maybe`",
        ),
        (
            case("  - principal: {subject: ann}\n    zambda: alpha\n    expected: allow\n"),
            "x.test.yaml:5: cases[0]: unknown field `expected`",
        ),
        (
            "cases:\n  - principal: {subject: ann\n".to_owned(),
            "x.test.yaml:3",
        ),
        (
            case("  - {principal: {subject: ann}, zambda: alpha, expect: allow, rule: none}\n"),
            "x.test.yaml:3: case[0]: rule: `none` means an implicit deny, but the case expects allow",
        ),
        (
            case("  - {principal: {subject: ann}, zambda: alpha, expect: allow, rule: {effect: Deny}}\n"),
            "a Deny rule cannot decide an allow",
        ),
        (
            case("  - {principal: {subject: ann}, zambda: alpha, expect: allow, rule: {role: readers}}\n"),
            "rule: role \"readers\" is not defined",
        ),
        (
            case("  - {principal: {subject: ann}, zambda: alpha, expect: allow, rule: {actor: ann}}\n"),
            "no actor entry \"ann\" has an inline access policy",
        ),
        (
            case("  - {principal: {issuer: x}, zambda: alpha, expect: deny}\n"),
            "give `subject`, `roles` or `claims`",
        ),
        (case(""), "x.test.yaml: no cases"),
    ];
    for (text, expected) in table {
        let dir = fixture();
        let file = dir.path().join("x.test.yaml");
        write(&file, &text);
        let o = zg(&["test", &file.display().to_string()]);
        assert_eq!(o.status.code(), Some(2), "{text}\n{}", all(&o));
        assert!(
            all(&o).contains(expected),
            "{text}\nwant {expected:?} in:\n{}",
            all(&o)
        );
        assert!(!stdout(&o).contains("passed"), "{}", all(&o));
    }
}

#[test]
fn invalid_policies_or_paths_are_exit_code_2() {
    let dir = fixture();
    write(
        &dir.path().join("policies/broken.yaml"),
        "roles:\n  - name: x\n    access_policy:\n      rule:\n        - {action: zambda:invokefunction, resource: \"*\", effect: Deny}\n",
    );
    let file = dir.path().join("policies/set.test.yaml");
    write(
        &file,
        "policies: .\ncases:\n  - {principal: {subject: ann}, zambda: alpha, expect: allow}\n",
    );
    let o = zg(&["test", &file.display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(all(&o).contains("broken.yaml:5"), "{}", all(&o));

    // A directory without test files, and a path that does not exist.
    let empty = tempfile::tempdir().unwrap();
    write(&empty.path().join("policy.yaml"), POLICIES);
    let o = zg(&["test", &empty.path().display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(all(&o).contains("no policy test files"), "{}", all(&o));
    let o = zg(&["test", "/nonexistent/x.test.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    let o = zg(&["test"]);
    assert_eq!(o.status.code(), Some(2), "a path is required");
}

#[test]
fn directories_are_searched_recursively_for_test_files_only() {
    let dir = fixture();
    let tests = dir.path().join("tests");
    let pass = |policies: &str| {
        format!("policies: {policies}\ncases:\n  - {{principal: {{subject: ann}}, zambda: alpha, expect: allow}}\n")
    };
    write(&tests.join("a.test.yaml"), &pass("../policies"));
    write(&tests.join("team/b.test.yml"), &pass("../../policies"));
    write(
        &tests.join("team/c.test.json"),
        "{\"policies\": \"../../policies\", \"cases\": [\n\t{\"principal\": {\"subject\": \"ann\"}, \"zambda\": \"a-1\", \"expect\": \"allow\"}]}",
    );
    // Neither of these is read: a hidden directory, and a file that is
    // not a test (it would be invalid as one).
    write(&tests.join(".old/d.test.yaml"), "cases: [oops]\n");
    write(&tests.join("team/notes.yaml"), "cases: [oops]\n");
    let o = zg(&["test", &tests.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert_eq!(stdout(&o), "3 passed, 0 failed\n");

    // Lines in JSON test files.
    write(
        &tests.join("team/c.test.json"),
        "{\"policies\": \"../../policies\",\n \"cases\": [\n\t{\"principal\": {\"subject\": \"ann\"}, \"zambda\": \"a-1\", \"expect\": \"allow\"},\n\t{\"principal\": {\"subject\": \"ann\"},\n\t \"zambda\": \"beta\", \"expect\": \"allow\"}]}",
    );
    let o = zg(&["test", &tests.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(
        stdout(&o)
            .contains("c.test.json:4: FAIL case[1]: expected allow, got denied: no rule allows"),
        "{}",
        all(&o)
    );
}

#[test]
fn the_config_gives_the_policy_directory_and_reads_claims() {
    let dir = fixture();
    let config = write_config(dir.path(), "realm.roles")
        .display()
        .to_string();
    let file = dir.path().join("elsewhere/claims.test.yaml");
    write(
        &file,
        &format!(
            "cases:
  - name: a token's roles claim grants roles
    principal:
      claims: {{sub: nobody, iss: \"{ISSUER}\", realm: {{roles: [reader]}}}}
    zambda: alpha
    expect: allow
    rule: {{role: reader}}
  - name: space-separated roles, without iss
    principal:
      claims: {{sub: nobody, realm: {{roles: \"blocker all\"}}}}
    zambda: beta
    expect: deny
    rule: {{effect: Deny, role: blocker}}
  - name: an issuer-bound actor with its issuer
    principal: {{subject: dora, issuer: \"{ISSUER}\"}}
    zambda: beta
    expect: allow
  - name: the issuer-bound actor from another issuer
    principal: {{subject: dora, issuer: https://other.test/}}
    zambda: beta
    expect: deny
    rule: none
  - name: claims from the issuer pick the issuer-bound actor
    principal:
      claims: {{sub: dora, iss: \"{ISSUER}\"}}
    zambda: gamma
    expect: allow
"
        ),
    );
    let o = zg(&["test", "--config", &config, &file.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert_eq!(stdout(&o), "5 passed, 0 failed\n");

    // A token from an issuer the config does not know, and a roles claim
    // of a shape the proxy refuses, are invalid cases.
    for (claims, expected) in [
        (
            "{sub: x, iss: https://other.test/}",
            "is not a configured issuer",
        ),
        ("{sub: x, realm: {roles: 7}}", "roles claim invalid"),
        ("{realm: {roles: [reader]}}", "subject missing"),
    ] {
        write(
            &file,
            &format!(
                "cases:\n  - {{principal: {{claims: {claims}}}, zambda: alpha, expect: deny}}\n"
            ),
        );
        let o = zg(&["test", "--config", &config, &file.display().to_string()]);
        assert_eq!(o.status.code(), Some(2), "{claims}: {}", all(&o));
        assert!(all(&o).contains(expected), "{claims}: {}", all(&o));
    }

    // Without a usable config, a file naming no `policies:` cannot run.
    write(
        &file,
        "cases:\n  - {principal: {subject: ann}, zambda: alpha, expect: allow}\n",
    );
    let o = zg(&[
        "test",
        "--config",
        "/nonexistent.yaml",
        &file.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(
        all(&o).contains("names no `policies:` directory"),
        "{}",
        all(&o)
    );
}

// ---------------------------------------------------------------------------
// explain --format json

fn explain_json(dir: &Path, config: &str, args: &[&str]) -> Value {
    let mut all_args = vec!["explain", "--config", config, "--format", "json"];
    all_args.extend_from_slice(args);
    let o = zg_in(dir, &all_args);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn examples(args: &[&str]) -> Value {
    explain_json(&repo(), "config.yaml", args)
}

#[test]
fn explain_json_for_an_allow() {
    let v = examples(&[
        "--subject",
        "lab-bot@clients",
        "--zambda",
        "lab-results-ingest",
    ]);
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["zambda"]["name"], "lab-results-ingest");
    assert_eq!(v["principal"]["subject"], "lab-bot@clients");
    let role = &v["principal"]["roles"][0];
    assert_eq!(role["name"], "lab-integrations");
    assert_eq!(role["source"]["kind"], "actor");
    assert!(role["source"]["file"]
        .as_str()
        .unwrap()
        .ends_with("actors.yaml"));
    assert_eq!(role["source"]["line"], 10);
    assert!(role["file"].as_str().unwrap().ends_with("roles.yaml"));
    assert_eq!(role["line"], 10);
    let rule = &v["deciding_rule"];
    assert_eq!(rule["effect"], "Allow");
    assert_eq!(
        rule["origin"],
        serde_json::json!({"kind": "role", "name": "lab-integrations"})
    );
    assert_eq!(rule["index"], 0);
    assert_eq!(rule["line"], 14);
    assert!(rule["file"]
        .as_str()
        .unwrap()
        .ends_with("policies/roles.yaml"));
    assert_eq!(v["matching_rules"].as_array().unwrap().len(), 1);
    assert_eq!(v["reason"], rule["text"]);
}

#[test]
fn explain_json_for_an_explicit_deny_lists_every_matching_rule() {
    let v = examples(&["--subject", "dr-alice", "--zambda", "billing-export"]);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["deciding_rule"]["effect"], "Deny");
    assert_eq!(v["deciding_rule"]["origin"]["name"], "no-billing");
    let matching: Vec<(&str, &str, u64)> = v["matching_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["effect"].as_str().unwrap(),
                r["origin"]["name"].as_str().unwrap(),
                r["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        matching,
        [("Allow", "clinician", 25), ("Deny", "no-billing", 41)]
    );

    // The text format names the same deciding rule, in the same words.
    let o = zg(&[
        "explain",
        "--subject",
        "dr-alice",
        "--zambda",
        "billing-export",
    ]);
    let deciding = v["deciding_rule"]["text"].as_str().unwrap();
    assert!(
        stdout(&o).contains(&format!("deciding: {deciding}\n")),
        "{}",
        all(&o)
    );
}

#[test]
fn explain_json_for_an_implicit_deny() {
    let v = examples(&[
        "--subject",
        "lab-bot@clients",
        "--zambda",
        "patient-summary",
    ]);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["deciding_rule"], Value::Null);
    assert_eq!(v["reason"], "no rule allows");
    assert_eq!(v["matching_rules"], serde_json::json!([]));

    let v = examples(&["--subject", "stranger", "--zambda", "patient-summary"]);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["principal"]["actor_entries"], serde_json::json!([]));
    assert_eq!(v["principal"]["roles"], serde_json::json!([]));
}

#[test]
fn explain_json_for_token_roles() {
    let v = examples(&[
        "--subject",
        "lab-bot@clients",
        "--role",
        "clinician",
        "--role",
        "inactive",
        "--role",
        "nope",
        "--zambda",
        "patient-summary",
    ]);
    assert_eq!(v["decision"], "deny");
    let roles: Vec<(&str, &str)> = v["principal"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["source"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("lab-integrations", "actor"),
            ("clinician", "token"),
            ("inactive", "token")
        ]
    );
    assert_eq!(v["principal"]["ignored_roles"], serde_json::json!(["nope"]));
    assert_eq!(v["deciding_rule"]["origin"]["name"], "inactive");
    assert_eq!(v["roles_header"], "clinician,inactive,lab-integrations");
}

#[test]
fn explain_json_for_an_issuer_bound_actor() {
    let dir = fixture();
    let config = write_config(dir.path(), "null").display().to_string();
    let v = explain_json(
        dir.path(),
        &config,
        &["--subject", "dora", "--issuer", ISSUER, "--zambda", "beta"],
    );
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["principal"]["issuer"], ISSUER);
    assert_eq!(v["principal"]["actor_entries"][0]["issuer"], ISSUER);
    assert_eq!(v["principal"]["roles"][0]["name"], "all");

    let v = explain_json(
        dir.path(),
        &config,
        &["--subject", "dora", "--zambda", "beta"],
    );
    assert_eq!(
        v["decision"], "deny",
        "without its issuer, dora's entry does not apply"
    );
    assert_eq!(v["principal"]["actor_entries"], serde_json::json!([]));

    // An inline policy's rule names the actor.
    let v = explain_json(
        dir.path(),
        &config,
        &["--subject", "carl", "--zambda", "gamma"],
    );
    assert_eq!(v["decision"], "allow");
    assert_eq!(
        v["deciding_rule"]["origin"],
        serde_json::json!({"kind": "actor", "subject": "carl", "issuer": null})
    );
}

#[test]
fn explain_applies_defaults_only_with_an_issuer_and_names_them() {
    let project = repo().join("examples/oystehr-project");
    let issuer = "https://auth.example.com/";
    let unlisted = [
        "--subject",
        "auth0|patient-7",
        "--zambda",
        "get-appointments",
    ];

    let v = explain_json(
        &project,
        "config.yaml",
        &[&unlisted[..], &["--issuer", issuer]].concat(),
    );
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["principal"]["actor_entries"], serde_json::json!([]));
    let roles = v["principal"]["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "{v}");
    assert_eq!(roles[0]["name"], "Patient");
    assert_eq!(
        roles[0]["source"],
        serde_json::json!({"kind": "defaults", "issuer": issuer})
    );
    assert_eq!(v["deciding_rule"]["origin"]["name"], "Patient");

    let o = zg_in(
        &project,
        &[&["explain"][..], &unlisted, &["--issuer", issuer]].concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(
        stdout(&o).contains(&format!("  Patient (from the defaults of {issuer})\n")),
        "{}",
        all(&o)
    );

    // Without an issuer, no defaults apply: nothing allows.
    let v = explain_json(&project, "config.yaml", &unlisted);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["principal"]["roles"], serde_json::json!([]));
    assert_eq!(v["deciding_rule"], Value::Null);

    // A listed actor holds its entry's roles, never the defaults.
    let v = explain_json(
        &project,
        "config.yaml",
        &[
            "--subject",
            "auth0|patient-deactivated",
            "--issuer",
            issuer,
            "--zambda",
            "get-appointments",
        ],
    );
    assert_eq!(v["decision"], "deny");
    let roles = v["principal"]["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "{v}");
    assert_eq!(roles[0]["name"], "Inactive");
    assert_eq!(roles[0]["source"]["kind"], "actor");
}

#[test]
fn a_failing_case_names_the_defaults_that_gave_the_deciding_role() {
    let dir = tempfile::tempdir().unwrap();
    let policies = repo().join("examples/oystehr-project/policies");
    let file = dir.path().join("unlisted.test.yaml");
    write(
        &file,
        &format!(
            "policies: {}
cases:
  - name: an unlisted patient is denied
    principal: {{subject: auth0|patient-7, issuer: https://auth.example.com/}}
    zambda: get-appointments
    expect: deny

  - name: without an issuer the patient is allowed
    principal: {{subject: auth0|patient-7}}
    zambda: get-appointments
    expect: allow

  - name: a provider is denied
    principal: {{subject: auth0|staff-dr-rivera, issuer: https://auth.example.com/}}
    zambda: get-appointments
    expect: deny
",
            policies.display()
        ),
    );
    let o = zg(&["test", &file.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    let f = file.display();
    let roles = policies.join("roles.json");
    let roles = roles.display();
    assert_eq!(
        stdout(&o),
        format!(
            "{f}:3: FAIL an unlisted patient is denied: expected deny, got allowed by Allow rule[1] of role \"Patient\" ({roles}:16), a role held from the defaults of https://auth.example.com/\n\
             {f}:8: FAIL without an issuer the patient is allowed: expected allow, got denied: no rule allows\n\
             {f}:13: FAIL a provider is denied: expected deny, got allowed by Allow rule[2] of role \"Provider\" ({roles}:32)\n\
             0 passed, 3 failed\n"
        )
    );
}

// ---------------------------------------------------------------------------
// zambda-guard diff

/// A copy of the example policies (without tests) with `change` applied to
/// each file's text.
fn changed_examples(change: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["actors.yaml", "catalog.yaml", "roles.yaml"] {
        let text = std::fs::read_to_string(repo().join("policies").join(name)).unwrap();
        write(&dir.path().join(name), &change(name, text));
    }
    dir
}

#[test]
fn diff_of_the_examples_shows_whom_a_change_affects() {
    let new = changed_examples(|name, text| match name {
        // no-billing now denies patient-summary instead of billing-export.
        "roles.yaml" => text.replace(
            "resource: Zambda:Function:c81e728d-9d4c-4f2a-b1e3-5a7f6b2d9e10",
            "resource: Zambda:Function:patient-summary",
        ),
        // billing-export renamed (ops-bot's rule names it by its old
        // name), appointment-slots made authenticated, one Zambda added.
        "catalog.yaml" => {
            text.replace("name: billing-export", "name: billing-export-v2")
                .replace("type: public", "type: authenticated")
                + "\n  - id: 11111111-1111-4111-8111-111111111111\n    name: lab-orders\n"
        }
        _ => text,
    });
    let new_dir = new.path().display().to_string();
    let o = zg(&["diff", "policies", &new_dir]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert_eq!(
        stdout(&o),
        "\
catalog: 1 added, 0 removed, 1 renamed, 1 type changed
  added: lab-orders (id 11111111-1111-4111-8111-111111111111, authenticated)
  renamed: billing-export -> billing-export-v2 (id c81e728d-9d4c-4f2a-b1e3-5a7f6b2d9e10)
  type changed: appointment-slots (id 3b9a6e4f-1c2d-4e8f-a7b6-0d5c4e3f2a19): public -> authenticated
newly allowed: 3 pair(s): 1 role(s), 1 actor(s)
  role \"clinician\": lab-orders
  actor \"dr-alice\": billing-export-v2, lab-orders
newly denied: 2 pair(s): 0 role(s), 2 actor(s)
  actor \"dr-alice\": patient-summary
  actor \"ops-bot@clients\": billing-export-v2
3 newly allowed, 2 newly denied
"
    );
    // The rename left ops-bot's rule naming a Zambda that is gone.
    assert!(all(&o).contains("warning:"), "{}", all(&o));

    for (gate, code) in [("newly-allowed", 1), ("newly-denied", 1)] {
        let o = zg(&["diff", "--fail-on", gate, "policies", &new_dir]);
        assert_eq!(o.status.code(), Some(code), "{gate}: {}", all(&o));
        assert!(
            all(&o).contains(&format!("--fail-on {gate}")),
            "{}",
            all(&o)
        );
    }

    let o = zg(&["diff", "--format", "json", "policies", &new_dir]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["newly_allowed"]["pairs"], 3);
    assert_eq!(v["newly_denied"]["pairs"], 2);
    assert_eq!(v["newly_allowed"]["roles"], 1);
    assert_eq!(
        v["newly_denied"]["principals"][1],
        serde_json::json!({"kind": "actor", "subject": "ops-bot@clients", "issuer": null, "zambdas": ["billing-export-v2"]})
    );
    assert_eq!(v["catalog"]["added"][0]["name"], "lab-orders");
    assert_eq!(v["catalog"]["renamed"][0]["old_name"], "billing-export");
    assert_eq!(v["catalog"]["type_changed"][0]["new_type"], "authenticated");
    assert_eq!(v["catalog"]["removed"], serde_json::json!([]));
}

/// A copy of the example Oystehr project's policies with `change` applied
/// to `project.yaml`.
fn changed_oystehr_project(change: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = repo().join("examples/oystehr-project/policies");
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap();
        let text = if name == "project.yaml" {
            change(text)
        } else {
            text
        };
        write(&dir.path().join(name), &text);
    }
    dir
}

#[test]
fn diff_compares_unlisted_actors_with_the_defaults() {
    const ISSUER: &str = "https://auth.example.com/";
    let new = changed_oystehr_project(|text| {
        // The default role becomes Provider, and one patient is listed
        // (without issuer) as Inactive: deactivated.
        let text = text.replace(
            "{id: 9e1b2c3d-0001-4a00-8000-00000000a001, name: Patient}",
            "Provider",
        );
        assert!(text.contains("roles:\n      - Provider"), "{text}");
        text.replace(
            "actors:\n",
            "actors:\n  - subject: auth0|patient-42\n    roles: [Inactive]\n",
        )
    });
    let new_dir = new.path().display().to_string();
    let old_dir = "examples/oystehr-project/policies";
    let o = zg(&["diff", old_dir, &new_dir]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "\
catalog: unchanged
newly allowed: 1 pair(s): 0 role(s), 0 actor(s), unlisted actors of 1 issuer(s)
  any unlisted actor of issuer \"{ISSUER}\": update-chart
newly denied: 1 pair(s): 0 role(s), 1 actor(s)
  actor \"auth0|patient-42\" of issuer \"{ISSUER}\": get-appointments
1 newly allowed, 1 newly denied
"
        )
    );

    let o = zg(&["diff", "--format", "json", old_dir, &new_dir]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["newly_allowed"]["unlisted"], 1);
    assert_eq!(
        v["newly_allowed"]["principals"][0],
        serde_json::json!({"kind": "unlisted", "issuer": ISSUER, "zambdas": ["update-chart"]})
    );
    assert_eq!(v["newly_denied"]["unlisted"], 0);
    assert_eq!(
        v["newly_denied"]["principals"][0],
        serde_json::json!({"kind": "actor", "subject": "auth0|patient-42", "issuer": ISSUER, "zambdas": ["get-appointments"]})
    );
}

#[test]
fn diff_gates_trip_only_on_their_own_direction() {
    // Removing dr-alice's no-billing role only allows more.
    let new = changed_examples(|name, text| match name {
        "actors.yaml" => text.replace("roles: [clinician, no-billing]", "roles: [clinician]"),
        _ => text,
    });
    let new_dir = new.path().display().to_string();
    let o = zg(&["diff", "--fail-on", "newly-denied", "policies", &new_dir]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(
        stdout(&o).contains("  actor \"dr-alice\": billing-export\n"),
        "{}",
        all(&o)
    );
    assert!(
        stdout(&o).ends_with("1 newly allowed, 0 newly denied\n"),
        "{}",
        all(&o)
    );
    let o = zg(&[
        "diff",
        "--fail-on",
        "newly-denied",
        "--fail-on",
        "newly-allowed",
        "policies",
        &new_dir,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));

    // Nothing changed: nothing to report, and no gate trips.
    let same = changed_examples(|_, text| text);
    let o = zg(&[
        "diff",
        "--fail-on",
        "newly-allowed",
        "--fail-on",
        "newly-denied",
        "policies",
        &same.path().display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert_eq!(
        stdout(&o),
        "catalog: unchanged\nnewly allowed: none\nnewly denied: none\n0 newly allowed, 0 newly denied\n"
    );
}

#[test]
fn diff_refuses_invalid_policy_directories() {
    let broken = changed_examples(|name, text| match name {
        "roles.yaml" => text.replace("effect: Deny", "effect: deny"),
        _ => text,
    });
    let o = zg(&["diff", "policies", &broken.path().display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(all(&o).contains("roles.yaml:"), "{}", all(&o));
    let o = zg(&["diff", "/nonexistent", "policies"]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    let o = zg(&["diff", "policies"]);
    assert_eq!(o.status.code(), Some(2), "two directories are required");
    let o = zg(&["diff", "--fail-on", "anything", "policies", "policies"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn every_new_command_has_help() {
    for cmd in ["test", "diff"] {
        let o = zg(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd}");
        assert!(stdout(&o).contains("Usage"), "{cmd}");
    }
}

// ---------------------------------------------------------------------------
// diff against brute force, on random policy sets

/// splitmix64: a small seeded generator, so every failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` %.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const ZAMBDAS: usize = 6;
const ROLES: usize = 4;
/// The last is an M2M client's subject: written under `m2ms`, and never
/// holding default roles.
const SUBJECTS: [&str; 4] = ["s0", "s1", "s2", "c0@clients"];
const ISSUERS: [Option<&str>; 3] = [None, Some("i1"), Some("i2")];
/// A subject no generated entry lists.
const NOBODY: &str = "nobody";

#[derive(Clone, Debug)]
struct RuleSpec {
    actions: Vec<&'static str>,
    resources: Vec<String>,
    deny: bool,
}

/// An actor entry: (subject, issuer, roles, inline policy), by index.
type ActorSpec = (usize, usize, Vec<usize>, Option<Vec<RuleSpec>>);

#[derive(Clone, Debug)]
struct World {
    /// (number, renamed, public)
    zambdas: Vec<(usize, bool, bool)>,
    roles: Vec<(usize, Vec<RuleSpec>)>,
    /// (subject, issuer, roles, inline policy)
    actors: Vec<ActorSpec>,
    /// (issuer, default roles), by index; the issuer is never `None`.
    defaults: Vec<(usize, Vec<usize>)>,
}

fn random_rule(rng: &mut Rng) -> RuleSpec {
    const ACTIONS: [&str; 5] = [
        "Zambda:InvokeFunction",
        "Zambda:InvokeFunction",
        "*",
        "Zambda:*",
        "Zambda:ReadFunction",
    ];
    let mut actions = vec![*rng.pick(&ACTIONS)];
    if rng.chance(15) {
        actions.push("FHIR:Read");
    }
    let count = 1 + usize::from(rng.chance(30));
    let resources = (0..count)
        .map(|_| match rng.below(10) {
            0 => "*".to_owned(),
            1 => "Zambda:Function:*".to_owned(),
            2 => "FHIR:Patient".to_owned(),
            // By id, by name, or by the renamed name (possibly missing
            // from the catalog: a warning, covering nothing).
            3..=5 => format!("Zambda:Function:z{}", rng.below(ZAMBDAS)),
            6..=8 => format!("Zambda:Function:n{}", rng.below(ZAMBDAS)),
            _ => format!("Zambda:Function:n{}x", rng.below(ZAMBDAS)),
        })
        .collect();
    RuleSpec {
        actions,
        resources,
        deny: rng.chance(30),
    }
}

fn random_policy(rng: &mut Rng) -> Vec<RuleSpec> {
    (0..1 + rng.below(3)).map(|_| random_rule(rng)).collect()
}

fn random_actor(rng: &mut Rng, subject: usize, issuer: usize) -> ActorSpec {
    let roles = random_roles(rng);
    let inline = rng.chance(40).then(|| random_policy(rng));
    (subject, issuer, roles, inline)
}

fn random_world(rng: &mut Rng) -> World {
    let mut world = World {
        zambdas: Vec::new(),
        roles: Vec::new(),
        actors: Vec::new(),
        defaults: Vec::new(),
    };
    for z in 0..ZAMBDAS {
        if rng.chance(85) {
            world.zambdas.push((z, rng.chance(10), rng.chance(20)));
        }
    }
    for r in 0..ROLES {
        if rng.chance(85) {
            world.roles.push((r, random_policy(rng)));
        }
    }
    for s in 0..SUBJECTS.len() {
        for i in 0..ISSUERS.len() {
            if rng.chance(50) {
                world.actors.push(random_actor(rng, s, i));
            }
        }
    }
    for i in 1..ISSUERS.len() {
        if rng.chance(60) {
            world.defaults.push((i, random_roles(rng)));
        }
    }
    world
}

fn random_roles(rng: &mut Rng) -> Vec<usize> {
    (0..ROLES).filter(|_| rng.chance(35)).collect()
}

/// A change of `world`: each part kept, altered, dropped or added at random.
fn mutate(rng: &mut Rng, world: &World) -> World {
    let mut next = World {
        zambdas: Vec::new(),
        roles: Vec::new(),
        actors: Vec::new(),
        defaults: Vec::new(),
    };
    for z in 0..ZAMBDAS {
        match world.zambdas.iter().find(|entry| entry.0 == z) {
            Some(_) if rng.chance(10) => {}
            Some(&(z, renamed, public)) => {
                next.zambdas
                    .push((z, renamed ^ rng.chance(10), public ^ rng.chance(10)))
            }
            None if rng.chance(30) => next.zambdas.push((z, rng.chance(10), false)),
            None => {}
        }
    }
    for r in 0..ROLES {
        match world.roles.iter().find(|entry| entry.0 == r) {
            Some(_) if rng.chance(10) => {}
            Some((_, rules)) => {
                let mut rules = rules.clone();
                if rng.chance(25) {
                    let k = rng.below(rules.len());
                    rules[k].deny = !rules[k].deny;
                }
                if rng.chance(15) {
                    rules = random_policy(rng);
                }
                next.roles.push((r, rules));
            }
            None if rng.chance(30) => next.roles.push((r, random_policy(rng))),
            None => {}
        }
    }
    for s in 0..SUBJECTS.len() {
        for i in 0..ISSUERS.len() {
            match world.actors.iter().find(|a| a.0 == s && a.1 == i) {
                Some(_) if rng.chance(10) => {}
                Some(actor) => {
                    let mut actor = actor.clone();
                    if rng.chance(20) {
                        actor.2 = (0..ROLES).filter(|_| rng.chance(35)).collect();
                    }
                    if rng.chance(20) {
                        actor.3 = rng.chance(50).then(|| random_policy(rng));
                    }
                    next.actors.push(actor);
                }
                None if rng.chance(20) => next.actors.push(random_actor(rng, s, i)),
                None => {}
            }
        }
    }
    for i in 1..ISSUERS.len() {
        match world.defaults.iter().find(|d| d.0 == i) {
            Some(_) if rng.chance(15) => {}
            Some((_, roles)) if rng.chance(25) => next.defaults.push((i, random_roles(rng))),
            Some(defaults) => next.defaults.push(defaults.clone()),
            None if rng.chance(25) => next.defaults.push((i, random_roles(rng))),
            None => {}
        }
    }
    next
}

fn policy_yaml(rules: &[RuleSpec]) -> String {
    let rules: Vec<String> = rules
        .iter()
        .map(|rule| {
            format!(
                "{{action: {:?}, resource: {:?}, effect: {}}}",
                rule.actions,
                rule.resources,
                if rule.deny { "Deny" } else { "Allow" }
            )
        })
        .collect();
    format!("{{rule: [{}]}}", rules.join(", "))
}

fn yaml(world: &World) -> String {
    let mut out = String::from("zambdas:\n");
    for &(z, renamed, public) in &world.zambdas {
        let name = if renamed {
            format!("n{z}x")
        } else {
            format!("n{z}")
        };
        let kind = if public { "public" } else { "authenticated" };
        out.push_str(&format!("  - {{id: z{z}, name: {name}, type: {kind}}}\n"));
    }
    out.push_str("roles:\n");
    for (r, rules) in &world.roles {
        out.push_str(&format!(
            "  - {{name: r{r}, id: rid{r}, access_policy: {}}}\n",
            policy_yaml(rules)
        ));
    }
    // Only roles this set defines, by name, id or stub in turn.
    let references = |roles: &[usize]| -> String {
        let named: Vec<String> = roles
            .iter()
            .filter(|r| world.roles.iter().any(|(defined, _)| defined == *r))
            .enumerate()
            .map(|(k, r)| match k % 3 {
                0 => format!("r{r}"),
                1 => format!("rid{r}"),
                _ => format!("{{id: rid{r}, name: r{r}}}"),
            })
            .collect();
        format!("[{}]", named.join(", "))
    };
    out.push_str("defaults:\n");
    for (i, roles) in &world.defaults {
        let issuer = ISSUERS[*i].unwrap_or_default();
        out.push_str(&format!(
            "  - {{issuer: {issuer}, roles: {}}}\n",
            references(roles)
        ));
    }
    let (mut actors, mut m2ms) = (String::new(), String::new());
    for (s, i, roles, inline) in &world.actors {
        let out = match SUBJECTS[*s].strip_suffix("@clients") {
            Some(client) => {
                m2ms.push_str(&format!("  - clientId: {client}\n"));
                &mut m2ms
            }
            None => {
                actors.push_str(&format!("  - subject: {}\n", SUBJECTS[*s]));
                &mut actors
            }
        };
        out.push_str(&format!("    roles: {}\n", references(roles)));
        if let Some(issuer) = ISSUERS[*i] {
            out.push_str(&format!("    issuer: {issuer}\n"));
        }
        if let Some(rules) = inline {
            out.push_str(&format!("    accessPolicy: {}\n", policy_yaml(rules)));
        }
    }
    out.push_str(&format!("actors:\n{actors}m2ms:\n{m2ms}"));
    out
}

fn load(text: &str) -> Set {
    policy::load_texts(&[(Path::new("set.yaml"), text)])
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .set
}

/// Every flipped pair, found by deciding, in both sets, every role and
/// every token a generated set can tell apart — each subject (and one no
/// entry lists) from each issuer (and from none) — on every Zambda, and
/// naming each token's flips by the principal the diff reports them under
/// ([`reported_as`]).
fn brute_force(old: &Set, new: &Set) -> HashSet<(Who, String, Flip)> {
    let ids: Vec<String> = {
        let mut ids: Vec<String> = old
            .zambdas()
            .chain(new.zambdas())
            .map(|z| z.id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let mut roles: Vec<&str> = old.role_names().chain(new.role_names()).collect();
    roles.sort();
    roles.dedup();
    fn in_catalog<'s>(set: &'s Set, id: &str) -> Option<&'s policy::Zambda> {
        set.zambda(id).filter(|z| z.id == id)
    }
    let mut flips = HashSet::new();
    let mut record = |who: &Who, id: &str, before: bool, after: bool| {
        match (before, after) {
            (false, true) => flips.insert((who.clone(), id.to_owned(), Flip::NewlyAllowed)),
            (true, false) => flips.insert((who.clone(), id.to_owned(), Flip::NewlyDenied)),
            _ => false,
        };
    };
    for role in roles {
        let allowed = |set: &Set, id: &str| {
            in_catalog(set, id)
                .and_then(|zambda| set.decide_role(role, zambda))
                .is_some_and(|d| d.allowed)
        };
        for id in &ids {
            record(
                &Who::Role(role.to_owned()),
                id,
                allowed(old, id),
                allowed(new, id),
            );
        }
    }
    for subject in SUBJECTS.into_iter().chain([NOBODY]) {
        for issuer in ISSUERS {
            let principal = Principal {
                subject,
                issuer,
                token_roles: &[],
            };
            let allowed = |set: &Set, id: &str| {
                in_catalog(set, id).is_some_and(|zambda| set.decide(&principal, zambda).allowed)
            };
            for id in &ids {
                let (before, after) = (allowed(old, id), allowed(new, id));
                if before != after {
                    let who = reported_as(old, new, subject, issuer).unwrap_or_else(|| {
                        panic!("a token of {subject} from {issuer:?} flips, yet is no principal")
                    });
                    record(&who, id, before, after);
                }
            }
        }
    }
    flips
}

/// The principal of the diff a token of `subject` from `issuer` (with no
/// roles) is reported under; `None` when it holds nothing in either set.
fn reported_as(old: &Set, new: &Set, subject: &str, issuer: Option<&str>) -> Option<Who> {
    let listed = |set: &Set, issuer: Option<&str>| {
        set.actors()
            .any(|a| a.subject == subject && a.issuer.as_deref() == issuer)
    };
    let actor = |issuer: Option<&str>| Who::Actor {
        subject: subject.to_owned(),
        issuer: issuer.map(str::to_owned),
    };
    let has_defaults = |issuer: Option<&str>| {
        issuer.is_some_and(|i| old.defaults_of(i).is_some() || new.defaults_of(i).is_some())
    };
    let unlisted_token = !subject.ends_with("@clients") && has_defaults(issuer);
    if issuer.is_some() && (listed(old, issuer) || listed(new, issuer)) {
        // An entry for this very key, in either set.
        Some(actor(issuer))
    } else if listed(old, None) && listed(new, None) || !unlisted_token {
        // Decided by the entries without issuer alone, in both sets.
        (listed(old, None) || listed(new, None)).then(|| actor(None))
    } else if listed(old, None) || listed(new, None) {
        // Listed in one set, holding the defaults in the other.
        Some(actor(issuer))
    } else {
        // Unlisted in both.
        issuer.map(|issuer| Who::Unlisted {
            issuer: issuer.to_owned(),
        })
    }
}

#[test]
fn diff_agrees_with_deciding_every_pair_on_random_policy_sets() {
    let (mut flips, mut catalog_changes, mut unlisted_flips) = (0, 0, 0);
    for seed in 0..400u64 {
        let mut rng = Rng(seed);
        let before = random_world(&mut rng);
        let after = mutate(&mut rng, &before);
        let (old_text, new_text) = (yaml(&before), yaml(&after));
        let (old, new) = (load(&old_text), load(&new_text));
        let diff = Diff::between(&old, &new);

        let found: Vec<(Who, String, Flip)> = diff
            .pairs()
            .map(|(who, id, flip)| (who.clone(), id.to_owned(), flip))
            .collect();
        let unique: HashSet<(Who, String, Flip)> = found.iter().cloned().collect();
        assert_eq!(
            found.len(),
            unique.len(),
            "seed {seed}: a pair listed twice"
        );
        let expected = brute_force(&old, &new);
        assert_eq!(
            unique, expected,
            "seed {seed}\n--- old\n{old_text}--- new\n{new_text}"
        );
        for flip in [Flip::NewlyAllowed, Flip::NewlyDenied] {
            assert_eq!(
                diff.count(flip),
                expected.iter().filter(|(_, _, f)| *f == flip).count(),
                "seed {seed}"
            );
        }
        flips += expected.len();
        unlisted_flips += expected
            .iter()
            .filter(|(who, _, _)| matches!(who, Who::Unlisted { .. }))
            .count();

        // The catalog changes, by id.
        let ids = |set: &Set| -> Vec<String> { set.zambdas().map(|z| z.id.clone()).collect() };
        let (old_ids, new_ids) = (ids(&old), ids(&new));
        let added: Vec<String> = new_ids
            .iter()
            .filter(|id| !old_ids.contains(id))
            .cloned()
            .collect();
        let removed: Vec<String> = old_ids
            .iter()
            .filter(|id| !new_ids.contains(id))
            .cloned()
            .collect();
        let kept: Vec<_> = old
            .zambdas()
            .filter_map(|z| Some((z, new.zambda(&z.id).filter(|n| n.id == z.id)?)))
            .collect();
        let renamed: Vec<String> = kept
            .iter()
            .filter(|(o, n)| o.name != n.name)
            .map(|(o, _)| o.id.clone())
            .collect();
        let retyped: Vec<String> = kept
            .iter()
            .filter(|(o, n)| o.kind != n.kind)
            .map(|(o, _)| o.id.clone())
            .collect();
        let c = &diff.catalog;
        assert_eq!(
            c.added.iter().map(|z| z.id.clone()).collect::<Vec<_>>(),
            added,
            "seed {seed}"
        );
        assert_eq!(
            c.removed.iter().map(|z| z.id.clone()).collect::<Vec<_>>(),
            removed,
            "seed {seed}"
        );
        assert_eq!(
            c.renamed.iter().map(|z| z.id.clone()).collect::<Vec<_>>(),
            renamed,
            "seed {seed}"
        );
        assert_eq!(
            c.retyped.iter().map(|z| z.id.clone()).collect::<Vec<_>>(),
            retyped,
            "seed {seed}"
        );
        catalog_changes += added.len() + removed.len() + renamed.len() + retyped.len();
    }
    // The generator must exercise the comparison, or this test proves nothing.
    assert!(flips > 1000, "only {flips} flipped pairs in all");
    assert!(
        unlisted_flips > 100,
        "only {unlisted_flips} flipped pairs of unlisted actors in all"
    );
    assert!(
        catalog_changes > 100,
        "only {catalog_changes} catalog changes in all"
    );
}

#[test]
fn diff_of_a_set_with_itself_is_empty() {
    let set = load(POLICIES);
    let again = load(POLICIES);
    let diff = Diff::between(&set, &again);
    assert_eq!(diff.pairs().count(), 0);
    assert!(diff.catalog.is_empty());
}
