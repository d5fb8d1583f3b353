//! The binary: start-up refusals, check-config, migrate, user create.

use std::process::Stdio;

use serde_json::json;
use tokio::{io::AsyncWriteExt as _, process::Command};

use crate::helpers::{PASSWORD, TestApp, TestDb, client};

pub(crate) fn tollgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    // Start from a clean slate: nothing from the developer's environment or a .env file.
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null());
    cmd
}

#[tokio::test]
async fn production_mode_refuses_to_start_and_names_what_is_missing() {
    let out = tollgate()
        .env("TOLLGATE_ENV", "production")
        .env("TOLLGATE_BASE_URL", "http://insecure.example")
        .output()
        .await
        .unwrap();

    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in [
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "SMTP_URL",
        "TOLLGATE_BASE_URL",
    ] {
        assert!(stderr.contains(name), "{name} not named in: {stderr}");
    }
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_exit_2_naming_it() {
    for (name, value) in [
        ("TOLLGATE_BIND", "nonsense"),
        ("TOLLGATE_PASSWORD_MIN_LENGTH", "zero"),
        ("STRIPE_WEBHOOK_TOLERANCE_SECS", "0"),
        ("TOLLGATE_BIND", "0.0.0.0:3000"),
    ] {
        let out = tollgate().env(name, value).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(name),
            "{name}={value}"
        );
    }
}

#[tokio::test]
async fn an_unknown_webhook_event_type_stops_start_up_with_exit_2() {
    let db = TestDb::new().await;
    let run = tollgate()
        .env("DATABASE_URL", &db.url)
        .env("TOLLGATE_BIND", "127.0.0.1:0")
        .env("TOLLGATE_WEBHOOK_URL", "http://127.0.0.1:9/hooks")
        .env("TOLLGATE_WEBHOOK_SECRET", crate::outbound::SECRET)
        .env("TOLLGATE_WEBHOOK_EVENTS", "billing.*, nope.*")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("start-up stops")
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TOLLGATE_WEBHOOK_EVENTS") && stderr.contains("nope.*"),
        "{stderr}"
    );
}

#[tokio::test]
async fn check_config_prints_settings_with_secrets_masked() {
    let out = tollgate()
        .arg("check-config")
        .env("STRIPE_SECRET_KEY", "sk_test_do_not_print_me")
        .env(
            "DATABASE_URL",
            "postgres://tg:hunter2secret@db.internal/tollgate",
        )
        .env("TOLLGATE_PRODUCT_NAME", "Acme")
        .output()
        .await
        .unwrap();

    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("TOLLGATE_PRODUCT_NAME=Acme"), "{stdout}");
    assert!(stdout.contains("STRIPE_SECRET_KEY=(set)"), "{stdout}");
    assert!(
        !stdout.contains("do_not_print_me") && !stdout.contains("hunter2secret"),
        "{stdout}"
    );
}

#[tokio::test]
async fn migrate_then_user_create_makes_an_account_that_can_log_in() {
    let db = std::sync::Arc::new(TestDb::new().await);
    let migrate = tollgate()
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let mut create = tollgate()
        .args(["user", "create", "--email", "admin@example.com"])
        .env("DATABASE_URL", &db.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    create
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .await
        .unwrap();
    let out = create.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(PASSWORD),
        "the password is never echoed"
    );

    let app = TestApp::builder().on_db(db).spawn().await;
    let login = app
        .post_json_with(
            &client(),
            "/api/auth/login",
            &json!({"email": "admin@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status(), 200);
}

/// A running `tollgate serve` whose log is read as it is written (a pipe left unread fills, and
/// the server would block on its next log line).
struct Served {
    child: tokio::process::Child,
    logs: tokio::task::JoinHandle<String>,
}

/// Starts `tollgate serve` on `db` with JSON logs and `env`; returns it and its URL.
async fn serve_with_json_logs(db: &TestDb, env: &[(&str, &str)]) -> (Served, String) {
    let mut cmd = tollgate();
    cmd.env("DATABASE_URL", &db.url)
        .env("TOLLGATE_BIND", "127.0.0.1:0")
        .env("TOLLGATE_LOG_FORMAT", "json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The log is read from the start: at debug level, start-up alone can fill a pipe.
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut logs = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut logs).await;
        logs
    });
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line),
    )
    .await
    .expect("prints its URL")
    .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (Served { child, logs }, url)
}

