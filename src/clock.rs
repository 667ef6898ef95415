//! The one wall clock of the crate: Unix time for token checks, metrics
//! and certificate validity. A clock before 1970 reads as 0.

use std::time::{SystemTime, UNIX_EPOCH};

/// Whole seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the Unix epoch, with fractions, for gauges.
pub fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A stretch of monotonic time: when a step of a request began and ended,
/// for a span drawn after the fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: std::time::Instant,
    pub end: std::time::Instant,
}

impl Interval {
    /// From `start` to now.
    pub fn since(start: std::time::Instant) -> Self {
        Interval {
            start,
            end: std::time::Instant::now(),
        }
    }
}
