//! The admin area over JSON: a signed-in administrator finds users, reads one (access, roles,
//! events) and signs them out everywhere, an audit event with the administrator as actor; to
//! anyone else (signed out, signed in without the role, with a key) the area is 404.

use serde_json::{Value, json};

use crate::helpers::{TestApp, client, spawn_app};

async fn get(app: &TestApp, c: &reqwest::Client, path: &str) -> (u16, Value) {
    let r = app.get_with(c, path).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A signed-in user who holds the `admin` role (granted as `tollgate user grant` does), and
/// their id.
pub(crate) async fn administrator(app: &TestApp) -> (reqwest::Client, String) {
    let admin = app.user("boss@example.com").await;
    let id = app.me(&admin).await["id"].as_str().unwrap().to_owned();
    tollgate::auth::roles::grant(&app.state, &id, "admin", "operator")
        .await
        .unwrap();
    (admin, id)
}

#[tokio::test]
async fn an_administrator_finds_reads_and_signs_out_a_user_and_no_one_else_sees_the_area() {
    let app = spawn_app().await;
    let admin = app.user("boss@example.com").await;
    let admin_id = app.me(&admin).await["id"].as_str().unwrap().to_owned();
    let ann = app.user("ann@example.com").await;
    let ann_id = app.me(&ann).await["id"].as_str().unwrap().to_owned();
    app.user("bob_100@example.com").await;

    // Not an administrator yet: the whole area is 404, whoever asks.
    let key = crate::keys::key_of(&app, &admin, &["read"]).await;
    let areas = [
        "/api/admin/users".to_owned(),
        format!("/api/admin/users/{ann_id}"),
    ];
    for path in &areas {
        for c in [&admin, &ann, &client()] {
            assert_eq!(get(&app, c, path).await.0, 404, "{path}");
        }
    }
    let sign_out = format!("/api/admin/users/{ann_id}/sign-out");
    assert_eq!(
        app.post_json_with(&ann, &sign_out, &json!({}))
            .await
            .status(),
        404
    );

    tollgate::auth::roles::grant(&app.state, &admin_id, "admin", "operator")
        .await
        .unwrap();
    // A key of an administrator is still no way in: the area takes a session.
    let with_key = client()
        .get(app.url("/api/admin/users"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), 404);

    let (status, found) = get(&app, &admin, "/api/admin/users?q=ANN@").await;
    assert_eq!(status, 200);
    assert_eq!(found["users"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["users"][0]["id"], ann_id.as_str());
    // `%` and `_` are themselves, never wildcards.
    let (_, literal) = get(&app, &admin, "/api/admin/users?q=%25").await;
    assert_eq!(literal["users"].as_array().unwrap().len(), 0, "{literal}");
    // A backslash (the escape character) and a long query are plain input, never an error.
    for hostile in ["%5C", "%5C%25", &"a".repeat(4000)] {
        let (status, none) = get(&app, &admin, &format!("/api/admin/users?q={hostile}")).await;
        assert_eq!(
            (status, none["users"].as_array().map(Vec::len)),
            (200, Some(0))
        );
    }
    // A method a route does not take is 404 too, whoever asks: no 405 and `Allow` to show the
    // area is there.
    let patch = |c: &reqwest::Client| {
        c.patch(app.url("/api/admin/users"))
            .header("content-type", "application/json")
            .send()
    };
    for c in [&admin, &client()] {
        let r = patch(c).await.unwrap();
        assert_eq!(r.status(), 404);
        assert!(
            r.headers().get("allow").is_none(),
            "no Allow to map the routes by"
        );
    }
    let suspend = format!("/api/admin/users/{ann_id}/suspend");
    assert_eq!(get(&app, &client(), &suspend).await.0, 404);
    assert_eq!(get(&app, &admin, &suspend).await.0, 404);
    // What cannot be read is a JSON error that names where.
    let (status, unreadable) = get(&app, &admin, "/api/admin/users/%ff").await;
    assert_eq!((status, unreadable["field"].as_str()), (400, Some("path")));
    assert_eq!(unreadable["error"], "invalid_field");
    let (status, repeated) = get(&app, &admin, "/api/admin/users?q=a&q=b").await;
    assert_eq!((status, repeated["field"].as_str()), (400, Some("query")));
    // A NUL character (which no stored text holds, and PostgreSQL refuses) is refused first.
    let (status, nul) = get(&app, &admin, "/api/admin/users/usr_%00").await;
    assert_eq!((status, nul["field"].as_str()), (400, Some("path")));
    let (status, nul) = get(&app, &admin, "/api/admin/users?q=%00").await;
    assert_eq!((status, nul["field"].as_str()), (400, Some("query")));
    let body = json!({"email": "ann\u{0}@example.com", "password": "x"});
    let r = app
        .post_json_with(&client(), "/api/auth/login", &body)
        .await;
    assert_eq!(crate::helpers::error_of(r).await, "invalid_json");
    let (_, wildcard) = get(&app, &admin, "/api/admin/users?q=_").await;
    assert_eq!(wildcard["users"].as_array().unwrap().len(), 1, "{wildcard}");
    let (_, newest) = get(&app, &admin, "/api/admin/users").await;
    assert_eq!(newest["users"].as_array().unwrap().len(), 3);

    let (status, view) = get(&app, &admin, &format!("/api/admin/users/{ann_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(view["user"]["email"], "ann@example.com");
    assert_eq!(view["user"]["access"]["plan"], "free");
    assert_eq!(view["events"][0]["type"], "auth.signed_in");
    assert_eq!(
        get(&app, &admin, "/api/admin/users/usr_nobody").await.0,
        404
    );

    // Signed out everywhere: Ann's session ends, and the trail names the administrator.
    assert_eq!(app.me(&ann).await["id"], ann_id.as_str());
    let r = app.post_json_with(&admin, &sign_out, &json!({})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.get_with(&ann, "/api/me").await.status(), 401);
    let (actor, kind): (String, String) = sqlx::query_as(
        "SELECT actor, type FROM audit_events WHERE subject = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(&ann_id)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (actor.as_str(), kind.as_str()),
        (admin_id.as_str(), "admin.signed_out_user")
    );
    // The administrator's own session goes on.
    assert_eq!(get(&app, &admin, "/api/admin/users").await.0, 200);
}

/// An administrator has a user's subscriptions read again from Stripe (what webhooks that never
/// arrived would have brought) and sends a new verification link; each is an event naming them.
#[tokio::test]
async fn an_administrator_resyncs_a_user_and_resends_their_verification() {
    let app = spawn_app().await;
    let (admin, admin_id) = administrator(&app).await;
    // Ann pays while Stripe's webhooks are held: tollgate does not know yet.
    let ann = app.user("ann@example.com").await;
    let ann_id = app.me(&ann).await["id"].as_str().unwrap().to_owned();
    app.hold_webhooks(true).await;
    let url = app.checkout(&ann, "pro", "month").await;
    app.pay(&url).await;
    assert_eq!(app.me(&ann).await["access"]["plan"], "free");

    let resync = format!("/api/admin/users/{ann_id}/resync");
    assert_eq!(
        app.post_json_with(&ann, &resync, &json!({})).await.status(),
        404
    );
    let r = app.post_json_with(&admin, &resync, &json!({})).await;
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["subscriptions"], 1);
    assert_eq!(done["user"]["access"]["plan"], "pro");
    assert_eq!(app.me(&ann).await["access"]["plan"], "pro");

    let outbox = || async {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM outbox WHERE recipient = 'ann@example.com' AND kind = 'verify'",
        )
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        n
    };
    let before = outbox().await;
    let verify = format!("/api/admin/users/{ann_id}/verify-email");
    let sent: Value = app
        .post_json_with(&admin, &verify, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sent["sent"], true);
    assert_eq!(outbox().await, before + 1);

    let kinds: Vec<(String, String)> = sqlx::query_as(
        "SELECT type, actor FROM audit_events WHERE subject = $1 AND type LIKE 'admin.%' ORDER BY seq",
    )
    .bind(&ann_id)
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        [
            ("admin.resynced_user".to_owned(), admin_id.clone()),
            ("admin.resent_verification".to_owned(), admin_id.clone()),
        ]
    );
    app.hold_webhooks(false).await;
}

/// An administrator deletes a paying user's account: the subscription is canceled in Stripe, the
/// user is gone, and the trail keeps who did it. Their own account is not deleted here.
#[tokio::test]
async fn an_administrator_deletes_a_users_account() {
    let app = spawn_app().await;
    let (admin, admin_id) = administrator(&app).await;
    let ann = app.subscriber("ann@example.com", "pro").await;
    let ann_id = app.me(&ann).await["id"].as_str().unwrap().to_owned();
    let customer = app.customer_of("ann@example.com").await.unwrap();

    let delete = |c: &reqwest::Client, id: &str| {
        c.delete(app.url(&format!("/api/admin/users/{id}")))
            .header("content-type", "application/json")
            .send()
    };
    assert_eq!(
        delete(&ann, &admin_id).await.unwrap().status(),
        404,
        "not an administrator"
    );
    assert_eq!(
        delete(&admin, &admin_id).await.unwrap().status(),
        400,
        "not one's own"
    );
    assert_eq!(delete(&admin, &ann_id).await.unwrap().status(), 204);
    assert_eq!(app.get_with(&ann, "/api/me").await.status(), 401);
    assert_eq!(
        app.login_status("ann@example.com", crate::helpers::PASSWORD)
            .await,
        401
    );
    let subs = app
        .stripe_get(&format!("/v1/subscriptions?customer={customer}&status=all"))
        .await;
    assert_eq!(subs["data"][0]["status"], "canceled");
    let (actor,): (String,) = sqlx::query_as(
        "SELECT actor FROM audit_events WHERE subject = $1 AND type = 'account.deleted'",
    )
    .bind(&ann_id)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(actor, admin_id);
    assert_eq!(delete(&admin, &ann_id).await.unwrap().status(), 404, "gone");
}
