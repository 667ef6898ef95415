//! `zambda-guard explain` and `check`'s summary: the decision for one
//! principal and Zambda, and why, computed by the same [`policy::Set`] code
//! the proxy decides live requests with.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::authn::{self, Authenticator, Identity, Named, Reading};
use crate::config::Config;
use crate::policy::{self, Explanation, Origin, RoleSource, Rule};

/// Who to explain a decision for.
pub enum Query {
    /// A token, verified as the proxy would (keys fetched if needed).
    Token(String),
    /// A token only decoded, not verified.
    UnverifiedToken(String),
    Subject {
        subject: String,
        issuer: Option<String>,
        roles: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// The principal as resolved from a query.
struct Resolved {
    named: Named,
    issuer: Option<String>,
    /// "verified token", "unverified token" or "given"
    how: &'static str,
}

impl Resolved {
    fn principal(&self) -> policy::Principal<'_> {
        self.named.principal(self.issuer.as_deref())
    }
}

/// Explains the decision for `query` on `zambda` (id or name).
pub fn run(
    config: &Config,
    set: &policy::Set,
    query: Query,
    zambda: &str,
    format: Format,
) -> Result<String, String> {
    let resolved = resolve(config, query)?;
    let z = set
        .zambda(zambda)
        .ok_or_else(|| format!("zambda {zambda:?} is not in the catalog"))?;
    let principal = resolved.principal();
    let explanation = set.explain(&principal, z);
    Ok(match format {
        Format::Json => {
            let mut v = to_json(&resolved, z, &explanation);
            v["roles_header"] = json!(set.roles_of(&principal).join(","));
            format!("{v:#}\n")
        }
        Format::Text => to_text(&resolved, z, &explanation),
    })
}

fn resolve(config: &Config, query: Query) -> Result<Resolved, String> {
    match query {
        Query::Subject {
            subject,
            issuer,
            roles,
        } => Ok(Resolved {
            named: Named { subject, roles },
            issuer,
            how: "given",
        }),
        Query::Token(token) => {
            let identity = verify(config, &token)?;
            Ok(Resolved {
                named: Named {
                    subject: identity.subject.clone(),
                    roles: identity.roles.clone(),
                },
                issuer: Some(identity.issuer.to_string()),
                how: "verified token",
            })
        }
        Query::UnverifiedToken(token) => {
            // Read exactly as the proxy reads a verified token: the issuer
            // picked by `iss`, its subject and roles claims, their checks.
            let claims = unverified_claims(&token)
                .ok_or("the token is not a decodable JWS compact token")?;
            let iss = claims.get("iss").and_then(Value::as_str);
            let known = iss.is_some_and(|iss| config.auth.issuers.iter().any(|i| i.issuer == iss));
            // An issuer the config does not know is read the way every
            // configured issuer reads claims, and said to be unknown.
            let reading = Reading::for_claims(&config.auth, iss.filter(|_| known))?;
            let named = authn::claims::read(&claims, reading)
                .map_err(|why| format!("the proxy would refuse the token: {why}"))?;
            Ok(Resolved {
                named,
                issuer: iss.map(String::from),
                how: if known {
                    "unverified token"
                } else {
                    "unverified token; its issuer is not configured, so the proxy would refuse it"
                },
            })
        }
    }
}

/// The claims of a JWS compact token, decoded without any verification.
fn unverified_claims(token: &str) -> Option<Value> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

/// Verifies a token exactly as the proxy would, fetching JWKS first.
fn verify(config: &Config, token: &str) -> Result<Arc<Identity>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let auth = Authenticator::new(&config.auth).map_err(|e| e.to_string())?;
        for (issuer, why) in auth.refresh_all().await {
            eprintln!("warning: keys of {issuer} could not be fetched: {why}");
        }
        auth.authenticate(token).await.map_err(|r| match r {
            authn::Rejection::Missing => "no token".to_string(),
            authn::Rejection::Invalid(why) => format!("the token is not valid: {why}"),
            authn::Rejection::KeysUnavailable => {
                "the token's issuer has no keys (fetch failed)".to_string()
            }
        })
    })
}

