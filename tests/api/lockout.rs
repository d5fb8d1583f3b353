//! Strangers cannot lock the owner out: failed logins from elsewhere fill the account's bucket,
//! which browsers holding a device cookie for the account (OWASP) and the mailing requests do not
//! count on. Each browser comes from its own client address (through a trusted proxy), so the
//! per-address limits stay out of the way.

use reqwest::{Client, Response};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, SmtpSink, TestApp, client, set_cookie_line};

const OWNER: &str = "owner@example.com";
const WRONG: &str = "not the owner's password";

async fn limited_app() -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .with("TOLLGATE_RATE_LIMIT", "on")
        .with("TOLLGATE_TRUSTED_PROXIES", "127.0.0.1/32")
        .with("SMTP_URL", &sink.url())
        .spawn()
        .await;
    (app, sink)
}

/// POSTs `body` to `path` with `http`, as the client at `ip`.
async fn post_from(app: &TestApp, http: &Client, ip: &str, path: &str, body: Value) -> Response {
    http.post(app.url(path))
        .header("x-forwarded-for", ip)
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn login(app: &TestApp, http: &Client, ip: &str, email: &str, password: &str) -> Response {
    let body = json!({"email": email, "password": password});
    post_from(app, http, ip, "/api/auth/login", body).await
}

/// A browser that registered `email` and then signed in with its password (getting a device
/// cookie).
async fn signed_in_browser(app: &TestApp, ip: &str, email: &str) -> Client {
    let http = client();
    let body = json!({"email": email, "password": PASSWORD});
    let r = post_from(app, &http, ip, "/api/auth/register", body).await;
    assert_eq!(r.status(), 201, "registration of {email}");
    let r = login(app, &http, ip, email, PASSWORD).await;
    assert_eq!(r.status(), 200, "first login of {email}");
    let cookie = set_cookie_line(r.headers(), "tollgate_device").expect("a device cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    http
}

/// Wrong passwords for `email` from `http` until refused (the account's bucket holds 10 attempts,
/// the owner's own first login among them).
async fn fill_account_bucket(app: &TestApp, http: &Client, ip: &str, email: &str) {
    for i in 0..=10 {
        let r = login(app, http, ip, email, WRONG).await;
        match r.status().as_u16() {
            401 => continue,
            429 => return,
            other => panic!("stranger's attempt {i}: {other}"),
        }
    }
    panic!("eleven wrong passwords and the account's bucket is not full");
}

#[tokio::test]
async fn strangers_filling_an_accounts_login_limit_do_not_lock_out_its_owner() {
    let (app, sink) = limited_app().await;
    let owner = signed_in_browser(&app, "10.0.0.1", OWNER).await;

    fill_account_bucket(&app, &client(), "10.0.0.2", OWNER).await;

    let new_browser = login(&app, &client(), "10.0.0.3", OWNER, PASSWORD).await;
    assert_eq!(
        new_browser.status(),
        429,
        "a browser without a device cookie"
    );
    let r = login(&app, &owner, "10.0.0.4", OWNER, PASSWORD).await;
    assert_eq!(r.status(), 200, "the owner's device signs in");
    // The verification mail was the first; the reset and magic-link mails still go out.
    let body = json!({"email": OWNER});
    let forgot = post_from(
        &app,
        &client(),
        "10.0.0.5",
        "/api/auth/password/forgot",
        body,
    )
    .await;
    assert_eq!(forgot.status(), 202);
    assert!(
        sink.wait_for(OWNER, 2)
            .await
            .link("reset-password")
            .contains("token=")
    );
    let body = json!({"email": OWNER});
    let magic = post_from(&app, &client(), "10.0.0.6", "/api/auth/magic-link", body).await;
    assert_eq!(magic.status(), 202);
    assert!(
        sink.wait_for(OWNER, 3)
            .await
            .link("magic")
            .contains("token=")
    );
}

#[tokio::test]
async fn a_device_cookies_own_failures_lock_only_that_device() {
    let (app, _sink) = limited_app().await;
    let laptop = signed_in_browser(&app, "10.0.0.1", OWNER).await;
    let phone = client();
    let r = login(&app, &phone, "10.0.0.2", OWNER, PASSWORD).await;
    assert_eq!(r.status(), 200);

    for i in 0..5 {
        let r = login(&app, &laptop, "10.0.0.1", OWNER, WRONG).await;
        assert_eq!(r.status(), 401, "laptop's wrong password {i}");
    }
    let locked = login(&app, &laptop, "10.0.0.1", OWNER, PASSWORD).await;

    assert_eq!(locked.status(), 429, "the laptop's cookie is locked");
    let r = login(&app, &phone, "10.0.0.2", OWNER, PASSWORD).await;
    assert_eq!(r.status(), 200, "the phone's cookie is not");
    let r = login(&app, &client(), "10.0.0.3", OWNER, PASSWORD).await;
    assert_eq!(r.status(), 200, "nor the account's bucket");
}

#[tokio::test]
async fn another_accounts_or_a_forged_device_cookie_is_not_trusted() {
    let (app, _sink) = limited_app().await;
    signed_in_browser(&app, "10.0.0.1", OWNER).await;
    // The stranger holds a genuine device cookie, for their own account.
    let stranger = signed_in_browser(&app, "10.0.0.2", "stranger@example.com").await;
    let r = login(
        &app,
        &stranger,
        "10.0.0.2",
        "stranger@example.com",
        PASSWORD,
    )
    .await;
    let genuine = set_cookie_line(r.headers(), "tollgate_device").unwrap();
    let value = genuine
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1;

    fill_account_bucket(&app, &stranger, "10.0.0.2", OWNER).await;

    let (_, rest) = value.split_once('.').unwrap();
    // The owner's id, which the stranger is assumed to have learned.
    let (owner_id,): (String,) = sqlx::query_as("SELECT id FROM users WHERE email_norm = $1")
        .bind(OWNER)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let forged = format!("tollgate_device={owner_id}.{rest}");
    let r = client()
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", "10.0.0.3")
        .header("cookie", forged)
        .json(&json!({"email": OWNER, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "a cookie re-labelled with the owner's id");
}

/// Signs in through the login form with `browser`, as the client at `ip`.
async fn form_login(app: &TestApp, browser: &Client, ip: &str) -> Response {
    let token = app.csrf_token(browser, "/login").await;
    browser
        .post(app.url("/login"))
        .header("x-forwarded-for", ip)
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", OWNER),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_login_form_trusts_the_owners_browser_too() {
    let (app, _sink) = limited_app().await;
    app.register_with(&client(), OWNER, PASSWORD).await;
    let browser = client();
    let first = form_login(&app, &browser, "10.0.0.1").await;
    assert_eq!(first.status(), 303);
    assert!(set_cookie_line(first.headers(), "tollgate_device").is_some());

    fill_account_bucket(&app, &client(), "10.0.0.2", OWNER).await;

    assert_eq!(form_login(&app, &client(), "10.0.0.3").await.status(), 429);
    assert_eq!(form_login(&app, &browser, "10.0.0.4").await.status(), 303);
}

#[tokio::test]
async fn device_cookies_from_before_a_password_change_are_not_trusted_and_devices_share_a_ceiling()
{
    let (app, _sink) = limited_app().await;
    // Someone who knew the password signs in from a browser, then the owner changes it.
    let former = signed_in_browser(&app, "10.0.0.1", OWNER).await;
    // (From the owner's own browser, whose device cookie the change renews.)
    let owner = client();
    let r = login(&app, &owner, "10.0.0.5", OWNER, PASSWORD).await;
    assert_eq!(r.status(), 200);
    let body = json!({"current_password": PASSWORD, "new_password": "the owner's new passphrase"});
    let r = post_from(&app, &owner, "10.0.0.5", "/api/auth/password/change", body).await;
    assert_eq!(r.status(), 204);
    fill_account_bucket(&app, &client(), "10.0.0.2", OWNER).await;
    // The old device cookie gives its holder no guesses of its own any more.
    let r = login(&app, &former, "10.0.0.4", OWNER, WRONG).await;
    assert_eq!(
        r.status(),
        429,
        "a cookie from before the change is a stranger's"
    );

    // Many current device cookies together stay under one ceiling (30 per 5 minutes).
    let (app, _sink) = limited_app().await;
    let first = signed_in_browser(&app, "10.1.0.1", OWNER).await;
    let mut devices = vec![first];
    for i in 0..7 {
        let browser = client();
        let r = login(&app, &browser, &format!("10.1.1.{i}"), OWNER, PASSWORD).await;
        assert_eq!(r.status(), 200);
        devices.push(browser);
    }
    let mut refused = 0;
    let mut tries = 0;
    for (i, device) in devices.iter().enumerate() {
        for _ in 0..5 {
            let r = login(&app, device, &format!("10.1.2.{i}"), OWNER, WRONG).await;
            tries += 1;
            if r.status() == 429 {
                refused += 1;
            }
        }
    }
    assert_eq!(tries, 40);
    // Each device's own bucket holds its 5; only the account's device ceiling (30) refuses.
    assert_eq!(refused, 10, "{refused} of 40 device guesses refused");
}

#[tokio::test]
async fn strangers_who_fill_an_addresss_mail_limit_leave_the_owners_browser_its_links() {
    let (app, sink) = limited_app().await;
    let owner = signed_in_browser(&app, "10.0.0.1", OWNER).await;
    let other = signed_in_browser(&app, "10.0.0.2", "other@example.com").await;
    let forgot = json!({"email": OWNER});
    // Five strangers, each from an address of its own, spend the address's mail limit.
    for i in 0..5 {
        let ip = format!("10.1.0.{i}");
        let r = post_from(
            &app,
            &client(),
            &ip,
            "/api/auth/password/forgot",
            forgot.clone(),
        )
        .await;
        assert_eq!(r.status(), 202, "stranger {i}");
    }
    let r = post_from(
        &app,
        &client(),
        "10.1.0.9",
        "/api/auth/password/forgot",
        forgot.clone(),
    )
    .await;
    assert_eq!(r.status(), 429, "the address's limit is spent");
    // Another account's device cookie is no key to this address.
    let r = post_from(
        &app,
        &other,
        "10.0.0.2",
        "/api/auth/password/forgot",
        forgot.clone(),
    )
    .await;
    assert_eq!(r.status(), 429, "another account's browser");

    // The owner's own browser still gets a reset link and a sign-in link.
    let r = post_from(
        &app,
        &owner,
        "10.0.0.1",
        "/api/auth/password/forgot",
        forgot.clone(),
    )
    .await;
    assert_eq!(r.status(), 202, "the owner's browser");
    let r = post_from(&app, &owner, "10.0.0.1", "/api/auth/magic-link", forgot).await;
    assert_eq!(r.status(), 202, "the owner's browser");
    // The verification at sign-up, five resets for strangers, and the owner's two.
    sink.wait_for(OWNER, 8).await;
    assert_eq!(sink.to(OWNER).len(), 8);
}
