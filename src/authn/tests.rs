//! Unit tests of `authn`: real keys from `tests/fixtures/keys/`, real tokens
//! signed by jsonwebtoken, and a real JWKS server on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::keys::{self, Origin};
use super::*;
use crate::config::{self, Auth, ClaimPath, Issuer, KeySource};

const RSA1_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/keys/rsa1-private.pem");
const RSA1_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/keys/rsa1-public.pem");
const RSA2_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/keys/rsa2-private.pem");
const RSA2_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/keys/rsa2-public.pem");
const P256_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/keys/ec-p256-private.pem");
const P256_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/keys/ec-p256-public.pem");
const P384_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/keys/ec-p384-private.pem");
const P384_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/keys/ec-p384-public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/keys/ed25519-private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/keys/ed25519-public.pem");
const FIXTURE_JWKS: &str = include_str!("../../tests/fixtures/keys/jwks.json");

const ISS: &str = "https://issuer.test/";
const AUD: &str = "https://api.test";
const SECRET: &[u8] = b"test-only-hmac-secret-0123456789abcdef";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn now() -> u64 {
    unix_now()
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": now(), "exp": now() + 600})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    encode(&header, claims, key).unwrap()
}

fn rsa1() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA1_PRIVATE).unwrap()
}

fn rsa2() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA2_PRIVATE).unwrap()
}

fn hs() -> EncodingKey {
    EncodingKey::from_secret(SECRET)
}

fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, None, &hs(), claims)
}

fn hmac_source() -> KeySource {
    KeySource::HmacSecret {
        env: "TEST_HMAC_SECRET".into(),
        secret: SECRET.to_vec(),
    }
}

fn issuer(algorithms: &[Algorithm], keys: Vec<KeySource>) -> Issuer {
    Issuer {
        issuer: ISS.into(),
        audiences: vec![AUD.into(), "https://second.test".into()],
        algorithms: algorithms.to_vec(),
        keys,
        jwks_refresh: Duration::from_secs(300),
        jwks_min_refetch: Duration::from_secs(60),
        subject_claim: ClaimPath::parse("sub").unwrap(),
        roles_claim: None,
    }
}

fn auth_config(issuers: Vec<Issuer>) -> Auth {
    Auth {
        issuers,
        leeway_seconds: 30,
        forward_authorization: true,
        token_cache_entries: 1000,
        jwks_fetch_timeout: Duration::from_secs(2),
    }
}

fn authenticator(issuers: Vec<Issuer>) -> Arc<Authenticator> {
    Authenticator::new(&auth_config(issuers)).unwrap()
}

fn hs_authenticator() -> Arc<Authenticator> {
    authenticator(vec![issuer(&[Algorithm::HS256], vec![hmac_source()])])
}

/// The subject on success, the rejection otherwise.
async fn outcome(auth: &Authenticator, token: &str) -> Result<String, Rejection> {
    auth.authenticate(token).await.map(|id| id.subject.clone())
}

fn jwks(keys: &[(&[u8], &str, Algorithm)]) -> Value {
    json!({"keys": keys
        .iter()
        .map(|(pem, kid, alg)| jwk_from_public_pem(pem, kid, *alg))
        .collect::<Vec<_>>()})
}

fn write(dir: &tempfile::TempDir, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Polls `done` every 10 ms until it holds or `limit` passes.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// A JWKS endpoint on 127.0.0.1:0 that counts its hits, can change what it
/// serves, answer slowly, and stop.
struct JwksServer {
    url: String,
    hits: Arc<AtomicUsize>,
    response: Arc<Mutex<(u16, Vec<u8>)>>,
    delay: Arc<Mutex<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(jwks: &Value) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let response = Arc::new(Mutex::new((200, jwks.to_string().into_bytes())));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let task = tokio::spawn({
            let (hits, response, delay) = (hits.clone(), response.clone(), delay.clone());
            async move {
                loop {
                    let Ok((mut socket, _)) = listener.accept().await else {
                        return;
                    };
                    let (hits, response, delay) = (hits.clone(), response.clone(), delay.clone());
                    tokio::spawn(async move {
                        let mut request = Vec::new();
                        let mut buf = [0u8; 4096];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                        }
                        hits.fetch_add(1, Ordering::SeqCst);
                        let pause = *delay.lock().unwrap();
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                        let (status, body) = response.lock().unwrap().clone();
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(&body).await;
                        let _ = socket.shutdown().await;
                    });
                }
            }
        });
        JwksServer {
            url,
            hits,
            response,
            delay,
            task,
        }
    }

    fn serve(&self, status: u16, body: impl Into<Vec<u8>>) {
        *self.response.lock().unwrap() = (status, body.into());
    }

    fn serve_jwks(&self, jwks: &Value) {
        self.serve(200, jwks.to_string());
    }

    fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn url_issuer(server: &JwksServer) -> Issuer {
    issuer(
        &[Algorithm::RS256],
        vec![KeySource::JwksUrl(server.url.clone())],
    )
}

// ---------------------------------------------------------------------------
// Bearer extraction
// ---------------------------------------------------------------------------

/// Header values, expected result.
type BearerCase<'a> = (&'a [&'a [u8]], Result<Option<&'a str>, Rejection>);

/// Every byte value inside a token: accepted exactly when RFC 7235's
/// token68 allows it there.
#[test]
fn bearer_token_bytes() {
    for b in 0..=255u8 {
        let token = [b'a', b, b'a'];
        let mut header = b"Bearer ".to_vec();
        header.extend_from_slice(&token);
        let allowed = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
        let got = bearer(&[&header]);
        if allowed {
            let expected = std::str::from_utf8(&token).unwrap();
            assert_eq!(got, Ok(Some(expected)), "byte {b:#04x}");
        } else {
            let malformed = Rejection::Invalid("malformed authorization header");
            assert_eq!(got, Err(malformed), "byte {b:#04x}");
        }
    }
}

#[test]
fn bearer_extraction() {
    let invalid = |why| Err(Rejection::Invalid(why));
    let cases: &[BearerCase<'_>] = &[
        (&[], Ok(None)),
        (&[b"Bearer abc.def.ghi"], Ok(Some("abc.def.ghi"))),
        (&[b"bearer abc"], Ok(Some("abc"))),
        (&[b"BEARER abc"], Ok(Some("abc"))),
        (&[b"bEaReR abc"], Ok(Some("abc"))),
        (&[b"Bearer    abc"], Ok(Some("abc"))),
        (&[b"Bearer abc  "], Ok(Some("abc"))),
        (&[b"Bearer a-b_c~d+e/f=="], Ok(Some("a-b_c~d+e/f=="))),
        (&[b"Basic dXNlcjpwYXNz"], Ok(None)),
        (&[b"Bearerabc"], Ok(None)),
        (&[b"Bearer\tabc"], Ok(None)),
        (&[b""], Ok(None)),
        (&[b"Bearer"], invalid("token missing")),
        (&[b"Bearer "], invalid("token missing")),
        (&[b"Bearer    "], invalid("token missing")),
        (
            &[b"Bearer abc def"],
            invalid("malformed authorization header"),
        ),
        (
            &[b"Bearer abc,def"],
            invalid("malformed authorization header"),
        ),
        (&[b"Bearer ab=c"], invalid("malformed authorization header")),
        (&[b"Bearer ==="], invalid("malformed authorization header")),
        (
            &[b"Bearer \xc3\xa9t\xc3\xa9"],
            invalid("malformed authorization header"),
        ),
        (
            &[b"Bearer a", b"Bearer a"],
            invalid("multiple authorization headers"),
        ),
        (
            &[b"Basic x", b"Bearer a"],
            invalid("multiple authorization headers"),
        ),
    ];
    for (headers, expected) in cases {
        let shown: Vec<String> = headers
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        assert_eq!(&bearer(headers), expected, "headers {shown:?}");
    }
}

