//! The catalog and prices: the published plans, which plan a subscription's prices grant, and
//! prices or products the catalog learns about later.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

#[tokio::test]
async fn plans_are_published_from_the_catalog() {
    let app = spawn_app().await;
    let plans: Value = app.get("/api/plans").await.json().await.unwrap();
    let ids: Vec<&str> = plans["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["free", "pro", "team"]);
    assert_eq!(
        plans["plans"][1]["prices"]["month"],
        json!({"amount": 1900, "currency": "usd"})
    );
    assert_eq!(plans["plans"][1]["trial_days"], 14);
    assert!(
        plans.to_string().find("price_").is_none(),
        "Stripe price ids are not published"
    );
}

#[tokio::test]
async fn the_plan_of_a_multi_item_subscription_is_its_highest_catalog_tier() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.checkout(&c, "pro", "month").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let addon = app.new_price("Extra storage", 500).await;
    let (pro, team) = (app.price_of("pro"), app.price_of("team"));
    // The add-on comes first: the first item is not the plan.
    app.subscribe_to_prices(&customer, &[(&addon, 1), (&pro, 1), (&team, 3)])
        .await;

    app.wait_for_plan(&c, Some("team")).await;
    let (price, quantity): (String, i64) =
        sqlx::query_as("SELECT price_id, quantity FROM subscriptions")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!((price, quantity), (team, 3));
}

/// A user subscribed (through Stripe) to a new monthly price, on a product of its own, that the
/// catalog does not name; asserts it grants nothing yet. Returns the client, the price and its
/// product.
async fn on_a_price_the_catalog_does_not_name(
    app: &TestApp,
    name: &str,
    amount: i64,
) -> (reqwest::Client, String, String) {
    let c = app.user("ann@example.com").await;
    app.checkout(&c, "pro", "month").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let price = app.new_price(name, amount).await;
    let product = app.stripe_get(&format!("/v1/prices/{price}")).await["product"]
        .as_str()
        .unwrap()
        .to_owned();
    app.subscribe_to_prices(&customer, &[(&price, 1)]).await;
    app.wait_for(
        &c,
        |m| m["access"]["status"] == "active",
        "the subscription",
    )
    .await;
    // Every event landed and the start's incomplete → active tie settled (a later `created`
    // event can show `incomplete` for a moment), so what follows reads the settled row.
    app.wait_for_webhooks().await;
    app.wait_for(
        &c,
        |m| m["access"]["status"] == "active",
        "the settled subscription",
    )
    .await;
    assert_eq!(
        app.me(&c).await["access"]["plan"],
        "free",
        "an unknown price"
    );
    (c, price, product)
}

#[tokio::test]
async fn a_price_added_to_legacy_prices_grants_its_plan_to_existing_subscribers_at_once() {
    let app = spawn_app().await;
    let (c, old, _) = on_a_price_the_catalog_does_not_name(&app, "Pro (2019)", 900).await;

    let catalog = tollgate::billing::catalog::DEMO.replacen(
        "id = \"pro\"\nname = \"Pro\"\ntier = 1\n",
        &format!("id = \"pro\"\nname = \"Pro\"\ntier = 1\nlegacy_prices = [\"{old}\"]\n"),
        1,
    );
    let restarted = app.restarted_with_catalog(&catalog).await;

    assert_eq!(restarted.me(&c).await["access"]["plan"], "pro");
}

#[tokio::test]
async fn a_product_mapped_in_the_catalog_grants_its_plan_to_subscribers_of_any_of_its_prices() {
    let app = spawn_app().await;
    // Say, a price made for one customer in the Dashboard.
    let (c, price_id, product) =
        on_a_price_the_catalog_does_not_name(&app, "Team (negotiated)", 4200).await;

    let catalog = tollgate::billing::catalog::DEMO.replacen(
        "id = \"team\"\nname = \"Team\"\ntier = 2\n",
        &format!("id = \"team\"\nname = \"Team\"\ntier = 2\nproducts = [\"{product}\"]\n"),
        1,
    );
    assert!(
        catalog.contains(&product),
        "the demo catalog's team plan was found"
    );
    let restarted = app.restarted_with_catalog(&catalog).await;

    assert_eq!(restarted.me(&c).await["access"]["plan"], "team");
    let (plan, stored_product): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT plan_id, product_id FROM subscriptions WHERE price_id = $1")
            .bind(&price_id)
            .fetch_one(&restarted.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (plan.as_deref(), stored_product.as_deref()),
        (Some("team"), Some(product.as_str())),
        "the stored plan follows too (reports and sync show it)"
    );
}
