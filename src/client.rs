//! Who the client is behind a load balancer (SPEC §1 precise rules,
//! `trusted_proxies`): CIDR blocks and the right-to-left walk of
//! `X-Forwarded-For`. Pure: addresses and bytes in, an address out.
//!
//! Only a peer listed in `trusted_proxies` is believed about who it speaks
//! for, and then only as far back as the chain stays within trusted
//! addresses: the first untrusted entry from the right is the client, since
//! anything left of it was written by that client and proves nothing.
//! `Forwarded` (RFC 7239) is not read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How many `X-Forwarded-For` entries the walk reads at most.
pub const MAX_HOPS: usize = 32;

/// One CIDR block. An IPv4-mapped IPv6 block is kept as the IPv4 block, so
/// it compares with IPv4 peers and the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address/prefix` or a bare address (= /32 or /128). Host bits
    /// set below the prefix are an error: `10.0.0.1/8` says two things.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => max,
            Some(p_text) => match p_text.parse::<u8>() {
                Ok(p) if p <= max && plain_number(p_text) => p,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        let mapped = match address {
            IpAddr::V6(v6) if prefix >= 96 => v6.to_ipv4_mapped(),
            _ => None,
        };
        let cidr = match mapped {
            Some(v4) => Cidr {
                network: IpAddr::V4(v4),
                prefix: prefix - 96,
            },
            None => Cidr {
                network: address,
                prefix,
            },
        };
        if cidr.masked(cidr.network) != Some(cidr.network) {
            return Err(format!(
                "{text:?} has host bits set below the /{prefix} prefix"
            ));
        }
        Ok(cidr)
    }

    /// True for `0.0.0.0/0` and `::/0`, which trust every peer.
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }

    /// `ip` with the bits below the prefix cleared, when it is of this
    /// block's family.
    fn masked(&self, ip: IpAddr) -> Option<IpAddr> {
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                Some(IpAddr::V4(Ipv4Addr::from(u32::from(ip) & mask)))
            }
            (IpAddr::V6(_), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                Some(IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask)))
            }
            _ => None,
        }
    }

    /// True when `ip` (IPv4-mapped IPv6 read as IPv4) is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.masked(ip.to_canonical()) == Some(self.network)
    }
}

/// A prefix written with a sign or leading zeros (`/+8`, `/08`) is not a
/// prefix length as anyone writes one.
fn plain_number(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'))
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The peers whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted(Vec<Cidr>);

impl Trusted {
    pub fn new(blocks: Vec<Cidr>) -> Self {
        Trusted(blocks)
    }

    pub fn blocks(&self) -> &[Cidr] {
        &self.0
    }

    /// True when `ip` is in a trusted block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client of a request from `peer` carrying the `X-Forwarded-For`
    /// values `forwarded_for` gives (every header, in order, read as one
    /// list; asked for only when the peer is trusted). From an untrusted
    /// peer: the peer. From a trusted one: the first entry from the right
    /// that is not trusted; an entry that is not a bare address ends the
    /// walk at the last trusted address walked, as does the end of the
    /// list or [`MAX_HOPS`] entries. IPv4-mapped addresses come out as
    /// IPv4.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl FnOnce() -> Vec<&'a [u8]>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        let forwarded_for = forwarded_for();
        let entries = forwarded_for
            .iter()
            .rev()
            .flat_map(|value| value.rsplit(|&b| b == b','))
            .take(MAX_HOPS);
        for entry in entries {
            let Some(ip) = bare_address(entry) else {
                return client;
            };
            let ip = ip.to_canonical();
            if !self.contains(ip) {
                return ip;
            }
            client = ip;
        }
        client
    }
}

