//! Forward-auth (`/auth/forward`): decisions by the catalog's rules, and the one URI header it
//! reads, failing closed on anything it cannot read.

use reqwest::Client;
use serde_json::json;

use crate::helpers::{TestApp, client, error_of, spawn_app, user_in};

/// Asks `/auth/forward` about `uri` with `c`'s cookies.
pub(super) async fn forward(
    app: &TestApp,
    c: &Client,
    header: &str,
    uri: &str,
) -> reqwest::Response {
    c.get(app.url("/auth/forward"))
        .header(header, uri)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn forward_auth_sends_the_anonymous_to_a_login_that_returns_to_the_page() {
    let app = spawn_app().await;
    let anonymous = client();
    let free = app.user("free@example.com").await;

    // Anonymous: 401 with a login URL that returns to the page.
    let r = forward(&app, &anonymous, "x-forwarded-uri", "/pro/report?id=7").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["x-tollgate-login-url"],
        app.url("/login?next=%2Fpro%2Freport%3Fid%3D7").as_str()
    );
    // An encoded path returns to itself as sent (decoded, `é` could not stand in a redirect).
    let r = forward(
        &app,
        &anonymous,
        "x-forwarded-uri",
        "/pro/caf%C3%A9?q=a%20b",
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["x-tollgate-login-url"],
        app.url("/login?next=%2Fpro%2Fcaf%25C3%25A9%3Fq%3Da%2520b")
            .as_str()
    );
    // Public paths pass without a session.
    assert_eq!(
        forward(&app, &anonymous, "x-forwarded-uri", "/public/logo.png")
            .await
            .status(),
        200
    );
    // Unmatched paths need a login.
    assert_eq!(
        forward(&app, &anonymous, "x-forwarded-uri", "/anything")
            .await
            .status(),
        401
    );
    assert_eq!(
        forward(&app, &free, "x-forwarded-uri", "/anything")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn forward_auth_sends_a_free_user_to_an_upgrade_from_gated_paths_however_spelled() {
    let app = spawn_app().await;
    let free = app.user("free@example.com").await;

    // A free user on a pro path: 403 with an upgrade URL.
    let r = forward(&app, &free, "x-forwarded-uri", "/pro/report").await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["x-tollgate-upgrade-url"],
        app.url("/pricing?required=pro").as_str()
    );
    let r = forward(&app, &free, "x-forwarded-uri", "/export/csv").await;
    assert_eq!(r.status(), 403, "a feature rule");
    assert!(r.headers().contains_key("x-tollgate-upgrade-url"));
    assert_eq!(error_of(r).await, "feature_required");
    // Dot segments and encodings cannot smuggle a pro path under a public prefix.
    for sneaky in [
        "/public/../pro/report",
        "/public/%2e%2e/pro/report",
        "//pro/report",
    ] {
        assert_eq!(
            forward(&app, &free, "x-forwarded-uri", sneaky)
                .await
                .status(),
            403,
            "{sneaky}"
        );
    }
}

#[tokio::test]
async fn forward_auth_passes_a_pro_user_with_its_identity_and_keeps_the_team_area_closed() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let pro = user_in(&app, "fwdpro", Some(("active", now, json!({})))).await;

    // A pro user: 200 with the identity headers.
    let r = forward(&app, &pro, "x-forwarded-uri", "/pro/report").await;
    assert_eq!(r.status(), 200);
    let me = app.me(&pro).await;
    assert_eq!(
        r.headers()["x-tollgate-user-id"],
        me["id"].as_str().unwrap()
    );
    assert_eq!(r.headers()["x-tollgate-email"], "fwdpro%40example.com");
    assert_eq!(r.headers()["x-tollgate-plan"], "pro");
    assert_eq!(r.headers()["x-tollgate-tier"], "1");
    // The team area stays closed to pro.
    assert_eq!(
        forward(&app, &pro, "x-forwarded-uri", "/team/x")
            .await
            .status(),
        403
    );
}

/// A header name and its raw bytes.
type RawHeader<'a> = (&'a str, &'a [u8]);

