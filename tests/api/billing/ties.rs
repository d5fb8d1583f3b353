//! Ties and fetched states: events in the same second as the row are settled by asking Stripe, a
//! fetched state wins over its row and loses to a later event, whatever the clocks' difference,
//! and an event Stripe must redeliver holds up no other.

use serde_json::json;

use crate::helpers::{
    cancel_at_period_end, error_of, event, portal_action, spawn_app, sub_event, subscription_of,
};

#[tokio::test]
async fn a_tie_whose_refetch_fails_is_not_acknowledged_and_is_resolved_on_redelivery() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    let (sub, stamp) = subscription_of(&app, "ann@example.com").await;
    let mut object = app.stripe_get(&format!("/v1/subscriptions/{sub}")).await;
    let truth = object["status"].clone();
    object["status"] = json!("past_due");
    // Same second as the row: a tie only Stripe can settle.
    let tie = event("evt_tie", "customer.subscription.updated", stamp, object);
    app.sim_control("/_sim/outage", &json!({"on": true})).await;

    let refused = app.try_deliver(&tie).await;

    assert_eq!(refused.status(), 503, "Stripe must redeliver");
    assert_eq!(error_of(refused).await, "payment_provider_unavailable");
    app.sim_control("/_sim/outage", &json!({"on": false})).await;
    // The event was stored with its re-fetch released: the redelivery does the re-fetch.
    let redelivered = app.deliver(&tie).await;
    assert_eq!(redelivered["outcome"], "duplicate", "not applied twice");
    let me = app.me(&c).await;
    assert_eq!(me["access"]["status"], truth, "Stripe's state won: {me}");
}

#[tokio::test]
async fn a_refetched_tie_wins_over_its_row_and_loses_to_a_later_event_whatever_the_skew() {
    for skew in [3, -3] {
        let app = spawn_app().await;
        app.sim_control("/_sim/clock/skew", &json!({"seconds": skew}))
            .await;
        let c = app.subscriber("ann@example.com", "team").await;
        let (sub, stamp) = subscription_of(&app, "ann@example.com").await;
        let customer = app.customer_of("ann@example.com").await.unwrap();
        let truth = app.stripe_get(&format!("/v1/subscriptions/{sub}")).await;
        let at = |kind: &str, n: i64, status: &str| {
            let mut e = sub_event(
                &format!("evt_skew_{n}_{status}"),
                kind,
                stamp + n,
                &sub,
                &customer,
                status,
            );
            e["data"]["object"]["items"] = truth["items"].clone();
            e
        };
        let updated = "customer.subscription.updated";

        // A wrong state, then the true one in the same second: a tie Stripe settles.
        app.deliver(&at(updated, 1, "past_due")).await;
        let tie = app.deliver(&at(updated, 1, "active")).await;
        assert_eq!(tie["outcome"], "refetched", "skew {skew}");
        let me = app.me(&c).await;
        assert_eq!(
            me["access"]["status"], "active",
            "skew {skew}: the fetched state wins its tie"
        );

        // A later event (one second on, by Stripe's clock) still beats what was fetched.
        app.deliver(&at(updated, 2, "past_due")).await;
        let me = app.me(&c).await;
        assert_eq!(
            me["access"]["status"], "past_due",
            "skew {skew}: the later event wins"
        );
    }
}

#[tokio::test]
async fn a_fetched_state_wins_over_its_row_and_loses_to_a_later_event_however_far_the_clocks_differ()
 {
    // Beyond the 5 s the earlier rule assumed, both ways: Stripe's clock 10 s ahead, and 10 s
    // behind (tollgate's ahead, the way a fetched state could be stamped past later events).
    for skew in [10_i64, -10] {
        let app = spawn_app().await;
        app.sim_control("/_sim/clock/skew", &json!({"seconds": skew}))
            .await;
        // Its webhooks are the events tollgate learns the clocks' difference from.
        let c = app.subscriber("ann@example.com", "team").await;
        let (sub, _) = subscription_of(&app, "ann@example.com").await;
        let customer = app.customer_of("ann@example.com").await.unwrap();
        let truth = app.stripe_get(&format!("/v1/subscriptions/{sub}")).await;

        // The row drifts from Stripe; sync fetches the subscription and applies it.
        sqlx::query("UPDATE subscriptions SET status = 'past_due'")
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        let report = tollgate::billing::sync::reconcile(&app.state, true)
            .await
            .unwrap();
        assert_eq!(report.repaired, 1, "skew {skew}: {report}");
        assert_eq!(
            app.me(&c).await["access"]["status"],
            "active",
            "skew {skew}: the fetched state wins over its row"
        );

        // An event Stripe creates after the fetch (a second later by Stripe's clock) still wins.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let stripe_now = app.state.sim.as_ref().unwrap().clock().now();
        let mut later = sub_event(
            &format!("evt_after_fetch_{}", skew.abs()),
            "customer.subscription.updated",
            stripe_now,
            &sub,
            &customer,
            "past_due",
        );
        later["data"]["object"]["items"] = truth["items"].clone();
        assert_eq!(
            app.deliver(&later).await["outcome"],
            "applied",
            "skew {skew}"
        );
        assert_eq!(
            app.me(&c).await["access"]["status"],
            "past_due",
            "skew {skew}: the later event wins"
        );
    }
}

