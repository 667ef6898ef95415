//! The policy file format, exactly as written on disk (YAML or JSON).
//!
//! These types exist only at the edge: `parse` deserializes a file into
//! them, and `compile` validates every field and compiles the result into
//! the types of `model`. Nothing here is trusted; strings that have a fixed
//! vocabulary (`type`, `triggerMethod`, `effect`) are kept as strings so
//! that every bad value in a file is reported instead of the first one.
//! Oystehr's own objects (Zambdas, roles, M2M clients, role stubs) are
//! accepted in the shapes its API returns; fields that say nothing about
//! invoking a Zambda are accepted with any value and dropped.

use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// One policy file. Every section is optional and may be `null`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct File {
    #[serde(default)]
    pub zambdas: Option<Vec<Zambda>>,
    #[serde(default)]
    pub roles: Option<Vec<Role>>,
    #[serde(default)]
    pub actors: Option<Vec<Actor>>,
    #[serde(default)]
    pub m2ms: Option<Vec<M2m>>,
    #[serde(default)]
    pub defaults: Option<Vec<Defaults>>,
}

impl File {
    /// Appends the entries of `other`, a later part of the same file.
    pub fn append(&mut self, other: File) {
        fn extend<T>(to: &mut Option<Vec<T>>, from: Option<Vec<T>>) {
            if let Some(mut from) = from {
                to.get_or_insert_with(Vec::new).append(&mut from);
            }
        }
        extend(&mut self.zambdas, other.zambdas);
        extend(&mut self.roles, other.roles);
        extend(&mut self.actors, other.actors);
        extend(&mut self.m2ms, other.m2ms);
        extend(&mut self.defaults, other.defaults);
    }
}

/// A catalog entry: zambda-guard's own shape, or a Zambda object as
/// Oystehr's API returns it (`triggerMethod`, `runtime`, `status`, …).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct Zambda {
    /// Assigned by Oystehr at deploy; definitions kept in code have none.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// `authenticated` (the default), `public`, or Oystehr's
    /// `http_auth`, `http_open`, `cron`, `subscription`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Oystehr's name for `type`, with the same values.
    #[serde(default, rename = "triggerMethod")]
    pub trigger_method: Option<String>,
    /// A named upstream (SPEC §7); absent means the default upstream.
    #[serde(default)]
    pub upstream: Option<String>,
    // Fields of Oystehr's object that say nothing about invoking it over
    // HTTP: accepted with any value so that an export loads unchanged.
    // `status` too: an inactive Zambda is still forwarded, the backend
    // decides.
    #[serde(default, rename = "runtime")]
    pub _runtime: Option<IgnoredAny>,
    #[serde(default, rename = "status")]
    pub _status: Option<IgnoredAny>,
    #[serde(default, rename = "schedule")]
    pub _schedule: Option<IgnoredAny>,
    #[serde(default, rename = "fileInfo")]
    pub _file_info: Option<IgnoredAny>,
    #[serde(default, rename = "memorySize")]
    pub _memory_size: Option<IgnoredAny>,
    #[serde(default, rename = "timeoutInSeconds")]
    pub _timeout_in_seconds: Option<IgnoredAny>,
    #[serde(default, rename = "executionRoleId")]
    pub _execution_role_id: Option<IgnoredAny>,
}

/// A role, in the shape Oystehr returns it (`accessPolicy` is an alias).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct Role {
    pub name: String,
    #[serde(alias = "accessPolicy")]
    pub access_policy: AccessPolicy,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// In the API's role list; says nothing about what the role allows.
    #[serde(default, rename = "memberCount")]
    pub _member_count: Option<IgnoredAny>,
}

/// A role named in a file: its name or id, or a role stub `{id, name}` as
/// every answer of Oystehr's API names a role.
#[derive(Debug)]
pub(in crate::policy) enum RoleRef {
    /// A role's name or id.
    Key(String),
    /// Resolved by `id`; `name`, when given, must be that role's name.
    Stub { id: String, name: Option<String> },
}

/// The map form of [`RoleRef`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stub {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

/// An actor: a token subject, optionally bound to one issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct Actor {
    pub subject: String,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<RoleRef>>,
    #[serde(default, alias = "accessPolicy")]
    pub access_policy: Option<AccessPolicy>,
    #[serde(default)]
    pub description: Option<String>,
}

