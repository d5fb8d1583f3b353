//! The settings of in-app plan changes. In `check-config` and README order, after the devices'.

use super::{Fallback::Value, Setting};

/// The plan-change settings, and how long the audit trail is kept.
pub(in crate::config) static BILLING: &[Setting] = &[
    Setting::new(
        "TOLLGATE_DOWNGRADES_AT",
        "when an in-app downgrade (a lower tier, or yearly to monthly) takes effect: `period_end` (the plan paid for runs to its end, then the cheaper price starts) or `now` (at once, the unused time credited to the next invoices); upgrades always take effect at once",
        Value("period_end"),
        |r, c| {
            c.downgrades_at_period_end = match r.value.as_deref() {
                None | Some("period_end") => true,
                Some("now") => false,
                Some(_) => return Err(r.error("must be `period_end` or `now`")),
            };
            Ok(())
        },
        |c| {
            if c.downgrades_at_period_end {
                "period_end".into()
            } else {
                "now".into()
            }
        },
    ),
    Setting::new(
        "TOLLGATE_AUDIT_RETENTION_DAYS",
        "days the audit trail (security and billing events) is kept; older events are removed with the periodic clean-up (every ten minutes) and by `tollgate audit prune`",
        Value("365"),
        |r, c| {
            c.audit_retention_days = match r.parse::<i64>()? {
                n if n >= 1 => n,
                _ => return Err(r.error("must be a whole number of days, at least 1")),
            };
            Ok(())
        },
        |c| c.audit_retention_days.to_string(),
    ),
];
