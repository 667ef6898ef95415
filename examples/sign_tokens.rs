//! Signs tokens for load tests with a fixture key from
//! `tests/fixtures/keys/`, one per line:
//!
//! ```sh
//! cargo run --release --example sign_tokens -- --count 20000 \
//!     --issuer https://issuer.bench/ --audience https://api.bench \
//!     --subject bench@clients [--key rsa1] [--ttl 3600] > tokens.txt
//! ```
//!
//! Every token is distinct (its `jti` is its number); `--key` is a fixture
//! stem (`rsa1`, `rsa2` → RS256, `ec-p256` → ES256, `ec-p384` → ES384,
//! `ed25519` → EdDSA). Tokens carry no `kid`, as a single
//! `public_key_pem_file` issuer expects. Signing runs on every CPU.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

fn main() {
    let mut count: u64 = 1;
    let mut issuer = String::from("https://issuer.bench/");
    let mut audience = String::from("https://api.bench");
    let mut subject = String::from("bench@clients");
    let mut key = String::from("rsa1");
    let mut ttl: u64 = 3600;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--count" => count = value.parse().expect("--count: a number"),
            "--issuer" => issuer = value,
            "--audience" => audience = value,
            "--subject" => subject = value,
            "--key" => key = value,
            "--ttl" => ttl = value.parse().expect("--ttl: seconds"),
            other => panic!("unknown option {other}"),
        }
    }
    let pem = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(format!("{key}-private.pem")),
    )
    .expect("a fixture key stem: rsa1, rsa2, ec-p256, ec-p384, ed25519");
    let (alg, encoding) = match key.as_str() {
        "rsa1" | "rsa2" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
        "ec-p256" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
        "ec-p384" => (Algorithm::ES384, EncodingKey::from_ec_pem(&pem)),
        "ed25519" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem)),
        other => panic!("no algorithm for key {other}"),
    };
    let encoding = encoding.expect("a valid private key");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunks: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (encoding, issuer, audience, subject) =
                    (&encoding, &issuer, &audience, &subject);
                scope.spawn(move || {
                    (0..count)
                        .filter(|n| n % threads == t)
                        .map(|n| {
                            let claims = serde_json::json!({
                                "iss": issuer,
                                "aud": audience,
                                "sub": subject,
                                "iat": now,
                                "exp": now + ttl,
                                "jti": format!("{n:016x}"),
                            });
                            jsonwebtoken::encode(&Header::new(alg), &claims, encoding).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for token in chunks.iter().flatten() {
        writeln!(out, "{token}").unwrap();
    }
    out.flush().unwrap();
}