// ---------------------------------------------------------------------------
// Algorithms and key types
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_algorithm_family_verifies_with_its_own_key_type() {
    let dir = tempfile::tempdir().unwrap();
    // RSA without `alg` so it serves RS* and PS*; the others pinned.
    let mut rsa = jwk_from_public_pem(RSA1_PUBLIC, "rsa1", Algorithm::RS256);
    rsa.as_object_mut().unwrap().remove("alg");
    let set = json!({"keys": [
        rsa,
        jwk_from_public_pem(P256_PUBLIC, "ec256", Algorithm::ES256),
        jwk_from_public_pem(P384_PUBLIC, "ec384", Algorithm::ES384),
        jwk_from_public_pem(ED_PUBLIC, "ed", Algorithm::EdDSA),
    ]});
    let file = write(&dir, "jwks.json", set.to_string());
    use Algorithm::*;
    let all = [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512,
    ];
    let auth = authenticator(vec![issuer(
        &all,
        vec![KeySource::JwksFile(file), hmac_source()],
    )]);
    let rsa = rsa1();
    let p256 = EncodingKey::from_ec_pem(P256_PRIVATE).unwrap();
    let p384 = EncodingKey::from_ec_pem(P384_PRIVATE).unwrap();
    let ed = EncodingKey::from_ed_pem(ED_PRIVATE).unwrap();
    let secret = hs();
    let cases: [(Algorithm, Option<&str>, &EncodingKey); 12] = [
        (RS256, Some("rsa1"), &rsa),
        (RS384, Some("rsa1"), &rsa),
        (RS512, Some("rsa1"), &rsa),
        (PS256, Some("rsa1"), &rsa),
        (PS384, Some("rsa1"), &rsa),
        (PS512, Some("rsa1"), &rsa),
        (ES256, Some("ec256"), &p256),
        (ES384, Some("ec384"), &p384),
        (EdDSA, Some("ed"), &ed),
        (HS256, None, &secret),
        (HS384, None, &secret),
        (HS512, None, &secret),
    ];
    for (alg, kid, key) in cases {
        let sub = format!("client-{alg:?}@clients");
        let token = sign(alg, kid, key, &claims(&sub));
        let id = auth
            .authenticate(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(id.subject, sub);
        assert_eq!(&*id.issuer, ISS);
        assert!(id.roles.is_empty());
        assert!(id.expires_at > now());

        // The same token with its kid naming a key of another type fails
        // (HMAC aside: the secret has no kid, so it serves any kid).
        if !config::is_hmac(alg) {
            let other_kid = if kid == Some("ec256") { "ed" } else { "ec256" };
            let token = sign(alg, Some(other_kid), key, &claims(&sub));
            assert_eq!(
                outcome(&auth, &token).await,
                Err(Rejection::Invalid("no key for algorithm")),
                "{alg:?} with kid {other_kid}"
            );
        }
    }
}

#[tokio::test]
async fn an_algorithm_outside_the_issuer_allowlist_is_refused() {
    let auth = authenticator(vec![issuer(&[Algorithm::HS512], vec![hmac_source()])]);
    let token = sign(Algorithm::HS256, None, &hs(), &claims("a"));
    assert_eq!(
        outcome(&auth, &token).await,
        Err(Rejection::Invalid("algorithm not allowed"))
    );
    let token = sign(Algorithm::HS512, None, &hs(), &claims("a"));
    assert_eq!(outcome(&auth, &token).await, Ok("a".into()));
}

#[tokio::test]
async fn alg_none_is_never_accepted() {
    let auth = hs_authenticator();
    let payload = b64(claims("a").to_string());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string());
        for signature in ["", "AAAA", "c2lnbmF0dXJl"] {
            let token = format!("{header}.{payload}.{signature}");
            let result = outcome(&auth, &token).await;
            assert!(
                matches!(
                    result,
                    Err(Rejection::Invalid(
                        "algorithm not allowed" | "malformed token"
                    ))
                ),
                "alg {alg}, signature {signature:?}: {result:?}"
            );
        }
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pem = write(&dir, "rsa1.pem", RSA1_PUBLIC);
    let forged = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(RSA1_PUBLIC),
        &claims("a"),
    );
    let forged_kid = sign(
        Algorithm::HS256,
        Some("rsa1"),
        &EncodingKey::from_secret(RSA1_PUBLIC),
        &claims("a"),
    );

    // RS256 only: the header's HS256 is not even considered.
    let auth = authenticator(vec![issuer(
        &[Algorithm::RS256],
        vec![KeySource::PublicKeyPemFile(pem.clone())],
    )]);
    assert_eq!(
        outcome(&auth, &forged).await,
        Err(Rejection::Invalid("algorithm not allowed"))
    );

    // HS256 allowed too, but the RSA key is never used as an HMAC secret.
    let auth = authenticator(vec![issuer(
        &[Algorithm::RS256, Algorithm::HS256],
        vec![KeySource::PublicKeyPemFile(pem.clone())],
    )]);
    assert_eq!(
        outcome(&auth, &forged).await,
        Err(Rejection::Invalid("no key for algorithm"))
    );
    let file = write(
        &dir,
        "jwks.json",
        jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)]).to_string(),
    );
    let auth = authenticator(vec![issuer(
        &[Algorithm::RS256, Algorithm::HS256],
        vec![KeySource::JwksFile(file)],
    )]);
    assert_eq!(
        outcome(&auth, &forged_kid).await,
        Err(Rejection::Invalid("no key for algorithm"))
    );

    // With a real HMAC secret as well: the forged token fails its signature.
    let auth = authenticator(vec![issuer(
        &[Algorithm::RS256, Algorithm::HS256],
        vec![KeySource::PublicKeyPemFile(pem), hmac_source()],
    )]);
    assert_eq!(
        outcome(&auth, &forged).await,
        Err(Rejection::Invalid("signature invalid"))
    );
    // ... while genuine tokens of both kinds pass.
    let rs = sign(Algorithm::RS256, None, &rsa1(), &claims("r"));
    assert_eq!(outcome(&auth, &rs).await, Ok("r".into()));
    assert_eq!(outcome(&auth, &hs256(&claims("h"))).await, Ok("h".into()));
}

#[tokio::test]
async fn pem_sources_of_each_type_verify() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[u8], &[u8], Algorithm); 4] = [
        (RSA1_PUBLIC, RSA1_PRIVATE, Algorithm::PS256),
        (P256_PUBLIC, P256_PRIVATE, Algorithm::ES256),
        (P384_PUBLIC, P384_PRIVATE, Algorithm::ES384),
        (ED_PUBLIC, ED_PRIVATE, Algorithm::EdDSA),
    ];
    for (public, private, alg) in cases {
        let pem = write(&dir, "key.pem", public);
        let auth = authenticator(vec![issuer(&[alg], vec![KeySource::PublicKeyPemFile(pem)])]);
        let key = match alg {
            Algorithm::PS256 => EncodingKey::from_rsa_pem(private),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private),
            _ => EncodingKey::from_ec_pem(private),
        }
        .unwrap();
        // A PEM key has no kid: it serves tokens with or without one.
        for kid in [None, Some("any-kid")] {
            let token = sign(alg, kid, &key, &claims("p"));
            assert_eq!(
                outcome(&auth, &token).await,
                Ok("p".into()),
                "{alg:?} {kid:?}"
            );
        }
    }
}

