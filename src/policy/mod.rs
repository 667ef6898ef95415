//! Policies: the Zambda catalog, roles and actors read from `policies/`,
//! compiled into an immutable [`Set`] that answers one question — may this
//! principal invoke this Zambda? — and explains its answer.
//!
//! This module is pure: it reads files when asked to load and otherwise
//! knows nothing of HTTP, tokens, configuration or reloading. The proxy
//! hands it a verified [`Principal`] and a catalog [`Zambda`]; a reload
//! builds a whole new [`Set`] with [`load_dir`] and swaps it in.
//!
//! # Files
//!
//! [`load_dir`] reads every `*.yaml`, `*.yml` and `*.json` file under the
//! directory, recursively, in name order at each level (depth first), and
//! merges them; policy tests (`*.test.yaml`, `*.test.yml`, `*.test.json`)
//! are skipped. Names starting with `.` are never read directly; symlinks
//! (to files or directories, and the directory itself) are followed, and
//! each real file and directory is read once, so a Kubernetes ConfigMap
//! volume (`x.yaml -> ..data/x.yaml`, `..data -> ..2024_…/`) yields each
//! file exactly once and symlink loops end. A file holds any of the sections
//! `zambdas`, `roles`, `actors`, `m2ms` and `defaults`; an empty file is an
//! empty set. Oystehr's objects load as its API returns them: Zambda
//! objects (`triggerMethod`, `cron` and `subscription` kinds, no id needed),
//! roles with ids and bare rule lists, M2M clients (actors whose subject is
//! `<clientId>@clients`), and roles named by name, id or stub `{id, name}`.
//!
//! Loading is all-or-nothing and reports every error it finds, each naming
//! the file, the entry (`roles[3] (lab-integrations).access_policy.rule[1]`)
//! and the line wherever it can be known.
//!
//! # Rules
//!
//! Access policies have Oystehr's shape. A rule is *Zambda-facing* when one
//! of its actions is `*` or has the service `Zambda` (any case) or `*`, and
//! one of its resources has the service `Zambda` (any case) or `*`. Such a
//! rule must be written exactly (see SPEC §3) and carry no `condition`
//! (`condition: null` counts as none); every other rule is inert:
//! shape-checked, counted, never evaluated. A Zambda-facing rule *invokes*
//! when one of its actions is `*`, `Zambda:*` or `Zambda:InvokeFunction`,
//! and covers every Zambda (`*`, `Zambda`, `Zambda:*`, `Zambda:Function:*`,
//! …) or the one whose id or name is `<x>` (`Zambda:Function:<x>`). A rule
//! naming a Zambda missing from the catalog loads with a warning and covers
//! nothing.
//!
//! # Evaluation
//!
//! An actor entry is keyed by (issuer, subject) or ("any", subject); issuers
//! and subjects are compared exactly. A token from issuer `I` with subject
//! `S` holds, in this order:
//!
//! 1. the inline policy of the entry (`I`, `S`), then that of ("any", `S`)
//!    (entries of `actors` and `m2ms` alike);
//! 2. the roles listed by (`I`, `S`), then those listed by ("any", `S`) —
//!    or, when neither entry exists (the actor is *unlisted*), the default
//!    roles of `I`, unless `S` ends in `@clients`;
//! 3. the token's roles, by name or id, that are defined (others are
//!    ignored).
//!
//! All their invoking rules are evaluated together: any matching Deny
//! denies; otherwise any matching Allow allows; otherwise nothing allows
//! and the answer is deny. The *deciding rule* is the first matching Deny,
//! else the first matching Allow, in the order above and, within a policy,
//! by rule index. A role held twice counts once, where it is first held.
//!
//! Each policy is compiled into "every Zambda" slots and a short list of
//! single-Zambda slots holding its first matching Deny and Allow, so
//! [`Set::decide`] costs a few hash lookups and one binary search per policy
//! held, without allocating. [`Set::explain`] reaches the same decision by
//! scanning rules, and lists everything that matched. [`Set::coverage`]
//! reads the same slots policy by policy, for comparing two sets.

mod compile;
mod coverage;
mod decide;
mod grammar;
mod load;
mod model;
mod text;
mod walk;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_oystehr;
#[cfg(test)]
mod tests_yaml;

pub use coverage::{Coverage, PolicyId};
pub use decide::{Decision, Explanation, HeldRole, RoleSource};
pub use load::{
    compile_sources, load_dir, load_texts, read_sources, LoadError, LoadErrors, Loaded, Sources,
    Warning,
};
/// The fast hash of the policy tables, for tools that index policy data.
pub(crate) use model::FxHasher;
pub use model::{
    Actor, Client, Defaults, Effect, Origin, Principal, Role, Rule, Set, Stats, Zambda, ZambdaKind,
};