/// Stops `child` with SIGTERM, asserts a clean exit and returns everything it logged.
async fn stop_and_read_logs(served: Served) -> String {
    let Served { mut child, logs } = served;
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    logs.await.unwrap()
}

#[tokio::test]
async fn serve_prints_its_url_logs_no_secrets_and_stops_gracefully_on_sigterm() {
    let db = TestDb::new().await;
    let (child, url) = serve_with_json_logs(&db, &[("RUST_LOG", "debug")]).await;
    let ready = client().get(format!("{url}readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let http = client();
    let secret_password = "a very secret passphrase 42";
    let register = http
        .post(format!("{url}api/auth/register"))
        .header("content-type", "application/json")
        .body(json!({"email": "logcheck@example.com", "password": secret_password}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 201);
    let cookie = crate::helpers::session_cookie(register.headers()).unwrap();
    let cookie_value = cookie.split_once('=').unwrap().1.to_owned();
    let failed = http
        .post(format!("{url}api/auth/login?token=query-secret-123"))
        .header("content-type", "application/json")
        .body(
            json!({"email": "logcheck@example.com", "password": "wrong but secret 99"}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    let made: serde_json::Value = http
        .post(format!("{url}api/keys"))
        .header("content-type", "application/json")
        .header("cookie", &cookie)
        .body(json!({"name": "log check", "scopes": ["read"]}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = made["key"].as_str().expect("a key").to_owned();
    for auth in [format!("Bearer {key}"), format!("Bearer {key}x")] {
        let r = client()
            .get(format!("{url}api/me"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert!(r.status() == 200 || r.status() == 401);
    }

    // Access and refresh tokens: issued, used, refreshed, and a used refresh token replayed.
    let token_login =
        json!({"email": "logcheck@example.com", "password": secret_password, "token": true});
    let pair: serde_json::Value = http
        .post(format!("{url}api/auth/login"))
        .json(&token_login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (access, refresh) = (
        pair["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned(),
        pair["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned(),
    );
    let me = client()
        .get(format!("{url}api/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    for expected in [200, 401] {
        let r = client()
            .post(format!("{url}api/auth/token/refresh"))
            .json(&json!({"refresh_token": refresh}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected);
    }

    let logs = stop_and_read_logs(child).await;
    assert!(
        logs.contains("\"path\":\"/api/auth/register\""),
        "requests are logged: {logs}"
    );
    for secret in [
        secret_password,
        "wrong but secret 99",
        cookie_value.as_str(),
        "query-secret-123",
        "logcheck@example.com",
        &key[3..],
        &refresh[4..],
        access.rsplit('.').next().unwrap(),
        access.split('.').nth(1).unwrap(),
    ] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}

/// Each refusal the binary logs as a security event: `(security_event, reason)` per JSON line of
/// target `security`, with the line itself.
fn security_events(logs: &str) -> Vec<(String, String, serde_json::Value)> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "security")
        .map(|v| {
            let field = |name: &str| v[name].as_str().unwrap_or("").to_owned();
            (field("security_event"), field("reason"), v.clone())
        })
        .collect()
}

#[tokio::test]
async fn refusals_are_logged_as_structured_security_events_without_secrets() {
    let db = TestDb::new().await;
    // The default log filter and real rate limits: what production logs.
    let (child, url) = serve_with_json_logs(&db, &[("TOLLGATE_RATE_LIMIT", "on")]).await;
    let http = client();
    let post = |path: &str, content_type: &str, body: String| {
        http.post(format!("{url}{path}"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let address = "secret.owner@example.com";
    let password = "the right passphrase 1";
    let wrong = "wrong passphrase 77";
    let credentials = |p: &str| json!({"email": address, "password": p}).to_string();
    let json = "application/json";
    let r = post("api/auth/register", json, credentials(password))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Ten wrong passwords fill the account's bucket (10 per 5 minutes); the eleventh is refused.
    for i in 0..10 {
        let r = post("api/auth/login", json, credentials(wrong))
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    let r = post("api/auth/login", json, credentials(wrong))
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let r = post("api/auth/login", "text/plain", credentials(wrong))
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a cross-site form's content type");
    let r = http
        .post(format!("{url}webhooks/stripe"))
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let logs = stop_and_read_logs(child).await;
    let events = security_events(&logs);
    let count = |event: &str, reason: &str| {
        events
            .iter()
            .filter(|(e, r, _)| e == event && r == reason)
            .count()
    };
    assert_eq!(count("login_failed", "invalid_credentials"), 10, "{logs}");
    assert_eq!(count("rate_limited", "login-account"), 1, "{logs}");
    assert_eq!(count("csrf_refused", "content_type"), 1, "{logs}");
    assert_eq!(
        count("webhook_signature_invalid", "mismatch_or_stale"),
        1,
        "{logs}"
    );
    assert_eq!(events.len(), 13, "nothing else: {logs}");
    for (event, _, line) in &events {
        assert_eq!(line["client_ip"], "127.0.0.1", "{event}: {line}");
        assert_eq!(line["level"], "WARN", "{event}: {line}");
        if event != "csrf_refused" && event != "webhook_signature_invalid" {
            assert_eq!(line["address"], "s***@example.com", "{event}: {line}");
        }
    }
    for secret in [password, wrong, address, "secret.owner"] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}

#[tokio::test]
async fn a_providers_own_text_never_reaches_the_log() {
    let Some(providers) = crate::social::Providers::start().await else {
        return;
    };
    let db = TestDb::new().await;
    let settings = providers.settings();
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (served, url) = serve_with_json_logs(&db, &env).await;
    let forged = "ATTACKER_TEXT code=SECRET\n2026-01-01T00:00:00Z  INFO FORGED line";
    providers.next(json!({"token_error": forged})).await;
    let browser = client();
    let start = |browser: reqwest::Client, url: String| async move {
        let page = browser.get(format!("{url}login")).send().await.unwrap();
        let html = page.text().await.unwrap();
        let marker = "name=\"csrf_token\" value=\"";
        let from = html.find(marker).unwrap() + marker.len();
        let csrf = html[from..from + html[from..].find('"').unwrap()].to_owned();
        let r = browser
            .post(format!("{url}auth/oidc"))
            .form(&[("csrf_token", csrf.as_str())])
            .send()
            .await
            .unwrap();
        reqwest::Url::parse(&crate::social::location(&r)).unwrap()
    };
    // The token endpoint refuses with text of the provider's choosing.
    let authorize = start(browser.clone(), url.clone()).await;
    let callback = crate::social::consent(&authorize).await;
    let r = browser.get(callback).send().await.unwrap();
    assert_eq!(r.status(), 502);
    // A callback's own `error`, shaped into a log line.
    let authorize = start(browser.clone(), url.clone()).await;
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let r = browser
        .get(format!(
            "{url}auth/oidc/callback?state={state}&error=x%0A2026%20INFO%20FORGED%20callback"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let logs = stop_and_read_logs(served).await;
    assert!(
        logs.contains("token exchange"),
        "the refusal is logged: {logs}"
    );
    assert!(
        !logs.contains("ATTACKER_TEXT") && !logs.contains("SECRET"),
        "{logs}"
    );
    for line in logs.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "every line is one JSON object, none forged: {line}"
        );
    }
}

#[tokio::test]
async fn openapi_prints_the_document_the_server_serves() {
    let out = tollgate().arg("openapi").output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let app = crate::helpers::spawn_app().await;
    let served: serde_json::Value = app.get("/api/openapi.json").await.json().await.unwrap();
    assert_eq!(printed, served);
    assert_eq!(printed["openapi"], "3.1.0");
}
