//! The access watch: every few seconds, each instance looks again at the users whose
//! subscriptions changed, or whose access may have ended by time alone (a grace period, a
//! scheduled cancellation, a trial), and compares the access they have now with the access last
//! seen (`access_states`). A difference is recorded once, as audit events in the transaction that
//! records the new state: `billing.access_granted` (a higher plan) or `billing.access_revoked` (a
//! lower one, or none), `billing.grace_started` and `billing.grace_ended`. One instance looks at
//! a time (a lease), so instances whose catalogs or clocks differ during a deploy do not flip
//! each other's view back and forth; and a compare-and-set on the row's version records a change
//! once even when two look at once (a lease that lapsed).

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use sqlx::AnyConnection;

use super::Access;
use crate::{
    audit::{self, Kind},
    billing::{
        Billing,
        subscriptions::{self, Changed},
    },
    db,
    error::AppError,
};

/// How often each instance looks.
const EVERY: Duration = Duration::from_secs(5);
/// How far back each look reaches beyond the last one: instances' clocks differ a little.
const MARGIN_SECS: i64 = 60;

/// What the watch compares: the plan and whether it is held in a grace period.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    plan: Option<String>,
    in_grace: bool,
}

impl Seen {
    fn of(access: &Access) -> Self {
        Self {
            plan: access.plan.clone(),
            in_grace: access.status == "past_due" && access.ends_at.is_some(),
        }
    }
}

