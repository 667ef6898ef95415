//! TLS end to end (SPEC §7), over real sockets with certificates generated
//! here: HTTPS on the proxy listener (TLS 1.2+, HTTP/2 and HTTP/1.1 by
//! ALPN), the reload of a renewed certificate and the refusal of a bad one,
//! the verification of a TLS backend, and `check`/`run` on a bad pair.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::tls::*;
use common::*;
use pingora::tls::{version, CertificateDer, PrivateKeyDer, ServerConfig, TlsAcceptor};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zambda_guard::echo::{self, Behaviour};

/// `hello` may be invoked by `caller` and by nobody else.
const POLICY: &str = "zambdas:\n  - {id: z-hello, name: hello}\nactors:\n  - subject: caller\n    access_policy:\n      rule:\n        - {action: Zambda:InvokeFunction, resource: Zambda:Function:hello, effect: Allow}\n";
const HELLO: &str = "/v1/zambda/hello/execute";

// ---------------------------------------------------------------------------
// Certificates and clients (the CA, pairs and TLS clients are in
// `common::tls`)
// ---------------------------------------------------------------------------

/// The serial number of a DER certificate, as `01:02`-style hex.
fn serial_of(der: &[u8]) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .unwrap()
        .1
        .raw_serial_as_string()
}

/// The serial of the certificate a new handshake is presented with.
async fn served_serial(addr: SocketAddr, ca_pem: &str) -> String {
    let tls = handshake(addr, client_config(ca_pem, &[], false))
        .await
        .unwrap();
    let certs = tls.get_ref().1.peer_certificates().unwrap();
    serial_of(certs[0].as_ref())
}

