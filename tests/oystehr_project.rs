//! End to end: a project in Oystehr's own shapes (Zambda objects of every
//! trigger method, roles with ids and bare rule lists, an M2M client with
//! role stubs, default patient roles, staff listed by role id) in front of
//! the recording echo backend, with real tokens. What each kind of actor
//! may invoke, the roles the backend is told, and the 404 of Zambdas that
//! are never invoked over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use serde_json::json;
use zambda_guard::echo::{self, Behaviour};

/// The project: issuer-bound defaults for the test issuer.
fn project() -> String {
    format!(
        r#"zambdas:
  - id: 0b6c3a55-7e21-4f0e-9d51-1c2f8a3b4d01
    name: get-appointments
    runtime: nodejs20.x
    status: Active
    triggerMethod: http_auth
    memorySize: 1024
    timeoutInSeconds: 27
  - name: update-chart
    triggerMethod: http_auth
  - name: public-slots
    triggerMethod: http_open
  - name: nightly-report
    triggerMethod: cron
    schedule: {{expression: "cron(0 5 * * ? *)"}}
  - name: on-new-patient
    triggerMethod: subscription
roles:
  - id: 7f3e2c10-0000-4000-8000-000000000001
    name: Patient
    accessPolicy:
      - {{action: Zambda:InvokeFunction, resource: Zambda:Function:get-appointments, effect: Allow}}
  - id: 7f3e2c10-0000-4000-8000-000000000002
    name: Staff
    memberCount: 12
    accessPolicy:
      rule:
        - {{action: "Zambda:InvokeFunction", resource: "Zambda:Function:*", effect: Allow}}
  - id: 7f3e2c10-0000-4000-8000-000000000003
    name: Inactive
    accessPolicy: [{{action: "*", resource: "*", effect: Deny}}]
defaults:
  - issuer: {ISSUER}
    roles: [{{id: 7f3e2c10-0000-4000-8000-000000000001, name: Patient}}]
actors:
  - subject: dr-alice
    roles: [7f3e2c10-0000-4000-8000-000000000002]
  - subject: former-patient
    issuer: {ISSUER}
    roles: [Inactive]
m2ms:
  - id: 5d1e0c2b-aaaa-4bbb-8ccc-000000000001
    clientId: LabClient01
    name: lab results
    profile: Device/5d1e0c2b-aaaa-4bbb-8ccc-000000000001
    issuer: {ISSUER}
    roles:
      - {{id: 7f3e2c10-0000-4000-8000-000000000002, name: Staff}}
    accessPolicy:
      rule:
        - {{action: Zambda:InvokeFunction, resource: Zambda:Function:update-chart, effect: Deny}}
"#
    )
}

struct World {
    proxy: Proxy,
    backend: Recorder,
    _jwks: JwksServer,
    key: SigningKey,
}

impl World {
    async fn start() -> World {
        let (addr, backend) = echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
            .await
            .unwrap();
        let key = SigningKey::rsa1();
        let jwks = JwksServer::start(&[&key]).await;
        let mut setup = Setup::new(addr, &jwks.url());
        setup.issuers_yaml.push_str("      roles_claim: roles\n");
        setup.policies = Some(vec![("project.yaml".to_owned(), project())]);
        let proxy = Proxy::start(setup).await;
        proxy.ready().await;
        World {
            proxy,
            backend,
            _jwks: jwks,
            key,
        }
    }

    fn token(&self, subject: &str, roles: &[&str]) -> String {
        self.key
            .sign(&with(claims(subject), json!({ "roles": roles })))
    }

    /// POSTs to `execute` of `zambda` and answers the status, checking that
    /// exactly the allowed requests reached the backend.
    async fn invoke(&self, zambda: &str, token: &str) -> u16 {
        let before = self.backend.count();
        let path = format!("/v1/zambda/{zambda}/execute");
        let resp = self
            .proxy
            .post(&path, Some(token), &[("x-oystehr-project-id", PROJECT_ID)])
            .await;
        let reached = self.backend.count() - before;
        assert_eq!(
            reached,
            usize::from(resp.status == 200),
            "{zambda}: {}",
            resp.status
        );
        resp.status
    }

    /// The `x-zambda-roles` the backend got with the last request.
    fn last_roles(&self) -> Vec<String> {
        let requests = self.backend.requests();
        let last = requests.last().expect("a request reached the backend");
        last.header_values("x-zambda-roles")
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn unlisted_users_hold_the_default_roles_and_listing_takes_them_away() {
    let w = World::start().await;
    let patient = w.token("auth0|patient-1", &[]);
    assert_eq!(w.invoke("get-appointments", &patient).await, 200);
    assert_eq!(w.last_roles(), ["Patient"]);
    assert_eq!(w.invoke("update-chart", &patient).await, 403);

    // Listed with the Inactive role: no defaults, and the Deny wins over a
    // role the token names.
    let former = w.token("former-patient", &["Patient"]);
    assert_eq!(w.invoke("get-appointments", &former).await, 403);

    // A client-credentials subject is never a patient.
    let machine = w.token("SomeOtherClient@clients", &[]);
    assert_eq!(w.invoke("get-appointments", &machine).await, 403);
}

#[tokio::test]
async fn roles_by_id_from_files_and_tokens_show_as_names() {
    let w = World::start().await;
    // Listed by role id in the files.
    let doctor = w.token("dr-alice", &[]);
    assert_eq!(w.invoke("update-chart", &doctor).await, 200);
    assert_eq!(w.last_roles(), ["Staff"]);
    // A role id in the token, beside the defaults.
    let patient = w.token("auth0|patient-2", &["7f3e2c10-0000-4000-8000-000000000002"]);
    assert_eq!(w.invoke("update-chart", &patient).await, 200);
    assert_eq!(w.last_roles(), ["Patient,Staff"]);
}

#[tokio::test]
async fn an_m2m_client_is_the_subject_client_id_at_clients() {
    let w = World::start().await;
    let lab = w.token("LabClient01@clients", &[]);
    // Its role stub gives it Staff; its inline Deny comes first.
    assert_eq!(w.invoke("get-appointments", &lab).await, 200);
    assert_eq!(w.last_roles(), ["Staff"]);
    assert_eq!(w.invoke("update-chart", &lab).await, 403);
    // The bare client id is another subject: unlisted, it holds only the
    // default patient role.
    let bare = w.token("LabClient01", &[]);
    assert_eq!(w.invoke("update-chart", &bare).await, 403);
}

#[tokio::test]
async fn cron_and_subscription_zambdas_answer_404_on_both_routes() {
    let w = World::start().await;
    let doctor = w.token("dr-alice", &[]);
    for zambda in ["nightly-report", "on-new-patient"] {
        for route in ["execute", "execute-public"] {
            let path = format!("/v1/zambda/{zambda}/{route}");
            let token = (route == "execute").then_some(doctor.as_str());
            let resp = w
                .proxy
                .post(&path, token, &[("x-oystehr-project-id", PROJECT_ID)])
                .await;
            resp.assert_error(404);
        }
    }
    assert_eq!(w.backend.count(), 0);
    // The HTTP kinds still pass: the same token invokes an http_auth
    // Zambda, anyone an http_open one.
    assert_eq!(w.invoke("update-chart", &doctor).await, 200);
    let open = w
        .proxy
        .post(
            "/v1/zambda/public-slots/execute-public",
            None,
            &[("x-oystehr-project-id", PROJECT_ID)],
        )
        .await;
    assert_eq!(open.status, 200);
}
