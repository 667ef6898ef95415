//! `zambda-guard diff OLD_DIR NEW_DIR`: every (principal, Zambda) pair —
//! an actor, a role, or any unlisted actor of an issuer — whose decision a
//! policy change flips, and what changed in the catalog.
//!
//! # What is compared
//!
//! - Zambdas are matched by id. A Zambda missing from a catalog is denied
//!   to everyone (the proxy answers 404 and forwards nothing), so adding a
//!   Zambda someone may invoke shows as newly allowed pairs, and removing
//!   one as newly denied pairs, beside the catalog change itself.
//! - An *actor* is an actor entry's key, (issuer or "any", subject), taken
//!   from either set. Its decision is that of a token with that subject (and
//!   that issuer, for an issuer-bound entry) carrying no roles: the entry's
//!   inline policy and roles, and for an issuer-bound entry those of the
//!   "any" entry of the same subject too — exactly what [`Set::decide`]
//!   answers for [`crate::policy::Actor::principal`].
//! - A *role*'s decision is that of a principal holding that role alone
//!   ([`Set::decide_role`]); a role missing from a set allows nothing.
//! - For each issuer named in either set's `defaults`, one principal "any
//!   unlisted actor of ISSUER": a token of that issuer whose subject no
//!   entry lists, holding that issuer's default roles
//!   ([`Set::unlisted_policies`]; none where the set has no defaults for
//!   it).
//! - A subject listed in one set only is, in the other, an unlisted actor,
//!   so it is compared with the defaults there: listing a user with an
//!   `Inactive` role shows as newly denied. For an issuer-bound entry the
//!   actor principal above already decides so (`decide` gives an unlisted
//!   token its issuer's defaults). An entry without `issuer` stands for
//!   tokens of every issuer, so for each issuer with defaults the pair
//!   "actor S of issuer I" is compared too — unless a `…@clients` subject,
//!   which never holds defaults.
//!
//! # How, without deciding every pair
//!
//! The outcome of a decision depends only on the *set* of policies held,
//! and a policy's outcome on each Zambda is its [`Coverage`]: one effect
//! for every Zambda, and exceptions for single Zambdas, read from the slots
//! `decide` reads. So:
//!
//! 1. the Zambdas of both catalogs are numbered once, by id;
//! 2. every policy of both sets is reduced to its coverage in those numbers
//!    and interned: policies that decide alike share one id, whichever set
//!    they come from;
//! 3. each principal's held policies become a *signature*, the sorted ids.
//!    A principal whose old and new signatures are equal decides alike on
//!    every Zambda both catalogs hold: it is judged on the added and
//!    removed Zambdas alone (none: it is done after a few lookups);
//! 4. principals with the same (old, new) signatures flip alike, so each
//!    such pair is judged once: at the Zambdas some policy of either
//!    signature names singly, at added and removed Zambdas, and — only when
//!    the outcome on every other Zambda differs — at every Zambda;
//! 5. pairs are expanded from these groups only for output.
//!
//! The cost is one pass over the policies and principals of both sets plus
//! the work per distinct change, not principals × Zambdas.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasherDefault;

use serde_json::{json, Value};

use crate::policy::{Coverage, Effect, FxHasher, PolicyId, Principal, Set, Zambda, ZambdaKind};

/// Hash tables keyed by policy data (names, ids, shapes): the policy
/// module's fast hash, as the keys come from the policy files.
type Map<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
type KeySet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// Whose decision changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    /// A principal holding this role alone.
    Role(String),
    /// An actor entry, as a token of its subject (and issuer) with no roles.
    Actor {
        subject: String,
        issuer: Option<String>,
    },
    /// Any actor of this issuer that no entry lists, as a token with no
    /// roles: it holds the issuer's default roles.
    Unlisted { issuer: String },
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Role(name) => write!(f, "role {name:?}"),
            Who::Actor {
                subject,
                issuer: None,
            } => write!(f, "actor {subject:?}"),
            Who::Actor {
                subject,
                issuer: Some(issuer),
            } => write!(f, "actor {subject:?} of issuer {issuer:?}"),
            Who::Unlisted { issuer } => write!(f, "any unlisted actor of issuer {issuer:?}"),
        }
    }
}

