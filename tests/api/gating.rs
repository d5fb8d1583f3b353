//! Plan-tier gating: the access policy × gated routes matrix for JSON and HTML, immediacy of
//! changes across instances, and forward-auth decisions.

use reqwest::Client;
use serde_json::{Value, json};

use crate::helpers::{
    SubState, TestApp, client, error_of, event, pro_subscription_updated, spawn_app, user_in,
};

const GRACE: i64 = 3 * 86_400;

#[tokio::test]
async fn every_status_against_every_gated_route_json_and_html() {
    let app = TestApp::builder()
        .with("TOLLGATE_PAST_DUE_GRACE_SECS", &GRACE.to_string())
        .spawn()
        .await;
    let now = app.state.clock.now();
    // (name, subscription state, whether it grants pro)
    let cases: Vec<(&str, SubState, bool)> = vec![
        ("none", None, false),
        (
            "trialing",
            Some(("trialing", now, json!({"trial_end": now + 86_400}))),
            true,
        ),
        ("active", Some(("active", now, json!({}))), true),
        (
            "cancel_before_end",
            Some((
                "active",
                now,
                json!({"cancel_at_period_end": true, "cancel_at": now + 3_600}),
            )),
            true,
        ),
        (
            "cancel_after_end",
            Some((
                "active",
                now - 86_400,
                json!({"cancel_at_period_end": true, "cancel_at": now - 10}),
            )),
            false,
        ),
        (
            "past_due_in_grace",
            Some(("past_due", now - 60, json!({}))),
            true,
        ),
        (
            "past_due_after_grace",
            Some(("past_due", now - GRACE - 60, json!({}))),
            false,
        ),
        ("incomplete", Some(("incomplete", now, json!({}))), false),
        (
            "incomplete_expired",
            Some(("incomplete_expired", now, json!({}))),
            false,
        ),
        ("canceled", Some(("canceled", now, json!({}))), false),
        ("unpaid", Some(("unpaid", now, json!({}))), false),
        ("paused", Some(("paused", now, json!({}))), false),
        (
            "unknown",
            Some(("something_stripe_adds_later", now, json!({}))),
            false,
        ),
    ];
    for (name, state, pro) in cases {
        let c = user_in(&app, name, state).await;
        let me = app.me(&c).await;
        assert_eq!(
            me["access"]["plan"],
            if pro { "pro" } else { "free" },
            "{name}: {me}"
        );
        // (route, granted?, error code, required)
        let routes = [
            ("free", true, "", ""),
            ("pro", pro, "plan_required", "pro"),
            ("team", false, "plan_required", "team"),
            ("export", pro, "feature_required", "export"),
        ];
        for (route, granted, code, required) in routes {
            let r = app.get_with(&c, &format!("/api/demo/{route}")).await;
            let page = app.get_with(&c, &format!("/demo/{route}")).await;
            if granted {
                assert_eq!(r.status(), 200, "{name} × /api/demo/{route}");
                assert_eq!(page.status(), 200, "{name} × /demo/{route}");
                continue;
            }
            assert_eq!(r.status(), 403, "{name} × /api/demo/{route}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], code, "{name} × {route}");
            let field = if code == "plan_required" {
                "required_plan"
            } else {
                "required_feature"
            };
            assert_eq!(body[field], required, "{name} × {route}");
            let current = if pro { "pro" } else { "free" };
            assert_eq!(body["current_plan"], current, "{name} × {route}");
            let upgrade_plan = if route == "export" { "pro" } else { required };
            assert_eq!(
                body["upgrade_url"],
                app.url(&format!("/pricing?required={upgrade_plan}")),
                "{name} × {route}"
            );
            assert_eq!(page.status(), 303, "{name} × /demo/{route}");
            assert_eq!(
                page.headers()["location"],
                format!("/pricing?required={upgrade_plan}"),
                "{name} × /demo/{route}"
            );
        }
    }
}

#[tokio::test]
async fn anonymous_requests_get_401_json_or_a_login_redirect() {
    let app = spawn_app().await;
    for route in ["free", "pro", "team", "export"] {
        let r = app.get(&format!("/api/demo/{route}")).await;
        assert_eq!(r.status(), 401, "{route}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthenticated");
        let page = app.get(&format!("/demo/{route}?tab=1")).await;
        assert_eq!(page.status(), 303);
        assert_eq!(
            page.headers()["location"],
            format!("/login?next=%2Fdemo%2F{route}%3Ftab%3D1")
        );
    }
}

#[tokio::test]
async fn a_downgrade_webhook_denies_the_very_next_request() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let c = user_in(&app, "downgrade", Some(("active", now - 5, json!({})))).await;
    assert_eq!(app.get_with(&c, "/api/demo/pro").await.status(), 200);

    let event = pro_subscription_updated(
        &app,
        "downgrade",
        "cus_downgrade",
        "canceled",
        now,
        json!({}),
    );
    assert_eq!(app.deliver(&event).await["outcome"], "applied");

    assert_eq!(app.get_with(&c, "/api/demo/pro").await.status(), 403);
}

