//! The HTML pages: sign-up, log-in, account, log-out, with CSRF-protected forms.

use crate::helpers::{PASSWORD, client, page_text, spawn_app};

#[tokio::test]
async fn signup_form_creates_the_account_and_lands_on_the_account_page() {
    let app = spawn_app().await;
    let browser = client();
    let token = app.csrf_token(&browser, "/signup").await;

    let response = browser
        .post(app.url("/signup"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", "ann@example.com"),
            ("password", PASSWORD),
            ("next", "/account"),
        ])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/account");
    let account = browser.get(app.url("/account")).send().await.unwrap();
    assert_eq!(account.status(), 200);
    let html = account.text().await.unwrap();
    assert!(html.contains("ann@example.com"));
    assert!(html.contains("<html lang=\"en\">"));
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let browser = client();
    let token = app.csrf_token(&browser, "/signup").await;
    let cases = [
        (None, None, "no token"),
        (Some("0000.0000"), None, "a forged token"),
        (
            Some(token.as_str()),
            Some("https://evil.example"),
            "a foreign Origin",
        ),
    ];
    for (submitted, origin, why) in cases {
        let mut fields = vec![("email", "ann@example.com"), ("password", PASSWORD)];
        if let Some(t) = submitted {
            fields.push(("csrf_token", t));
        }
        let mut request = browser.post(app.url("/signup")).form(&fields);
        if let Some(o) = origin {
            request = request.header("origin", o);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{why}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("did not come from this site"),
            "{why}"
        );
    }
    // A token from another browser (without the matching cookie) fails too.
    let stranger = client();
    let response = stranger
        .post(app.url("/signup"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", "ann@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "token without its cookie");
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn anonymous_page_views_create_no_session_rows() {
    let app = spawn_app().await;
    for page in ["/", "/login", "/signup"] {
        assert_eq!(app.get(page).await.status(), 200, "{page}");
    }
    assert_eq!(app.count("sessions").await, 0);
}

#[tokio::test]
async fn login_page_shows_one_message_for_every_failure_and_follows_a_local_next() {
    let app = spawn_app().await;
    app.register_with(&client(), "ann@example.com", PASSWORD)
        .await;
    let browser = client();
    let token = app.csrf_token(&browser, "/login").await;

    let mut pages = Vec::new();
    for (email, password) in [
        ("ann@example.com", "wrong password"),
        ("nobody@example.com", PASSWORD),
    ] {
        let response = browser
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", token.as_str()),
                ("email", email),
                ("password", password),
                ("next", "/account"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let html = response.text().await.unwrap();
        assert!(html.contains("Wrong email or password."));
        pages.push(html.replace(email, "EMAIL"));
    }
    assert_eq!(pages[0], pages[1], "no difference but the echoed address");

    for (next, expected) in [("/account", "/account"), ("//evil.example/x", "/account")] {
        let response = client_login(&app, next).await;
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["location"], expected, "next={next}");
    }
}

async fn client_login(app: &crate::helpers::TestApp, next: &str) -> reqwest::Response {
    let browser = client();
    let token = app.csrf_token(&browser, "/login").await;
    browser
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", "ann@example.com"),
            ("password", PASSWORD),
            ("next", next),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn account_page_requires_login_and_logout_is_a_post() {
    let app = spawn_app().await;
    let anonymous = app.get("/account").await;
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()["location"], "/login?next=/account");

    let browser = client();
    app.register_with(&browser, "ann@example.com", PASSWORD)
        .await;
    let get_logout = browser.get(app.url("/logout")).send().await.unwrap();
    assert_eq!(get_logout.status(), 405, "a GET never signs out");
    assert_eq!(
        browser
            .get(app.url("/account"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let token = app.csrf_token(&browser, "/account").await;
    let logout = browser
        .post(app.url("/logout"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    assert_eq!(
        browser
            .get(app.url("/account"))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
}

#[tokio::test]
async fn password_change_form_reports_errors_readably() {
    let app = spawn_app().await;
    let browser = client();
    app.register_with(&browser, "ann@example.com", PASSWORD)
        .await;
    let token = app.csrf_token(&browser, "/account").await;

    let short = browser
        .post(app.url("/account/password"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("current_password", PASSWORD),
            ("new_password", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), 400);
    assert!(
        short
            .text()
            .await
            .unwrap()
            .contains("at least 8 characters")
    );

    let ok = browser
        .post(app.url("/account/password"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("current_password", PASSWORD),
            ("new_password", "another fine passphrase"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/account?notice=password_changed");
}

#[tokio::test]
async fn deleting_the_account_from_its_page_says_so_on_the_home_page() {
    let app = spawn_app().await;
    let browser = client();
    app.register_with(&browser, "ann@example.com", PASSWORD)
        .await;
    let token = app.csrf_token(&browser, "/account").await;

    let done = browser
        .post(app.url("/account/delete"))
        .form(&[("csrf_token", token.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    let home = done.headers()["location"].to_str().unwrap().to_owned();
    let page = browser.get(app.url(&home)).send().await.unwrap();
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Your account was deleted.")
    );
    assert_eq!(app.count("users").await, 0);
}

/// Every form a page posts to.
const PAGE_FORMS: [&str; 22] = [
    "/signup",
    "/login",
    "/logout",
    "/account/password",
    "/account/delete",
    "/account/email",
    "/account/verify",
    "/account/keys",
    "/account/keys/revoke",
    "/billing/checkout",
    "/billing/portal",
    "/billing/change",
    "/billing/cancel",
    "/billing/resume",
    "/verify-email",
    "/reset-password",
    "/magic",
    "/magic/code",
    "/magic-link",
    "/forgot-password",
    "/confirm-email",
    "/confirm-email?token=x",
];

#[tokio::test]
async fn every_page_form_refuses_a_missing_token_and_a_foreign_origin_and_changes_nothing() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let token = app.csrf_token(&c, "/account").await;
    let (users, outbox, customers) = (
        app.count("users").await,
        app.count("outbox").await,
        app.count("billing_customers").await,
    );
    let fields = [
        ("email", "bob@example.com"),
        ("password", PASSWORD),
        ("current_password", PASSWORD),
        ("new_password", "another horse battery staple"),
        ("new_email", "bob@example.com"),
        ("plan", "pro"),
        ("interval", "month"),
        ("token", "x"),
        ("code", "123456"),
        ("name", "a key"),
        ("scope_read", "on"),
        ("id", "key_x"),
    ];
    for path in PAGE_FORMS {
        let no_token = c.post(app.url(path)).form(&fields).send().await.unwrap();
        assert_eq!(no_token.status(), 403, "{path}: no token");
        let mut with_token = fields.to_vec();
        with_token.push(("csrf_token", token.as_str()));
        let foreign = c
            .post(app.url(path))
            .header("origin", "https://evil.example")
            .form(&with_token)
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), 403, "{path}: a foreign Origin");
    }
    assert_eq!(
        app.count("users").await,
        users,
        "no account made or deleted"
    );
    assert_eq!(app.count("outbox").await, outbox, "no mail queued");
    assert_eq!(app.count("api_keys").await, 0, "no API key made");
    assert_eq!(
        app.count("billing_customers").await,
        customers,
        "no customer"
    );
    assert_eq!(
        app.me(&c).await["email"],
        "ann@example.com",
        "still signed in"
    );
}

#[tokio::test]
async fn a_form_body_that_cannot_be_read_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let token = app.csrf_token(&c, "/account").await;
    let password = PASSWORD.replace(' ', "+");
    let cases = [
        (
            format!("csrf_token={token}&csrf_token={token}&password={password}"),
            403,
            "a repeated token",
        ),
        (format!("csrf_token={token}&password=%FF"), 400, "not UTF-8"),
        (
            format!("csrf_token={token}&password={password}&password={password}"),
            400,
            "a repeated field",
        ),
        // The password is optional in the form (an account without one confirms otherwise); for
        // an account with one, none given is a wrong one.
        (format!("csrf_token={token}"), 401, "a missing password"),
        (
            format!("csrf_token={token}&password={}", "a".repeat(70 * 1024)),
            413,
            "over the size limit",
        ),
    ];
    for (body, status, why) in cases {
        let r = c
            .post(app.url("/account/delete"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{why}");
        let html = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(html.starts_with("text/html"), "{why}: a page, not {html}");
    }
    assert_eq!(
        app.me(&c).await["email"],
        "ann@example.com",
        "the account stays"
    );
}

#[tokio::test]
async fn notices_after_a_redirect_are_the_pages_own_texts_never_the_urls() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    for (path, text) in [
        (
            "/account?notice=password_changed",
            "Your password was changed. Other sessions were signed out.",
        ),
        (
            "/account?notice=email_changed",
            "Your email address was changed.",
        ),
        (
            "/account/keys?notice=revoked",
            "The key was revoked. It no longer works.",
        ),
        (
            "/billing?notice=already_subscribed",
            "You already have a subscription.",
        ),
    ] {
        let html = page_text(&c, &app.url(path)).await;
        assert!(html.contains(text), "{path}");
    }
    for path in [
        "/account?notice=%3Cscript%3Ealert(1)%3C/script%3E",
        "/account/keys?notice=Your%20account%20was%20hacked",
    ] {
        let html = page_text(&c, &app.url(path)).await;
        assert!(
            !html.contains("alert(1)") && !html.contains("was hacked"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_page_names_the_site_icon_and_it_is_served() {
    let app = spawn_app().await;
    let page = page_text(&client(), &app.url("/pricing")).await;
    assert!(page.contains("<link rel=\"icon\" href=\"/static/favicon.svg\""));
    for path in ["/static/favicon.svg", "/favicon.ico"] {
        let r = client().get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "image/svg+xml", "{path}");
        assert!(r.text().await.unwrap().starts_with("<svg"), "{path}");
    }
}

#[tokio::test]
async fn a_used_or_unknown_link_says_what_to_do_next() {
    let app = spawn_app().await;
    for (page, action, fields, next, words) in [
        (
            "/magic?token=tgm_x",
            "/magic",
            vec![],
            "/login",
            "Ask for a new sign-in link",
        ),
        (
            "/reset-password?token=tgr_x",
            "/reset-password",
            vec![("password", "another horse battery staple")],
            "/forgot-password",
            "Ask for a new password reset link",
        ),
        (
            "/verify-email?token=tgv_x",
            "/verify-email",
            vec![],
            "/account",
            "ask for a new confirmation link",
        ),
    ] {
        let browser = client();
        let csrf = app.csrf_token(&browser, page).await;
        let mut form = vec![("csrf_token", csrf.as_str()), ("token", "tg_unknown")];
        form.extend(fields);
        let r = browser
            .post(app.url(action))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{action}");
        let html = r.text().await.unwrap();
        assert!(
            html.contains("This link or code is invalid or has expired"),
            "{html}"
        );
        assert!(
            html.contains(&format!("<a href=\"{}\">", next.replace('/', "&#x2f;")))
                || html.contains(&format!("<a href=\"{next}\">")),
            "{action}: {html}"
        );
        assert!(html.contains(words), "{action}: {html}");
    }
}
