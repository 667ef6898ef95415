//! `explain` reads a token's claims exactly as the proxy does, verified or
//! only decoded: the same subject checks, the same role shapes, the same
//! refusals.

use std::path::Path;

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const SECRET_ENV: &str = "ZG_EXPLAIN_TEST_SECRET";
const SECRET: &str = "explain-tests-hmac-secret-0123456789abcdef";
const ISSUER: &str = "https://explain.test/";

fn config() -> Config {
    // The variable is this module's own; every test sets the same value.
    std::env::set_var(SECRET_ENV, SECRET);
    let text = format!(
        "auth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [https://api.test]\n      \
         algorithms: [HS256]\n      hmac_secret_env: {SECRET_ENV}\n      roles_claim: roles\n"
    );
    Config::from_yaml(&text, "explain-test.yaml", Path::new("/tmp")).unwrap()
}

fn set() -> policy::Set {
    let text = "\
zambdas: [{id: z-1, name: alpha}]
roles:
  - name: a
    access_policy: {rule: [{action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Allow}]}
";
    policy::load_texts(&[(Path::new("p.yaml"), text)])
        .unwrap()
        .set
}

fn sign(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::default(), claims, &key).unwrap()
}

fn token(claims: Value) -> String {
    let mut all = json!({
        "iss": ISSUER,
        "aud": "https://api.test",
        "exp": crate::clock::unix_now() + 600,
    });
    if let (Some(all), Some(more)) = (all.as_object_mut(), claims.as_object()) {
        all.extend(more.clone());
    }
    sign(&all)
}

/// The explanation without the line that says how the token was read.
fn explained(query: Query) -> Result<Value, String> {
    let out = run(&config(), &set(), query, "alpha", Format::Json)?;
    let mut v: Value = serde_json::from_str(&out).unwrap();
    v["principal"]["from"] = Value::Null;
    Ok(v)
}

#[test]
fn decoding_a_token_reads_its_claims_as_verifying_it_does() {
    let cases = [
        ("plain", json!({"sub": "dr-alice", "roles": ["a", "x"]})),
        (
            "roles as one string",
            json!({"sub": "dr-alice", "roles": "a  x"}),
        ),
        (
            "a role that is not a string",
            json!({"sub": "dr-alice", "roles": ["a", 3]}),
        ),
        (
            "roles as an object",
            json!({"sub": "dr-alice", "roles": {"a": true}}),
        ),
        (
            "roles split on ASCII spaces only",
            json!({"sub": "dr-alice", "roles": "a\u{3000}x"}),
        ),
        (
            "a subject with a control character",
            json!({"sub": "dr\nalice"}),
        ),
        ("an empty subject", json!({"sub": ""})),
        ("a subject that is not a string", json!({"sub": 42})),
        ("no subject", json!({"roles": ["a"]})),
    ];
    let mut drift = Vec::new();
    for (name, claims) in cases {
        let t = token(claims);
        let verified = explained(Query::Token(t.clone()));
        let decoded = explained(Query::UnverifiedToken(t));
        if verified.is_ok() != decoded.is_ok() || verified.as_ref().ok() != decoded.as_ref().ok() {
            drift.push(format!(
                "{name}:\n  verified: {verified:?}\n  decoded:  {decoded:?}"
            ));
        }
    }
    assert!(drift.is_empty(), "{}", drift.join("\n"));
}

#[test]
fn decoding_a_token_of_an_unknown_issuer_says_the_proxy_would_refuse_it() {
    let t = sign(&json!({
        "iss": "https://other.test/",
        "sub": "dr-alice",
        "aud": "https://api.test",
        "exp": crate::clock::unix_now() + 600,
    }));
    let out = run(
        &config(),
        &set(),
        Query::UnverifiedToken(t),
        "alpha",
        Format::Text,
    )
    .unwrap();
    assert!(out.contains("the proxy would refuse it"), "{out}");
}
