//! The plan catalog (docs/api.md, "The catalog file"): plans with tiers, features, trials and
//! prices per interval, legacy prices, and the forward-auth rules.
//!
//! It is read once at start-up from `TOLLGATE_PLANS` (or `plans.toml`, or the demo catalog) and
//! validated with errors that name the plan and field: unknown intervals or keys, duplicate ids or
//! tiers, two free plans, rules naming unknown plans or features. Prices are resolved to Stripe
//! price ids at start-up (created in the simulator, or looked up by key in Stripe), after which the
//! catalog never changes. Access decisions read plans from here, never from hard-coded ids.

mod file;

use std::{collections::BTreeMap, fmt};

pub use file::DEMO;

use serde::{Deserialize, Serialize};

/// A billing interval.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// Monthly.
    Month,
    /// Yearly.
    Year,
}

impl Interval {
    /// `month` or `year`.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }

    /// Parses `month` / `year`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "month" => Some(Interval::Month),
            "year" => Some(Interval::Year),
            _ => None,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A price of a plan for one interval.
#[derive(Clone, Debug, Serialize)]
pub struct Price {
    /// What the catalog file says: a Stripe price id, a lookup key, or nothing (simulator).
    #[serde(skip)]
    pub reference: Option<String>,
    /// The Stripe price id, once resolved at start-up.
    #[serde(skip)]
    pub stripe_id: String,
    /// Minor units, for display and for the simulator.
    pub amount: i64,
    /// ISO currency, lower case.
    pub currency: String,
}

/// One plan.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Stable id used by the API, gates and rules.
    pub id: String,
    /// Name shown to people.
    pub name: String,
    /// Higher tiers include every lower one for plan gates.
    pub tier: i64,
    /// Shown as the recommended plan on the pricing page.
    pub highlight: bool,
    /// Features of this plan; they do not carry over between plans.
    pub features: Vec<String>,
    /// Trial granted to a user's first subscription.
    pub trial_days: Option<u32>,
    /// Prices by interval; empty for the free plan.
    pub prices: BTreeMap<Interval, Price>,
    /// Older Stripe prices that still map to this plan; never offered.
    #[serde(skip)]
    pub legacy_prices: Vec<String>,
    /// Stripe products whose every price maps to this plan (unless the price itself is named by
    /// another plan); never offered.
    #[serde(skip)]
    pub products: Vec<String>,
}

impl Plan {
    /// A plan without prices is the free plan.
    pub fn is_free(&self) -> bool {
        self.prices.is_empty()
    }
}

/// What a forward-auth rule requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Anyone.
    Public,
    /// Any signed-in user.
    Login,
    /// At least this plan's tier.
    Plan(String),
    /// This feature.
    Feature(String),
    /// This role (`admin`, or the product's own).
    Role(String),
}

/// A forward-auth rule: a path prefix and what it requires. First match wins.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Path prefix.
    pub path: String,
    /// Requirement.
    pub requires: Requirement,
}

/// A feature as people read it (`[[features]]` in the catalog file).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Feature {
    /// The id plans and rules use.
    pub id: String,
    /// Its name on the pricing page.
    pub name: String,
    /// A sentence about it, if the catalog gives one.
    pub description: Option<String>,
}

/// All plans, ordered by tier, the rules, and the features' names.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// The plans, ascending tier.
    pub plans: Vec<Plan>,
    /// Forward-auth rules in file order.
    pub rules: Vec<Rule>,
    /// The declared features, in file order (empty when the file declares none).
    pub features: Vec<Feature>,
}

/// A catalog that cannot be used, with a message naming the plan and field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CatalogError(pub String);

impl Catalog {
    /// The plan a user without a subscription has, if the catalog has one.
    pub fn free_plan(&self) -> Option<&Plan> {
        self.plans.iter().find(|p| p.is_free())
    }

    /// Every feature any plan has, as people read it: the declared ones in file order, else each
    /// plan's in tier order, named by their ids.
    pub fn feature_list(&self) -> Vec<Feature> {
        if !self.features.is_empty() {
            return self.features.clone();
        }
        let mut seen = std::collections::HashSet::new();
        self.plans
            .iter()
            .flat_map(|p| p.features.iter())
            .filter(|f| seen.insert(f.as_str()))
            .map(|f| Feature {
                id: f.clone(),
                name: f.clone(),
                description: None,
            })
            .collect()
    }

