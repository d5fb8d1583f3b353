//! The settings of running at scale. In `check-config` and README order, last.

use super::{Fallback::Value, Setting};

/// The cache's size.
pub(in crate::config) static SCALE: &[Setting] = &[Setting::new(
    "TOLLGATE_CACHE_ENTRIES",
    "entries the in-process cache holds at most, of each kind: sessions, members (a user with their subscriptions) and credentials; this bounds its memory (measured: about 3 KiB of RSS per signed-in user it holds, a session and a member, so the default costs about 30 MiB), and the least used entries are evicted first; raise it when more users than this are active at once and memory allows (BENCHMARKS.md)",
    Value("10000"),
    |r, c| {
        c.cache_entries = match r.parse::<usize>()? {
            n if (100..=10_000_000).contains(&n) => n,
            _ => return Err(r.error("must be a whole number from 100 to 10000000")),
        };
        Ok(())
    },
    |c| c.cache_entries.to_string(),
)];
