//! The decision: may this principal invoke this Zambda?
//!
//! The policies a principal holds are visited in evaluation order (see the
//! module documentation of `policy`); the first Deny found wins at once,
//! else the first Allow found allows, else nothing allows and the answer is
//! deny. `decide` reads only the compiled slots; `explain` scans the rules
//! themselves, which is what lets the tests hold one against the other.

use std::fmt;

use super::model::{Actor, Defaults, Effect, Holdings, Principal, Role, Rule, Set, Slots, Zambda};

/// The outcome of [`Set::decide`]. Two decisions are equal when they agree
/// and name the same rule (the same object, not an equal one).
#[derive(Debug, Clone, Copy)]
pub struct Decision<'s> {
    pub allowed: bool,
    /// The first matching Deny, else the first matching Allow; `None` when
    /// no rule matches (implicit deny).
    pub deciding: Option<&'s Rule>,
}

impl PartialEq for Decision<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.allowed == other.allowed
            && match (self.deciding, other.deciding) {
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for Decision<'_> {}

impl Decision<'_> {
    /// Nothing allows.
    pub const IMPLICIT_DENY: Decision<'static> = Decision {
        allowed: false,
        deciding: None,
    };
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.allowed, self.deciding) {
            (true, Some(rule)) => write!(f, "allowed by {rule}"),
            (false, Some(rule)) => write!(f, "denied by {rule}"),
            (_, None) => f.write_str("denied: no rule allows"),
        }
    }
}

/// Why: the decision, the policies it came from and every matching rule.
#[derive(Debug, Clone)]
pub struct Explanation<'s> {
    /// Equal to what [`Set::decide`] answers.
    pub decision: Decision<'s>,
    /// Actor entries that apply: the issuer-bound entry, then the "any" one.
    pub actors: Vec<&'s Actor>,
    /// The defaults the actor holds, when no entry lists it.
    pub defaults: Option<&'s Defaults>,
    /// Defined roles held, each once, in evaluation order.
    pub roles: Vec<HeldRole<'s>>,
    /// Roles named by the token that are not defined (ignored).
    pub ignored_roles: Vec<String>,
    /// Every rule that matches the invocation, in evaluation order.
    pub matching: Vec<&'s Rule>,
}

/// A role a principal holds, and what gave it.
#[derive(Debug, Clone, Copy)]
pub struct HeldRole<'s> {
    pub role: &'s Role,
    pub source: RoleSource<'s>,
}

/// Where a held role comes from.
#[derive(Debug, Clone, Copy)]
pub enum RoleSource<'s> {
    /// Listed under `roles` of this actor entry (of `actors` or `m2ms`).
    Actor(&'s Actor),
    /// The default roles of the token's issuer, held because no entry
    /// lists the actor.
    Default(&'s Defaults),
    /// Named by the token's roles claim.
    Token,
}

/// One policy a principal holds, in evaluation order.
#[derive(Clone, Copy)]
pub(super) struct Held<'s> {
    pub(super) policy: u32,
    source: Source<'s>,
}

#[derive(Clone, Copy)]
enum Source<'s> {
    Inline,
    Role(HeldRole<'s>),
}