/// Looks every few seconds, forever.
pub async fn run_forever(state: Billing) {
    let mut watch = Watch::default();
    loop {
        if let Err(e) = watch.sweep(&state).await {
            tracing::warn!(error = %e, "the access watch could not look");
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// This process, as the holder of the watch's lease.
static OWNER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| crate::ids::new_id("ins"));
/// How long the lease lasts without a look renewing it.
const LEASE_SECS: i64 = 30;

/// One instance's watch: what it has already looked at.
#[derive(Debug, Default)]
pub struct Watch {
    /// The changed subscriptions found by the last look, each as it was then (which change,
    /// written when): a look reaches a minute back for instances' clocks, so it finds each change
    /// about a dozen times, and looks at its user only the first time.
    looked: HashMap<String, Changed>,
}

impl Watch {
    /// One look, if this instance holds the lease (taking it when it is free or lapsed).
    pub async fn sweep(&mut self, state: &Billing) -> Result<Look, AppError> {
        sweep(state, &mut self.looked).await
    }
}

/// What one look did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// How many users' access it compared with the access last seen.
    pub users: usize,
    /// How many of them had a change, which it recorded.
    pub changed: usize,
}

async fn sweep(state: &Billing, looked: &mut HashMap<String, Changed>) -> Result<Look, AppError> {
    let (now, wall) = (state.clock.now(), db::now());
    let (from, changed_since) = last_sweep(state, now, wall).await?;
    let held = sqlx::query(
        "UPDATE access_sweeps SET owner = $1, lease_until = $2 \
         WHERE name = 'access' AND (owner = $1 OR lease_until < $3)",
    )
    .bind(OWNER.as_str())
    .bind(wall + LEASE_SECS)
    .bind(wall)
    .execute(&state.db.pool)
    .await?
    .rows_affected()
        == 1;
    if !held {
        return Ok(Look::default());
    }
    let grace = state.config.past_due_grace_secs as i64;
    let found = subscriptions::to_recheck(
        &state.db,
        changed_since - MARGIN_SECS,
        from - MARGIN_SECS,
        now,
        grace,
    )
    .await?;
    let mut users: BTreeSet<&str> = found.timed.iter().map(String::as_str).collect();
    users.extend(
        found
            .changed
            .iter()
            .filter(|c| looked.get(&c.id) != Some(c))
            .map(|c| c.user_id.as_str()),
    );
    let mut look = Look::default();
    for user in users {
        look.users += 1;
        look.changed += usize::from(check(state, user).await?);
    }
    // Every change found has been looked at, by this look or an earlier one; the rows older than
    // the margin are not found again and are forgotten.
    *looked = found
        .changed
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    sqlx::query(
        "UPDATE access_sweeps SET clock_at = $1, wall_at = $2 WHERE name = 'access' AND owner = $3",
    )
    .bind(now)
    .bind(wall)
    .bind(OWNER.as_str())
    .execute(&state.db.pool)
    .await?;
    Ok(look)
}

/// Where the last look got to (Stripe's clock, the wall clock): now, at the first look.
async fn last_sweep(state: &Billing, now: i64, wall: i64) -> sqlx::Result<(i64, i64)> {
    let found: Option<(i64, i64)> =
        sqlx::query_as("SELECT clock_at, wall_at FROM access_sweeps WHERE name = 'access'")
            .fetch_optional(&state.db.pool)
            .await?;
    if let Some(last) = found {
        return Ok(last);
    }
    // The first look on this database: the row is written once, not at every look.
    sqlx::query(
        "INSERT INTO access_sweeps (name, clock_at, wall_at, lease_until) \
         VALUES ('access', $1, $2, 0) ON CONFLICT (name) DO NOTHING",
    )
    .bind(now)
    .bind(wall)
    .execute(&state.db.pool)
    .await?;
    Ok((now, wall))
}

/// Compares `user`'s access now with the access last seen, and records a change; whether there
/// was one (that this instance recorded).
pub async fn check(state: &Billing, user: &str) -> Result<bool, AppError> {
    let Some(access) = super::fresh_access(state, user).await? else {
        return Ok(false);
    };
    let now_seen = Seen::of(&access);
    let stored: Option<(Option<String>, i64, i64)> =
        sqlx::query_as("SELECT plan, in_grace, version FROM access_states WHERE user_id = $1")
            .bind(user)
            .fetch_optional(&state.db.pool)
            .await?;
    // No row: what every account starts with, the free plan (or none) and no grace.
    let free = state.catalog.free_plan().map(|p| p.id.clone());
    let (before, version) = match stored {
        Some((plan, in_grace, version)) => (
            Seen {
                plan,
                in_grace: in_grace != 0,
            },
            Some(version),
        ),
        None => (
            Seen {
                plan: free,
                in_grace: false,
            },
            None,
        ),
    };
    if before == now_seen {
        return Ok(false);
    }
    let at = state.clock.now();
    let mut tx = state.db.begin().await?;
    if !store(&mut tx, user, &now_seen, version, at).await? {
        return Ok(false);
    }
    for (kind, payload) in events(state, &before, &now_seen, &access) {
        let entry = audit::Entry {
            kind,
            actor: "system",
            subject: Some(user),
            payload,
        };
        audit::record(&mut tx, at, entry).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Writes the new state if the row is still at `version` (or still absent); false when another
/// instance got there first.
async fn store(
    conn: &mut AnyConnection,
    user: &str,
    seen: &Seen,
    version: Option<i64>,
    at: i64,
) -> sqlx::Result<bool> {
    let done = match version {
        None => {
            sqlx::query(
                "INSERT INTO access_states (user_id, plan, in_grace, version, seen_at) \
                 VALUES ($1, $2, $3, 1, $4) ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(user)
            .bind(&seen.plan)
            .bind(i64::from(seen.in_grace))
            .bind(at)
            .execute(&mut *conn)
            .await?
        }
        Some(version) => {
            sqlx::query(
                "UPDATE access_states SET plan = $1, in_grace = $2, version = version + 1, \
                 seen_at = $3 WHERE user_id = $4 AND version = $5",
            )
            .bind(&seen.plan)
            .bind(i64::from(seen.in_grace))
            .bind(at)
            .bind(user)
            .bind(version)
            .execute(&mut *conn)
            .await?
        }
    };
    Ok(done.rows_affected() == 1)
}

/// The events from `before` to `after`: the grace period's, then the plan's.
fn events(
    state: &Billing,
    before: &Seen,
    after: &Seen,
    access: &Access,
) -> Vec<(Kind, serde_json::Value)> {
    let mut out = vec![];
    match (before.in_grace, after.in_grace) {
        (false, true) => out.push((
            Kind::GraceStarted,
            serde_json::json!({"plan": after.plan, "until": access.until}),
        )),
        (true, false) => {
            // Paid (the plan stays), or over (the plan went with it).
            let how = if after.plan == before.plan {
                "paid"
            } else {
                "expired"
            };
            out.push((
                Kind::GraceEnded,
                serde_json::json!({"plan": before.plan, "how": how}),
            ));
        }
        _ => {}
    }
    if before.plan != after.plan {
        let tier = |plan: &Option<String>| {
            plan.as_deref()
                .and_then(|p| state.catalog.plan(p))
                .map_or(i64::MIN, |p| p.tier)
        };
        let kind = if tier(&after.plan) > tier(&before.plan) {
            Kind::AccessGranted
        } else {
            Kind::AccessRevoked
        };
        out.push((
            kind,
            serde_json::json!({"from": before.plan, "to": after.plan, "status": access.status}),
        ));
    }
    out
}
