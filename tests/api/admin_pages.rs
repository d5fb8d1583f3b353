//! The admin area's pages: 404 for anyone but a signed-in administrator; a user found, read and
//! acted on through forms (suspended and back, a role, a device, deleted with the address typed);
//! webhook endpoints added (the secret shown once), given a new secret, removed.

use reqwest::Client;

use crate::{
    admin::administrator,
    helpers::{PASSWORD, TestApp, client, page_text, spawn_app},
};

/// POSTs the form `fields` (with `c`'s CSRF token, read from `page`) to `path`.
async fn submit(
    app: &TestApp,
    c: &Client,
    page: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = app.csrf_token(c, page).await;
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    c.post(app.url(path)).form(&form).send().await.unwrap()
}

#[tokio::test]
async fn an_administrator_finds_reads_and_acts_on_a_user_through_the_pages() {
    let app = spawn_app().await;
    let ann = app.user("ann@example.com").await;
    let ann_id = app.me(&ann).await["id"].as_str().unwrap().to_owned();
    let user_page = format!("/admin/users/{ann_id}");
    // Nobody but an administrator: 404 pages, forms included.
    for c in [&ann, &client()] {
        for path in ["/admin", "/admin/users", &user_page, "/admin/webhooks"] {
            let r = c.get(app.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 404, "{path}");
        }
    }
    let r = submit(
        &app,
        &ann,
        "/account/devices",
        &user_page,
        &[("action", "sign_out")],
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = ann.patch(app.url("/admin/users")).send().await.unwrap();
    assert_eq!(r.status(), 404, "no 405 either");
    assert!(r.headers().get("allow").is_none());
    // What cannot be read is not read for a stranger either: the same 404.
    for path in ["/admin/users/%ff", "/admin/users?q=a&q=b"] {
        let r = ann.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = ann
        .post(app.url("/admin/webhooks"))
        .form(&[("url", "https://example.com/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no form check before the area's");
    // A NUL character in a form is an unreadable form (PostgreSQL would refuse it).
    let r = submit(
        &app,
        &ann,
        "/account/devices",
        "/account/devices/sign-out",
        &[("id", "a\u{0}b")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(
        !page_text(&ann, &app.url("/account"))
            .await
            .contains("/admin/users")
    );

    let (admin, _) = administrator(&app).await;
    assert!(
        page_text(&admin, &app.url("/account"))
            .await
            .contains("/admin/users")
    );
    let r = admin.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/admin/users");
    let list = page_text(&admin, &app.url("/admin/users?q=ann")).await;
    assert!(
        list.contains(&format!("href=\"/admin/users/{ann_id}\"")),
        "{list}"
    );
    assert!(!list.contains("boss@example.com"));
    let page = page_text(&admin, &app.url(&user_page)).await;
    for shown in [
        "ann@example.com",
        "account.signed_up",
        "not proven",
        "active",
    ] {
        assert!(page.contains(shown), "{shown}");
    }

    // Suspended with a reason, then back.
    let act = |fields: &'static [(&'static str, &'static str)]| {
        let (app, admin, path) = (&app, &admin, user_page.clone());
        async move { submit(app, admin, &path, &path, fields).await }
    };
    let r = act(&[("action", "suspend"), ("reason", "abuse report 42")]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("{user_page}?notice=suspended").as_str()
    );
    assert_eq!(app.get_with(&ann, "/api/me").await.status(), 401);
    let page = page_text(&admin, &app.url(&user_page)).await;
    assert!(
        page.contains("suspended") && page.contains("abuse report 42"),
        "{page}"
    );
    assert_eq!(act(&[("action", "unsuspend")]).await.status(), 303);
    let ann = client();
    let body = serde_json::json!({"email": "ann@example.com", "password": PASSWORD});
    assert_eq!(
        app.post_json_with(&ann, "/api/auth/login", &body)
            .await
            .status(),
        200
    );

    // Roles: a good name is granted, a bad one is explained and changes nothing.
    assert_eq!(
        act(&[("action", "grant_role"), ("role", "support")])
            .await
            .status(),
        303
    );
    assert_eq!(
        app.me(&ann).await["access"]["roles"],
        serde_json::json!(["support"])
    );
    let r = act(&[("action", "grant_role"), ("role", "Not A Role")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("lower-case letters"));
    assert_eq!(
        act(&[("action", "revoke_role"), ("role", "support")])
            .await
            .status(),
        303
    );
    assert_eq!(app.me(&ann).await["access"]["roles"], serde_json::json!([]));

    // One device signed out, by the id its row carries.
    let page = page_text(&admin, &app.url(&user_page)).await;
    let marker = "name=\"device\" value=\"";
    let start = page.find(marker).expect("a device row") + marker.len();
    let device = page[start..start + page[start..].find('"').unwrap()].to_owned();
    let token = app.csrf_token(&admin, &user_page).await;
    let form = [
        ("csrf_token", token.as_str()),
        ("action", "sign_out_device"),
        ("device", &device),
    ];
    let r = admin
        .post(app.url(&user_page))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        format!("{user_page}?notice=device_signed_out").as_str()
    );
    assert_eq!(app.get_with(&ann, "/api/me").await.status(), 401);

    // Without the form's token: refused. Deleted only with the address typed.
    let r = admin
        .post(app.url(&user_page))
        .form(&[("action", "delete"), ("confirm", "ann@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = act(&[("action", "delete"), ("confirm", "someone@else.com")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Type the account"));
    let r = act(&[("action", "delete"), ("confirm", "ANN@example.com")]).await;
    assert_eq!(r.headers()["location"], "/admin/users");
    let gone = admin.get(app.url(&user_page)).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let r = submit(
        &app,
        &admin,
        "/admin/users",
        &user_page,
        &[("action", "sign_out")],
    )
    .await;
    assert_eq!(r.status(), 404, "no such user any more");
}

#[tokio::test]
async fn an_administrator_adds_rotates_and_removes_a_webhook_endpoint_through_the_pages() {
    let app = spawn_app().await;
    let (admin, _) = administrator(&app).await;
    let add = [
        ("url", "http://127.0.0.1:9/hooks"),
        ("events", "billing.*, account.deleted"),
    ];
    let r = submit(&app, &admin, "/admin/webhooks", "/admin/webhooks", &add).await;
    assert_eq!(r.status(), 201);
    let page = r.text().await.unwrap();
    let marker = "<code class=\"secret\">";
    let start = page.find(marker).expect("the secret, once") + marker.len();
    let secret = page[start..start + page[start..].find('<').unwrap()].to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed = page_text(&admin, &app.url("/admin/webhooks")).await;
    assert!(listed.contains("billing.*") && !listed.contains(&secret[6..]));
    let endpoint = tollgate::outbound::list(&app.state.db).await.unwrap()[0]
        .id
        .clone();

    let path = format!("/admin/webhooks/{endpoint}");
    let r = submit(
        &app,
        &admin,
        "/admin/webhooks",
        &path,
        &[("action", "rotate")],
    )
    .await;
    let page = r.text().await.unwrap();
    let start = page.find(marker).expect("the new secret, once") + marker.len();
    let rotated = &page[start..start + page[start..].find('<').unwrap()];
    assert!(rotated.starts_with("whsec_") && rotated != secret);
    assert!(page.contains("The old secret signs every delivery too"));

    let bad = [("url", "ftp://example.com/"), ("events", "")];
    let r = submit(&app, &admin, "/admin/webhooks", "/admin/webhooks", &bad).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("absolute http or https"));

    let r = submit(
        &app,
        &admin,
        "/admin/webhooks",
        &path,
        &[("action", "delete")],
    )
    .await;
    assert_eq!(r.headers()["location"], "/admin/webhooks?notice=deleted");
    assert!(
        tollgate::outbound::list(&app.state.db)
            .await
            .unwrap()
            .is_empty()
    );
}
