//! The checks one token goes through: shape (JWS compact, three parts), header
//! (`alg` allowed for the issuer, no `crit`), issuer (peeked from `iss`), key
//! choice by `kid` and key type, signature, claims (`exp`, `nbf`, `iss`,
//! `aud`, with leeway), subject and roles.
//!
//! jsonwebtoken's `Validation` defaults do not fit (leeway 60 s, `nbf`
//! unchecked, only `exp` required): each issuer gets one `Validation` per
//! allowed algorithm, built here. Embedded `jwk`/`jku`/`x5u`/`x5c` headers
//! are never used: keys only come from the issuer's configured sources.

use std::borrow::Cow;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::claims::Reading;
use super::keys::{Fingerprint, Key, KeySet};
use super::{Identity, Rejection};
use crate::config::{self, ClaimPath};

const MALFORMED: Rejection = Rejection::Invalid("malformed token");

/// What an issuer checks beyond the signature.
pub(crate) struct Requirements {
    validations: Vec<(Algorithm, Validation)>,
    subject: ClaimPath,
    roles: Option<ClaimPath>,
}

impl Requirements {
    pub fn new(issuer: &config::Issuer, leeway: u64) -> Requirements {
        let validations = issuer
            .algorithms
            .iter()
            .map(|&alg| {
                // One algorithm per Validation: jsonwebtoken refuses to mix
                // families in one, and we pick the key by family anyway.
                let mut v = Validation::new(alg);
                v.leeway = leeway;
                v.validate_exp = true;
                v.validate_nbf = true;
                v.validate_aud = true;
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.set_issuer(&[issuer.issuer.as_str()]);
                v.set_audience(&issuer.audiences);
                (alg, v)
            })
            .collect();
        Requirements {
            validations,
            subject: issuer.subject_claim.clone(),
            roles: issuer.roles_claim.clone(),
        }
    }

    /// The claims this issuer reads for subject and roles.
    pub fn reading(&self) -> Reading<'_> {
        Reading {
            subject: &self.subject,
            roles: self.roles.as_ref(),
        }
    }

    /// The validation for `alg`, if the issuer allows it.
    pub fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}

/// A token whose signature and claims passed.
pub(crate) struct Verified {
    pub identity: Arc<Identity>,
    pub issuer: usize,
    pub fingerprint: Fingerprint,
    pub not_before: Option<u64>,
}

/// What the unverified token says about itself, enough to pick the issuer
/// and the key.
pub(crate) struct Parsed {
    pub header: Header,
    pub issuer: String,
}

#[derive(Deserialize)]
struct PeekIssuer<'a> {
    #[serde(borrow, default)]
    iss: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PeekAlg<'a> {
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
}

/// Shape, header and issuer of a token, unverified.
pub(crate) fn parse(token: &str) -> Result<Parsed, Rejection> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
    if !token.bytes().all(allowed) {
        return Err(MALFORMED);
    }
    // JWS compact serialization: exactly three non-empty parts. A JWE has
    // five; an unsecured JWT has an empty third part.
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(MALFORMED);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| header_rejection(header))?;
    if header.crit.is_some() {
        // No extension is understood here, so none may be critical (RFC 7515 §4.1.11).
        return Err(Rejection::Invalid("unsupported critical header"));
    }
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| MALFORMED)?;
    // Claims are a JSON object; serde would also read a struct from an array.
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(MALFORMED);
    }
    let peek: PeekIssuer<'_> = serde_json::from_slice(&payload).map_err(|_| MALFORMED)?;
    let issuer = peek
        .iss
        .ok_or(Rejection::Invalid("iss claim missing"))?
        .into_owned();
    Ok(Parsed { header, issuer })
}

/// Why a header did not parse: an `alg` jsonwebtoken does not know (such as
/// `none`, in any case) or anything else.
fn header_rejection(encoded: &str) -> Rejection {
    let Ok(json) = URL_SAFE_NO_PAD.decode(encoded) else {
        return MALFORMED;
    };
    match serde_json::from_slice::<PeekAlg<'_>>(&json) {
        Ok(PeekAlg { alg: Some(alg) }) if config::parse_algorithm(&alg).is_none() => {
            Rejection::Invalid("algorithm not allowed")
        }
        _ => MALFORMED,
    }
}

/// The keys of `set` to try for a token.
pub(crate) enum Lookup {
    Keys(Vec<Arc<Key>>),
    /// The issuer has no keys at all.
    Unavailable,
    /// No key carries the token's `kid`.
    UnknownKid,
    /// Keys exist, but none of a type (or JWK `alg`) that fits the token's
    /// algorithm.
    NoKeyForAlg,
    /// The token has no `kid` and several keys fit its algorithm.
    KidRequired,
}

/// With a `kid`: the keys carrying it that fit `alg`, else the keys without
/// a `kid` (PEM, HMAC secret) that fit `alg`. Without a `kid`: the single key
/// that fits `alg`, if there is exactly one.
pub(crate) fn lookup(set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Lookup {
    if set.keys.is_empty() {
        return Lookup::Unavailable;
    }
    let fitting = |k: &&Arc<Key>| k.usable_for(alg);
    match kid {
        Some(kid) => {
            let mut named = set
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .peekable();
            let any_named = named.peek().is_some();
            let keys: Vec<Arc<Key>> = named.filter(fitting).cloned().collect();
            if !keys.is_empty() {
                return Lookup::Keys(keys);
            }
            let anonymous: Vec<Arc<Key>> = set
                .keys
                .iter()
                .filter(|k| k.kid.is_none())
                .filter(fitting)
                .cloned()
                .collect();
            if !anonymous.is_empty() {
                Lookup::Keys(anonymous)
            } else if any_named {
                Lookup::NoKeyForAlg
            } else {
                Lookup::UnknownKid
            }
        }
        None => {
            let mut keys = set.keys.iter().filter(fitting);
            match (keys.next(), keys.next()) {
                (Some(key), None) => Lookup::Keys(vec![Arc::clone(key)]),
                (None, _) => Lookup::NoKeyForAlg,
                (Some(_), Some(_)) => Lookup::KidRequired,
            }
        }
    }
}

/// Verifies the signature with each candidate key in turn, then the claims.
pub(crate) fn verify_signature(
    token: &str,
    candidates: &[Arc<Key>],
    validation: &Validation,
) -> Result<(Arc<Key>, Value), Rejection> {
    for key in candidates {
        match jsonwebtoken::decode::<Value>(token, &key.decoding, validation) {
            Ok(data) => return Ok((Arc::clone(key), data.claims)),
            // jsonwebtoken checks the signature before the claims, so any
            // other error is about this (validly signed) token itself.
            Err(e) if is_signature_error(e.kind()) => continue,
            Err(e) => return Err(rejection(e.kind())),
        }
    }
    Err(Rejection::Invalid("signature invalid"))
}

fn is_signature_error(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
    )
}

/// A fixed description for each jsonwebtoken error.
fn rejection(kind: &ErrorKind) -> Rejection {
    Rejection::Invalid(match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidAudience => "audience not accepted",
        ErrorKind::InvalidIssuer => "issuer not accepted",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "exp claim missing",
            "aud" => "aud claim missing",
            "iss" => "iss claim missing",
            _ => "required claim missing",
        },
        ErrorKind::InvalidClaimFormat(_) => "claim malformed",
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => "algorithm not allowed",
        kind if is_signature_error(kind) => "signature invalid",
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "malformed token",
        _ => "token invalid",
    })
}
