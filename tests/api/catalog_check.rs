//! The catalog checked against Stripe at start-up (real keys): a standalone simulator stands in
//! for Stripe, tollgate starts against it with a key and `STRIPE_API_BASE`, as in production.

use std::collections::HashMap;

use tollgate::{
    app::App, billing::stripe::CatalogMismatch, clock::Clock, config::Config, sim::Simulator,
};

use crate::helpers::TestDb;

/// A catalog of `plans` paid plans named `p0`, `p1`…, each with a month and a year price whose
/// `price` reference is given by `reference(plan, interval)`.
fn catalog(plans: usize, reference: impl Fn(usize, &str) -> String) -> String {
    let mut toml =
        String::from("[[plans]]\nid = \"free\"\nname = \"Free\"\ntier = 0\nfeatures = []\n");
    for i in 0..plans {
        toml.push_str(&format!(
            "\n[[plans]]\nid = \"p{i}\"\nname = \"Plan {i}\"\ntier = {}\nfeatures = []\n\
             [plans.prices.month]\nprice = \"{}\"\namount = {}\ncurrency = \"usd\"\n\
             [plans.prices.year]\nprice = \"{}\"\namount = {}\ncurrency = \"usd\"\n",
            i + 1,
            reference(i, "month"),
            1000 + i,
            reference(i, "year"),
            10_000 + i,
        ));
    }
    toml
}

/// A standalone simulator with the prices of `catalog(plans, lookup key p<i>_<interval>)`, as
/// the catalog says; returns it and the lookup-keyed price ids.
async fn stripe_with_prices(plans: usize) -> (Simulator, HashMap<String, String>) {
    let sim = Simulator::start(Clock::new(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut ids = HashMap::new();
    for i in 0..plans {
        for (interval, amount) in [("month", 1000 + i as i64), ("year", 10_000 + i as i64)] {
            let key = format!("p{i}_{interval}");
            let id = sim.seed_price(&format!("Plan {i}"), interval, amount, "usd", Some(&key));
            ids.insert(key, id);
        }
    }
    (sim, ids)
}

/// Starts tollgate against `sim` with `catalog`: the start-up error, if any.
async fn start_against(sim: &Simulator, catalog: &str) -> Option<anyhow::Error> {
    let db = TestDb::new().await;
    let file = std::env::temp_dir().join(format!("tollgate-catalog-{}.toml", rand_suffix()));
    std::fs::write(&file, catalog).unwrap();
    let vars: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", db.url.clone()),
        ("TOLLGATE_BIND", "127.0.0.1:0".into()),
        ("TOLLGATE_PLANS", file.display().to_string()),
        ("STRIPE_SECRET_KEY", "sk_test_catalogcheck".into()),
        ("STRIPE_WEBHOOK_SECRET", "whsec_catalogcheck".into()),
        ("STRIPE_API_BASE", sim.base_url().to_owned()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("config");
    let result = App::build(config).await.err();
    let _ = std::fs::remove_file(&file);
    result
}

fn rand_suffix() -> String {
    use rand::RngCore as _;
    format!("{:016x}", rand::rng().next_u64())
}

/// The mismatch message, asserting the error is one.
fn mismatch(error: Option<anyhow::Error>) -> String {
    let error = error.expect("start-up refused");
    error
        .downcast_ref::<CatalogMismatch>()
        .unwrap_or_else(|| panic!("not a catalog mismatch: {error:#}"))
        .to_string()
}

/// Archives a price the way the Stripe API does.
async fn archive(sim: &Simulator, price: &str) {
    let r = reqwest::Client::new()
        .post(format!("{}v1/prices/{price}", sim.base_url()))
        .bearer_auth("sk_test_catalogcheck")
        .form(&[("active", "false")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_catalog_that_matches_stripe_starts_with_lookup_keys_resolved_ten_at_a_time() {
    // 12 lookup keys: Stripe refuses more than 10 in one list request.
    let (sim, _) = stripe_with_prices(6).await;
    let catalog = catalog(6, |i, interval| format!("p{i}_{interval}"));
    let error = start_against(&sim, &catalog).await;
    assert!(error.is_none(), "{error:?}");
}

#[tokio::test]
async fn a_price_that_differs_from_the_catalog_stops_start_up_naming_the_plan() {
    let (sim, ids) = stripe_with_prices(2).await;
    let by_key = |i: usize, interval: &str| format!("p{i}_{interval}");
    let by_id = |i: usize, interval: &str| ids[&format!("p{i}_{interval}")].clone();

    // Price ids work as well as lookup keys.
    assert!(start_against(&sim, &catalog(2, by_id)).await.is_none());

    // Another amount.
    let wrong_amount = catalog(2, by_key).replace("amount = 1001", "amount = 1999");
    let message = mismatch(start_against(&sim, &wrong_amount).await);
    assert!(
        message.contains("`p1`") && message.contains("month"),
        "{message}"
    );
    assert!(
        message.contains("1001") && message.contains("1999"),
        "{message}"
    );

    // Another currency.
    let wrong_currency = catalog(2, by_key).replacen("currency = \"usd\"", "currency = \"eur\"", 1);
    let message = mismatch(start_against(&sim, &wrong_currency).await);
    assert!(
        message.contains("`p0`") && message.contains("eur"),
        "{message}"
    );

    // A yearly price where the catalog says monthly.
    let swapped = catalog(2, |i, interval| {
        let other = if interval == "month" { "year" } else { "month" };
        by_id(i, other)
    });
    let message = mismatch(start_against(&sim, &swapped).await);
    assert!(
        message.contains("`p0`") && message.contains("recurs every 1 year"),
        "{message}"
    );

    // A price Stripe does not have.
    let unknown = catalog(2, by_id).replace(&by_id(1, "year"), "price_NotThere");
    let message = mismatch(start_against(&sim, &unknown).await);
    assert!(
        message.contains("`p1`") && message.contains("price_NotThere"),
        "{message}"
    );

    // An archived price, named by id or by lookup key: never offered.
    archive(&sim, &by_id(0, "year")).await;
    let message = mismatch(start_against(&sim, &catalog(2, by_id)).await);
    assert!(
        message.contains("`p0`") && message.contains("archived"),
        "{message}"
    );
    let message = mismatch(start_against(&sim, &catalog(2, by_key)).await);
    assert!(
        message.contains("`p0`") && message.contains("no active Stripe price"),
        "{message}"
    );
}

#[tokio::test]
async fn the_binary_exits_2_when_the_catalog_does_not_match_stripe() {
    let (sim, _) = stripe_with_prices(1).await;
    let db = TestDb::new().await;
    let file = std::env::temp_dir().join(format!("tollgate-catalog-{}.toml", rand_suffix()));
    std::fs::write(
        &file,
        catalog(1, |i, interval| format!("p{i}_{interval}")).replace("amount = 1000", "amount = 5"),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", &db.url)
        .env("TOLLGATE_BIND", "127.0.0.1:0")
        .env("TOLLGATE_PLANS", &file)
        .env("STRIPE_SECRET_KEY", "sk_test_catalogcheck")
        .env("STRIPE_WEBHOOK_SECRET", "whsec_catalogcheck")
        .env("STRIPE_API_BASE", sim.base_url())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`p0`") && stderr.contains("costs"),
        "{stderr}"
    );
    assert!(!stderr.contains("sk_test_catalogcheck"), "{stderr}");
}
