//! What `zambda-guard check` prints about a valid config and policy set:
//! the warnings that need both, and the one-paragraph summary.

use crate::config::Config;
use crate::policy;

/// The warnings that need both config and policies.
pub fn warnings(config: &Config, loaded: &policy::Loaded) -> Vec<String> {
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
    warnings
}

/// The summary: one paragraph, then how each issuer's claims are read.
pub fn summary(config: &Config, loaded: &policy::Loaded) -> String {
    let mut out = paragraph(config, loaded);
    for issuer in &config.auth.issuers {
        let roles = match &issuer.roles_claim {
            Some(claim) => format!("roles from {}", claim.describe()),
            None => "no roles read from tokens (roles_claim not set)".to_string(),
        };
        out.push_str(&format!(
            "\nissuer {}: subject from {}; {roles}",
            issuer.issuer,
            issuer.subject_claim.describe(),
        ));
    }
    out
}

fn paragraph(config: &Config, loaded: &policy::Loaded) -> String {
    let s = loaded.set.stats();
    format!(
        "ok: {} (listen {}, upstream {}, {} issuer(s))\n\
         policies: {} file(s) in {}: {} zambda(s), {} role(s), {} actor(s), {} zambda rule(s), {} inert rule(s) of other services",
        config.source.display(),
        config.listen.map_or_else(|| "none".to_string(), |l| l.to_string()),
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
