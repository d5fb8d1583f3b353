//! Session ids, cookies and their lifetimes.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, client, session_cookie, set_cookie_line, spawn_app};

/// A client without a cookie store, so the test handles cookies itself.
fn bare() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn login_issues_a_new_session_id_and_logout_kills_it_server_side() {
    let app = spawn_app().await;
    app.register_with(&client(), "ann@example.com", PASSWORD)
        .await;
    let http = bare();
    // An anonymous session exists before login (e.g. planted by an attacker).
    let before = app
        .post_json_with(
            &http,
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": "wrong"}),
        )
        .await;
    assert_eq!(before.status(), 401);
    let planted = "tollgate_session=AAAAAAAAAAAAAAAAAAAAAA";
    let sessions_before = app.count("sessions").await;

    let login = http
        .post(app.url("/api/auth/login"))
        .header("content-type", "application/json")
        .header("cookie", planted)
        .body(json!({"email": "ann@example.com", "password": PASSWORD}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = session_cookie(login.headers()).expect("a session cookie");
    assert_ne!(cookie, planted, "a fresh id, never the one presented");

    let me = http
        .get(app.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let logout = http
        .post(app.url("/api/auth/logout"))
        .header("content-type", "application/json")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);

    // Replaying the old cookie after logout finds nothing on the server.
    let replay = http
        .get(app.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    assert_eq!(
        app.count("sessions").await,
        sessions_before,
        "the record is deleted"
    );
}

#[tokio::test]
async fn two_logins_get_two_different_session_ids() {
    let app = spawn_app().await;
    app.register_with(&client(), "ann@example.com", PASSWORD)
        .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = app
            .post_json_with(
                &bare(),
                "/api/auth/login",
                &json!({"email": "ann@example.com", "password": PASSWORD}),
            )
            .await;
        ids.push(session_cookie(r.headers()).unwrap());
    }
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn session_ids_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    let r = app
        .post_json_with(
            &bare(),
            "/api/auth/register",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    let cookie = session_cookie(r.headers()).unwrap();
    let id = cookie.split_once('=').unwrap().1;
    let (stored,): (String,) = sqlx::query_as("SELECT id_hash FROM sessions")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_ne!(stored, id);
    assert_eq!(stored.len(), 64, "a SHA-256 hex digest");
}

#[tokio::test]
async fn cookies_are_httponly_lax_and_session_scoped_unless_remembered() {
    let app = spawn_app().await;
    app.register_with(&client(), "ann@example.com", PASSWORD)
        .await;

    let plain = app
        .post_json_with(
            &bare(),
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    let line = set_cookie_line(plain.headers(), "tollgate_session").unwrap();
    assert!(line.starts_with("tollgate_session="), "{line}");
    assert!(line.contains("HttpOnly"), "{line}");
    assert!(line.contains("SameSite=Lax"), "{line}");
    assert!(line.contains("Path=/"), "{line}");
    assert!(!line.contains("Secure"), "plain http base URL: {line}");
    assert!(
        !line.contains("Max-Age") && !line.contains("Expires"),
        "browser-session cookie: {line}"
    );

    let remembered = app
        .post_json_with(
            &bare(),
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": PASSWORD, "remember": true}),
        )
        .await;
    let line = set_cookie_line(remembered.headers(), "tollgate_session").unwrap();
    assert!(
        line.contains("Max-Age=1209600"),
        "persistent for the idle timeout: {line}"
    );
}

#[tokio::test]
async fn https_base_url_gives_secure_host_prefixed_cookies_and_hsts() {
    let app = TestApp::builder()
        .with("TOLLGATE_BASE_URL", "https://app.example.test")
        .spawn()
        .await;

    let r = app
        .post_json_with(
            &bare(),
            "/api/auth/register",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;

    assert_eq!(r.status(), 201);
    let line = set_cookie_line(r.headers(), "tollgate_session").unwrap();
    assert!(line.starts_with("__Host-tollgate_session="), "{line}");
    assert!(
        line.contains("Secure") && line.contains("HttpOnly"),
        "{line}"
    );
    assert!(
        !line.contains("Domain"),
        "__Host- cookies carry no Domain: {line}"
    );
    assert!(
        r.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
}

#[tokio::test]
async fn a_shared_cookie_domain_switches_to_the_secure_prefix() {
    let app = TestApp::builder()
        .with("TOLLGATE_BASE_URL", "https://auth.example.test")
        .with("TOLLGATE_COOKIE_DOMAIN", "example.test")
        .spawn()
        .await;

    let r = app
        .post_json_with(
            &bare(),
            "/api/auth/register",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;

    let line = set_cookie_line(r.headers(), "tollgate_session").unwrap();
    assert!(line.starts_with("__Secure-tollgate_session="), "{line}");
    assert!(line.contains("Domain=example.test"), "{line}");
}

#[tokio::test]
async fn a_session_past_its_absolute_lifetime_is_refused() {
    let app = TestApp::builder()
        // Long enough that the session cannot run out by itself during the test: only the aging
        // below, seen through the cache, can end it.
        .with("TOLLGATE_SESSION_ABSOLUTE_SECS", "60")
        .spawn()
        .await;
    app.register("ann@example.com", PASSWORD).await;
    assert_eq!(app.get("/api/me").await.status(), 200);

    // Age the session by moving its sign-in time back, as the passage of time would.
    age_session(&app, "signed_in_at", 120).await;

    assert_eq!(app.get("/api/me").await.status(), 401);
    assert_eq!(
        app.count("sessions").await,
        0,
        "the expired session is deleted"
    );
}

#[tokio::test]
async fn a_session_idle_for_longer_than_the_idle_timeout_is_refused() {
    let app = TestApp::builder()
        .with("TOLLGATE_SESSION_IDLE_SECS", "5")
        .spawn()
        .await;
    app.register("ann@example.com", PASSWORD).await;
    assert_eq!(app.get("/api/me").await.status(), 200);

    // Move "last seen" back past the idle timeout, as an idle browser would.
    age_session(&app, "seen_at", 6).await;

    assert_eq!(app.get("/api/me").await.status(), 401);
}

/// Moves the timestamp `key` of the app's only session `secs` seconds into the past.
async fn age_session(app: &TestApp, key: &str, secs: i64) {
    let (id_hash, data): (String, String) = sqlx::query_as("SELECT id_hash, data FROM sessions")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let mut data: serde_json::Value = serde_json::from_str(&data).unwrap();
    data[key] = json!(data[key].as_i64().unwrap() - secs);
    sqlx::query("UPDATE sessions SET data = $1 WHERE id_hash = $2")
        .bind(data.to_string())
        .bind(id_hash)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    // An edit by hand, which the app hears of from the database (its trigger publishes the
    // change): the cached copy of the session goes.
    let edited = std::time::Instant::now();
    while app.state.cache.len().0 != 0 {
        assert!(
            edited.elapsed() < std::time::Duration::from_secs(2),
            "the edit never reached the cache"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