#[tokio::test]
async fn a_downgrade_is_seen_at_once_by_its_instance_and_within_a_second_by_another() {
    let first = spawn_app().await;
    let second = first.second_instance().await;
    let now = first.state.clock.now();
    let c = user_in(&first, "twoinst", Some(("active", now - 5, json!({})))).await;
    // Both instances have just decided (and so cached) pro access.
    for app in [&first, &second] {
        assert_eq!(app.get_with(&c, "/api/demo/pro").await.status(), 200);
    }

    let event =
        pro_subscription_updated(&first, "twoinst", "cus_twoinst", "canceled", now, json!({}));
    assert_eq!(first.deliver(&event).await["outcome"], "applied");
    let delivered = std::time::Instant::now();

    let r = first.get_with(&c, "/api/demo/pro").await;
    assert_eq!(
        r.status(),
        403,
        "the instance that took the webhook sees the downgrade on the next request"
    );
    // docs/api.md: any other instance within 1 second (judged by when a request was sent, so a
    // slow answer on a busy machine does not count against the instance).
    loop {
        let sent = std::time::Instant::now();
        let status = second.get_with(&c, "/api/demo/pro").await.status();
        if status == 403 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            sent.duration_since(delivered) < std::time::Duration::from_secs(1),
            "the other instance still grants pro a second after the webhook"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Asks `/auth/forward` about `uri` with `c`'s cookies.
async fn forward(app: &TestApp, c: &Client, header: &str, uri: &str) -> reqwest::Response {
    c.get(app.url("/auth/forward"))
        .header(header, uri)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn forward_auth_decides_by_the_catalog_rules() {
    let app = spawn_app().await;
    let anonymous = client();
    let free = app.user("free@example.com").await;
    let now = app.state.clock.now();
    let pro = user_in(&app, "fwdpro", Some(("active", now, json!({})))).await;

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

/// Signs in through the login form with `next`, in a new browser.
async fn sign_in_with_next(app: &TestApp, email: &str, next: &str) -> reqwest::Response {
    let browser = client();
    let token = app.csrf_token(&browser, "/login").await;
    browser
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", email),
            ("password", crate::helpers::PASSWORD),
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
async fn by_default_grace_lasts_seven_days_from_the_first_sign_of_past_due() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let day = 86_400;
    let pro_status = |c: Client| {
        let url = app.url("/api/demo/pro");
        async move { c.get(url).send().await.unwrap().status() }
    };

    let six_days = user_in(&app, "pd6", Some(("past_due", now - 6 * day, json!({})))).await;
    assert_eq!(
        pro_status(six_days).await,
        200,
        "day 6 of 7: still in grace"
    );
    let eight_days = user_in(&app, "pd8", Some(("past_due", now - 8 * day, json!({})))).await;
    assert_eq!(pro_status(eight_days).await, 403, "day 8: grace is over");

    // The first failed payment starts the episode even when it comes before the status change:
    // failed 8 days ago, past_due for 1 day, so grace is over.
    let early = user_in(&app, "pdearly", Some(("active", now - 9 * day, json!({})))).await;
    // The invoice names its subscription where older API versions did.
    let failed = event(
        "evt_pdearly_failed",
        "invoice.payment_failed",
        now - 8 * day,
        json!({"id": "in_pdearly", "object": "invoice",
               "customer": "cus_pdearly", "subscription": "sub_pdearly"}),
    );
    assert_eq!(app.deliver(&failed).await["outcome"], "applied");
    let past_due = pro_subscription_updated(
        &app,
        "pdearly",
        "cus_pdearly",
        "past_due",
        now - day,
        json!({}),
    );
    assert_eq!(app.deliver(&past_due).await["outcome"], "applied");
    assert_eq!(
        pro_status(early.clone()).await,
        403,
        "counted from the failure"
    );

    // Recovery ends the episode; a new failure starts a new one.
    let active = pro_subscription_updated(
        &app,
        "pdearly",
        "cus_pdearly",
        "active",
        now - 100,
        json!({}),
    );
    assert_eq!(app.deliver(&active).await["outcome"], "applied");
    let again = pro_subscription_updated(
        &app,
        "pdearly",
        "cus_pdearly",
        "past_due",
        now - 50,
        json!({}),
    );
    assert_eq!(app.deliver(&again).await["outcome"], "applied");
    assert_eq!(
        pro_status(early).await,
        200,
        "a new episode has a new grace"
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
    let pro_via = |uri: &'static [u8]| [("x-forwarded-uri", uri)];
    for c in [&anonymous, &free] {
        // Missing, repeated, or contradicted by another URI header: refused, never a default.
        let cases: Vec<(&str, Vec<RawHeader>)> = vec![
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
            (
                "raw non-ASCII in the query",
                pro_via(b"/pro/x?q=caf\xc3\xa9").to_vec(),
            ),
            (
                "raw non-ASCII in the path",
                pro_via(b"/pr\xc3\xb6/x").to_vec(),
            ),
            ("a space", pro_via(b"/pro/x y").to_vec()),
            (
                "absolute-form",
                pro_via(b"http://app.test/public/x").to_vec(),
            ),
            ("not a path", pro_via(b"public/x").to_vec()),
            ("; parameters", pro_via(b"/public;x=1/../pro/x").to_vec()),
            (
                "double encoding",
                pro_via(b"/public/%252e%252e/pro/x").to_vec(),
            ),
            ("a fragment", pro_via(b"/public/x#/pro/x").to_vec()),
            ("NUL", pro_via(b"/public/x%00/../../pro/x").to_vec()),
            ("a control character", pro_via(b"/public/x%0a").to_vec()),
            ("dot segments", pro_via(b"/public/../pro/x").to_vec()),
            (
                "encoded dot segments",
                pro_via(b"/public/%2e%2e/pro/x").to_vec(),
            ),
            (
                "an encoded slash",
                pro_via(b"/public%2F..%2Fpro/x").to_vec(),
            ),
            ("a backslash", pro_via(b"/public/..\\pro/x").to_vec()),
            ("an encoded ?", pro_via(b"/pro%3F").to_vec()),
            ("a zero-width space", pro_via(b"/pro%E2%80%8B").to_vec()),
            ("a bidi control", pro_via(b"/p%E2%80%AEro/x").to_vec()),
        ];
        for (why, headers) in cases {
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
        let cookie = crate::helpers::session_cookie(r.headers()).expect("a session cookie");
        let me = client()
            .get(app.url("/api/me"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200, "{next:?}");
    }
}

#[tokio::test]
async fn without_a_free_plan_a_user_with_no_subscription_has_no_access() {
    // The demo catalog without its free plan.
    let catalog = tollgate::billing::catalog::DEMO.replacen(
        "[[plans]]\nid = \"free\"\nname = \"Free\"\ntier = 0\nfeatures = [\"projects\"]\n",
        "",
        1,
    );
    assert!(!catalog.contains("id = \"free\""));
    let path = std::env::temp_dir().join(format!("tollgate-nofree-{}.toml", std::process::id()));
    std::fs::write(&path, catalog).unwrap();
    let app = TestApp::builder()
        .with("TOLLGATE_PLANS", path.to_str().unwrap())
        .spawn()
        .await;
    let c = app.user("nofree@example.com").await;

    let me = app.me(&c).await;
    assert_eq!(me["access"]["plan"], Value::Null);
    assert_eq!(me["access"]["tier"], Value::Null);
    assert_eq!(me["access"]["features"], json!([]));
    let r = c.get(app.url("/api/demo/free")).send().await.unwrap();
    assert_eq!(r.status(), 200, "signed in is all the free area asks");
    let r = c.get(app.url("/api/demo/pro")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["current_plan"],
        Value::Null
    );
    let _ = std::fs::remove_file(path);
}
