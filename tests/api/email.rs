//! Email flows end to end: lettre speaks real SMTP over TCP to a sink on loopback, and the tests
//! read what it received.

use reqwest::Client;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, SmtpSink, TestApp, client, error_of};

async fn app_with_mail(extra: &[(&str, &str)]) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let mut builder = TestApp::builder().with("SMTP_URL", &sink.url());
    for (k, v) in extra {
        builder = builder.with(k, v);
    }
    (builder.spawn().await, sink)
}

async fn post(app: &TestApp, c: &Client, path: &str, body: Value) -> reqwest::Response {
    app.post_json_with(c, path, &body).await
}

/// POSTs `body` to `path` from a fresh client (no session).
async fn anonymous(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    post(app, &client(), path, body).await
}

/// Asks, from a fresh client, for the mail `path` sends to `email` (a reset or sign-in link);
/// the answer is 202 whether or not the address is known.
async fn ask_for_mail(app: &TestApp, path: &str, email: &str) -> reqwest::Response {
    let r = anonymous(app, path, json!({"email": email})).await;
    assert_eq!(r.status(), 202, "{path} for {email}");
    r
}

#[tokio::test]
async fn registration_sends_a_verification_link_whose_get_changes_nothing() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = app.user("ann@example.com").await;
    let mail = sink.wait_for("ann@example.com", 1).await;
    assert!(mail.subject().contains("Confirm your email address"));
    let link = mail.link("verify-email");
    assert!(link.starts_with(&app.url("/verify-email?token=")), "{link}");

    // Opening the link shows a form and changes nothing.
    let page = client().get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Confirm my address"));
    assert_eq!(app.me(&c).await["email_verified"], false);

    let token = mail.token("verify-email");
    let r = post(&app, &c, "/api/auth/verify-email", json!({"token": token})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["email_verified"], true);
    let again = post(&app, &c, "/api/auth/verify-email", json!({"token": token})).await;
    assert_eq!(again.status(), 400);
    assert_eq!(error_of(again).await, "token_invalid");

    let resend = post(&app, &c, "/api/auth/verify-email/request", json!({})).await;
    assert_eq!(resend.status(), 202);
    sink.wait_for("ann@example.com", 2).await;
}

#[tokio::test]
async fn password_reset_ends_sessions_does_not_sign_in_and_sends_a_notice() {
    let (app, sink) = app_with_mail(&[]).await;
    let c = app.user("ann@example.com").await;
    sink.wait_for("ann@example.com", 1).await;

    let known = ask_for_mail(&app, "/api/auth/password/forgot", "ann@example.com").await;
    let unknown = ask_for_mail(&app, "/api/auth/password/forgot", "nobody@example.com").await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    assert_eq!(
        known.bytes().await.unwrap(),
        unknown.bytes().await.unwrap(),
        "byte-identical"
    );

    let mail = sink.wait_for("ann@example.com", 2).await;
    let token = mail.token("reset-password");
    assert!(sink.to("nobody@example.com").is_empty());

    // A refused password keeps the token usable.
    let short = anonymous(
        &app,
        "/api/auth/password/reset",
        json!({"token": token, "password": "short"}),
    )
    .await;
    assert_eq!(error_of(short).await, "password_too_short");
    let reset = anonymous(
        &app,
        "/api/auth/password/reset",
        json!({"token": token, "password": "a fresh new passphrase"}),
    )
    .await;
    assert_eq!(reset.status(), 204);
    assert!(reset.headers().get("set-cookie").is_none(), "no sign-in");

    assert_eq!(
        app.get_with(&c, "/api/me").await.status(),
        401,
        "sessions ended"
    );
    let login = anonymous(
        &app,
        "/api/auth/login",
        json!({"email": "ann@example.com", "password": "a fresh new passphrase"}),
    )
    .await;
    assert_eq!(login.status(), 200);
    assert_eq!(
        login.json::<Value>().await.unwrap()["email_verified"],
        true,
        "a reset proves the address"
    );
    let notice = sink.wait_for("ann@example.com", 3).await;
    assert!(notice.subject().contains("password was changed"));
    let reuse = anonymous(
        &app,
        "/api/auth/password/reset",
        json!({"token": token, "password": "yet another passphrase"}),
    )
    .await;
    assert_eq!(error_of(reuse).await, "token_invalid");
}

