//! Renewals, failed payments and the past-due grace period: when it starts and when it ends.

use serde_json::json;

use crate::helpers::{TestApp, spawn_app, sub_event};

#[tokio::test]
async fn renewals_failed_payments_grace_and_recovery() {
    let app = TestApp::builder()
        .with("TOLLGATE_PAST_DUE_GRACE_SECS", "259200")
        .spawn()
        .await;
    let c = app.subscriber("ann@example.com", "team").await;
    let until = app.me(&c).await["access"]["until"].clone();
    let ann = app.me(&c).await["id"].as_str().unwrap().to_owned();
    assert_eq!(watched(&app, &ann).await, ["access_granted free→team"]);

    // A paid renewal moves the period on.
    app.advance(31 * 86_400).await;
    app.wait_for(
        &c,
        |m| m["access"]["until"] != until && m["access"]["status"] == "active",
        "renewal",
    )
    .await;

    // The card starts failing: the next renewal makes the subscription past_due, in grace.
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let card = format!("/_sim/customers/{customer}/card");
    app.sim_control(&card, &json!({"failing": true})).await;
    app.advance(30 * 86_400).await;
    let me = app
        .wait_for(&c, |m| m["access"]["status"] == "past_due", "past_due")
        .await;
    assert_eq!(me["access"]["plan"], "team", "inside the grace period");
    assert!(
        me["access"]["reason"]
            .as_str()
            .unwrap()
            .contains("grace until")
    );
    assert_eq!(watched(&app, &ann).await[1..], ["grace_started team"]);

    // Past the grace period (3 days) the plan is gone, with nothing else happening: the watch
    // records that time alone ended it.
    app.advance(4 * 86_400).await;
    assert_eq!(app.me(&c).await["access"]["plan"], "free");
    assert_eq!(
        watched(&app, &ann).await[2..],
        ["grace_ended expired", "access_revoked team→free"]
    );

    // The card is fixed; the next attempt succeeds and the plan is back.
    app.sim_control(&card, &json!({"failing": false})).await;
    app.advance(30 * 86_400).await;
    let me = app
        .wait_for(&c, |m| m["access"]["status"] == "active", "recovery")
        .await;
    assert_eq!(me["access"]["plan"], "team");
    assert_eq!(watched(&app, &ann).await[4..], ["access_granted free→team"]);
}

/// The access watch's events about `user` so far (after a look of the watch, and a second look
/// that must add nothing), each as `kind detail`.
async fn watched(app: &TestApp, user: &str) -> Vec<String> {
    let read = || async {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT type, actor, payload FROM audit_events WHERE subject = $1 \
             AND (type LIKE 'billing.access%' OR type LIKE 'billing.grace%') ORDER BY seq",
        )
        .bind(user)
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(kind, actor, payload)| {
                assert_eq!(actor, "system");
                let p: serde_json::Value = serde_json::from_str(&payload).unwrap();
                let text = |v: &serde_json::Value| v.as_str().unwrap_or("none").to_owned();
                let detail = match kind.as_str() {
                    "billing.grace_started" => text(&p["plan"]),
                    "billing.grace_ended" => text(&p["how"]),
                    _ => format!("{}→{}", text(&p["from"]), text(&p["to"])),
                };
                format!("{} {detail}", kind.trim_start_matches("billing."))
            })
            .collect::<Vec<_>>()
    };
    let mut watch = tollgate::gate::watch::Watch::default();
    watch.sweep(&app.state.billing).await.unwrap();
    let seen = read().await;
    watch.sweep(&app.state.billing).await.unwrap();
    assert_eq!(read().await, seen, "a second look adds nothing");
    seen
}

#[tokio::test]
async fn a_late_payment_failure_that_predates_the_state_starts_no_grace_period() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.map_customer_of(&c, "cus_grace").await;
    let t0 = app.state.clock.now() - 1_000;
    let updated = "customer.subscription.updated";
    let stream = [
        sub_event(
            "evt_1",
            "customer.subscription.created",
            t0,
            "sub_grace",
            "cus_grace",
            "active",
        ),
        sub_event(
            "evt_2",
            "invoice.payment_failed",
            t0 + 10,
            "sub_grace",
            "cus_grace",
            "",
        ),
        sub_event(
            "evt_3",
            updated,
            t0 + 20,
            "sub_grace",
            "cus_grace",
            "past_due",
        ),
        sub_event(
            "evt_4",
            updated,
            t0 + 30,
            "sub_grace",
            "cus_grace",
            "active",
        ),
        // Late: an older failure (another retry's invoice) delivered after the recovery.
        sub_event(
            "evt_5",
            "invoice.payment_failed",
            t0 + 15,
            "sub_grace",
            "cus_grace",
            "",
        ),
        sub_event(
            "evt_6",
            updated,
            t0 + 40,
            "sub_grace",
            "cus_grace",
            "past_due",
        ),
    ];
    let mut outcomes = vec![];
    for event in &stream {
        outcomes.push(app.deliver(event).await["outcome"].clone());
    }
    assert_eq!(
        outcomes[4], "stale",
        "the late failure says nothing about now"
    );
    // One "payment failed" email: the real failure's, none for the late one.
    let (mails,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE kind = 'payment_failed'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(mails, 1);

    let (since,): (Option<i64>,) =
        sqlx::query_as("SELECT past_due_since FROM subscriptions WHERE id = 'sub_grace'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        since,
        Some(t0 + 40),
        "the new episode starts at its own state"
    );
}

