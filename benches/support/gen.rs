//! A generator of large, valid policy sets, for the benchmarks and for
//! anyone who needs a big `policies/` directory (`examples/gen_policies.rs`
//! writes one to disk).
//!
//! The set is deterministic for a given [`Spec`] (a fixed-seed PRNG, no
//! dependency) and shaped like a real deployment grown large:
//!
//! - `zambdas` catalog entries with UUID-shaped ids and `fn-N` names, one in
//!   twenty `public`;
//! - `roles` roles sharing `role_rules` rules between them: mostly Allows of
//!   `Zambda:InvokeFunction` on one to three named Zambdas, one role in ten
//!   with a Deny, one in fifty allowing every Zambda, and inert FHIR rules
//!   mixed in the way real Oystehr roles mix services;
//! - `actors` M2M-client subjects (`<hex>@clients`), each holding
//!   `roles_per_actor` roles, the rest of the rules spread over their inline
//!   policies (an Allow or, one in ten, a Deny of one Zambda); one in
//!   `m2m_every` is written as an Oystehr M2M client object under `m2ms`
//!   (`clientId` the hex, roles as `{id, name}` stubs), which is the same
//!   subject, so which actor decides what does not depend on it;
//! - every role carries a UUID-shaped id (as Oystehr's do);
//! - with `defaults_issuer`, a `defaults` entry giving unlisted actors of
//!   that issuer the first `roles_per_actor` roles (Oystehr's default
//!   patient role; the `…@clients` actors never hold it).
//!
//! `rules` counts every rule, Zambda-facing and inert. Entries are split
//! over several files per section (the loader parses files in parallel).

#![allow(dead_code)]

use std::fmt::Write as _;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub actors: usize,
    pub roles: usize,
    pub zambdas: usize,
    /// Every rule in the set, roles' and actors' together.
    pub rules: usize,
    pub roles_per_actor: usize,
    /// Entries per file (each section is split into files of this many).
    pub per_file: usize,
    pub format: Format,
    pub seed: u64,
    /// One actor in this many is an M2M client object (0: none).
    pub m2m_every: usize,
    /// The issuer of the `defaults` entry (`None`: no defaults).
    pub defaults_issuer: Option<&'static str>,
}

/// The issuer the scale set's `defaults` name (the benchmarks' issuer).
pub const ISSUER: &str = "https://issuer.test/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }
}

impl Spec {
    /// The scale of issue 5's goals: 100k actors, 10k roles, 10k Zambdas,
    /// 200k rules.
    pub const AT_SCALE: Spec = Spec {
        actors: 100_000,
        roles: 10_000,
        zambdas: 10_000,
        rules: 200_000,
        roles_per_actor: 2,
        per_file: 10_000,
        format: Format::Yaml,
        seed: 5,
        m2m_every: 10,
        defaults_issuer: Some(ISSUER),
    };

    /// Rules per role: half of all rules (at least one each) go to roles,
    /// the rest to actors' inline policies.
    fn role_rules(&self) -> usize {
        if self.roles == 0 {
            return 0;
        }
        let share = if self.actors == 0 {
            self.rules
        } else {
            self.rules / 2
        };
        (share / self.roles).max(1)
    }

    /// How many rules actor `i`'s inline policy gets.
    fn actor_rules(&self, i: usize) -> usize {
        if self.actors == 0 {
            return 0;
        }
        let left = self.rules.saturating_sub(self.role_rules() * self.roles);
        let (base, extra) = (left / self.actors, left % self.actors);
        base + usize::from(i < extra)
    }
}

/// The id of Zambda `i` (UUID-shaped, deterministic).
pub fn zambda_id(i: usize) -> String {
    let h = mix(i as u64 ^ 0x5a4d_4241);
    let g = mix(h);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        (h & 0xfff) as u16,
        (g >> 52) as u16 & 0xfff,
        g & 0xffff_ffff_ffff
    )
}

