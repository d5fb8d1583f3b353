//! Stripe down or hanging: clear JSON 503s in bounded time, and no local change.

use serde_json::json;

use crate::helpers::{error_of, spawn_app};

#[tokio::test]
async fn stripe_down_during_checkout_is_a_clear_503_with_no_local_change() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.sim_control("/_sim/outage", &json!({"on": true})).await;

    let r = app.try_checkout(&c, "pro", "month").await;

    assert_eq!(r.status(), 503);
    assert_eq!(error_of(r).await, "payment_provider_unavailable");
    assert_eq!(app.count("billing_customers").await, 0);
    assert_eq!(app.count("checkout_attempts").await, 0);

    app.sim_control("/_sim/outage", &json!({"on": false})).await;
    app.checkout(&c, "pro", "month").await;
}

#[tokio::test]
async fn a_hanging_stripe_gets_a_json_503_within_15_seconds_at_checkout_portal_and_deletion() {
    let app = spawn_app().await;
    let buyer = app.user("buyer@example.com").await;
    let customer = app.user("customer@example.com").await;
    app.checkout(&customer, "pro", "month").await;
    let leaver = app.user("leaver@example.com").await;
    app.checkout(&leaver, "pro", "month").await;
    app.sim_control("/_sim/latency", &json!({"ms": 120_000}))
        .await;

    let answers = tokio::join!(
        timed(app.try_checkout(&buyer, "pro", "month")),
        timed(app.try_portal(&customer)),
        timed(app.try_delete_account(&leaver)),
    );

    for (what, (took, status, code)) in [
        ("checkout", answers.0),
        ("portal", answers.1),
        ("deletion", answers.2),
    ] {
        assert_eq!(
            (status, code.as_str()),
            (503, "payment_provider_unavailable"),
            "{what}"
        );
        assert!(
            took < std::time::Duration::from_secs(15),
            "{what} took {took:?}"
        );
    }
}

/// How long `request` took, its status and its error code.
async fn timed(
    request: impl std::future::Future<Output = reqwest::Response>,
) -> (std::time::Duration, u16, String) {
    let started = std::time::Instant::now();
    let r = request.await;
    (started.elapsed(), r.status().as_u16(), error_of(r).await)
}