impl Who {
    fn json(&self) -> Value {
        match self {
            Who::Role(name) => json!({"kind": "role", "name": name}),
            Who::Actor { subject, issuer } => {
                json!({"kind": "actor", "subject": subject, "issuer": issuer})
            }
            Who::Unlisted { issuer } => json!({"kind": "unlisted", "issuer": issuer}),
        }
    }
}

/// Which way a decision flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flip {
    /// Denied before, allowed now.
    NewlyAllowed,
    /// Allowed before, denied now.
    NewlyDenied,
}

/// A catalog entry, as listed among the catalog changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub name: String,
    pub kind: ZambdaKind,
}

/// A Zambda whose id stayed and whose name changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renamed {
    pub id: String,
    pub old_name: String,
    pub new_name: String,
}

/// A Zambda whose type changed (`authenticated` ↔ `public`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retyped {
    pub id: String,
    /// The new name.
    pub name: String,
    pub old_kind: ZambdaKind,
    pub new_kind: ZambdaKind,
}

/// What changed in the catalog, Zambdas matched by id, each list in
/// catalog order (the new catalog's, the old one's for `removed`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub added: Vec<Entry>,
    pub removed: Vec<Entry>,
    pub renamed: Vec<Renamed>,
    pub retyped: Vec<Retyped>,
}

impl Catalog {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.renamed.is_empty()
            && self.retyped.is_empty()
    }
}

/// Principals that flip alike, and where (Zambda numbers, ascending).
#[derive(Debug)]
struct Group {
    who: Vec<Who>,
    newly_allowed: Vec<u32>,
    newly_denied: Vec<u32>,
}

/// The difference between what two policy sets decide.
#[derive(Debug)]
pub struct Diff {
    pub catalog: Catalog,
    /// Every Zambda of either catalog, by number: (id, name), the name
    /// being the new catalog's when the Zambda is in it.
    zambdas: Vec<(String, String)>,
    groups: Vec<Group>,
}

impl Diff {
    /// Compares what `old` and `new` decide (see the module documentation).
    pub fn between<'s>(old: &'s Set, new: &'s Set) -> Diff {
        let (universe, catalog) = Universe::new(old, new);
        let mut policies = Policies::default();
        let old_policies = policies.intern(old, &universe.old);
        let new_policies = policies.intern(new, &universe.new);
        let policies = policies.finish();
        let mut signatures = Signatures::default();
        let judge = Judge {
            universe: &universe,
            policies: &policies,
        };

