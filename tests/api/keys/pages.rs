//! The API keys page: a key made by the form is shown once, listed by its hint, and revoked by
//! its button; the forms are CSRF-checked like every page form.

use super::get_with_key;
use crate::helpers::{PASSWORD, client, page_text, spawn_app};

#[tokio::test]
async fn the_keys_page_makes_a_key_shows_it_once_and_revokes_it() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    assert!(
        page_text(&c, &app.url("/account"))
            .await
            .contains("/account/keys")
    );
    let token = app.csrf_token(&c, "/account/keys").await;
    let made = c
        .post(app.url("/account/keys"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("name", "laptop <script>"),
            ("scope_read", "on"),
            ("expires_in_days", "30"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 200);
    let html = made.text().await.unwrap();
    let start = html.find("<code id=\"new-key\">").expect("the new key") + 19;
    let key = html[start..start + 67].to_owned();
    assert!(key.starts_with("tg_"), "{key}");
    assert!(
        html.contains("laptop &lt;script&gt;"),
        "the name is escaped"
    );
    assert_eq!(get_with_key(&app, "/api/me", &key).await.status(), 200);

    let listed = page_text(&c, &app.url("/account/keys")).await;
    assert!(!listed.contains(&key[3..]), "shown once");
    assert!(listed.contains(&format!("tg_…{}", &key[63..])));
    let id_at = listed.find("name=\"id\" value=\"").expect("a revoke form") + 17;
    let id = &listed[id_at..id_at + listed[id_at..].find('"').unwrap()];

    let token = app.csrf_token(&c, "/account/keys").await;
    let revoked = c
        .post(app.url("/account/keys/revoke"))
        .form(&[("csrf_token", token.as_str()), ("id", id)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 303);
    assert_eq!(
        revoked.headers()["location"],
        "/account/keys?notice=revoked"
    );
    assert_eq!(get_with_key(&app, "/api/me", &key).await.status(), 401);
    let again = c
        .post(app.url("/account/keys/revoke"))
        .form(&[("csrf_token", token.as_str()), ("id", id)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        404,
        "a readable page, not a second revocation"
    );

    let none = c
        .post(app.url("/account/keys"))
        .form(&[("csrf_token", token.as_str()), ("name", "no scopes")])
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 400);
    assert_eq!(app.count("api_keys").await, 1, "nothing more stored");

    let anonymous = client().get(app.url("/account/keys")).send().await.unwrap();
    assert_eq!(anonymous.status(), 303, "to the login page");
}

/// Ten minutes after the last proof, making or revoking a key on the page first asks "confirm it
/// is you", then comes back to the keys page.
#[tokio::test]
async fn the_keys_page_asks_for_a_fresh_proof_after_ten_minutes() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let token = app.csrf_token(&c, "/account/keys").await;
    app.state.clock.advance(601);
    for (path, form) in [
        (
            "/account/keys",
            vec![
                ("csrf_token", token.as_str()),
                ("name", "ci"),
                ("scope_read", "on"),
            ],
        ),
        (
            "/account/keys/revoke",
            vec![("csrf_token", token.as_str()), ("id", "key_x")],
        ),
    ] {
        let r = c.post(app.url(path)).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(
            r.headers()["location"],
            "/account/confirm?next=/account/keys"
        );
    }
    assert_eq!(app.count("api_keys").await, 0, "nothing was made");
    let r = c
        .post(app.url("/account/confirm"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("password", PASSWORD),
            ("next", "/account/keys"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/account/keys");
    let r = c
        .post(app.url("/account/keys"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("name", "ci"),
            ("scope_read", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.count("api_keys").await, 1);
}
