//! `policy::load_texts` on arbitrary text, as a YAML and as a JSON file,
//! next to a fixed catalog so cross-file references are exercised.
//!
//! Checks: loading never panics (it answers a set or errors); when a set
//! loads, the fast decision (`Set::decide`) and the rule-scanning one
//! (`Set::explain`) agree for every actor, every role held through the
//! token, and every Zambda.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use zambda_guard::policy::{self, Principal};

const CATALOG: &str = "\
zambdas:
  - {id: 0a1b2c3d-0000-4000-8000-00000000000a, name: alpha}
  - {id: beta-id, name: beta, type: public}
roles:
  - name: base
    access_policy:
      rule: {action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Allow}
";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for name in ["policies/fuzz.yaml", "policies/fuzz.json"] {
        let _ = policy::load_texts(&[(Path::new(name), text)]);
        let files = [
            (Path::new("policies/catalog.yaml"), CATALOG),
            (Path::new(name), text),
        ];
        if let Ok(loaded) = policy::load_texts(&files) {
            agree(&loaded.set);
        }
    }
});

/// `decide` and `explain` reach the same decision.
fn agree(set: &policy::Set) {
    let all_roles: Vec<String> = set.role_names().map(String::from).collect();
    let mut principals: Vec<Principal<'_>> = set.actors().map(|a| a.principal()).collect();
    principals.push(Principal {
        subject: "nobody",
        issuer: None,
        token_roles: &all_roles,
    });
    for actor in set.actors() {
        let mut p = actor.principal();
        p.token_roles = &all_roles;
        principals.push(p);
    }
    for zambda in set.zambdas() {
        for p in &principals {
            let fast = set.decide(p, zambda);
            let slow = set.explain(p, zambda);
            assert_eq!(
                fast, slow.decision,
                "decide and explain disagree for {:?} on {}",
                p.subject, zambda.name
            );
        }
    }
}
