//! Access: what a user's subscriptions entitle them to, computed in one place.
//!
//! Until subscriptions exist every user holds the catalog's free plan (or no access when the
//! catalog has none); the full policy table arrives with the gating work.

use serde::Serialize;

use crate::billing::catalog::Catalog;

/// The `access` object of CONTRACT.md's user JSON.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
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
}

impl Access {
    /// Access of a user with no subscription: the free plan.
    pub fn without_subscription(catalog: &Catalog) -> Self {
        match catalog.free_plan() {
            Some(plan) => Self {
                plan: Some(plan.id.clone()),
                tier: Some(plan.tier),
                features: plan.features.clone(),
                status: "none".into(),
                until: None,
                reason: format!("no subscription: {} plan", plan.name),
            },
            None => Self {
                plan: None,
                tier: None,
                features: vec![],
                status: "none".into(),
                until: None,
                reason: "no subscription and no free plan".into(),
            },
        }
    }
}
