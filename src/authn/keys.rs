//! Verification keys: parsing JWKs, PEM public keys and HMAC secrets into
//! [`Key`]s, each bound to the algorithm family of its own type, and the
//! per-issuer key set (`KeyStore`) that merges an issuer's sources and
//! publishes them through an `ArcSwap`.
//!
//! A key is only ever used with the algorithms of its type (RSA: RS*/PS*;
//! EC P-256: ES256; EC P-384: ES384; Ed25519: EdDSA; oct: HS*), further
//! narrowed by the JWK's `alg` when present. JWKs whose `use` is not `sig`,
//! whose `alg` disagrees with their type, or that are symmetric (`oct`) but
//! came from a `jwks_url` are skipped.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Guard};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use super::{Error, IssuerStats};
use crate::config::{self, KeySource};

/// Key files and JWKS documents larger than this are refused.
pub const MAX_KEY_DOCUMENT_BYTES: usize = 1024 * 1024;

/// At most this many keys are taken from one JWKS document.
const MAX_KEYS_PER_SOURCE: usize = 100;

/// HMAC secrets shorter than this are refused (same floor as
/// `hmac_secret_env`).
const MIN_HMAC_SECRET_BYTES: usize = 32;

/// JWK members are base64url; some publishers pad them, so padding is
/// accepted either way.
const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// SHA-256 of a key's type and material: identifies the key in the
/// verified-token cache.
pub type Fingerprint = [u8; 32];

/// The type of a key, which fixes the only algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
    Hmac,
}

impl KeyKind {
    /// Whether this type of key may verify `alg`.
    pub fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::EcP256 => alg == ES256,
            KeyKind::EcP384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
        }
    }

    fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::EcP256 => "EC P-256",
            KeyKind::EcP384 => "EC P-384",
            KeyKind::Ed25519 => "Ed25519",
            KeyKind::Hmac => "HMAC",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One verification key.
pub struct Key {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's `alg`, when it named one: the key is used with that
    /// algorithm only.
    pub alg: Option<Algorithm>,
    pub fingerprint: Fingerprint,
    pub(crate) decoding: DecodingKey,
}

impl fmt::Debug for Key {
    // The material (an HMAC secret, possibly) is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Whether this key may verify a token signed with `alg`.
    pub fn usable_for(&self, alg: Algorithm) -> bool {
        self.kind.allows(alg) && self.alg.is_none_or(|a| a == alg)
    }

    fn fingerprint(kind: KeyKind, parts: &[&[u8]]) -> Fingerprint {
        let mut hash = Sha256::new();
        hash.update(kind.name().as_bytes());
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }

    fn rsa(n: &[u8], e: &[u8]) -> Result<Key, String> {
        // aws-lc refuses components with leading zero bytes; some JWKS
        // publishers add one to `n`.
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = n
            .first()
            .map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
        if !(2048..=8192).contains(&bits) {
            return Err(format!(
                "RSA modulus of {bits} bits (2048 to 8192 are accepted)"
            ));
        }
        if e.is_empty() || e.len() > 8 {
            return Err("RSA exponent is malformed".into());
        }
        Ok(Key {
            kid: None,
            kind: KeyKind::Rsa,
            alg: None,
            fingerprint: Key::fingerprint(KeyKind::Rsa, &[n, e]),
            decoding: DecodingKey::from_rsa_raw_components(n, e),
        })
    }

    /// `point` is the uncompressed SEC1 point `04 || x || y`.
    fn ec(point: &[u8]) -> Result<Key, String> {
        use aws_lc_rs::signature::{
            ParsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
        };
        let (kind, algorithm) = match point.len() {
            65 => (KeyKind::EcP256, &ECDSA_P256_SHA256_FIXED),
            97 => (KeyKind::EcP384, &ECDSA_P384_SHA384_FIXED),
            n => return Err(format!("EC point of {n} bytes is neither P-256 nor P-384")),
        };
        // Refuse points that are not on the curve now, not at the first token.
        ParsedPublicKey::new(algorithm, point)
            .map_err(|_| format!("{kind} public key is not a valid curve point"))?;
        Ok(Key {
            kid: None,
            kind,
            alg: None,
            fingerprint: Key::fingerprint(kind, &[point]),
            decoding: DecodingKey::from_ec_der(point),
        })
    }

