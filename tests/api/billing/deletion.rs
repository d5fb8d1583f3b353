//! Deleted customers (in Stripe) and deleted accounts (in tollgate): a deleted customer is never
//! reused, and a deleted account leaves nothing open or live in Stripe.

use crate::helpers::{TestApp, error_of, spawn_app};

#[tokio::test]
async fn customer_deleted_unmaps_the_customer_and_cancels_its_subscriptions() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();

    app.delete_in_stripe(&customer).await;

    app.wait_for_plan(&c, Some("free")).await;
    // customer.deleted and customer.subscription.deleted are separate deliveries in no fixed
    // order: the plan may drop on the second before the first is applied.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let deleted: (i64,) =
            sqlx::query_as("SELECT deleted FROM billing_customers WHERE stripe_customer_id = $1")
                .bind(&customer)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        if deleted.0 == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the customer is not marked deleted 10 s after its deletion"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let portal = app.try_portal(&c).await;
    assert_eq!(portal.status(), 409, "no customer any more");
    assert_eq!(error_of(portal).await, "no_customer");
    let canceled: (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM subscriptions WHERE customer_id = $1 AND status <> 'canceled'",
    )
    .bind(&customer)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(
        canceled.0, 0,
        "every subscription of the customer is canceled"
    );
}

#[tokio::test]
async fn a_deleted_customer_is_never_reused_whether_its_event_landed_or_not() {
    for event_landed in [true, false] {
        let app = spawn_app().await;
        let c = app.user("ann@example.com").await;
        app.checkout(&c, "pro", "month").await;
        let old = app.customer_of("ann@example.com").await.unwrap();
        app.hold_webhooks(!event_landed).await;
        app.delete_in_stripe(&old).await;
        if event_landed {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while customers_deleted(&app).await == 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "customer.deleted not applied"
                );
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }

        let url = app.checkout(&c, "team", "month").await;

        let new = app.customer_of("ann@example.com").await.unwrap();
        assert_ne!(new, old, "event landed: {event_landed}");
        let session = url.rsplit('/').next().unwrap();
        let session = app
            .stripe_get(&format!("/v1/checkout/sessions/{session}"))
            .await;
        assert_eq!(session["customer"], new.as_str());
        app.hold_webhooks(false).await;
        app.pay(&url).await;
        app.wait_for_plan(&c, Some("team")).await;
    }
}

async fn customers_deleted(app: &TestApp) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM billing_customers WHERE deleted = 1")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn account_deletion_expires_the_open_checkout_session() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "pro", "month").await;

    app.delete_account(&c).await;

    let id = url.rsplit('/').next().unwrap();
    let session = app.stripe_get(&format!("/v1/checkout/sessions/{id}")).await;
    assert_eq!(session["status"], "expired");
}

#[tokio::test]
async fn account_deletion_expires_open_sessions_and_cancels_what_stripe_lists() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    app.hold_webhooks(true).await;
    let unknown = app.subscribe_in_stripe(&customer, "team").await;
    // A row Stripe never heard of: canceling it there answers resource_missing.
    let user = app.me(&c).await["id"].as_str().unwrap().to_owned();
    app.insert_ghost_subscription(&user, &customer).await;

    app.delete_account(&c).await;

    let listed = app.stripe_subscriptions(&customer).await;
    assert_eq!(listed.len(), 2, "the paid one and the one unknown here");
    assert!(listed.iter().any(|s| s["id"] == unknown.as_str()));
    for sub in listed {
        assert_eq!(
            sub["status"], "canceled",
            "{} ({unknown} unknown here)",
            sub["id"]
        );
    }
}

#[tokio::test]
async fn a_subscription_appearing_later_for_a_deleted_account_is_canceled_in_stripe() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.checkout(&c, "pro", "month").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    app.delete_account(&c).await;

    let late = app.subscribe_in_stripe(&customer, "team").await;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let outcome: Option<(String,)> = sqlx::query_as(
            "SELECT outcome FROM stripe_events WHERE type = 'customer.subscription.created'",
        )
        .fetch_optional(&app.state.db.pool)
        .await
        .unwrap();
        if outcome.is_some_and(|o| o.0 == "orphan_canceled") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not canceled 10 s later"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let sub = app.stripe_get(&format!("/v1/subscriptions/{late}")).await;
    assert_eq!(sub["status"], "canceled");
}