impl Set {
    /// May `principal` invoke `zambda`? A few hash lookups and, per policy
    /// held, one binary search in a short list; no allocation.
    pub fn decide(&self, principal: &Principal<'_>, zambda: &Zambda) -> Decision<'_> {
        let Some(zambda) = self.own(zambda) else {
            return Decision::IMPLICIT_DENY;
        };
        let mut allow = None;
        // The policies of `held`, in its order, as plain loops: this runs
        // on every request, and the chained iterator `held` builds for
        // `explain` costs a third of the decision when it is not inlined.
        // The explain/decide agreement tests hold the two orders together.
        let mut judge = |policy: u32| -> Option<Decision<'_>> {
            let slots = self.slots(policy, zambda.index);
            if let Some(rule) = self.rule(slots.deny) {
                return Some(Decision {
                    allowed: false,
                    deciding: Some(rule),
                });
            }
            if allow.is_none() {
                allow = self.rule(slots.allow);
            }
            None
        };
        let (bound, any) = self.actor_entries(principal);
        let entries = [bound, any];
        for holdings in entries.iter().flatten() {
            if let Some(denied) = holdings.policy.and_then(&mut judge) {
                return denied;
            }
        }
        // A role's index is its policy's (see `Set`).
        for holdings in entries.iter().flatten() {
            for &role in holdings.roles.iter() {
                if let Some(denied) = judge(role) {
                    return denied;
                }
            }
        }
        if bound.is_none() && any.is_none() {
            if let Some(defaults) = self.defaults_for(principal) {
                for &role in defaults.roles.iter() {
                    if let Some(denied) = judge(role) {
                        return denied;
                    }
                }
            }
        }
        for key in principal.token_roles {
            if let Some(&role) = self.role_keys.get(key.as_str()) {
                if let Some(denied) = judge(role) {
                    return denied;
                }
            }
        }
        Decision {
            allowed: allow.is_some(),
            deciding: allow,
        }
    }

