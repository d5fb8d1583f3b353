//! Where a login returns to: login URLs across sibling hosts under the cookie domain, forged
//! hosts and schemes, and a `next` that is not a plain local or sibling URL.

use crate::helpers::{PASSWORD, TestApp, client, session_cookie};

#[tokio::test]
async fn forged_host_and_scheme_never_make_a_login_url_leave_the_cookie_domain() {
    let app = TestApp::builder()
        .with("TOLLGATE_COOKIE_DOMAIN", "example.test")
        .spawn()
        .await;
    let login_url = |host: &'static str, proto: &'static str| {
        let app = &app;
        async move {
            let r = client()
                .get(app.url("/auth/forward"))
                .header("x-forwarded-uri", "/pro/report")
                .header("x-forwarded-host", host)
                .header("x-forwarded-proto", proto)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
            r.headers()["x-tollgate-login-url"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let relative = app.url("/login?next=%2Fpro%2Freport");
    for host in [
        "evil.test",
        "example.test.evil.test",
        "evil.test/x.example.test",
        "app.example.test@evil.test",
        "app.example.test:x",
    ] {
        assert_eq!(login_url(host, "http").await, relative, "{host}");
    }
    assert_eq!(
        login_url("APP.example.test:8080", "javascript").await,
        app.url("/login?next=http%3A%2F%2FAPP.example.test%3A8080%2Fpro%2Freport"),
        "a scheme other than http/https is not taken"
    );
    assert_eq!(
        login_url("app.example.test", "https").await,
        app.url("/login?next=https%3A%2F%2Fapp.example.test%2Fpro%2Freport")
    );
}

/// Signs in through the login form with `next`, in a new browser.
async fn sign_in_with_next(app: &TestApp, email: &str, next: &str) -> reqwest::Response {
    let browser = client();
    let token = app.csrf_token(&browser, "/login").await;
    browser
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", email),
            ("password", PASSWORD),
            ("next", next),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn across_sibling_hosts_login_returns_to_the_apps_host_and_nowhere_else() {
    let app = TestApp::builder()
        .with("TOLLGATE_COOKIE_DOMAIN", "example.test")
        .spawn()
        .await;
    let r = client()
        .get(app.url("/auth/forward"))
        .header("x-forwarded-uri", "/pro/report")
        .header("x-forwarded-host", "app.example.test")
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["x-tollgate-login-url"],
        app.url("/login?next=http%3A%2F%2Fapp.example.test%2Fpro%2Freport")
            .as_str()
    );

    app.user("ann@example.com").await;
    for (next, expected) in [
        (
            "http://app.example.test/pro/report",
            "http://app.example.test/pro/report",
        ),
        ("http://evil.test/pro", "/account"),
        ("http://example.test.evil.test/", "/account"),
        ("https://app.example.test/", "/account"),
    ] {
        let r = sign_in_with_next(&app, "ann@example.com", next).await;
        assert_eq!(r.status(), 303, "{next}");
        assert_eq!(r.headers()["location"], expected, "{next}");
    }
}

#[tokio::test]
async fn a_next_with_control_characters_signs_in_to_the_account_page() {
    let app = TestApp::builder()
        .with("TOLLGATE_COOKIE_DOMAIN", "example.test")
        .spawn()
        .await;
    app.user("ctl@example.com").await;
    for next in [
        "http://app.example.test/\n/pro",
        "http://app.example.test/\t",
        "http://app.example.test/ x",
        "/pro\r\nSet-Cookie: a=b",
        "/caf\u{e9}",
        // Spellings a browser reads leniently as the sibling host, never passed on as they are.
        "http:app.example.test/pro",
        "http:/app.example.test/pro",
        "http://app.example.test\\@evil.com/",
        "http://.example.test/",
        "http://a..example.test/",
    ] {
        let r = sign_in_with_next(&app, "ctl@example.com", next).await;
        assert_eq!(r.status(), 303, "{next:?}");
        assert_eq!(r.headers()["location"], "/account", "{next:?}");
        // The new session is not lost (the cookie is for example.test, so send it by hand).
        let cookie = session_cookie(r.headers()).expect("a session cookie");
        let me = client()
            .get(app.url("/api/me"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200, "{next:?}");
    }
}
