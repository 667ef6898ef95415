//! The command line, run as a user runs it: `check`, `explain`, `--version`,
//! `--help`, and the exit codes of SPEC §5.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn zg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zambda-guard"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A config in `dir` using the given policies directory and issuer keys.
fn write_config(dir: &Path, extra_issuer: &str) -> String {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "auth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n{extra_issuer}policies:\n  dir: policies\n"
        ),
    )
    .unwrap();
    config.display().to_string()
}

#[test]
fn version_and_help() {
    let o = zg(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("zambda-guard {}", env!("CARGO_PKG_VERSION"))
    );
    for cmd in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["check", "--help"],
        vec!["explain", "--help"],
        vec!["demo", "--help"],
    ] {
        let o = zg(&cmd);
        assert!(o.status.success(), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{cmd:?}"
        );
    }
    let o = zg(&["explain", "--zambda"]);
    assert_eq!(o.status.code(), Some(2), "bad arguments are exit code 2");
}

#[test]
fn check_accepts_the_shipped_files() {
    let o = zg(&["check", "--config", "config.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("4 zambda(s)"), "{out}");
    assert!(out.contains("inert rule"), "{out}");
    // How each issuer's claims will be read (SPEC §2).
    assert!(
        out.contains("issuer https://auth.example.com/: subject from claim \"sub\" (top-level name); no roles read from tokens"),
        "{out}"
    );

    // A namespaced roles claim is read by its whole name first.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let pem = key_path("rsa1-public.pem");
    let config = write_config(
        dir.path(),
        &format!(
            "      public_key_pem_file: {}\n      roles_claim: https://example.com/roles\n",
            pem.display()
        ),
    );
    let o = zg(&["check", "--config", &config]);
    assert!(
        text(&o).contains("roles from claim \"https://example.com/roles\" (top-level name; as a dotted path only if absent)"),
        "{}",
        text(&o)
    );
}

#[test]
fn check_says_what_unlisted_actors_hold_and_warns_about_oystehr_pitfalls() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("project.yaml"),
        "\
roles:
  - name: Patient
    accessPolicy: []
  - name: Front Desk
    id: 7f3c2a10-0000-4000-8000-000000000001
    accessPolicy: []
  - name: Lab Integration
    accessPolicy: []
defaults:
  - issuer: https://issuer.test/
    roles: [Patient, Front Desk]
actors:
  - subject: anyone
m2ms:
  - clientId: unbound
    roles: [Patient]
  - clientId: bound
    issuer: https://issuer.test/
",
    )
    .unwrap();
    let pem = key_path("rsa1-public.pem");
    let other = "https://other.test/";
    let config = write_config(
        dir.path(),
        &format!(
            "      public_key_pem_file: {pem}\n      roles_claim: roles\n    - issuer: {other}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n      public_key_pem_file: {pem}\n",
            pem = pem.display()
        ),
    );
    let o = zg(&["check", "--config", &config]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    let file = policies.join("project.yaml").display().to_string();
    let lines: Vec<&str> = out.lines().collect();

    // Per issuer, what its unlisted actors hold, and where that is said.
    for line in [
        format!("unlisted actors of {ISSUER} hold: Patient, Front Desk (defaults, {file}:10)"),
        format!("unlisted actors of {other} hold no roles"),
    ] {
        assert!(lines.contains(&line.as_str()), "{line}\n{out}");
    }

    // The M2M client without issuer, by name and place; the bound one not.
    let m2m = format!(
        "warning: m2m client \"unbound\" ({file}:15) carries no `issuer` while 2 issuers are configured: a token of subject \"unbound@clients\" from any of them holds its access"
    );
    assert!(lines.contains(&m2m.as_str()), "{out}");
    assert!(!out.contains("\"bound\""), "{out}");
    // Actors are counted apart from M2M clients.
    assert!(
        out.contains("warning: 1 actor(s) carry no `issuer` while 2 issuers are configured"),
        "{out}"
    );

    // Roles with a space in their names: by id, or not at all.
    for line in [
        format!("warning: role \"Front Desk\" ({file}:4): its name contains a space: a roles claim given as one space-separated text can carry it only by its id \"7f3c2a10-0000-4000-8000-000000000001\""),
        format!("warning: role \"Lab Integration\" ({file}:7): its name contains a space: a roles claim given as one space-separated text can carry it only by its id, and it has none"),
    ] {
        assert!(lines.contains(&line.as_str()), "{line}\n{out}");
    }
    assert!(!out.contains("role \"Patient\""), "{out}");
}

#[test]
fn check_of_the_example_oystehr_project() {
    let o = zg(&["check", "--config", "examples/oystehr-project/config.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("unlisted actors of https://auth.example.com/ hold: Patient (defaults, "),
        "{out}"
    );
    assert!(out.contains("warning: role \"Lab Integration\" ("), "{out}");
}

#[test]
fn check_names_file_and_line_of_a_broken_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("roles.yaml"),
        "roles:\n  - name: ok\n    access_policy:\n      rule:\n        - action: Zambda:InvokeFunction\n          resource: Zambda:Function:*\n          effect: Allow\n  - name: typo\n    access_policy:\n      rule:\n        - action: zambda:invokefunction\n          resource: Zambda:Function:*\n          effect: Deny\n",
    )
    .unwrap();
    let pem = key_path("rsa1-public.pem");
    let config = write_config(
        dir.path(),
        &format!("      public_key_pem_file: {}\n", pem.display()),
    );
    let o = zg(&["check", "--config", &config]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("roles.yaml:"), "{out}");
    assert!(out.contains("typo"), "{out}");
    // the bad rule is at line 11 (its entry starts at line 10)
    assert!(out.contains(":10") || out.contains(":11"), "{out}");
}

