//! One-time codes: tries are counted atomically, and a dead code never takes the emailed link
//! with it.

use serde_json::json;

use crate::helpers::{PASSWORD, SmtpSink, TestApp, client, error_of};

#[tokio::test]
async fn forty_concurrent_wrong_codes_count_exactly_five_tries_and_the_link_still_works() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .with("SMTP_URL", &sink.url())
        .spawn()
        .await;
    app.register_with(&client(), "ann@example.com", PASSWORD)
        .await;
    sink.wait_for("ann@example.com", 1).await;
    let asked = app
        .post_json_with(
            &client(),
            "/api/auth/magic-link",
            &json!({"email": "ann@example.com"}),
        )
        .await;
    assert_eq!(asked.status(), 202);
    let mail = sink.wait_for("ann@example.com", 2).await;
    let code = mail.code();
    let wrong = if code == "000000" { "111111" } else { "000000" };

    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (url, wrong) = (app.url("/api/auth/magic-link/consume"), wrong.to_owned());
        guesses.spawn(async move {
            let r = client()
                .post(url)
                .header("content-type", "application/json")
                .body(json!({"email": "ann@example.com", "code": wrong}).to_string())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), error_of(r).await)
        });
    }
    for (status, code) in guesses.join_all().await {
        assert_eq!((status, code.as_str()), (400, "token_invalid"));
    }
    let (tries,): (i64,) =
        sqlx::query_as("SELECT failed_attempts FROM email_tokens WHERE purpose = 'magic'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(tries, 5, "exactly five tries were counted and compared");

    let right = app
        .post_json_with(
            &client(),
            "/api/auth/magic-link/consume",
            &json!({"email": "ann@example.com", "code": code}),
        )
        .await;
    assert_eq!(error_of(right).await, "token_invalid", "the code is dead");
    // Strangers guessing codes cannot lock the owner out of the link in their mailbox.
    let link = app
        .post_json_with(
            &client(),
            "/api/auth/magic-link/consume",
            &json!({"token": mail.token("magic")}),
        )
        .await;
    assert_eq!(link.status(), 200, "the emailed link still signs in");
}