/// `/auth/forward` with raw header bytes (a proxy may pass on what a client sent).
async fn forward_raw(app: &TestApp, c: &Client, headers: &[RawHeader<'_>]) -> reqwest::Response {
    let mut request = c.get(app.url("/auth/forward"));
    for (name, value) in headers {
        request = request.header(
            *name,
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    request.send().await.unwrap()
}

/// `uri` as the only forwarded URI header.
fn via(uri: &'static [u8]) -> Vec<RawHeader<'static>> {
    vec![("x-forwarded-uri", uri)]
}

/// URI headers forward-auth cannot read, by what is wrong with them: missing, repeated, or
/// contradicted by another URI header, and URIs that are not a plain path. Each is refused, never
/// given a default.
fn unreadable_uri_headers() -> Vec<(&'static str, Vec<RawHeader<'static>>)> {
    vec![
        ("missing", vec![]),
        (
            "repeated",
            vec![
                ("x-forwarded-uri", b"/public/x".as_slice()),
                ("x-forwarded-uri", b"/pro/x".as_slice()),
            ],
        ),
        (
            "X-Original-URI disagrees",
            vec![
                ("x-forwarded-uri", b"/pro/x".as_slice()),
                ("x-original-uri", b"/public/x".as_slice()),
            ],
        ),
        (
            "X-Original-URL disagrees",
            vec![
                ("x-forwarded-uri", b"/public/x".as_slice()),
                ("x-original-url", b"/pro/x".as_slice()),
            ],
        ),
        ("raw non-ASCII in the query", via(b"/pro/x?q=caf\xc3\xa9")),
        ("raw non-ASCII in the path", via(b"/pr\xc3\xb6/x")),
        ("a space", via(b"/pro/x y")),
        ("absolute-form", via(b"http://app.test/public/x")),
        ("not a path", via(b"public/x")),
        ("; parameters", via(b"/public;x=1/../pro/x")),
        ("double encoding", via(b"/public/%252e%252e/pro/x")),
        ("a fragment", via(b"/public/x#/pro/x")),
        ("NUL", via(b"/public/x%00/../../pro/x")),
        ("a control character", via(b"/public/x%0a")),
        ("dot segments", via(b"/public/../pro/x")),
        ("encoded dot segments", via(b"/public/%2e%2e/pro/x")),
        ("an encoded slash", via(b"/public%2F..%2Fpro/x")),
        ("a backslash", via(b"/public/..\\pro/x")),
        ("an encoded ?", via(b"/pro%3F")),
        ("a zero-width space", via(b"/pro%E2%80%8B")),
        ("a bidi control", via(b"/p%E2%80%AEro/x")),
    ]
}

#[tokio::test]
async fn forward_auth_reads_one_header_and_fails_closed_on_anything_it_cannot_read() {
    let app = spawn_app().await;
    let anonymous = client();
    let free = app.user("fwdfree@example.com").await;
    let refused = |r: reqwest::Response| async move {
        let status = r.status();
        let upgrade = r.headers().get("x-tollgate-upgrade-url").cloned();
        (status, upgrade, error_of(r).await)
    };
    for c in [&anonymous, &free] {
        // Missing, repeated, or contradicted by another URI header: refused, never a default.
        for (why, headers) in unreadable_uri_headers() {
            let (status, upgrade, error) = refused(forward_raw(&app, c, &headers).await).await;
            assert_eq!(status, 403, "{why}");
            assert_eq!(error, "forbidden", "{why}");
            assert!(upgrade.is_none(), "{why}: a refused address has no upgrade");
        }
    }
    // Agreeing headers are fine; a proxy may send both.
    let r = forward_raw(
        &app,
        &anonymous,
        &[
            ("x-forwarded-uri", b"/public/x".as_slice()),
            ("x-original-uri", b"/public/x".as_slice()),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn forward_auth_reads_only_the_header_its_setting_names() {
    let app = TestApp::builder()
        .with("TOLLGATE_FORWARD_URI_HEADER", "X-Original-URI")
        .spawn()
        .await;
    let anonymous = client();
    let r = forward(&app, &anonymous, "x-original-uri", "/public/x").await;
    assert_eq!(r.status(), 200);
    let r = forward(&app, &anonymous, "x-original-uri", "/pro/x").await;
    assert_eq!(r.status(), 401);
    // The default header alone is not read: nothing to judge.
    let r = forward(&app, &anonymous, "x-forwarded-uri", "/public/x").await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn a_rule_covers_its_bare_prefix_and_ignores_case_unless_told_otherwise() {
    let app = spawn_app().await;
    let anonymous = client();
    let free = app.user("fwdcase@example.com").await;
    for path in ["/pro", "/PRO/x", "/Pro/x", "/pRo", "/%50RO/x"] {
        let r = forward(&app, &anonymous, "x-forwarded-uri", path).await;
        assert_eq!(r.status(), 401, "{path}");
        let r = forward(&app, &free, "x-forwarded-uri", path).await;
        assert_eq!(r.status(), 403, "{path}");
        assert_eq!(
            r.headers()["x-tollgate-upgrade-url"],
            app.url("/pricing?required=pro").as_str(),
            "{path}"
        );
    }
    // Public rules are never widened: `/PUBLIC/x` and `/public.json` need a login.
    for path in ["/PUBLIC/x", "/public.json", "/public"] {
        let r = forward(&app, &anonymous, "x-forwarded-uri", path).await;
        assert_eq!(r.status(), 401, "{path}");
    }
    // `/profile` is not under `/pro/`.
    let r = forward(&app, &free, "x-forwarded-uri", "/profile").await;
    assert_eq!(r.status(), 200);

    let sensitive = TestApp::builder()
        .with("TOLLGATE_FORWARD_PATH_CASE", "sensitive")
        .spawn()
        .await;
    let free = sensitive.user("fwdsens@example.com").await;
    let r = forward(&sensitive, &free, "x-forwarded-uri", "/PRO/x").await;
    assert_eq!(r.status(), 200, "case-sensitive: /PRO/ is another path");
    let r = forward(&sensitive, &free, "x-forwarded-uri", "/pro").await;
    assert_eq!(r.status(), 403);
}