/// The name of Zambda `i`.
pub fn zambda_name(i: usize) -> String {
    format!("fn-{i}")
}

/// Whether Zambda `i` is public.
pub fn zambda_public(i: usize) -> bool {
    i % 20 == 19
}

/// The subject of actor `i`.
pub fn subject(i: usize) -> String {
    format!("{:016x}@clients", mix(i as u64 ^ 0xac70))
}

/// The name of role `i`.
pub fn role_name(i: usize) -> String {
    format!("role-{i}")
}

/// The id of role `i` (UUID-shaped, deterministic, never a role name).
pub fn role_id(i: usize) -> String {
    let h = mix(i as u64 ^ 0x726f_6c65);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        (h & 0xfff) as u16,
        (h >> 4) as u16 & 0xfff,
        mix(h) & 0xffff_ffff_ffff
    )
}

/// Whether actor `i` is written as an M2M client.
pub fn is_m2m(spec: &Spec, i: usize) -> bool {
    spec.m2m_every > 0 && i % spec.m2m_every == spec.m2m_every - 1
}

/// The roles unlisted actors of `spec.defaults_issuer` hold, in order.
pub fn default_roles(spec: &Spec) -> Vec<usize> {
    (0..spec.roles_per_actor.min(spec.roles)).collect()
}

/// The roles actor `i` holds, in order.
pub fn actor_roles(spec: &Spec, i: usize) -> Vec<usize> {
    if spec.roles == 0 {
        return Vec::new();
    }
    let mut rng = Rng::new(spec.seed ^ 0x1000_0000 ^ i as u64);
    let mut held = Vec::with_capacity(spec.roles_per_actor);
    while held.len() < spec.roles_per_actor.min(spec.roles) {
        let r = rng.below(spec.roles);
        if !held.contains(&r) {
            held.push(r);
        }
    }
    held
}

/// `(relative file name, text)` of every file of the set.
pub fn generate(spec: &Spec) -> Vec<(String, String)> {
    let ext = spec.format.extension();
    let per_file = spec.per_file.max(1);
    let mut files = Vec::new();
    for (n, start) in (0..spec.zambdas).step_by(per_file).enumerate() {
        let end = (start + per_file).min(spec.zambdas);
        files.push((
            format!("zambdas-{n:03}.{ext}"),
            zambdas_file(spec, start..end),
        ));
    }
    for (n, start) in (0..spec.roles).step_by(per_file).enumerate() {
        let end = (start + per_file).min(spec.roles);
        files.push((format!("roles-{n:03}.{ext}"), roles_file(spec, start..end)));
    }
    for (n, start) in (0..spec.actors).step_by(per_file).enumerate() {
        let end = (start + per_file).min(spec.actors);
        files.push((
            format!("actors-{n:03}.{ext}"),
            actors_file(spec, start..end),
        ));
    }
    if let Some(issuer) = spec.defaults_issuer {
        files.push((format!("defaults.{ext}"), defaults_file(spec, issuer)));
    }
    files
}

fn defaults_file(spec: &Spec, issuer: &str) -> String {
    let roles: Vec<String> = default_roles(spec)
        .into_iter()
        .map(|r| format!("\"{}\"", role_id(r)))
        .collect();
    match spec.format {
        Format::Yaml => format!(
            "defaults:\n  - issuer: \"{issuer}\"\n    roles: [{}]\n",
            roles.join(", ")
        ),
        Format::Json => format!(
            "{{\"defaults\": [{{\"issuer\": \"{issuer}\", \"roles\": [{}]}}]}}\n",
            roles.join(", ")
        ),
    }
}

/// One rule, written in the file's format.
struct RuleText<'a> {
    actions: &'a [&'a str],
    resources: Vec<String>,
    deny: bool,
}

fn zambda_resource(spec: &Spec, rng: &mut Rng) -> String {
    let z = rng.below(spec.zambdas.max(1));
    // Half the rules name the Zambda by name, half by id.
    if rng.below(2) == 0 {
        format!("Zambda:Function:{}", zambda_name(z))
    } else {
        format!("Zambda:Function:{}", zambda_id(z))
    }
}

