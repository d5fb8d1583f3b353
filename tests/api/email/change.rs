//! Email changes: the password, the confirmation at the new address, the notice to the old,
//! the new address's mail limit, privacy mode, and the change reaching Stripe.

use reqwest::Client;
use serde_json::json;

use super::{anonymous, app_with_mail, change_link, post};
use crate::helpers::{PASSWORD, SmtpSink, TestApp, client, error_of, page_text};

#[tokio::test]
async fn email_change_needs_the_password_confirms_the_new_address_and_tells_the_old() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = app.subscriber("ann@example.com", "team").await;
    app.user("taken@example.com").await;

    let wrong = post(
        &app,
        &c,
        "/api/auth/email/change",
        json!({"password": "nope nope nope", "new_email": "ann@new.example"}),
    )
    .await;
    assert_eq!(wrong.status(), 401);
    let taken = post(
        &app,
        &c,
        "/api/auth/email/change",
        json!({"password": PASSWORD, "new_email": "TAKEN@example.com"}),
    )
    .await;
    assert_eq!(taken.status(), 409);
    assert_eq!(error_of(taken).await, "email_taken");
    let bad = post(
        &app,
        &c,
        "/api/auth/email/change",
        json!({"password": PASSWORD, "new_email": "not-an-address"}),
    )
    .await;
    assert_eq!(error_of(bad).await, "invalid_email");

    let ok = post(
        &app,
        &c,
        "/api/auth/email/change",
        json!({"password": PASSWORD, "new_email": "Ann@New.example"}),
    )
    .await;
    assert_eq!(ok.status(), 202);
    let link = sink.wait_for("Ann@New.example", 1).await;
    let notice = sink.wait_for("ann@example.com", 2).await;
    assert!(notice.subject().contains("is being changed"));
    assert!(
        !notice.text().contains("Ann@New.example"),
        "the notice masks the new address"
    );
    assert_eq!(
        app.me(&c).await["email"],
        "ann@example.com",
        "nothing changes before confirmation"
    );

    // The link alone proves the mailbox, not the account: from a browser not signed in to it,
    // the account's password too (a wrong one leaves the link usable).
    let token = link.token("confirm-email");
    let r = anonymous(&app, "/api/auth/email/confirm", json!({"token": token})).await;
    assert_eq!(error_of(r).await, "reauth_required");
    let wrong = json!({"token": token, "password": "not the password"});
    let r = anonymous(&app, "/api/auth/email/confirm", wrong).await;
    assert_eq!(error_of(r).await, "invalid_credentials");
    assert_eq!(
        app.me(&c).await["email"],
        "ann@example.com",
        "nothing changed yet"
    );
    let r = anonymous(
        &app,
        "/api/auth/email/confirm",
        json!({"token": token, "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let me = app.me(&c).await;
    assert_eq!(me["email"], "Ann@New.example");
    assert_eq!(me["email_verified"], true);

    // The Stripe customer's email follows.
    let customer = app.customer_of("ann@new.example").await.unwrap();
    wait_for_stripe_email(&app, &customer, "Ann@New.example").await;
}

/// Waits (up to 15 s) until Stripe has `email` for `customer`.
async fn wait_for_stripe_email(app: &TestApp, customer: &str, email: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let stripe = app.stripe_get(&format!("/v1/customers/{customer}")).await;
        if stripe["email"] == email {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Stripe still has {} for {customer}",
            stripe["email"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_email_change_made_while_stripe_is_down_reaches_stripe_when_it_is_back() {
    let (app, sink) = app_with_mail(&[("TOLLGATE_STRIPE_RETRY_SECS", "1")]).await;
    let c = app.subscriber("ann@example.com", "team").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let token = change_link(&app, &c, &sink, "ann@new.example").await;

    app.sim_control("/_sim/outage", &json!({"on": true})).await;
    // Confirmed where the account is signed in: no password needed.
    let r = app
        .post_json_with(&c, "/api/auth/email/confirm", &json!({"token": token}))
        .await;
    assert_eq!(r.status(), 200, "the change itself never waits for Stripe");
    // Tried and failed at least twice, and still queued.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (queued, attempts): (Option<String>, i64) = sqlx::query_as(
            "SELECT email_to_sync, email_sync_attempts FROM billing_customers \
             WHERE stripe_customer_id = $1",
        )
        .bind(&customer)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        assert_eq!(queued.as_deref(), Some("ann@new.example"));
        if attempts >= 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no retry");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    app.sim_control("/_sim/outage", &json!({"on": false})).await;
    wait_for_stripe_email(&app, &customer, "ann@new.example").await;
    // The worker clears its queue row just after Stripe has answered.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (queued,): (Option<String>,) = sqlx::query_as(
            "SELECT email_to_sync FROM billing_customers WHERE stripe_customer_id = $1",
        )
        .bind(&customer)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        if queued.is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "done, but still queued: {queued:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Email changes from the given users (as clients) to `target`: the statuses, in order.
async fn change_to(app: &TestApp, users: &[&Client], target: &str, times: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..times {
        for c in users {
            let body = json!({"password": PASSWORD, "new_email": target});
            statuses.push(
                post(app, c, "/api/auth/email/change", body)
                    .await
                    .status()
                    .as_u16(),
            );
        }
    }
    statuses
}

#[tokio::test]
async fn email_change_links_count_against_the_new_addresss_limit() {
    let (app, sink) = app_with_mail(&[("TOLLGATE_RATE_LIMIT", "on")]).await;
    let a = app.user("a@example.com").await;
    let b = app.user("b@example.com").await;
    // Two accounts take turns mailing one target: 5 per hour per address in all.
    let statuses = change_to(&app, &[&a, &b], "target@example.com", 4).await;
    assert_eq!(statuses[..5], [202; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    sink.wait_for("target@example.com", 5).await;
    assert_eq!(sink.to("target@example.com").len(), 5);
}

#[tokio::test]
async fn in_privacy_mode_an_email_change_to_a_taken_address_answers_like_any_other() {
    // Accounts made before privacy mode was turned on (its registration signs nobody in).
    let before = TestApp::builder().spawn().await;
    let c = client();
    before.register_with(&c, "ann@example.com", PASSWORD).await;
    before
        .register_with(&client(), "taken@example.com", PASSWORD)
        .await;
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .on_db(before.db.clone())
        .with("SMTP_URL", &sink.url())
        .with("TOLLGATE_REGISTRATION_PRIVACY", "true")
        .spawn()
        .await;
    let taken = change_to(&app, &[&c], "taken@example.com", 1).await;
    let free = change_to(&app, &[&c], "free@example.com", 1).await;
    assert_eq!(taken, [202]);
    assert_eq!(free, [202]);
    sink.wait_for("free@example.com", 1).await;
    assert!(
        sink.to("taken@example.com")
            .iter()
            .all(|m| !m.subject().to_lowercase().contains("confirm")),
        "no link goes to the taken address"
    );
    // The current address is told of both requests alike, so its owner's inbox cannot tell a
    // taken address from a free one.
    sink.wait_for("ann@example.com", 2).await;
    let notices = sink.to("ann@example.com");
    assert_eq!(notices.len(), 2);
    assert!(
        notices
            .iter()
            .all(|m| m.subject().contains("is being changed")),
        "two notices"
    );
}

#[tokio::test]
async fn confirming_a_new_address_while_signed_out_says_it_worked() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = app.user("kay@example.com").await;
    let r = post(
        &app,
        &c,
        "/api/auth/email/change",
        json!({"password": PASSWORD, "new_email": "kay@new.example"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let token = sink
        .wait_for("kay@new.example", 1)
        .await
        .token("confirm-email");
    // Another browser, not signed in: the page form with the account's password.
    let browser = client();
    let page = format!("/confirm-email?token={token}");
    let csrf = app.csrf_token(&browser, &page).await;
    let r = browser
        .post(app.url("/confirm-email"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("token", token.as_str()),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(to, "/login?notice=email_changed");
    let html = page_text(&browser, &app.url(&to)).await;
    assert!(
        html.contains("Your email address was changed. Sign in with the new one."),
        "{html}"
    );
    assert_eq!(app.me(&c).await["email"], "kay@new.example");
}