    fn ed25519(x: &[u8]) -> Result<Key, String> {
        use aws_lc_rs::signature::{ParsedPublicKey, ED25519};
        if x.len() != 32 {
            return Err(format!(
                "Ed25519 public key of {} bytes (32 expected)",
                x.len()
            ));
        }
        ParsedPublicKey::new(&ED25519, x)
            .map_err(|_| "Ed25519 public key is invalid".to_string())?;
        Ok(Key {
            kid: None,
            kind: KeyKind::Ed25519,
            alg: None,
            fingerprint: Key::fingerprint(KeyKind::Ed25519, &[x]),
            decoding: DecodingKey::from_ed_der(x),
        })
    }

    fn hmac(secret: &[u8]) -> Result<Key, String> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(format!(
                "HMAC secret of {} bytes (at least {MIN_HMAC_SECRET_BYTES} are required)",
                secret.len()
            ));
        }
        Ok(Key {
            kid: None,
            kind: KeyKind::Hmac,
            alg: None,
            fingerprint: Key::fingerprint(KeyKind::Hmac, &[secret]),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// This key as a public JWK (no `kid`, `alg` or `use`); `None` for
    /// HMAC keys, which are never published.
    fn public_jwk(&self) -> Option<Value> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match (self.kind, self.decoding.kind()) {
            (KeyKind::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                Some(json!({"kty": "RSA", "n": b64(n), "e": b64(e)}))
            }
            (KeyKind::EcP256 | KeyKind::EcP384, DecodingKeyKind::SecretOrDer(point)) => {
                let (crv, len) = if self.kind == KeyKind::EcP256 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                let x = point.get(1..1 + len)?;
                let y = point.get(1 + len..)?;
                Some(json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)}))
            }
            (KeyKind::Ed25519, DecodingKeyKind::SecretOrDer(x)) => {
                Some(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(x)}))
            }
            _ => None,
        }
    }
}

fn strip_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// Where a JWKS document came from: a public URL must not carry secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Url,
    File,
}

/// The keys of a JWKS document usable with one of `allowed`, and the
/// reasons the others were skipped. A document that is not a JWKS, or that
/// yields no usable key, is an error.
pub(crate) fn parse_jwks(
    bytes: &[u8],
    origin: Origin,
    allowed: &[Algorithm],
) -> Result<(Vec<Key>, Vec<String>), String> {
    if bytes.len() > MAX_KEY_DOCUMENT_BYTES {
        return Err(format!("larger than {MAX_KEY_DOCUMENT_BYTES} bytes"));
    }
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS (invalid JSON: {e})"))?;
    let jwks = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "not a JWKS (no \"keys\" array)".to_string())?;
    if jwks.is_empty() {
        return Err("the key set is empty".into());
    }
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, jwk) in jwks.iter().enumerate() {
        let label = match jwk.get("kid").and_then(Value::as_str) {
            Some(kid) => format!("keys[{i}] (kid {:?})", truncate(kid, 64)),
            None => format!("keys[{i}]"),
        };
        if keys.len() == MAX_KEYS_PER_SOURCE {
            skipped.push(format!("{label}: more than {MAX_KEYS_PER_SOURCE} keys"));
            continue;
        }
        match parse_jwk(jwk, origin) {
            Ok(key) if allowed.iter().any(|a| key.usable_for(*a)) => keys.push(key),
            Ok(key) => skipped.push(format!(
                "{label}: a {} key is not usable with the issuer's algorithms",
                key.kind
            )),
            Err(reason) => skipped.push(format!("{label}: {reason}")),
        }
    }
    if keys.is_empty() {
        return Err(format!("no usable key ({})", skipped.join("; ")));
    }
    Ok((keys, skipped))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// One JWK (RFC 7517/7518/8037) as a [`Key`].
