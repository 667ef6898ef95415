//! A small HTTP/1.1 echo backend: the function backend of `demo`, and the
//! recording backend of the end-to-end tests.
//!
//! It answers every request with the Oystehr Zambda response shape,
//! `{"status": 200, "output": {...}}`, where `output` echoes the method,
//! path, the `x-zambda-*` identity headers and the JSON body it received.
//! Every request is also kept in a [`Recorder`] so a test can assert exactly
//! what reached the backend (and that refused requests did not).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The request target exactly as received.
    pub target: String,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// All values of a header.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of a header, if present once.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.header_values(name).as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// What the backend has received so far.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    pub fn requests(&self) -> Vec<Received> {
        self.inner.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().map(|v| v.len()).unwrap_or(0)
    }

    pub fn clear(&self) {
        if let Ok(mut v) = self.inner.lock() {
            v.clear();
        }
    }

    fn push(&self, r: Received) {
        if let Ok(mut v) = self.inner.lock() {
            v.push(r);
        }
    }
}

/// Options of the echo backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Wait this long before answering (to test timeouts and draining).
    pub delay: Option<std::time::Duration>,
}

/// Binds `addr` and serves until the runtime stops. Returns the bound
/// address (use port 0 for an ephemeral one) and the recorder.
pub async fn serve(
    addr: SocketAddr,
    behaviour: Behaviour,
) -> std::io::Result<(SocketAddr, Recorder)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let recorder = Recorder::default();
    let rec = recorder.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let rec = rec.clone();
            tokio::spawn(async move {
                let _ = connection(stream, rec, behaviour).await;
            });
        }
    });
    Ok((local, recorder))
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

async fn connection(
    mut stream: TcpStream,
    recorder: Recorder,
    behaviour: Behaviour,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // read a head
        let head_end = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_HEAD {
                return Ok(());
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(
            req.parse(&buf[..head_end]),
            Ok(httparse::Status::Complete(_))
        ) {
            return Ok(());
        }
        let method = req.method.unwrap_or("").to_string();
        let target = req.path.unwrap_or("").to_string();
        let close_requested = req.version == Some(0);
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        buf.drain(..head_end);

        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let body = if chunked {
            read_chunked(&mut stream, &mut buf).await?
        } else {
            if length > MAX_BODY {
                return Ok(());
            }
            while buf.len() < length {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..length).collect()
        };
        let close = close_requested
            || headers
                .iter()
                .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
        let received = Received {
            method,
            target,
            headers,
            body,
        };
        let response = answer(&received);
        recorder.push(received);
        if let Some(delay) = behaviour.delay {
            tokio::time::sleep(delay).await;
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
            response.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        // one write: head and body in separate segments would meet Nagle
        // and delayed ACKs (tens of milliseconds per request)
        let mut out = head.into_bytes();
        out.extend_from_slice(&response);
        stream.write_all(&out).await?;
        if close {
            return Ok(());
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        buf.drain(..line_end + 2);
        // the chunk data and its CRLF (for the last chunk: the final CRLF)
        while buf.len() < size + 2 {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
        if size == 0 {
            return Ok(body);
        }
        if body.len() > MAX_BODY {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

fn answer(r: &Received) -> Vec<u8> {
    let identity: serde_json::Map<String, serde_json::Value> = r
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-zambda-"))
        .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let body = serde_json::from_slice::<serde_json::Value>(&r.body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&r.body).into()));
    serde_json::json!({
        "status": 200,
        "output": {
            "echo": true,
            "method": r.method,
            "path": r.target,
            "identity": identity,
            "body": body,
        }
    })
    .to_string()
    .into_bytes()
}
