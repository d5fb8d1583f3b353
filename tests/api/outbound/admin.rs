//! Endpoints added in the admin area: their secret shown once, event types, rotation (both
//! secrets sign for 24 hours), and what the area refuses.

use serde_json::{Value, json};

use super::{Place, SECRET, acknowledged, endpoint, sign_in, types, wait_for_endpoint};
use crate::{
    admin::administrator,
    helpers::{TestApp, client, error_of, spawn_app},
};

#[tokio::test]
async fn an_added_endpoint_receives_its_types_and_both_secrets_sign_while_one_is_rotated() {
    let Some(place) = Place::new() else {
        return;
    };
    let app = spawn_app().await;
    let (admin, _) = administrator(&app).await;
    let body = json!({"url": place.url(), "events": ["auth.*", "account.deleted"]});
    let r = app
        .post_json_with(&admin, "/api/admin/webhooks", &body)
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let first_secret = created["secret"].as_str().unwrap().to_owned();
    assert!(first_secret.starts_with("whsec_"));
    let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["endpoint"]["events"],
        json!(["auth.*", "account.deleted"])
    );
    let listed = app
        .get_with(&admin, "/api/admin/webhooks")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !listed.contains(&first_secret[6..]),
        "the secret is shown once"
    );

    // Its types only: a sign-up is not one of them, its sign-in is.
    let receiver = place.start(&first_secret).await;
    app.user("ann@example.com").await;
    let handled = place.wait_for(1).await;
    assert_eq!(types(&handled), ["auth.signed_in"]);

    // Rotated: the new secret alone verifies, and the old one alone still does, for a day.
    let r = app
        .post_json_with(
            &admin,
            &format!("/api/admin/webhooks/{id}/rotate"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, first_secret);
    assert!(rotated["previous_valid_until"].is_string());
    acknowledged(&app, &id, &place).await;
    receiver.stop().await;
    let receiver = place.start(&new_secret).await;
    sign_in(&app, "ann@example.com").await;
    place.wait_for(2).await;
    acknowledged(&app, &id, &place).await;
    receiver.stop().await;
    let receiver = place.start(&first_secret).await;
    sign_in(&app, "ann@example.com").await;
    place.wait_for(3).await;

    // A day later the old secret signs no more: its receiver refuses (400), the new one takes it.
    app.state.clock.advance(24 * 3600 + 1);
    sign_in(&app, "ann@example.com").await;
    let refused = wait_for_endpoint(&app, &id, |e| e.attempts == 1, "refused").await;
    assert_eq!(refused.last_error.as_deref(), Some("answered 400"));
    acknowledged(&app, &id, &place).await;
    receiver.stop().await;
    let _receiver = place.start(&new_secret).await;
    app.state.clock.advance(6);
    let handled = place.wait_for(4).await;
    assert_eq!(types(&handled), ["auth.signed_in"; 4]);
    super::assert_in_order(&handled);
    acknowledged(&app, &id, &place).await;
    let view: Value = app
        .get_with(&admin, "/api/admin/webhooks")
        .await
        .json()
        .await
        .unwrap();
    let attempts = view["endpoints"][0]["recent_attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["status"], 204);
    assert_eq!(attempts[1]["status"], 400);
    assert_eq!(attempts[1]["error"], "answered 400");

    // Removed: nothing more is sent, and the trail names the administrator.
    let gone = admin
        .delete(app.url(&format!("/api/admin/webhooks/{id}")))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert!(
        tollgate::outbound::find(&app.state.db, &id)
            .await
            .unwrap()
            .is_none()
    );
    let kinds: Vec<(String,)> = sqlx::query_as(
        "SELECT type FROM audit_events WHERE type LIKE 'admin.webhook%' ORDER BY seq",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    let kinds: Vec<&str> = kinds.iter().map(|(k,)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "admin.webhook_created",
            "admin.webhook_secret_rotated",
            "admin.webhook_deleted"
        ]
    );
}

#[tokio::test]
async fn the_webhook_area_is_for_administrators_and_refuses_bad_endpoints() {
    let app = TestApp::builder()
        .with("TOLLGATE_WEBHOOK_URL", "http://127.0.0.1:9/hooks")
        .with("TOLLGATE_WEBHOOK_SECRET", SECRET)
        .spawn()
        .await;
    let ann = app.user("ann@example.com").await;
    let body = json!({"url": "http://127.0.0.1:9/x"});
    for c in [&ann, &client()] {
        assert_eq!(app.get_with(c, "/api/admin/webhooks").await.status(), 404);
        let r = app.post_json_with(c, "/api/admin/webhooks", &body).await;
        assert_eq!(r.status(), 404);
    }
    let (admin, _) = administrator(&app).await;
    let count = || async { app.count("webhook_endpoints").await };
    assert_eq!(count().await, 1, "the setting's");
    for (bad, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": "/relative"}), "url"),
        (json!({"url": "http://user:pw@example.com/"}), "url"),
        (json!({"url": "http://example.com/#part"}), "url"),
        (
            json!({"url": format!("https://example.com/{}", "a".repeat(2001))}),
            "url",
        ),
        (
            json!({"url": "https://example.com/", "events": ["billing"]}),
            "events",
        ),
        (
            json!({"url": "https://example.com/", "events": ["*.deleted"]}),
            "events",
        ),
        (
            json!({"url": "https://example.com/", "events": "billing.*"}),
            "events",
        ),
        (
            json!({"url": "https://example.com/", "events": ["nope.*"]}),
            "events",
        ),
        (
            json!({"url": "https://example.com/", "events": ["auth.nonexistent"]}),
            "events",
        ),
    ] {
        let r = app
            .post_json_with(&admin, "/api/admin/webhooks", &bad)
            .await;
        assert_eq!(r.status(), 400, "{bad}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(
            (answer["error"].as_str(), answer["field"].as_str()),
            (Some("invalid_field"), Some(field)),
            "{bad}"
        );
    }
    assert_eq!(count().await, 1, "nothing was added");
    // A token in the URL's query stays out of the trail (which other endpoints receive).
    let body = json!({"url": "https://hooks.example.com/in?token=SLACKSECRET123"});
    let r = app
        .post_json_with(&admin, "/api/admin/webhooks", &body)
        .await;
    assert_eq!(r.status(), 201);
    let (payload,): (String,) =
        sqlx::query_as("SELECT payload FROM audit_events WHERE type = 'admin.webhook_created'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
    assert!(payload.contains("https://hooks.example.com/in") && !payload.contains("SLACKSECRET"));
    // The setting's endpoint changes with the environment, not here.
    let setting = "/api/admin/webhooks/whe_setting";
    let r = app
        .post_json_with(&admin, &format!("{setting}/rotate"), &json!({}))
        .await;
    assert_eq!(error_of(r).await, "invalid_field");
    assert_eq!(
        endpoint(&app, "whe_setting").await.url,
        "http://127.0.0.1:9/hooks"
    );
    for path in [
        "/api/admin/webhooks/whe_nothing/retry",
        "/api/admin/webhooks/whe_nothing/rotate",
    ] {
        let r = app.post_json_with(&admin, path, &json!({})).await;
        assert_eq!(r.status(), 404);
    }
}

#[tokio::test]
async fn the_setting_endpoint_follows_the_environment_across_restarts() {
    let app = TestApp::builder()
        .with("TOLLGATE_WEBHOOK_URL", "http://127.0.0.1:9/one")
        .with("TOLLGATE_WEBHOOK_SECRET", SECRET)
        .spawn()
        .await;
    app.user("ann@example.com").await;
    let first = endpoint(&app, "whe_setting").await;
    let restarted = TestApp::builder()
        .on_db(app.db.clone())
        .with("TOLLGATE_WEBHOOK_URL", "http://127.0.0.1:9/two")
        .with("TOLLGATE_WEBHOOK_SECRET", SECRET)
        .with("TOLLGATE_WEBHOOK_EVENTS", "billing.*")
        .spawn()
        .await;
    let changed = endpoint(&restarted, "whe_setting").await;
    assert_eq!(changed.url, "http://127.0.0.1:9/two");
    assert_eq!(changed.event_types, ["billing.*"]);
    assert_eq!(
        changed.created_at, first.created_at,
        "the same endpoint, its place kept"
    );
    // An instance without the setting (a deploy half done) leaves it alone.
    let without = TestApp::builder().on_db(app.db.clone()).spawn().await;
    let kept = endpoint(&without, "whe_setting").await;
    assert_eq!(kept.url, "http://127.0.0.1:9/two");
    // An administrator removes it; the next start with the setting adds it again.
    let (admin, _) = crate::admin::administrator(&without).await;
    let gone = admin
        .delete(without.url("/api/admin/webhooks/whe_setting"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert!(
        tollgate::outbound::find(&without.state.db, "whe_setting")
            .await
            .unwrap()
            .is_none()
    );
    let again = TestApp::builder()
        .on_db(app.db.clone())
        .with("TOLLGATE_WEBHOOK_URL", "http://127.0.0.1:9/three")
        .with("TOLLGATE_WEBHOOK_SECRET", SECRET)
        .spawn()
        .await;
    assert_eq!(
        endpoint(&again, "whe_setting").await.url,
        "http://127.0.0.1:9/three"
    );
}