fn role_rule(spec: &Spec, role: usize, k: usize, rng: &mut Rng) -> RuleText<'static> {
    const INVOKE: &[&str] = &["Zambda:InvokeFunction"];
    // Real roles mix services: one rule in five is an inert FHIR rule.
    if k % 5 == 4 {
        return RuleText {
            actions: &["FHIR:Search", "FHIR:Read"],
            resources: vec!["FHIR:Patient".into(), "FHIR:Encounter".into()],
            deny: false,
        };
    }
    if k == 0 && role.is_multiple_of(50) {
        return RuleText {
            actions: INVOKE,
            resources: vec!["Zambda:Function:*".into()],
            deny: false,
        };
    }
    if k == 1 && role.is_multiple_of(10) {
        return RuleText {
            actions: INVOKE,
            resources: vec![zambda_resource(spec, rng)],
            deny: true,
        };
    }
    let count = 1 + rng.below(3);
    RuleText {
        actions: INVOKE,
        resources: (0..count).map(|_| zambda_resource(spec, rng)).collect(),
        deny: false,
    }
}

fn actor_rule(spec: &Spec, rng: &mut Rng) -> RuleText<'static> {
    RuleText {
        actions: &["Zambda:InvokeFunction"],
        resources: vec![zambda_resource(spec, rng)],
        deny: rng.below(10) == 0,
    }
}

fn zambdas_file(spec: &Spec, range: std::ops::Range<usize>) -> String {
    let mut out = String::with_capacity(range.len() * 96);
    match spec.format {
        Format::Yaml => {
            out.push_str("zambdas:\n");
            for i in range {
                let _ = writeln!(
                    out,
                    "  - id: {}\n    name: {}\n    type: {}",
                    zambda_id(i),
                    zambda_name(i),
                    kind(i)
                );
            }
        }
        Format::Json => {
            out.push_str("{\"zambdas\": [\n");
            let entries: Vec<String> = range
                .map(|i| {
                    format!(
                        "  {{\"id\": \"{}\", \"name\": \"{}\", \"type\": \"{}\"}}",
                        zambda_id(i),
                        zambda_name(i),
                        kind(i)
                    )
                })
                .collect();
            out.push_str(&entries.join(",\n"));
            out.push_str("\n]}\n");
        }
    }
    out
}

fn kind(i: usize) -> &'static str {
    if zambda_public(i) {
        "public"
    } else {
        "authenticated"
    }
}

fn roles_file(spec: &Spec, range: std::ops::Range<usize>) -> String {
    let mut out = String::with_capacity(range.len() * spec.role_rules() * 120);
    let mut entries = Vec::new();
    for i in range {
        let mut rng = Rng::new(spec.seed ^ 0x2000_0000 ^ i as u64);
        let rules: Vec<RuleText> = (0..spec.role_rules())
            .map(|k| role_rule(spec, i, k, &mut rng))
            .collect();
        match spec.format {
            Format::Yaml => {
                let _ = writeln!(
                    out,
                    "  - name: {}\n    id: {}\n    access_policy:\n      rule:",
                    role_name(i),
                    role_id(i)
                );
                yaml_rules(&mut out, &rules, "        ");
            }
            Format::Json => entries.push(format!(
                "  {{\"name\": \"{}\", \"id\": \"{}\", \"access_policy\": {{\"rule\": [{}]}}}}",
                role_name(i),
                role_id(i),
                json_rules(&rules)
            )),
        }
    }
    match spec.format {
        Format::Yaml => format!("roles:\n{out}"),
        Format::Json => format!("{{\"roles\": [\n{}\n]}}\n", entries.join(",\n")),
    }
}