/// An M2M client as Oystehr's API returns it (SDK 4.2.6's `M2m`): an actor
/// whose token subject is `<clientId>@clients`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct M2m {
    #[serde(rename = "clientId")]
    pub client_id: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Only tokens from this issuer are this client (as for an actor).
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<RoleRef>>,
    #[serde(default, alias = "accessPolicy")]
    pub access_policy: Option<AccessPolicy>,
    // The client's FHIR profile and key set say nothing about what it may
    // invoke (tokens are verified against the issuers of config.yaml).
    #[serde(default, rename = "profile")]
    pub _profile: Option<IgnoredAny>,
    #[serde(default, rename = "jwksUrl")]
    pub _jwks_url: Option<IgnoredAny>,
}

/// The roles unlisted actors of one issuer hold (Oystehr's default patient
/// role).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct Defaults {
    pub issuer: String,
    pub roles: Vec<RoleRef>,
}

/// An Oystehr access policy: `{rule: [...]}`, `{rule: {...}}`, or the
/// plain list of rules that project definition files keep.
#[derive(Debug)]
pub(in crate::policy) struct AccessPolicy {
    pub rule: Rules,
}

/// The object form of [`AccessPolicy`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyObject {
    rule: Rules,
}

/// `rule`: a list of rules or a single rule object.
#[derive(Debug)]
pub(in crate::policy) struct Rules(pub Vec<Rule>);

/// One rule of an access policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct Rule {
    pub action: Strings,
    pub resource: Strings,
    /// `Allow` or `Deny`, checked by `grammar`.
    pub effect: String,
    /// Any value; only its presence matters (`null` counts as absent).
    #[serde(default)]
    pub condition: Option<IgnoredAny>,
}

/// `action` / `resource`: one string or a list of strings.
#[derive(Debug)]
pub(in crate::policy) struct Strings(pub Vec<String>);

impl<'de> Deserialize<'de> for Rules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RulesVisitor;

        impl<'de> Visitor<'de> for RulesVisitor {
            type Value = Rules;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a rule or a list of rules")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Rules, A::Error> {
                Rule::deserialize(MapAccessDeserializer::new(map)).map(|rule| Rules(vec![rule]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rules, A::Error> {
                let mut rules = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(rule) = seq.next_element()? {
                    rules.push(rule);
                }
                // Most lists are short: a grown buffer would be mostly empty.
                rules.shrink_to_fit();
                Ok(Rules(rules))
            }
        }

        deserializer.deserialize_any(RulesVisitor)
    }
}

impl<'de> Deserialize<'de> for AccessPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PolicyVisitor;

        impl<'de> Visitor<'de> for PolicyVisitor {
            type Value = AccessPolicy;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an access policy `{rule: [...]}` or a list of rules")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AccessPolicy, A::Error> {
                let object = PolicyObject::deserialize(MapAccessDeserializer::new(map))?;
                Ok(AccessPolicy { rule: object.rule })
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<AccessPolicy, A::Error> {
                let rule = Rules::deserialize(SeqAccessDeserializer::new(seq))?;
                Ok(AccessPolicy { rule })
            }
        }

        deserializer.deserialize_any(PolicyVisitor)
    }
}

impl<'de> Deserialize<'de> for RoleRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RoleRefVisitor;

        impl<'de> Visitor<'de> for RoleRefVisitor {
            type Value = RoleRef;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a role name or id, or a role stub `{id, name}`")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<RoleRef, E> {
                Ok(RoleRef::Key(value.to_owned()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<RoleRef, E> {
                Ok(RoleRef::Key(value))
            }

            // A plain YAML scalar such as `2024` reads as a number.
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RoleRef, E> {
                Ok(RoleRef::Key(value.to_string()))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RoleRef, E> {
                Ok(RoleRef::Key(value.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RoleRef, A::Error> {
                let stub = Stub::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RoleRef::Stub {
                    id: stub.id,
                    name: stub.name,
                })
            }
        }

        deserializer.deserialize_any(RoleRefVisitor)
    }
}

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringsVisitor;

        impl<'de> Visitor<'de> for StringsVisitor {
            type Value = Strings;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Strings, E> {
                Ok(Strings(vec![value.to_owned()]))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Strings, E> {
                Ok(Strings(vec![value]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(value) = seq.next_element()? {
                    values.push(value);
                }
                values.shrink_to_fit();
                Ok(Strings(values))
            }
        }

        deserializer.deserialize_any(StringsVisitor)
    }
}
