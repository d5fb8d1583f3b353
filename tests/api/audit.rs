//! The audit trail: security and billing events appended with the change they record, numbered in
//! commit order, shown to their subject as the account's activity, pruned by age.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, client, spawn_app, sub_event};

/// The stored events about `user` (or without a subject when `None`), oldest first: type, actor,
/// payload, request id.
async fn stored(
    app: &TestApp,
    subject: Option<&str>,
) -> Vec<(String, String, Value, Option<String>)> {
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT type, actor, payload, request_id FROM audit_events \
         WHERE subject = $1 OR ($1 IS NULL AND subject IS NULL) ORDER BY seq",
    )
    .bind(subject)
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(t, a, p, r)| (t, a, serde_json::from_str(&p).unwrap(), r))
        .collect()
}

/// The account activity `c` reads.
async fn activity(app: &TestApp, c: &reqwest::Client) -> Value {
    let r = app.get_with(c, "/api/account/activity").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The types of a history's events, in its order.
fn types_of(history: &Value) -> Vec<&str> {
    history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn an_account_sees_its_own_security_history_and_nothing_else() {
    let app = spawn_app().await;
    let ann = app.user("ann@example.com").await;
    let id = app.me(&ann).await["id"].as_str().unwrap().to_owned();
    let bob = app.user("bob@example.com").await;
    assert_eq!(
        app.login_status("ann@example.com", "wrong password!").await,
        401
    );
    assert_eq!(
        app.login_status("nobody@example.com", "wrong password!")
            .await,
        401
    );
    let body = json!({"current_password": PASSWORD, "new_password": "a whole new passphrase"});
    let r = app
        .post_json_with(&ann, "/api/auth/password/change", &body)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.post_json_with(&ann, "/api/auth/logout", &json!({}))
            .await
            .status(),
        204
    );
    let ann = client();
    let body = json!({"email": "ann@example.com", "password": "a whole new passphrase"});
    assert_eq!(
        app.post_json_with(&ann, "/api/auth/login", &body)
            .await
            .status(),
        200
    );

    let history = activity(&app, &ann).await;
    assert_eq!(
        types_of(&history),
        [
            "auth.signed_in",
            "auth.signed_out",
            "account.password_changed",
            "auth.sign_in_failed",
            "auth.signed_in",
            "account.signed_up",
        ],
        "newest first: {history}"
    );
    let first = &history["events"][0];
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert!(first["at"].as_str().unwrap().ends_with('Z'));
    // Nothing secret, and the address masked.
    let text = history.to_string();
    assert!(
        !text.contains(PASSWORD) && !text.contains("whole new"),
        "{text}"
    );
    assert!(!text.contains("ann@example.com"), "{text}");

    // Every event carries the id of the request that caused it.
    let events = stored(&app, Some(&id)).await;
    assert!(
        events
            .iter()
            .all(|(.., request)| request.as_deref().is_some_and(|r| r.len() == 16))
    );
    assert!(
        events
            .iter()
            .all(|(_, actor, ..)| actor == &id || actor == "anonymous")
    );
    // A refusal for an address with no account is kept for operators, about no one.
    let unknown = stored(&app, None).await;
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].2["address"], "n***@example.com");

    // Bob sees his own only.
    let theirs = activity(&app, &bob).await;
    assert_eq!(types_of(&theirs), ["auth.signed_in", "account.signed_up"]);

    // The page says the same in words; signed out it asks for a sign-in.
    let page = crate::helpers::page_text(&ann, &app.url("/account/activity")).await;
    assert!(
        page.contains("Sign-in refused")
            && page.contains("wrong password")
            && page.contains("Password changed")
    );
    assert_eq!(
        app.get_with(&client(), "/account/activity").await.status(),
        303
    );
    assert_eq!(
        app.get_with(&client(), "/api/account/activity")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn billing_events_name_the_stripe_event_and_stay_out_of_the_security_history() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let id = app.me(&c).await["id"].as_str().unwrap().to_owned();
    app.map_customer_of(&c, "cus_audit").await;
    let t0 = app.state.clock.now() - 100;
    let created = "customer.subscription.created";
    for event in [
        sub_event("evt_a1", created, t0, "sub_audit", "cus_audit", "active"),
        sub_event(
            "evt_a2",
            "invoice.payment_failed",
            t0 + 10,
            "sub_audit",
            "cus_audit",
            "",
        ),
        sub_event(
            "evt_a3",
            "customer.subscription.updated",
            t0 + 11,
            "sub_audit",
            "cus_audit",
            "past_due",
        ),
    ] {
        app.deliver(&event).await;
    }
    // Delivered again: recorded once.
    let again = sub_event(
        "evt_a3",
        "customer.subscription.updated",
        t0 + 11,
        "sub_audit",
        "cus_audit",
        "past_due",
    );
    assert_eq!(app.deliver(&again).await["outcome"], "duplicate");
    let billing: Vec<_> = stored(&app, Some(&id))
        .await
        .into_iter()
        .filter(|(kind, ..)| kind.starts_with("billing."))
        .collect();
    let summary: Vec<(&str, &str, &Value)> = billing
        .iter()
        .map(|(k, a, p, _)| (k.as_str(), a.as_str(), &p["stripe_event"]))
        .collect();
    assert_eq!(
        summary,
        [
            ("billing.subscription_changed", "stripe", &json!("evt_a1")),
            ("billing.payment_failed", "stripe", &json!("evt_a2")),
            ("billing.subscription_changed", "stripe", &json!("evt_a3")),
        ]
    );
    assert_eq!(billing[0].2["from"], Value::Null);
    assert_eq!(billing[0].2["to"]["status"], "active");
    assert_eq!(billing[2].2["from"]["status"], "active");
    assert_eq!(billing[2].2["to"]["status"], "past_due");
    let history = activity(&app, &c).await;
    assert!(!history.to_string().contains("billing."), "{history}");
}