        // Principals whose decisions flip, with their (old, new)
        // signatures. One holding policies of the same shapes before and
        // after decides alike on every Zambda both catalogs hold: it is
        // judged at once on the added and removed Zambdas, and passed over
        // uninterned when nothing flips.
        let mut offered: Vec<(u32, u32, WhoRef<'s>)> = Vec::new();
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let mut offer = |who: WhoRef<'s>,
                         old_held: &mut dyn Iterator<Item = PolicyId>,
                         new_held: &mut dyn Iterator<Item = PolicyId>| {
            Signatures::shapes(&mut before, old_held, &old_policies);
            Signatures::shapes(&mut after, new_held, &new_policies);
            // The same shapes before and after: only added and removed
            // Zambdas can flip, and most principals flip on none of them.
            if before == after && judge.flips(&before, &after).is_none() {
                return;
            }
            let old_sig = signatures.intern(&before);
            let new_sig = signatures.intern(&after);
            offered.push((old_sig, new_sig, who));
        };

        let mut seen_roles: KeySet<&str> = KeySet::default();
        for name in new.role_names().chain(old.role_names()) {
            if !seen_roles.insert(name) {
                continue;
            }
            offer(
                WhoRef::Role(name),
                &mut old.role_policy(name).into_iter(),
                &mut new.role_policy(name).into_iter(),
            );
        }

        // Actor keys are unique within a set (the loader refuses
        // duplicates), so only the old set's need checking against the new.
        let new_keys: KeySet<(&str, Option<&str>)> = new
            .actors()
            .map(|actor| (actor.subject.as_str(), actor.issuer.as_deref()))
            .collect();
        let old_only = old
            .actors()
            .filter(|actor| !new_keys.contains(&(actor.subject.as_str(), actor.issuer.as_deref())));
        let old_keys: KeySet<(&str, Option<&str>)> = old
            .actors()
            .map(|actor| (actor.subject.as_str(), actor.issuer.as_deref()))
            .collect();
        let mut offer_actor = |subject: &'s str, issuer: Option<&'s str>| {
            let principal = Principal {
                subject,
                issuer,
                token_roles: &[],
            };
            offer(
                WhoRef::Actor(subject, issuer),
                &mut old.held_policies(&principal),
                &mut new.held_policies(&principal),
            );
        };
        for actor in new.actors().chain(old_only) {
            offer_actor(actor.subject.as_str(), actor.issuer.as_deref());
        }

        // Issuers with defaults in either set, each once, in file order.
        let mut default_issuers: Vec<&'s str> = Vec::new();
        for issuer in new.default_issuers().chain(old.default_issuers()) {
            if !default_issuers.contains(&issuer) {
                default_issuers.push(issuer);
            }
        }
        // An entry without `issuer` in one set only: for each issuer with
        // defaults, its tokens hold the entry's roles in that set and the
        // defaults in the other. (Listed without `issuer` in both sets, the
        // actor principal already covers every issuer: no defaults apply.)
        let any_in_one_set = new
            .actors()
            .filter(|actor| {
                actor.issuer.is_none() && !old_keys.contains(&(actor.subject.as_str(), None))
            })
            .chain(old.actors().filter(|actor| {
                actor.issuer.is_none() && !new_keys.contains(&(actor.subject.as_str(), None))
            }))
            .filter(|actor| !actor.subject.ends_with("@clients"));
        for actor in any_in_one_set {
            let subject = actor.subject.as_str();
            for &issuer in &default_issuers {
                let key = (subject, Some(issuer));
                // An entry bound to the issuer is offered above already.
                if !new_keys.contains(&key) && !old_keys.contains(&key) {
                    offer_actor(subject, Some(issuer));
                }
            }
        }

        for &issuer in &default_issuers {
            offer(
                WhoRef::Unlisted(issuer),
                &mut old.unlisted_policies(issuer),
                &mut new.unlisted_policies(issuer),
            );
        }

        // Principals with the same signatures flip alike: each run of them
        // is judged once.
        offered.sort_unstable_by_key(|&(old_sig, new_sig, _)| (old_sig, new_sig));
        let signatures = signatures.finish();
        let signature = |id: u32| signatures.get(id as usize).map_or(&[][..], |shapes| shapes);
        let mut flipped = Vec::new();
        for run in offered.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let Some(&(old_sig, new_sig, _)) = run.first() else {
                continue;
            };
            let Some((newly_allowed, newly_denied)) =
                judge.flips(signature(old_sig), signature(new_sig))
            else {
                continue;
            };
            let mut who: Vec<Who> = run.iter().map(|&(_, _, who)| who.owned()).collect();
            who.sort_unstable();
            flipped.push(Group {
                who,
                newly_allowed,
                newly_denied,
            });
        }
        flipped.sort_unstable_by(|a, b| a.who.first().cmp(&b.who.first()));
        Diff {
            catalog,
            zambdas: universe.names(),
            groups: flipped,
        }
    }

    /// How many (principal, Zambda) pairs flipped `flip`.
    pub fn count(&self, flip: Flip) -> usize {
        self.groups
            .iter()
            .map(|group| group.who.len() * Self::side(group, flip).len())
            .sum()
    }

    /// Every flipped pair: the principal, the Zambda's id, and which way.
    pub fn pairs(&self) -> impl Iterator<Item = (&Who, &str, Flip)> + '_ {
        self.groups.iter().flat_map(move |group| {
            [Flip::NewlyAllowed, Flip::NewlyDenied]
                .into_iter()
                .flat_map(move |flip| {
                    group.who.iter().flat_map(move |who| {
                        Self::side(group, flip)
                            .iter()
                            .filter_map(move |&z| Some((who, self.zambda(z)?.0, flip)))
                    })
                })
        })
    }

    /// The principals with pairs flipped `flip`, sorted (roles first), each
    /// with the names of those Zambdas in catalog order.
    pub fn by_principal(&self, flip: Flip) -> Vec<(&Who, Vec<&str>)> {
        let mut listing: Vec<(&Who, Vec<&str>)> = self
            .groups
            .iter()
            .filter(|group| !Self::side(group, flip).is_empty())
            .flat_map(|group| {
                let names: Vec<&str> = Self::side(group, flip)
                    .iter()
                    .filter_map(|&z| Some(self.zambda(z)?.1))
                    .collect();
                group.who.iter().map(move |who| (who, names.clone()))
            })
            .collect();
        listing.sort_unstable_by(|a, b| a.0.cmp(b.0));
        listing
    }

    /// The human report; the last line is `N newly allowed, N newly denied`.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let c = &self.catalog;
        if c.is_empty() {
            out.push_str("catalog: unchanged\n");
        } else {
            let _ = writeln!(
                out,
                "catalog: {} added, {} removed, {} renamed, {} type changed",
                c.added.len(),
                c.removed.len(),
                c.renamed.len(),
                c.retyped.len()
            );
            for z in &c.added {
                let _ = writeln!(out, "  added: {} (id {}, {})", z.name, z.id, z.kind);
            }
            for z in &c.removed {
                let _ = writeln!(out, "  removed: {} (id {}, {})", z.name, z.id, z.kind);
            }
            for z in &c.renamed {
                let _ = writeln!(
                    out,
                    "  renamed: {} -> {} (id {})",
                    z.old_name, z.new_name, z.id
                );
            }
            for z in &c.retyped {
                let _ = writeln!(
                    out,
                    "  type changed: {} (id {}): {} -> {}",
                    z.name, z.id, z.old_kind, z.new_kind
                );
            }
        }
        for (flip, title) in [
            (Flip::NewlyAllowed, "newly allowed"),
            (Flip::NewlyDenied, "newly denied"),
        ] {
            let listing = self.by_principal(flip);
            if listing.is_empty() {
                let _ = writeln!(out, "{title}: none");
                continue;
            }
            let (roles, actors, unlisted) = kinds(&listing);
            let _ = write!(
                out,
                "{title}: {} pair(s): {roles} role(s), {actors} actor(s)",
                self.count(flip),
            );
            // Only sets with defaults have unlisted actors to speak of.
            if unlisted > 0 {
                let _ = write!(out, ", unlisted actors of {unlisted} issuer(s)");
            }
            out.push('\n');
            for (who, names) in listing {
                let _ = writeln!(out, "  {who}: {}", names.join(", "));
            }
        }
        let _ = writeln!(
            out,
            "{} newly allowed, {} newly denied",
            self.count(Flip::NewlyAllowed),
            self.count(Flip::NewlyDenied)
        );
        out
    }

    /// The report for tools.
    pub fn json(&self) -> Value {
        let entry = |z: &Entry| json!({"id": z.id, "name": z.name, "type": z.kind.to_string()});
        let c = &self.catalog;
        let side = |flip| {
            let listing = self.by_principal(flip);
            let (roles, actors, unlisted) = kinds(&listing);
            json!({
                "pairs": self.count(flip),
                "roles": roles,
                "actors": actors,
                "unlisted": unlisted,
                "principals": listing.iter().map(|(who, names)| {
                    let mut value = who.json();
                    value["zambdas"] = json!(names);
                    value
                }).collect::<Vec<_>>(),
            })
        };
        json!({
            "catalog": {
                "added": c.added.iter().map(entry).collect::<Vec<_>>(),
                "removed": c.removed.iter().map(entry).collect::<Vec<_>>(),
                "renamed": c.renamed.iter().map(|z| json!({
                    "id": z.id, "old_name": z.old_name, "new_name": z.new_name,
                })).collect::<Vec<_>>(),
                "type_changed": c.retyped.iter().map(|z| json!({
                    "id": z.id, "name": z.name,
                    "old_type": z.old_kind.to_string(), "new_type": z.new_kind.to_string(),
                })).collect::<Vec<_>>(),
            },
            "newly_allowed": side(Flip::NewlyAllowed),
            "newly_denied": side(Flip::NewlyDenied),
        })
    }

    fn side(group: &Group, flip: Flip) -> &[u32] {
        match flip {
            Flip::NewlyAllowed => &group.newly_allowed,
            Flip::NewlyDenied => &group.newly_denied,
        }
    }

    /// (id, name) of Zambda number `z`.
    fn zambda(&self, z: u32) -> Option<(&str, &str)> {
        self.zambdas
            .get(z as usize)
            .map(|(id, name)| (id.as_str(), name.as_str()))
    }
}

