//! What `zambda-guard check` prints about a valid config and policy set:
//! the warnings that need both, and the summary: one paragraph, then per
//! issuer how its claims are read and what its unlisted actors hold.

use std::path::Path;

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
    let issuers = config.auth.issuers.len();
    if issuers > 1 {
        let unbound = loaded
            .set
            .actors()
            .filter(|a| a.issuer.is_none() && !a.is_m2m())
            .count();
        if unbound > 0 {
            warnings.push(format!(
                "{unbound} actor(s) carry no `issuer` while {issuers} issuers are configured: they match tokens from any of them"
            ));
        }
        // A client id is unique within one Auth0 tenant only: another
        // issuer can sign a token with the same `<clientId>@clients`.
        for actor in loaded
            .set
            .actors()
            .filter(|a| a.is_m2m() && a.issuer.is_none())
        {
            warnings.push(format!(
                "m2m client {:?} ({}) carries no `issuer` while {issuers} issuers are configured: a token of subject {:?} from any of them holds its access",
                actor.client.as_ref().map_or(actor.subject.as_str(), |c| c.client_id.as_str()),
                place(&actor.file, actor.line),
                actor.subject,
            ));
        }
    }
    // A roles claim may be one space-separated text (as OAuth's `scope`):
    // a name with a space in it would be read as two roles.
    if config.auth.issuers.iter().any(|i| i.roles_claim.is_some()) {
        for role in loaded.set.roles().filter(|r| r.name.contains(' ')) {
            let by = match &role.id {
                Some(id) => format!("only by its id {id:?}"),
                None => "only by its id, and it has none".to_string(),
            };
            warnings.push(format!(
                "role {:?} ({}): its name contains a space: a roles claim given as one space-separated text can carry it {by}",
                role.name,
                place(&role.file, role.line),
            ));
        }
    }
    warnings.extend(crate::tls::warnings(config));
    warnings.extend(config.warnings());
    warnings
}

/// `file:line`, or the file alone when the line is unknown.
fn place(file: &Path, line: Option<usize>) -> String {
    let file = super::tidy(file);
    match line {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    }
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
        out.push_str(&format!(
            "\nunlisted actors of {} {}",
            issuer.issuer,
            unlisted(&loaded.set, &issuer.issuer)
        ));
    }
    out
}

/// What actors of `issuer` that no entry lists hold: `hold: A, B
/// (defaults, FILE:LINE)`, or `hold no roles`.
fn unlisted(set: &policy::Set, issuer: &str) -> String {
    let Some(defaults) = set.defaults_of(issuer) else {
        return "hold no roles".to_string();
    };
    let roles: Vec<&str> = set
        .default_roles(defaults)
        .map(|role| role.name.as_str())
        .collect();
    let place = place(&defaults.file, defaults.line);
    if roles.is_empty() {
        format!("hold no roles (defaults, {place})")
    } else {
        format!("hold: {} (defaults, {place})", roles.join(", "))
    }
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
