//! The catalog file: its TOML shape, the demo catalog, and parsing with errors that name the plan
//! and field.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{Catalog, CatalogError, Feature, Interval, Plan, Price, Requirement, Rule};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    features: Vec<FeatureSpec>,
    #[serde(default)]
    plans: Vec<PlanSpec>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureSpec {
    id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanSpec {
    id: String,
    name: String,
    tier: i64,
    #[serde(default)]
    highlight: bool,
    #[serde(default)]
    features: Vec<String>,
    trial_days: Option<u32>,
    #[serde(default)]
    legacy_prices: Vec<String>,
    #[serde(default)]
    products: Vec<String>,
    #[serde(default)]
    prices: BTreeMap<String, PriceSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceSpec {
    price: Option<String>,
    amount: i64,
    currency: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    path: String,
    plan: Option<String>,
    feature: Option<String>,
    public: Option<bool>,
    login: Option<bool>,
    role: Option<String>,
}

/// The demo catalog of docs/api.md, in the catalog file format.
pub const DEMO: &str = r#"
[[features]]
id = "projects"
name = "Projects"
description = "Create projects and share them with your team."

[[features]]
id = "export"
name = "Export"
description = "Download your data as CSV or JSON."

[[features]]
id = "audit"
name = "Audit log"
description = "See who changed what, and when."

[[plans]]
id = "free"
name = "Free"
tier = 0
features = ["projects"]

[[plans]]
id = "pro"
name = "Pro"
tier = 1
features = ["projects", "export"]
trial_days = 14
highlight = true

[plans.prices.month]
amount = 1900
currency = "usd"

[plans.prices.year]
amount = 19000
currency = "usd"

[[plans]]
id = "team"
name = "Team"
tier = 2
features = ["projects", "export", "audit"]

[plans.prices.month]
amount = 4900
currency = "usd"

[plans.prices.year]
amount = 49000
currency = "usd"

[[rules]]
path = "/pro/"
plan = "pro"

[[rules]]
path = "/team/"
plan = "team"

[[rules]]
path = "/export/"
feature = "export"

[[rules]]
path = "/public/"
public = true
"#;

impl Catalog {
    /// The demo catalog.
    pub fn demo() -> Self {
        Self::parse(DEMO).expect("the demo catalog is valid")
    }

    /// Loads `path`; `None` means `plans.toml` if present, else the demo catalog.
    pub fn load(path: Option<&str>) -> Result<Self, CatalogError> {
        let (path, required) = match path {
            Some(p) => (p.to_owned(), true),
            None => ("plans.toml".to_owned(), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map_err(|e| CatalogError(format!("{path}: {e}"))),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(Self::demo()),
            Err(e) => Err(CatalogError(format!("cannot read {path}: {e}"))),
        }
    }

    /// Parses and validates catalog text.
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        let spec: FileSpec = toml::from_str(text).map_err(|e| CatalogError(e.to_string()))?;
        let mut plans = Vec::new();
        let (mut ids, mut tiers) = (HashSet::new(), HashSet::new());
        for p in spec.plans {
            let at = format!("plan `{}`", p.id);
            if p.id.is_empty()
                || !p
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                return Err(CatalogError(format!(
                    "{at}: id must be lower-case letters, digits, `-` or `_`"
                )));
            }
            if !ids.insert(p.id.clone()) {
                return Err(CatalogError(format!("{at}: duplicate id")));
            }
            if !tiers.insert(p.tier) {
                return Err(CatalogError(format!("{at}: duplicate tier {}", p.tier)));
            }
            plans.push(Plan {
                prices: parse_prices(&at, p.prices)?,
                id: p.id,
                name: p.name,
                tier: p.tier,
                highlight: p.highlight,
                features: p.features,
                trial_days: p.trial_days.filter(|d| *d > 0),
                legacy_prices: p.legacy_prices,
                products: p.products,
            });
        }
        check_products(&plans)?;
        if plans.iter().filter(|p| p.is_free()).count() > 1 {
            return Err(CatalogError(
                "more than one free plan (a plan without prices); at most one is allowed".into(),
            ));
        }
        if plans.iter().filter(|p| p.highlight).count() > 1 {
            return Err(CatalogError(
                "more than one plan has `highlight = true`; at most one is allowed".into(),
            ));
        }
        plans.sort_by_key(|p| p.tier);
        let declared = parse_features(spec.features, &plans)?;
        let features: HashSet<&str> = plans
            .iter()
            .flat_map(|p| p.features.iter().map(String::as_str))
            .collect();
        let rules = spec
            .rules
            .into_iter()
            .map(|r| parse_rule(r, &ids, &features))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            plans,
            rules,
            features: declared,
        })
    }
}

