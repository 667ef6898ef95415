//! The one rule from a token's claims to who it speaks for: which claims an
//! issuer reads ([`Reading`]), the subject and its checks, the roles and
//! their accepted shapes ([`read`]), and the [`policy::Principal`] that
//! decides. The proxy, `explain` (with and without `--no-verify`) and
//! `test` all read claims through here, so none of them can drift.

use std::sync::Arc;

use serde_json::Value;

use super::{Identity, Rejection};
use crate::config::{self, ClaimPath};
use crate::policy;

/// The claims one issuer reads: its `subject_claim` and `roles_claim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading<'c> {
    pub subject: &'c ClaimPath,
    pub roles: Option<&'c ClaimPath>,
}

impl<'c> Reading<'c> {
    pub fn of(issuer: &'c config::Issuer) -> Self {
        Reading {
            subject: &issuer.subject_claim,
            roles: issuer.roles_claim.as_ref(),
        }
    }

    /// The reading for claims that carry `iss` (the issuer must be
    /// configured, as the proxy requires), or, without `iss`, the one
    /// reading every configured issuer shares.
    pub fn for_claims(auth: &'c config::Auth, iss: Option<&str>) -> Result<Self, String> {
        match iss {
            Some(iss) => auth
                .issuers
                .iter()
                .find(|i| i.issuer == iss)
                .map(Reading::of)
                .ok_or_else(|| {
                    format!(
                        "iss {iss:?} is not a configured issuer (the proxy would refuse the token)"
                    )
                }),
            None => {
                let mut readings = auth.issuers.iter().map(Reading::of);
                let first = readings
                    .next()
                    .ok_or("the config has no issuer to read claims with")?;
                if readings.any(|r| r != first) {
                    return Err(
                        "the configured issuers read different subject or roles claims; add `iss`"
                            .to_owned(),
                    );
                }
                Ok(first)
            }
        }
    }
}

/// Who the claims name: the subject and the roles the token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// A non-empty string without control characters.
    pub subject: String,
    /// In token order; names or ids, as the token has them.
    pub roles: Vec<String>,
}

impl Named {
    /// The principal these claims are, for a token of `issuer`.
    pub fn principal<'a>(&'a self, issuer: Option<&'a str>) -> policy::Principal<'a> {
        policy::Principal {
            subject: &self.subject,
            issuer,
            token_roles: &self.roles,
        }
    }
}

impl Identity {
    /// The principal a verified token is: the one conversion from a token
    /// to what the policy decides on.
    pub fn principal(&self) -> policy::Principal<'_> {
        policy::Principal {
            subject: &self.subject,
            issuer: Some(&self.issuer),
            token_roles: &self.roles,
        }
    }

    /// The identity of claims already verified (or, for tools, decoded):
    /// subject and roles by [`read`], `exp` required.
    pub fn from_claims(
        claims: &Value,
        issuer: &Arc<str>,
        reading: Reading<'_>,
    ) -> Result<Identity, Rejection> {
        let named = read(claims, reading)?;
        let expires_at =
            numeric_claim(claims, "exp").ok_or(Rejection::Invalid("claim malformed"))?;
        Ok(Identity {
            issuer: Arc::clone(issuer),
            subject: named.subject,
            roles: named.roles,
            expires_at,
        })
    }
}

/// The subject and the roles of a token's claims.
///
/// The subject must be a non-empty string without control characters: it
/// becomes a request header upstream and a log field. Roles are an array
/// of strings or one string of space-separated names; absent is no roles.
/// Any other shape fails closed: a role named in the token may carry a
/// Deny, so a claim that cannot be read is never read as "no roles".
pub fn read(claims: &Value, reading: Reading<'_>) -> Result<Named, Rejection> {
    let subject = match reading.subject.get(claims) {
        None => return Err(Rejection::Invalid("subject missing")),
        Some(Value::String(s)) if !s.is_empty() && !s.chars().any(char::is_control) => s.clone(),
        Some(_) => return Err(Rejection::Invalid("subject invalid")),
    };
    let roles = match reading.roles {
        None => Vec::new(),
        Some(path) => roles(path.get(claims))?,
    };
    Ok(Named { subject, roles })
}

fn roles(claim: Option<&Value>) -> Result<Vec<String>, Rejection> {
    const INVALID: Rejection = Rejection::Invalid("roles claim invalid");
    match claim {
        None => Ok(Vec::new()),
        Some(Value::String(names)) => {
            Ok(names.split_ascii_whitespace().map(String::from).collect())
        }
        Some(Value::Array(items)) => items
            .iter()
            .filter(|item| item.as_str() != Some(""))
            .map(|item| item.as_str().map(String::from).ok_or(INVALID))
            .collect(),
        Some(_) => Err(INVALID),
    }
}

/// A NumericDate claim (jsonwebtoken's reading: non-negative, floats rounded).
pub(crate) fn numeric_claim(claims: &Value, name: &str) -> Option<u64> {
    let value = claims.get(name)?;
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f.round() as u64)
    })
}