fn actors_file(spec: &Spec, range: std::ops::Range<usize>) -> String {
    // (actors, m2ms): YAML text, or JSON entries.
    let (mut yaml, mut m2m_yaml) = (String::new(), String::new());
    let (mut entries, mut m2m_entries) = (Vec::new(), Vec::new());
    for i in range {
        let mut rng = Rng::new(spec.seed ^ 0x3000_0000 ^ i as u64);
        let m2m = is_m2m(spec, i);
        let held = actor_roles(spec, i);
        let rules: Vec<RuleText> = (0..spec.actor_rules(i))
            .map(|_| actor_rule(spec, &mut rng))
            .collect();
        let subject = subject(i);
        // An M2M client's subject is `<clientId>@clients`.
        let client_id = subject.trim_end_matches("@clients");
        match spec.format {
            Format::Yaml => {
                let out = if m2m { &mut m2m_yaml } else { &mut yaml };
                if m2m {
                    let stubs: Vec<String> = held
                        .iter()
                        .map(|&r| format!("{{id: {}, name: {}}}", role_id(r), role_name(r)))
                        .collect();
                    let _ = writeln!(
                        out,
                        "  - clientId: \"{client_id}\"\n    roles: [{}]",
                        stubs.join(", ")
                    );
                } else {
                    let names: Vec<String> = held.iter().map(|&r| role_name(r)).collect();
                    let _ = writeln!(
                        out,
                        "  - subject: \"{subject}\"\n    roles: [{}]",
                        names.join(", ")
                    );
                }
                if !rules.is_empty() {
                    out.push_str("    access_policy:\n      rule:\n");
                    yaml_rules(out, &rules, "        ");
                }
            }
            Format::Json => {
                let policy = if rules.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", \"access_policy\": {{\"rule\": [{}]}}",
                        json_rules(&rules)
                    )
                };
                if m2m {
                    let stubs: Vec<String> = held
                        .iter()
                        .map(|&r| {
                            format!(
                                "{{\"id\": \"{}\", \"name\": \"{}\"}}",
                                role_id(r),
                                role_name(r)
                            )
                        })
                        .collect();
                    m2m_entries.push(format!(
                        "  {{\"clientId\": \"{client_id}\", \"roles\": [{}]{policy}}}",
                        stubs.join(", ")
                    ));
                } else {
                    let names: Vec<String> = held
                        .iter()
                        .map(|&r| format!("\"{}\"", role_name(r)))
                        .collect();
                    entries.push(format!(
                        "  {{\"subject\": \"{subject}\", \"roles\": [{}]{policy}}}",
                        names.join(", ")
                    ));
                }
            }
        }
    }
    match spec.format {
        Format::Yaml => {
            let section = |name: &str, text: String| {
                if text.is_empty() {
                    format!("{name}: []\n")
                } else {
                    format!("{name}:\n{text}")
                }
            };
            section("actors", yaml) + &section("m2ms", m2m_yaml)
        }
        Format::Json => format!(
            "{{\"actors\": [\n{}\n], \"m2ms\": [\n{}\n]}}\n",
            entries.join(",\n"),
            m2m_entries.join(",\n")
        ),
    }
}

fn yaml_rules(out: &mut String, rules: &[RuleText], indent: &str) {
    for rule in rules {
        let _ = writeln!(
            out,
            "{indent}- action: [{}]\n{indent}  resource: [{}]\n{indent}  effect: {}",
            rule.actions.join(", "),
            rule.resources.join(", "),
            if rule.deny { "Deny" } else { "Allow" }
        );
    }
}

fn json_rules(rules: &[RuleText]) -> String {
    let quoted = |items: &[String]| {
        items
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    rules
        .iter()
        .map(|rule| {
            let actions: Vec<String> = rule.actions.iter().map(|a| (*a).to_string()).collect();
            format!(
                "{{\"action\": [{}], \"resource\": [{}], \"effect\": \"{}\"}}",
                quoted(&actions),
                quoted(&rule.resources),
                if rule.deny { "Deny" } else { "Allow" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// splitmix64's finaliser: a good 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small deterministic PRNG (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}
