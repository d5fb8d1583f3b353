//! The plan catalog: plans with tiers and features (CONTRACT.md, "The catalog file").
//!
//! Only the demo catalog exists so far; loading `TOLLGATE_PLANS` and prices arrive with the
//! billing work. Access decisions read plans from here, never from hard-coded ids.

use serde::Serialize;

/// One plan.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Stable id used by the API, gates and rules.
    pub id: String,
    /// Name shown to people.
    pub name: String,
    /// Higher tiers include every lower one for plan gates.
    pub tier: i64,
    /// Features of this plan; they do not carry over between plans.
    pub features: Vec<String>,
    /// Whether the plan has no price (at most one free plan).
    #[serde(skip)]
    pub free: bool,
}

/// All plans, ordered by tier.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// The plans.
    pub plans: Vec<Plan>,
}

impl Catalog {
    /// The demo catalog of CONTRACT.md: `free`, `pro` and `team`.
    pub fn demo() -> Self {
        let plan = |id: &str, name: &str, tier, features: &[&str], free| Plan {
            id: id.into(),
            name: name.into(),
            tier,
            features: features.iter().map(|f| f.to_string()).collect(),
            free,
        };
        Self {
            plans: vec![
                plan("free", "Free", 0, &["projects"], true),
                plan("pro", "Pro", 1, &["projects", "export"], false),
                plan("team", "Team", 2, &["projects", "export", "audit"], false),
            ],
        }
    }

    /// The plan a user without a subscription has, if the catalog has one.
    pub fn free_plan(&self) -> Option<&Plan> {
        self.plans.iter().find(|p| p.free)
    }
}