#[test]
fn check_refuses_bad_config_and_missing_key_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let config = write_config(dir.path(), "      public_key_pem_file: missing.pem\n");
    let o = zg(&["check", "--config", &config]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("missing.pem"), "{}", text(&o));

    std::fs::write(dir.path().join("bad.yaml"), "listen: [\n").unwrap();
    let bad = dir.path().join("bad.yaml").display().to_string();
    let o = zg(&["check", "--config", &bad]);
    assert_eq!(o.status.code(), Some(2));

    let o = zg(&["check", "--config", "/nonexistent/config.yaml"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn check_warns_about_an_empty_policy_set() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let pem = key_path("rsa1-public.pem");
    let config = write_config(
        dir.path(),
        &format!("      public_key_pem_file: {}\n", pem.display()),
    );
    let o = zg(&["check", "--config", &config]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("empty"), "{}", text(&o));
}

#[test]
fn run_refuses_invalid_input_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("x.yaml"), "zambdas:\n  - id: a\n").unwrap();
    let pem = key_path("rsa1-public.pem");
    let config = write_config(
        dir.path(),
        &format!("      public_key_pem_file: {}\n", pem.display()),
    );
    let o = zg(&["run", "--config", &config]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("x.yaml"), "{}", text(&o));
}

fn explain(args: &[&str]) -> (i32, String) {
    let mut all = vec!["explain", "--config", "config.yaml"];
    all.extend_from_slice(args);
    let o = zg(&all);
    (o.status.code().unwrap_or(-1), text(&o))
}

