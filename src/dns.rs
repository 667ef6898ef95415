//! Upstream host names (SPEC §7): resolved at start, re-resolved in the
//! background, every address used round robin.
//!
//! An [`Address`] is what `upstream.address` names: an IP literal (fixed)
//! or a host name. A name's addresses sit behind an `ArcSwap`: a request
//! takes the current list with one lock-free load and never waits for a
//! lookup; the background refresh swaps a new list in. A lookup that fails
//! or finds nothing keeps the last list, since a resolver hiccup is no
//! reason to stop calling a backend that still answers. Behind a cloud load
//! balancer whose addresses rotate, the refresh is what follows them.
//!
//! Leaf module: it knows no config and no pingora, so `config` can hold it.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// `host:port` as configured, and the addresses it stands for now.
pub struct Address {
    /// As written, for messages and lookups.
    text: String,
    /// `false` for an IP literal: nothing to look up, ever.
    is_name: bool,
    current: ArcSwap<Vec<SocketAddr>>,
    /// Round-robin position: each request starts one further on.
    next: AtomicUsize,
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Address")
            .field("text", &self.text)
            .field("current", &*self.current.load())
            .finish()
    }
}

impl Address {
    /// Parses `host:port` (`[v6]:port` for IPv6) without any lookup: an IP
    /// literal is its one address; a name has none until [`Self::resolve`].
    pub fn parse(text: &str) -> Result<Address, String> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not a host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?}: {port:?} is not a port number"))?;
        let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        let literal = match bracketed {
            Some(inner) => Some(
                inner
                    .parse::<IpAddr>()
                    .map_err(|_| format!("{text:?}: {inner:?} is not an IPv6 address"))?,
            ),
            None => host.parse::<IpAddr>().ok(),
        };
        let is_name = literal.is_none();
        if is_name && !valid_host_name(host) {
            return Err(format!("{text:?}: {host:?} is not a host name"));
        }
        let current = literal
            .map(|ip| SocketAddr::new(ip, port))
            .into_iter()
            .collect();
        Ok(Address {
            text: text.to_string(),
            is_name,
            current: ArcSwap::from_pointee(current),
            next: AtomicUsize::new(0),
        })
    }

    /// A fixed address.
    pub fn fixed(address: SocketAddr) -> Address {
        Address {
            text: address.to_string(),
            is_name: false,
            current: ArcSwap::from_pointee(vec![address]),
            next: AtomicUsize::new(0),
        }
    }

    /// The address as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True when this is a host name (looked up, and refreshed).
    pub fn is_name(&self) -> bool {
        self.is_name
    }

    /// The addresses now; empty only for a name never resolved.
    pub fn addresses(&self) -> Arc<Vec<SocketAddr>> {
        self.current.load_full()
    }

    /// Where a new request starts in the list (round robin).
    pub fn next_start(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The start-up lookup, blocking: a name that resolves to nothing is
    /// an error (the start stops with exit code 2).
    pub fn resolve(&self) -> Result<(), String> {
        if !self.is_name {
            return Ok(());
        }
        let found = self
            .text
            .to_socket_addrs()
            .map_err(|e| format!("{}: cannot resolve: {e}", self.text))?;
        self.install(found.collect())
            .map_err(|()| format!("{}: resolves to no address", self.text))
    }

    /// A background lookup. A failed or empty one keeps the last
    /// addresses and says why.
    pub async fn refresh(&self) -> Result<(), String> {
        if !self.is_name {
            return Ok(());
        }
        let found = tokio::net::lookup_host(self.text.as_str())
            .await
            .map_err(|e| {
                format!(
                    "{}: cannot resolve: {e}; keeping the last addresses",
                    self.text
                )
            })?;
        self.install(found.collect()).map_err(|()| {
            format!(
                "{}: resolves to no address; keeping the last addresses",
                self.text
            )
        })
    }

    /// Swaps a found list in, in a stable order (so an unchanged answer in
    /// another order changes nothing); refuses an empty one.
    fn install(&self, mut found: Vec<SocketAddr>) -> Result<(), ()> {
        found.sort();
        found.dedup();
        if found.is_empty() {
            return Err(());
        }
        if **self.current.load() != found {
            tracing::info!(upstream = %self.text, addresses = ?found, "upstream addresses");
            self.current.store(Arc::new(found));
        }
        Ok(())
    }
}

/// Letters, digits, `-` and `_`, in dot-separated labels of 1 to 63, at
/// most 253 in all.
fn valid_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_fixed_and_names_wait_for_a_lookup() {
        let a = Address::parse("10.0.0.1:8080").unwrap();
        assert!(!a.is_name());
        assert_eq!(*a.addresses(), ["10.0.0.1:8080".parse().unwrap()]);
        let a = Address::parse("[::1]:80").unwrap();
        assert_eq!(*a.addresses(), ["[::1]:80".parse().unwrap()]);
        let a = Address::parse("backend.internal:3000").unwrap();
        assert!(a.is_name());
        assert!(a.addresses().is_empty());
        for bad in [
            "backend",
            "backend:http",
            "[::1:80",
            "a b:80",
            ":80",
            "x..y:80",
            "[nope]:80",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn localhost_resolves_and_a_failed_lookup_keeps_the_last_addresses() {
        let a = Address::parse("localhost:9").unwrap();
        a.resolve().unwrap();
        let found = a.addresses();
        assert!(!found.is_empty());
        assert!(found.iter().all(|s| s.ip().is_loopback() && s.port() == 9));
        // an empty answer is refused and changes nothing
        assert!(a.install(Vec::new()).is_err());
        assert_eq!(a.addresses(), found);
        // the same answer in another order is no change
        let mut reversed = (*found).clone();
        reversed.reverse();
        a.install(reversed).unwrap();
        assert_eq!(a.addresses(), found);
    }

    #[test]
    fn each_request_starts_one_further_on() {
        let a = Address::parse("127.0.0.1:1").unwrap();
        let starts: Vec<usize> = (0..4).map(|_| a.next_start()).collect();
        assert_eq!(starts, [0, 1, 2, 3]);
    }
}
