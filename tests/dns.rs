//! Upstream host names (SPEC §7) against a name the test controls: the
//! binary runs in a private mount namespace (`unshare -m`) whose
//! `/etc/hosts` and `/etc/resolv.conf` are bind-mounted files of the test,
//! so nothing changes for anyone else on the machine. The hosts file is
//! rewritten in place to rotate the name's addresses; the resolver file
//! names a loopback address with no DNS server, so a name missing from the
//! hosts file fails at once.
//!
//! Backends listen on 127.0.0.2 and 127.0.0.3 (all of 127/8 is loopback);
//! 127.0.0.4 has nothing listening, as a dead address.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use zambda_guard::echo::{self, Behaviour};

const NAME: &str = "backend.zg.test";
const PUBLIC: &str = "/v1/zambda/appointment-slots/execute-public";

/// Starts `zambda-guard run` inside its own mount namespace, with `hosts`
/// as its `/etc/hosts`.
fn spawn_in_namespace(dir: &Path, hosts: &Path, config: &Path) -> Child {
    let resolv = dir.join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.9\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf && exec \"$3\" run --config \"$4\"",
            "sh",
        ])
        .arg(hosts)
        .arg(&resolv)
        .arg(env!("CARGO_BIN_EXE_zambda-guard"))
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("proxy.log")).unwrap())
        .spawn()
        .expect("unshare (util-linux) runs the proxy in a mount namespace")
}

/// The config: `upstream` as the default upstream, `extra` at the top
/// level, the shipped example policies unless `policies` names others.
fn write_config(
    dir: &Path,
    jwks: &str,
    upstream: &str,
    (listen, admin): (SocketAddr, SocketAddr),
    policies: Option<&Path>,
    extra: &str,
) {
    let policies = policies.map_or_else(|| repo().join("policies"), Path::to_path_buf);
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "listen: {listen}\nadmin_listen: {admin}\n\
             upstream:\n  address: {upstream}\n  dns_refresh_seconds: 1\n  connect_timeout_ms: 500\n\
             auth:\n  issuers:\n    - issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      \
             algorithms: [RS256]\n      jwks_url: {jwks}\npolicies:\n  dir: {}\n\
             shutdown:\n  grace_period_seconds: 0\n  drain_timeout_seconds: 1\n  upgrade_sock: upgrade.sock\n{extra}",
            policies.display()
        ),
    )
    .unwrap();
}