#[tokio::test]
async fn a_past_due_state_found_by_fetching_starts_its_grace_period_when_it_is_seen() {
    // No event has ever arrived (webhooks misconfigured, or held): only the success page tells.
    let app = spawn_app().await;
    app.hold_webhooks(true).await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "team", "month").await;
    let success = app.pay(&url).await;
    assert_eq!(c.get(&success).send().await.unwrap().status(), 200);
    assert_eq!(app.me(&c).await["access"]["status"], "active");

    // The renewal fails in Stripe; tollgate learns it only when the success page is loaded again.
    let customer = app.customer_of("ann@example.com").await.unwrap();
    app.sim_control(
        &format!("/_sim/customers/{customer}/card"),
        &json!({"failing": true}),
    )
    .await;
    app.advance(31 * 86_400).await;
    assert_eq!(c.get(&success).send().await.unwrap().status(), 200);

    let me = app.me(&c).await;
    assert_eq!(me["access"]["status"], "past_due", "{me}");
    assert_eq!(
        me["access"]["plan"], "team",
        "the grace period starts when the state is seen: {me}"
    );
    let (since,): (Option<i64>,) = sqlx::query_as("SELECT past_due_since FROM subscriptions")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let now = app.state.clock.now();
    assert!(
        since.is_some_and(|s| (now - 60..=now).contains(&s)),
        "{since:?} vs {now}"
    );
}

/// Stripe stamps a renewal's `past_due` update a second after its `invoice.payment_failed`, and
/// delivers in any order; the final failure comes with the subscription's deletion. A failure
/// delivered after a newer state that is unpaid or ended is a real one: it is applied and its
/// email (asking for a card, or saying the subscription ended) goes out.
#[tokio::test]
async fn a_failure_delivered_after_a_newer_unpaid_or_ended_state_still_gets_its_email() {
    let app = spawn_app().await;
    let t0 = app.state.clock.now() - 1_000;
    let cases = [
        ("bob", "customer.subscription.updated", "past_due"),
        ("cat", "customer.subscription.deleted", "canceled"),
    ];
    for (name, later_kind, later_status) in cases {
        let email = format!("{name}@example.com");
        let (customer, sub) = (format!("cus_{name}"), format!("sub_{name}"));
        let c = app.user(&email).await;
        app.map_customer_of(&c, &customer).await;
        let id = |n: u8| format!("evt_{name}_{n}");
        let created = "customer.subscription.created";
        let stream = [
            sub_event(&id(1), created, t0, &sub, &customer, "active"),
            sub_event(&id(2), later_kind, t0 + 11, &sub, &customer, later_status),
            sub_event(
                &id(3),
                "invoice.payment_failed",
                t0 + 10,
                &sub,
                &customer,
                "",
            ),
        ];
        let mut outcomes = vec![];
        for event in &stream {
            outcomes.push(app.deliver(event).await["outcome"].clone());
        }
        assert_eq!(outcomes[2], "applied", "{name}: {outcomes:?}");
        let (mails,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'payment_failed' AND recipient = $1",
        )
        .bind(&email)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        assert_eq!(mails, 1, "{name}: the failure's email");
    }
}

#[tokio::test]
async fn the_watch_looks_at_each_change_once() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.map_customer_of(&c, "cus_once").await;
    let t0 = app.state.clock.now() - 1_000;
    let mut watch = tollgate::gate::watch::Watch::default();
    let mut looks = vec![];
    // A change, looked at once though every look reaches a minute back; then two changes
    // between looks, and one more: each write counts itself, so a change written in the same
    // second as the one before it (as these mostly are) is still seen.
    let writes: [&[(&str, i64, &str)]; 3] = [
        &[("evt_1", 0, "active")],
        &[("evt_2", 10, "past_due"), ("evt_3", 20, "active")],
        &[("evt_4", 30, "active")],
    ];
    for batch in writes {
        for (id, at, status) in batch {
            let kind = "customer.subscription.updated";
            let event = sub_event(id, kind, t0 + at, "sub_once", "cus_once", status);
            assert_eq!(app.deliver(&event).await["outcome"], "applied");
        }
        for _ in 0..2 {
            looks.push(watch.sweep(&app.state.billing).await.unwrap().users);
        }
    }
    assert_eq!(looks, [1, 0, 1, 0, 1, 0]);
    let (changes,): (i64,) =
        sqlx::query_as("SELECT changes FROM subscriptions WHERE id = 'sub_once'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(
        changes, 3,
        "the first write inserts the row; three more update it"
    );
}