#[tokio::test]
async fn embedded_jwk_and_jku_headers_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let pem = write(&dir, "rsa1.pem", RSA1_PUBLIC);
    let auth = authenticator(vec![issuer(
        &[Algorithm::RS256],
        vec![KeySource::PublicKeyPemFile(pem)],
    )]);
    // Signed by rsa2, which the header offers as its own verification key.
    let mut header = Header::new(Algorithm::RS256);
    header.jwk = Some(
        serde_json::from_value(jwk_from_public_pem(RSA2_PUBLIC, "x", Algorithm::RS256)).unwrap(),
    );
    header.jku = Some("http://127.0.0.1:9/jwks.json".into());
    header.x5u = Some("http://127.0.0.1:9/cert.pem".into());
    let token = encode(&header, &claims("a"), &rsa2()).unwrap();
    assert_eq!(
        outcome(&auth, &token).await,
        Err(Rejection::Invalid("signature invalid"))
    );
}

// ---------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------

#[tokio::test]
async fn claim_checks() {
    let auth = hs_authenticator();
    let t = now();
    let ok = |sub: &str| Ok(sub.to_string());
    let no = |why: &'static str| Err(Rejection::Invalid(why));
    let cases: Vec<(&str, Value, Result<String, Rejection>)> = vec![
        ("valid", claims("a"), ok("a")),
        (
            "expired",
            with(claims("a"), "exp", json!(t - 3600)),
            no("token expired"),
        ),
        (
            "expired just past the leeway",
            with(claims("a"), "exp", json!(t - 32)),
            no("token expired"),
        ),
        (
            "expired within the leeway",
            with(claims("a"), "exp", json!(t - 25)),
            ok("a"),
        ),
        (
            "exp as a float",
            with(claims("a"), "exp", json!((t + 600) as f64 + 0.5)),
            ok("a"),
        ),
        (
            "exp missing",
            without(claims("a"), "exp"),
            no("exp claim missing"),
        ),
        (
            "exp a string",
            with(claims("a"), "exp", json!("never")),
            no("exp claim missing"),
        ),
        ("nbf past", with(claims("a"), "nbf", json!(t - 10)), ok("a")),
        (
            "nbf within the leeway",
            with(claims("a"), "nbf", json!(t + 25)),
            ok("a"),
        ),
        (
            "nbf past the leeway",
            with(claims("a"), "nbf", json!(t + 35)),
            no("token not yet valid"),
        ),
        (
            "nbf a string",
            with(claims("a"), "nbf", json!("soon")),
            no("claim malformed"),
        ),
        (
            "aud missing",
            without(claims("a"), "aud"),
            no("aud claim missing"),
        ),
        (
            "aud wrong",
            with(claims("a"), "aud", json!("https://other.test")),
            no("audience not accepted"),
        ),
        (
            "aud second audience",
            with(claims("a"), "aud", json!("https://second.test")),
            ok("a"),
        ),
        (
            "aud array containing ours",
            with(claims("a"), "aud", json!(["x", AUD])),
            ok("a"),
        ),
        (
            "aud array without ours",
            with(claims("a"), "aud", json!(["x", "y"])),
            no("audience not accepted"),
        ),
        (
            "aud empty array",
            with(claims("a"), "aud", json!([])),
            no("audience not accepted"),
        ),
        (
            "aud a number",
            with(claims("a"), "aud", json!(7)),
            no("aud claim missing"),
        ),
        (
            "iss unknown",
            with(claims("a"), "iss", json!("https://evil.test/")),
            no("issuer not accepted"),
        ),
        (
            "iss differs by a slash",
            with(claims("a"), "iss", json!("https://issuer.test")),
            no("issuer not accepted"),
        ),
        (
            "iss missing",
            without(claims("a"), "iss"),
            no("iss claim missing"),
        ),
        (
            "iss an array",
            with(claims("a"), "iss", json!([ISS])),
            no("malformed token"),
        ),
        (
            "sub missing",
            without(claims("a"), "sub"),
            no("subject missing"),
        ),
        ("sub empty", claims(""), no("subject invalid")),
        (
            "sub a number",
            with(claims("a"), "sub", json!(42)),
            no("subject invalid"),
        ),
        (
            "sub null",
            with(claims("a"), "sub", Value::Null),
            no("subject invalid"),
        ),
        (
            "sub with a newline",
            claims("a\nx-zambda-actor: admin"),
            no("subject invalid"),
        ),
        (
            "sub like Oystehr M2M",
            claims("4f3c@clients"),
            ok("4f3c@clients"),
        ),
    ];
    for (name, claims, expected) in cases {
        assert_eq!(outcome(&auth, &hs256(&claims)).await, expected, "{name}");
    }
}

#[tokio::test]
async fn leeway_is_the_configured_one() {
    let mut config = auth_config(vec![issuer(&[Algorithm::HS256], vec![hmac_source()])]);
    config.leeway_seconds = 0;
    let auth = Authenticator::new(&config).unwrap();
    let token = hs256(&with(claims("a"), "exp", json!(now() - 5)));
    assert_eq!(
        outcome(&auth, &token).await,
        Err(Rejection::Invalid("token expired"))
    );
    let token = hs256(&with(claims("a"), "nbf", json!(now() + 5)));
    assert_eq!(
        outcome(&auth, &token).await,
        Err(Rejection::Invalid("token not yet valid"))
    );
}

#[tokio::test]
async fn a_token_is_checked_against_its_own_issuer_only() {
    let other_secret = b"another-test-only-secret-0123456789abcdef".to_vec();
    let mut second = issuer(
        &[Algorithm::HS256],
        vec![KeySource::HmacSecret {
            env: "OTHER".into(),
            secret: other_secret.clone(),
        }],
    );
    second.issuer = "https://second-issuer.test/".into();
    let auth = authenticator(vec![
        issuer(&[Algorithm::HS256], vec![hmac_source()]),
        second,
    ]);
    let claims_b = with(claims("b"), "iss", json!("https://second-issuer.test/"));
    // Claims of issuer B signed with issuer A's key.
    assert_eq!(
        outcome(&auth, &hs256(&claims_b)).await,
        Err(Rejection::Invalid("signature invalid"))
    );
    let token = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&other_secret),
        &claims_b,
    );
    let id = auth.authenticate(&token).await.unwrap();
    assert_eq!(&*id.issuer, "https://second-issuer.test/");
    assert_eq!(outcome(&auth, &hs256(&claims("a"))).await, Ok("a".into()));
}

