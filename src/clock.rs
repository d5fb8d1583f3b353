//! The clock tollgate and its Stripe simulator share.
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
        crate::db::now() + self.offset.load(Ordering::Relaxed) + self.skew.load(Ordering::Relaxed)
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