#[tokio::test]
async fn events_are_numbered_in_commit_order_across_instances_and_pruned_by_age() {
    let app = spawn_app().await;
    let other = TestApp::builder().on_db(app.db.clone()).spawn().await;
    // Sign-ups on both instances at once.
    let mut signing_up = tokio::task::JoinSet::new();
    for n in 0..12 {
        let address = if n % 2 == 0 {
            &app.address
        } else {
            &other.address
        };
        let url = format!("{address}/api/auth/register");
        signing_up.spawn(async move {
            let body = json!({"email": format!("u{n}@example.com"), "password": PASSWORD});
            client()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = signing_up.join_next().await {
        assert_eq!(status.unwrap(), 201);
    }
    let seqs: Vec<(i64,)> = sqlx::query_as("SELECT seq FROM audit_events ORDER BY seq")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
    let seqs: Vec<i64> = seqs.into_iter().map(|(s,)| s).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "no gaps, no repeats"
    );
    assert_eq!(seqs.len(), 24, "a sign-up and a sign-in each");

    // Half of them aged past 30 days: `tollgate audit prune --older-than-days 30` removes those.
    let old = app.state.clock.now() - 40 * 86_400;
    sqlx::query("UPDATE audit_events SET at = $1 WHERE seq <= 12")
        .bind(old)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let out = crate::cli::tollgate()
        .args(["audit", "prune", "--older-than-days", "30"])
        .env("DATABASE_URL", &app.db.url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 12 audit events"));
    assert_eq!(app.count("audit_events").await, 12);
}

#[tokio::test]
async fn key_changes_and_checkout_are_recorded_where_they_happen() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let id = app.me(&c).await["id"].as_str().unwrap().to_owned();
    let made: Value = app
        .post_json_with(&c, "/api/keys", &json!({"name": "ci", "scopes": ["read"]}))
        .await
        .json()
        .await
        .unwrap();
    let key = made["id"].as_str().unwrap();
    assert_eq!(crate::keys::revoke(&app, &c, key).await, 204);
    // Revoking it again revokes nothing and records nothing.
    assert_eq!(crate::keys::revoke(&app, &c, key).await, 404);
    let url = app.checkout(&c, "pro", "month").await;
    app.pay(&url).await;
    app.wait_for_plan(&c, Some("pro")).await;
    app.wait_for_webhooks().await;

    let history = activity(&app, &c).await;
    assert_eq!(
        types_of(&history)[..2],
        ["account.api_key_revoked", "account.api_key_created"]
    );
    assert!(
        !history.to_string().contains(made["key"].as_str().unwrap()),
        "never the secret"
    );
    let kinds: Vec<String> = stored(&app, Some(&id))
        .await
        .into_iter()
        .map(|(kind, ..)| kind)
        .filter(|k| k.starts_with("billing."))
        .collect();
    assert_eq!(kinds[0], "billing.checkout_started");
    assert!(
        kinds.contains(&"billing.checkout_completed".to_owned()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"billing.subscription_changed".to_owned()),
        "{kinds:?}"
    );
}

/// Roles: granted and taken back from the command line, listed in the user's access at once,
/// each change an audit event with the operator as actor; a bad name or an unknown user is
/// refused and changes nothing.
#[tokio::test]
async fn roles_are_granted_from_the_command_line_and_shown_in_the_access() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let id = app.me(&c).await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&c).await["access"]["roles"], json!([]));
    let role = |verb: &'static str, email: &'static str, role: &'static str| {
        crate::cli::tollgate()
            .args(["user", verb, "--email", email, "--role", role])
            .env("DATABASE_URL", &app.db.url)
            .output()
    };
    for name in ["support", "admin"] {
        let out = role("grant", "ann@example.com", name).await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let again = role("grant", "ANN@example.com", "admin").await.unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("already had"));
    app.state.cache.forget_user(&id);
    assert_eq!(
        app.me(&c).await["access"]["roles"],
        json!(["admin", "support"])
    );

    for (email, name) in [
        ("ann@example.com", "Admin!"),
        ("nobody@example.com", "admin"),
    ] {
        let out = role("grant", email, name).await.unwrap();
        assert!(!out.status.success(), "{email} {name}");
    }
    let out = role("revoke", "ann@example.com", "support").await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked"));
    app.state.cache.forget_user(&id);
    assert_eq!(app.me(&c).await["access"]["roles"], json!(["admin"]));

    let changes: Vec<(String, String, Value)> = stored(&app, Some(&id))
        .await
        .into_iter()
        .filter(|(kind, ..)| kind.contains("role"))
        .map(|(kind, actor, payload, _)| (kind, actor, payload["role"].clone()))
        .collect();
    let expected = [
        ("account.role_granted", "support"),
        ("account.role_granted", "admin"),
        ("account.role_revoked", "support"),
    ];
    assert_eq!(changes.len(), expected.len(), "{changes:?}");
    for ((kind, actor, role), (want_kind, want_role)) in changes.iter().zip(expected) {
        assert_eq!(
            (kind.as_str(), actor.as_str(), role),
            (want_kind, "operator", &json!(want_role))
        );
    }
}