fn verdict(e: &Explanation<'_>) -> &'static str {
    if e.decision.allowed {
        "allow"
    } else {
        "deny"
    }
}

fn rule_json(rule: &Rule) -> Value {
    let origin = match &rule.origin {
        Origin::Actor { subject, issuer } => {
            json!({"kind": "actor", "subject": &**subject, "issuer": issuer.as_deref()})
        }
        Origin::Role { name } => json!({"kind": "role", "name": &**name}),
    };
    json!({
        "effect": rule.effect.to_string(),
        "origin": origin,
        "index": rule.index,
        "file": rule.file.display().to_string(),
        "line": rule.line,
        "text": rule.to_string(),
    })
}

fn role_source(source: &RoleSource<'_>) -> Value {
    match source {
        RoleSource::Token => json!({"kind": "token"}),
        RoleSource::Actor(actor) => json!({
            "kind": "actor",
            "subject": actor.subject,
            "issuer": actor.issuer,
            "file": actor.file.display().to_string(),
            "line": actor.line,
        }),
    }
}

fn to_json(r: &Resolved, z: &policy::Zambda, e: &Explanation<'_>) -> Value {
    json!({
        "decision": verdict(e),
        "zambda": {"id": z.id, "name": z.name, "type": z.kind.to_string()},
        "principal": {
            "subject": r.named.subject,
            "issuer": r.issuer,
            "from": r.how,
            "actor_entries": e.actors.iter().map(|a| json!({
                "subject": a.subject, "issuer": a.issuer,
                "file": a.file.display().to_string(), "line": a.line,
            })).collect::<Vec<_>>(),
            "roles": e.roles.iter().map(|h| json!({
                "name": h.role.name, "source": role_source(&h.source),
                "file": h.role.file.display().to_string(), "line": h.role.line,
            })).collect::<Vec<_>>(),
            "ignored_roles": e.ignored_roles,
        },
        "deciding_rule": e.decision.deciding.map(rule_json),
        "reason": e.decision.deciding.map_or_else(|| "no rule allows".to_string(), ToString::to_string),
        "matching_rules": e.matching.iter().map(|r| rule_json(r)).collect::<Vec<_>>(),
    })
}

fn to_text(r: &Resolved, z: &policy::Zambda, e: &Explanation<'_>) -> String {
    let mut out = String::new();
    out.push_str(&format!("decision: {}\n", verdict(e)));
    out.push_str(&format!("zambda:   {} (id {}, {})\n", z.name, z.id, z.kind));
    out.push_str(&format!(
        "actor:    {} (issuer {}; {})\n",
        r.named.subject,
        r.issuer.as_deref().unwrap_or("any"),
        r.how
    ));
    if e.actors.is_empty() {
        out.push_str("          no actor entry in the policies\n");
    }
    if e.roles.is_empty() {
        out.push_str("roles:    none\n");
    } else {
        out.push_str("roles:\n");
        for h in &e.roles {
            let from = match h.source {
                RoleSource::Token => "from the token".to_string(),
                RoleSource::Actor(a) => format!(
                    "from actor entry {}{}",
                    a.file.display(),
                    a.line.map(|l| format!(":{l}")).unwrap_or_default()
                ),
            };
            out.push_str(&format!("  {} ({from})\n", h.role.name));
        }
    }
    for ignored in &e.ignored_roles {
        out.push_str(&format!(
            "  {ignored} (from the token; not defined, ignored)\n"
        ));
    }
    match e.decision.deciding {
        Some(rule) => out.push_str(&format!("deciding: {rule}\n")),
        None => out.push_str("deciding: no rule allows (implicit deny)\n"),
    }
    if !e.matching.is_empty() {
        out.push_str("matching rules:\n");
        for rule in &e.matching {
            out.push_str(&format!("  {rule}\n"));
        }
    }
    out
}

/// `check`'s warnings that need both config and policies.
pub fn check_warnings(config: &Config, loaded: &policy::Loaded) -> Vec<String> {
    let mut warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    let stats = loaded.set.stats();
    if stats.zambdas == 0 && stats.actors == 0 && stats.roles == 0 {
        warnings.push(format!(
            "{}: the policy set is empty: every request will be denied",
            config.policies.dir.display()
        ));
    }
    if config.auth.issuers.len() > 1 {
        let unbound = loaded.set.actors().filter(|a| a.issuer.is_none()).count();
        if unbound > 0 {
            warnings.push(format!(
                "{unbound} actor(s) carry no `issuer` while {} issuers are configured: they match tokens from any of them",
                config.auth.issuers.len()
            ));
        }
    }
    warnings.extend(crate::tls::warnings(config));
    warnings.extend(config.warnings());
    warnings
}

/// `check`'s one-paragraph summary.
pub fn summary(config: &Config, loaded: &policy::Loaded) -> String {
    let s = loaded.set.stats();
    format!(
        "ok: {} (listen {}, upstream {}, {} issuer(s))\n\
         policies: {} file(s) in {}: {} zambda(s), {} role(s), {} actor(s), {} zambda rule(s), {} inert rule(s) of other services",
        config.source.display(),
        config.listen,
        config.upstream.address_text,
        config.auth.issuers.len(),
        loaded.files.len(),
        config.policies.dir.display(),
        s.zambdas,
        s.roles,
        s.actors,
        s.zambda_rules,
        s.inert_rules,
    )
}

#[cfg(test)]
mod tests;