/// Waits until `/readyz` answers 200 (10 s at most).
async fn ready(dir: &Path, admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !get(admin, "/readyz").await.is_ok_and(|r| r.status == 200) {
        assert!(
            Instant::now() < deadline,
            "not ready: {}",
            std::fs::read_to_string(dir.join("proxy.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn public_call(proxy: SocketAddr) -> u16 {
    let raw = format!(
        "POST {PUBLIC} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    );
    send(proxy, raw.as_bytes()).await.unwrap().status
}

/// Calls until `done` holds of (calls to a, calls to b), 10 s at most.
async fn until(
    proxy: SocketAddr,
    a: &zambda_guard::echo::Recorder,
    b: &zambda_guard::echo::Recorder,
    what: &str,
    done: impl Fn(usize, usize) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(a.count(), b.count()) {
        assert_eq!(public_call(proxy).await, 200, "{what}");
        assert!(Instant::now() < deadline, "{what}: never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the proxy's log contains `text` (10 s at most).
async fn log_says(dir: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
        if log.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "log never said {text:?}:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_rotated_upstream_address_is_followed() {
    let port = free_port();
    let (_, a) = echo::serve(
        SocketAddr::from(([127, 0, 0, 2], port)),
        Behaviour::default(),
    )
    .await
    .unwrap();
    let (_, b) = echo::serve(
        SocketAddr::from(([127, 0, 0, 3], port)),
        Behaviour::default(),
    )
    .await
    .unwrap();
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let entries = |ips: &[&str]| -> String {
        let mut text = "127.0.0.1 localhost\n".to_string();
        for ip in ips {
            text.push_str(&format!("{ip} {NAME}\n"));
        }
        text
    };
    // Written in place (same inode), so the bind mount sees every version.
    let point = |ips: &[&str]| std::fs::write(&hosts, entries(ips)).unwrap();

    // A name that does not resolve stops the start with exit code 2.
    point(&[]);
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    write_config(
        dir.path(),
        &jwks.url(),
        &format!("{NAME}:{port}"),
        (listen, admin),
        None,
        "",
    );
    let config = dir.path().join("config.yaml");
    let status = spawn_in_namespace(dir.path(), &hosts, &config)
        .wait()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!("upstream.address: {NAME}:{port}")),
        "{log}"
    );

    // One address: every call goes there.
    point(&["127.0.0.2"]);
    let mut child = spawn_in_namespace(dir.path(), &hosts, &config);
    ready(dir.path(), admin).await;
    for _ in 0..4 {
        assert_eq!(public_call(listen).await, 200);
    }
    assert_eq!((a.count(), b.count()), (4, 0));

    // Rotated: the new address is followed within a refresh or two.
    point(&["127.0.0.3"]);
    until(listen, &a, &b, "rotation to b", |_, b| b > 0).await;
    let before = (a.count(), b.count());
    for _ in 0..4 {
        assert_eq!(public_call(listen).await, 200);
    }
    assert_eq!((a.count(), b.count()), (before.0, before.1 + 4));

    // Two addresses: round robin over both.
    point(&["127.0.0.2", "127.0.0.3"]);
    until(listen, &a, &b, "both addresses", |a, _| a > before.0).await;
    let before = (a.count(), b.count());
    for _ in 0..10 {
        assert_eq!(public_call(listen).await, 200);
    }
    assert_eq!((a.count() - before.0, b.count() - before.1), (5, 5));

    // A dead address among them: its connection fails, the next address
    // takes the request, and every call is answered.
    point(&["127.0.0.2", "127.0.0.4"]);
    log_says(dir.path(), "127.0.0.4").await;
    let before = (a.count(), b.count());
    for _ in 0..6 {
        assert_eq!(public_call(listen).await, 200);
    }
    assert_eq!((a.count() - before.0, b.count() - before.1), (6, 0));

    // The name gone: the last addresses stay in use.
    point(&[]);
    log_says(dir.path(), "keeping the last addresses").await;
    let before = a.count();
    for _ in 0..4 {
        assert_eq!(public_call(listen).await, 200);
    }
    assert_eq!(a.count() - before, 4);

    let _ = child.kill();
    let _ = child.wait();
}

/// A named upstream's host name is resolved at start and followed the
/// same way.
#[tokio::test]
async fn a_named_upstream_follows_its_name_too() {
    let port = free_port();
    let (_, a) = echo::serve(
        SocketAddr::from(([127, 0, 0, 2], port)),
        Behaviour::default(),
    )
    .await
    .unwrap();
    let (_, b) = echo::serve(
        SocketAddr::from(([127, 0, 0, 3], port)),
        Behaviour::default(),
    )
    .await
    .unwrap();
    let key = SigningKey::rsa1();
    let jwks = JwksServer::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("catalog.yaml"),
        "zambdas:\n  - {id: z-open, name: open, type: public, upstream: labs}\n",
    )
    .unwrap();
    let hosts = dir.path().join("hosts");
    let point = |ip: Option<&str>| {
        let mut text = "127.0.0.1 localhost\n".to_string();
        if let Some(ip) = ip {
            text.push_str(&format!("{ip} {NAME}\n"));
        }
        std::fs::write(&hosts, text).unwrap();
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // the default upstream is a literal; the named one is a name
    write_config(
        dir.path(),
        &jwks.url(),
        "127.0.0.1:9",
        (listen, admin),
        Some(&policies),
        &format!("upstreams:\n  labs:\n    addresses: [{NAME}:{port}]\n"),
    );
    let config = dir.path().join("config.yaml");

    point(None);
    let status = spawn_in_namespace(dir.path(), &hosts, &config)
        .wait()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!("upstreams.labs.addresses: {NAME}:{port}")),
        "{log}"
    );

    point(Some("127.0.0.2"));
    let mut child = spawn_in_namespace(dir.path(), &hosts, &config);
    ready(dir.path(), admin).await;
    let open = |proxy| async move {
        let raw = "POST /v1/zambda/open/execute-public HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
        send(proxy, raw.as_bytes()).await.unwrap().status
    };
    for _ in 0..3 {
        assert_eq!(open(listen).await, 200);
    }
    assert_eq!((a.count(), b.count()), (3, 0));

    point(Some("127.0.0.3"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.count() == 0 {
        assert_eq!(open(listen).await, 200);
        assert!(
            Instant::now() < deadline,
            "the named upstream never followed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = a.count();
    for _ in 0..3 {
        assert_eq!(open(listen).await, 200);
    }
    assert_eq!(a.count(), before, "the old address is no longer used");

    let _ = child.kill();
    let _ = child.wait();
}