fn parse_jwk(jwk: &Value, origin: Origin) -> Result<Key, String> {
    let obj = jwk.as_object().ok_or("not a JSON object")?;
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("kid is not a string".into()),
    };
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err("use is not \"sig\"".into()),
    }
    if let Some(ops) = obj.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
        if !verifies {
            return Err("key_ops does not include \"verify\"".into());
        }
    }
    let alg = match obj.get("alg") {
        None => None,
        Some(Value::String(name)) => Some(
            config::parse_algorithm(name)
                .ok_or_else(|| format!("alg {:?} is not accepted", truncate(name, 32)))?,
        ),
        Some(_) => return Err("alg is not a string".into()),
    };
    let kty = obj
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("kty missing")?;
    let mut key = match kty {
        "RSA" => Key::rsa(&member(obj, "n")?, &member(obj, "e")?)?,
        "EC" => {
            let (crv, len) = match obj.get("crv").and_then(Value::as_str) {
                Some("P-256") => ("P-256", 32),
                Some("P-384") => ("P-384", 48),
                Some(other) => {
                    return Err(format!(
                        "EC curve {:?} is not supported",
                        truncate(other, 32)
                    ))
                }
                None => return Err("EC key without crv".into()),
            };
            let x = member(obj, "x")?;
            let y = member(obj, "y")?;
            if x.len() != len || y.len() != len {
                return Err(format!("{crv} coordinates must be {len} bytes"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Key::ec(&point)?
        }
        "OKP" => match obj.get("crv").and_then(Value::as_str) {
            Some("Ed25519") => Key::ed25519(&member(obj, "x")?)?,
            Some(other) => {
                return Err(format!(
                    "OKP curve {:?} is not supported",
                    truncate(other, 32)
                ))
            }
            None => return Err("OKP key without crv".into()),
        },
        "oct" if origin == Origin::Url => {
            return Err("symmetric (oct) key refused from a jwks_url".into())
        }
        "oct" => Key::hmac(&member(obj, "k")?)?,
        other => return Err(format!("kty {:?} is not supported", truncate(other, 32))),
    };
    if let Some(alg) = alg {
        if !key.kind.allows(alg) {
            return Err(format!("alg {alg:?} does not fit a {} key", key.kind));
        }
    }
    key.kid = kid;
    key.alg = alg;
    Ok(key)
}

fn member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = obj
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("member {name:?} missing"))?;
    B64URL_LENIENT
        .decode(text)
        .map_err(|_| format!("member {name:?} is not base64url"))
}

/// A PEM file holding exactly one public key: RSA (`PUBLIC KEY` or
/// `RSA PUBLIC KEY`), EC P-256/P-384 or Ed25519 (`PUBLIC KEY`).
pub(crate) fn parse_public_pem(pem: &[u8]) -> Result<Key, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file (not UTF-8)")?;
    let labels: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("-----BEGIN "))
        .map(|rest| rest.trim_end_matches('-'))
        .collect();
    match labels.as_slice() {
        [] => return Err("not a PEM file (no -----BEGIN line)".into()),
        ["PUBLIC KEY" | "RSA PUBLIC KEY"] => {}
        [other] => {
            return Err(format!(
                "holds a {:?} block; a public key (-----BEGIN PUBLIC KEY-----) is required",
                truncate(other, 32)
            ))
        }
        many => {
            return Err(format!(
                "holds {} PEM blocks; exactly one public key is required",
                many.len()
            ))
        }
    }
    if let Ok(rsa) = DecodingKey::from_rsa_pem(pem) {
        let der = rsa.try_get_as_bytes().map_err(|_| "unreadable RSA key")?;
        let public = aws_lc_rs::rsa::PublicKey::from_der(der)
            .map_err(|_| "RSA public key is malformed".to_string())?;
        let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(&public);
        return Key::rsa(&components.n, &components.e);
    }
    if let Ok(ec) = DecodingKey::from_ec_pem(pem) {
        return Key::ec(ec.try_get_as_bytes().map_err(|_| "unreadable EC key")?);
    }
    if let Ok(ed) = DecodingKey::from_ed_pem(pem) {
        return Key::ed25519(
            ed.try_get_as_bytes()
                .map_err(|_| "unreadable Ed25519 key")?,
        );
    }
    Err("not an RSA, EC P-256/P-384 or Ed25519 public key".into())
}

/// A public key PEM as a JWK with `kid`, `alg` and `use: sig`, ready to be
/// served in a JWKS. For `demo` and tests; see [`jwk_from_public_pem`].
pub fn try_jwk_from_public_pem(pem: &[u8], kid: &str, alg: Algorithm) -> Result<Value, Error> {
    let key = parse_public_pem(pem).map_err(Error::Key)?;
    if !key.kind.allows(alg) {
        return Err(Error::Key(format!(
            "a {} key cannot sign {alg:?}",
            key.kind
        )));
    }
    let mut jwk = key
        .public_jwk()
        .ok_or_else(|| Error::Key("the key has no public JWK form".into()))?;
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("kid".into(), Value::from(kid));
        obj.insert("alg".into(), json!(alg));
        obj.insert("use".into(), Value::from("sig"));
    }
    Ok(jwk)
}

