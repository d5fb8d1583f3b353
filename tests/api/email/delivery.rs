//! Delivery: the outbox survives a relay outage and sends each message once, across restarts
//! and instances; billing notices go out once per Stripe event.

use serde_json::json;

use super::app_with_mail;
use crate::helpers::{SmtpSink, TestApp};

#[tokio::test]
async fn mail_committed_while_the_relay_is_down_arrives_once_after_a_restart() {
    let mut sink = SmtpSink::start().await;
    let first = TestApp::builder()
        .with("SMTP_URL", &sink.url())
        .spawn()
        .await;
    sink.stop();
    first.user("ann@example.com").await;
    // The worker has tried, failed and released the message (no send in flight).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (attempts, locked): (i64, Option<i64>) =
            sqlx::query_as("SELECT attempts, locked_until FROM outbox")
                .fetch_one(&first.state.db.pool)
                .await
                .unwrap();
        if attempts > 0 && locked.is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never tried"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let db = first.db.clone();
    drop(first);

    sink.restart().await;
    let second = TestApp::builder()
        .with("SMTP_URL", &sink.url())
        .on_db(db)
        .spawn()
        .await;
    sink.wait_for("ann@example.com", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sink.to("ann@example.com").len(), 1, "sent once");
    let (status,): (String,) = sqlx::query_as("SELECT status FROM outbox")
        .fetch_one(&second.state.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "sent");
}

#[tokio::test]
async fn two_instances_send_each_message_once() {
    let sink = SmtpSink::start().await;
    let first = TestApp::builder()
        .with("SMTP_URL", &sink.url())
        .spawn()
        .await;
    let second = TestApp::builder()
        .with("SMTP_URL", &sink.url())
        .on_db(first.db.clone())
        .spawn()
        .await;
    for i in 0..10 {
        let app = if i % 2 == 0 { &first } else { &second };
        app.user(&format!("u{i}@example.com")).await;
    }
    for i in 0..10 {
        sink.wait_for(&format!("u{i}@example.com"), 1).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(sink.mails.lock().unwrap().len(), 10, "no message twice");
}

/// The `Message-ID` header of `mail`.
fn message_id(mail: &crate::helpers::Mail) -> String {
    mail.data
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("a Message-ID")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_message_sent_again_after_its_sender_stopped_keeps_its_message_id() {
    let (app, sink) = app_with_mail(&[]).await;
    app.user("ann@example.com").await;
    sink.wait_for("ann@example.com", 1).await;
    let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM outbox WHERE status = 'sent'")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
    let sent = sink.to("ann@example.com").len();
    assert_eq!(sent, ids.len());
    // What a sender that stopped after the relay took its messages, before marking them sent,
    // leaves: the rows pending, their lease run out. A worker sends them again, as the same
    // messages: each Message-ID (the outbox row's id) arrives twice.
    sqlx::query("UPDATE outbox SET status = 'pending', locked_until = NULL, next_attempt_at = 0")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    sink.wait_for("ann@example.com", 2 * sent).await;
    let mut received: Vec<String> = sink.to("ann@example.com").iter().map(message_id).collect();
    received.sort();
    let mut expected: Vec<String> = ids
        .iter()
        .flat_map(|(id,)| [id.clone(), id.clone()])
        .collect();
    expected.sort();
    let received_ids: Vec<String> = received
        .iter()
        .map(|m| {
            m.trim_start_matches('<')
                .split('@')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(received_ids, expected, "{received:?}");
}

#[tokio::test]
async fn billing_notices_are_sent_once_per_stripe_event() {
    let (app, sink) = app_with_mail(&[]).await;
    app.subscriber("ann@example.com", "pro").await;
    app.advance(12 * 86_400).await;
    let notice = sink.wait_for("ann@example.com", 2).await;
    assert!(
        notice.subject().contains("trial ends on"),
        "{}",
        notice.subject()
    );

    // Delivering the same event again sends nothing more.
    let event = app
        .sim_event("customer.subscription.trial_will_end")
        .await
        .unwrap();
    assert_eq!(app.deliver(&event).await["outcome"], "duplicate");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sink.to("ann@example.com").len(), 2);

    let customer = app.customer_of("ann@example.com").await.unwrap();
    app.sim_control(
        &format!("/_sim/customers/{customer}/card"),
        &json!({"failing": true}),
    )
    .await;
    app.advance(3 * 86_400).await;
    let failed = sink.wait_for("ann@example.com", 3).await;
    assert!(failed.text().contains("could not charge your card"));
}

#[tokio::test]
async fn the_trial_notice_follows_a_cancellation_made_before_it() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = app.subscriber("bea@example.com", "pro").await;
    let r = app
        .post_json_with(&c, "/api/billing/cancel", &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    app.advance(12 * 86_400).await;
    let notice = sink.wait_for("bea@example.com", 2).await;
    assert!(
        notice.subject().contains("trial ends on"),
        "{}",
        notice.subject()
    );
    assert!(
        notice.text().contains("so your card will not be charged"),
        "{}",
        notice.text()
    );
    assert!(!notice.text().contains("is charged"), "{}", notice.text());
    assert!(notice.text().contains("because you subscribe to"));

    // Without a cancellation it names what the card is charged.
    let d = app.subscriber("cy@example.com", "pro").await;
    drop(d);
    app.advance(12 * 86_400).await;
    let notice = sink.wait_for("cy@example.com", 2).await;
    assert!(
        notice
            .text()
            .contains("your card is charged $19.00 per month"),
        "{}",
        notice.text()
    );
}