/// How many principals of a listing are roles, actors and unlisted actors
/// of an issuer.
fn kinds(listing: &[(&Who, Vec<&str>)]) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for (who, _) in listing {
        match who {
            Who::Role(_) => counts.0 += 1,
            Who::Actor { .. } => counts.1 += 1,
            Who::Unlisted { .. } => counts.2 += 1,
        }
    }
    counts
}

/// A principal, borrowed from the sets while the diff is computed.
#[derive(Debug, Clone, Copy)]
enum WhoRef<'s> {
    Role(&'s str),
    Actor(&'s str, Option<&'s str>),
    Unlisted(&'s str),
}

impl WhoRef<'_> {
    fn owned(self) -> Who {
        match self {
            WhoRef::Role(name) => Who::Role(name.to_owned()),
            WhoRef::Actor(subject, issuer) => Who::Actor {
                subject: subject.to_owned(),
                issuer: issuer.map(str::to_owned),
            },
            WhoRef::Unlisted(issuer) => Who::Unlisted {
                issuer: issuer.to_owned(),
            },
        }
    }
}

/// The Zambdas of both catalogs, numbered by id: the new catalog's in its
/// order, then those only in the old one.
struct Universe<'s> {
    ids: Vec<&'s str>,
    names: Vec<&'s str>,
    in_old: Vec<bool>,
    in_new: Vec<bool>,
    /// Catalog index -> number, per set.
    old: Vec<u32>,
    new: Vec<u32>,
    /// Numbers of the Zambdas in one catalog only, ascending.
    delta: Vec<u32>,
}