#[tokio::test]
async fn token_shape_checks() {
    let auth = hs_authenticator();
    let good = hs256(&claims("a"));
    let parts: Vec<&str> = good.split('.').collect();
    let malformed = || Err(Rejection::Invalid("malformed token"));
    let bad_signature = || Err(Rejection::Invalid("signature invalid"));

    let tampered_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("admin").to_string()),
        parts[2]
    );
    let mut flipped = parts[2].as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let tampered_signature = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(flipped).unwrap()
    );
    let crit = format!(
        "{}.{}.{}",
        b64(json!({"alg": "HS256", "crit": ["b64"], "b64": false}).to_string()),
        parts[1],
        parts[2]
    );
    let array_payload = format!(
        "{}.{}.{}",
        parts[0],
        b64(json!([ISS, AUD]).to_string()),
        parts[2]
    );
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(MAX_TOKEN_BYTES), parts[2]);

    let cases: Vec<(&str, String, Result<String, Rejection>)> = vec![
        ("good", good.clone(), Ok("a".into())),
        ("tampered payload", tampered_payload, bad_signature()),
        ("tampered signature", tampered_signature, bad_signature()),
        (
            // 43 characters cut to 40: still valid base64, so the signature
            // check, not the decoder, refuses it.
            "truncated signature",
            good[..good.len() - 3].to_string(),
            bad_signature(),
        ),
        (
            "truncated to two parts",
            format!("{}.{}", parts[0], parts[1]),
            malformed(),
        ),
        (
            "empty signature",
            format!("{}.{}.", parts[0], parts[1]),
            malformed(),
        ),
        (
            "five parts (JWE)",
            format!("{good}.{}.{}", parts[1], parts[2]),
            malformed(),
        ),
        ("four parts", format!("{good}.x"), malformed()),
        ("garbage", "not-a-token".into(), malformed()),
        ("garbage with dots", "a.b.c".into(), malformed()),
        (
            "non-base64 chars",
            format!("{}.{}+.{}", parts[0], parts[1], parts[2]),
            malformed(),
        ),
        (
            "padding",
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            malformed(),
        ),
        ("empty", String::new(), malformed()),
        ("payload an array", array_payload, malformed()),
        (
            "crit header",
            crit,
            Err(Rejection::Invalid("unsupported critical header")),
        ),
        (
            "too large",
            huge,
            Err(Rejection::Invalid("token too large")),
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(outcome(&auth, &token).await, expected, "{name}");
    }
}

/// Name, issuer, roles claim value, expected roles.
type RolesCase<'a> = (&'a str, &'a Issuer, Value, Result<Vec<String>, Rejection>);

#[tokio::test]
async fn roles_claim_shapes() {
    let mut dotted = issuer(&[Algorithm::HS256], vec![hmac_source()]);
    dotted.roles_claim = Some(ClaimPath::parse("realm_access.roles").unwrap());
    let mut flat = issuer(&[Algorithm::HS256], vec![hmac_source()]);
    flat.roles_claim = Some(ClaimPath::parse("roles").unwrap());
    let invalid = Err(Rejection::Invalid("roles claim invalid"));
    let roles = |list: &[&str]| Ok(list.iter().map(|r| r.to_string()).collect::<Vec<_>>());
    let cases: Vec<RolesCase<'_>> = vec![
        (
            "array",
            &flat,
            json!(["lab", "admin"]),
            roles(&["lab", "admin"]),
        ),
        (
            "space-separated string",
            &flat,
            json!("lab  admin ops"),
            roles(&["lab", "admin", "ops"]),
        ),
        ("single string", &flat, json!("lab"), roles(&["lab"])),
        ("empty array", &flat, json!([]), roles(&[])),
        ("number", &flat, json!(5), invalid.clone()),
        ("object", &flat, json!({"lab": true}), invalid.clone()),
        ("null", &flat, Value::Null, invalid.clone()),
        (
            "array with a number",
            &flat,
            json!(["lab", 1]),
            invalid.clone(),
        ),
        (
            "array with an array",
            &flat,
            json!(["lab", ["x"]]),
            invalid.clone(),
        ),
        (
            "dotted path",
            &dotted,
            json!({"roles": ["x", "y"]}),
            roles(&["x", "y"]),
        ),
        (
            "dotted path, wrong type",
            &dotted,
            json!({"roles": 3}),
            invalid.clone(),
        ),
    ];
    for (name, issuer, value, expected) in cases {
        let auth = authenticator(vec![issuer.clone()]);
        let claim = if issuer.roles_claim == flat.roles_claim {
            "roles"
        } else {
            "realm_access"
        };
        let token = hs256(&with(claims("a"), claim, value));
        let got = auth.authenticate(&token).await.map(|id| id.roles.clone());
        assert_eq!(got, expected, "{name}");
    }
    // Absent claim: no roles, for both.
    for issuer in [&flat, &dotted] {
        let auth = authenticator(vec![issuer.clone()]);
        let id = auth.authenticate(&hs256(&claims("a"))).await.unwrap();
        assert!(id.roles.is_empty());
    }
}

#[tokio::test]
async fn subject_claim_may_be_a_dotted_path() {
    let mut custom = issuer(&[Algorithm::HS256], vec![hmac_source()]);
    custom.subject_claim = ClaimPath::parse("ext.actor").unwrap();
    let auth = authenticator(vec![custom]);
    let token = hs256(&with(
        claims("ignored"),
        "ext",
        json!({"actor": "m2m@clients"}),
    ));
    assert_eq!(outcome(&auth, &token).await, Ok("m2m@clients".into()));
    assert_eq!(
        outcome(&auth, &hs256(&claims("ignored"))).await,
        Err(Rejection::Invalid("subject missing"))
    );
}

// ---------------------------------------------------------------------------
// kid handling
// ---------------------------------------------------------------------------

#[tokio::test]
async fn kidless_tokens_need_exactly_one_fitting_key() {
    let dir = tempfile::tempdir().unwrap();
    let one = write(
        &dir,
        "one.json",
        jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)]).to_string(),
    );
    let two = write(
        &dir,
        "two.json",
        jwks(&[
            (RSA1_PUBLIC, "rsa1", Algorithm::RS256),
            (RSA2_PUBLIC, "rsa2", Algorithm::RS256),
        ])
        .to_string(),
    );
    let mixed = write(
        &dir,
        "mixed.json",
        jwks(&[
            (RSA1_PUBLIC, "rsa1", Algorithm::RS256),
            (P256_PUBLIC, "ec", Algorithm::ES256),
        ])
        .to_string(),
    );
    let token = sign(Algorithm::RS256, None, &rsa1(), &claims("a"));
    let algs = [Algorithm::RS256, Algorithm::ES256];

    let auth = authenticator(vec![issuer(&algs, vec![KeySource::JwksFile(one)])]);
    assert_eq!(outcome(&auth, &token).await, Ok("a".into()));
    let auth = authenticator(vec![issuer(&algs, vec![KeySource::JwksFile(mixed)])]);
    assert_eq!(outcome(&auth, &token).await, Ok("a".into()));
    let auth = authenticator(vec![issuer(&algs, vec![KeySource::JwksFile(two)])]);
    assert_eq!(
        outcome(&auth, &token).await,
        Err(Rejection::Invalid("key id required"))
    );
    // With its kid, the same key is found among two.
    let token = sign(Algorithm::RS256, Some("rsa1"), &rsa1(), &claims("a"));
    assert_eq!(outcome(&auth, &token).await, Ok("a".into()));
    // A kid naming the other key: signature checked with that key, fails.
    let token = sign(Algorithm::RS256, Some("rsa2"), &rsa1(), &claims("a"));
    assert_eq!(
        outcome(&auth, &token).await,
        Err(Rejection::Invalid("signature invalid"))
    );
}