#[tokio::test]
async fn magic_links_sign_in_once_and_codes_die_after_five_wrong_tries() {
    let (app, sink) = app_with_mail(&[]).await;
    app.user("ann@example.com").await;
    sink.wait_for("ann@example.com", 1).await;

    let r = ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    assert_eq!(r.status(), 202);
    let mail = sink.wait_for("ann@example.com", 2).await;
    let token = mail.token("magic");
    // A link scanner's GET uses nothing up.
    assert_eq!(
        client()
            .get(mail.link("magic"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let browser = client();
    let r = post(
        &app,
        &browser,
        "/api/auth/magic-link/consume",
        json!({"token": token}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_some());
    assert_eq!(app.me(&browser).await["email"], "ann@example.com");
    let again = anonymous(
        &app,
        "/api/auth/magic-link/consume",
        json!({"token": token}),
    )
    .await;
    assert_eq!(error_of(again).await, "token_invalid");

    // The code: five wrong tries kill it, even for the right one after.
    ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    let mail = sink.wait_for("ann@example.com", 3).await;
    let code = mail.code();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let r = anonymous(
            &app,
            "/api/auth/magic-link/consume",
            json!({"email": "ann@example.com", "code": wrong}),
        )
        .await;
        assert_eq!(error_of(r).await, "token_invalid");
    }
    let r = anonymous(
        &app,
        "/api/auth/magic-link/consume",
        json!({"email": "ann@example.com", "code": code}),
    )
    .await;
    assert_eq!(
        error_of(r).await,
        "token_invalid",
        "dead after five wrong codes"
    );

    ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    let mail = sink.wait_for("ann@example.com", 4).await;
    let r = anonymous(
        &app,
        "/api/auth/magic-link/consume",
        json!({"email": "ANN@example.com", "code": mail.code()}),
    )
    .await;
    assert_eq!(r.status(), 200, "a right code signs in");
}

#[tokio::test]
async fn magic_links_never_create_accounts_and_answer_alike() {
    let (app, sink) = app_with_mail(&[]).await;
    app.user("ann@example.com").await;
    let known = ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    let unknown = ask_for_mail(&app, "/api/auth/magic-link", "new@example.com").await;
    assert_eq!(known.bytes().await.unwrap(), unknown.bytes().await.unwrap());
    sink.wait_for("ann@example.com", 2).await;
    assert_eq!(app.count("users").await, 1);
    assert!(sink.to("new@example.com").is_empty());
}

#[tokio::test]
async fn tokens_are_refused_when_tampered_expired_misused_or_for_an_old_address() {
    let (app, sink) = app_with_mail(&[("TOLLGATE_TOKEN_TTL_MAGIC_SECS", "60")]).await;
    let c = app.user("ann@example.com").await;
    let verify = sink
        .wait_for("ann@example.com", 1)
        .await
        .token("verify-email");
    ask_for_mail(&app, "/api/auth/password/forgot", "ann@example.com").await;
    let reset = sink
        .wait_for("ann@example.com", 2)
        .await
        .token("reset-password");

    let cases = [
        (
            "/api/auth/magic-link/consume",
            json!({"token": reset}),
            "a reset token as a magic link",
        ),
        (
            "/api/auth/verify-email",
            json!({"token": format!("{reset}x")}),
            "tampered",
        ),
        ("/api/auth/verify-email", json!({"token": ""}), "empty"),
        (
            "/api/auth/email/confirm",
            json!({"token": verify}),
            "a verify token as an email change",
        ),
    ];
    for (path, body, why) in cases {
        let r = anonymous(&app, path, body).await;
        assert_eq!(r.status(), 400, "{why}");
        assert_eq!(error_of(r).await, "token_invalid", "{why}");
    }

    // Expiry, moved by the shared clock.
    ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    let magic = sink.wait_for("ann@example.com", 3).await.token("magic");
    app.state.clock.advance(61);
    let r = anonymous(
        &app,
        "/api/auth/magic-link/consume",
        json!({"token": magic}),
    )
    .await;
    assert_eq!(error_of(r).await, "token_invalid", "expired");

    // An email change kills tokens sent to the old address.
    let confirm = change_link(&app, &c, &sink, "ann@new.example").await;
    let r = anonymous(&app, "/api/auth/email/confirm", json!({"token": confirm})).await;
    assert_eq!(r.status(), 200);
    let r = anonymous(&app, "/api/auth/verify-email", json!({"token": verify})).await;
    assert_eq!(
        error_of(r).await,
        "token_invalid",
        "a token for the old address"
    );
}

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

    let r = anonymous(
        &app,
        "/api/auth/email/confirm",
        json!({"token": link.token("confirm-email")}),
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

/// Asks to change `c`'s address to `new_email` (the first mail to it); returns the confirmation
/// token sent there.
async fn change_link(app: &TestApp, c: &Client, sink: &SmtpSink, new_email: &str) -> String {
    let change = post(
        app,
        c,
        "/api/auth/email/change",
        json!({"password": PASSWORD, "new_email": new_email}),
    )
    .await;
    assert_eq!(change.status(), 202);
    sink.wait_for(new_email, 1).await.token("confirm-email")
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
    let r = anonymous(&app, "/api/auth/email/confirm", json!({"token": token})).await;
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

#[tokio::test]
async fn privacy_mode_answers_alike_and_protects_unverified_addresses() {
    let (app, sink) = app_with_mail(&[("TOLLGATE_REGISTRATION_PRIVACY", "true")]).await;
    let register = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let c = client();
            let r = post(
                app,
                &c,
                "/api/auth/register",
                json!({"email": email, "password": password}),
            )
            .await;
            (c, r)
        }
    };

    let (_, new) = register("ann@example.com", PASSWORD).await;
    assert_eq!(new.status(), 202);
    assert!(new.headers().get("set-cookie").is_none(), "no session");
    let new_body = new.bytes().await.unwrap();
    let verify = sink.wait_for("ann@example.com", 1).await;

    // Unverified: password sign-in is refused like a wrong password.
    let login = anonymous(
        &app,
        "/api/auth/login",
        json!({"email": "ann@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(login.status(), 401);

    // A second registration of the unverified address replaces the pending password.
    let (_, again) = register("ann@example.com", "the real owner's passphrase").await;
    assert_eq!(again.bytes().await.unwrap(), new_body, "same answer");
    let second = sink.wait_for("ann@example.com", 2).await;
    assert_eq!(app.count("users").await, 1);

    // The verification POST, with the password chosen at sign-up, signs in with that password
    // in force.
    let browser = client();
    let r = post(
        &app,
        &browser,
        "/api/auth/verify-email",
        json!({"token": second.token("verify-email"), "password": "the real owner's passphrase"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.me(&browser).await["email_verified"], true);
    let stale = anonymous(
        &app,
        "/api/auth/verify-email",
        json!({"token": verify.token("verify-email")}),
    )
    .await;
    assert_eq!(
        stale.status(),
        400,
        "the link of the replaced registration is dead"
    );
    let login = anonymous(
        &app,
        "/api/auth/login",
        json!({"email": "ann@example.com", "password": "the real owner's passphrase"}),
    )
    .await;
    assert_eq!(login.status(), 200);

    // A verified owner: same answer, and a sign-in link instead of an account.
    let (_, taken) = register("ann@example.com", "an attacker's passphrase").await;
    assert_eq!(taken.status(), 202);
    assert_eq!(taken.bytes().await.unwrap(), new_body);
    let warning = sink.wait_for("ann@example.com", 3).await;
    assert!(warning.subject().contains("tried to sign up"));
    assert!(warning.link("magic").contains("/magic?token="));
    let attacker = anonymous(
        &app,
        "/api/auth/login",
        json!({"email": "ann@example.com", "password": "an attacker's passphrase"}),
    )
    .await;
    assert_eq!(attacker.status(), 401);
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
    let events: Value = client()
        .get(app.sim_url("/_sim/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "customer.subscription.trial_will_end")
        .unwrap()
        .clone();
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
async fn the_development_mailbox_lists_mail_only_without_smtp() {
    let app = TestApp::builder().spawn().await;
    app.user("ann@example.com").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let r: Value = app.get("/dev/mailbox.json").await.json().await.unwrap();
        if r["messages"].as_array().is_some_and(|m| !m.is_empty()) {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the development mailbox never listed the mail"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(listed["messages"][0]["to"], "ann@example.com");
    assert!(
        listed["messages"][0]["text"]
            .as_str()
            .unwrap()
            .contains("/verify-email?token=")
    );
    let page = app.get("/dev/mailbox").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Confirm my address"));

    let (with_smtp, _sink) = app_with_mail(&[]).await;
    assert_eq!(with_smtp.get("/dev/mailbox").await.status(), 404);
    assert_eq!(with_smtp.get("/dev/mailbox.json").await.status(), 404);
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
