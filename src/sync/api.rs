//! Oystehr's project API as the SDK calls it: a client-credentials token,
//! then the reads of roles, Zambdas, M2M clients and the project, with the
//! SDK's headers, timeouts, bounded concurrency and retries.
//!
//! No error this module makes carries a credential, a token or a response
//! body (an error body may echo what was sent): only the request's method,
//! its path on the project API and a status or a transport failure.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::config::Oystehr;

/// Each request (token or API) gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per request, the first included, on 429, 5xx and transport errors.
const TRIES: u32 = 3;
/// The first retry waits about this long, the second twice as long, each
/// with up to as much again of random jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Role and M2M client reads in flight at once.
pub const CONCURRENCY: usize = 8;
/// No answer of the API is read beyond this many bytes.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// A token is used until this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Pages of the M2M list followed at most (a loop guard).
const MAX_PAGES: usize = 10_000;

/// A credential or token: never printed, not even by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Self {
        Secret(text)
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The M2M client's credentials, read from the environment.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub client_id: Secret,
    pub client_secret: Secret,
}

/// Why a read of the project failed; never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("token request: {0}")]
    Token(String),
    #[error("{method} {path}: {why}")]
    Request {
        method: &'static str,
        path: String,
        why: String,
    },
    #[error("{0}")]
    Shape(String),
}

/// A role as `GET /iam/role/{id}` answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Kept as the API gave it, so the loader judges every rule.
    #[serde(rename = "accessPolicy", default)]
    pub access_policy: Option<Value>,
}

/// A Zambda as `GET /zambda` lists it (fields the proxy does not use are
/// not read).
#[derive(Debug, Clone, Deserialize)]
pub struct Zambda {
    pub id: String,
    pub name: String,
    #[serde(rename = "triggerMethod")]
    pub trigger_method: String,
}

/// How every answer names a role.
#[derive(Debug, Clone, Deserialize)]
pub struct Stub {
    pub id: String,
    pub name: String,
}

/// An M2M client as `GET /m2m/{id}` answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct M2m {
    pub id: String,
    #[serde(rename = "clientId")]
    pub client_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "accessPolicy", default)]
    pub access_policy: Option<Value>,
    #[serde(default)]
    pub roles: Vec<Stub>,
}

/// Everything read from one project, complete or not at all.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub roles: Vec<Role>,
    pub zambdas: Vec<Zambda>,
    pub m2ms: Vec<M2m>,
    pub default_patient_role: Option<Stub>,
}

#[derive(Deserialize)]
struct RoleListItem {
    id: String,
}

#[derive(Deserialize)]
struct M2mPage {
    data: Vec<M2mListItem>,
    metadata: PageMetadata,
}

#[derive(Deserialize)]
struct M2mListItem {
    id: String,
}

