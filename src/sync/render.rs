//! The synced policy file: a [`Snapshot`] written as §3's Oystehr objects,
//! with only the fields zambda-guard reads, in a fixed order, so an
//! unchanged project always gives the same bytes.
//!
//! Access policies are written as the API gave them (object keys sorted),
//! not picked apart: the loader judges every rule, and a rule it does not
//! know refuses the whole file instead of being dropped here.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::api::{Snapshot, Stub};
use crate::config::Oystehr;

#[derive(Serialize)]
struct File<'a> {
    zambdas: Vec<Zambda<'a>>,
    roles: Vec<Role<'a>>,
    m2ms: Vec<M2m<'a>>,
    defaults: Vec<Defaults<'a>>,
}

#[derive(Serialize)]
struct Zambda<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(rename = "triggerMethod")]
    trigger_method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
}

#[derive(Serialize)]
struct Role<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(rename = "accessPolicy", skip_serializing_if = "Option::is_none")]
    access_policy: Option<Value>,
}

#[derive(Serialize)]
struct M2m<'a> {
    id: &'a str,
    #[serde(rename = "clientId")]
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    issuer: &'a str,
    #[serde(rename = "accessPolicy", skip_serializing_if = "Option::is_none")]
    access_policy: Option<Value>,
    roles: Vec<StubOut<'a>>,
}

#[derive(Serialize)]
struct Defaults<'a> {
    issuer: &'a str,
    roles: Vec<StubOut<'a>>,
}

#[derive(Serialize)]
struct StubOut<'a> {
    id: &'a str,
    name: &'a str,
}

impl<'a> From<&'a Stub> for StubOut<'a> {
    fn from(s: &'a Stub) -> Self {
        StubOut {
            id: &s.id,
            name: &s.name,
        }
    }
}

/// Counts of what a file holds, by kind, for the metrics and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub roles: usize,
    pub zambdas: usize,
    pub m2ms: usize,
    pub defaults: usize,
}

/// The file's bytes: pretty JSON, entries sorted (Zambdas and roles by
/// name then id, M2M clients by client id, role stubs by name then id),
/// rules in the API's order, a final newline.
pub fn render(snapshot: &Snapshot, settings: &Oystehr) -> Result<(String, Counts), String> {
    let zambdas = sorted(
        &snapshot.zambdas,
        |z| Zambda {
            id: &z.id,
            name: &z.name,
            trigger_method: &z.trigger_method,
            upstream: settings.upstreams.get(&z.name).map(String::as_str),
        },
        |z| (z.name, z.id),
    );
    let roles = sorted(
        &snapshot.roles,
        |r| Role {
            id: &r.id,
            name: &r.name,
            description: r.description.as_deref().filter(|d| !d.is_empty()),
            access_policy: r.access_policy.as_ref().map(canonical),
        },
        |r| (r.name, r.id),
    );
    let m2ms = sorted(
        &snapshot.m2ms,
        |m| M2m {
            id: &m.id,
            client_id: &m.client_id,
            name: m.name.as_deref(),
            description: m.description.as_deref().filter(|d| !d.is_empty()),
            issuer: &settings.issuer,
            access_policy: m.access_policy.as_ref().map(canonical),
            roles: sorted(&m.roles, StubOut::from, |s| (s.name, s.id)),
        },
        |m| (m.client_id, m.id),
    );
    let defaults: Vec<Defaults<'_>> = snapshot
        .default_patient_role
        .iter()
        .map(|stub| Defaults {
            issuer: &settings.issuer,
            roles: vec![stub.into()],
        })
        .collect();
    let counts = Counts {
        roles: roles.len(),
        zambdas: zambdas.len(),
        m2ms: m2ms.len(),
        defaults: defaults.len(),
    };
    let file = File {
        zambdas,
        roles,
        m2ms,
        defaults,
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok((text, counts))
}

/// `items` written as `write` makes them, sorted by `key`.
fn sorted<'a, T, U, K: Ord>(
    items: &'a [T],
    write: impl Fn(&'a T) -> U,
    key: impl Fn(&U) -> K,
) -> Vec<U> {
    let mut out: Vec<U> = items.iter().map(write).collect();
    out.sort_by_key(|u| key(u));
    out
}

/// `value` with every object's keys in sorted order, whatever order the
/// API sent them in; lists keep their order.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}
