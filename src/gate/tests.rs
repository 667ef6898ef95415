//! The gate without any server: facts in, outcome out, through one
//! `check(facts, expected)` helper. SPEC §1's order is tested by requests
//! that fail several checks at once: the earliest check must answer.

use std::path::Path;

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::authn::Authenticator;
use crate::config::Config;
use crate::policy;

const SECRET_ENV: &str = "ZG_GATE_TEST_SECRET";
const SECRET: &str = "gate-tests-hmac-secret-0123456789abcdef";
const ISSUER: &str = "https://gate.test/";
const PROJECT: &str = "11111111-2222-3333-4444-555555555555";

const POLICIES: &str = "\
zambdas:
  - {id: 0a1b2c3d-0000-4000-8000-00000000000a, name: alpha}
  - {id: 0a1b2c3d-0000-4000-8000-00000000000b, name: beta}
  - {id: 0a1b2c3d-0000-4000-8000-00000000000c, name: open, type: public}
  - {name: nightly, triggerMethod: cron, runtime: nodejs20.x, status: Active, schedule: {expression: 'cron(0 2 * * ? *)'}}
  - {name: on-patient, triggerMethod: subscription}
roles:
  - name: alpha-callers
    access_policy:
      rule: [{action: Zambda:InvokeFunction, resource: Zambda:Function:alpha, effect: Allow}]
  - name: everything
    access_policy:
      rule: [{action: Zambda:InvokeFunction, resource: 'Zambda:Function:*', effect: Allow}]
  - name: no-beta
    access_policy:
      rule: [{action: Zambda:InvokeFunction, resource: Zambda:Function:beta, effect: Deny}]
actors:
  - {subject: alice, roles: [alpha-callers]}
  - {subject: bob, roles: [everything, no-beta]}
";

fn config(extra: &str) -> Config {
    // The variable is this module's own; every test sets the same value.
    std::env::set_var(SECRET_ENV, SECRET);
    let text = format!(
        "project_id: {PROJECT}\n\
         auth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [https://api.test]\n      \
         algorithms: [HS256]\n      hmac_secret_env: {SECRET_ENV}\n      roles_claim: roles\n{extra}"
    );
    Config::from_yaml(&text, "gate-test.yaml", Path::new("/tmp")).unwrap()
}

fn gate_with(extra: &str, loaded: bool) -> Gate {
    let config = config(extra);
    let auth = Authenticator::new(&config.auth).unwrap();
    let state = Arc::new(State::new(config, auth));
    if loaded {
        let set = policy::load_texts(&[(Path::new("p.yaml"), POLICIES)]).unwrap();
        state.policies.install(set.set, &state.metrics);
    }
    Gate::new(state)
}

fn token(claims: Value) -> String {
    let mut all = json!({
        "iss": ISSUER,
        "aud": "https://api.test",
        "exp": crate::clock::unix_now() + 600,
    });
    if let (Some(all), Some(more)) = (all.as_object_mut(), claims.as_object()) {
        all.extend(more.clone());
    }
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&Header::default(), &all, &key).unwrap()
}

fn bearer(subject: &str) -> String {
    format!("Bearer {}", token(json!({"sub": subject})))
}

/// A request description; `post(target)` with tweaks.
#[derive(Clone, Default)]
struct Req {
    method: Option<http::Method>,
    target: String,
    authorization: Vec<String>,
    project_ids: Vec<String>,
    origin: Option<String>,
    preflight: bool,
    length: Option<u64>,
    transfer_encoding: Vec<String>,
}

fn post(target: &str) -> Req {
    Req {
        target: target.to_string(),
        ..Req::default()
    }
}

impl Req {
    fn auth(mut self, value: impl Into<String>) -> Self {
        self.authorization.push(value.into());
        self
    }
    fn as_(self, subject: &str) -> Self {
        self.auth(bearer(subject))
    }
    fn method(mut self, m: http::Method) -> Self {
        self.method = Some(m);
        self
    }
    fn project(mut self, id: &str) -> Self {
        self.project_ids.push(id.to_string());
        self
    }
    fn length(mut self, n: u64) -> Self {
        self.length = Some(n);
        self
    }
    fn coding(mut self, te: &str) -> Self {
        self.transfer_encoding.push(te.to_string());
        self
    }
}

