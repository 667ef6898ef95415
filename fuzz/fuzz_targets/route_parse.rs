//! `route::parse` on arbitrary request targets.
//!
//! Checks: it never panics; whatever it accepts has a decoded `{zambda}`
//! matching `[A-Za-z0-9_-]+`; the canonical path built from it parses back
//! to the same route and id (so what the proxy forwards is what it decided
//! on); and an accepted target has no dot or empty segment, no encoded
//! separator and no `;` in its path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zambda_guard::route::{self, Reject};

fuzz_target!(|data: &[u8]| {
    for prefix in ["/v1", ""] {
        check(data, prefix);
    }
});

fn check(target: &[u8], prefix: &str) {
    let parsed = match route::parse(target, prefix) {
        Ok(t) => t,
        Err(Reject::TooLong) => {
            assert!(target.len() > route::MAX_TARGET_BYTES);
            return;
        }
        Err(_) => return,
    };
    assert!(
        !parsed.zambda.is_empty() && parsed.zambda.bytes().all(route::is_id_byte),
        "accepted id {:?} from {:?}",
        parsed.zambda,
        String::from_utf8_lossy(target)
    );

    let canonical = route::canonical_path(prefix, &parsed.zambda, parsed.route);
    let again = route::parse(canonical.as_bytes(), prefix)
        .unwrap_or_else(|e| panic!("canonical path {canonical:?} refused: {e:?}"));
    assert_eq!((again.route, &again.zambda), (parsed.route, &parsed.zambda));
    assert_eq!(again.query, None);
    if let Some(query) = parsed.query {
        let with_query = format!("{canonical}?{query}");
        let again = route::parse(with_query.as_bytes(), prefix)
            .unwrap_or_else(|e| panic!("{with_query:?} refused: {e:?}"));
        assert_eq!(
            (again.route, &again.zambda, again.query),
            (parsed.route, &parsed.zambda, Some(query))
        );
    }

    // The path of an accepted target (after any scheme and authority).
    let path = path_of(target);
    let lower = path.to_ascii_lowercase();
    for bad in [&b"%2f"[..], b"%5c", b"\\", b";", b"%00", b"#"] {
        assert!(
            !lower.windows(bad.len()).any(|w| w == bad),
            "accepted {:?} containing {:?}",
            String::from_utf8_lossy(target),
            String::from_utf8_lossy(bad)
        );
    }
    for segment in path.split(|&b| b == b'/').skip(1) {
        let decoded = segment.to_ascii_lowercase();
        let is_dot = matches!(
            decoded.as_slice(),
            b"." | b".." | b"%2e" | b"%2e%2e" | b".%2e" | b"%2e."
        );
        assert!(
            !is_dot,
            "accepted a dot segment in {:?}",
            String::from_utf8_lossy(target)
        );
        assert!(
            !segment.is_empty(),
            "accepted an empty segment in {:?}",
            String::from_utf8_lossy(target)
        );
    }
}

/// The path of an origin-form or absolute-form target, without the query.
fn path_of(target: &[u8]) -> &[u8] {
    let start = if target.first() == Some(&b'/') {
        0
    } else {
        let after_scheme = target
            .windows(3)
            .position(|w| w == b"://")
            .map_or(0, |p| p + 3);
        after_scheme
            + target[after_scheme..]
                .iter()
                .position(|&b| b == b'/')
                .unwrap_or(target.len() - after_scheme)
    };
    let path = &target[start..];
    let end = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
    &path[..end]
}
