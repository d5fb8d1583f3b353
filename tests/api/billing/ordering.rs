//! Event streams in any order: shuffled, duplicated, late and delayed deliveries converge to the
//! state the in-order stream gives.

use serde_json::json;

use crate::helpers::{
    event, index_source, life_of, map_customer, portal_action, pro_subscription_updated, row_of,
    spawn_app, user_in,
};

#[tokio::test]
async fn shuffled_duplicated_and_late_streams_converge_to_the_in_order_row() {
    let app = spawn_app().await;
    let price = app.price_of("pro");
    let t0 = app.state.clock.now() - 1_000;
    map_customer(&app, "inorder@example.com", "cus_inorder").await;
    for event in life_of("sub_inorder", "cus_inorder", &price, t0) {
        app.deliver(&event).await;
    }
    let expected = row_of(&app, "sub_inorder").await;
    assert_eq!(expected[0], "canceled");
    assert_eq!(expected[1], "pro", "the plan's item, not the add-on");
    assert!(
        expected[4].is_null(),
        "leaving past_due ends the episode: {expected}"
    );

    let mut next = index_source(0x5eed_1234_abcd_ef01);
    for round in 0..12 {
        let (sub, customer) = (format!("sub_r{round}"), format!("cus_r{round}"));
        map_customer(&app, &format!("r{round}@example.com"), &customer).await;
        let mut stream = life_of(&sub, &customer, &price, t0);
        for _ in 0..3 {
            let dup = stream[next(stream.len())].clone();
            stream.push(dup);
        }
        for i in (1..stream.len()).rev() {
            stream.swap(i, next(i + 1));
        }
        for event in &stream {
            app.deliver(event).await;
        }
        // past_due_since too: whichever failure sign arrived first, the terminal state clears it.
        assert_eq!(
            row_of(&app, &sub).await,
            expected,
            "round {round}: {:?}",
            stream.iter().map(|e| e["id"].clone()).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn shuffled_streams_ending_in_customer_deleted_never_leave_access() {
    let app = spawn_app().await;
    let price = app.price_of("pro");
    let t0 = app.state.clock.now() - 1_000;
    let mut next = index_source(0x0de1_e7ed_5eed_0001);
    for round in 0..8 {
        let (sub, customer) = (format!("sub_d{round}"), format!("cus_d{round}"));
        let c = app.user(&format!("d{round}@example.com")).await;
        app.map_customer_of(&c, &customer).await;
        let mut stream = life_of(&sub, &customer, &price, t0);
        // The life stops short of its own cancellation: the customer's deletion ends it.
        stream.pop();
        stream.push(event(
            &format!("evt_{customer}_deleted"),
            "customer.deleted",
            t0 + 60,
            json!({"id": customer, "object": "customer"}),
        ));
        for i in (1..stream.len()).rev() {
            stream.swap(i, next(i + 1));
        }
        for event in &stream {
            app.deliver(event).await;
        }

        let live: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM subscriptions WHERE customer_id = $1 AND status <> 'canceled'",
        )
        .bind(&customer)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        let order: Vec<_> = stream.iter().map(|e| e["type"].clone()).collect();
        assert_eq!(live.0, 0, "round {round}: {order:?}");
        assert_eq!(
            app.me(&c).await["access"]["plan"],
            "free",
            "round {round}: {order:?}"
        );
    }
}

#[tokio::test]
async fn chaos_delivery_still_converges() {
    // Stripe's clock need not agree with tollgate's: ahead, behind, or not at all, and by more
    // than any fixed allowance.
    for skew in [0, 3, -3, 10, -10] {
        let app = spawn_app().await;
        app.sim_control("/_sim/clock/skew", &json!({"seconds": skew}))
            .await;
        app.sim_control(
            "/_sim/chaos",
            &json!({"duplicate": true, "reorder": true, "max_delay_ms": 30}),
        )
        .await;
        let c = app.subscriber("ann@example.com", "team").await;
        portal_action(&app, &c, "cancel_at_period_end", None).await;
        // States fetched from Stripe land among the events still arriving: the success page's
        // and the checkout guard's kind, through `stripe sync`.
        tollgate::billing::sync::reconcile(&app.state, true)
            .await
            .unwrap();
        let again = app.try_checkout(&c, "pro", "month").await;
        assert_eq!(again.status(), 409, "skew {skew}: already subscribed");
        app.advance(31 * 86_400).await;
        let me = app
            .wait_for(&c, |m| m["access"]["status"] == "canceled", "canceled")
            .await;
        assert_eq!(me["access"]["plan"], "free", "skew {skew}");
    }
}

#[tokio::test]
async fn a_canceled_subscription_never_comes_back() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let c = user_in(&app, "gone", Some(("active", now - 10, json!({})))).await;
    let canceled =
        pro_subscription_updated(&app, "gone", "cus_gone", "canceled", now - 5, json!({}));
    assert_eq!(app.deliver(&canceled).await["outcome"], "applied");
    // A newer state that is live again: Stripe never sends one for a canceled subscription.
    for (i, status) in ["active", "trialing", "past_due"].into_iter().enumerate() {
        let mut back = pro_subscription_updated(&app, "gone", "cus_gone", status, now, json!({}));
        back["id"] = json!(format!("evt_back_{i}"));
        assert_eq!(app.deliver(&back).await["outcome"], "stale", "{status}");
        assert_eq!(app.me(&c).await["access"]["status"], "canceled");
        assert_eq!(app.me(&c).await["access"]["plan"], "free");
    }
}