#[tokio::test]
async fn strange_kids_are_only_looked_up() {
    let server = JwksServer::start(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)])).await;
    let auth = authenticator(vec![url_issuer(&server)]);
    assert!(auth.refresh_all().await.is_empty());
    let long = "k".repeat(8000);
    for kid in [
        "../../../../etc/passwd",
        "/dev/zero",
        "http://127.0.0.1:9/x",
        "%2e%2e",
        long.as_str(),
    ] {
        let token = sign(Algorithm::RS256, Some(kid), &rsa1(), &claims("a"));
        assert_eq!(
            outcome(&auth, &token).await,
            Err(Rejection::Invalid("unknown key id")),
            "kid {:?}",
            &kid[..kid.len().min(30)]
        );
    }
    // The first unknown kid re-fetched once; the rest were rate limited.
    assert_eq!(server.hits(), 2);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// JWKS over HTTP
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_keys_until_the_first_fetch() {
    let server = JwksServer::start(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)])).await;
    let auth = authenticator(vec![url_issuer(&server)]);
    let missing = auth.missing_keys();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].0, ISS);
    assert!(missing[0].1.contains("not fetched yet"), "{missing:?}");
    assert_eq!(server.hits(), 0, "new() must not touch the network");

    let token = sign(Algorithm::RS256, Some("rsa1"), &rsa1(), &claims("a"));
    let kidless = sign(Algorithm::RS256, None, &rsa1(), &claims("a"));
    assert_eq!(
        outcome(&auth, &kidless).await,
        Err(Rejection::KeysUnavailable)
    );
    assert_eq!(
        outcome(&auth, &token).await,
        Err(Rejection::KeysUnavailable)
    );

    assert!(auth.refresh_all().await.is_empty());
    assert!(auth.missing_keys().is_empty());
    assert_eq!(outcome(&auth, &token).await, Ok("a".into()));
    let stats = &auth.stats().issuers[0];
    assert_eq!(stats.keys.load(Ordering::Relaxed), 1);
    assert!(stats.refresh_ok.load(Ordering::Relaxed) >= 1);
    assert!(stats.last_success_unix.load(Ordering::Relaxed) >= now() - 5);
    server.stop().await;
}

#[tokio::test]
async fn a_failing_first_fetch_is_reported_with_its_reason() {
    let server = JwksServer::start(&json!({})).await;
    server.serve(500, "oops");
    let auth = authenticator(vec![url_issuer(&server)]);
    let failed = auth.refresh_all().await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, ISS);
    assert!(failed[0].1.contains("500"), "{failed:?}");
    let missing = auth.missing_keys();
    assert!(missing[0].1.contains("500"), "{missing:?}");
    let token = sign(Algorithm::RS256, Some("rsa1"), &rsa1(), &claims("a"));
    assert_eq!(
        outcome(&auth, &token).await,
        Err(Rejection::KeysUnavailable)
    );
    assert_eq!(
        auth.stats().issuers[0]
            .refresh_error
            .load(Ordering::Relaxed),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn key_rotation_through_unknown_kid_refetch_is_rate_limited() {
    let server = JwksServer::start(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)])).await;
    let auth = authenticator(vec![url_issuer(&server)]);
    assert!(auth.refresh_all().await.is_empty());
    assert_eq!(server.hits(), 1);
    let old = sign(Algorithm::RS256, Some("rsa1"), &rsa1(), &claims("a"));
    assert_eq!(outcome(&auth, &old).await, Ok("a".into()));
    assert_eq!(server.hits(), 1);

    // The issuer rotates: rsa2 appears; its first token triggers one fetch.
    server.serve_jwks(&jwks(&[
        (RSA1_PUBLIC, "rsa1", Algorithm::RS256),
        (RSA2_PUBLIC, "rsa2", Algorithm::RS256),
    ]));
    let new = sign(Algorithm::RS256, Some("rsa2"), &rsa2(), &claims("b"));
    assert_eq!(outcome(&auth, &new).await, Ok("b".into()));
    assert_eq!(server.hits(), 2);

    // Another unknown kid within jwks_min_refetch: no fetch, refused.
    let unknown = sign(Algorithm::RS256, Some("rsa3"), &rsa2(), &claims("c"));
    assert_eq!(
        outcome(&auth, &unknown).await,
        Err(Rejection::Invalid("unknown key id"))
    );
    assert_eq!(server.hits(), 2);
    server.stop().await;
}

#[tokio::test]
async fn unknown_kid_refetch_is_allowed_again_after_min_refetch() {
    let server = JwksServer::start(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)])).await;
    let mut config = url_issuer(&server);
    config.jwks_min_refetch = Duration::ZERO;
    let auth = authenticator(vec![config]);
    assert!(auth.refresh_all().await.is_empty());
    for i in 0..3 {
        let unknown = sign(Algorithm::RS256, Some("nope"), &rsa1(), &claims("a"));
        assert_eq!(
            outcome(&auth, &unknown).await,
            Err(Rejection::Invalid("unknown key id"))
        );
        assert_eq!(server.hits(), 2 + i);
    }
    server.stop().await;
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch() {
    let server = JwksServer::start(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)])).await;
    let auth = authenticator(vec![url_issuer(&server)]);
    assert!(auth.refresh_all().await.is_empty());
    server.serve_jwks(&jwks(&[
        (RSA1_PUBLIC, "rsa1", Algorithm::RS256),
        (RSA2_PUBLIC, "rsa2", Algorithm::RS256),
    ]));
    server.set_delay(Duration::from_millis(200));
    let tokens: Vec<String> = (0..8)
        .map(|i| {
            sign(
                Algorithm::RS256,
                Some("rsa2"),
                &rsa2(),
                &claims(&format!("c{i}")),
            )
        })
        .collect();
    let results = super::jwks::join_all(tokens.iter().map(|t| outcome(&auth, t)).collect()).await;
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result, Ok(format!("c{i}")));
    }
    assert_eq!(server.hits(), 2);
    server.stop().await;
}

