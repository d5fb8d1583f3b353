//! Suspension, and the admin area's other acts on one account: a suspended user has no access
//! and cannot sign in by any method (their session, key and token are refused at once), until
//! an administrator lifts it; an administrator signs out one device and grants roles.

use reqwest::Client;
use serde_json::{Value, json};

use crate::admin::administrator;
use crate::email::ask_for_mail;
use crate::helpers::{PASSWORD, TestApp, app_with_mail, client, error_of};
use crate::tokens::{access, bearer_get, login_tokens, refresh, refresh_of};

async fn user_id(app: &TestApp, c: &Client) -> String {
    app.me(c).await["id"].as_str().unwrap().to_owned()
}

async fn view(app: &TestApp, admin: &Client, id: &str) -> Value {
    let r = app.get_with(admin, &format!("/api/admin/users/{id}")).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// `method` on `url` with `c`, as a JSON client sends it (a content type, no body).
async fn send(c: &Client, method: &str, url: String) -> reqwest::Response {
    c.request(method.parse().unwrap(), url)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
}

/// `email` signed in with the password on a new client.
async fn signed_in(app: &TestApp, email: &str) -> Client {
    let c = client();
    let body = json!({"email": email, "password": PASSWORD});
    let r = app.post_json_with(&c, "/api/auth/login", &body).await;
    assert_eq!(r.status(), 200);
    c
}

/// A magic link's token, consumed on `c`.
async fn consume(app: &TestApp, c: &Client, token: &str) -> reqwest::Response {
    let body = json!({"token": token});
    app.post_json_with(c, "/api/auth/magic-link/consume", &body)
        .await
}

async fn login(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json_with(&client(), "/api/auth/login", &body)
        .await
}

/// The newest audit event about `subject`: its type, actor and payload.
async fn last_event(app: &TestApp, subject: &str) -> (String, String, Value) {
    let (kind, actor, payload): (String, String, String) = sqlx::query_as(
        "SELECT type, actor, payload FROM audit_events WHERE subject = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(subject)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    (kind, actor, serde_json::from_str(&payload).unwrap())
}

#[tokio::test]
async fn a_suspended_user_is_refused_everywhere_until_the_suspension_is_lifted() {
    let (app, sink) = app_with_mail(&[]).await;
    let (admin, admin_id) = administrator(&app).await;
    let ann = app.user("ann@example.com").await;
    let ann_id = user_id(&app, &ann).await;
    let key = crate::keys::key_of(&app, &ann, &["read"]).await;
    let pair = login_tokens(&app, "ann@example.com").await;
    assert_eq!(bearer_get(&app, "/api/me", &key).await.status(), 200);
    assert_eq!(
        bearer_get(&app, "/api/me", &access(&pair)).await.status(),
        200
    );
    assert_eq!(
        view(&app, &admin, &ann_id).await["devices"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Links mailed before the suspension: an address change and a password reset.
    let change = crate::email::change_link(&app, &ann, &sink, "ann.new@example.com").await;
    ask_for_mail(&app, "/api/auth/password/forgot", "ann@example.com").await;
    let mut reset = None;
    for _ in 0..100 {
        let mails = sink.to("ann@example.com");
        if let Some(mail) = mails.iter().find(|m| m.text().contains("reset-password")) {
            reset = Some(mail.token("reset-password"));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reset = reset.expect("a reset link");

    let suspend = format!("/api/admin/users/{ann_id}/suspend");
    // Not by Ann herself (she is no administrator), not with a bad reason, not one's own account.
    let r = app.post_json_with(&ann, &suspend, &json!({})).await;
    assert_eq!(r.status(), 404);
    for bad in [
        json!({"reason": "x".repeat(501)}),
        json!({"reason": "a\u{7}b"}),
        json!({"reason": "fraud\u{202e}gnp.exe"}),
    ] {
        let r = app.post_json_with(&admin, &suspend, &bad).await;
        assert_eq!(error_of(r).await, "invalid_field");
    }
    let own = format!("/api/admin/users/{admin_id}/suspend");
    let r = app.post_json_with(&admin, &own, &json!({})).await;
    assert_eq!(error_of(r).await, "invalid_field");
    assert_eq!(app.me(&ann).await["id"], ann_id.as_str(), "nothing changed");

    let r = app
        .post_json_with(&admin, &suspend, &json!({"reason": "chargeback fraud"}))
        .await;
    assert_eq!(r.status(), 204);
    let (kind, actor, payload) = last_event(&app, &ann_id).await;
    assert_eq!(
        (kind.as_str(), actor.as_str()),
        ("account.suspended", admin_id.as_str())
    );
    assert_eq!(payload["reason"], "chargeback fraud");
    // Again: nothing new happens.
    let again = app.post_json_with(&admin, &suspend, &json!({})).await;
    assert_eq!(again.status(), 204);
    assert_eq!(last_event(&app, &ann_id).await.0, "account.suspended");

    // Every credential she holds is refused at once: session, key, access token, refresh token,
    // and the proxy's question.
    assert_eq!(app.get_with(&ann, "/api/me").await.status(), 401);
    assert_eq!(bearer_get(&app, "/api/me", &key).await.status(), 401);
    assert_eq!(
        bearer_get(&app, "/api/me", &access(&pair)).await.status(),
        401
    );
    assert_eq!(
        error_of(refresh(&app, &refresh_of(&pair)).await).await,
        "refresh_token_invalid"
    );
    let forward = client()
        .get(app.url("/auth/forward"))
        .header("x-forwarded-uri", "/app")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(forward.status(), 401);
    let seen = view(&app, &admin, &ann_id).await;
    assert!(seen["suspended_at"].is_string(), "{seen}");
    assert_eq!(seen["devices"].as_array().unwrap().len(), 0, "{seen}");

    // No sign-in passes: a password (for a session or tokens), a magic link. A wrong password
    // is answered as for anyone, so the refusal tells nothing to whoever lacks the password.
    let password = json!({"email": "ann@example.com", "password": PASSWORD});
    assert_eq!(
        error_of(login(&app, password.clone()).await).await,
        "account_suspended"
    );
    let tokens = json!({"email": "ann@example.com", "password": PASSWORD, "token": true});
    assert_eq!(
        error_of(login(&app, tokens).await).await,
        "account_suspended"
    );
    let wrong = json!({"email": "ann@example.com", "password": "not the password at all"});
    assert_eq!(
        error_of(login(&app, wrong).await).await,
        "invalid_credentials"
    );
    // The sign-in page says so in words, on the form.
    let page = client();
    let csrf = app.csrf_token(&page, "/login").await;
    let form = [
        ("csrf_token", csrf.as_str()),
        ("email", "ann@example.com"),
        ("password", PASSWORD),
    ];
    let r = page
        .post(app.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("account is suspended"));
    let mails = sink.to("ann@example.com").len();
    ask_for_mail(&app, "/api/auth/magic-link", "ann@example.com").await;
    let token = sink
        .wait_for("ann@example.com", mails + 1)
        .await
        .token("magic");
    let browser = client();
    let r = consume(&app, &browser, &token).await;
    assert_eq!(error_of(r).await, "account_suspended");
    assert_eq!(app.get_with(&browser, "/api/me").await.status(), 401);

    // The links change nothing while it lasts: the address stays, the password stays.
    let confirm = json!({"token": change, "password": PASSWORD});
    let r = app
        .post_json_with(&client(), "/api/auth/email/confirm", &confirm)
        .await;
    assert_eq!(error_of(r).await, "account_suspended");
    let new_password = json!({"token": reset, "password": "a brand new passphrase"});
    let r = app
        .post_json_with(&client(), "/api/auth/password/reset", &new_password)
        .await;
    assert_eq!(error_of(r).await, "account_suspended");
    // Each refused sign-in whose proof passed is in the trail, for administrators.
    let refusals: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, payload FROM audit_events WHERE type = 'auth.sign_in_failed' AND subject = $1",
    )
    .bind(&ann_id)
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    let suspended_refusals = refusals
        .iter()
        .filter(|(actor, payload)| actor == &ann_id && payload.contains("account_suspended"))
        .count();
    assert!(suspended_refusals >= 3, "{refusals:?}");

    // Lifted: she signs in again and her key works again; the sign-ins that ended stay ended.
    let unsuspend = format!("/api/admin/users/{ann_id}/unsuspend");
    let r = app.post_json_with(&admin, &unsuspend, &json!({})).await;
    assert_eq!(r.status(), 204);
    let (kind, actor, _) = last_event(&app, &ann_id).await;
    assert_eq!(
        (kind.as_str(), actor.as_str()),
        ("account.unsuspended", admin_id.as_str())
    );
    assert!(view(&app, &admin, &ann_id).await["suspended_at"].is_null());
    let r = login(&app, password).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(bearer_get(&app, "/api/me", &key).await.status(), 200);
    assert_eq!(app.get_with(&ann, "/api/me").await.status(), 401);
    assert_eq!(
        bearer_get(&app, "/api/me", &access(&pair)).await.status(),
        401
    );
    // The refused link changed nothing: unused, it signs her in now (and left her password).
    let r = consume(&app, &browser, &token).await;
    assert_eq!(r.status(), 200);
    // The refused reset and address change changed nothing either: the old password signed
    // her in above, and her address is the one she had.
    assert_eq!(app.me(&browser).await["email"], "ann@example.com");
    // Her history tells her both, without the administrator's address or reason.
    let history: Value = app
        .get_with(&browser, "/api/account/activity")
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"account.suspended") && kinds.contains(&"account.unsuspended"),
        "{kinds:?}"
    );
    let suspended = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "account.suspended")
        .unwrap()
        .clone();
    assert!(suspended["client_ip"].is_null(), "{suspended}");
    assert!(suspended["payload"].get("reason").is_none(), "{suspended}");
    let seen = view(&app, &admin, &ann_id).await;
    let for_admins = seen["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "account.suspended")
        .unwrap()
        .clone();
    assert_eq!(for_admins["payload"]["reason"], "chargeback fraud");
    assert!(for_admins["client_ip"].is_string());
}

#[tokio::test]
async fn a_suspension_ends_a_two_step_sign_in_half_way_and_refuses_the_next_at_its_end() {
    use crate::second_factor::{first_step, second_step, user_with_2fa};
    let app = crate::helpers::spawn_app().await;
    let (admin, _) = administrator(&app).await;
    let Some((ann, mut otp, _)) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    let ann_id = user_id(&app, &ann).await;
    let browser = client();
    let pending = first_step(&app, &browser, "ann@example.com", json!({})).await;

    let suspend = format!("/api/admin/users/{ann_id}/suspend");
    assert_eq!(
        app.post_json_with(&admin, &suspend, &json!({}))
            .await
            .status(),
        204
    );
    let code = json!({"code": otp.next_code().await});
    let (_, answer) = second_step(&app, &browser, &pending, code).await;
    assert_eq!(answer["error"], "pending_sign_in_invalid");
    // Begun after the suspension: no second step is offered (and no code is spent on one).
    let body = json!({"email": "ann@example.com", "password": PASSWORD});
    let r = app.post_json_with(&browser, "/api/auth/login", &body).await;
    assert_eq!(error_of(r).await, "account_suspended");
    assert_eq!(app.get_with(&browser, "/api/me").await.status(), 401);
}

#[tokio::test]
async fn an_administrator_signs_out_one_device_and_grants_and_takes_back_roles() {
    let app = crate::helpers::spawn_app().await;
    let (admin, admin_id) = administrator(&app).await;
    let laptop = app.user("ann@example.com").await;
    let ann_id = user_id(&app, &laptop).await;
    let phone = signed_in(&app, "ann@example.com").await;
    let pair = login_tokens(&app, "ann@example.com").await;
    let devices = view(&app, &admin, &ann_id).await["devices"].clone();
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 3, "{devices:?}");
    assert!(devices.iter().all(|d| d["current"] == false));
    // The phone's session, as the phone's own list marks it.
    let own: Value = app
        .get_with(&phone, "/api/account/devices")
        .await
        .json()
        .await
        .unwrap();
    let phone_id = own["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["current"] == true)
        .and_then(|d| d["id"].as_str())
        .unwrap()
        .to_owned();
    let family = devices
        .iter()
        .find(|d| d["kind"] == "token")
        .and_then(|d| d["id"].as_str())
        .unwrap()
        .to_owned();

    let end = |device: &str| format!("/api/admin/users/{ann_id}/devices/{device}");
    let r = send(&client(), "DELETE", app.url(&end(&phone_id))).await;
    assert_eq!(r.status(), 404, "signed out: no area");
    let r = send(&admin, "DELETE", app.url(&end(&phone_id))).await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.get_with(&phone, "/api/me").await.status(), 401);
    assert_eq!(app.get_with(&laptop, "/api/me").await.status(), 200);
    let (kind, actor, payload) = last_event(&app, &ann_id).await;
    assert_eq!(
        (kind.as_str(), actor.as_str()),
        ("admin.signed_out_device", admin_id.as_str())
    );
    assert_eq!(payload["device"], phone_id.as_str());
    let r = send(&admin, "DELETE", app.url(&end(&phone_id))).await;
    assert_eq!(r.status(), 404, "gone already");
    let r = send(&admin, "DELETE", app.url(&end(&family))).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        bearer_get(&app, "/api/me", &access(&pair)).await.status(),
        401
    );
    // Another user's device is not Ann's.
    let bob = app.user("bob@example.com").await;
    let bob_id = user_id(&app, &bob).await;
    let bobs = view(&app, &admin, &bob_id).await["devices"][0]["id"].clone();
    let r = send(&admin, "DELETE", app.url(&end(bobs.as_str().unwrap()))).await;
    assert_eq!(r.status(), 404);
    assert_eq!(app.get_with(&bob, "/api/me").await.status(), 200);

    // Roles: granted and taken back by the administrator, each an event naming them.
    let role = |name: &str| app.url(&format!("/api/admin/users/{ann_id}/roles/{name}"));
    assert_eq!(send(&admin, "PUT", role("support")).await.status(), 204);
    assert_eq!(app.me(&laptop).await["access"]["roles"], json!(["support"]));
    let (kind, actor, payload) = last_event(&app, &ann_id).await;
    assert_eq!(
        (kind.as_str(), actor.as_str()),
        ("account.role_granted", admin_id.as_str())
    );
    assert_eq!(payload["role"], "support");
    for bad in ["Support", "2fa", "a%20b"] {
        let r = send(&admin, "PUT", role(bad)).await;
        assert_eq!(error_of(r).await, "invalid_field", "{bad}");
    }
    assert_eq!(send(&laptop, "PUT", role("admin")).await.status(), 404);
    assert_eq!(send(&admin, "PUT", role("admin")).await.status(), 204);
    assert_eq!(
        app.get_with(&laptop, "/api/admin/users").await.status(),
        200,
        "Ann administers now"
    );
    assert_eq!(send(&admin, "DELETE", role("admin")).await.status(), 204);
    assert_eq!(send(&admin, "DELETE", role("support")).await.status(), 204);
    assert_eq!(app.me(&laptop).await["access"]["roles"], json!([]));
    assert_eq!(
        app.get_with(&laptop, "/api/admin/users").await.status(),
        404
    );
    // Not `admin` from oneself.
    let own = app.url(&format!("/api/admin/users/{admin_id}/roles/admin"));
    assert_eq!(
        error_of(send(&admin, "DELETE", own).await).await,
        "invalid_field"
    );
    assert_eq!(app.get_with(&admin, "/api/admin/users").await.status(), 200);
}
