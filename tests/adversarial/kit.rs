//! What the case tables are written with: the request builder ([`Req`]),
//! tokens signed or forged by hand, and the checks on what the backend
//! received.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use zambda_guard::echo::Received;

use crate::common::*;
use crate::driver::*;
use crate::*;

/// A request written out byte for byte. `host`, `content-length` (of the
/// body) and `connection: close` are added unless turned off.
#[derive(Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub host: bool,
    pub length: bool,
    pub close: bool,
}

pub fn post(target: &str) -> Req {
    Req {
        method: "POST".into(),
        target: target.into(),
        version: "HTTP/1.1".into(),
        headers: Vec::new(),
        body: b"{}".to_vec(),
        host: true,
        length: true,
        close: true,
    }
}

impl Req {
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }

    pub fn version(mut self, version: &str) -> Self {
        self.version = version.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn no_host(mut self) -> Self {
        self.host = false;
        self
    }

    /// No automatic content-length: the headers given say it.
    pub fn own_length(mut self) -> Self {
        self.length = false;
        self
    }

    pub fn keep_alive(mut self) -> Self {
        self.close = false;
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.target, self.version).into_bytes();
        if self.host {
            out.extend_from_slice(b"host: proxy.test\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if self.length {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        if self.close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

impl From<Req> for Vec<u8> {
    fn from(r: Req) -> Vec<u8> {
        r.bytes()
    }
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// Signs `header.payload` as given (any header, any JSON) with `key`.
pub fn sign_raw(header: &Value, payload: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

pub fn hmac_key() -> EncodingKey {
    EncodingKey::from_secret(HMAC_SECRET.as_bytes())
}

pub fn hs256(claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key).unwrap()
}

/// A token of the main world: RS256, kid rsa1.
pub fn rs(subject: &str) -> String {
    SigningKey::rsa1().sign(&claims(subject))
}

/// The parts of a compact token.
pub fn parts(token: &str) -> Vec<String> {
    token.split('.').map(String::from).collect()
}

// ---------------------------------------------------------------------------
// Requirements on what the backend received
// ---------------------------------------------------------------------------

pub fn received(o: &Outcome) -> Result<&Received, String> {
    match o.received.as_slice() {
        [one] => Ok(one),
        other => Err(format!("expected one backend request, got {}", other.len())),
    }
}

/// The backend saw exactly these values of `name`.
pub fn header_is(
    name: &'static str,
    want: &'static [&'static str],
) -> impl Fn(&Outcome) -> Result<(), String> {
    move |o| {
        let r = received(o)?;
        let got = r.header_values(name);
        if got == want {
            Ok(())
        } else {
            Err(format!("backend got {name}: {got:?}, want {want:?}"))
        }
    }
}

/// The identity headers the backend saw are exactly the proxy's, and no
/// look-alike (`_` or `.` spelling, other `x-zambda-*`) got through.
pub fn identity(
    actor: Option<&'static str>,
    roles: Option<&'static str>,
    id: &'static str,
    name: &'static str,
) -> impl Fn(&Outcome) -> Result<(), String> {
    move |o| {
        let r = received(o)?;
        let want: [(&str, Vec<&str>); 4] = [
            ("x-zambda-actor", actor.into_iter().collect()),
            ("x-zambda-roles", roles.into_iter().collect()),
            ("x-zambda-id", vec![id]),
            ("x-zambda-name", vec![name]),
        ];
        for (header, values) in &want {
            let got = r.header_values(header);
            if &got != values {
                return Err(format!("backend got {header}: {got:?}, want {values:?}"));
            }
        }
        for (header, _) in &r.headers {
            let normalized = header.replace(['_', '.'], "-");
            let known = want.iter().any(|(h, _)| h == header);
            if (normalized.starts_with("x-zambda-") && !known)
                || (normalized == "x-oystehr-request-id" && header != "x-oystehr-request-id")
            {
                return Err(format!("look-alike header {header:?} reached the backend"));
            }
        }
        if r.header_values("x-oystehr-request-id").len() != 1 {
            return Err("backend did not get exactly one request id".into());
        }
        Ok(())
    }
}

/// `X-Forwarded-Proto` is the proxy's, from how the client reached it
/// (`https` exactly when the listener has `tls`), never the client's.
pub fn proto_of_the_listener(o: &Outcome) -> Result<(), String> {
    let r = received(o)?;
    let got = r.header_values("x-forwarded-proto");
    if got == [o.transport.scheme()] {
        Ok(())
    } else {
        Err(format!(
            "backend got x-forwarded-proto: {got:?}, want {:?}",
            o.transport.scheme()
        ))
    }
}

pub fn no_authorization(o: &Outcome) -> Result<(), String> {
    let r = received(o)?;
    let got = r.header_values("authorization");
    if got.is_empty() {
        Ok(())
    } else {
        Err(format!("authorization forwarded: {got:?}"))
    }
}

pub fn body_is(want: &'static [u8]) -> impl Fn(&Outcome) -> Result<(), String> {
    move |o| {
        let r = received(o)?;
        if r.body == want {
            Ok(())
        } else {
            Err(format!(
                "backend got body {:?}",
                String::from_utf8_lossy(&r.body)
            ))
        }
    }
}

/// The forwarded request is framed one way only.
pub fn single_framing(o: &Outcome) -> Result<(), String> {
    let r = received(o)?;
    let cl = r.header_values("content-length").len();
    let te = r.header_values("transfer-encoding").len();
    if cl + te <= 1 {
        Ok(())
    } else {
        Err(format!(
            "forwarded with {cl} content-length and {te} transfer-encoding"
        ))
    }
}

/// The answer closes the connection and says so: `Connection: close`,
/// and nothing more is answered on it (the driver reads on after the first
/// answer, and any further answer fails the case).
pub fn closes(o: &Outcome) -> Result<(), String> {
    let r = o.response.as_ref().ok_or("no response")?;
    match r.header("connection") {
        Some(v) if v.eq_ignore_ascii_case("close") => Ok(()),
        other => Err(format!("connection: {other:?}, want close")),
    }
}

/// A 401 carrying RFC 6750's challenge; `error="invalid_token"` exactly
/// when a token was presented.
pub fn challenge(token_given: bool) -> impl Fn(&Outcome) -> Result<(), String> {
    move |o| {
        let r = o.response.as_ref().ok_or("no response")?;
        let c = r.header("www-authenticate").unwrap_or_default();
        if !c.starts_with("Bearer realm=\"zambda-guard\"") {
            return Err(format!("www-authenticate {c:?}"));
        }
        if c.contains("error=\"invalid_token\"") != token_given {
            return Err(format!(
                "www-authenticate {c:?} (token given: {token_given})"
            ));
        }
        Ok(())
    }
}

pub fn no_challenge(o: &Outcome) -> Result<(), String> {
    let r = o.response.as_ref().ok_or("no response")?;
    match r.header("www-authenticate") {
        None => Ok(()),
        Some(c) => Err(format!("unexpected www-authenticate {c:?}")),
    }
}

pub fn allow_post(o: &Outcome) -> Result<(), String> {
    let r = o.response.as_ref().ok_or("no response")?;
    match r.header("allow") {
        Some("POST") => Ok(()),
        other => Err(format!("allow: {other:?}")),
    }
}
