//! Connection behaviour, which does not fit one request per case:
//! pipelining, keep-alive after a refusal, slow clients and timeouts, the
//! token cache's expiry, protocol upgrades.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;
use crate::driver::*;
use crate::kit::*;
use crate::*;

/// The four requests of the pipelining tests: allowed, denied (403),
/// unauthenticated with a body that is itself a complete (allowed-looking)
/// request, allowed. Each carries its own request id.
fn pipelined_requests() -> Vec<Vec<u8>> {
    let lab = rs("lab-bot@clients");
    let alice = rs("dr-alice");
    let id = "x-oystehr-request-id";
    let hidden = post(LAB)
        .bearer(&lab)
        .keep_alive()
        .header(id, "hidden")
        .bytes();
    vec![
        post(LAB).bearer(&lab).keep_alive().header(id, "p1").bytes(),
        post(BILLING)
            .bearer(&alice)
            .keep_alive()
            .header(id, "p2")
            .bytes(),
        post(BILLING)
            .keep_alive()
            .header(id, "p3")
            .body(hidden)
            .bytes(),
        post(LAB)
            .bearer(&lab)
            .header(id, "p4")
            .body(b"{\"n\":4}".to_vec())
            .bytes(),
    ]
}

/// What a pipelined exchange must show, however many answers came back:
/// at least the first; each answer belongs to its request, in order, with
/// its status; the backend saw exactly the allowed requests that were
/// answered, in order, and never the request hidden in a body.
fn check_pipelined(responses: &[Response], backend: &Recorder) {
    const WANT: [(u16, &str); 4] = [(200, "p1"), (403, "p2"), (401, "p3"), (200, "p4")];
    assert!(!responses.is_empty(), "no answer at all");
    let got: Vec<(u16, Option<&str>)> = responses
        .iter()
        .map(|r| (r.status, r.header("x-oystehr-request-id")))
        .collect();
    let want: Vec<(u16, Option<&str>)> = WANT[..responses.len().min(4)]
        .iter()
        .map(|(s, id)| (*s, Some(*id)))
        .collect();
    assert_eq!(got, want, "answers out of step with the requests");
    let seen: Vec<(String, Option<String>)> = backend
        .requests()
        .iter()
        .map(|r| {
            (
                r.target.clone(),
                r.header("x-oystehr-request-id").map(String::from),
            )
        })
        .collect();
    let allowed: Vec<(String, Option<String>)> = WANT[..responses.len()]
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, id)| (LAB.to_string(), Some(id.to_string())))
        .collect();
    assert_eq!(
        seen, allowed,
        "the backend saw other than the allowed, answered requests"
    );
}

/// All four in one write: each is answered, in order (RFC 9112 §9.3.2),
/// and nothing gets out of step.
pub async fn pipelined_requests_with_a_denied_one_between_allowed_ones() {
    let jwks = JwksServer::start(&[&SigningKey::rsa1()]).await;
    let w = main_world(&jwks, None).await;
    let mut stream = TcpStream::connect(w.proxy.addr).await.unwrap();
    stream
        .write_all(&pipelined_requests().concat())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    for _ in 0..4 {
        match tokio::time::timeout(
            Duration::from_secs(5),
            read_one(&mut stream, &mut buf, false),
        )
        .await
        {
            Ok(Ok(r)) => responses.push(r),
            _ => break,
        }
    }
    assert_eq!(responses.len(), 4, "a pipelined request went unanswered");
    check_pipelined(&responses, &w.backend);
    // and the proxy still serves a fresh connection
    let r = w.proxy.post(LAB, Some(&rs("lab-bot@clients")), &[]).await;
    assert_eq!(r.status, 200);
}