/// Polls new handshakes until the served certificate has `serial`.
async fn wait_for_serial(proxy: &Proxy, ca_pem: &str, serial: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if served_serial(proxy.addr, ca_pem).await == serial {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "serial {serial} not served in time; log:\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTPS client (HTTP/1.1, reqwest) trusting `ca_pem`.
fn https_client(ca_pem: &str, proxy: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve(PROXY_NAME, proxy)
        .build()
        .unwrap()
}

fn url(proxy: SocketAddr, path: &str) -> String {
    format!("https://{PROXY_NAME}:{}{path}", proxy.port())
}

/// A value of a metric line (`name{labels} value`) from `/metrics`.
async fn metric(proxy: &Proxy, series: &str) -> f64 {
    let r = get(proxy.admin, "/metrics").await.unwrap();
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------
// The proxy, with TLS
// ---------------------------------------------------------------------------

async fn backend() -> (SocketAddr, Recorder) {
    echo::serve("127.0.0.1:0".parse().unwrap(), Behaviour::default())
        .await
        .unwrap()
}

async fn start(upstream: SocketAddr, jwks: &JwksServer, tweak: impl FnOnce(&mut Setup)) -> Proxy {
    let mut setup = Setup::new(upstream, &jwks.url());
    setup.policies = Some(vec![("p.yaml".into(), POLICY.into())]);
    tweak(&mut setup);
    let proxy = Proxy::start(setup).await;
    proxy.ready().await;
    proxy
}

#[tokio::test]
async fn https_with_http1_and_http2_decides_as_over_http() {
    let ca = Ca::new();
    let files = PairFiles::new(&ca.leaf(1, "first"));
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let (upstream, recorder) = backend().await;
    let proxy = start(upstream, &jwks, |s| s.extra = files.yaml()).await;
    assert!(proxy.logs().contains("serving HTTPS"), "{}", proxy.logs());
    let allowed = key.sign(&claims("caller"));
    let denied = key.sign(&claims("other"));

    // HTTP/1.1 over TLS (reqwest offers only http/1.1 here)
    let client = https_client(&ca.pem, proxy.addr);
    let r = client
        .post(url(proxy.addr, HELLO))
        .bearer_auth(&allowed)
        .header("content-type", "application/json")
        .body(r#"{"n": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let seen = recorder.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen[0].header("x-zambda-actor"), Some("caller"));

    let r = client
        .post(url(proxy.addr, HELLO))
        .bearer_auth(&denied)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], 403);
    let r = client
        .post(url(proxy.addr, HELLO))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(recorder.count(), 1, "a refused request reached the backend");

    // HTTP/2, chosen by ALPN
    let tls = handshake(
        proxy.addr,
        client_config(&ca.pem, &[b"h2", b"http/1.1"], false),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    // allowed, denied, and paths SPEC §1 refuses, decided as over HTTP/1.1
    let cases = [
        (HELLO, &allowed, 200),
        (HELLO, &denied, 403),
        ("/v1/zambda/hel%6co/execute", &allowed, 200),
        ("/v1/zambda/x/../hello/execute", &allowed, 400),
        ("/v1/zambda/hello/%2e%2e/execute", &allowed, 400),
        ("/v1//zambda/hello/execute", &allowed, 400),
        ("/v1/zambda/hello%2Fx/execute", &allowed, 400),
        ("/v1/zambda/hello/execute;x", &allowed, 400),
        ("/v1/zambda/hello/execute/", &allowed, 404),
    ];
    for (path, token, expected) in cases {
        let request = http::Request::post(url(proxy.addr, path))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let (response, mut body) = h2.send_request(request, false).unwrap();
        body.send_data(Bytes::from_static(b"{}"), true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), expected, "{path}");
        assert!(response.headers().contains_key("x-oystehr-request-id"));
        let mut data = response.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = data.data().await {
            let chunk = chunk.unwrap();
            data.flow_control().release_capacity(chunk.len()).unwrap();
            text.extend_from_slice(&chunk);
        }
        let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
        if expected != 200 {
            assert_eq!(json["code"], expected, "{path}");
        }
    }
    let seen = recorder.requests();
    assert_eq!(
        seen.len(),
        3,
        "exactly the allowed HTTP/2 calls reached the backend"
    );
    for request in &seen[1..] {
        assert_eq!(request.target, HELLO);
        assert_eq!(request.header("x-forwarded-proto"), Some("https"));
    }

    // ALPN: HTTP/1.1 when asked for, nothing when not offered
    let tls = handshake(proxy.addr, client_config(&ca.pem, &[b"http/1.1"], false))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let tls = handshake(proxy.addr, client_config(&ca.pem, &[], false))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);

    // plain HTTP on the TLS port is never served
    let plain = send(
        proxy.addr,
        format!("POST {HELLO} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {allowed}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}").as_bytes(),
    )
    .await;
    assert!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "{plain:?}"
    );
    assert_eq!(recorder.count(), 3);
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_spoken() {
    let ca = Ca::new();
    let files = PairFiles::new(&ca.leaf(1, "first"));
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let (upstream, _recorder) = backend().await;
    let proxy = start(upstream, &jwks, |s| s.extra = files.yaml()).await;

    let tls13 = handshake(proxy.addr, client_config(&ca.pem, &[], false))
        .await
        .unwrap();
    assert_eq!(
        tls13.get_ref().1.protocol_version(),
        Some(version::TLS13.version)
    );
    let tls12 = handshake(proxy.addr, client_config(&ca.pem, &[], true))
        .await
        .unwrap();
    assert_eq!(
        tls12.get_ref().1.protocol_version(),
        Some(version::TLS12.version)
    );

    // A ClientHello of TLS 1.1 (no supported_versions extension) gets a
    // fatal protocol_version alert; the same hello saying TLS 1.2 gets a
    // ServerHello.
    let answer = raw_client_hello(proxy.addr, [3, 2]).await;
    assert!(answer.len() >= 7, "{answer:?}");
    assert_eq!(answer[0], 0x15, "an alert record: {answer:?}");
    assert_eq!(
        &answer[5..7],
        &[2, 70],
        "fatal protocol_version: {answer:?}"
    );
    let answer = raw_client_hello(proxy.addr, [3, 3]).await;
    assert_eq!(
        answer.first(),
        Some(&0x16),
        "a handshake record: {answer:?}"
    );
    assert_eq!(answer.get(5), Some(&2), "a ServerHello: {answer:?}");
}

/// Sends a minimal ClientHello with `client_version` and no
/// supported_versions extension; returns what the server answers.
async fn raw_client_hello(addr: SocketAddr, client_version: [u8; 2]) -> Vec<u8> {
    let mut hello = client_version.to_vec();
    hello.extend_from_slice(&[7u8; 32]); // random
    hello.push(0); // no session id
                   // ECDHE-ECDSA-AES128-GCM-SHA256 (TLS 1.2 only), ECDHE-RSA-AES128-SHA
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x13]);
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let extensions: &[u8] = &[
        0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04, // signature_algorithms
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d, // supported_groups: x25519
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
    ];
    hello.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    hello.extend_from_slice(extensions);
    let mut handshake_msg = vec![0x01, 0x00];
    handshake_msg.extend_from_slice(&u16::try_from(hello.len()).unwrap().to_be_bytes());
    handshake_msg.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake_msg.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake_msg);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    answer.truncate(n);
    answer
}