    /// Whether a role (by name or id) on its own allows `zambda` (for
    /// comparing sets per role); `None` when no such role is defined.
    pub fn decide_role(&self, role: &str, zambda: &Zambda) -> Option<Decision<'_>> {
        // A role's index is its policy's (see `Set`).
        let policy = *self.role_keys.get(role)?;
        let zambda = self.own(zambda)?;
        let slots = self.slots(policy, zambda.index);
        let deciding = self.rule(slots.deny).or_else(|| self.rule(slots.allow));
        Some(Decision {
            allowed: deciding.is_some_and(|rule| rule.effect == Effect::Allow),
            deciding,
        })
    }

    /// The decision with its reasons, found by scanning every rule of every
    /// policy held (slower than `decide`, and independent of its slots).
    pub fn explain(&self, principal: &Principal<'_>, zambda: &Zambda) -> Explanation<'_> {
        let mut explanation = Explanation {
            decision: Decision::IMPLICIT_DENY,
            actors: Vec::new(),
            defaults: None,
            roles: Vec::new(),
            ignored_roles: principal
                .token_roles
                .iter()
                .filter(|name| self.role(name).is_none())
                .cloned()
                .collect(),
            matching: Vec::new(),
        };
        let (bound, any) = self.actor_entries(principal);
        explanation.actors.extend(
            bound
                .into_iter()
                .chain(any)
                .filter_map(|holdings| self.actors.get(holdings.actor as usize)),
        );
        if explanation.actors.is_empty() {
            explanation.defaults = self.defaults_for(principal);
        }
        let zambda = self.own(zambda);
        let mut seen = Vec::new();
        for held in self.held(principal) {
            if let Source::Role(role) = held.source {
                // A role held twice is evaluated once, where first held.
                if seen.contains(&held.policy) {
                    continue;
                }
                seen.push(held.policy);
                explanation.roles.push(role);
            }
            let (Some(zambda), Some(&(first, end))) =
                (zambda, self.policy_rules.get(held.policy as usize))
            else {
                continue;
            };
            let rules = self
                .rules
                .get(first as usize..end as usize)
                .unwrap_or_default();
            explanation
                .matching
                .extend(rules.iter().filter(|rule| rule.covers(zambda.index)));
        }
        let first = |effect| explanation.matching.iter().find(|r| r.effect == effect);
        explanation.decision = match (first(Effect::Deny), first(Effect::Allow)) {
            (Some(&deny), _) => Decision {
                allowed: false,
                deciding: Some(deny),
            },
            (None, Some(&allow)) => Decision {
                allowed: true,
                deciding: Some(allow),
            },
            (None, None) => Decision::IMPLICIT_DENY,
        };
        explanation
    }

    /// Every defined role `principal` holds (from the files and from the
    /// token), sorted, without repeats: the `x-zambda-roles` header.
    pub fn roles_of(&self, principal: &Principal<'_>) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .held(principal)
            .filter_map(|held| match held.source {
                Source::Role(role) => Some(role.role.name.as_str()),
                Source::Inline => None,
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// What the actor entries for `principal` hold: (issuer-bound, any).
    fn actor_entries(&self, principal: &Principal<'_>) -> (Option<&Holdings>, Option<&Holdings>) {
        let Some(subject) = self.subjects.get(principal.subject) else {
            return (None, None);
        };
        let bound = principal.issuer.and_then(|issuer| {
            let (_, holdings) = subject.bound.iter().find(|(i, _)| &**i == issuer)?;
            Some(holdings)
        });
        (bound, subject.any.as_ref())
    }

    /// The default roles `principal` holds if no entry lists it: those of
    /// its token's issuer, never for a client-credentials subject (a
    /// machine, never a self-signed-up user).
    fn defaults_for(&self, principal: &Principal<'_>) -> Option<&Defaults> {
        if principal.subject.ends_with("@clients") {
            return None;
        }
        let index = *self.default_issuers.get(principal.issuer?)?;
        self.defaults.get(index as usize)
    }

    /// The policies `principal` holds, in evaluation order: inline policies
    /// (issuer-bound entry, then "any" entry), then the roles those entries
    /// list, in that order — or, when no entry lists the actor, the default
    /// roles of its issuer — then the token's defined roles. A role may
    /// come up more than once; evaluating it again never changes a
    /// decision.
    pub(super) fn held<'s, 'a>(
        &'s self,
        principal: &Principal<'a>,
    ) -> impl Iterator<Item = Held<'s>> + use<'s, 'a> {
        let (bound, any) = self.actor_entries(principal);
        // A listed actor holds only what its entries and its token give it:
        // listing a user takes the defaults away.
        let defaults = match (bound, any) {
            (None, None) => self.defaults_for(principal),
            _ => None,
        };
        let token_roles = principal.token_roles;
        let entries = bound.into_iter().chain(any);
        let inline = entries.clone().filter_map(|holdings| {
            Some(Held {
                policy: holdings.policy?,
                source: Source::Inline,
            })
        });
        // A role's index is its policy's (see `Set`), so the role itself
        // is not read here; `decide` never touches it.
        let role = move |index: u32, source| {
            Some(Held {
                policy: index,
                source: Source::Role(HeldRole {
                    role: self.roles.get(index as usize)?,
                    source,
                }),
            })
        };
        let file_roles = entries.flat_map(move |holdings| {
            let actor = self.actors.get(holdings.actor as usize);
            holdings
                .roles
                .iter()
                .filter_map(move |&index| role(index, RoleSource::Actor(actor?)))
        });
        let default_roles = defaults.into_iter().flat_map(move |defaults| {
            defaults
                .roles
                .iter()
                .filter_map(move |&index| role(index, RoleSource::Default(defaults)))
        });
        // Names and ids share one table: one lookup per token role.
        let token_roles = token_roles
            .iter()
            .filter_map(move |key| role(*self.role_keys.get(key.as_str())?, RoleSource::Token));
        inline
            .chain(file_roles)
            .chain(default_roles)
            .chain(token_roles)
    }

    /// The first Deny and first Allow of `policy` covering `zambda`.
    fn slots(&self, policy: u32, zambda: u32) -> Slots {
        let Some(policy) = self.policies.get(policy as usize) else {
            return Slots::EMPTY;
        };
        if policy.first.zambda == zambda {
            return policy.all.first_of(policy.first.slots);
        }
        let (start, end) = policy.more;
        if start == end {
            return policy.all;
        }
        let more = self
            .targets
            .get(start as usize..end as usize)
            .unwrap_or_default();
        match more.binary_search_by_key(&zambda, |target| target.zambda) {
            Ok(found) => more
                .get(found)
                .map_or(policy.all, |target| policy.all.first_of(target.slots)),
            Err(_) => policy.all,
        }
    }
}
