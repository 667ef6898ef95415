//! `zambda-guard demo`: the zero-setup way to see the proxy work.
//!
//! It writes the example policies (built into the binary) and a freshly
//! generated Ed25519 key's JWKS to a temporary directory, starts the echo
//! backend, and prints `curl` commands with ready-signed tokens for an
//! allowed, a denied and a public call. Nothing else needs to be installed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;

use crate::config::Config;

/// The example policies shipped in `policies/`, built into the binary.
pub const EXAMPLE_POLICIES: &[(&str, &str)] = &[
    ("catalog.yaml", include_str!("../policies/catalog.yaml")),
    ("roles.yaml", include_str!("../policies/roles.yaml")),
    ("actors.yaml", include_str!("../policies/actors.yaml")),
];

pub const DEMO_ISSUER: &str = "https://demo.zambda-guard.invalid/";
pub const DEMO_AUDIENCE: &str = "https://api.zambda-guard.invalid";

/// A ready demo: the config to serve and what to tell the user.
pub struct Setup {
    pub config: Config,
    pub instructions: String,
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write demo files in {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("cannot generate a signing key")]
    Key,
    #[error("cannot sign a demo token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error("demo config is invalid: {0}")]
    Config(#[from] crate::config::Error),
}

/// Writes the demo's files and builds its config and instructions.
pub fn prepare(port: u16, admin_port: u16, backend_port: u16) -> Result<Setup, Error> {
    let dir = std::env::temp_dir().join(format!("zambda-guard-demo-{}", std::process::id()));
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).map_err(|e| Error::Io(policies.clone(), e))?;
    for (name, text) in EXAMPLE_POLICIES {
        write(&policies.join(name), text)?;
    }

    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| Error::Key)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| Error::Key)?;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let jwks = serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "demo", "alg": "EdDSA", "use": "sig"
    }]});
    write(&dir.join("jwks.json"), &jwks.to_string())?;

    let config_text = format!(
        "listen: 127.0.0.1:{port}\n\
         admin_listen: 127.0.0.1:{admin_port}\n\
         upstream:\n  address: 127.0.0.1:{backend_port}\n\
         auth:\n  issuers:\n\
         \x20   - issuer: {DEMO_ISSUER}\n\
         \x20     audiences: [{DEMO_AUDIENCE}]\n\
         \x20     algorithms: [EdDSA]\n\
         \x20     jwks_file: jwks.json\n\
         policies:\n  dir: policies\n\
         shutdown:\n  grace_period_seconds: 0\n  drain_timeout_seconds: 5\n\
         \x20 upgrade_sock: zambda-guard.sock\n\
         log:\n  decisions: all\n"
    );
    write(&dir.join("config.yaml"), &config_text)?;
    let config = Config::load(&dir.join("config.yaml"))?;

    let key = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
    let sign = |subject: &str| -> Result<String, Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = serde_json::json!({
            "iss": DEMO_ISSUER, "aud": DEMO_AUDIENCE, "sub": subject,
            "iat": now, "exp": now + 24 * 3600,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("demo".into());
        Ok(jsonwebtoken::encode(&header, &claims, &key)?)
    };
    let allowed = sign("lab-bot@clients")?;
    let denied = sign("dr-alice")?;
    let base = format!("http://127.0.0.1:{port}/v1/zambda");
    let instructions = format!(
        "zambda-guard demo\n\
         \n\
         proxy    http://127.0.0.1:{port}   (admin: http://127.0.0.1:{admin_port}/readyz)\n\
         backend  echo server on 127.0.0.1:{backend_port}\n\
         files    {dir}  (config.yaml, policies/, jwks.json)\n\
         \n\
         Allowed: lab-bot@clients holds the role lab-integrations, which allows lab-results-ingest:\n\
         \n  curl -s -X POST {base}/lab-results-ingest/execute \\\n    -H 'Authorization: Bearer {allowed}' \\\n    -H 'content-type: application/json' -d '{{\"panel\":\"cbc\"}}'\n\
         \n\
         Denied (403): dr-alice is a clinician, but the no-billing role explicitly denies billing-export:\n\
         \n  curl -s -X POST {base}/billing-export/execute \\\n    -H 'Authorization: Bearer {denied}' -d '{{}}'\n\
         \n\
         Public: appointment-slots is a public Zambda, no token needed:\n\
         \n  curl -s -X POST {base}/appointment-slots/execute-public -d '{{}}'\n\
         \n\
         Why a decision was made:\n\
         \n  zambda-guard explain --config {dir}/config.yaml --subject dr-alice --zambda billing-export\n\
         \n\
         Press Ctrl-C to stop.\n",
        dir = dir.display(),
    );
    Ok(Setup {
        config,
        instructions,
        dir,
    })
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::Io(path.to_path_buf(), e))
}

/// Starts the echo backend on 127.0.0.1:`port` on a thread of its own and
/// returns once it listens.
pub fn start_backend(port: u16) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let bound = crate::echo::serve(addr, crate::echo::Behaviour::default()).await;
            let _ = tx.send(bound.map(|_| ()));
            std::future::pending::<()>().await;
        });
    });
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("echo backend thread ended")))
}