/// A pipeline that mixes routes, identities and refusals, in one write:
/// each request is judged on its own (the public call carries no identity
/// from the call before it), answered in order, and only the allowed ones
/// reach the backend. The fourth has ambiguous framing: it is refused with
/// `Connection: close`, and the request hidden behind it is never read.
pub async fn a_pipeline_mixes_identities_refusals_and_bad_framing() {
    let jwks = JwksServer::start(&[&SigningKey::rsa1()]).await;
    let w = main_world(&jwks, None).await;
    let lab = rs("lab-bot@clients");
    let id = "x-oystehr-request-id";
    let hidden = post(LAB).bearer(&lab).header(id, "hidden").bytes();
    let ambiguous = format!(
        "POST {LAB} HTTP/1.1\r\nhost: proxy.test\r\nauthorization: Bearer {lab}\r\n\
         {id}: q4\r\ntransfer-encoding: chunked\r\ncontent-length: {}\r\n\r\n0\r\n\r\n",
        5 + hidden.len()
    );
    let pipeline = [
        post(LAB).bearer(&lab).keep_alive().header(id, "q1").bytes(),
        post(SLOTS).keep_alive().header(id, "q2").bytes(),
        post(BILLING).keep_alive().header(id, "q3").bytes(),
        ambiguous.into_bytes(),
        hidden,
    ]
    .concat();
    let mut stream = TcpStream::connect(w.proxy.addr).await.unwrap();
    stream.write_all(&pipeline).await.unwrap();
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    while let Ok(Ok(r)) = tokio::time::timeout(
        Duration::from_secs(5),
        read_one(&mut stream, &mut buf, false),
    )
    .await
    {
        responses.push(r);
    }
    let got: Vec<(u16, Option<&str>, Option<&str>)> = responses
        .iter()
        .map(|r| {
            (
                r.status,
                r.header("x-oystehr-request-id"),
                r.header("connection"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (200, Some("q1"), Some("keep-alive")),
            (200, Some("q2"), Some("keep-alive")),
            (401, Some("q3"), Some("keep-alive")),
            (400, Some("q4"), Some("close")),
        ],
        "answers out of step with the requests"
    );
    let seen: Vec<(String, Option<String>, Option<String>)> = w
        .backend
        .requests()
        .iter()
        .map(|r| {
            (
                r.target.clone(),
                r.header(id).map(String::from),
                r.header("x-zambda-actor").map(String::from),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                LAB.to_string(),
                Some("q1".to_string()),
                Some("lab-bot@clients".to_string())
            ),
            (SLOTS.to_string(), Some("q2".to_string()), None),
        ],
        "the backend saw other than the allowed requests, each with its own identity"
    );
}

/// The same four on one keep-alive connection, each sent after the
/// previous answer: a refusal that left its body unread must not let that
/// body be read as the next request.
pub async fn keep_alive_requests_with_a_denied_one_between_allowed_ones() {
    let jwks = JwksServer::start(&[&SigningKey::rsa1()]).await;
    let w = main_world(&jwks, None).await;
    let mut stream = TcpStream::connect(w.proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    for request in pipelined_requests() {
        if stream.write_all(&request).await.is_err() {
            break;
        }
        match tokio::time::timeout(
            Duration::from_secs(5),
            read_one(&mut stream, &mut buf, false),
        )
        .await
        {
            Ok(Ok(r)) => responses.push(r),
            _ => break,
        }
    }
    check_pipelined(&responses, &w.backend);
}

/// A proxy whose downstream read and idle timeouts are `seconds`.
async fn impatient_world(seconds: u64) -> (World, JwksServer) {
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let (addr, backend) = backend().await;
    let mut setup = Setup::new(addr, &jwks.url());
    setup.extra = format!(
        "limits:
  downstream_read_timeout_seconds: {seconds}
  downstream_idle_timeout_seconds: {seconds}
"
    );
    let proxy = Proxy::start(setup).await;
    proxy.ready().await;
    (World { proxy, backend }, jwks)
}

/// How long until the proxy closes `stream` (None: still open at `limit`).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut sink)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Opens a connection and sends the start of a request head that never ends.
async fn stalled_head(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("POST {LAB} HTTP/1.1\r\nhost: proxy.test\r\n").as_bytes())
        .await
        .unwrap();
    s
}

/// 50 clients stalled mid-head and one mid-body do not slow anyone else
/// (the timeouts are long here, so nothing is freed by them meanwhile).
pub async fn slow_clients_do_not_hold_up_others() {
    let (w, _jwks) = impatient_world(30).await;
    let lab = rs("lab-bot@clients");
    let mut stalled = Vec::new();
    for _ in 0..50 {
        stalled.push(stalled_head(w.proxy.addr).await);
    }
    let mut body = TcpStream::connect(w.proxy.addr).await.unwrap();
    body.write_all(
        format!("POST {LAB} HTTP/1.1\r\nhost: proxy.test\r\nauthorization: Bearer {lab}\r\ncontent-length: 100\r\n\r\n{{\"a\":")
            .as_bytes(),
    )
    .await
    .unwrap();
    for _ in 0..5 {
        let started = Instant::now();
        let r = w.proxy.post(LAB, Some(&lab), &[]).await;
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "served in {:?} while slow clients held connections",
            started.elapsed()
        );
    }
    assert_eq!(w.backend.count(), 5);
    drop(stalled);
}

/// A stalled body and an idle keep-alive connection are closed once
/// `downstream_read_timeout_seconds` / `downstream_idle_timeout_seconds`
/// (2 s here) pass; the stalled request never reaches the backend whole.
pub async fn stalled_body_and_idle_keep_alive_time_out() {
    let (w, _jwks) = impatient_world(2).await;
    let lab = rs("lab-bot@clients");
    let limit = Duration::from_secs(6);

    let mut body = TcpStream::connect(w.proxy.addr).await.unwrap();
    body.write_all(
        format!("POST {LAB} HTTP/1.1\r\nhost: proxy.test\r\nauthorization: Bearer {lab}\r\ncontent-length: 100\r\n\r\n{{\"a\":")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut idle = TcpStream::connect(w.proxy.addr).await.unwrap();
    idle.write_all(&post(LAB).bearer(&lab).keep_alive().bytes())
        .await
        .unwrap();
    let first = read_one(&mut idle, &mut Vec::new(), false).await.unwrap();
    assert_eq!(first.status, 200);

    let idle_closed = closed_within(&mut idle, limit).await;
    let body_closed = closed_within(&mut body, limit).await;
    assert!(
        idle_closed.is_some(),
        "idle keep-alive connection still open after {limit:?}"
    );
    assert!(
        body_closed.is_some(),
        "stalled body still open after {limit:?}"
    );
    let targets: Vec<String> = w
        .backend
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(
        targets,
        vec![LAB.to_string()],
        "only the idle connection's request is complete"
    );
}

/// A client that starts a request head and never finishes it is cut off
/// once `downstream_read_timeout_seconds` (2 s here) passes, like one that
/// stalls mid-body; otherwise a few thousand such clients hold every
/// connection the proxy can have (slowloris).
pub async fn stalled_request_head_times_out() {
    let (w, _jwks) = impatient_world(2).await;
    let limit = Duration::from_secs(6);
    let mut head = stalled_head(w.proxy.addr).await;
    let mut silent = TcpStream::connect(w.proxy.addr).await.unwrap();
    let head_closed = closed_within(&mut head, limit).await;
    let silent_closed = closed_within(&mut silent, limit).await;
    assert!(
        head_closed.is_some() && silent_closed.is_some(),
        "still connected after {limit:?} with downstream_read_timeout_seconds: 2 \
         (stalled head closed after {head_closed:?}, silent connection after {silent_closed:?})"
    );
    assert_eq!(w.backend.count(), 0);
}

/// A cached verification ends with the token's `exp` (plus leeway).
pub async fn cached_token_is_refused_once_expired() {
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let (addr, backend) = backend().await;
    let mut setup = Setup::new(addr, &jwks.url());
    setup.issuers_yaml.push_str("  leeway_seconds: 1\n");
    let proxy = Proxy::start(setup).await;
    proxy.ready().await;
    let exp = now() + 2;
    let token = key.sign(&with(claims("lab-bot@clients"), json!({"exp": exp})));
    assert_eq!(proxy.post(LAB, Some(&token), &[]).await.status, 200);
    assert_eq!(
        proxy.post(LAB, Some(&token), &[]).await.status,
        200,
        "cached"
    );
    // past exp + leeway (whole seconds)
    while now() <= exp + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.post(LAB, Some(&token), &[]).await.assert_error(401);
    assert_eq!(backend.count(), 2);
}

/// A backend that switches protocols whenever asked, then records every
/// byte it receives on the upgraded connection; the heads it saw too.
async fn upgrading_backend() -> (SocketAddr, Arc<Mutex<Vec<u8>>>, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnelled = Arc::new(Mutex::new(Vec::new()));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (t2, h2) = (tunnelled.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let (t3, h3) = (t2.clone(), h2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                h3.lock().unwrap().push(head.clone());
                let upgrade = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("upgrade:")
                        .map(|v| v.trim().to_string())
                });
                let Some(proto) = upgrade else {
                    let body = br#"{"status":200,"output":{}}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.write_all(body).await;
                    return;
                };
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {proto}\r\n\r\n"
                );
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                t3.lock().unwrap().extend_from_slice(&buf[end..]);
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => t3.lock().unwrap().extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, tunnelled, heads)
}

