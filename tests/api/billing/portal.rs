//! The customer portal: who may open it, and its cancellations and plan switches followed through.

use serde_json::Value;

use crate::helpers::{cancel_at_period_end, client, error_of, page_text, portal_action, spawn_app};

#[tokio::test]
async fn the_portal_needs_a_customer_and_opens_for_the_users_own() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let none = app.try_portal(&c).await;
    assert_eq!(none.status(), 409);
    assert_eq!(error_of(none).await, "no_customer");

    let c = app.subscriber("bob@example.com", "team").await;
    let r = app.try_portal(&c).await;
    assert_eq!(r.status(), 200);
    let url = r.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = page_text(&client(), &url).await;
    assert!(page.contains("Cancel at period end"));

    // A customer Stripe no longer knows (deleted there, the webhook not in yet) is no customer.
    let ghost = app.user("ghost@example.com").await;
    app.map_customer_of(&ghost, "cus_deleted_in_stripe").await;
    let gone = app.try_portal(&ghost).await;
    assert_eq!(gone.status(), 409);
    assert_eq!(error_of(gone).await, "no_customer");
}

#[tokio::test]
async fn cancel_at_period_end_keeps_the_plan_until_the_clock_passes_the_end() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;

    let me = cancel_at_period_end(&app, &c).await;
    assert_eq!(
        me["access"]["plan"], "team",
        "still team until the period ends"
    );

    app.advance(31 * 86_400).await;

    // Free at once by the clock, then canceled when Stripe's event lands.
    assert_eq!(app.me(&c).await["access"]["plan"], "free");
    let me = app
        .wait_for(&c, |m| m["access"]["status"] == "canceled", "canceled")
        .await;
    assert_eq!(me["access"]["plan"], "free");
}

#[tokio::test]
async fn cancel_now_and_a_plan_switch_in_the_portal_follow_through() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;
    let pro_month = app.price_of("pro");

    portal_action(&app, &c, "switch", Some(&pro_month)).await;
    app.wait_for_plan(&c, Some("pro")).await;

    portal_action(&app, &c, "cancel_now", None).await;
    let me = app.wait_for_plan(&c, Some("free")).await;
    assert_eq!(me["access"]["status"], "canceled");
}