#[tokio::test]
async fn a_renewed_certificate_is_served_and_a_bad_one_refused() {
    let ca = Ca::new();
    let files = PairFiles::new(&ca.leaf(1, "first"));
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let (upstream, recorder) = backend().await;
    let proxy = start(upstream, &jwks, |s| s.extra = files.yaml()).await;
    assert_eq!(served_serial(proxy.addr, &ca.pem).await, "01");

    // renewal: a new pair (new key, serial, name) in the same files
    let started = Instant::now();
    let (cert, key_pem) = ca.leaf(2, "renewed");
    files.write(&cert, &key_pem);
    wait_for_serial(&proxy, &ca.pem, "02").await;
    println!("renewed certificate served after {:?}", started.elapsed());
    eventually("the reload log line", || {
        proxy.logs().contains("TLS certificate reloaded")
    })
    .await;
    assert!(proxy.logs().contains("CN=renewed"), "{}", proxy.logs());
    assert!(
        metric(
            &proxy,
            "zambda_guard_tls_certificate_reloads_total{result=\"ok\"}"
        )
        .await
            >= 1.0
    );

    // a certificate whose key does not match: refused, loudly; 02 stays
    let errors_before = metric(
        &proxy,
        "zambda_guard_tls_certificate_reloads_total{result=\"error\"}",
    )
    .await;
    let (mismatched, _) = ca.leaf(3, "mismatched");
    files.write(&mismatched, &key_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &proxy,
        "zambda_guard_tls_certificate_reloads_total{result=\"error\"}",
    )
    .await
        <= errors_before
    {
        assert!(
            Instant::now() < deadline,
            "no refusal; log:\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = proxy.logs();
    assert!(
        logs.contains("TLS CERTIFICATE RELOAD REFUSED") && logs.contains("does not match"),
        "{logs}"
    );
    assert_eq!(served_serial(proxy.addr, &ca.pem).await, "02");

    // garbage, then an emptied key file: still 02, through a poll cycle
    files.write("not a certificate", "not a key");
    tokio::time::sleep(zambda_guard::reload::POLL_INTERVAL + Duration::from_millis(500)).await;
    assert_eq!(served_serial(proxy.addr, &ca.pem).await, "02");
    assert!(proxy.logs().contains("no certificate"), "{}", proxy.logs());

    // requests still go through on the kept certificate
    let client = https_client(&ca.pem, proxy.addr);
    let r = client
        .post(url(proxy.addr, HELLO))
        .bearer_auth(key.sign(&claims("caller")))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(recorder.count(), 1);

    // and a good pair after the bad ones is taken
    let (cert, key_pem) = ca.leaf(4, "fixed");
    files.write(&cert, &key_pem);
    wait_for_serial(&proxy, &ca.pem, "04").await;
    let expiry = metric(
        &proxy,
        "zambda_guard_tls_certificate_not_after_timestamp_seconds",
    )
    .await;
    assert!(expiry > 4.0e9, "{expiry}");
}

#[tokio::test]
async fn sighup_rereads_the_certificate_when_watching_is_off() {
    let ca = Ca::new();
    let files = PairFiles::new(&ca.leaf(1, "first"));
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let (upstream, _recorder) = backend().await;
    let proxy = start(upstream, &jwks, |s| {
        s.extra = files.yaml();
        s.policies_extra = "  watch: false\n".into();
    })
    .await;
    let (cert, key_pem) = ca.leaf(2, "renewed");
    files.write(&cert, &key_pem);
    tokio::time::sleep(zambda_guard::reload::POLL_INTERVAL + Duration::from_millis(500)).await;
    assert_eq!(served_serial(proxy.addr, &ca.pem).await, "01");
    proxy.signal("HUP");
    wait_for_serial(&proxy, &ca.pem, "02").await;
}

// ---------------------------------------------------------------------------
// A backend behind TLS
// ---------------------------------------------------------------------------

/// A TLS front for a plain backend: terminates TLS with `pair` and pipes
/// the bytes to `plain`. Counts completed handshakes.
async fn tls_backend(
    (cert, key): &(String, String),
    plain: SocketAddr,
) -> (SocketAddr, Arc<AtomicUsize>) {
    pingora::tls::install_default_crypto_provider();
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let done = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, done) = (acceptor.clone(), done.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                done.fetch_add(1, Ordering::SeqCst);
                let Ok(mut inner) = TcpStream::connect(plain).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut inner).await;
            });
        }
    });
    (addr, handshakes)
}

