//! Time: the clock tollgate and its Stripe simulator share, wall-clock seconds, and the one way
//! tollgate writes a moment for people and APIs (RFC 3339 in UTC, or its date).
//!
//! In production the offset is always zero. In development the simulator's test clock moves it,
//! so advancing simulated time also moves tollgate's notion of "now" (period ends, grace periods,
//! webhook timestamp tolerance).

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

/// Unix seconds, real time plus an offset that only the simulator changes.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
    /// This clock's own error, on top of the shared offset (the simulator's, to run off
    /// tollgate's like Stripe's own clock does); zero for tollgate.
    skew: Arc<AtomicI64>,
}

impl Clock {
    /// A clock at real time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        wall_now() + self.offset.load(Ordering::Relaxed) + self.skew.load(Ordering::Relaxed)
    }

    /// A clock that moves with this one (same test-clock offset) but can be set off from it.
    pub fn with_own_skew(&self) -> Self {
        Self {
            offset: self.offset.clone(),
            skew: Arc::default(),
        }
    }

    /// Sets how far this clock runs ahead (or, negative, behind) of the clock it came from.
    pub fn set_skew(&self, seconds: i64) {
        self.skew.store(seconds, Ordering::Relaxed);
    }

    /// Moves the clock forward by `seconds` (simulator test clock only).
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds.max(0), Ordering::Relaxed);
    }

    /// How far the clock is ahead of real time.
    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }
}

/// Seconds since the Unix epoch by the machine's clock: the one time format in the database.
pub fn wall_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `ts` (Unix seconds) in RFC 3339, UTC; empty when out of range.
pub fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The date of `ts` (Unix seconds), `YYYY-MM-DD` in UTC.
pub fn date(ts: i64) -> String {
    rfc3339(ts).get(..10).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_written_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(date(1_800_000_000), "2027-01-15");
        assert_eq!(rfc3339(i64::MAX), "");
    }
}