/// An allowed (or public) request asking to upgrade must not turn the
/// connection into a raw tunnel to the backend, through which later bytes
/// — here a request for billing-export — reach it unchecked (the
/// websocket and h2c smuggling class). Zambdas are request/response.
pub async fn an_upgrade_cannot_open_a_tunnel_past_the_checks() {
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let (addr, tunnelled, heads) = upgrading_backend().await;
    let proxy = Proxy::start(Setup::new(addr, &jwks.url())).await;
    proxy.ready().await;
    let lab = rs("lab-bot@clients");
    let websocket =
        "upgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n";
    let h2c = "upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n";
    let auth = format!("authorization: Bearer {lab}\r\n");
    let mut findings = Vec::new();
    for (what, target, extra) in [
        ("websocket on execute", LAB, format!("{auth}{websocket}")),
        ("h2c on execute", LAB, format!("{auth}{h2c}")),
        (
            "websocket on execute-public, no token",
            SLOTS,
            websocket.to_string(),
        ),
        ("h2c on execute-public, no token", SLOTS, h2c.to_string()),
    ] {
        tunnelled.lock().unwrap().clear();
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let req = format!(
            "POST {target} HTTP/1.1\r\nhost: proxy.test\r\nconnection: upgrade\r\n{extra}content-length: 0\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let first = tokio::time::timeout(
            Duration::from_secs(5),
            read_one(&mut s, &mut Vec::new(), true),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|r| r.status);
        // whatever the answer, try to talk past the proxy
        let sneaky = "POST /v1/zambda/billing-export/execute HTTP/1.1\r\nhost: backend\r\ncontent-length: 2\r\n\r\n{}";
        let _ = s.write_all(sneaky.as_bytes()).await;
        let deadline = Instant::now() + Duration::from_millis(1500);
        let reached = || contains(&tunnelled.lock().unwrap(), b"billing-export");
        while Instant::now() < deadline && !reached() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if reached() {
            findings.push(format!(
                "{what}: the proxy answered {first:?} and tunnelled an unchecked request for billing-export to the backend"
            ));
        }
    }
    let heads = heads.lock().unwrap().clone();
    assert!(
        findings.is_empty(),
        "{}\n\nthe backend saw these heads:\n{}",
        findings.join("\n"),
        heads.join("---\n")
    );
    assert!(heads.iter().all(|h| !h.contains("billing-export")));
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
