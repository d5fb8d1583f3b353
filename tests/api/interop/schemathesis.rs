//! The OpenAPI document against a live tollgate, checked by schemathesis (from the Python package
//! registry, in target/pyenv): it generates requests from `/api/openapi.json`, valid and not, and
//! every answer must be documented (status, content type, headers, body schema) and none a 5xx.
//! Two runs: signed in as a subscriber (routes that end or replace the session left out, so the
//! cookie lives to the end), then signed out over every route. A third run with a document
//! whose user schema is wrong must fail: the check is real.

use std::{path::Path, process::Stdio};

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, session_cookie, spawn_app};

/// The checks: no server error, and every answer as documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

/// Runs schemathesis with `args` against `app`; its exit status and output.
async fn schemathesis(app: &TestApp, schema: &str, args: &[&str]) -> (bool, String) {
    let python = super::python().expect("checked by the caller");
    let bin = python.parent().unwrap().join("schemathesis");
    // Hypothesis keeps its example database in the working directory: a fresh one per run.
    let dir = std::env::temp_dir().join(format!("tollgate-st-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = tokio::process::Command::new(&bin)
        .arg("run")
        .arg(schema)
        .args(["--url", &app.address, "--checks", CHECKS, "--seed", "1"])
        .args(["--no-shrink", "--request-timeout", "20"])
        .args(args)
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("schemathesis starts");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// A signed-in session's cookie (`name=value`) for `email`.
async fn signed_in_cookie(app: &TestApp, email: &str) -> String {
    let r = app
        .post_json_with(
            &crate::helpers::client(),
            "/api/auth/login",
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 200);
    session_cookie(r.headers()).expect("a session cookie")
}

#[tokio::test]
async fn every_answer_matches_the_openapi_document() {
    if super::python().is_none() {
        return;
    }
    let app = spawn_app().await;
    let r = reqwest::get(app.url("/api/openapi.json")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/me"]["get"].is_object());
    let schema = app.url("/api/openapi.json");

    // Signed in as a subscriber. Left out: what signs in (and so replaces this session), signs
    // it out, or deletes the account; the signed-out run covers them.
    let _subscriber = app.subscriber("st@example.com", "pro").await;
    let cookie = format!("Cookie: {}", signed_in_cookie(&app, "st@example.com").await);
    let keep_session = r"^/api/(auth/(register|login|logout|magic-link/consume|2fa/verify|passkey|verify-email|password/change)|account/(delete|devices/sign-out-others|devices/\{id\}))$";
    let (ok, out) = schemathesis(
        &app,
        &schema,
        &[
            "--max-examples",
            "25",
            "-H",
            &cookie,
            "-H",
            "Content-Type: application/json",
            "--exclude-path-regex",
            keep_session,
        ],
    )
    .await;
    assert!(
        ok,
        "signed in: schemathesis found answers off the document:\n{out}"
    );
    assert!(out.contains("passed"), "{out}");
    // The cookie lived to the end: the run reached the signed-in routes.
    let me = reqwest::Client::new()
        .get(app.url("/api/me"))
        .header("cookie", &cookie["Cookie: ".len()..])
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "the session survived the run");

    // Signed out, every route.
    let (ok, out) = schemathesis(
        &app,
        &schema,
        &[
            "--max-examples",
            "15",
            "-H",
            "Content-Type: application/json",
        ],
    )
    .await;
    assert!(
        ok,
        "signed out: schemathesis found answers off the document:\n{out}"
    );

    // A document that says `email_verified` is a string: the run against /api/me fails.
    let mut wrong = doc.clone();
    wrong["components"]["schemas"]["UserJson"]["properties"]["email_verified"] =
        json!({"type": "string"});
    let file = std::env::temp_dir().join(format!("tollgate-wrong-{}.json", rand_suffix()));
    std::fs::write(&file, serde_json::to_vec(&wrong).unwrap()).unwrap();
    let (ok, out) = schemathesis(
        &app,
        file.to_str().unwrap(),
        &[
            "--max-examples",
            "3",
            "-H",
            &cookie,
            "--include-path",
            "/api/me",
        ],
    )
    .await;
    let _ = std::fs::remove_file(Path::new(&file));
    assert!(!ok, "a wrong document must fail the run:\n{out}");
    assert!(out.contains("email_verified"), "{out}");
}
