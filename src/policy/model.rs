//! The compiled, validated policy set and the types it hands out.
//!
//! Everything here was checked by `compile`: a `Set` holds no "maybe invalid"
//! field. Rules that could decide an invocation are compiled per policy
//! into two "every Zambda" slots plus a short list sorted by Zambda (see
//! `Policy`), so that `decide` never scans rules. Inert rules (FHIR, Z3,
//! …) are only counted. Default deny is structural: an empty slot is no
//! rule, and no rule is a deny.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::Arc;

/// Marks an empty slot in [`Slots`] (a rule index that cannot exist).
pub(super) const NO_RULE: u32 = u32::MAX;

/// A lookup table keyed by names from the policy files.
pub(super) type Table<V> = HashMap<Box<str>, V, BuildHasherDefault<FxHasher>>;

/// The compiled, immutable policy set.
///
/// Layout: `policies[i]` is the policy of `roles[i]` (roles are compiled
/// first, one policy each); actors' inline policies follow.
#[derive(Debug, Default)]
pub struct Set {
    pub(super) zambdas: Vec<Zambda>,
    /// Zambda ids and names (no name equals another Zambda's id).
    pub(super) zambda_keys: Table<u32>,
    pub(super) roles: Vec<Role>,
    /// Role names and ids (no id equals another role's name).
    pub(super) role_keys: Table<u32>,
    pub(super) actors: Vec<Actor>,
    pub(super) subjects: Table<Subject>,
    /// `defaults` entries, in file order, and their index by issuer.
    pub(super) defaults: Vec<Defaults>,
    pub(super) default_issuers: Table<u32>,
    pub(super) policies: Vec<Policy>,
    /// `rules[policy_rules[i].0..policy_rules[i].1]`: the invoking rules of
    /// `policies[i]` (kept apart: `decide` never reads them).
    pub(super) policy_rules: Vec<(u32, u32)>,
    /// Single-Zambda targets of every policy beyond its inline first one, a
    /// slice per policy (`Policy::more`), sorted by Zambda.
    pub(super) targets: Vec<Target>,
    /// Every rule that can decide an invocation, grouped per policy in rule
    /// order, so a smaller index is an earlier rule within a policy.
    pub(super) rules: Vec<Rule>,
    pub(super) stats: Stats,
}

impl Set {
    /// The empty set: no Zambdas, and every decision is a deny.
    pub fn empty() -> Set {
        Set::default()
    }

    /// Whether some Zambda of the catalog was defined without an id: a
    /// path template naming `{id}` cannot be rendered for it.
    pub fn any_zambda_without_id(&self) -> bool {
        self.zambdas.iter().any(|zambda| !zambda.has_id)
    }

    /// A Zambda by id, else by name.
    pub fn zambda(&self, id_or_name: &str) -> Option<&Zambda> {
        let index = *self.zambda_keys.get(id_or_name)?;
        self.zambdas.get(index as usize)
    }

    /// The catalog, in file order.
    pub fn zambdas(&self) -> impl Iterator<Item = &Zambda> {
        self.zambdas.iter()
    }

    /// A role by name or id.
    pub fn role(&self, name_or_id: &str) -> Option<&Role> {
        let index = *self.role_keys.get(name_or_id)?;
        self.roles.get(index as usize)
    }

    /// Every role, in file order.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.iter()
    }

    /// Role names, in file order.
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.roles.iter().map(|role| role.name.as_str())
    }

    /// Every actor entry, in file order.
    pub fn actors(&self) -> impl Iterator<Item = &Actor> {
        self.actors.iter()
    }

    /// The roles an actor entry names, in the order listed.
    pub fn actor_roles<'s>(&'s self, actor: &'s Actor) -> impl Iterator<Item = &'s Role> + 's {
        actor
            .roles
            .iter()
            .filter_map(|&role| self.roles.get(role as usize))
    }

    /// Every `defaults` entry, in file order (one per issuer).
    pub fn defaults(&self) -> impl Iterator<Item = &Defaults> {
        self.defaults.iter()
    }

    /// The issuers `defaults` names: each must be a configured issuer,
    /// which only the configuration can tell.
    pub fn default_issuers(&self) -> impl Iterator<Item = &str> {
        self.defaults
            .iter()
            .map(|defaults| defaults.issuer.as_str())
    }

    /// The `defaults` entry of `issuer`, if any.
    pub fn defaults_of(&self, issuer: &str) -> Option<&Defaults> {
        let index = *self.default_issuers.get(issuer)?;
        self.defaults.get(index as usize)
    }

    /// The roles a `defaults` entry names, in the order listed.
    pub fn default_roles<'s>(
        &'s self,
        defaults: &'s Defaults,
    ) -> impl Iterator<Item = &'s Role> + 's {
        defaults
            .roles
            .iter()
            .filter_map(|&role| self.roles.get(role as usize))
    }

    /// Counts for `check` and the `policy_rules` gauge.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The rule behind a slot, if the slot is filled.
    pub(super) fn rule(&self, slot: u32) -> Option<&Rule> {
        self.rules.get(slot as usize)
    }

    /// This set's copy of `zambda`: the same object when it came from this
    /// set, else the entry with the same id (a `Zambda` kept across a reload
    /// is decided by the current catalog).
    pub(super) fn own<'s>(&'s self, zambda: &Zambda) -> Option<&'s Zambda> {
        match self.zambdas.get(zambda.index as usize) {
            Some(own) if std::ptr::eq(own, zambda) => Some(own),
            _ => self
                .zambdas
                .get(*self.zambda_keys.get(zambda.id.as_str())? as usize)
                .filter(|own| own.id == zambda.id),
        }
    }
}