#[tokio::test]
async fn unknown_kid_refetch_is_bounded_by_the_fetch_timeout() {
    let server = JwksServer::start(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)])).await;
    let mut config = auth_config(vec![url_issuer(&server)]);
    config.jwks_fetch_timeout = Duration::from_millis(300);
    let auth = Authenticator::new(&config).unwrap();
    assert!(auth.refresh_all().await.is_empty());
    server.serve_jwks(&jwks(&[(RSA2_PUBLIC, "rsa2", Algorithm::RS256)]));
    server.set_delay(Duration::from_secs(5));
    let start = Instant::now();
    let token = sign(Algorithm::RS256, Some("rsa2"), &rsa2(), &claims("a"));
    assert_eq!(
        outcome(&auth, &token).await,
        Err(Rejection::Invalid("unknown key id"))
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The old key still serves.
    let token = sign(Algorithm::RS256, Some("rsa1"), &rsa1(), &claims("b"));
    assert_eq!(outcome(&auth, &token).await, Ok("b".into()));
    server.stop().await;
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_last_good_keys() {
    let server = JwksServer::start(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)])).await;
    let auth = authenticator(vec![url_issuer(&server)]);
    assert!(auth.refresh_all().await.is_empty());
    let oct = json!({"keys": [{"kty": "oct", "kid": "s", "k": b64(SECRET)}]});
    let failures: Vec<(&str, u16, Vec<u8>)> = vec![
        ("status 500", 500, b"{}".to_vec()),
        (
            "status 404 with a JWKS",
            404,
            jwks(&[(RSA2_PUBLIC, "rsa2", Algorithm::RS256)])
                .to_string()
                .into_bytes(),
        ),
        ("empty key set", 200, br#"{"keys": []}"#.to_vec()),
        ("not JSON", 200, b"<html>".to_vec()),
        ("no keys array", 200, br#"{"kty": "RSA"}"#.to_vec()),
        ("only a secret key", 200, oct.to_string().into_bytes()),
        (
            "oversized",
            200,
            vec![b' '; keys::MAX_KEY_DOCUMENT_BYTES + 1],
        ),
    ];
    let token = sign(Algorithm::RS256, Some("rsa1"), &rsa1(), &claims("a"));
    for (name, status, body) in failures {
        server.serve(status, body);
        let failed = auth.refresh_all().await;
        assert_eq!(failed.len(), 1, "{name}");
        assert!(auth.missing_keys().is_empty(), "{name}");
        assert_eq!(
            auth.stats().issuers[0].keys.load(Ordering::Relaxed),
            1,
            "{name}"
        );
        // A fresh token each time, so the cache cannot answer.
        let token = sign(Algorithm::RS256, Some("rsa1"), &rsa1(), &claims(name));
        assert_eq!(outcome(&auth, &token).await, Ok(name.to_string()), "{name}");
    }
    assert_eq!(outcome(&auth, &token).await, Ok("a".into()));
    assert_eq!(
        auth.stats().issuers[0]
            .refresh_error
            .load(Ordering::Relaxed),
        7
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stopped_jwks_server_leaves_the_cached_keys_working() {
    let server = JwksServer::start(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)])).await;
    let auth = authenticator(vec![url_issuer(&server)]);
    assert!(auth.refresh_all().await.is_empty());
    server.stop().await;
    let failed = auth.refresh_all().await;
    assert_eq!(failed.len(), 1);
    assert!(failed[0].1.contains("cannot connect"), "{failed:?}");
    assert!(auth.missing_keys().is_empty());
    let token = sign(Algorithm::RS256, Some("rsa1"), &rsa1(), &claims("a"));
    assert_eq!(outcome(&auth, &token).await, Ok("a".into()));
    // An unknown kid now: the re-fetch fails, the request is refused.
    let token = sign(Algorithm::RS256, Some("rsa2"), &rsa2(), &claims("a"));
    assert_eq!(
        outcome(&auth, &token).await,
        Err(Rejection::Invalid("unknown key id"))
    );
}

#[tokio::test]
async fn public_jwks_may_not_carry_secrets_but_files_may() {
    let oct = json!({"keys": [{"kty": "oct", "kid": "s", "k": b64(SECRET), "alg": "HS256"}]});
    let err =
        keys::parse_jwks(oct.to_string().as_bytes(), Origin::Url, &[Algorithm::HS256]).unwrap_err();
    assert!(err.contains("oct"), "{err}");
    let (keys, _) = keys::parse_jwks(
        oct.to_string().as_bytes(),
        Origin::File,
        &[Algorithm::HS256],
    )
    .unwrap();
    assert_eq!(keys.len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "secret.json", oct.to_string());
    let auth = authenticator(vec![issuer(
        &[Algorithm::HS256],
        vec![KeySource::JwksFile(file)],
    )]);
    let token = sign(Algorithm::HS256, Some("s"), &hs(), &claims("a"));
    assert_eq!(outcome(&auth, &token).await, Ok("a".into()));
}

#[test]
fn jwk_filtering() {
    let rsa = jwk_from_public_pem(RSA1_PUBLIC, "rsa1", Algorithm::RS256);
    let edit = |changes: Value| {
        let mut jwk = rsa.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                jwk.as_object_mut().unwrap().remove(k);
            } else {
                jwk[k] = v.clone();
            }
        }
        jwk
    };
    let n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
    let mut padded_n = vec![0u8];
    padded_n.extend_from_slice(&n);
    let all = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("as published", rsa.clone(), None),
        ("no alg", edit(json!({"alg": null})), None),
        ("no use", edit(json!({"use": null})), None),
        ("use enc", edit(json!({"use": "enc"})), Some("use")),
        ("key_ops verify", edit(json!({"key_ops": ["verify"]})), None),
        (
            "key_ops encrypt",
            edit(json!({"key_ops": ["encrypt"]})),
            Some("key_ops"),
        ),
        (
            "alg of another family",
            edit(json!({"alg": "ES256"})),
            Some("does not fit"),
        ),
        (
            "alg HS256 on an RSA key",
            edit(json!({"alg": "HS256"})),
            Some("does not fit"),
        ),
        (
            "alg unknown",
            edit(json!({"alg": "RSA-OAEP"})),
            Some("not accepted"),
        ),
        (
            "alg none",
            edit(json!({"alg": "none"})),
            Some("not accepted"),
        ),
        ("kty unknown", edit(json!({"kty": "XYZ"})), Some("kty")),
        ("kid a number", edit(json!({"kid": 3})), Some("kid")),
        (
            "n with a leading zero byte",
            edit(json!({"n": b64(&padded_n)})),
            None,
        ),
        (
            "n padded base64",
            edit(json!({"n": format!("{}=", rsa["n"].as_str().unwrap())})),
            None,
        ),
        (
            "n too short",
            edit(json!({"n": b64([0xc5u8; 128])})),
            Some("bits"),
        ),
        ("n missing", edit(json!({"n": null})), Some("\"n\"")),
        (
            "EC on an unknown curve",
            json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
            Some("P-521"),
        ),
        (
            "EC point off the curve",
            json!({"kty": "EC", "crv": "P-256", "x": b64([1u8; 32]), "y": b64([2u8; 32])}),
            Some("curve point"),
        ),
        (
            "OKP X25519",
            json!({"kty": "OKP", "crv": "X25519", "x": b64([9u8; 32])}),
            Some("X25519"),
        ),
    ];
    for (name, jwk, expected_error) in cases {
        let doc = json!({"keys": [jwk]}).to_string();
        let result = keys::parse_jwks(doc.as_bytes(), Origin::Url, &all);
        match (result, expected_error) {
            (Ok((keys, skipped)), None) => {
                assert_eq!(keys.len(), 1, "{name}: {skipped:?}");
                assert!(keys[0].usable_for(Algorithm::RS256), "{name}");
            }
            (Err(e), Some(expected)) => assert!(e.contains(expected), "{name}: {e}"),
            (result, expected) => panic!("{name}: {:?} vs {expected:?}", result.map(|(k, _)| k)),
        }
    }
    // A key pinned to RS256 is not used for PS256, though both are RSA.
    let doc = json!({"keys": [rsa]}).to_string();
    let (keys, _) = keys::parse_jwks(doc.as_bytes(), Origin::Url, &all).unwrap();
    assert!(keys[0].usable_for(Algorithm::RS256));
    assert!(!keys[0].usable_for(Algorithm::PS256));
    // A key no allowed algorithm can use is skipped.
    let err = keys::parse_jwks(doc.as_bytes(), Origin::Url, &[Algorithm::ES256]).unwrap_err();
    assert!(err.contains("not usable"), "{err}");
}

