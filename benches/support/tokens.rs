//! Authenticators and tokens for the token benchmarks and the cache flood:
//! one issuer per algorithm family, keyed from `tests/fixtures/keys/` the
//! way an operator would configure it (`public_key_pem_file`, `jwks_file`,
//! `hmac_secret_env`).

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use zambda_guard::authn::Authenticator;
use zambda_guard::config::{Auth, ClaimPath, Issuer, KeySource};

pub const ISSUER: &str = "https://issuer.test/";
pub const AUDIENCE: &str = "https://api.test";
pub const HMAC_SECRET: &[u8] = b"bench-only-hmac-secret-0123456789abcdef";

pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

/// An algorithm family: how its issuer gets keys and how tokens are signed.
pub struct Family {
    pub name: &'static str,
    pub alg: Algorithm,
    pub kid: Option<&'static str>,
    pub source: KeySource,
    pub signing: EncodingKey,
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// RS256 and PS256 from a PEM file, ES256, ES384 and EdDSA from the JWKS
/// file (by kid), HS256 from a secret.
pub fn families() -> Vec<Family> {
    let rsa = || EncodingKey::from_rsa_pem(&pem("rsa1-private.pem")).unwrap();
    let jwks = || KeySource::JwksFile(key_path("jwks.json"));
    vec![
        Family {
            name: "RS256",
            alg: Algorithm::RS256,
            kid: None,
            source: KeySource::PublicKeyPemFile(key_path("rsa1-public.pem")),
            signing: rsa(),
        },
        Family {
            name: "PS256",
            alg: Algorithm::PS256,
            kid: None,
            source: KeySource::PublicKeyPemFile(key_path("rsa1-public.pem")),
            signing: rsa(),
        },
        Family {
            name: "ES256",
            alg: Algorithm::ES256,
            kid: Some("ec-p256"),
            source: jwks(),
            signing: EncodingKey::from_ec_pem(&pem("ec-p256-private.pem")).unwrap(),
        },
        Family {
            name: "ES384",
            alg: Algorithm::ES384,
            kid: Some("ec-p384"),
            source: jwks(),
            signing: EncodingKey::from_ec_pem(&pem("ec-p384-private.pem")).unwrap(),
        },
        Family {
            name: "EdDSA",
            alg: Algorithm::EdDSA,
            kid: Some("ed25519"),
            source: jwks(),
            signing: EncodingKey::from_ed_pem(&pem("ed25519-private.pem")).unwrap(),
        },
        Family {
            name: "HS256",
            alg: Algorithm::HS256,
            kid: None,
            source: hmac_source(),
            signing: EncodingKey::from_secret(HMAC_SECRET),
        },
    ]
}

pub fn hmac_source() -> KeySource {
    KeySource::HmacSecret {
        env: "BENCH_HMAC_SECRET".into(),
        secret: HMAC_SECRET.to_vec(),
    }
}

/// One issuer allowing `alg` with keys from `source`; `cache` entries of
/// verified-token cache (0 disables it).
pub fn authenticator(alg: Algorithm, source: KeySource, cache: usize) -> Arc<Authenticator> {
    let issuer = Issuer {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        algorithms: vec![alg],
        keys: vec![source],
        jwks_refresh: Duration::from_secs(300),
        jwks_min_refetch: Duration::from_secs(30),
        subject_claim: ClaimPath::parse("sub").unwrap(),
        roles_claim: None,
    };
    Authenticator::new(&Auth {
        issuers: vec![issuer],
        leeway_seconds: 30,
        forward_authorization: true,
        token_cache_entries: cache,
        jwks_fetch_timeout: Duration::from_secs(2),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Claims of a typical M2M access token; `n` makes each token distinct.
pub fn claims(subject: &str, n: u64) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": now(),
        "exp": now() + 3600,
        "jti": format!("{n:016x}"),
    })
}

pub fn sign(family: &Family, claims: &Value) -> String {
    let mut header = Header::new(family.alg);
    header.kid = family.kid.map(String::from);
    jsonwebtoken::encode(&header, claims, &family.signing).unwrap()
}

/// Runs a future that never waits (file and secret key sources do no
/// I/O), without an executor: one poll with a no-op waker.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("authenticate waited; only file key sources are used here"),
    }
}
