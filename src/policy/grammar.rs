//! The Oystehr rule grammar, where a security review starts: the shape of
//! every action and resource, which rules face Zambdas, and the exactness
//! those rules must meet so that a mistyped Deny is an error and never
//! silently covers nothing (SPEC §3).
//!
//! Every action must be `*` or `service:Action`, every resource `*` or
//! `service[:rest]`, in every rule. A rule is *Zambda-facing* when one of
//! its actions has the service `Zambda` (any case) or `*` (or is `*`), and
//! one of its resources has the service `Zambda` (any case) or `*`. Such a
//! rule must be spelled exactly (`Zambda`, `Function`, `InvokeFunction`),
//! carry no partial wildcard and no `*:Action`, name Zambdas as
//! `Zambda:Function:<id-or-name>` with no specific part after a wildcard,
//! and carry no `condition`. Every other rule is inert: shape-checked only.

use super::model::Effect;
use super::text::file;

/// `[A-Za-z0-9_-]+`: Zambda ids and names.
pub(super) fn is_id(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a rule is to zambda-guard.
pub(super) enum Kind<'r> {
    /// Not about Zambdas (FHIR, Z3, …): counted, never evaluated.
    Inert,
    /// Zambda-facing: `invokes` when an action covers `Zambda:InvokeFunction`.
    Zambda {
        invokes: bool,
        resources: Vec<Resource<'r>>,
    },
}

/// What a valid Zambda resource covers.
pub(super) enum Resource<'r> {
    All,
    /// `Zambda:Function:<id-or-name>`.
    Named(&'r str),
}

pub(super) struct Checked<'r> {
    pub effect: Option<Effect>,
    pub kind: Kind<'r>,
    pub problems: Vec<String>,
}

/// Whether a string is a wildcard or names the Zambda service (any case).
fn zambda_service(service: &str) -> bool {
    service == "*" || service.eq_ignore_ascii_case("Zambda")
}

/// The service of an action or resource: what comes before the first `:`.
fn service(value: &str) -> &str {
    value.split_once(':').map_or(value, |(service, _)| service)
}

/// A part holding a wildcard character without being the wildcard `*`.
fn partial_glob(part: &str) -> bool {
    part != "*" && part.contains(['*', '?'])
}

/// Classifies one rule: shape everywhere; exactness where it faces Zambdas.
pub(super) fn classify_rule(rule: &file::Rule) -> Checked<'_> {
    let mut problems = Vec::new();
    let effect = match rule.effect.as_str() {
        "Allow" => Some(Effect::Allow),
        "Deny" => Some(Effect::Deny),
        other => {
            problems.push(format!("effect must be `Allow` or `Deny`, not {other:?}"));
            None
        }
    };
    let actions = &rule.action.0;
    let resources = &rule.resource.0;
    if actions.is_empty() {
        problems.push("action must name at least one action".to_owned());
    }
    if resources.is_empty() {
        problems.push("resource must name at least one resource".to_owned());
    }
    for action in actions {
        let shaped = match action.split_once(':') {
            None => action == "*",
            Some((service, name)) => !service.is_empty() && !name.is_empty() && !name.contains(':'),
        };
        if !shaped || action.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(format!("action {action:?} must be `*` or `service:Action`"));
        }
    }
    for resource in resources {
        let shaped = resource.split(':').all(|part| !part.is_empty())
            && !resource.chars().any(char::is_control)
            && !service(resource).chars().any(char::is_whitespace);
        if !shaped {
            problems.push(format!(
                "resource {resource:?} must be `*` or `service[:...]`, with no empty part"
            ));
        }
    }
    let facing = actions.iter().any(|a| zambda_service(service(a)))
        && resources.iter().any(|r| zambda_service(service(r)));
    if !facing {
        return Checked {
            effect,
            kind: Kind::Inert,
            problems,
        };
    }

    let mut invokes = false;
    for action in actions {
        let Some((service, name)) = action.split_once(':') else {
            invokes |= action == "*";
            continue;
        };
        if !zambda_service(service) {
            continue;
        }
        if service == "*" {
            problems.push(format!(
                "action {action:?}: write `*` for every action of every service"
            ));
        } else if service != "Zambda" {
            problems.push(format!(
                "action {action:?}: the service is written `Zambda`"
            ));
        } else if partial_glob(name) {
            problems.push(format!(
                "action {action:?}: partial wildcards are not supported; write `Zambda:*` or the full action"
            ));
        } else if name.eq_ignore_ascii_case("InvokeFunction") && name != "InvokeFunction" {
            problems.push(format!(
                "action {action:?}: the action is written `Zambda:InvokeFunction`"
            ));
        } else {
            invokes |= name == "*" || name == "InvokeFunction";
        }
    }

    let mut covered = Vec::new();
    for resource in resources {
        if !zambda_service(service(resource)) {
            continue;
        }
        match zambda_resource(resource) {
            Ok(target) => covered.push(target),
            Err(problem) => problems.push(format!("resource {resource:?}: {problem}")),
        }
    }
    if rule.condition.is_some() {
        problems.push(
            "a condition cannot be evaluated on a rule that applies to Zambdas; \
             remove it, or keep the Zambda actions and resources in a rule of their own"
                .to_owned(),
        );
    }
    Checked {
        effect,
        kind: Kind::Zambda {
            invokes,
            resources: covered,
        },
        problems,
    }
}

/// Parses a resource whose service is `*` or Zambda (any case):
/// `service[:type[:id]]`, exactly spelled, no partial globs, and no
/// specific part after a wildcard.
fn zambda_resource(resource: &str) -> Result<Resource<'_>, String> {
    let mut parts = [""; 3];
    let mut count = 0;
    for part in resource.split(':') {
        let Some(slot) = parts.get_mut(count) else {
            return Err(
                "a Zambda resource has at most three parts, `Zambda:Function:<id-or-name>`"
                    .to_owned(),
            );
        };
        *slot = part;
        count += 1;
    }
    let parts = parts.get(..count).unwrap_or_default();
    if parts.iter().any(|part| partial_glob(part)) {
        return Err(
            "partial wildcards are not supported; write `*` or a full id or name".to_owned(),
        );
    }
    let mut wildcard = false;
    for (position, part) in parts.iter().enumerate() {
        if *part == "*" {
            wildcard = true;
            continue;
        }
        if wildcard {
            return Err("a wildcard part cannot be followed by a specific one".to_owned());
        }
        match position {
            0 if *part != "Zambda" => return Err("the service is written `Zambda`".to_owned()),
            1 if *part != "Function" => {
                return Err("the resource type is written `Function` (or `*`)".to_owned())
            }
            2 if !is_id(part) => {
                return Err(format!(
                    "{part:?} is not a Zambda id or name ([A-Za-z0-9_-]+)"
                ))
            }
            _ => {}
        }
    }
    Ok(match parts.get(2) {
        Some(&id) if id != "*" => Resource::Named(id),
        _ => Resource::All,
    })
}
