//! The pages: enrolment with a QR code and no JavaScript, the code step of a page sign-in, and
//! "confirm it is you" before a change.

use reqwest::Client;

use super::{Authenticator, enable, fresh, status_of};
use crate::helpers::{PASSWORD, TestApp, page_text, spawn_app};

/// The value of the hidden field `name` in `html`.
fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

async fn post_form(
    app: &TestApp,
    c: &Client,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    c.post(app.url(path)).form(form).send().await.unwrap()
}

#[tokio::test]
async fn two_factor_is_set_up_from_the_account_pages_with_a_qr_code() {
    let app = spawn_app().await;
    let browser = app.user("ann@example.com").await;
    let page = page_text(&browser, &app.url("/account")).await;
    assert!(
        page.contains("href=\"/account/2fa\""),
        "the account page links it"
    );
    let page = page_text(&browser, &app.url("/account/2fa")).await;
    assert!(page.contains("Set up two-factor sign-in"), "{page}");
    let csrf = field(&page, "csrf_token");

    let r = post_form(
        &app,
        &browser,
        "/account/2fa/begin",
        &[("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<svg") && !page.contains("<script"),
        "server-side QR, no script"
    );
    let start = page.find("<code class=\"secret\">").unwrap() + "<code class=\"secret\">".len();
    let secret = &page[start..start + 32];
    let Some(mut otp) = Authenticator::new(secret) else {
        return;
    };
    let wrong = otp.wrong_code();
    let r = post_form(
        &app,
        &browser,
        "/account/2fa/confirm",
        &[("csrf_token", &csrf), ("code", &wrong)],
    )
    .await;
    assert_eq!(r.status(), 400);
    let again = r.text().await.unwrap();
    assert!(again.contains(secret), "the same secret is shown again");
    let code = otp.next_code().await;
    let r = post_form(
        &app,
        &browser,
        "/account/2fa/confirm",
        &[("csrf_token", &csrf), ("code", &code)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert_eq!(
        page.matches("<li><code>").count(),
        10,
        "the recovery codes, once"
    );
    let page = page_text(&browser, &app.url("/account/2fa")).await;
    assert!(page.contains("10 unused recovery codes"), "{page}");
}

#[tokio::test]
async fn a_page_sign_in_asks_for_the_code_before_any_session() {
    let app = spawn_app().await;
    let owner = app.user("ann@example.com").await;
    let Some((mut otp, codes)) = enable(&app, &owner).await else {
        return;
    };
    let browser = fresh();
    let csrf = app.csrf_token(&browser, "/login").await;
    let r = post_form(
        &app,
        &browser,
        "/login",
        &[
            ("csrf_token", &csrf),
            ("email", "ann@example.com"),
            ("password", PASSWORD),
            ("next", "/account/keys"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200, "the code page, not a redirect");
    let page = r.text().await.unwrap();
    assert!(page.contains("Enter your code"), "{page}");
    let pending = field(&page, "pending_token");
    assert_eq!(
        status_of(&app, &browser, "/account").await,
        303,
        "not signed in yet"
    );

    let wrong = otp.wrong_code();
    let form = |code: &str| {
        vec![
            ("csrf_token", csrf.clone()),
            ("pending_token", pending.clone()),
            ("next", "/account/keys".to_owned()),
            ("code", code.to_owned()),
        ]
    };
    let r = browser
        .post(app.url("/login/code"))
        .form(&form(&wrong))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not right"));
    let code = otp.next_code().await;
    let r = browser
        .post(app.url("/login/code"))
        .form(&form(&code))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/account/keys");
    assert_eq!(status_of(&app, &browser, "/account").await, 200);

    // Spent: the same form again lands on the sign-in page with what to do.
    let r = browser
        .post(app.url("/login/code"))
        .form(&form(&codes[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("sign in again"));
}

#[tokio::test]
async fn a_change_after_ten_minutes_goes_through_confirm_it_is_you() {
    let app = spawn_app().await;
    let browser = app.user("ann@example.com").await;
    let csrf = app.csrf_token(&browser, "/account/2fa").await;
    app.state.clock.advance(601);
    let r = post_form(
        &app,
        &browser,
        "/account/2fa/begin",
        &[("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/account/confirm?next=/account/2fa"
    );
    let page = page_text(&browser, &app.url("/account/confirm?next=/account/2fa")).await;
    assert!(page.contains("Confirm it is you"), "{page}");
    let r = post_form(
        &app,
        &browser,
        "/account/confirm",
        &[
            ("csrf_token", &csrf),
            ("password", "not my password"),
            ("next", "/account/2fa"),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = post_form(
        &app,
        &browser,
        "/account/confirm",
        &[
            ("csrf_token", &csrf),
            ("password", PASSWORD),
            ("next", "https://evil.example/"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/account", "no open redirect");
    let r = post_form(
        &app,
        &browser,
        "/account/2fa/begin",
        &[("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(r.status(), 200, "proved a moment ago");
}

#[tokio::test]
async fn the_magic_link_page_and_its_code_form_lead_to_the_code_step() {
    let (app, sink) = crate::helpers::app_with_mail(&[]).await;
    let owner = app.user("ann@example.com").await;
    super::verify_address(&app, &sink, &owner, "ann@example.com").await;
    let Some((mut otp, _)) = enable(&app, &owner).await else {
        return;
    };
    let browser = fresh();
    let csrf = app.csrf_token(&browser, "/login").await;
    let ask = serde_json::json!({"email": "ann@example.com"});
    let mut mails = 2; // verification, "two-factor is on"
    let code_step = |form: Vec<(&'static str, String)>, path: &'static str| {
        let (app, browser) = (&app, &browser);
        async move {
            let r = browser
                .post(app.url(path))
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let page = r.text().await.unwrap();
            assert!(page.contains("Enter your code"), "{path}: {page}");
            assert_eq!(
                status_of(app, browser, "/account").await,
                303,
                "{path}: not yet"
            );
            field(&page, "pending_token")
        }
    };

    assert_eq!(
        app.post_json_with(&browser, "/api/auth/magic-link", &ask)
            .await
            .status(),
        202
    );
    mails += 1;
    let mail = sink.wait_for("ann@example.com", mails).await;
    let link = vec![("csrf_token", csrf.clone()), ("token", mail.token("magic"))];
    code_step(link, "/magic").await;

    assert_eq!(
        app.post_json_with(&browser, "/api/auth/magic-link", &ask)
            .await
            .status(),
        202
    );
    mails += 1;
    let mail = sink.wait_for("ann@example.com", mails).await;
    let typed = vec![
        ("csrf_token", csrf.clone()),
        ("email", "ann@example.com".to_owned()),
        ("code", mail.code()),
    ];
    let pending = code_step(typed, "/magic/code").await;
    let code = otp.next_code().await;
    let done = browser
        .post(app.url("/login/code"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("pending_token", &pending),
            ("code", &code),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], "/account");
    assert_eq!(status_of(&app, &browser, "/account").await, 200);
}
