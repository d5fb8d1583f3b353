//! The settings of running at scale. In `check-config` and README order, last.

use super::{Fallback::Value, Setting};

/// The cache's size.
pub(in crate::config) static SCALE: &[Setting] = &[Setting::new(
    "TOLLGATE_CACHE_ENTRIES",
    "entries the in-process cache holds at most, of each kind: sessions, members (a user with their subscriptions) and credentials; this bounds its memory (about 2 KiB per signed-in user seen: a session and a member), and the least used entries are evicted first",
    Value("50000"),
    |r, c| {
        c.cache_entries = match r.parse::<usize>()? {
            n if (100..=10_000_000).contains(&n) => n,
            _ => return Err(r.error("must be a whole number from 100 to 10000000")),
        };
        Ok(())
    },
    |c| c.cache_entries.to_string(),
)];
