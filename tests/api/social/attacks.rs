//! The refusals: a callback from another browser or with a bad `state`, ID tokens with another
//! audience, issuer or nonce, or expired, the provider saying no or being down. Each lands on a
//! readable page and changes nothing.

use serde_json::json;

use super::{app_with_providers, consent, start};
use crate::helpers::{TestApp, client};

/// Runs a sign-in whose ID token carries `claims`: the callback's status and page.
async fn with_claims(
    app: &TestApp,
    providers: &super::Providers,
    claims: serde_json::Value,
) -> (u16, String) {
    providers.next(json!({"claims": claims})).await;
    let c = client();
    let authorize = start(app, &c, "oidc", &[]).await;
    let r = c.get(consent(&authorize).await).send().await.unwrap();
    let status = r.status().as_u16();
    let page = r.text().await.unwrap();
    assert_eq!(
        app.get_with(&c, "/api/me").await.status(),
        401,
        "not signed in"
    );
    (status, page)
}

#[tokio::test]
async fn id_tokens_with_another_audience_issuer_or_nonce_or_expired_are_refused() {
    let Some((app, _sink, providers)) = app_with_providers().await else {
        return;
    };
    let base = json!({"sub": "x", "email": "x@example.com", "email_verified": true});
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 3600;
    for broken in [
        json!({"aud": "someone-else"}),
        json!({"iss": "https://evil.example"}),
        json!({"nonce": "not-the-one"}),
        json!({"nonce": null}),
        json!({"exp": past}),
        json!({"azp": "someone-else", "aud": ["tollgate-test", "someone-else"]}),
        json!({"aud": ["tollgate-test", "someone-else"]}),
        json!({"iat": null}),
        json!({"iat": past + 3600 * 24 * 365}),
        json!({"exp": past + 3600 * 24 * 365}),
        json!({"nbf": past + 3600 * 24 * 365}),
    ] {
        let mut claims = base.clone();
        claims
            .as_object_mut()
            .unwrap()
            .extend(broken.as_object().unwrap().clone());
        let (status, page) = with_claims(&app, &providers, claims).await;
        assert_eq!(status, 502, "{broken}: {page}");
        assert!(page.contains("did not answer as expected"), "{page}");
    }
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn a_callback_from_another_browser_or_with_a_bad_state_finishes_nothing() {
    let Some((app, _sink, providers)) = app_with_providers().await else {
        return;
    };
    providers
        .next(json!({"claims": {"sub": "v", "email": "v@example.com", "email_verified": true}}))
        .await;
    let victim = client();
    // Login CSRF: the attacker starts a flow and sends the callback URL to the victim.
    let attacker = client();
    let authorize = start(&app, &attacker, "oidc", &[]).await;
    let callback = consent(&authorize).await;
    let r = victim.get(callback.clone()).send().await.unwrap();
    assert_eq!(r.status(), 400, "another browser");
    assert_eq!(app.get_with(&victim, "/api/me").await.status(), 401);
    // The flow died with that attempt: the attacker's own browser cannot finish it either.
    let r = attacker.get(callback.clone()).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // A state changed, missing or replayed.
    let c = client();
    let authorize = start(&app, &c, "oidc", &[]).await;
    let callback = consent(&authorize).await;
    let mut tampered = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    assert_eq!(c.get(tampered).send().await.unwrap().status(), 400);
    let mut bare = callback.clone();
    bare.set_query(Some("code=abc"));
    assert_eq!(c.get(bare).send().await.unwrap().status(), 400);
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn a_refusal_at_the_provider_or_a_provider_that_is_down_lands_on_a_readable_page() {
    let Some((app, _sink, _providers)) = app_with_providers().await else {
        return;
    };
    let c = client();
    let authorize = start(&app, &c, "oidc", &[]).await;
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let denied = app.url(&format!(
        "/auth/oidc/callback?error=access_denied&state={state}"
    ));
    let r = c.get(denied).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("cancelled at the provider")
    );

    // An issuer nobody answers at.
    let down = TestApp::builder()
        .with("TOLLGATE_OIDC_ISSUER", "http://127.0.0.1:9/")
        .with("TOLLGATE_OIDC_CLIENT_ID", "x")
        .with("TOLLGATE_OIDC_CLIENT_SECRET", "y")
        .spawn()
        .await;
    let c = client();
    let csrf = down.csrf_token(&c, "/login").await;
    let r = c
        .post(down.url("/auth/oidc"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<html") && page.contains("did not answer"),
        "{page}"
    );
    assert_eq!(down.count("oauth_flows").await, 0);
}

#[tokio::test]
async fn a_subject_is_matched_only_at_the_issuer_that_vouched_for_it() {
    let Some((app, _sink, first)) = app_with_providers().await else {
        return;
    };
    first
        .next(json!({"claims": {"sub": "same-sub", "email": "old@example.com", "email_verified": true}}))
        .await;
    let c = client();
    let authorize = start(&app, &c, "oidc", &[]).await;
    assert_eq!(
        c.get(consent(&authorize).await)
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    // The deployment points the provider at another issuer, whose users number their own way.
    let Some(second) = super::Providers::start().await else {
        return;
    };
    let settings = second.settings();
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let moved = app.second_instance_with(&pairs).await;
    second
        .next(json!({"claims": {"sub": "same-sub", "email": "other@example.com", "email_verified": true}}))
        .await;
    let other = client();
    let authorize = start(&moved, &other, "oidc", &[]).await;
    let r = other.get(consent(&authorize).await).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        moved.me(&other).await["email"],
        "other@example.com",
        "not signed in to the account the old issuer's subject has"
    );
}

#[tokio::test]
async fn a_key_set_with_an_unreadable_key_still_works_but_encryption_keys_and_huge_sets_do_not() {
    // Each app reads the provider's metadata once: one app per key set.
    for (jwks, expected) in [("junk", 303), ("enc", 502), ("huge", 502)] {
        let Some((app, _sink, providers)) = app_with_providers().await else {
            return;
        };
        providers
            .next(json!({"jwks": jwks, "claims": {"sub": "k", "email": "k@example.com", "email_verified": true}}))
            .await;
        let c = client();
        let csrf = app.csrf_token(&c, "/login").await;
        let r = c
            .post(app.url("/auth/oidc"))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        let status = if r.status().is_redirection() {
            let authorize = reqwest::Url::parse(&super::location(&r)).unwrap();
            let r = c.get(consent(&authorize).await).send().await.unwrap();
            r.status().as_u16()
        } else {
            r.status().as_u16()
        };
        assert_eq!(status, expected, "{jwks}");
    }
}

#[tokio::test]
async fn a_code_github_refuses_lands_on_a_readable_page_and_makes_nothing() {
    let Some((app, _sink, _providers)) = app_with_providers().await else {
        return;
    };
    let c = client();
    let authorize = start(&app, &c, "github", &[]).await;
    let mut callback = consent(&authorize).await;
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code" {
                "gh_forged".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    callback.query_pairs_mut().clear().extend_pairs(pairs);
    let r = c.get(callback).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("did not answer as expected")
    );
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn the_next_page_of_a_provider_sign_in_stays_on_this_site() {
    let Some((app, _sink, providers)) = app_with_providers().await else {
        return;
    };
    let sign_in_with_next = |n: usize, next: &'static str| {
        let (app, providers) = (&app, &providers);
        async move {
            providers
                .next(super::verified(
                    &format!("next-{n}"),
                    &format!("n{n}@example.com"),
                ))
                .await;
            let c = client();
            let csrf = app.csrf_token(&c, "/login").await;
            let r = c
                .post(app.url("/auth/oidc"))
                .form(&[("csrf_token", csrf.as_str()), ("next", next)])
                .send()
                .await
                .unwrap();
            assert!(r.status().is_redirection(), "{next:?}: {}", r.status());
            let authorize = url::Url::parse(&super::location(&r)).unwrap();
            let r = c.get(consent(&authorize).await).send().await.unwrap();
            assert!(r.status().is_redirection(), "{next:?}: {}", r.status());
            super::location(&r)
        }
    };
    // A path of this site is followed.
    assert_eq!(sign_in_with_next(0, "/billing").await, "/billing");
    for (n, evil) in [
        "//evil.example/",
        "/\\evil.example/",
        "https://evil.example/",
        "/%2F%2Fevil.example",
        "/account\r\nSet-Cookie: x=1",
        "javascript:alert(1)",
        "\\\\evil.example",
        "/%5Cevil.example",
    ]
    .into_iter()
    .enumerate()
    {
        let to = sign_in_with_next(n + 1, evil).await;
        // Wherever it leads, a browser resolving it stays on this site.
        let resolved = url::Url::parse("https://app.example/")
            .unwrap()
            .join(&to)
            .unwrap();
        assert!(
            to.starts_with('/')
                && !to.starts_with("//")
                && !to.contains('\\')
                && !to.contains('\r')
                && resolved.host_str() == Some("app.example"),
            "{evil:?} led to {to:?}"
        );
    }
}