impl<'s> Universe<'s> {
    fn new(old: &'s Set, new: &'s Set) -> (Universe<'s>, Catalog) {
        let new_zambdas: Vec<&Zambda> = new.zambdas().collect();
        let mut universe = Universe {
            ids: Vec::with_capacity(new_zambdas.len()),
            names: Vec::with_capacity(new_zambdas.len()),
            in_old: Vec::with_capacity(new_zambdas.len()),
            in_new: Vec::with_capacity(new_zambdas.len()),
            old: Vec::new(),
            new: Vec::with_capacity(new_zambdas.len()),
            delta: Vec::new(),
        };
        let mut numbers: Map<&str, u32> = Map::default();
        numbers.reserve(new_zambdas.len());
        for zambda in &new_zambdas {
            let number = universe.push(zambda, false, true);
            numbers.insert(&zambda.id, number);
            universe.new.push(number);
        }
        let mut catalog = Catalog::default();
        for zambda in old.zambdas() {
            let number = match numbers.get(zambda.id.as_str()) {
                Some(&number) => {
                    if let Some(flag) = universe.in_old.get_mut(number as usize) {
                        *flag = true;
                    }
                    if let Some(now) = new_zambdas.get(number as usize) {
                        if now.name != zambda.name {
                            catalog.renamed.push(Renamed {
                                id: zambda.id.clone(),
                                old_name: zambda.name.clone(),
                                new_name: now.name.clone(),
                            });
                        }
                        if now.kind != zambda.kind {
                            catalog.retyped.push(Retyped {
                                id: zambda.id.clone(),
                                name: now.name.clone(),
                                old_kind: zambda.kind,
                                new_kind: now.kind,
                            });
                        }
                    }
                    number
                }
                None => {
                    catalog.removed.push(entry(zambda));
                    universe.push(zambda, true, false)
                }
            };
            universe.old.push(number);
        }
        for (number, zambda) in new_zambdas.iter().enumerate() {
            if !universe.in_old.get(number).copied().unwrap_or(false) {
                catalog.added.push(entry(zambda));
            }
        }
        universe.delta = (0..universe.ids.len() as u32)
            .filter(|&z| universe.in_old(z) != universe.in_new(z))
            .collect();
        (universe, catalog)
    }