#[tokio::test]
async fn a_cancellation_is_not_lost_to_a_fetched_state_stamped_before_tollgates_clock_was_stepped()
{
    let app = spawn_app().await;
    // Stripe's clock runs two minutes ahead while the subscription's events arrive, so tollgate
    // learns that lead from them.
    app.sim_control("/_sim/clock/skew", &json!({"seconds": 120}))
        .await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "team", "month").await;
    let success = app.pay(&url).await;
    assert_eq!(c.get(&success).send().await.unwrap().status(), 200);
    app.wait_for_plan(&c, Some("team")).await;
    app.wait_for_webhooks().await;

    // Then the clocks agree again (tollgate's was stepped forward): a state fetched now is
    // stamped by the old lead, two minutes past Stripe's clock.
    app.sim_control("/_sim/clock/skew", &json!({"seconds": 0}))
        .await;
    assert_eq!(c.get(&success).send().await.unwrap().status(), 200);

    // Changes Stripe makes now are older than that stamp, yet none may be dropped: the first
    // (settled by asking Stripe) and the ones after it alike.
    cancel_at_period_end(&app, &c).await;
    portal_action(&app, &c, "cancel_now", None).await;
    let me = app
        .wait_for(
            &c,
            |m| m["access"]["status"] == "canceled",
            "the cancellation",
        )
        .await;
    assert_eq!(me["access"]["plan"], "free");
}

#[tokio::test]
async fn an_event_that_lands_while_stripe_is_being_asked_is_not_overwritten_by_the_answer() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;
    let (sub, _) = subscription_of(&app, "ann@example.com").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let truth = app.stripe_get(&format!("/v1/subscriptions/{sub}")).await;
    // Stripe answers slowly: `stripe sync`'s list of the customer's subscriptions takes 600 ms,
    // and a later change's event lands meanwhile.
    app.sim_control("/_sim/latency", &json!({"ms": 600})).await;
    let sync = {
        let state = app.state.clone();
        tokio::spawn(async move { tollgate::billing::sync::reconcile(&state, true).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let later = app.state.sim.as_ref().unwrap().clock().now() + 5;
    let mut event = sub_event(
        "evt_meanwhile",
        "customer.subscription.updated",
        later,
        &sub,
        &customer,
        "past_due",
    );
    event["data"]["object"]["items"] = truth["items"].clone();
    assert_eq!(app.deliver(&event).await["outcome"], "applied");

    sync.await.unwrap().unwrap();
    assert_eq!(
        app.me(&c).await["access"]["status"],
        "past_due",
        "the state listed before the event must not replace it"
    );
}

#[tokio::test]
async fn an_event_stripe_must_redeliver_holds_up_no_other_and_lands_once_stripe_answers() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "team", "month").await;
    // Paid while tollgate cannot reach Stripe: the completed session (which tollgate settles by
    // asking Stripe) and the incomplete → active tie are answered 503, to be delivered again.
    app.sim_control("/_sim/outage", &json!({"on": true})).await;
    app.pay(&url).await;

    // Meanwhile the events behind them arrive: Stripe's retries hold up nothing.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (paid,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM stripe_events WHERE type = 'invoice.paid'")
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        if paid == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "invoice.paid waits behind the refused events"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Stripe reachable again: the redelivered events settle the subscription.
    app.sim_control("/_sim/outage", &json!({"on": false})).await;
    let me = app.wait_for_plan(&c, Some("team")).await;
    assert_eq!(me["access"]["status"], "active");
}