/// An entry of the list as a bare IPv4 or IPv6 address: no port, no
/// brackets, no zone, only the optional white space around it.
fn bare_address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    text.trim_matches([' ', '\t']).parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_bare_addresses_and_refuse_host_bits() {
        let ok = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3", "10.1.2.3/32"),
            ("::1", "::1/128"),
            ("fd00::/8", "fd00::/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:192.0.2.1", "192.0.2.1/32"),
        ];
        for (text, shown) in ok {
            assert_eq!(Cidr::parse(text).unwrap().to_string(), shown, "{text}");
        }
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "::/129",
            "fd00::1/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "10.0.0/8",
            "example.com",
            "10.0.0.1:80",
            "[::1]",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(Cidr::parse("0.0.0.0/0").unwrap().is_everything());
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().is_everything());
    }

    #[test]
    fn ipv4_mapped_peers_compare_as_ipv4() {
        let block = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(block.contains(ip("10.9.8.7")));
        assert!(block.contains(ip("::ffff:10.9.8.7")));
        assert!(!block.contains(ip("11.0.0.1")));
        assert!(!block.contains(ip("::a09:807")));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
    }

    #[test]
    fn the_walk_goes_right_to_left_to_the_first_untrusted_entry() {
        let trusted = Trusted::new(vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("fd00::/8").unwrap(),
        ]);
        let walk = |peer: &str, xff: &[&str]| {
            let values: Vec<&[u8]> = xff.iter().map(|v| v.as_bytes()).collect();
            trusted.client(ip(peer), || values).to_string()
        };
        // an untrusted peer is the client, whatever it claims
        assert_eq!(walk("198.51.100.9", &["1.2.3.4"]), "198.51.100.9");
        assert_eq!(walk("::ffff:198.51.100.9", &["1.2.3.4"]), "198.51.100.9");
        // a trusted peer without the header: the peer
        assert_eq!(walk("10.0.0.2", &[]), "10.0.0.2");
        // the first untrusted entry from the right; a spoofed left part
        // is ignored
        assert_eq!(walk("10.0.0.2", &["6.6.6.6, 203.0.113.5"]), "203.0.113.5");
        assert_eq!(walk("10.0.0.2", &["203.0.113.5, 10.1.1.1"]), "203.0.113.5");
        // several headers are one list, in order
        assert_eq!(
            walk("10.0.0.2", &["203.0.113.5", "10.1.1.1,10.2.2.2"]),
            "203.0.113.5"
        );
        // every entry trusted: the left-most
        assert_eq!(walk("10.0.0.2", &["10.3.3.3, 10.1.1.1"]), "10.3.3.3");
        // a non-address entry ends the walk at the last trusted address
        assert_eq!(walk("10.0.0.2", &["203.0.113.5, unknown"]), "10.0.0.2");
        assert_eq!(
            walk("10.0.0.2", &["203.0.113.5, 1.2.3.4:80, 10.1.1.1"]),
            "10.1.1.1"
        );
        assert_eq!(
            walk("10.0.0.2", &["203.0.113.5, [::1], 10.1.1.1"]),
            "10.1.1.1"
        );
        assert_eq!(walk("10.0.0.2", &["203.0.113.5,,10.1.1.1"]), "10.1.1.1");
        assert_eq!(walk("10.0.0.2", &["_hidden, 10.1.1.1"]), "10.1.1.1");
        // IPv6 entries, and IPv4-mapped ones read as IPv4
        assert_eq!(walk("fd00::2", &["2001:db8::7, fd00::1"]), "2001:db8::7");
        assert_eq!(walk("10.0.0.2", &["::ffff:203.0.113.5"]), "203.0.113.5");
        assert_eq!(
            walk("10.0.0.2", &["::ffff:10.0.0.9, 203.0.113.5"]),
            "203.0.113.5"
        );
        // white space around entries is optional white space
        assert_eq!(
            walk("10.0.0.2", &[" 203.0.113.5 ,\t10.1.1.1 "]),
            "203.0.113.5"
        );
    }

    #[test]
    fn the_walk_reads_at_most_32_entries() {
        let trusted = Trusted::new(vec![Cidr::parse("10.0.0.0/8").unwrap()]);
        let mut chain = vec!["203.0.113.5".to_string()];
        chain.extend((0..MAX_HOPS).map(|i| format!("10.0.0.{i}")));
        let values: Vec<&[u8]> = chain.iter().map(|v| v.as_bytes()).collect();
        // 32 trusted entries walked, the untrusted 33rd not reached
        assert_eq!(trusted.client(ip("10.9.9.9"), || values), ip("10.0.0.0"));
        let values: Vec<&[u8]> = chain[1..]
            .iter()
            .chain(&chain[..1])
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(trusted.client(ip("10.9.9.9"), || values), ip("203.0.113.5"));
    }
}
