//! CSRF on the JSON API, security headers, health and readiness, errors.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app};

#[tokio::test]
async fn unsafe_api_requests_without_json_content_type_are_refused() {
    let app = spawn_app().await;
    let cases = [
        (Some("text/plain"), "a simple cross-site POST"),
        (Some("application/x-www-form-urlencoded"), "a form POST"),
        (None, "no content type at all"),
    ];
    for (content_type, why) in cases {
        let mut request = app
            .client
            .post(app.url("/api/auth/register"))
            .body(json!({"email": "ann@example.com", "password": PASSWORD}).to_string());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403, "{why}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "csrf_failed", "{why}");
    }
    let empty_logout = app
        .client
        .post(app.url("/api/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        empty_logout.status(),
        403,
        "even an empty body needs the JSON type"
    );
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_ours_is_accepted() {
    let app = spawn_app().await;
    let send = |origin: String| {
        app.client
            .post(app.url("/api/auth/register"))
            .header("content-type", "application/json")
            .header("origin", origin)
            .body(json!({"email": "ann@example.com", "password": PASSWORD}).to_string())
            .send()
    };

    let foreign = send("https://evil.example".into()).await.unwrap();
    assert_eq!(foreign.status(), 403);
    let body: Value = foreign.json().await.unwrap();
    assert_eq!(body["error"], "csrf_failed");
    assert_eq!(app.count("users").await, 0);

    let ours = send(app.address.clone()).await.unwrap();
    assert_eq!(ours.status(), 201);
}

#[tokio::test]
async fn allowed_origins_setting_extends_the_origin_check() {
    let app = TestApp::builder()
        .with("TOLLGATE_ALLOWED_ORIGINS", "https://app.example.test")
        .spawn()
        .await;
    let response = app
        .client
        .post(app.url("/api/auth/register"))
        .header("content-type", "application/json")
        .header("origin", "https://app.example.test")
        .body(json!({"email": "ann@example.com", "password": PASSWORD}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn responses_carry_security_headers_and_no_store() {
    let app = spawn_app().await;
    for path in ["/api/me", "/login", "/"] {
        let r = app.get(path).await;
        let h = r.headers();
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["cross-origin-opener-policy"], "same-origin", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert!(h.get("x-request-id").is_some(), "{path}");
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS on http: {path}"
        );
    }
}

#[tokio::test]
async fn health_and_readiness_answer_while_the_database_does() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn readiness_and_requests_answer_503_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.register("ann@example.com", PASSWORD).await;

    match app.db.engine() {
        // Cut every connection and remove the database, as a failed server would.
        tollgate::db::Engine::Postgres => app.db.drop_now().await,
        // A SQLite file cannot vanish under an open handle; close the app's pool instead.
        tollgate::db::Engine::Sqlite => app.state.db.close().await,
    }

    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the process still runs"
    );
    assert_eq!(app.get("/readyz").await.status(), 503);
    let me = app.get("/api/me").await;
    assert_eq!(me.status(), 503);
    let body: Value = me.json().await.unwrap();
    assert_eq!(body["error"], "service_unavailable");
    let text = body.to_string().to_lowercase();
    assert!(
        !text.contains("sql") && !text.contains("pool"),
        "no internals: {text}"
    );
}

#[tokio::test]
async fn unknown_api_routes_are_json_404_and_pages_are_html_404() {
    let app = spawn_app().await;
    let api = app.get("/api/nope").await;
    assert_eq!(api.status(), 404);
    let body: Value = api.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    let page = app.get("/nope").await;
    assert_eq!(page.status(), 404);
    assert!(page.text().await.unwrap().contains("Page not found"));
}

/// A query string a page cannot read (a repeated `next`, `required` or `notice`) is the 400 error
/// page in the site's look, never the framework's plain-text message.
#[tokio::test]
async fn a_query_string_a_page_cannot_read_is_a_readable_error_page() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    for path in [
        "/login?next=/a&next=/b",
        "/pricing?required=pro&required=team",
        "/account/devices?notice=signed_out&notice=not_found",
    ] {
        let r = app.get_with(&c, path).await;
        assert_eq!(r.status(), 400, "{path}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("That address could not be read."),
            "{path}: {body}"
        );
        assert!(!body.contains("deserialize"), "{path}: {body}");
    }
}