#[derive(Deserialize)]
struct PageMetadata {
    #[serde(rename = "nextCursor", default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Project {
    #[serde(rename = "defaultPatientRole", default)]
    default_patient_role: Option<Stub>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The project API client: one HTTP client, the credentials, and the token
/// while it is good.
pub struct Api {
    http: reqwest::Client,
    settings: Oystehr,
    credentials: Credentials,
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
}

impl Api {
    pub fn new(settings: Oystehr, credentials: Credentials) -> Result<Arc<Api>, String> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            // A redirect would carry the bearer token somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("zambda-guard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Api {
            http,
            settings,
            credentials,
            token: tokio::sync::Mutex::new(None),
        }))
    }

    /// Reads the whole project; any failed read fails it all.
    pub async fn snapshot(self: &Arc<Self>) -> Result<Snapshot, Error> {
        let list: Vec<RoleListItem> = self.get("/iam/role").await?;
        let roles = self
            .each(list.into_iter().map(|r| r.id).collect(), "/iam/role")
            .await?;
        let zambdas: Vec<Zambda> = self.get("/zambda").await?;
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let path = match &cursor {
                Some(c) => format!("/m2m/v2/list?cursor={}", encode(c)),
                None => "/m2m/v2/list".to_string(),
            };
            let page: M2mPage = self.get(&path).await?;
            ids.extend(page.data.into_iter().map(|m| m.id));
            match page.metadata.next_cursor.filter(|c| !c.is_empty()) {
                Some(next) if Some(&next) == cursor.as_ref() => {
                    return Err(Error::Shape(
                        "GET /m2m/v2/list: the next cursor repeats the last one".into(),
                    ))
                }
                Some(next) => cursor = Some(next),
                None => {
                    cursor = None;
                    break;
                }
            }
        }
        if cursor.is_some() {
            return Err(Error::Shape(format!(
                "GET /m2m/v2/list: more than {MAX_PAGES} pages"
            )));
        }
        let m2ms = self.each(ids, "/m2m").await?;
        let project: Project = self.get("/project").await?;
        Ok(Snapshot {
            roles,
            zambdas,
            m2ms,
            default_patient_role: project.default_patient_role,
        })
    }

    /// `GET {base}/{id}` for every id, [`CONCURRENCY`] at a time, in the
    /// order of `ids`.
    async fn each<T: DeserializeOwned + Send + 'static>(
        self: &Arc<Self>,
        ids: Vec<String>,
        base: &'static str,
    ) -> Result<Vec<T>, Error> {
        let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, id) in ids.into_iter().enumerate() {
            let (api, permits) = (self.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let path = format!("{base}/{}", encode(&id));
                (i, api.get::<T>(&path).await)
            });
        }
        let mut out: Vec<Option<T>> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (i, result) = joined.map_err(|e| Error::Shape(format!("a read stopped: {e}")))?;
            match result {
                Ok(item) => {
                    if out.len() <= i {
                        out.resize_with(i + 1, || None);
                    }
                    out[i] = Some(item);
                }
                Err(e) => {
                    tasks.abort_all();
                    return Err(e);
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One GET on the project API, with the token and the SDK's headers,
    /// retried on 429, 5xx and transport errors.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let token = self.token().await?;
        let url = format!("{}{path}", self.settings.project_api_url);
        let fail = |why: String| Error::Request {
            method: "GET",
            path: path.to_string(),
            why,
        };
        let body = self
            .send(|| {
                self.http
                    .get(&url)
                    .header("x-oystehr-project-id", &self.settings.project_id)
                    .header("x-zapehr-project-id", &self.settings.project_id)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("x-oystehr-request-id", uuid::Uuid::new_v4().to_string())
                    .bearer_auth(token.expose())
            })
            .await
            .map_err(|(status, why)| {
                if status == Some(401) {
                    // A token the API no longer takes (expired early,
                    // revoked): the next round asks for a new one.
                    if let Ok(mut held) = self.token.try_lock() {
                        *held = None;
                    }
                }
                fail(why)
            })?;
        serde_json::from_slice(&body).map_err(|e| fail(format!("unexpected answer: {e}")))
    }

    /// The client-credentials token, fetched again shortly before it
    /// expires.
    async fn token(&self) -> Result<Secret, Error> {
        let mut held = self.token.lock().await;
        if let Some((token, until)) = held.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let body = serde_json::json!({
            "grant_type": "client_credentials",
            "client_id": self.credentials.client_id.expose(),
            "client_secret": self.credentials.client_secret.expose(),
            "audience": self.settings.audience,
        })
        .to_string();
        let answer = self
            .send(|| {
                self.http
                    .post(&self.settings.token_url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await
            .map_err(|(_, why)| Error::Token(why))?;
        let answer: TokenAnswer = serde_json::from_slice(&answer)
            .map_err(|_| Error::Token("the answer is not a token response".into()))?;
        if answer.access_token.is_empty() {
            return Err(Error::Token("the answer holds an empty token".into()));
        }
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(300));
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN.min(lifetime / 2));
        let token = Secret(answer.access_token);
        *held = Some((token.clone(), until));
        Ok(token)
    }

    /// Sends the request `build` makes, up to [`TRIES`] times; the body of
    /// a 2xx answer, or the last status (if any) and why it failed.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, (Option<u16>, String)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (status, why, retry) = match build().send().await {
                Ok(response) if response.status().is_success() => match read_body(response).await {
                    Ok(body) => return Ok(body),
                    Err(why) => (None, why, true),
                },
                Ok(response) => {
                    let code = response.status().as_u16();
                    let retry = code == 429 || response.status().is_server_error();
                    (Some(code), format!("HTTP status {code}"), retry)
                }
                Err(e) => (None, describe(&e), e.is_timeout() || e.is_connect()),
            };
            if !retry || attempt >= TRIES {
                let tries = if attempt > 1 {
                    format!(" (after {attempt} tries)")
                } else {
                    String::new()
                };
                return Err((status, format!("{why}{tries}")));
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

/// The wait before try `attempt + 1`: doubling from [`FIRST_BACKOFF`], plus
/// up to as much again at random, so many instances do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    let random = RandomState::new().build_hasher().finish();
    let jitter_ms = random % (u64::try_from(base.as_millis()).unwrap_or(1).max(1) + 1);
    base + Duration::from_millis(jitter_ms)
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("answer larger than {MAX_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport failure, without the URL (the URL is named by the caller).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Percent-encodes a path segment or query value, as the SDK's
/// `encodeURIComponent` does.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..=2 {
            let base = FIRST_BACKOFF * 2u32.pow(attempt - 1);
            let wait = backoff(attempt);
            assert!(wait >= base && wait <= base * 2, "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn ids_are_encoded() {
        assert_eq!(encode("a b/c?"), "a%20b%2Fc%3F");
        assert_eq!(encode("abc-123_x"), "abc-123_x");
    }
}