#[tokio::test]
async fn a_tls_backend_is_verified_against_the_configured_ca() {
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let (plain, recorder) = backend().await;
    let pair = self_signed("backend");
    let (upstream, handshakes) = tls_backend(&pair, plain).await;
    let token = key.sign(&claims("caller"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("backend-ca.pem");
    std::fs::write(&ca_file, &pair.0).unwrap();

    // no CA file: the self-signed certificate is not trusted
    let proxy = start(upstream, &jwks, |s| {
        s.upstream_extra = "  tls: true\n".into()
    })
    .await;
    let r = proxy.post(HELLO, Some(&token), &[]).await;
    assert_eq!(r.assert_error(502), "upstream unavailable");
    assert_eq!(recorder.count(), 0);
    assert_eq!(handshakes.load(Ordering::SeqCst), 0);
    drop(proxy);

    // with the CA file: verified (the name is 127.0.0.1, from the address)
    let proxy = start(upstream, &jwks, |s| {
        s.upstream_extra = format!("  tls: true\n  ca_file: {}\n", ca_file.display());
    })
    .await;
    let r = proxy.post(HELLO, Some(&token), &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(recorder.count(), 1);
    assert_eq!(recorder.requests()[0].target, HELLO);
    assert!(handshakes.load(Ordering::SeqCst) >= 1);
    drop(proxy);

    // the right CA but a name the certificate does not carry: refused
    let proxy = start(upstream, &jwks, |s| {
        s.upstream_extra = format!(
            "  tls: true\n  ca_file: {}\n  sni: other.test\n",
            ca_file.display()
        );
    })
    .await;
    let r = proxy.post(HELLO, Some(&token), &[]).await;
    r.assert_error(502);
    assert_eq!(recorder.count(), 1);
    drop(proxy);

    // verification off, by its explicit name only: accepted, and said loudly
    let proxy = start(upstream, &jwks, |s| {
        s.upstream_extra = "  tls: true\n  insecure_skip_verify: true\n".into();
    })
    .await;
    let r = proxy.post(HELLO, Some(&token), &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(recorder.count(), 2);
    let logs = proxy.logs();
    assert!(
        logs.contains("WARN")
            && logs.contains("insecure_skip_verify is true")
            && logs.contains("NOT verified"),
        "{logs}"
    );
}

// ---------------------------------------------------------------------------
// check and run
// ---------------------------------------------------------------------------

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.yaml"), POLICY).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{}\nadmin_listen: 127.0.0.1:{}\nauth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [RS256]\n      public_key_pem_file: {}\npolicies:\n  dir: policies\n{extra}",
            free_port(),
            free_port(),
            key_path("rsa1-public.pem").display()
        ),
    )
    .unwrap();
    config
}

fn zg(args: &[&str], config: &Path) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zambda-guard"));
    command.args(args).arg("--config").arg(config);
    let out = tokio::task::block_in_place(|| {
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `run` with a good config would serve: give it a bounded time
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_run_refuse_a_bad_pair_with_exit_code_2() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = ca.leaf(1, "one");
    let (_, other_key) = ca.leaf(2, "two");
    let files = PairFiles::new(&(cert, other_key));
    let config = write_config(dir.path(), &files.yaml());
    let (code, out) = zg(&["check"], &config);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("tls") && out.contains("does not match"),
        "{out}"
    );
    let (code, out) = zg(&["run"], &config);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does not match"), "{out}");

    // a good pair passes; insecure_skip_verify passes with a warning
    let good = PairFiles::new(&ca.leaf(3, "three"));
    let config = write_config(
        dir.path(),
        &format!(
            "{}upstream:\n  address: 127.0.0.1:8443\n  tls: true\n  insecure_skip_verify: true\n",
            good.yaml()
        ),
    );
    let (code, out) = zg(&["check"], &config);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning:") && out.contains("insecure_skip_verify is true"),
        "{out}"
    );
}
