//! What each compiled policy decides, Zambda by Zambda, in a form that two
//! sets can be compared by (`zambda-guard diff`).
//!
//! A decision depends only on the *set* of policies a principal holds (the
//! order picks the deciding rule, not the outcome), and a policy's outcome
//! on a Zambda is read from the same compiled slots [`Set::decide`] reads.
//! So a tool can compare what two sets decide by comparing the coverage of
//! their policies, without deciding every (principal, Zambda) pair.

use super::model::{Effect, Principal, Set, Slots};

/// A compiled access policy of a [`Set`]: a role's, or an actor entry's
/// inline one. Only meaningful for the set it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(u32);

impl PolicyId {
    /// Position among the set's policies (`0..Set::policy_count()`).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What one policy decides on every Zambda of its set's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// The effect on every Zambda not listed in `some`; `None` when no rule
    /// of the policy covers every Zambda.
    pub all: Option<Effect>,
    /// (catalog index, effect), ascending by index, for the Zambdas on
    /// which the policy decides otherwise than `all`.
    pub some: Vec<(u32, Effect)>,
}

/// The effect a pair of slots has on its own: a Deny beats an Allow.
fn effect(slots: Slots) -> Option<Effect> {
    if slots.deny != super::model::NO_RULE {
        Some(Effect::Deny)
    } else if slots.allow != super::model::NO_RULE {
        Some(Effect::Allow)
    } else {
        None
    }
}

impl Set {
    /// How many compiled policies the set holds.
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// Every compiled policy (roles' first, then actors' inline ones).
    pub fn policy_ids(&self) -> impl Iterator<Item = PolicyId> {
        (0..self.policies.len() as u32).map(PolicyId)
    }

    /// The policy of a defined role.
    pub fn role_policy(&self, role: &str) -> Option<PolicyId> {
        // A role's index is its policy's (see `Set`).
        self.role_keys.get(role).map(|&index| PolicyId(index))
    }

    /// The policies `principal` holds, in evaluation order, as
    /// [`Set::decide`] visits them (a role may come up more than once).
    pub fn held_policies<'s, 'a>(
        &'s self,
        principal: &Principal<'a>,
    ) -> impl Iterator<Item = PolicyId> + use<'s, 'a> {
        self.held(principal).map(|held| PolicyId(held.policy))
    }

    /// The policies any unlisted actor of `issuer` holds before its token's
    /// roles: its issuer's default roles, in order (none for an issuer
    /// without `defaults`). This is the principal "any unlisted actor of
    /// ISSUER" when comparing sets.
    pub fn unlisted_policies(&self, issuer: &str) -> impl Iterator<Item = PolicyId> + '_ {
        self.defaults_of(issuer)
            .into_iter()
            .flat_map(|defaults| defaults.roles.iter().map(|&role| PolicyId(role)))
    }

    /// What `policy` decides on each Zambda, read from the slots `decide`
    /// reads; a policy of another set reads as covering nothing.
    pub fn coverage(&self, policy: PolicyId) -> Coverage {
        let Some(compiled) = self.policies.get(policy.index()) else {
            return Coverage {
                all: None,
                some: Vec::new(),
            };
        };
        let all = effect(compiled.all);
        let (start, end) = compiled.more;
        let more = self
            .targets
            .get(start as usize..end as usize)
            .unwrap_or_default();
        let some = std::iter::once(&compiled.first)
            .filter(|target| target.zambda != super::model::NO_ZAMBDA)
            .chain(more)
            .filter_map(|target| {
                let effect = effect(compiled.all.first_of(target.slots))?;
                (Some(effect) != all).then_some((target.zambda, effect))
            })
            .collect();
        Coverage { all, some }
    }
}