#[test]
fn explain_names_the_deciding_rule() {
    let (code, out) = explain(&[
        "--subject",
        "lab-bot@clients",
        "--zambda",
        "lab-results-ingest",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("decision: allow"), "{out}");
    assert!(
        out.contains("Allow rule[0] of role \"lab-integrations\""),
        "{out}"
    );

    let (_, out) = explain(&["--subject", "dr-alice", "--zambda", "billing-export"]);
    assert!(out.contains("decision: deny"), "{out}");
    assert!(
        out.contains("deciding: Deny rule[0] of role \"no-billing\""),
        "{out}"
    );
    assert!(out.contains("roles.yaml:"), "{out}");

    let (_, out) = explain(&[
        "--subject",
        "lab-bot@clients",
        "--zambda",
        "patient-summary",
    ]);
    assert!(out.contains("decision: deny"), "{out}");
    assert!(out.contains("no rule allows"), "{out}");
}

#[test]
fn explain_json_with_token_roles() {
    let (code, out) = explain(&[
        "--subject",
        "someone-new",
        "--role",
        "clinician",
        "--role",
        "undefined-role",
        "--zambda",
        "patient-summary",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["principal"]["roles"][0]["name"], "clinician");
    assert_eq!(v["principal"]["roles"][0]["source"]["kind"], "token");
    assert_eq!(v["principal"]["ignored_roles"][0], "undefined-role");
    assert_eq!(v["deciding_rule"]["origin"]["name"], "clinician");
    assert_eq!(v["deciding_rule"]["effect"], "Allow");

    let (_, out) = explain(&[
        "--subject",
        "former-staff",
        "--zambda",
        "patient-summary",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["deciding_rule"]["origin"]["name"], "inactive");
    assert_eq!(v["matching_rules"].as_array().unwrap().len(), 2);
}

#[test]
fn explain_with_an_unverified_token_and_unknown_zambda() {
    let token = SigningKey::rsa1().sign(&claims("dr-alice"));
    let (code, out) = explain(&[
        "--token",
        &token,
        "--no-verify",
        "--zambda",
        "billing-export",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dr-alice"), "{out}");
    assert!(out.contains("decision: deny"), "{out}");
    assert!(!out.contains(&token), "token echoed");

    let (code, out) = explain(&["--subject", "dr-alice", "--zambda", "nope"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not in the catalog"), "{out}");
}

#[test]
fn a_zambda_naming_an_unconfigured_upstream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("c.yaml"),
        "zambdas:\n  - id: a-1\n    name: alpha\n    upstream: labs\n",
    )
    .unwrap();
    let pem = key_path("rsa1-public.pem");
    let config = write_config(
        dir.path(),
        &format!("      public_key_pem_file: {}\n", pem.display()),
    );
    let o = zg(&["check", "--config", &config]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("c.yaml:2"), "{}", text(&o));
    assert!(text(&o).contains("upstream"), "{}", text(&o));

    // Every command that loads the set refuses what `run` refuses.
    let cases = dir.path().join("c.test.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - {principal: {subject: ann}, zambda: alpha, expect: deny}\n",
    )
    .unwrap();
    let dirs = policies.display().to_string();
    for args in [
        vec![
            "explain",
            "--config",
            &config,
            "--subject",
            "ann",
            "--zambda",
            "alpha",
        ],
        vec!["test", "--config", &config, cases.to_str().unwrap()],
        vec!["diff", "--config", &config, &dirs, &dirs],
    ] {
        let o = zg(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("\"labs\""), "{args:?}: {}", text(&o));
    }
    // diff without a config holds the files to their own rules only.
    let o = zg(&["diff", &dirs, &dirs]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn check_merges_several_policy_directories_and_warns_of_trusting_everyone() {
    let dir = tempfile::tempdir().unwrap();
    for (sub, text) in [
        ("team-a", "zambdas: [{id: z-1, name: alpha}]\n"),
        ("team-b", "zambdas: [{id: z-2, name: beta}]\n"),
    ] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::write(dir.path().join(sub).join("catalog.yaml"), text).unwrap();
    }
    let pem = key_path("rsa1-public.pem");
    let config = dir.path().join("config.yaml");
    let write = |dirs: &str, extra: &str| {
        std::fs::write(
            &config,
            format!(
                "auth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n      \
                 public_key_pem_file: {}\npolicies:\n  dir: {dirs}\n{extra}",
                pem.display()
            ),
        )
        .unwrap();
    };
    let config = config.display().to_string();

    write(
        "[team-a, team-b]",
        "trusted_proxies: [10.0.0.0/8, 0.0.0.0/0]\n",
    );
    let o = zg(&["check", "--config", &config]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("2 zambda(s)"), "{}", text(&o));
    assert!(
        text(&o).contains("trusted_proxies: 0.0.0.0/0 trusts every peer"),
        "{}",
        text(&o)
    );

    // one directory alone is one team's set; no warning without 0.0.0.0/0
    write("team-b", "trusted_proxies: [10.0.0.0/8]\n");
    let o = zg(&["check", "--config", &config]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("1 zambda(s)"), "{}", text(&o));
    assert!(!text(&o).contains("warning"), "{}", text(&o));

    // the same zambda in both is refused, naming the file
    std::fs::write(
        dir.path().join("team-b").join("catalog.yaml"),
        "zambdas: [{id: z-1, name: alpha}]\n",
    )
    .unwrap();
    write("[team-a, team-b]", "");
    let o = zg(&["check", "--config", &config]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("catalog.yaml"), "{}", text(&o));
}

#[test]
fn policy_tests_use_every_directory_of_the_config() {
    let dir = tempfile::tempdir().unwrap();
    for (sub, text) in [
        ("base", "zambdas: [{id: z-1, name: alpha}]\n"),
        (
            "team",
            "actors:\n  - subject: bot\n    access_policy:\n      rule:\n        - {action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Allow}\n",
        ),
    ] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::write(dir.path().join(sub).join("p.yaml"), text).unwrap();
    }
    std::fs::write(
        dir.path().join("base").join("bot.test.yaml"),
        "cases:\n  - {principal: {subject: bot}, zambda: alpha, expect: allow}\n",
    )
    .unwrap();
    let pem = key_path("rsa1-public.pem");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "auth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n      \
             public_key_pem_file: {}\npolicies:\n  dir: [base, team]\n",
            pem.display()
        ),
    )
    .unwrap();
    let base = dir.path().join("base").display().to_string();
    let o = zg(&["test", "--config", &config.display().to_string(), &base]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
