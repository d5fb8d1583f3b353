//! `tollgate user reset-2fa`: an operator turns two-factor off for an owner who lost both the app
//! and the recovery codes.

use std::process::Stdio;

use serde_json::json;
use tokio::process::Command;

use super::{first_step, fresh, user_with_2fa};
use crate::helpers::{PASSWORD, app_with_mail};

async fn reset(db_url: &str, email: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .env("TOLLGATE_BIND", "127.0.0.1:0")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .args(["user", "reset-2fa", "--email", email])
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operator_resets_a_lost_second_factor_and_the_owner_is_told() {
    let (app, sink) = app_with_mail(&[]).await;
    let Some(_) = user_with_2fa(&app, "ann@example.com").await else {
        return;
    };
    first_step(&app, &fresh(), "ann@example.com", json!({})).await;
    let out = reset(&app.db.url, "ANN@example.com").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("two-factor sign-in is off"), "{stdout}");
    assert_eq!(
        app.login_status("ann@example.com", PASSWORD).await,
        200,
        "one step again"
    );
    // The running instance's mail worker sends the notice the command queued.
    sink.wait_for_subject("ann@example.com", "Two-factor sign-in is off")
        .await;

    let again = reset(&app.db.url, "ann@example.com").await;
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing changed"));
    let unknown = reset(&app.db.url, "nobody@example.com").await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user has the address"));
}