/// The `[[features]]` table: each id once, with a name; once there is one, every feature a plan
/// lists must be declared (a typo is an error, not a feature nobody has).
fn parse_features(specs: Vec<FeatureSpec>, plans: &[Plan]) -> Result<Vec<Feature>, CatalogError> {
    let mut seen = HashSet::new();
    let mut features = Vec::new();
    for f in specs {
        let at = format!("feature `{}`", f.id);
        if f.id.is_empty() || f.name.trim().is_empty() {
            return Err(CatalogError(format!("{at}: needs an id and a name")));
        }
        if !seen.insert(f.id.clone()) {
            return Err(CatalogError(format!("{at}: duplicate id")));
        }
        features.push(Feature {
            id: f.id,
            name: f.name,
            description: f.description.filter(|d| !d.trim().is_empty()),
        });
    }
    if !features.is_empty() {
        for plan in plans {
            if let Some(missing) = plan.features.iter().find(|f| !seen.contains(*f)) {
                return Err(CatalogError(format!(
                    "plan `{}`: feature `{missing}` is not declared in [[features]]",
                    plan.id
                )));
            }
        }
    }
    Ok(features)
}

/// A plan's prices by interval (`at` names the plan in errors).
fn parse_prices(
    at: &str,
    specs: BTreeMap<String, PriceSpec>,
) -> Result<BTreeMap<Interval, Price>, CatalogError> {
    let mut prices = BTreeMap::new();
    for (interval, price) in specs {
        let parsed = Interval::parse(&interval).ok_or_else(|| {
            CatalogError(format!(
                "{at}: unknown interval `{interval}` (use `month` or `year`)"
            ))
        })?;
        if price.amount < 0 {
            return Err(CatalogError(format!("{at}: {interval} amount is negative")));
        }
        if price.currency.len() != 3 || !price.currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(CatalogError(format!(
                "{at}: {interval} currency must be a three-letter code"
            )));
        }
        prices.insert(
            parsed,
            Price {
                reference: price.price.filter(|s| !s.is_empty()),
                stripe_id: String::new(),
                amount: price.amount,
                currency: price.currency.to_ascii_lowercase(),
            },
        );
    }
    Ok(prices)
}

/// Products mapped to plans are Stripe product ids, on paid plans, each mapped once.
fn check_products(plans: &[Plan]) -> Result<(), CatalogError> {
    let mut products = HashSet::new();
    for (plan, product) in plans
        .iter()
        .flat_map(|p| p.products.iter().map(move |x| (p, x)))
    {
        if !product.starts_with("prod_") {
            return Err(CatalogError(format!(
                "plan `{}`: products: `{product}` is not a Stripe product id (prod_…)",
                plan.id
            )));
        }
        if plan.is_free() {
            return Err(CatalogError(format!(
                "plan `{}`: the free plan cannot map products",
                plan.id
            )));
        }
        if !products.insert(product.as_str()) {
            return Err(CatalogError(format!(
                "plan `{}`: product `{product}` is mapped by more than one plan",
                plan.id
            )));
        }
    }
    Ok(())
}

/// A rule, whose plan or feature must exist in the catalog.
fn parse_rule(
    r: RuleSpec,
    plans: &HashSet<String>,
    features: &HashSet<&str>,
) -> Result<Rule, CatalogError> {
    let at = format!("rule `{}`", r.path);
    if !r.path.starts_with('/') {
        return Err(CatalogError(format!("{at}: path must start with `/`")));
    }
    let requires = match (r.plan, r.feature, r.public, r.login, r.role) {
        (None, None, None, None, Some(role)) => {
            if !crate::auth::roles::valid(&role) {
                return Err(CatalogError(format!("{at}: `{role}` is not a role name")));
            }
            Requirement::Role(role)
        }
        (Some(plan), None, None, None, None) => {
            if !plans.contains(&plan) {
                return Err(CatalogError(format!("{at}: unknown plan `{plan}`")));
            }
            Requirement::Plan(plan)
        }
        (None, Some(feature), None, None, None) => {
            if !features.contains(feature.as_str()) {
                return Err(CatalogError(format!("{at}: unknown feature `{feature}`")));
            }
            Requirement::Feature(feature)
        }
        (None, None, Some(true), None, None) => Requirement::Public,
        (None, None, None, Some(true), None) => Requirement::Login,
        _ => {
            return Err(CatalogError(format!(
                "{at}: needs exactly one of plan, feature, role, public = true, login = true"
            )));
        }
    };
    Ok(Rule {
        path: r.path,
        requires,
    })
}
