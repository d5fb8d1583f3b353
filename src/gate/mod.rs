//! Access: what a user's subscriptions entitle them to, computed in one place.
//!
//! | subscription | access |
//! |---|---|
//! | `active`, `trialing` | the subscribed plan |
//! | `active`/`trialing` with cancel at period end or `cancel_at` | the plan until that time, then free |
//! | `past_due` | the plan for `TOLLGATE_PAST_DUE_GRACE_SECS` from the start of the past-due episode, then free |
//! | `incomplete`, `incomplete_expired`, `canceled`, `unpaid`, `paused`, anything unknown | free |
//! | several subscriptions | the highest access wins |
//! | none | the free plan (no access when the catalog has none) |

pub mod enforce;
pub mod forward;
pub mod member;
pub mod tokens;
pub mod watch;

use crate::clock::{date, rfc3339};
use std::sync::Arc;

use axum::{Extension, Json, Router, extract::FromRef, routing::get};
use serde::Serialize;
use serde_json::{Value, json};

pub use enforce::{
    FeatureName, PlanName, RequireFeature, RequirePlan, RequireRole, RoleName, require_feature,
    require_login, require_plan, require_role,
};
pub use member::{AdminUser, BillingUser, CurrentUser, SessionUser, current_user, request_user};

use crate::{
    auth::Auth,
    auth::users::User,
    billing::Billing,
    billing::{
        catalog::Catalog,
        status::Status,
        subscriptions::{self, Row},
    },
    error::AppError,
};

/// The user and their access: from the cache, or in one database round trip (a `LEFT JOIN` of
/// the user's subscriptions), so gating costs nothing beyond loading the signed-in user. A
/// suspended user is `None`, as a deleted one: every session, key and token of theirs is refused.
pub async fn load_member(
    state: &Billing,
    user_id: &str,
) -> Result<Option<(User, Access)>, AppError> {
    Ok(cached_member(state, user_id)
        .await?
        .filter(|member| member.user.suspended_at.is_none())
        .map(|member| (member.user.clone(), access_of(state, &member))))
}

/// The member from the cache, else from the database (and then cached).
async fn cached_member(state: &Billing, user_id: &str) -> Result<Option<Arc<Member>>, AppError> {
    let cache = &state.cache;
    if let Some(member) = cache.member::<Member>(user_id) {
        return Ok(Some(member));
    }
    let ticket = cache.ticket();
    let Some(member) = query_member(state, user_id).await? else {
        return Ok(None);
    };
    let member = Arc::new(member);
    cache.put_member(ticket, user_id, member.clone());
    Ok(Some(member))
}

/// The access of `user_id` now, read from the database (not the cache); `None` for no user.
pub async fn fresh_access(state: &Billing, user_id: &str) -> Result<Option<Access>, AppError> {
    Ok(query_member(state, user_id)
        .await?
        .map(|member| access_of(state, &member)))
}

/// The access `member`'s subscriptions give now.
fn access_of(state: &Billing, member: &Member) -> Access {
    let access = Access::compute(
        &state.catalog,
        &member.subscriptions,
        state.clock.now(),
        state.config.past_due_grace_secs as i64,
    );
    Access {
        roles: member.roles.clone(),
        ..access
    }
}

/// A user and their subscription rows, as the access decision needs them (and as the cache keeps
/// them).
#[derive(Clone, Debug)]
pub struct Member {
    /// The user's row.
    pub user: User,
    /// The user's subscriptions.
    pub subscriptions: Vec<Row>,
    /// The user's roles.
    pub roles: Vec<String>,
}

async fn query_member(state: &Billing, user_id: &str) -> Result<Option<Member>, AppError> {
    let Some(found) = subscriptions::member(&state.db, user_id).await? else {
        return Ok(None);
    };
    let subscriptions = found
        .subscriptions
        .into_iter()
        .map(|s| {
            // The plan follows the price (or its product) by this instance's catalog, not the
            // plan stored when the state was applied, so a catalog change takes effect at once
            // (and instances running different catalogs during a deploy each answer by theirs).
            let plan_id = match &s.price_id {
                Some(price) => state
                    .catalog
                    .plan_for(price, s.product_id.as_deref())
                    .map(|p| p.id.clone()),
                None => s.row.plan_id,
            };
            Row { plan_id, ..s.row }
        })
        .collect();
    Ok(Some(Member {
        user: found.user,
        subscriptions,
        roles: found.roles,
    }))
}