/// Counts of what a set holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub files: usize,
    pub zambdas: usize,
    pub roles: usize,
    /// Actor entries, M2M clients included (an issuer-bound and an "any"
    /// entry count twice).
    pub actors: usize,
    /// Of `actors`, the entries of the `m2ms` section.
    pub m2ms: usize,
    /// Rules that are Zambda-facing (validated, may govern invocation).
    pub zambda_rules: usize,
    /// Rules kept inert (FHIR, Z3, Messaging, …): counted, never evaluated.
    pub inert_rules: usize,
}

impl Stats {
    /// Every rule in the set.
    pub fn rules(&self) -> usize {
        self.zambda_rules + self.inert_rules
    }
}

/// A catalog entry.
#[derive(Debug)]
pub struct Zambda {
    /// Oystehr's id; for a definition without one (ids are assigned at
    /// deploy), the name, so that `id` always identifies the Zambda within
    /// its set. [`Zambda::has_id`] tells the two apart.
    pub id: String,
    pub name: String,
    pub kind: ZambdaKind,
    /// The named upstream it is served by; `None` = the default upstream.
    pub upstream: Option<String>,
    pub file: Arc<Path>,
    pub line: Option<usize>,
    pub(super) index: u32,
    /// Whether the definition carried an id (else `id` is the name).
    pub(super) has_id: bool,
}

impl Zambda {
    /// Position in the catalog of the set it came from.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Whether the definition carried an id; a Zambda without one is
    /// matched by name only, and a path template cannot name its id.
    pub fn has_id(&self) -> bool {
        self.has_id
    }
}

/// How a Zambda is invoked: Oystehr's trigger method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZambdaKind {
    /// `execute`, with a token and permission (Oystehr's `http_auth`).
    Authenticated,
    /// `execute-public`, by anyone (Oystehr's `http_open`).
    Public,
    /// Run on a schedule, never over HTTP: both routes answer 404.
    Cron,
    /// Run on a FHIR subscription, never over HTTP: both routes answer 404.
    Subscription,
}

impl ZambdaKind {
    /// Whether either route may invoke it. A `cron` or `subscription`
    /// Zambda is in the catalog (so metrics can name it) but is answered
    /// like an unknown Zambda, as Oystehr does.
    pub fn invocable_over_http(self) -> bool {
        matches!(self, ZambdaKind::Authenticated | ZambdaKind::Public)
    }
}

impl fmt::Display for ZambdaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ZambdaKind::Authenticated => "authenticated",
            ZambdaKind::Public => "public",
            ZambdaKind::Cron => "cron",
            ZambdaKind::Subscription => "subscription",
        })
    }
}

/// A role defined in the policy files.
#[derive(Debug)]
pub struct Role {
    pub name: String,
    /// Oystehr's role id, kept for display.
    pub id: Option<String>,
    pub description: Option<String>,
    pub file: Arc<Path>,
    pub line: Option<usize>,
}

/// An actor entry: a subject, for tokens of one issuer or of any.
#[derive(Debug)]
pub struct Actor {
    pub subject: String,
    /// `None`: the entry applies to tokens of any issuer.
    pub issuer: Option<String>,
    pub description: Option<String>,
    /// Set when the entry is an M2M client of the `m2ms` section.
    pub client: Option<Client>,
    pub file: Arc<Path>,
    pub line: Option<usize>,
    /// Defined roles, in the order listed, without repeats.
    pub(super) roles: Box<[u32]>,
    pub(super) policy: Option<u32>,
}

/// What an M2M client entry says beside its actor fields, kept for
/// display. Its actor's subject is `<client_id>@clients`.
#[derive(Debug)]
pub struct Client {
    pub client_id: String,
    /// Oystehr's id of the client (not its `clientId`).
    pub id: Option<String>,
    pub name: Option<String>,
}

/// The default roles of one issuer: what every authenticated actor of that
/// issuer holds when no `actors` or `m2ms` entry lists it (Oystehr's
/// default patient role).
#[derive(Debug)]
pub struct Defaults {
    pub issuer: String,
    pub file: Arc<Path>,
    pub line: Option<usize>,
    /// Defined roles, in the order listed, without repeats.
    pub(super) roles: Box<[u32]>,
}