/// [`try_jwk_from_public_pem`] for tests (unit and integration: it is not
/// `cfg(test)`): `{"keys": [jwk_from_public_pem(..), ..]}` is a JWKS.
///
/// # Panics
/// When `pem` is not a public key usable with `alg` — a broken test
/// fixture.
pub fn jwk_from_public_pem(pem: &[u8], kid: &str, alg: Algorithm) -> Value {
    match try_jwk_from_public_pem(pem, kid, alg) {
        Ok(jwk) => jwk,
        Err(e) => panic!("jwk_from_public_pem({kid:?}, {alg:?}): {e}"),
    }
}

/// The keys of one issuer as the request path sees them.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    pub keys: Vec<Arc<Key>>,
    /// Some `jwks_url` of the issuer has not been fetched successfully yet.
    pub pending: bool,
}

impl KeySet {
    pub fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.keys.iter().any(|k| &k.fingerprint == fingerprint)
    }
}

/// The last good keys of one key source.
#[derive(Default)]
struct Slot {
    keys: Vec<Arc<Key>>,
    loaded: bool,
    error: Option<String>,
}

/// All key sources of one issuer: the last good keys of each, merged into
/// one [`KeySet`] behind an `ArcSwap`.
pub(crate) struct KeyStore {
    issuer: Arc<str>,
    allowed: Vec<Algorithm>,
    sources: Vec<KeySource>,
    slots: Mutex<Vec<Slot>>,
    current: ArcSwap<KeySet>,
    stats: Arc<IssuerStats>,
}

/// Freshly read file sources of one issuer, to be [`KeyStore::install`]ed.
pub(crate) struct FileKeys(Vec<(usize, Vec<Arc<Key>>)>);

impl KeyStore {
    /// HMAC secrets (already read from the environment by the config) are
    /// loaded here; files and URLs are empty until loaded.
    pub fn new(issuer: &config::Issuer, name: Arc<str>, stats: Arc<IssuerStats>) -> Self {
        let mut slots: Vec<Slot> = issuer.keys.iter().map(|_| Slot::default()).collect();
        for (slot, source) in slots.iter_mut().zip(&issuer.keys) {
            if let KeySource::HmacSecret { env, secret } = source {
                match Key::hmac(secret) {
                    Ok(key) => {
                        slot.keys = vec![Arc::new(key)];
                        slot.loaded = true;
                    }
                    // The config already refuses short secrets; keep the
                    // reason for readiness in case that ever changes.
                    Err(e) => slot.error = Some(format!("hmac_secret_env {env}: {e}")),
                }
            }
        }
        let store = KeyStore {
            issuer: name,
            allowed: issuer.algorithms.clone(),
            sources: issuer.keys.clone(),
            slots: Mutex::new(Vec::new()),
            current: ArcSwap::from_pointee(KeySet::default()),
            stats,
        };
        store.publish(slots);
        store
    }

    pub fn has_url(&self) -> bool {
        self.sources
            .iter()
            .any(|s| matches!(s, KeySource::JwksUrl(_)))
    }

