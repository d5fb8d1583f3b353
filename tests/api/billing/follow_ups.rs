//! An event's Stripe work outlives the process that took it. The work an event needs after its
//! commit (re-fetching a subscription, say) is stored with the event and cleared when done; a
//! process that stops in between never acknowledges the event, and Stripe's redelivery then
//! finishes the work instead of counting as a duplicate; a redelivery while the work is young
//! (it may be under way) is not acknowledged either, so Stripe comes back.

use serde_json::json;

use crate::helpers::{error_of, event, spawn_app};

#[tokio::test]
async fn a_redelivered_event_finishes_the_stripe_work_a_stopped_instance_left() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    // Stripe's own deliveries never arrive here: only the events this test sends.
    app.hold_webhooks(true).await;
    let url = app.checkout(&c, "pro", "month").await;
    app.pay(&url).await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let subs = app
        .stripe_get(&format!("/v1/subscriptions?customer={customer}"))
        .await;
    let sub = subs["data"][0]["id"].as_str().unwrap().to_owned();
    let now = app.state.clock.now();
    let completed = |id: &str| {
        let session = json!({"id": "cs_unknown", "object": "checkout.session", "customer": customer,
                             "subscription": sub, "mode": "subscription", "status": "complete"});
        event(id, "checkout.session.completed", now, session)
    };
    // What a process leaves when it stops after committing an event and before its re-fetch.
    let left_by_a_stopped_instance = |id: &'static str, received_at: i64| {
        let (db, customer, sub) = (&app.state.db, customer.clone(), sub.clone());
        async move {
            sqlx::query(
                "INSERT INTO stripe_events (id, type, created, customer_id, outcome, received_at, follow_up) \
                 VALUES ($1, 'checkout.session.completed', $2, $3, 'applied', $4, $5)",
            )
            .bind(id)
            .bind(now)
            .bind(customer)
            .bind(received_at)
            .bind(format!("refetch:{sub}:"))
            .execute(&db.pool)
            .await
            .unwrap();
        }
    };
    let db = &app.state.db;
    let follow_up_of = |id: &'static str| async move {
        let (work,): (Option<String>,) =
            sqlx::query_as("SELECT follow_up FROM stripe_events WHERE id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        work
    };

    // Work taken moments ago may still be under way in another instance, or its instance may
    // have died: the redelivery is not acknowledged (after a 2xx Stripe never delivers again, and
    // the work would stay undone), and does nothing.
    left_by_a_stopped_instance("evt_taken_just_now", now).await;
    let r = app.try_deliver(&completed("evt_taken_just_now")).await;
    assert_eq!(r.status(), 409);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["error"], "event_in_progress");
    assert_eq!(app.me(&c).await["access"]["plan"], "free");
    assert!(follow_up_of("evt_taken_just_now").await.is_some());

    // Work left for longer than any request runs: the redelivery does it.
    left_by_a_stopped_instance("evt_left_undone", now - 3_600).await;
    let answer = app.deliver(&completed("evt_left_undone")).await;
    assert_eq!(answer["outcome"], "duplicate", "not applied twice");
    assert_eq!(
        app.me(&c).await["access"]["plan"],
        "pro",
        "the re-fetch ran"
    );
    assert_eq!(follow_up_of("evt_left_undone").await, None, "and is done");

    // A finished event's next redelivery is a plain duplicate.
    let answer = app.deliver(&completed("evt_left_undone")).await;
    assert_eq!(answer["outcome"], "duplicate");

    // A delivery that completes its own work clears it as it goes.
    let answer = app.deliver(&completed("evt_fresh")).await;
    assert_eq!(answer["outcome"], "applied");
    assert_eq!(follow_up_of("evt_fresh").await, None);
}

#[tokio::test]
async fn a_completed_checkout_whose_refetch_fails_is_applied_once_and_refetched_on_redelivery() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.hold_webhooks(true).await;
    let url = app.checkout(&c, "pro", "month").await;
    app.pay(&url).await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let subs = app
        .stripe_get(&format!("/v1/subscriptions?customer={customer}"))
        .await;
    let sub = subs["data"][0]["id"].clone();
    let session = json!({"id": "cs_outage", "object": "checkout.session", "customer": customer,
                         "subscription": sub, "mode": "subscription", "status": "complete"});
    let completed = event(
        "evt_outage",
        "checkout.session.completed",
        app.state.clock.now(),
        session,
    );
    let audited = || async {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM audit_events WHERE type = 'billing.checkout_completed'",
        )
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        n
    };

    app.sim_control("/_sim/outage", &json!({"on": true})).await;
    let refused = app.try_deliver(&completed).await;
    assert_eq!(refused.status(), 503, "Stripe must redeliver");
    assert_eq!(error_of(refused).await, "payment_provider_unavailable");
    assert_eq!(audited().await, 1, "applied once");
    app.sim_control("/_sim/outage", &json!({"on": false})).await;

    // The released work is taken at once (not `event_in_progress`), and the event is not
    // applied again: one audit event, so one outbound webhook.
    let answer = app.deliver(&completed).await;
    assert_eq!(answer["outcome"], "duplicate");
    assert_eq!(
        app.me(&c).await["access"]["plan"],
        "pro",
        "the re-fetch ran"
    );
    assert_eq!(audited().await, 1, "still once");
    let answer = app.deliver(&completed).await;
    assert_eq!(answer["outcome"], "duplicate");
}
