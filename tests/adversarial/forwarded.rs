//! `X-Forwarded-For` and `X-Forwarded-Proto` behind a load balancer
//! (SPEC §1 `trusted_proxies`): spoofed from an untrusted peer, spoofed to
//! the left of a trusted chain, non-address entries, IPv6 and IPv4-mapped
//! entries. Which client the walk found shows in the per-client rate limit
//! (one request a second, no burst): a second request within the second is
//! refused exactly when it counts as the same client.

use crate::common::*;
use crate::driver::*;
use crate::kit::*;
use crate::*;

/// The main world's proxy with `trusted_proxies` and a per-client limit.
async fn world(jwks: &JwksServer, trusted: &str) -> World {
    let (addr, backend) = backend().await;
    let mut setup = Setup::new(addr, &jwks.url());
    setup.extra = format!(
        "trusted_proxies: {trusted}\nrate_limits:\n  per_client_per_second: 1\n  burst: 1\n"
    );
    let proxy = Proxy::start(setup).await;
    proxy.ready().await;
    World { proxy, backend }
}

/// What one public call came to: its status and, when it was forwarded,
/// the `X-Forwarded-For` and `X-Forwarded-Proto` the backend saw.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    xff: Option<String>,
    proto: Option<String>,
}

async fn call(w: &World, headers: &[(&str, &str)]) -> Seen {
    w.backend.clear();
    let raw = headers
        .iter()
        .fold(post(SLOTS), |r, (name, value)| r.header(name, value))
        .bytes();
    let r = send(w.proxy.addr, &raw).await.unwrap();
    let got = w.backend.requests();
    let seen = |name: &str| {
        got.first()
            .map(|r| r.header_values(name).join(" | "))
            .filter(|v| !v.is_empty())
    };
    Seen {
        status: r.status,
        xff: seen("x-forwarded-for"),
        proto: seen("x-forwarded-proto"),
    }
}

fn seen(status: u16, xff: &str, proto: &str) -> Seen {
    Seen {
        status,
        xff: Some(xff.to_string()),
        proto: Some(proto.to_string()),
    }
}

fn limited() -> Seen {
    Seen {
        status: 429,
        xff: None,
        proto: None,
    }
}

pub async fn forwarded_for_is_believed_only_from_trusted_peers() {
    let jwks = JwksServer::start(&[&SigningKey::rsa1()]).await;
    let xff = "x-forwarded-for";
    let proto = "x-forwarded-proto";

    // The peer (loopback) is not trusted: whatever it claims, it is the
    // client, and its claims are passed on with the peer appended.
    let w = world(&jwks, "[10.0.0.0/8]").await;
    assert_eq!(
        call(&w, &[(xff, "203.0.113.1"), (proto, "https")]).await,
        seen(200, "203.0.113.1, 127.0.0.1", "http"),
        "untrusted: the proto is the listener's"
    );
    assert_eq!(
        call(&w, &[(xff, "203.0.113.2")]).await,
        limited(),
        "untrusted: another claimed address is the same client"
    );

    // The peer is trusted.
    let w = world(&jwks, "[127.0.0.1, 10.0.0.0/8, '::ffff:192.0.2.0/120']").await;
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Headers, Seen)> = vec![
        (
            "the last untrusted entry is the client; its proto is kept",
            vec![(xff, "203.0.113.1"), (proto, "https")],
            seen(200, "203.0.113.1, 127.0.0.1", "https"),
        ),
        (
            "the same client again",
            vec![(xff, "203.0.113.1")],
            limited(),
        ),
        (
            "another client",
            vec![(xff, "203.0.113.2"), (proto, "ftp")],
            seen(200, "203.0.113.2, 127.0.0.1", "http"),
        ),
        (
            "a spoofed entry to the left of the client changes nothing",
            vec![(xff, "198.51.100.66, 203.0.113.2")],
            limited(),
        ),
        (
            "trusted hops are walked past",
            vec![(xff, "203.0.113.3, 10.1.1.1, 10.2.2.2")],
            seen(200, "203.0.113.3, 10.1.1.1, 10.2.2.2, 127.0.0.1", "http"),
        ),
        (
            "two headers are one list",
            vec![(xff, "203.0.113.3"), (xff, "10.1.1.1")],
            limited(),
        ),
        (
            "an IPv4-mapped trusted hop compares as IPv4",
            vec![(xff, "203.0.113.4, ::ffff:192.0.2.9")],
            seen(200, "203.0.113.4, ::ffff:192.0.2.9, 127.0.0.1", "http"),
        ),
        (
            "an IPv4-mapped client is the IPv4 client",
            vec![(xff, "::ffff:203.0.113.4")],
            limited(),
        ),
        (
            "a non-address entry ends the walk at the last trusted address",
            vec![(xff, "203.0.113.5, unknown, 10.3.3.3")],
            seen(200, "203.0.113.5, unknown, 10.3.3.3, 127.0.0.1", "http"),
        ),
        (
            "so the client behind it was not believed",
            vec![(xff, "203.0.113.5")],
            seen(200, "203.0.113.5, 127.0.0.1", "http"),
        ),
        (
            "an address with a port is not an address",
            vec![(xff, "203.0.113.6:4000")],
            seen(200, "203.0.113.6:4000, 127.0.0.1", "http"),
        ),
        (
            "and then the peer itself is the client",
            vec![(xff, "garbage")],
            limited(),
        ),
        (
            "IPv6 clients",
            vec![(xff, "2001:db8:1:2::1")],
            seen(200, "2001:db8:1:2::1, 127.0.0.1", "http"),
        ),
        (
            "one /64 is one client",
            vec![(xff, "2001:db8:1:2:ffff::9")],
            limited(),
        ),
        (
            "the next /64 is another",
            vec![(xff, "2001:db8:1:3::1")],
            seen(200, "2001:db8:1:3::1, 127.0.0.1", "http"),
        ),
    ];
    let mut failed = Vec::new();
    for (name, headers, want) in cases {
        let got = call(&w, &headers).await;
        if got != want {
            failed.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
