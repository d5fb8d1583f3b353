//! `TOLLGATE_DOWNGRADES_AT=now`: downgrades take effect at once, with the unused time as credit.

use serde_json::{Value, json};

use super::changes::{assert_lines, invoices, post, preview_change, share_left, subscription};
use crate::helpers::{TestApp, page_text};

/// `TOLLGATE_DOWNGRADES_AT=now`: a downgrade takes effect at once, charges nothing, and leaves
/// the unused time as account credit that pays the next renewals.
#[tokio::test]
async fn with_downgrades_at_now_a_downgrade_is_immediate_and_credits_the_unused_time() {
    let app = TestApp::builder()
        .with("TOLLGATE_DOWNGRADES_AT", "now")
        .spawn()
        .await;
    // Team has no trial: paid for a month at once.
    let c = app.subscriber("dan@example.com", "team").await;
    app.advance(10 * 86_400).await;
    let before = subscription(&app, &c).await;
    assert_eq!(
        (before["plan"].as_str(), before["status"].as_str()),
        (Some("team"), Some("active"))
    );

    let (status, preview) = preview_change(&app, &c, "pro", "month").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["effective"], "now");
    assert_eq!(
        preview["amount_due"], 0,
        "a credit is never charged: {preview}"
    );
    let at = preview["proration_date"].as_i64().unwrap();
    let share = share_left(&before, at);
    assert_lines(&preview, -share(4900), share(1900));
    let credit = share(4900) - share(1900);
    assert!(credit > 1000, "most of a month's difference: {credit}");
    assert_eq!(preview["credit"], credit, "the preview names the credit");
    // The page says so, with the amount, before anything is confirmed.
    let page = page_text(&c, &app.url("/billing/change?plan=pro&interval=month")).await;
    let dollars = format!("${}.{:02}", credit / 100, credit % 100);
    assert!(
        page.contains(&dollars) && page.contains("stays on your account as credit"),
        "{page}"
    );

    let body = json!({"plan": "pro", "interval": "month", "proration_date": at});
    let (status, done) = post(&app, &c, "/api/billing/change", body).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["effective"], "now");
    assert_eq!(app.me(&c).await["access"]["plan"], "pro");
    let sub = subscription(&app, &c).await;
    assert!(sub["scheduled_change"].is_null(), "no schedule: {sub}");

    // Nothing charged now; the difference is the customer's credit in Stripe.
    app.wait_for_webhooks().await;
    let update: Vec<Value> = invoices(&app, "dan@example.com")
        .await
        .into_iter()
        .filter(|i| i["billing_reason"] == "subscription_update")
        .collect();
    assert!(
        update.iter().all(|i| i["amount_paid"] == 0),
        "nothing charged: {update:?}"
    );
    let customer = app.customer_of("dan@example.com").await.unwrap();
    let balance = app.stripe_get(&format!("/v1/customers/{customer}")).await["balance"]
        .as_i64()
        .unwrap();
    assert_eq!(balance, -credit);

    // The credit pays the renewal at Pro's price.
    let end = before["current_period_end"].as_i64().unwrap();
    app.advance(end - app.state.clock.now() + 60).await;
    app.wait_for_webhooks().await;
    let renewal = &invoices(&app, "dan@example.com").await[0];
    assert_eq!(renewal["billing_reason"], "subscription_cycle");
    assert_eq!(renewal["total"], 1900);
    assert_eq!(renewal["amount_paid"], (1900 - credit).max(0));
    assert_eq!(app.me(&c).await["access"]["status"], "active");
}
