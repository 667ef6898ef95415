//! The header rules of SPEC §1 that do not depend on the decision: which
//! client headers could pose as the ones the proxy sets, the request id,
//! and the `X-Forwarded-For` chain. Pure functions over bytes, so every
//! door applies the same rules.

use std::net::IpAddr;

/// Headers the proxy sets for the backend; client-sent look-alikes are removed.
pub const ZAMBDA_ID: &str = "x-zambda-id";
pub const ZAMBDA_NAME: &str = "x-zambda-name";
pub const ZAMBDA_ACTOR: &str = "x-zambda-actor";
pub const ZAMBDA_ROLES: &str = "x-zambda-roles";
pub const REQUEST_ID: &str = "x-oystehr-request-id";
/// The project-id headers the Oystehr SDK sends (SPEC §1 check 3).
pub const PROJECT_ID_HEADERS: [&str; 2] = ["x-oystehr-project-id", "x-zapehr-project-id"];

/// The request id ingresses and load balancers set; read when the client
/// sent no usable `x-oystehr-request-id`.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The request id (SPEC §9): the client's `x-oystehr-request-id` (`ours`)
/// when it sent exactly one that is 1–128 characters of `[A-Za-z0-9._:-]`,
/// else its `x-request-id` (`theirs`) under the same rule, else a new UUID.
pub fn request_id<'a>(
    ours: impl Iterator<Item = &'a [u8]>,
    theirs: impl Iterator<Item = &'a [u8]>,
) -> String {
    usable_id(ours)
        .or_else(|| usable_id(theirs))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The one value of a request-id header, when it is a usable id.
fn usable_id<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<String> {
    let (Some(b), None) = (values.next(), values.next()) else {
        return None;
    };
    let usable = !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c));
    // Every byte is ASCII by now.
    usable.then(|| String::from_utf8_lossy(b).into_owned())
}

/// True for a client header that could pose as one the proxy sets or
/// checks: the identity headers and the request id in any case or with `_`
/// or `.` in place of `-`, anything else under `x-zambda-`, and `_`/`.`
/// spellings of the project-id headers (which some backends read as the
/// real ones, though the proxy never checked them). Header names arrive
/// lower-cased. Runs for every forwarded header, so it compares in place.
pub fn is_reserved(name: &str) -> bool {
    let name = name.as_bytes();
    // Every reserved spelling starts with `x` and a separator.
    if name.len() < 3 || !name[0].eq_ignore_ascii_case(&b'x') || normalized(name[1]) != b'-' {
        return false;
    }
    const PREFIX: &str = "x-zambda-";
    (name.len() >= PREFIX.len() && spelled_as(&name[..PREFIX.len()], PREFIX))
        || spelled_as(name, REQUEST_ID)
        || PROJECT_ID_HEADERS
            .iter()
            .any(|real| spelled_as(name, real) && name != real.as_bytes())
}

/// A header-name byte with case and the `_`/`.` separators folded.
fn normalized(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// True when `name` is `want` (lower case, `-` separators) up to case and
/// separator spelling.
fn spelled_as(name: &[u8], want: &str) -> bool {
    name.len() == want.len()
        && name
            .iter()
            .zip(want.bytes())
            .all(|(&b, w)| normalized(b) == w)
}

/// `X-Forwarded-For` with the client address appended to every value
/// received (read as one list); `None` when there is nothing to send.
pub fn forwarded_for<'a>(
    received: impl Iterator<Item = &'a [u8]>,
    client: Option<IpAddr>,
) -> Option<String> {
    let mut all = String::new();
    let hops = received
        .filter_map(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    for hop in hops {
        if !all.is_empty() {
            all.push_str(", ");
        }
        all.push_str(hop);
    }
    if let Some(ip) = client {
        if !all.is_empty() {
            all.push_str(", ");
        }
        push_ip(&mut all, ip);
    }
    (!all.is_empty()).then_some(all)
}

/// Appends `ip` as `Display` writes it; an IPv4 address, the usual case,
/// without the formatting machinery.
fn push_ip(out: &mut String, ip: IpAddr) {
    use std::fmt::Write as _;
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                let digits = [octet / 100, octet / 10 % 10, octet % 10];
                let skip = if octet >= 100 {
                    0
                } else if octet >= 10 {
                    1
                } else {
                    2
                };
                out.extend(digits[skip..].iter().map(|d| char::from(b'0' + d)));
            }
        }
        // Writing to a String cannot fail.
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}