    /// The plan with this id.
    pub fn plan(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// The plan a Stripe price belongs to: the plan that names the price (current or legacy
    /// prices), else the plan that maps the price's product.
    pub fn plan_for(&self, stripe_price: &str, product: Option<&str>) -> Option<&Plan> {
        self.plans
            .iter()
            .find(|p| {
                p.prices
                    .values()
                    .any(|price| price.stripe_id == stripe_price)
                    || p.legacy_prices.iter().any(|l| l == stripe_price)
            })
            .or_else(|| {
                let product = product?;
                self.plans
                    .iter()
                    .find(|p| p.products.iter().any(|x| x == product))
            })
    }

    /// The plan, interval and price the catalog offers for Stripe price `stripe_price` (current
    /// prices only: a legacy price or a mapped product is no offer).
    pub fn offer(&self, stripe_price: &str) -> Option<(&Plan, Interval, &Price)> {
        self.plans.iter().find_map(|p| {
            p.prices
                .iter()
                .find(|(_, pr)| pr.stripe_id == stripe_price)
                .map(|(i, pr)| (p, *i, pr))
        })
    }

    /// Every price with its plan's id and name and its interval, to resolve Stripe ids at
    /// start-up.
    pub fn prices_mut(&mut self) -> impl Iterator<Item = (&str, &str, Interval, &mut Price)> {
        self.plans.iter_mut().flat_map(|p| {
            let (id, name) = (p.id.as_str(), p.name.as_str());
            p.prices
                .iter_mut()
                .map(move |(interval, price)| (id, name, *interval, price))
        })
    }

    /// The lookup key a standalone simulator gives a price the catalog does not name.
    pub fn default_lookup_key(plan_id: &str, interval: Interval) -> String {
        format!("{plan_id}_{interval}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalog_matches_the_contract() {
        let c = Catalog::demo();
        let ids: Vec<_> = c.plans.iter().map(|p| (p.id.as_str(), p.tier)).collect();
        assert_eq!(ids, [("free", 0), ("pro", 1), ("team", 2)]);
        assert_eq!(c.free_plan().unwrap().id, "free");
        assert_eq!(c.plan("pro").unwrap().trial_days, Some(14));
        assert_eq!(
            c.plan("team").unwrap().features,
            ["projects", "export", "audit"]
        );
        assert_eq!(c.plan("pro").unwrap().prices.len(), 2);
    }

    #[test]
    fn invalid_catalogs_are_refused_with_a_named_reason() {
        let plan = |id: &str, tier: i64, prices: &str| {
            format!("[[plans]]\nid = \"{id}\"\nname = \"X\"\ntier = {tier}\n{prices}\n")
        };
        let paid = "[plans.prices.month]\namount = 100\ncurrency = \"usd\"\n";
        let cases = [
            (plan("a", 0, "") + &plan("a", 1, paid), "duplicate id"),
            (plan("a", 0, "") + &plan("b", 0, paid), "duplicate tier"),
            (
                plan("a", 0, "") + &plan("b", 1, ""),
                "more than one free plan",
            ),
            (
                plan(
                    "a",
                    1,
                    "[plans.prices.week]\namount = 1\ncurrency = \"usd\"\n",
                ),
                "unknown interval `week`",
            ),
            (plan("a", 0, "trail_days = 3"), "unknown field"),
            (
                plan("a", 0, "") + "[[rules]]\npath = \"/x/\"\nplan = \"gold\"\n",
                "unknown plan `gold`",
            ),
            (
                plan("a", 0, "") + "[[rules]]\npath = \"/x/\"\nplan = \"a\"\npublic = true\n",
                "exactly one of",
            ),
            (plan("A B", 0, ""), "id must be"),
            (
                plan("a", 1, &format!("products = [\"x\"]\n{paid}")),
                "not a Stripe product id",
            ),
            (
                plan("a", 1, &format!("products = [\"prod_1\"]\n{paid}"))
                    + &plan("b", 2, &format!("products = [\"prod_1\"]\n{paid}")),
                "mapped by more than one plan",
            ),
            (
                plan("a", 0, "products = [\"prod_1\"]"),
                "free plan cannot map products",
            ),
        ];
        for (text, expected) in cases {
            let err = Catalog::parse(&text).expect_err(expected).to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn legacy_prices_map_to_their_plan() {
        let mut c = Catalog::parse(
            "[[plans]]\nid = \"pro\"\nname = \"Pro\"\ntier = 1\nlegacy_prices = [\"price_old\"]\n[plans.prices.month]\nprice = \"price_new\"\namount = 1\ncurrency = \"usd\"\n",
        )
        .unwrap();
        for (_, _, _, price) in c.prices_mut() {
            price.stripe_id = price.reference.clone().unwrap();
        }
        assert_eq!(c.plan_for("price_old", None).unwrap().id, "pro");
        assert_eq!(c.plan_for("price_new", None).unwrap().id, "pro");
        assert!(c.plan_for("price_other", None).is_none());
    }

    #[test]
    fn a_mapped_product_gives_its_plan_unless_another_plan_names_the_price() {
        let mut c = Catalog::parse(
            "[[plans]]\nid = \"pro\"\nname = \"Pro\"\ntier = 1\nproducts = [\"prod_pro\"]\n\
             [plans.prices.month]\nprice = \"price_pro\"\namount = 1\ncurrency = \"usd\"\n\
             [[plans]]\nid = \"team\"\nname = \"Team\"\ntier = 2\nlegacy_prices = [\"price_special\"]\n\
             [plans.prices.month]\nprice = \"price_team\"\namount = 2\ncurrency = \"usd\"\n",
        )
        .unwrap();
        for (_, _, _, price) in c.prices_mut() {
            price.stripe_id = price.reference.clone().unwrap();
        }
        let plan =
            |price: &str, product: Option<&str>| c.plan_for(price, product).map(|p| p.id.clone());
        assert_eq!(
            plan("price_new_pro", Some("prod_pro")).as_deref(),
            Some("pro")
        );
        assert_eq!(
            plan("price_special", Some("prod_pro")).as_deref(),
            Some("team")
        );
        assert_eq!(plan("price_other", Some("prod_other")), None);
        assert_eq!(plan("price_other", None), None);
    }

    #[test]
    fn features_have_names_and_a_plan_cannot_list_an_undeclared_one() {
        let c = Catalog::demo();
        let names: Vec<_> = c.feature_list().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["Projects", "Export", "Audit log"]);
        assert!(c.plan("pro").unwrap().highlight);
        let undeclared = "[[features]]\nid = \"export\"\nname = \"Export\"\n\
             [[plans]]\nid = \"pro\"\nname = \"Pro\"\ntier = 1\nfeatures = [\"exports\"]\n";
        let err = Catalog::parse(undeclared).unwrap_err().to_string();
        assert!(
            err.contains("plan `pro`: feature `exports` is not declared"),
            "{err}"
        );
        let twice =
            "[[features]]\nid = \"a\"\nname = \"A\"\n[[features]]\nid = \"a\"\nname = \"B\"\n";
        assert!(
            Catalog::parse(twice)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
        let paid = "[plans.prices.month]\namount = 100\ncurrency = \"usd\"\n";
        let two_highlights = format!(
            "[[plans]]\nid = \"a\"\nname = \"A\"\ntier = 1\nhighlight = true\n{paid}\
             [[plans]]\nid = \"b\"\nname = \"B\"\ntier = 2\nhighlight = true\n{paid}"
        );
        assert!(
            Catalog::parse(&two_highlights)
                .unwrap_err()
                .to_string()
                .contains("highlight")
        );
        // Without [[features]], features are shown by their ids, each once.
        let plain = Catalog::parse(&format!(
            "[[plans]]\nid = \"a\"\nname = \"A\"\ntier = 1\nfeatures = [\"x\", \"y\"]\n\
             [[plans]]\nid = \"b\"\nname = \"B\"\ntier = 2\nfeatures = [\"y\", \"z\"]\n{paid}"
        ))
        .unwrap();
        let ids: Vec<_> = plain.feature_list().into_iter().map(|f| f.name).collect();
        assert_eq!(ids, ["x", "y", "z"]);
    }
}