    fn push(&mut self, zambda: &'s Zambda, in_old: bool, in_new: bool) -> u32 {
        let number = self.ids.len() as u32;
        self.ids.push(&zambda.id);
        self.names.push(&zambda.name);
        self.in_old.push(in_old);
        self.in_new.push(in_new);
        number
    }

    fn len(&self) -> u32 {
        self.ids.len() as u32
    }

    fn in_old(&self, z: u32) -> bool {
        self.in_old.get(z as usize).copied().unwrap_or(false)
    }

    fn in_new(&self, z: u32) -> bool {
        self.in_new.get(z as usize).copied().unwrap_or(false)
    }

    fn names(&self) -> Vec<(String, String)> {
        self.ids
            .iter()
            .zip(&self.names)
            .map(|(id, name)| ((*id).to_owned(), (*name).to_owned()))
            .collect()
    }
}

fn entry(zambda: &Zambda) -> Entry {
    Entry {
        id: zambda.id.clone(),
        name: zambda.name.clone(),
        kind: zambda.kind,
    }
}

/// What a policy does on one Zambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Out {
    Nothing,
    Allow,
    Deny,
}

impl From<Option<Effect>> for Out {
    fn from(effect: Option<Effect>) -> Out {
        match effect {
            None => Out::Nothing,
            Some(Effect::Allow) => Out::Allow,
            Some(Effect::Deny) => Out::Deny,
        }
    }
}

/// A policy's coverage in Zambda numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Shape {
    all: Out,
    /// Ascending by number.
    some: Box<[(u32, Out)]>,
}

impl Shape {
    fn at(&self, z: u32) -> Out {
        match self.some.binary_search_by_key(&z, |&(number, _)| number) {
            Ok(found) => self.some.get(found).map_or(self.all, |&(_, out)| out),
            Err(_) => self.all,
        }
    }
}

/// Interns the policy shapes of both sets.
#[derive(Default)]
struct Policies {
    ids: Map<Shape, u32>,
}

impl Policies {
    /// The shape id of each policy of `set`, by policy index; `numbers`
    /// maps the set's catalog indexes to Zambda numbers.
    fn intern(&mut self, set: &Set, numbers: &[u32]) -> Vec<u32> {
        set.policy_ids()
            .map(|policy| {
                let Coverage { all, some } = set.coverage(policy);
                let mut some: Box<[(u32, Out)]> = some
                    .into_iter()
                    .filter_map(|(z, effect)| {
                        Some((*numbers.get(z as usize)?, Out::from(Some(effect))))
                    })
                    .collect();
                some.sort_unstable_by_key(|&(z, _)| z);
                let shape = Shape {
                    all: Out::from(all),
                    some,
                };
                let next = self.ids.len() as u32;
                *self.ids.entry(shape).or_insert(next)
            })
            .collect()
    }

    /// Every shape, by id.
    fn finish(self) -> Shapes {
        let mut shapes: Vec<(u32, Shape)> = self
            .ids
            .into_iter()
            .map(|(shape, id)| (id, shape))
            .collect();
        shapes.sort_unstable_by_key(|&(id, _)| id);
        Shapes(shapes.into_iter().map(|(_, shape)| shape).collect())
    }
}