impl Actor {
    /// The principal this entry describes, holding no token roles: a token
    /// from the entry's issuer (or from no configured issuer, for an "any"
    /// entry) with this subject.
    pub fn principal(&self) -> Principal<'_> {
        Principal {
            subject: &self.subject,
            issuer: self.issuer.as_deref(),
            token_roles: &[],
        }
    }

    /// Whether the entry is an M2M client of the `m2ms` section.
    pub fn is_m2m(&self) -> bool {
        self.client.is_some()
    }

    /// Whether the entry carries an inline access policy.
    pub fn has_access_policy(&self) -> bool {
        self.policy.is_some()
    }
}

/// Who is asking: a verified token's subject, issuer and roles claim.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    pub subject: &'a str,
    pub issuer: Option<&'a str>,
    /// Role names or ids from the token; those naming no defined role are
    /// ignored.
    pub token_roles: &'a [String],
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        })
    }
}

/// The policy a rule belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An actor's inline policy.
    Actor {
        subject: Arc<str>,
        issuer: Option<Arc<str>>,
    },
    /// A role's policy.
    Role { name: Arc<str> },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Actor {
                subject,
                issuer: None,
            } => write!(f, "actor {subject:?}"),
            Origin::Actor {
                subject,
                issuer: Some(issuer),
            } => write!(f, "actor {subject:?} of issuer {issuer:?}"),
            Origin::Role { name } => write!(f, "role {name:?}"),
        }
    }
}

/// A compiled rule that can decide an invocation: its effect, where it
/// comes from, and which Zambdas it covers.
#[derive(Debug)]
pub struct Rule {
    pub effect: Effect,
    pub origin: Origin,
    /// Index of the rule within its policy (`rule[index]`).
    pub index: usize,
    pub file: Arc<Path>,
    pub line: Option<usize>,
    pub(super) targets: Targets,
}

impl Rule {
    /// Whether the rule covers `zambda` (by catalog index).
    pub(super) fn covers(&self, zambda: u32) -> bool {
        match &self.targets {
            Targets::All => true,
            Targets::Some(zambdas) => zambdas.contains(&zambda),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rule[{}] of {} ({}",
            self.effect,
            self.index,
            self.origin,
            self.file.display()
        )?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(")")
    }
}

/// The Zambdas an invoking rule covers.
#[derive(Debug)]
pub(super) enum Targets {
    All,
    /// Catalog indexes, ascending, without repeats (may be empty when every
    /// Zambda it names is missing from the catalog).
    Some(Box<[u32]>),
}

/// The first matching Deny and first matching Allow of one policy for some
/// Zambdas, as indexes into `Set::rules` (`NO_RULE` when none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slots {
    pub deny: u32,
    pub allow: u32,
}

impl Slots {
    pub(super) const EMPTY: Slots = Slots {
        deny: NO_RULE,
        allow: NO_RULE,
    };

    /// Fills the slot of `effect` with `rule` unless an earlier rule has it.
    pub(super) fn offer(&mut self, effect: Effect, rule: u32) {
        let slot = match effect {
            Effect::Deny => &mut self.deny,
            Effect::Allow => &mut self.allow,
        };
        *slot = (*slot).min(rule);
    }

    /// The earlier rule per effect of two slot pairs of the same policy.
    pub(super) fn first_of(self, other: Slots) -> Slots {
        Slots {
            deny: self.deny.min(other.deny),
            allow: self.allow.min(other.allow),
        }
    }
}

/// One compiled access policy (an actor's inline policy or a role's).
///
/// Rules naming single Zambdas are kept per Zambda, and only where they
/// decide differently from `all`, sorted by Zambda: the first inline (most
/// policies name one Zambda, and this saves a memory access per policy on
/// the request path), the rest in `Set::targets[more.0..more.1]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// Rules covering every Zambda.
    pub all: Slots,
    /// `zambda` is `NO_ZAMBDA` when the policy names no single Zambda.
    pub first: Target,
    pub more: (u32, u32),
}

/// Marks an empty inline target (a catalog index that cannot exist).
pub(super) const NO_ZAMBDA: u32 = u32::MAX;

/// A policy's first Deny / Allow for one Zambda (beside its `all` slots).
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    pub zambda: u32,
    pub slots: Slots,
}

impl Target {
    pub(super) const NONE: Target = Target {
        zambda: NO_ZAMBDA,
        slots: Slots::EMPTY,
    };
}

/// The actor entries for one subject.
#[derive(Debug, Default)]
pub(super) struct Subject {
    /// The entry without `issuer`.
    pub any: Option<Holdings>,
    /// Issuer-bound entries.
    pub bound: Box<[(Box<str>, Holdings)]>,
}

/// What an actor entry holds, copied from its [`Actor`] into the subject
/// table so that deciding never reads the (large, cold) actor itself.
#[derive(Debug, Clone)]
pub(super) struct Holdings {
    pub actor: u32,
    pub policy: Option<u32>,
    pub roles: Box<[u32]>,
}

/// FxHash (the fast non-cryptographic hash of rustc) with a final mix, so
/// that the low bits the table indexes by depend on every input byte. The
/// tables' keys come from the policy files; requests only look keys up, so
/// colliding keys cannot be flooded in.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            for (to, from) in word.iter_mut().zip(chunk) {
                *to = *from;
            }
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's 64-bit finalizer.
        let mut hash = self.0;
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^ (hash >> 33)
    }
}
