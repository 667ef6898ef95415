//! The token front end: `authn::bearer` on an arbitrary `Authorization`
//! value, then `Authenticator::authenticate` on what it yields and on the
//! raw input, against an issuer with an HMAC secret and one with an RSA
//! public key (PEM).
//!
//! Checks: nothing panics, and nothing is accepted (the fuzzer cannot sign;
//! the seeds are validly signed tokens that fail a claim check forever).

#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use zambda_guard::authn::{self, Authenticator};
use zambda_guard::config::Config;

/// The HMAC secret of the `hmac` issuer; the seeds are signed with it.
pub const SECRET: &str = "fuzz-hmac-secret-0123456789abcdefghijklmnop";

struct World {
    runtime: tokio::runtime::Runtime,
    auth: Arc<Authenticator>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        std::env::set_var("ZG_FUZZ_HMAC", SECRET);
        let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/keys/rsa1-public.pem");
        let yaml = format!(
            "auth:\n  roles_claim: roles\n  issuers:\n\
             \x20   - issuer: https://hmac.fuzz/\n      audiences: [https://api.fuzz]\n      algorithms: [HS256, HS384, HS512]\n      hmac_secret_env: ZG_FUZZ_HMAC\n\
             \x20   - issuer: https://rsa.fuzz/\n      audiences: [https://api.fuzz]\n      algorithms: [RS256, PS256, ES256, EdDSA]\n      public_key_pem_file: {pem}\n"
        );
        let config = Config::from_yaml(&yaml, "fuzz.yaml", Path::new("/"))
            .unwrap_or_else(|e| panic!("fuzz config: {e}"));
        let auth = Authenticator::new(&config.auth).unwrap_or_else(|e| panic!("authenticator: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        World { runtime, auth }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    // as one Authorization header, and split in two at the first newline
    let mut headers: Vec<&[u8]> = vec![data];
    if let Some(at) = data.iter().position(|&b| b == b'\n') {
        headers = vec![&data[..at], &data[at + 1..]];
    }
    if let Ok(Some(token)) = authn::bearer(&headers) {
        let verdict = w.runtime.block_on(w.auth.authenticate(token));
        assert!(verdict.is_err(), "accepted {token:?}: {verdict:?}");
    }
    if let Ok(token) = std::str::from_utf8(data) {
        let verdict = w.runtime.block_on(w.auth.authenticate(token));
        assert!(verdict.is_err(), "accepted {token:?}: {verdict:?}");
    }
});