    /// The `jwks_url` sources, by source index.
    pub fn urls(&self) -> impl Iterator<Item = (usize, &str)> {
        self.sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                KeySource::JwksUrl(url) => Some((i, url.as_str())),
                _ => None,
            })
    }

    /// One lock-free load of the current keys (do not hold across `.await`).
    pub fn load(&self) -> Guard<Arc<KeySet>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    pub fn allowed(&self) -> &[Algorithm] {
        &self.allowed
    }

    /// Reads and parses every file source; installs nothing.
    pub fn read_files(&self) -> Result<FileKeys, Vec<Error>> {
        let mut loaded = Vec::new();
        let mut errors = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            let (path, result) = match source {
                KeySource::JwksFile(path) => (
                    path,
                    read_limited(path).and_then(|bytes| {
                        let (keys, skipped) = parse_jwks(&bytes, Origin::File, &self.allowed)?;
                        self.log_skipped(&path.display().to_string(), &skipped);
                        Ok(keys)
                    }),
                ),
                KeySource::PublicKeyPemFile(path) => (
                    path,
                    read_limited(path).and_then(|bytes| {
                        let key = parse_public_pem(&bytes)?;
                        if self.allowed.iter().any(|a| key.usable_for(*a)) {
                            Ok(vec![key])
                        } else {
                            Err(format!(
                                "a {} key is not usable with the issuer's algorithms {:?}",
                                key.kind, self.allowed
                            ))
                        }
                    }),
                ),
                KeySource::JwksUrl(_) | KeySource::HmacSecret { .. } => continue,
            };
            match result {
                Ok(keys) => loaded.push((index, keys.into_iter().map(Arc::new).collect())),
                Err(reason) => {
                    self.stats
                        .refresh_error
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    errors.push(Error::Source {
                        issuer: self.issuer.to_string(),
                        path: path.display().to_string(),
                        reason,
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(FileKeys(loaded))
        } else {
            Err(errors)
        }
    }

    /// Replaces the keys of the file sources read by [`read_files`](Self::read_files).
    pub fn install(&self, files: FileKeys) {
        if files.0.is_empty() {
            return;
        }
        let mut slots = self.lock_slots();
        for (index, keys) in files.0 {
            if let Some(slot) = slots.get_mut(index) {
                slot.keys = keys;
                slot.loaded = true;
                slot.error = None;
                self.count_success();
            }
        }
        self.publish_locked(&slots);
    }

    /// Records one fetch of the `jwks_url` at `index`: on success its keys
    /// replace that source's keys; on failure they are kept.
    pub fn url_fetched(&self, index: usize, result: Result<(Vec<Key>, Vec<String>), String>) {
        let mut slots = self.lock_slots();
        let Some(slot) = slots.get_mut(index) else {
            return;
        };
        match result {
            Ok((keys, skipped)) => {
                if let Some(KeySource::JwksUrl(url)) = self.sources.get(index) {
                    self.log_skipped(url, &skipped);
                }
                slot.keys = keys.into_iter().map(Arc::new).collect();
                slot.loaded = true;
                slot.error = None;
                self.count_success();
            }
            Err(reason) => {
                slot.error = Some(reason);
                self.stats
                    .refresh_error
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.publish_locked(&slots);
    }

    /// Why this issuer cannot be called ready, if it cannot.
    pub fn missing(&self) -> Option<String> {
        let slots = self.lock_slots();
        let mut reasons = Vec::new();
        for (slot, source) in slots.iter().zip(&self.sources) {
            if let KeySource::JwksUrl(url) = source {
                if !slot.loaded {
                    reasons.push(match &slot.error {
                        Some(e) => format!("jwks_url {url}: not loaded yet: {e}"),
                        None => format!("jwks_url {url}: not fetched yet"),
                    });
                }
            }
        }
        if reasons.is_empty() && slots.iter().all(|s| s.keys.is_empty()) {
            reasons.push("no usable keys".into());
        }
        if reasons.is_empty() {
            None
        } else {
            Some(reasons.join("; "))
        }
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A panic while holding this lock cannot leave the slots half
        // written in a way that matters: every write replaces whole values.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, slots: Vec<Slot>) {
        let mut guard = self.lock_slots();
        *guard = slots;
        self.publish_locked(&guard);
    }

    /// Merges the slots into a new key set and swaps it in. Called with the
    /// slots locked, so concurrent loads publish in order.
    fn publish_locked(&self, slots: &[Slot]) {
        let mut keys: Vec<Arc<Key>> = Vec::new();
        for key in slots.iter().flat_map(|s| &s.keys) {
            let duplicate = keys
                .iter()
                .any(|k| k.fingerprint == key.fingerprint && k.kid == key.kid && k.alg == key.alg);
            if !duplicate {
                keys.push(Arc::clone(key));
            }
        }
        let pending = slots
            .iter()
            .zip(&self.sources)
            .any(|(slot, source)| matches!(source, KeySource::JwksUrl(_)) && !slot.loaded);
        self.stats
            .keys
            .store(keys.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.current.store(Arc::new(KeySet { keys, pending }));
    }

    fn count_success(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.refresh_ok.fetch_add(1, Relaxed);
        self.stats
            .last_success_unix
            .store(crate::clock::unix_now(), Relaxed);
    }

    fn log_skipped(&self, source: &str, skipped: &[String]) {
        for reason in skipped {
            tracing::debug!(issuer = %self.issuer, source, "key skipped: {reason}");
        }
    }
}

/// Reads a key file of at most [`MAX_KEY_DOCUMENT_BYTES`].
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_KEY_DOCUMENT_BYTES as u64 {
        return Err(format!("larger than {MAX_KEY_DOCUMENT_BYTES} bytes"));
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}