#[tokio::test]
async fn keys_of_several_sources_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let pem = write(&dir, "ec.pem", P256_PUBLIC);
    let server = JwksServer::start(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)])).await;
    let config = issuer(
        &[Algorithm::RS256, Algorithm::ES256, Algorithm::HS256],
        vec![
            KeySource::JwksUrl(server.url.clone()),
            KeySource::PublicKeyPemFile(pem),
            hmac_source(),
        ],
    );
    let auth = authenticator(vec![config]);
    // Before the URL is fetched: file and secret keys work, readiness waits.
    assert_eq!(auth.missing_keys().len(), 1);
    let ec = sign(
        Algorithm::ES256,
        None,
        &EncodingKey::from_ec_pem(P256_PRIVATE).unwrap(),
        &claims("e"),
    );
    assert_eq!(outcome(&auth, &ec).await, Ok("e".into()));
    assert_eq!(outcome(&auth, &hs256(&claims("h"))).await, Ok("h".into()));
    let rs = sign(Algorithm::RS256, None, &rsa1(), &claims("r"));
    assert_eq!(outcome(&auth, &rs).await, Err(Rejection::KeysUnavailable));

    assert!(auth.refresh_all().await.is_empty());
    assert!(auth.missing_keys().is_empty());
    assert_eq!(outcome(&auth, &rs).await, Ok("r".into()));
    assert_eq!(auth.stats().issuers[0].keys.load(Ordering::Relaxed), 3);
    server.stop().await;
}

#[tokio::test]
async fn spawned_refresh_retries_the_first_fetch_then_refreshes() {
    let server = JwksServer::start(&json!({})).await;
    server.serve(503, "starting");
    let mut config = url_issuer(&server);
    config.jwks_refresh = Duration::from_secs(1);
    let auth = authenticator(vec![config]);
    auth.spawn_refresh();
    auth.spawn_refresh(); // a second call adds no second loop

    // Retried with backoff while failing.
    assert!(wait_until(Duration::from_secs(10), || server.hits() >= 3).await);
    assert_eq!(auth.missing_keys().len(), 1);
    server.serve_jwks(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)]));
    assert!(wait_until(Duration::from_secs(10), || auth.missing_keys().is_empty()).await);

    // Then refreshed on the interval: rsa1 leaves, rsa2 arrives.
    server.serve_jwks(&jwks(&[(RSA2_PUBLIC, "rsa2", Algorithm::RS256)]));
    let kids = |auth: &Authenticator| -> Vec<Option<String>> {
        auth.issuers[0]
            .store
            .load()
            .keys
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), || kids(&auth)
            == [Some("rsa2".to_string())])
        .await
    );

    // One loop only: hits grow by about one per second, not two.
    let before = server.hits();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during = server.hits() - before;
    assert!((1..=3).contains(&during), "{during} fetches in 2.5 s");

    // Dropping the authenticator ends the loop.
    drop(auth);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = server.hits();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(server.hits() <= after_drop + 1, "loop kept fetching");
    server.stop().await;
}

#[test]
fn spawn_refresh_without_a_runtime_does_not_panic() {
    let auth = authenticator(vec![issuer(
        &[Algorithm::RS256],
        vec![KeySource::JwksUrl("http://127.0.0.1:9/jwks.json".into())],
    )]);
    auth.spawn_refresh();
    assert_eq!(auth.missing_keys().len(), 1);
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

#[test]
fn load_errors_name_the_issuer_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let private = write(&dir, "private.pem", RSA1_PRIVATE);
    let garbage = write(&dir, "garbage.json", "{not json");
    let two = write(&dir, "two.pem", [RSA1_PUBLIC, RSA2_PUBLIC].concat());
    let ec_for_rsa = write(&dir, "ec.pem", P256_PUBLIC);
    let cases: Vec<(KeySource, &str)> = vec![
        (KeySource::JwksFile(missing.clone()), "cannot read"),
        (KeySource::PublicKeyPemFile(private.clone()), "PRIVATE KEY"),
        (KeySource::JwksFile(garbage.clone()), "invalid JSON"),
        (KeySource::PublicKeyPemFile(two.clone()), "2 PEM blocks"),
        (
            KeySource::PublicKeyPemFile(ec_for_rsa.clone()),
            "not usable",
        ),
        (KeySource::PublicKeyPemFile(garbage.clone()), "not a PEM"),
    ];
    for (source, expected) in cases {
        let path = match &source {
            KeySource::JwksFile(p) | KeySource::PublicKeyPemFile(p) => p.display().to_string(),
            _ => unreachable!(),
        };
        let err = Authenticator::new(&auth_config(vec![issuer(
            &[Algorithm::RS256],
            vec![source],
        )]))
        .unwrap_err()
        .to_string();
        assert!(err.contains(ISS), "{err}");
        assert!(err.contains(&path), "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(err.starts_with("issuer"), "{err}");
    }
    // Several broken files: every one is reported.
    let err = Authenticator::new(&auth_config(vec![issuer(
        &[Algorithm::RS256],
        vec![
            KeySource::JwksFile(missing),
            KeySource::PublicKeyPemFile(private),
        ],
    )]))
    .unwrap_err()
    .to_string();
    assert_eq!(err.lines().count(), 2, "{err}");
}

#[tokio::test]
async fn reload_files_swaps_keys_and_keeps_them_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "jwks.json",
        jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)]).to_string(),
    );
    let auth = authenticator(vec![issuer(
        &[Algorithm::RS256],
        vec![KeySource::JwksFile(file.clone())],
    )]);
    let t1 = sign(Algorithm::RS256, Some("rsa1"), &rsa1(), &claims("one"));
    let t2 = sign(Algorithm::RS256, Some("rsa2"), &rsa2(), &claims("two"));
    assert_eq!(outcome(&auth, &t1).await, Ok("one".into()));
    assert_eq!(
        outcome(&auth, &t2).await,
        Err(Rejection::Invalid("unknown key id"))
    );

    write(
        &dir,
        "jwks.json",
        jwks(&[(RSA2_PUBLIC, "rsa2", Algorithm::RS256)]).to_string(),
    );
    auth.reload_files().unwrap();
    assert_eq!(outcome(&auth, &t2).await, Ok("two".into()));
    // rsa1 left: its token, although cached, is refused now.
    assert_eq!(
        outcome(&auth, &t1).await,
        Err(Rejection::Invalid("unknown key id"))
    );

    write(&dir, "jwks.json", "{broken");
    let err = auth.reload_files().unwrap_err().to_string();
    assert!(err.contains(&file.display().to_string()), "{err}");
    let t2b = sign(Algorithm::RS256, Some("rsa2"), &rsa2(), &claims("two-b"));
    assert_eq!(outcome(&auth, &t2b).await, Ok("two-b".into()));
}

#[test]
fn fixture_jwks_matches_the_fixture_keys() {
    let expected = jwks(&[
        (RSA1_PUBLIC, "rsa1", Algorithm::RS256),
        (RSA2_PUBLIC, "rsa2", Algorithm::RS256),
        (P256_PUBLIC, "ec-p256", Algorithm::ES256),
        (P384_PUBLIC, "ec-p384", Algorithm::ES384),
        (ED_PUBLIC, "ed25519", Algorithm::EdDSA),
    ]);
    let fixture: Value = serde_json::from_str(FIXTURE_JWKS).unwrap();
    assert_eq!(fixture, expected);
}