/// The access of `user_id` now (free access for a user that no longer exists).
pub async fn access_for(state: &Billing, user_id: &str) -> Result<Access, AppError> {
    Ok(match cached_member(state, user_id).await? {
        Some(member) => access_of(state, &member),
        None => Access::without_subscription(&state.catalog),
    })
}

/// Forward-auth and the demo routes that make gating visible (docs/api.md's demo routes).
pub fn router<S>(state: Billing) -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    let json = |need: &str| match need {
        "free" => require_login(&state),
        "export" => require_feature(&state, "export"),
        plan => require_plan(&state, plan),
    };
    let mut router = Router::new().route("/auth/forward", get(forward::forward_auth));
    for need in ["free", "pro", "team", "export"] {
        router = router.route(
            &format!("/api/demo/{need}"),
            get(demo_json).route_layer(json(need)),
        );
    }
    router
}

async fn demo_json(
    Extension(member): Extension<crate::gate::CurrentUser>,
    uri: axum::http::Uri,
) -> Json<Value> {
    let area = uri.path().rsplit('/').next().unwrap_or("").to_owned();
    Json(json!({
        "area": area,
        "message": format!("welcome to the {area} area"),
        "plan": member.access.plan,
    }))
}

/// The user JSON (docs/api.md, "Accounts").
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserJson {
    /// Opaque id.
    pub id: String,
    /// As typed.
    pub email: String,
    /// Whether the address was proven.
    pub email_verified: bool,
    /// What the user's subscriptions entitle them to.
    pub access: Access,
}

impl UserJson {
    /// The JSON shape clients see of `user` with `access`.
    pub fn new(user: &User, access: Access) -> Self {
        Self {
            id: user.id.clone(),
            email: user.email.clone(),
            email_verified: user.email_verified,
            access,
        }
    }
}

/// The `access` object of the user JSON (docs/api.md).
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Access {
    /// Plan id, or `None` when the catalog has no free plan and the user no access.
    pub plan: Option<String>,
    /// The plan's tier.
    pub tier: Option<i64>,
    /// The plan's features.
    pub features: Vec<String>,
    /// The Stripe subscription status, or `"none"`.
    pub status: String,
    /// When this access ends if nothing changes (RFC 3339), `None` for the free plan.
    pub until: Option<String>,
    /// Why, for people.
    pub reason: String,
    /// True when the paid access ends at `until` by a scheduled cancellation (not in the JSON:
    /// pages say "cancels on …" from it).
    #[serde(skip)]
    pub cancels: bool,
    /// When the paid access ends for certain if nothing changes (a scheduled cancellation, the
    /// end of a grace period), in Unix seconds; `None` when it goes on (renewals, trials, free).
    /// Not in the JSON: an access token never outlives it.
    #[serde(skip)]
    pub ends_at: Option<i64>,
    /// The user's roles (`admin`, and the product's own), sorted.
    pub roles: Vec<String>,
}

impl Access {
    /// Access of a user with no subscription: the free plan.
    pub fn without_subscription(catalog: &Catalog) -> Self {
        Self::free(catalog, "none", "no subscription".into())
    }

    fn free(catalog: &Catalog, status: &str, why: String) -> Self {
        match catalog.free_plan() {
            Some(plan) => Self {
                plan: Some(plan.id.clone()),
                tier: Some(plan.tier),
                features: plan.features.clone(),
                status: status.into(),
                until: None,
                reason: format!("{why}: {} plan", plan.name),
                cancels: false,
                ends_at: None,
                roles: vec![],
            },
            None => Self {
                plan: None,
                tier: None,
                features: vec![],
                status: status.into(),
                until: None,
                reason: format!("{why}: no access"),
                cancels: false,
                ends_at: None,
                roles: vec![],
            },
        }
    }