/// The distinct policy shapes of both sets, by id.
struct Shapes(Vec<Shape>);

impl Shapes {
    fn get(&self, id: u32) -> Option<&Shape> {
        self.0.get(id as usize)
    }
}

/// Interns the sets of policy shapes principals hold (signatures).
#[derive(Default)]
struct Signatures {
    ids: Map<Box<[u32]>, u32>,
}

impl Signatures {
    /// Fills `into` with the signature of the policies `held`, of a set
    /// whose shape ids by policy index are `shapes`: sorted, once each.
    fn shapes(into: &mut Vec<u32>, held: &mut dyn Iterator<Item = PolicyId>, shapes: &[u32]) {
        into.clear();
        into.extend(held.filter_map(|policy| shapes.get(policy.index()).copied()));
        into.sort_unstable();
        into.dedup();
    }

    /// The id of a signature.
    fn intern(&mut self, signature: &[u32]) -> u32 {
        if let Some(&id) = self.ids.get(signature) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(signature.into(), id);
        id
    }

    /// Every signature, by id.
    fn finish(self) -> Vec<Box<[u32]>> {
        let mut list: Vec<(u32, Box<[u32]>)> = self
            .ids
            .into_iter()
            .map(|(shapes, id)| (id, shapes))
            .collect();
        list.sort_unstable_by_key(|&(id, _)| id);
        list.into_iter().map(|(_, shapes)| shapes).collect()
    }
}

/// Judges (old signature, new signature) pairs.
struct Judge<'a, 's> {
    universe: &'a Universe<'s>,
    policies: &'a Shapes,
}

impl Judge<'_, '_> {
    /// Whether holding the policies of `signature` allows Zambda `z`
    /// (ignoring whether `z` is in the catalog): any Deny denies, else any
    /// Allow allows — what `decide` computes, without the deciding rule.
    fn allows(&self, signature: &[u32], z: Option<u32>) -> bool {
        let mut allow = false;
        for &shape in signature {
            let Some(shape) = self.policies.get(shape) else {
                continue;
            };
            match z.map_or(shape.all, |z| shape.at(z)) {
                Out::Deny => return false,
                Out::Allow => allow = true,
                Out::Nothing => {}
            }
        }
        allow
    }

    /// The Zambdas newly allowed and newly denied to a principal holding
    /// the policy shapes `old` before and `new` after, ascending; `None`
    /// when nothing flips.
    fn flips(&self, old: &[u32], new: &[u32]) -> Option<(Vec<u32>, Vec<u32>)> {
        let universe = self.universe;
        // Where anything can differ: Zambdas in one catalog only, and, when
        // the holdings differ, every Zambda a policy names singly.
        let mut more = Vec::new();
        if old != new {
            more.extend_from_slice(&universe.delta);
            for &shape in old.iter().chain(new) {
                if let Some(shape) = self.policies.get(shape) {
                    more.extend(shape.some.iter().map(|&(z, _)| z));
                }
            }
            more.sort_unstable();
            more.dedup();
        }
        let candidates = if old != new { &more } else { &universe.delta };
        let (mut allowed, mut denied) = (Vec::new(), Vec::new());
        for &z in candidates {
            let before = universe.in_old(z) && self.allows(old, Some(z));
            let after = universe.in_new(z) && self.allows(new, Some(z));
            match (before, after) {
                (false, true) => allowed.push(z),
                (true, false) => denied.push(z),
                _ => {}
            }
        }
        // Everywhere else, each side decides as on "every Zambda".
        let (before, after) = (self.allows(old, None), self.allows(new, None));
        if old != new && before != after {
            let flipped = if after { &mut allowed } else { &mut denied };
            flipped.extend((0..universe.len()).filter(|&z| {
                universe.in_old(z) && universe.in_new(z) && candidates.binary_search(&z).is_err()
            }));
            flipped.sort_unstable();
        }
        if allowed.is_empty() && denied.is_empty() {
            None
        } else {
            Some((allowed, denied))
        }
    }
}