/// What the test expects: the status (with the forward's path for 2xx).
#[derive(Debug, PartialEq)]
enum Want {
    Forward { path: &'static str, label: Label },
    Refuse(u16, Label),
    Preflight,
}

async fn decide(gate: &Gate, r: &Req) -> Decided {
    let method = r.method.clone().unwrap_or(http::Method::POST);
    fn bytes(v: &[String]) -> Values<'_> {
        Values::gather(v.iter().map(|s| s.as_bytes()))
    }
    let facts = Facts {
        method: &method,
        target: r.target.as_bytes(),
        client: Some("127.0.0.1".parse().unwrap()),
        authorization: bytes(&r.authorization),
        project_ids: bytes(&r.project_ids),
        origin: r.origin.as_deref(),
        preflight_method: r.preflight,
        content_length: r.length,
        has_content_length: r.length.is_some(),
        transfer_encoding: bytes(&r.transfer_encoding),
        traced: false,
    };
    gate.decide(&facts).await
}

async fn check(gate: &Gate, cases: &[(&str, Req, Want)]) {
    let mut failed = Vec::new();
    for (name, req, want) in cases {
        let decided = decide(gate, req).await;
        let got = match &decided.outcome {
            Outcome::Forward(f) => Want::Forward {
                path: Box::leak(f.path.clone().into_boxed_str()),
                label: decided.record.label,
            },
            Outcome::Refuse(r) => Want::Refuse(r.status(), decided.record.label),
            Outcome::Preflight => Want::Preflight,
        };
        if &got != want {
            failed.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[tokio::test]
async fn each_check_answers_in_the_order_of_spec_section_1() {
    let gate = gate_with("", true);
    use Label::*;
    check(
        &gate,
        &[
            // allowed and public
            (
                "alice may call alpha",
                post("/v1/zambda/alpha/execute").as_("alice"),
                Want::Forward {
                    path: "/v1/zambda/alpha/execute",
                    label: Allow,
                },
            ),
            (
                "by id, with a query",
                post("/v1/zambda/0a1b2c3d-0000-4000-8000-00000000000a/execute?x=1").as_("alice"),
                Want::Forward {
                    path: "/v1/zambda/0a1b2c3d-0000-4000-8000-00000000000a/execute?x=1",
                    label: Allow,
                },
            ),
            (
                "the id segment is decoded once",
                post("/v1/zambda/al%70ha/execute").as_("alice"),
                Want::Forward {
                    path: "/v1/zambda/alpha/execute",
                    label: Allow,
                },
            ),
            (
                "public without a token",
                post("/v1/zambda/open/execute-public"),
                Want::Forward {
                    path: "/v1/zambda/open/execute-public",
                    label: Public,
                },
            ),
            (
                "public ignores a bad token",
                post("/v1/zambda/open/execute-public").auth("Bearer x.y.z"),
                Want::Forward {
                    path: "/v1/zambda/open/execute-public",
                    label: Public,
                },
            ),
            // 0. framing, before everything else
            (
                "chunked twice, on a bad path, without a token",
                post("/v1/zambda/../alpha/execute").coding("chunked, chunked"),
                Want::Refuse(501, BadRequest),
            ),
            (
                "identity then chunked",
                post("/v1/zambda/alpha/execute")
                    .as_("alice")
                    .coding("identity, chunked"),
                Want::Refuse(501, BadRequest),
            ),
            (
                "chunked in two headers",
                post("/v1/zambda/alpha/execute")
                    .as_("alice")
                    .coding("chunked")
                    .coding("chunked"),
                Want::Refuse(501, BadRequest),
            ),
            (
                "chunked with a content-length, on a bad path",
                post("/v1/zambda/../alpha/execute")
                    .as_("alice")
                    .coding("chunked")
                    .length(2),
                Want::Refuse(400, BadRequest),
            ),
            (
                "one chunked, any case",
                post("/v1/zambda/alpha/execute")
                    .as_("alice")
                    .coding("Chunked"),
                Want::Forward {
                    path: "/v1/zambda/alpha/execute",
                    label: Allow,
                },
            ),
            // 1. target
            (
                "dot segment",
                post("/v1/zambda/../alpha/execute").as_("alice"),
                Want::Refuse(400, BadRequest),
            ),
            (
                "no route",
                post("/v1/zambda/alpha/execute/").as_("alice"),
                Want::Refuse(404, NotFound),
            ),
            (
                "too long",
                post(&format!("/v1/zambda/{}/execute", "a".repeat(9000))),
                Want::Refuse(414, BadRequest),
            ),
            (
                "bad path beats bad method",
                post("/v1//zambda/alpha/execute").method(http::Method::GET),
                Want::Refuse(400, BadRequest),
            ),
            // 2. method
            (
                "GET",
                post("/v1/zambda/alpha/execute")
                    .method(http::Method::GET)
                    .as_("alice"),
                Want::Refuse(405, MethodNotAllowed),
            ),
            (
                "OPTIONS without cors",
                post("/v1/zambda/alpha/execute").method(http::Method::OPTIONS),
                Want::Refuse(405, MethodNotAllowed),
            ),
            (
                "method beats project id",
                post("/v1/zambda/alpha/execute")
                    .method(http::Method::PUT)
                    .project("other"),
                Want::Refuse(405, MethodNotAllowed),
            ),
            // 3. project id
            (
                "matching project id, any case",
                post("/v1/zambda/alpha/execute")
                    .as_("alice")
                    .project(&PROJECT.to_uppercase()),
                Want::Forward {
                    path: "/v1/zambda/alpha/execute",
                    label: Allow,
                },
            ),
            (
                "other project id",
                post("/v1/zambda/alpha/execute")
                    .as_("alice")
                    .project("22222222-2222-3333-4444-555555555555"),
                Want::Refuse(401, Unauthenticated),
            ),
            (
                "other project id, public",
                post("/v1/zambda/open/execute-public").project("x"),
                Want::Refuse(401, Unauthenticated),
            ),
            (
                "two that disagree",
                post("/v1/zambda/alpha/execute")
                    .as_("alice")
                    .project(PROJECT)
                    .project("x"),
                Want::Refuse(401, Unauthenticated),
            ),
            // 5. token
            (
                "no token",
                post("/v1/zambda/alpha/execute"),
                Want::Refuse(401, Unauthenticated),
            ),
            (
                "another scheme",
                post("/v1/zambda/alpha/execute").auth("Basic YTpi"),
                Want::Refuse(401, Unauthenticated),
            ),
            (
                "two authorization headers",
                post("/v1/zambda/alpha/execute").as_("alice").as_("alice"),
                Want::Refuse(401, Unauthenticated),
            ),
            (
                "forged token",
                post("/v1/zambda/alpha/execute").auth(format!("{}x", bearer("alice"))),
                Want::Refuse(401, Unauthenticated),
            ),
            (
                "token beats catalog",
                post("/v1/zambda/nope/execute"),
                Want::Refuse(401, Unauthenticated),
            ),
            // 6. catalog
            (
                "unknown zambda",
                post("/v1/zambda/nope/execute").as_("bob"),
                Want::Refuse(404, NotFound),
            ),
            (
                "authenticated zambda on the public route",
                post("/v1/zambda/alpha/execute-public"),
                Want::Refuse(404, NotFound),
            ),
            (
                "unknown beats policy",
                post("/v1/zambda/nope/execute").as_("alice"),
                Want::Refuse(404, NotFound),
            ),
            // 7. policy
            (
                "no rule allows",
                post("/v1/zambda/beta/execute").as_("alice"),
                Want::Refuse(403, Deny),
            ),
            (
                "a deny beats an allow",
                post("/v1/zambda/beta/execute").as_("bob"),
                Want::Refuse(403, Deny),
            ),
            (
                "public zambda on execute needs permission",
                post("/v1/zambda/open/execute").as_("alice"),
                Want::Refuse(403, Deny),
            ),
            (
                "unknown actor",
                post("/v1/zambda/alpha/execute").as_("mallory"),
                Want::Refuse(403, Deny),
            ),
            // 8. body
            (
                "announced body too large",
                post("/v1/zambda/alpha/execute")
                    .as_("alice")
                    .length(6 * 1024 * 1024 + 1),
                Want::Refuse(413, BadRequest),
            ),
            (
                "body at the limit",
                post("/v1/zambda/alpha/execute")
                    .as_("alice")
                    .length(6 * 1024 * 1024),
                Want::Forward {
                    path: "/v1/zambda/alpha/execute",
                    label: Allow,
                },
            ),
            (
                "policy beats body size",
                post("/v1/zambda/beta/execute")
                    .as_("alice")
                    .length(u64::MAX),
                Want::Refuse(403, Deny),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn without_a_policy_set_everything_past_the_project_id_is_unavailable() {
    let gate = gate_with("", false);
    use Label::*;
    check(
        &gate,
        &[
            (
                "execute",
                post("/v1/zambda/alpha/execute").as_("alice"),
                Want::Refuse(503, Unavailable),
            ),
            (
                "public",
                post("/v1/zambda/open/execute-public"),
                Want::Refuse(503, Unavailable),
            ),
            (
                "no token still 503 first",
                post("/v1/zambda/alpha/execute"),
                Want::Refuse(503, Unavailable),
            ),
            (
                "bad path still 400",
                post("/v1/zambda/%2e/execute"),
                Want::Refuse(400, BadRequest),
            ),
            (
                "project id still 401",
                post("/v1/zambda/open/execute-public").project("x"),
                Want::Refuse(401, Unauthenticated),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn dry_run_forwards_what_policy_denies_and_nothing_else() {
    let gate = gate_with("enforcement: dry_run\n", true);
    use Label::*;
    check(
        &gate,
        &[
            (
                "would deny",
                post("/v1/zambda/beta/execute").as_("alice"),
                Want::Forward {
                    path: "/v1/zambda/beta/execute",
                    label: WouldDeny,
                },
            ),
            (
                "allowed stays allowed",
                post("/v1/zambda/alpha/execute").as_("alice"),
                Want::Forward {
                    path: "/v1/zambda/alpha/execute",
                    label: Allow,
                },
            ),
            (
                "no token still 401",
                post("/v1/zambda/beta/execute"),
                Want::Refuse(401, Unauthenticated),
            ),
            (
                "unknown zambda still 404",
                post("/v1/zambda/nope/execute").as_("alice"),
                Want::Refuse(404, NotFound),
            ),
            (
                "body still 413",
                post("/v1/zambda/beta/execute")
                    .as_("alice")
                    .length(u64::MAX),
                Want::Refuse(413, BadRequest),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_forward_carries_the_identity_and_the_rewritten_path() {
    let gate = gate_with(
        "upstream:\n  path_template: /fn/{name}/{id}/{route}\n",
        true,
    );
    let req = post("/v1/zambda/alpha/execute?a=b").auth(format!(
        "Bearer {}",
        token(json!({"sub": "alice", "roles": ["no-beta", "undefined-role", "everything"]}))
    ));
    let decided = decide(&gate, &req).await;
    let Outcome::Forward(forward) = decided.outcome else {
        panic!("not forwarded: {:?}", decided.outcome);
    };
    assert_eq!(
        forward,
        Forward {
            path: "/fn/alpha/0a1b2c3d-0000-4000-8000-00000000000a/execute?a=b".into(),
            zambda_id: "0a1b2c3d-0000-4000-8000-00000000000a".into(),
            zambda_name: "alpha".into(),
            actor: Some("alice".into()),
            roles: Some("alpha-callers,everything,no-beta".into()),
            keep_authorization: true,
            upstream: None,
            pass: Pass::Allowed,
        }
    );
    assert_eq!(decided.record.zambda.as_deref(), Some("alpha"));
    assert_eq!(decided.record.actor.as_deref(), Some("alice"));
    assert!(decided.record.decision_time.is_some());

    let public = decide(&gate, &post("/v1/zambda/open/execute-public").as_("alice")).await;
    let Outcome::Forward(forward) = public.outcome else {
        panic!("not forwarded");
    };
    assert_eq!(forward.actor, None);
    assert_eq!(forward.roles, None);
    assert!(
        !forward.keep_authorization,
        "public never forwards Authorization"
    );
}

#[tokio::test]
async fn zambdas_not_invoked_over_http_are_labelled_by_name_but_unknown_ones_are_not() {
    let gate = gate_with("", true);
    let cron = decide(&gate, &post("/v1/zambda/nightly/execute").as_("bob")).await;
    assert_eq!(cron.record.zambda.as_deref(), Some("nightly"));
    let hidden = decide(&gate, &post("/v1/zambda/alpha/execute-public")).await;
    assert_eq!(
        hidden.record.zambda, None,
        "the public route must not disclose the catalog"
    );
}

#[tokio::test]
async fn a_denial_records_its_deciding_rule_for_the_log() {
    let gate = gate_with("", true);
    let decided = decide(&gate, &post("/v1/zambda/beta/execute").as_("bob")).await;
    assert!(matches!(
        decided.outcome,
        Outcome::Refuse(Refusal::Denied { ref zambda }) if zambda == "beta"
    ));
    assert!(
        decided.record.reason.contains("no-beta"),
        "{}",
        decided.record.reason
    );
    let decided = decide(&gate, &post("/v1/zambda/beta/execute").as_("alice")).await;
    assert_eq!(decided.record.reason, "no rule allows");
}

#[tokio::test]
async fn cors_preflights_are_answered_only_when_configured() {
    let gate = gate_with("cors: {allowed_origins: [https://app.test]}\n", true);
    let mut pre = post("/v1/zambda/alpha/execute").method(http::Method::OPTIONS);
    pre.origin = Some("https://evil.test".into());
    pre.preflight = true;
    let mut no_acrm = pre.clone();
    no_acrm.preflight = false;
    check(
        &gate,
        &[
            ("preflight from any origin", pre, Want::Preflight),
            (
                "OPTIONS without Access-Control-Request-Method",
                no_acrm,
                Want::Refuse(405, Label::MethodNotAllowed),
            ),
        ],
    )
    .await;
    let allowed = gate.cors_headers("https://app.test", true);
    assert!(allowed.contains(&("access-control-allow-origin", "https://app.test".into())));
    let other = gate.cors_headers("https://evil.test", true);
    assert_eq!(other, vec![("vary", "Origin".to_string())]);
}

#[test]
fn the_refusal_table() {
    use route::Reject;
    let cases: Vec<(Refusal, u16, Label, &str)> = vec![
        (
            Refusal::TransferCoding,
            501,
            Label::BadRequest,
            "transfer-encoding other than chunked is not supported",
        ),
        (
            Refusal::LengthAndCoding,
            400,
            Label::BadRequest,
            "content-length and transfer-encoding together",
        ),
        (
            Refusal::Target(Reject::Malformed("dot segment")),
            400,
            Label::BadRequest,
            "dot segment",
        ),
        (
            Refusal::Target(Reject::TooLong),
            414,
            Label::BadRequest,
            "request target too long",
        ),
        (
            Refusal::Target(Reject::NoRoute),
            404,
            Label::NotFound,
            "not found",
        ),
        (
            Refusal::Method,
            405,
            Label::MethodNotAllowed,
            "method not allowed",
        ),
        (
            Refusal::ProjectId {
                route: Route::Execute,
                why: "project id does not match",
            },
            401,
            Label::Unauthenticated,
            "project id does not match",
        ),
        (
            Refusal::RateLimited { retry_after: 3 },
            429,
            Label::RateLimited,
            "rate limit exceeded",
        ),
        (
            Refusal::NoPolicies,
            503,
            Label::Unavailable,
            "policies not loaded yet",
        ),
        (
            Refusal::Unauthenticated {
                why: "token expired",
                token_given: true,
            },
            401,
            Label::Unauthenticated,
            "token expired",
        ),
        (
            Refusal::KeysUnavailable,
            503,
            Label::Unavailable,
            "signing keys not available yet",
        ),
        (
            Refusal::UnknownZambda,
            404,
            Label::NotFound,
            "zambda not found",
        ),
        (
            Refusal::Denied {
                zambda: "beta".into(),
            },
            403,
            Label::Deny,
            "actor is not allowed Zambda:InvokeFunction on Zambda:Function:beta",
        ),
        (
            Refusal::BodyTooLarge,
            413,
            Label::BadRequest,
            "request body too large",
        ),
        (
            Refusal::NoHealthyUpstream,
            503,
            Label::Unavailable,
            "no healthy upstream",
        ),
        (
            Refusal::UpstreamUnavailable,
            502,
            Label::Unavailable,
            "upstream unavailable",
        ),
        (
            Refusal::UpstreamTimeout,
            504,
            Label::Unavailable,
            "upstream timed out",
        ),
        (Refusal::BadRequest, 400, Label::BadRequest, "bad request"),
        (
            Refusal::Internal("x"),
            500,
            Label::Unavailable,
            "internal error",
        ),
    ];
    for (refusal, status, label, message) in cases {
        assert_eq!(refusal.status(), status, "{refusal:?}");
        assert_eq!(refusal.label(), label, "{refusal:?}");
        assert!(
            refusal.message().contains(message),
            "{refusal:?}: {}",
            refusal.message()
        );
        let body: Value = serde_json::from_slice(&refusal.body("r-1")).unwrap();
        assert_eq!(body["code"], json!(status), "{refusal:?}");
        assert_eq!(body["request_id"], json!("r-1"));
        assert_eq!(body["message"], json!(refusal.message()));
    }
}

#[test]
fn refusal_headers() {
    let headers = |r: Refusal, cors: bool| {
        r.headers(cors)
            .map(|(n, v)| format!("{n}: {v}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        headers(
            Refusal::Unauthenticated {
                why: "bearer token required",
                token_given: false
            },
            false
        ),
        ["www-authenticate: Bearer realm=\"zambda-guard\""]
    );
    assert_eq!(
        headers(Refusal::Unauthenticated { why: "token expired", token_given: true }, false),
        ["www-authenticate: Bearer realm=\"zambda-guard\", error=\"invalid_token\", error_description=\"token expired\""]
    );
    assert_eq!(
        headers(
            Refusal::ProjectId {
                route: Route::Execute,
                why: "x"
            },
            false
        ),
        ["www-authenticate: Bearer realm=\"zambda-guard\""]
    );
    assert!(headers(
        Refusal::ProjectId {
            route: Route::ExecutePublic,
            why: "x"
        },
        false
    )
    .is_empty());
    assert_eq!(headers(Refusal::Method, false), ["allow: POST"]);
    assert_eq!(headers(Refusal::Method, true), ["allow: POST, OPTIONS"]);
    assert_eq!(
        headers(Refusal::RateLimited { retry_after: 7 }, false),
        ["retry-after: 7"]
    );
    assert!(headers(Refusal::Denied { zambda: "x".into() }, false).is_empty());
}

#[test]
fn reserved_headers_in_every_spelling() {
    for name in [
        "x-zambda-id",
        "x_zambda_id",
        "x.zambda.actor",
        "x-zambda_roles",
        "x-zambda-anything",
        "x_oystehr_request_id",
        "x-oystehr-request-id",
        "x_oystehr_project_id",
        "x.zapehr.project.id",
        "X-Zambda-Id",
        "x-zambda-",
    ] {
        assert!(is_reserved(name), "{name}");
    }
    for name in [
        "x-zambdaid",
        "authorization",
        "x-request-id",
        "zambda-id",
        "x-oystehr-project-id",
        "x-zapehr-project-id",
        "x",
        "x-",
        "x-zambda",
        "x-oystehr-request-idx",
        "x-oystehr-project",
        "y-zambda-id",
    ] {
        assert!(!is_reserved(name), "{name}");
    }
}

#[test]
fn request_ids_are_kept_only_when_reasonable() {
    let bytes = |values: &'static [&'static str]| values.iter().map(|v| v.as_bytes());
    let id = |values: &'static [&'static str]| request_id(bytes(values), std::iter::empty());
    assert_eq!(id(&["abc-1.2:3_x"]), "abc-1.2:3_x");
    let long: &'static str = Box::leak("x".repeat(129).into_boxed_str());
    let long: &'static [&'static str] = Box::leak(vec![long].into_boxed_slice());
    for bad in [&[""][..], &["a b"], &["a", "b"], long] {
        let got = id(bad);
        assert!(uuid::Uuid::parse_str(&got).is_ok(), "{bad:?} kept as {got}");
        // An unusable ours falls back to a usable `x-request-id`.
        assert_eq!(request_id(bytes(bad), bytes(&["ingress-7"])), "ingress-7");
    }
    // Ours wins over theirs when both are usable; theirs alone is kept.
    assert_eq!(request_id(bytes(&["ours"]), bytes(&["theirs"])), "ours");
    assert_eq!(request_id(std::iter::empty(), bytes(&["theirs"])), "theirs");
    let got = request_id(std::iter::empty(), bytes(&["a b"]));
    assert!(uuid::Uuid::parse_str(&got).is_ok(), "kept {got}");
}

#[test]
fn forwarded_for_appends_the_client() {
    let ip = "10.1.2.3".parse().ok();
    let xff = |values: &[&str]| forwarded_for(values.iter().map(|v| v.as_bytes()), ip);
    assert_eq!(xff(&[]).as_deref(), Some("10.1.2.3"));
    assert_eq!(
        xff(&["1.1.1.1", " 2.2.2.2 "]).as_deref(),
        Some("1.1.1.1, 2.2.2.2, 10.1.2.3")
    );
    assert_eq!(forwarded_for(std::iter::empty(), None), None);
}

#[test]
fn the_client_address_is_written_as_display_writes_it() {
    let addresses = [
        "0.0.0.0",
        "9.10.99.100",
        "255.254.200.199",
        "127.0.0.1",
        "1.20.3.45",
        "::1",
        "2001:db8::7",
    ];
    for text in addresses {
        let ip: std::net::IpAddr = text.parse().unwrap();
        assert_eq!(
            forwarded_for(std::iter::empty(), Some(ip)).as_deref(),
            Some(ip.to_string().as_str()),
            "{text}"
        );
    }
    // Every octet value, in every position.
    for octet in 0..=255u8 {
        let ip = std::net::IpAddr::from([octet, 255 - octet, octet / 3, 7]);
        assert_eq!(
            forwarded_for(std::iter::empty(), Some(ip)),
            Some(ip.to_string())
        );
    }
}

#[test]
fn each_label_has_its_own_duration_slot() {
    use Label::*;
    let all = [
        Allow,
        Deny,
        Unauthenticated,
        NotFound,
        BadRequest,
        MethodNotAllowed,
        Unavailable,
        Public,
        WouldDeny,
        RateLimited,
    ];
    assert_eq!(all.len(), Label::COUNT);
    let mut seen = std::collections::BTreeSet::new();
    for label in all {
        assert!((label as usize) < Label::COUNT, "{label:?}");
        assert!(seen.insert(label as usize), "{label:?} shares a slot");
    }
    // The slots resolve to the series of their own labels.
    let m = crate::metrics::Metrics::new();
    let answer = |elapsed| record::Answer {
        listener: record::Listener::Proxy,
        status: 200,
        request_id: "r",
        elapsed,
        method: "POST",
        client: None,
        upstream: None,
        bytes_in: 0,
        bytes_out: 0,
    };
    let allowed = Record {
        route: Some(Route::Execute),
        zambda: Some("alpha".into()),
        actor: None,
        label: Allow,
        reason: Cow::Borrowed(""),
        decision_time: None,
        issuer: None,
        token_check: None,
        jwks_wait: None,
        by_rule: false,
    };
    let public = Record {
        route: Some(Route::ExecutePublic),
        label: Public,
        ..allowed.clone()
    };
    for _ in 0..2 {
        record::count(&m, &allowed, &answer(std::time::Duration::from_millis(1)));
    }
    record::count(&m, &public, &answer(std::time::Duration::from_millis(1)));
    let count = |route: &str, decision: &str| {
        m.request_duration
            .with_label_values(&[route, decision])
            .get_sample_count()
    };
    assert_eq!(count("execute", "allow"), 2);
    assert_eq!(count("execute-public", "public"), 1);
    assert_eq!(count("execute", "public"), 0);
}