    /// The access one subscription gives at `now`.
    fn of(catalog: &Catalog, sub: &Row, now: i64, grace_secs: i64) -> Self {
        let Some(plan) = sub.plan_id.as_deref().and_then(|p| catalog.plan(p)) else {
            return Self::free(
                catalog,
                sub.status.as_str(),
                format!("{} on an unknown price", sub.status),
            );
        };
        let paid = |until: Option<i64>, reason: String| Self {
            plan: Some(plan.id.clone()),
            tier: Some(plan.tier),
            features: plan.features.clone(),
            status: sub.status.to_string(),
            until: until.map(rfc3339),
            reason,
            cancels: false,
            ends_at: None,
            roles: vec![],
        };
        match &sub.status {
            Status::Active | Status::Trialing => {
                let ends = if sub.cancel_at_period_end {
                    sub.cancel_at.or(sub.current_period_end)
                } else {
                    sub.cancel_at
                };
                match ends {
                    Some(end) if now >= end => Self::free(
                        catalog,
                        sub.status.as_str(),
                        format!("{} canceled on {}", plan.name, date(end)),
                    ),
                    Some(end) => Self {
                        cancels: true,
                        ends_at: Some(end),
                        ..paid(
                            Some(end),
                            format!("{}, cancels on {}", sub.status, date(end)),
                        )
                    },
                    None if sub.status == Status::Trialing => {
                        let end = sub.trial_end.or(sub.current_period_end);
                        paid(
                            end,
                            format!("trialing until {}", end.map(date).unwrap_or_default()),
                        )
                    }
                    None => paid(
                        sub.current_period_end,
                        format!(
                            "active, renews on {}",
                            sub.current_period_end.map(date).unwrap_or_default()
                        ),
                    ),
                }
            }
            Status::PastDue => {
                let since = sub.past_due_since.unwrap_or(now);
                let end = since + grace_secs;
                if grace_secs > 0 && now < end {
                    Self {
                        ends_at: Some(end),
                        ..paid(Some(end), format!("past_due, grace until {}", date(end)))
                    }
                } else {
                    Self::free(catalog, "past_due", "past_due, grace period over".into())
                }
            }
            other => Self::free(catalog, other.as_str(), other.to_string()),
        }
    }

    /// The highest access among `subs` at `now` (the free plan when none grants more).
    pub fn compute(catalog: &Catalog, subs: &[Row], now: i64, grace_secs: i64) -> Self {
        let mut best = Self::without_subscription(catalog);
        for sub in subs {
            let access = Self::of(catalog, sub, now, grace_secs);
            let better = match (access.tier, best.tier) {
                (Some(a), Some(b)) => a > b || (a == b && best.status == "none"),
                (Some(_), None) => true,
                _ => false,
            };
            // A subscription that grants no more than free still explains itself when it is the
            // only thing the user has.
            if better || (best.status == "none" && access.tier == best.tier) {
                best = access;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, plan: &str) -> Row {
        Row {
            id: "sub_1".into(),
            status: Status::parse(status),
            plan_id: Some(plan.into()),
            current_period_end: Some(1_000),
            cancel_at_period_end: false,
            cancel_at: None,
            trial_end: None,
            past_due_since: None,
        }
    }

    #[test]
    fn the_policy_table() {
        let c = Catalog::demo();
        let grace = 100;
        let cancels = Row {
            cancel_at_period_end: true,
            cancel_at: Some(1_000),
            ..row("active", "pro")
        };
        let past_due = Row {
            past_due_since: Some(400),
            ..row("past_due", "pro")
        };
        let cases: Vec<(&str, Vec<Row>, i64, Option<&str>)> = vec![
            ("none", vec![], 500, Some("free")),
            ("active", vec![row("active", "pro")], 500, Some("pro")),
            ("trialing", vec![row("trialing", "team")], 500, Some("team")),
            ("cancel before end", vec![cancels.clone()], 999, Some("pro")),
            ("cancel after end", vec![cancels], 1_000, Some("free")),
            (
                "past_due in grace",
                vec![past_due.clone()],
                450,
                Some("pro"),
            ),
            ("past_due after grace", vec![past_due], 500, Some("free")),
            (
                "incomplete",
                vec![row("incomplete", "pro")],
                500,
                Some("free"),
            ),
            (
                "incomplete_expired",
                vec![row("incomplete_expired", "pro")],
                500,
                Some("free"),
            ),
            ("canceled", vec![row("canceled", "pro")], 500, Some("free")),
            ("unpaid", vec![row("unpaid", "pro")], 500, Some("free")),
            ("paused", vec![row("paused", "pro")], 500, Some("free")),
            (
                "unknown",
                vec![row("something_new", "pro")],
                500,
                Some("free"),
            ),
            (
                "highest wins",
                vec![
                    row("active", "pro"),
                    row("active", "team"),
                    row("canceled", "team"),
                ],
                500,
                Some("team"),
            ),
        ];
        for (why, subs, now, plan) in cases {
            let access = Access::compute(&c, &subs, now, grace);
            assert_eq!(access.plan.as_deref(), plan, "{why}: {access:?}");
        }
    }

    #[test]
    fn grace_zero_turns_grace_off() {
        let c = Catalog::demo();
        let past_due = Row {
            past_due_since: Some(400),
            ..row("past_due", "pro")
        };
        assert_eq!(
            Access::compute(&c, &[past_due], 400, 0).plan.as_deref(),
            Some("free")
        );
    }
}
