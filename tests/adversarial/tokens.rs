//! Token cases: algorithm confusion, forged and stripped signatures,
//! foreign keys and key ids, claims out of range, and the Authorization
//! header in every malformed shape.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::*;
use crate::driver::*;
use crate::kit::*;
use crate::*;

pub fn token_cases(attacker: &JwksServer) -> Vec<Case> {
    let key = SigningKey::rsa1();
    let other = SigningKey::rsa2();
    let base = claims("lab-bot@clients");
    let lab = key.sign(&base);
    let rsa_private = key.encoding_key();
    let rsa2_private = other.encoding_key();
    let t = |token: &str| post(LAB).bearer(token);
    let bad = |name: &str, token: &str| {
        case(format!("token: {name}"), t(token), Refused(401)).check(challenge(true))
    };
    let good = |name: &str, token: &str| case(format!("token: {name}"), t(token), fwd(LAB));
    let rs_header =
        |extra: Value| with(json!({"alg": "RS256", "typ": "JWT", "kid": "rsa1"}), extra);
    let signed =
        |header: Value, payload: &Value| sign_raw(&header, payload, &rsa_private, Algorithm::RS256);

    let mut cases = vec![
        good("baseline RS256", &lab),
        good(
            "baseline HS256 with the issuer's secret",
            &hs256(&base, &hmac_key()),
        ),
        good(
            "audience list containing ours",
            &key.sign(&with(
                base.clone(),
                json!({"aud": ["https://other.test", AUDIENCE]}),
            )),
        ),
    ];

    // alg none in every spelling, with and without a signature
    let payload = b64(base.to_string().as_bytes());
    let lab_signature = parts(&lab)[2].clone();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        cases.push(bad(
            &format!("alg {alg}, empty signature"),
            &format!("{header}.{payload}."),
        ));
        cases.push(bad(
            &format!("alg {alg}, a real signature"),
            &format!("{header}.{payload}.{lab_signature}"),
        ));
        let with_kid = b64(json!({"alg": alg, "kid": "rsa1"}).to_string().as_bytes());
        cases.push(bad(
            &format!("alg {alg} with kid"),
            &format!("{with_kid}.{payload}.x"),
        ));
    }
    for (what, header) in [
        ("alg missing", json!({"typ": "JWT", "kid": "rsa1"})),
        ("alg null", json!({"alg": null, "kid": "rsa1"})),
        ("alg empty", json!({"alg": "", "kid": "rsa1"})),
        ("alg list", json!({"alg": ["RS256"], "kid": "rsa1"})),
        (
            "alg lower-case rs256",
            json!({"alg": "rs256", "kid": "rsa1"}),
        ),
        (
            "alg not allowed for the issuer (RS512)",
            json!({"alg": "RS512", "kid": "rsa1"}),
        ),
    ] {
        let message = format!("{}.{payload}", b64(header.to_string().as_bytes()));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &rsa_private, Algorithm::RS256).unwrap();
        cases.push(bad(what, &format!("{message}.{signature}")));
    }

    // HS/RS confusion: the RSA public key (as the PEM text, as the JWK's n)
    // used as an HMAC secret, with and without the RSA kid
    let pem_secret = EncodingKey::from_secret(&key.public_pem);
    let trimmed_pem =
        EncodingKey::from_secret(String::from_utf8_lossy(&key.public_pem).trim().as_bytes());
    let n_secret = EncodingKey::from_secret(key.jwk()["n"].as_str().unwrap().as_bytes());
    for (what, secret) in [
        ("public PEM", &pem_secret),
        ("public PEM, trimmed", &trimmed_pem),
        ("JWK n", &n_secret),
    ] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut h = Header::new(alg);
            h.kid = Some("rsa1".into());
            let with_kid = jsonwebtoken::encode(&h, &base, secret).unwrap();
            cases.push(bad(
                &format!("{alg:?} keyed with the RSA {what}, kid rsa1"),
                &with_kid,
            ));
            let without = jsonwebtoken::encode(&Header::new(alg), &base, secret).unwrap();
            cases.push(bad(
                &format!("{alg:?} keyed with the RSA {what}, no kid"),
                &without,
            ));
        }
    }
    cases.push(bad(
        "RS256 header over an HMAC signature",
        &sign_raw(&rs_header(json!({})), &base, &hmac_key(), Algorithm::HS256),
    ));
    cases.push(bad(
        "ES256 header, kid of the RSA key",
        &sign_raw(
            &json!({"alg": "ES256", "kid": "rsa1"}),
            &base,
            &SigningKey::fixture("ec-p256", "ec", Algorithm::ES256).encoding_key(),
            Algorithm::ES256,
        ),
    ));
    cases.push(bad(
        "HS256 with an empty secret",
        &hs256(&base, &EncodingKey::from_secret(b"")),
    ));

    // kid injection
    for kid in [
        "../../../../../../dev/null".to_string(),
        "/dev/null".into(),
        "rsa1/../rsa1".into(),
        "rsa1\u{0}".into(),
        "rsa1 ".into(),
        "RSA1".into(),
        "' OR '1'='1".into(),
        "http://127.0.0.1/jwks.json".into(),
        String::new(),
        "k".repeat(8000),
    ] {
        let shown: String = kid.chars().take(40).collect();
        cases.push(bad(
            &format!(
                "kid {shown:?} ({} bytes), signed by an unknown key",
                kid.len()
            ),
            &sign_raw(
                &json!({"alg": "RS256", "kid": kid}),
                &base,
                &rsa2_private,
                Algorithm::RS256,
            ),
        ));
    }
    cases.push(bad(
        "kid path with HS256 keyed by an empty file's content",
        &sign_raw(
            &json!({"alg": "HS256", "kid": "../../../../../../dev/null"}),
            &base,
            &EncodingKey::from_secret(b""),
            Algorithm::HS256,
        ),
    ));
    cases.push(bad(
        "kid as a number",
        &sign_raw(
            &json!({"alg": "RS256", "kid": 1}),
            &base,
            &rsa_private,
            Algorithm::RS256,
        ),
    ));

    // embedded keys are never used (and never fetched)
    let attacker_jwk = other.jwk();
    let attacker_hits = attacker.hits.clone();
    let never_fetched = move |_: &Outcome| {
        let hits = attacker_hits.load(std::sync::atomic::Ordering::SeqCst);
        if hits == 0 {
            Ok(())
        } else {
            Err(format!("the attacker's key URL was fetched {hits} times"))
        }
    };
    let never_fetched = Arc::new(never_fetched);
    for (what, header) in [
        (
            "embedded jwk, own kid",
            json!({"alg": "RS256", "kid": "attacker", "jwk": attacker_jwk}),
        ),
        (
            "embedded jwk, kid rsa1",
            json!({"alg": "RS256", "kid": "rsa1", "jwk": attacker_jwk}),
        ),
        (
            "embedded jwk, no kid",
            json!({"alg": "RS256", "jwk": attacker_jwk}),
        ),
        (
            "jku to the attacker's JWKS",
            json!({"alg": "RS256", "kid": "rsa2", "jku": attacker.url()}),
        ),
        (
            "jku, kid rsa1",
            json!({"alg": "RS256", "kid": "rsa1", "jku": attacker.url()}),
        ),
        (
            "x5u to the attacker",
            json!({"alg": "RS256", "kid": "rsa2", "x5u": attacker.url()}),
        ),
        (
            "x5c garbage",
            json!({"alg": "RS256", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
        ),
    ] {
        let fetched = Arc::clone(&never_fetched);
        cases.push(
            bad(
                what,
                &sign_raw(&header, &base, &rsa2_private, Algorithm::RS256),
            )
            .check(move |o| fetched(o)),
        );
    }
    cases.push(bad(
        "crit header",
        &signed(rs_header(json!({"crit": ["exp"]})), &base),
    ));
    cases.push(good(
        "embedded jku ignored on a token the issuer signed",
        &signed(rs_header(json!({"jku": attacker.url()})), &base),
    ));

    // time: each side of the issuer's 120 s leeway (`main_world`), with
    // 60 s of margin, so that a slow run of the table cannot move a token
    // across it between signing and sending
    let n = now();
    cases.extend([
        good(
            "exp 60 s ago (inside the leeway)",
            &key.sign(&with(base.clone(), json!({"exp": n - 60}))),
        ),
        bad(
            "exp 300 s ago (outside the leeway)",
            &key.sign(&with(base.clone(), json!({"exp": n - 300}))),
        ),
        good(
            "nbf in 60 s (inside the leeway)",
            &key.sign(&with(base.clone(), json!({"nbf": n + 60}))),
        ),
        bad(
            "nbf in 300 s (outside the leeway)",
            &key.sign(&with(base.clone(), json!({"nbf": n + 300}))),
        ),
        bad(
            "exp missing",
            &key.sign(&with(base.clone(), json!({"exp": null}))),
        ),
        bad(
            "exp a string",
            &key.sign(&with(base.clone(), json!({"exp": (n + 3600).to_string()}))),
        ),
        bad(
            "exp negative",
            &key.sign(&with(base.clone(), json!({"exp": -1}))),
        ),
        bad(
            "exp zero",
            &key.sign(&with(base.clone(), json!({"exp": 0}))),
        ),
        bad(
            "nbf a string",
            &key.sign(&with(base.clone(), json!({"nbf": "0"}))),
        ),
        bad(
            "aud missing",
            &key.sign(&with(base.clone(), json!({"aud": null}))),
        ),
        bad(
            "aud another",
            &key.sign(&with(base.clone(), json!({"aud": "https://other.test"}))),
        ),
        bad(
            "aud as prefix",
            &key.sign(&with(base.clone(), json!({"aud": "https://api.test.evil"}))),
        ),
        bad(
            "aud empty list",
            &key.sign(&with(base.clone(), json!({"aud": []}))),
        ),
        bad(
            "iss another",
            &key.sign(&with(base.clone(), json!({"iss": "https://evil.test/"}))),
        ),
        bad(
            "iss without the slash",
            &key.sign(&with(base.clone(), json!({"iss": "https://issuer.test"}))),
        ),
        bad(
            "iss missing",
            &key.sign(&with(base.clone(), json!({"iss": null}))),
        ),
        bad(
            "sub missing",
            &key.sign(&with(base.clone(), json!({"sub": null}))),
        ),
        bad(
            "sub empty",
            &key.sign(&with(base.clone(), json!({"sub": ""}))),
        ),
        bad(
            "sub a number",
            &key.sign(&with(base.clone(), json!({"sub": 7}))),
        ),
        bad(
            "sub a list",
            &key.sign(&with(base.clone(), json!({"sub": ["dr-alice"]}))),
        ),
        bad(
            "sub with a newline",
            &key.sign(&with(
                base.clone(),
                json!({"sub": "lab-bot@clients\nx-zambda-actor: dr-alice"}),
            )),
        ),
        bad(
            "claims are a list",
            &signed(rs_header(json!({})), &json!([base.clone()])),
        ),
    ]);

    // the scheme and its spacing
    for (what, value, ok) in [
        ("scheme lower-case", format!("bearer {lab}"), true),
        ("scheme upper-case", format!("BEARER {lab}"), true),
        ("scheme mixed case", format!("bEaReR {lab}"), true),
        ("three spaces", format!("Bearer   {lab}"), true),
        ("tab instead of space", format!("Bearer\t{lab}"), false),
        ("no space", format!("Bearer{lab}"), false),
        ("trailing garbage", format!("Bearer {lab} x"), false),
        (
            "two tokens, comma",
            format!("Bearer {lab},Bearer {lab}"),
            false,
        ),
        ("token in quotes", format!("Bearer \"{lab}\""), false),
        ("scheme only", "Bearer".into(), false),
        ("scheme, spaces", "Bearer    ".into(), false),
        ("another scheme", format!("Token {lab}"), false),
        ("Basic", "Basic bGFiLWJvdEBjbGllbnRzOng=".into(), false),
    ] {
        let req = post(LAB).header("authorization", &value);
        if ok {
            cases.push(case(format!("bearer: {what}"), req, fwd(LAB)));
        } else {
            // no token at all (another scheme) answers the plain challenge
            let token_given = !matches!(
                what,
                "Basic" | "another scheme" | "no space" | "tab instead of space"
            );
            cases.push(
                case(format!("bearer: {what}"), req, Refused(401)).check(challenge(token_given)),
            );
        }
    }
    cases.push(case(
        "bearer: header name upper-case",
        post(LAB).header("AUTHORIZATION", &format!("Bearer {lab}")),
        fwd(LAB),
    ));

    // tokens anywhere but the Authorization header are ignored
    for (what, req) in [
        ("in the query", post(&format!("{LAB}?access_token={lab}"))),
        (
            "in the query as token",
            post(&format!("{LAB}?token={lab}&authorization=Bearer%20{lab}")),
        ),
        (
            "in a cookie",
            post(LAB).header(
                "cookie",
                &format!("access_token={lab}; token={lab}; Authorization=Bearer%20{lab}"),
            ),
        ),
        (
            "in x-access-token",
            post(LAB).header("x-access-token", &lab),
        ),
        ("in x-auth-token", post(LAB).header("x-auth-token", &lab)),
        (
            "in x-forwarded-access-token",
            post(LAB).header("x-forwarded-access-token", &lab),
        ),
        (
            "in proxy-authorization",
            post(LAB).header("proxy-authorization", &format!("Bearer {lab}")),
        ),
        (
            "in the body",
            post(LAB).body(json!({"access_token": lab}).to_string()),
        ),
    ] {
        cases.push(case(format!("token {what}"), req, Refused(401)).check(challenge(false)));
    }

    // two Authorization headers
    for (what, second) in [
        ("the same token twice", format!("Bearer {lab}")),
        ("a valid token and Basic", "Basic eDp5".to_string()),
        ("a valid token and an empty one", String::new()),
    ] {
        cases.push(
            case(
                format!("authorization: {what}"),
                post(LAB).bearer(&lab).header("Authorization", &second),
                Refused(401),
            )
            .check(challenge(true)),
        );
    }

    // oversized, truncated, garbage
    let oversized = format!(
        "{}.{}.{}",
        "a".repeat(6000),
        "b".repeat(6000),
        "c".repeat(6000)
    );
    let big_but_signed = key.sign(&with(base.clone(), json!({"pad": "p".repeat(17_000)})));
    let lab_parts = parts(&lab);
    let (h, p_, s) = (&lab_parts[0], &lab_parts[1], &lab_parts[2]);
    let mut flipped = s.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, token) in [
        ("oversized garbage (18 KB)", oversized),
        ("oversized but validly signed (23 KB)", big_but_signed),
        ("oversized (600 KB)", "a".repeat(600_000)),
        ("truncated by 10", lab[..lab.len() - 10].to_string()),
        ("signature removed", format!("{h}.{p_}.")),
        ("two parts", format!("{h}.{p_}")),
        ("four parts", format!("{lab}.x")),
        ("five parts (JWE shape)", format!("{h}.{p_}.x.y.{s}")),
        ("signature bit flipped", format!("{h}.{p_}.{flipped}")),
        (
            "signature of another token",
            format!("{h}.{p_}.{}", parts(&rs("dr-alice"))[2]),
        ),
        ("padding added", format!("{h}=.{p_}.{s}")),
        (
            "standard base64 alphabet",
            format!("{h}.{p_}.{}", s.replace('-', "+").replace('_', "/")),
        ),
        ("garbage a.b.c", "a.b.c".into()),
        ("dots only", "..".into()),
        ("one word", "token".into()),
        ("header not JSON", format!("{}.{p_}.{s}", b64(b"not json"))),
        ("payload not JSON", format!("{h}.{}.{s}", b64(b"not json"))),
    ] {
        cases.push(bad(what, &token));
    }

    // a valid signature over altered parts
    let altered = |claims: Value| format!("{h}.{}.{s}", b64(claims.to_string().as_bytes()));
    for (what, claims) in [
        (
            "subject changed",
            with(base.clone(), json!({"sub": "dr-alice"})),
        ),
        (
            "expiry extended",
            with(base.clone(), json!({"exp": now() + 86_400 * 365})),
        ),
        (
            "audience changed",
            with(base.clone(), json!({"aud": "https://other.test"})),
        ),
        (
            "claim added",
            with(base.clone(), json!({"roles": ["clinician"]})),
        ),
    ] {
        cases.push(bad(
            &format!("payload {what}, signature kept"),
            &altered(claims),
        ));
    }
    let pretty = serde_json::to_string_pretty(&base).unwrap();
    cases.push(bad(
        "payload same claims re-serialised with spaces, signature kept",
        &format!("{h}.{}.{s}", b64(pretty.as_bytes())),
    ));
    for (what, header) in [
        (
            "alg RS384",
            json!({"alg": "RS384", "typ": "JWT", "kid": "rsa1"}),
        ),
        (
            "kid rsa2",
            json!({"alg": "RS256", "typ": "JWT", "kid": "rsa2"}),
        ),
        ("kid removed", json!({"alg": "RS256", "typ": "JWT"})),
    ] {
        let token = format!("{}.{p_}.{s}", b64(header.to_string().as_bytes()));
        cases.push(bad(&format!("header {what}, signature kept"), &token));
    }
    cases.push(bad(
        "signed by a key not in the JWKS, claiming kid rsa1",
        &SigningKey::fixture("rsa2", "rsa1", Algorithm::RS256).sign(&base),
    ));
    cases
}
