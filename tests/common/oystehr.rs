//! A stand-in for Oystehr's project API and its token endpoint, on
//! loopback, answering with the shapes of `@oystehr/sdk` 4.2.6's types
//! (`RoleListItem`, `Role`, `ZambdaFunction`, `M2mListV2Response`, `M2m`,
//! `Project`), for the requests the SDK makes. It checks the bearer token
//! and the project-id header like the real API, pages the M2M list, and
//! can be told to fail in the ways the sync must survive.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// What the stand-in serves and how it misbehaves; tests change it live.
#[derive(Debug, Clone)]
pub struct Project {
    pub project_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// Full role objects (`Role`), in the API's order.
    pub roles: Vec<Value>,
    /// `ZambdaFunction` objects.
    pub zambdas: Vec<Value>,
    /// Full `M2m` objects.
    pub m2ms: Vec<Value>,
    /// `Project`.
    pub project: Value,
    /// M2M clients per page of `/m2m/v2/list`.
    pub page_size: usize,
    /// `GET /iam/role/{id}` answers 500 for this id, every time.
    pub failing_role: Option<String>,
    /// A token stops being accepted after this many API calls.
    pub token_uses: Option<usize>,
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

#[derive(Default)]
struct Live {
    /// Tokens issued, with the API calls each has made.
    tokens: Vec<(String, usize)>,
    seen: Vec<Seen>,
}

pub struct Api {
    pub addr: SocketAddr,
    pub project: Arc<Mutex<Project>>,
    live: Arc<Mutex<Live>>,
    task: tokio::task::JoinHandle<()>,
}

impl Api {
    pub async fn start(project: Project) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let project = Arc::new(Mutex::new(project));
        let live = Arc::new(Mutex::new(Live::default()));
        let (p, l) = (project.clone(), live.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (p, l) = (p.clone(), l.clone());
                tokio::spawn(async move {
                    let Some(seen) = read_request(&mut stream).await else {
                        return;
                    };
                    let (status, body) = answer(&seen, &p, &l);
                    l.lock().unwrap().seen.push(seen);
                    let reason = match status {
                        200 => "OK",
                        401 => "Unauthorized",
                        404 => "Not Found",
                        _ => "Error",
                    };
                    let body = body.to_string();
                    let resp = format!(
                        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(resp.as_bytes()).await;
                });
            }
        });
        Api {
            addr,
            project,
            live,
            task,
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    pub fn change(&self, f: impl FnOnce(&mut Project)) {
        f(&mut self.project.lock().unwrap());
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.live.lock().unwrap().seen.clone()
    }

    /// Every token issued so far.
    pub fn tokens(&self) -> Vec<String> {
        self.live
            .lock()
            .unwrap()
            .tokens
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Seen> {
    let request = super::read_request(stream).await?;
    Some(Seen {
        method: request.method,
        target: request.target,
        headers: request.headers,
        body: String::from_utf8_lossy(&request.body).to_string(),
    })
}

fn answer(seen: &Seen, project: &Mutex<Project>, live: &Mutex<Live>) -> (u16, Value) {
    let p = project.lock().unwrap().clone();
    let unauthorized = (401, json!({"message": "Unauthorized", "code": 401}));
    if seen.method == "POST" && seen.target == "/oauth/token" {
        let Ok(body) = serde_json::from_str::<Value>(&seen.body) else {
            return (400, json!({"error": "invalid_request"}));
        };
        if body["grant_type"] != "client_credentials"
            || body["client_id"] != p.client_id.as_str()
            || body["client_secret"] != p.client_secret.as_str()
        {
            return (
                401,
                json!({"error": "access_denied", "error_description": "Unauthorized"}),
            );
        }
        let mut live = live.lock().unwrap();
        let token = format!(
            "stand-in-token-{}-{}",
            live.tokens.len(),
            uuid::Uuid::new_v4()
        );
        live.tokens.push((token.clone(), 0));
        return (
            200,
            json!({"access_token": token, "expires_in": 86400, "token_type": "Bearer"}),
        );
    }
    // Every API call: a live token and the project's id.
    let bearer = seen
        .headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    {
        let mut live = live.lock().unwrap();
        let Some(entry) = live.tokens.iter_mut().find(|(t, _)| t == bearer) else {
            return unauthorized;
        };
        entry.1 += 1;
        if p.token_uses.is_some_and(|max| entry.1 > max) {
            return unauthorized;
        }
    }
    if seen.headers.get("x-oystehr-project-id") != Some(&p.project_id) {
        return unauthorized;
    }
    if seen.method != "GET" {
        return (405, json!({"message": "method not allowed"}));
    }
    let (path, query) = seen
        .target
        .split_once('?')
        .unwrap_or((seen.target.as_str(), ""));
    let not_found = (404, json!({"message": "Not found", "code": 404}));
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match segments.as_slice() {
        ["iam", "role"] => (
            200,
            Value::Array(
                p.roles
                    .iter()
                    .map(|r| json!({"id": r["id"], "name": r["name"], "memberCount": 3}))
                    .collect(),
            ),
        ),
        ["iam", "role", id] => {
            if p.failing_role.as_deref() == Some(*id) {
                return (500, json!({"message": "Internal Server Error"}));
            }
            p.roles
                .iter()
                .find(|r| r["id"] == *id)
                .map_or(not_found.clone(), |r| (200, r.clone()))
        }
        ["zambda"] => (200, Value::Array(p.zambdas.clone())),
        ["m2m", "v2", "list"] => {
            let start: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("cursor="))
                .and_then(|c| c.strip_prefix("page-"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let page: Vec<Value> = p
                .m2ms
                .iter()
                .skip(start)
                .take(p.page_size)
                .map(|m| json!({"id": m["id"], "name": m["name"], "description": m["description"]}))
                .collect();
            let next = start + p.page_size;
            let cursor = if next < p.m2ms.len() {
                json!(format!("page-{next}"))
            } else {
                Value::Null
            };
            (
                200,
                json!({"data": page, "metadata": {"nextCursor": cursor}}),
            )
        }
        ["m2m", id] => p
            .m2ms
            .iter()
            .find(|m| m["id"] == *id)
            .map_or(not_found.clone(), |m| (200, m.clone())),
        ["project"] => (200, p.project.clone()),
        _ => not_found,
    }
}

/// A realistic project: four roles (the default patient role with FHIR
/// rules and conditions, staff, an integration role, a deny-all
/// `Inactive`), Zambdas of all four trigger methods, and five M2M clients
/// (three pages of two) holding roles by stub.
pub fn realistic(project_id: &str, client_id: &str, client_secret: &str) -> Project {
    let role = |id: &str, name: &str, rules: Value| json!({"id": id, "name": name, "description": format!("{name} role"), "accessPolicy": {"rule": rules}});
    let invoke = |names: &[&str]| {
        json!({
            "action": ["Zambda:InvokeFunction"],
            "resource": names.iter().map(|n| format!("Zambda:Function:{n}")).collect::<Vec<_>>(),
            "effect": "Allow"
        })
    };
    let roles = vec![
        role(
            "role-patient",
            "Patient",
            json!([
                {"action": ["FHIR:Read", "FHIR:Search"], "resource": ["FHIR:Patient"], "effect": "Allow",
                 "condition": {"ForAllValues:StringEquals": {"FHIR:Patient.id": "%currentUser.profile"}}},
                invoke(&["book-appointment"]),
            ]),
        ),
        role(
            "role-provider",
            "Provider",
            json!([
                {"action": ["FHIR:*"], "resource": ["FHIR:*"], "effect": "Allow"},
                {"action": "Z3:GetObject", "resource": "Z3:charts/*", "effect": "Allow"},
                invoke(&["book-appointment", "update-chart"]),
            ]),
        ),
        role(
            "role-lab",
            "Lab Integration",
            json!([invoke(&["lab-ingest"])]),
        ),
        role(
            "role-inactive",
            "Inactive",
            json!([{"action": "*", "resource": "*", "effect": "Deny"}]),
        ),
    ];
    let zambda = |id: &str, name: &str, trigger: &str| {
        let mut z = json!({
            "id": id, "name": name, "runtime": "nodejs20.x", "status": "Active",
            "triggerMethod": trigger, "memorySize": 1024, "timeoutInSeconds": 27,
            "fileInfo": {"name": format!("{name}.zip"), "size": 48213, "lastModified": "2026-11-20T14:02:11.000Z"}
        });
        if trigger == "cron" {
            z["schedule"] = json!({"expression": "cron(0 3 * * ? *)"});
        }
        z
    };
    let zambdas = vec![
        zambda("z-book", "book-appointment", "http_auth"),
        zambda("z-chart", "update-chart", "http_auth"),
        zambda("z-lab", "lab-ingest", "http_auth"),
        zambda("z-slots", "list-slots", "http_open"),
        zambda("z-nightly", "nightly-report", "cron"),
        zambda("z-observe", "on-observation", "subscription"),
    ];
    let m2m = |n: usize, roles: Value| {
        json!({
            "id": format!("m2m-{n}"),
            "clientId": format!("client{n}"),
            "name": format!("client {n}"),
            "description": format!("integration {n}"),
            "profile": format!("Device/m2m-{n}"),
            "roles": roles,
        })
    };
    let lab = json!([{"id": "role-lab", "name": "Lab Integration"}]);
    let provider = json!([{"id": "role-provider", "name": "Provider"}]);
    let mut m2ms = vec![
        m2m(1, lab.clone()),
        m2m(2, provider.clone()),
        m2m(3, json!([])),
        m2m(4, json!([{"id": "role-inactive", "name": "Inactive"}])),
        m2m(5, lab),
    ];
    m2ms[4]["accessPolicy"] = json!({"rule": [
        {"action": "Zambda:InvokeFunction", "resource": "Zambda:Function:update-chart", "effect": "Allow"}
    ]});
    Project {
        project_id: project_id.into(),
        client_id: client_id.into(),
        client_secret: client_secret.into(),
        roles,
        zambdas,
        m2ms,
        project: json!({
            "id": project_id, "name": "Clinic", "description": "", "signupEnabled": true,
            "sandbox": false, "fhirVersion": "r4",
            "defaultPatientRole": {"id": "role-patient", "name": "Patient"},
            "defaultSSOUserRole": {"id": "role-provider", "name": "Provider"}
        }),
        page_size: 2,
        failing_role: None,
        token_uses: None,
    }
}