#[test]
fn jwk_helper_refuses_mismatched_algorithms() {
    assert!(keys::try_jwk_from_public_pem(RSA1_PUBLIC, "k", Algorithm::ES256).is_err());
    assert!(keys::try_jwk_from_public_pem(P256_PUBLIC, "k", Algorithm::ES384).is_err());
    assert!(keys::try_jwk_from_public_pem(ED_PUBLIC, "k", Algorithm::HS256).is_err());
    assert!(keys::try_jwk_from_public_pem(RSA1_PRIVATE, "k", Algorithm::RS256).is_err());
    let jwk = keys::try_jwk_from_public_pem(P384_PUBLIC, "k", Algorithm::ES384).unwrap();
    assert_eq!(jwk["crv"], "P-384");
    assert_eq!(jwk["alg"], "ES384");
    assert_eq!(jwk["use"], "sig");
}

// ---------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cache_hits_are_counted_and_skip_verification() {
    let auth = hs_authenticator();
    let token = hs256(&claims("a"));
    let first = auth.authenticate(&token).await.unwrap();
    let second = auth.authenticate(&token).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "second answer came from the cache"
    );
    assert_eq!(auth.stats().cache_hits.load(Ordering::Relaxed), 1);
    assert_eq!(auth.stats().cache_misses.load(Ordering::Relaxed), 1);

    // Rejections are not cached, and a token differing in one byte misses.
    let mut other = token.clone().into_bytes();
    let last = other.len() - 1;
    other[last] = if other[last] == b'A' { b'Q' } else { b'A' };
    let other = String::from_utf8(other).unwrap();
    assert!(auth.authenticate(&other).await.is_err());
    assert!(auth.authenticate(&other).await.is_err());
    assert_eq!(auth.stats().cache_hits.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn cache_can_be_disabled() {
    let mut config = auth_config(vec![issuer(&[Algorithm::HS256], vec![hmac_source()])]);
    config.token_cache_entries = 0;
    let auth = Authenticator::new(&config).unwrap();
    let token = hs256(&claims("a"));
    let first = auth.authenticate(&token).await.unwrap();
    let second = auth.authenticate(&token).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(auth.stats().cache_hits.load(Ordering::Relaxed), 0);
    assert!(auth.cache.is_none());
}

#[tokio::test]
async fn tokens_valid_only_thanks_to_nbf_leeway_are_not_cached() {
    let auth = hs_authenticator();
    let token = hs256(&with(claims("a"), "nbf", json!(now() + 20)));
    assert!(auth.authenticate(&token).await.is_ok());
    assert!(auth.authenticate(&token).await.is_ok());
    assert_eq!(auth.stats().cache_hits.load(Ordering::Relaxed), 0);
    assert_eq!(auth.stats().cache_misses.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn cached_tokens_are_not_accepted_past_exp_plus_leeway() {
    let auth = hs_authenticator();
    let token = hs256(&claims("a"));
    let id = auth.authenticate(&token).await.unwrap();
    let cache = auth.cache.as_ref().unwrap();
    let digest = super::cache::digest(&token);
    let entry = cache.get(&digest, now()).unwrap();
    assert_eq!(entry.valid_until, id.expires_at + 30);
    assert!(cache.get(&digest, id.expires_at + 30).is_some());
    assert!(cache.get(&digest, id.expires_at + 31).is_none());

    // Expired entries do not answer.
    let expired = super::cache::Entry {
        valid_until: now() - 1,
        ..entry
    };
    let token2 = hs256(&claims("b"));
    cache.insert(super::cache::digest(&token2), expired, now());
    assert!(cache.get(&super::cache::digest(&token2), now()).is_none());
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_invalidates_cached_tokens() {
    let server = JwksServer::start(&jwks(&[
        (RSA1_PUBLIC, "rsa1", Algorithm::RS256),
        (RSA2_PUBLIC, "rsa2", Algorithm::RS256),
    ]))
    .await;
    let auth = authenticator(vec![url_issuer(&server)]);
    assert!(auth.refresh_all().await.is_empty());
    let t2 = sign(Algorithm::RS256, Some("rsa2"), &rsa2(), &claims("two"));
    let t1 = sign(Algorithm::RS256, Some("rsa1"), &rsa1(), &claims("one"));
    assert_eq!(outcome(&auth, &t2).await, Ok("two".into()));
    assert_eq!(outcome(&auth, &t1).await, Ok("one".into()));
    assert_eq!(outcome(&auth, &t2).await, Ok("two".into()));
    assert_eq!(auth.stats().cache_hits.load(Ordering::Relaxed), 1);

    server.serve_jwks(&jwks(&[(RSA1_PUBLIC, "rsa1", Algorithm::RS256)]));
    assert!(auth.refresh_all().await.is_empty());
    assert_eq!(
        outcome(&auth, &t2).await,
        Err(Rejection::Invalid("unknown key id"))
    );
    assert_eq!(outcome(&auth, &t1).await, Ok("one".into()));
    assert_eq!(auth.stats().cache_hits.load(Ordering::Relaxed), 2);
    server.stop().await;
}

#[tokio::test]
async fn cache_stays_bounded_under_a_flood_of_distinct_tokens() {
    for bound in [100, 1000] {
        let mut config = auth_config(vec![issuer(&[Algorithm::HS256], vec![hmac_source()])]);
        config.token_cache_entries = bound;
        let auth = Authenticator::new(&config).unwrap();
        let cache = auth.cache.as_ref().unwrap();
        let mut last = String::new();
        for i in 0..10_000 {
            last = hs256(&claims(&format!("flood-{i}")));
            assert!(auth.authenticate(&last).await.is_ok());
            assert!(
                cache.len() <= bound,
                "{} entries, bound {bound}",
                cache.len()
            );
        }
        assert!(
            cache.len() > bound / 2,
            "{} entries, bound {bound}",
            cache.len()
        );
        // The newest entry is there.
        assert!(cache.get(&super::cache::digest(&last), now()).is_some());
        assert_eq!(auth.stats().cache_misses.load(Ordering::Relaxed), 10_000);
    }
}

#[test]
fn a_full_cache_drops_expired_entries_first() {
    let cache = super::cache::Cache::new(10).unwrap();
    let identity = Arc::new(Identity {
        issuer: Arc::from(ISS),
        subject: "s".into(),
        roles: Vec::new(),
        expires_at: 0,
    });
    let entry = |valid_until| super::cache::Entry {
        identity: identity.clone(),
        issuer: 0,
        fingerprint: [0; 32],
        valid_until,
    };
    let t = 1_000_000;
    let live: Vec<_> = (0..5)
        .map(|i| super::cache::digest(&format!("live{i}")))
        .collect();
    for d in &live {
        cache.insert(*d, entry(t + 100), t);
    }
    for i in 0..5 {
        cache.insert(
            super::cache::digest(&format!("dead{i}")),
            entry(t - 1),
            t - 10,
        );
    }
    assert_eq!(cache.len(), 10);
    cache.insert(super::cache::digest("new"), entry(t + 100), t);
    assert_eq!(cache.len(), 6);
    for d in &live {
        assert!(cache.get(d, t).is_some());
    }
}

#[test]
fn authenticator_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Authenticator>();
    check::<Identity>();
}
