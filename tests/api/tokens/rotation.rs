//! Signing keys: one generated at first start and shared by every instance on the database, a
//! configured one, and `tollgate jwt rotate`, after which old tokens still verify and new ones are
//! signed with the new key, which every instance learns.

use std::process::Stdio;

use super::{SIGNING_KEY, access, decode, kids, login_tokens, me_status};
use crate::helpers::TestApp;

/// Instances of one deployment share its public URL: the tokens' issuer.
const BASE_URL: (&str, &str) = ("TOLLGATE_BASE_URL", "http://auth.tollgate.test");

/// Runs the binary with `args` on `app`'s database and `env`, nothing else from this process.
async fn tollgate(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.db.url)
        .env("TOLLGATE_BIND", "127.0.0.1:0")
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

async fn rotate(app: &TestApp) -> String {
    let out = tollgate(app, &["jwt", "rotate"], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn instances_share_one_key_and_a_rotation_keeps_old_tokens_valid() {
    let app = TestApp::builder()
        .with(BASE_URL.0, BASE_URL.1)
        .spawn()
        .await;
    app.user("ann@example.com").await;
    let second = app.second_instance_with(&[BASE_URL]).await;
    assert_eq!(kids(&app).await.len(), 1);
    assert_eq!(
        kids(&app).await,
        kids(&second).await,
        "one key for every instance"
    );
    let old = login_tokens(&app, "ann@example.com").await;
    let old_kid = decode(&access(&old)).0["kid"].as_str().unwrap().to_owned();
    assert_eq!(me_status(&second, &access(&old)).await, 200);

    // The deployment has run a while (key times are wall-clock seconds).
    sqlx::query("UPDATE signing_keys SET created_at = created_at - 3600")
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let said = rotate(&app).await;
    // Step one: the new key is published by every instance that reads the table, and signs
    // nothing yet (an instance that has not read it would not know it).
    let third = app.second_instance_with(&[BASE_URL]).await;
    let published = kids(&third).await;
    assert_eq!(published.len(), 2, "{published:?}");
    let new_kid = published[0].clone();
    assert_ne!(new_kid, old_kid, "the current key first");
    assert!(published.contains(&old_kid));
    assert!(said.contains(&new_kid), "{said}");
    let during = login_tokens(&third, "ann@example.com").await;
    assert_eq!(decode(&access(&during)).0["kid"], old_kid.as_str());

    // Step two, once the key has been published long enough (here: made to look that old).
    sqlx::query("UPDATE signing_keys SET created_at = created_at - 200 WHERE kid = $1")
        .bind(&new_kid)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let fourth = app.second_instance_with(&[BASE_URL]).await;
    let new = login_tokens(&fourth, "ann@example.com").await;
    assert_eq!(decode(&access(&new)).0["kid"], new_kid.as_str());
    // The first instance has not read the table since: a token naming a key it does not know
    // makes it look (at most once a second).
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(me_status(&app, &access(&new)).await, 200);
    assert_eq!(
        me_status(&app, &access(&old)).await,
        200,
        "the old key still verifies"
    );
    assert_eq!(me_status(&app, &access(&during)).await, 200);
}

#[tokio::test]
async fn a_configured_key_signs_and_its_private_half_never_reaches_the_database() {
    let app = TestApp::builder()
        .with("TOLLGATE_JWT_SIGNING_KEY", SIGNING_KEY)
        .spawn()
        .await;
    app.user("ann@example.com").await;
    let pair = login_tokens(&app, "ann@example.com").await;
    let kid = decode(&access(&pair)).0["kid"].as_str().unwrap().to_owned();
    assert_eq!(kids(&app).await, vec![kid]);
    let stored: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT private_key FROM signing_keys WHERE retired_at IS NULL")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, vec![(None,)]);
    // Verifiers may cache the key set a while.
    let r = crate::helpers::client()
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
}

#[tokio::test]
async fn an_instance_without_the_configured_key_refuses_to_start_and_rotate_defers_to_the_setting()
{
    let app = TestApp::builder()
        .with("TOLLGATE_JWT_SIGNING_KEY", SIGNING_KEY)
        .spawn()
        .await;
    // Another instance on the same database without the setting cannot sign: it says so and
    // stops, instead of serving tokens nobody can verify or making a key of its own.
    let out = tollgate(&app, &["serve"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TOLLGATE_JWT_SIGNING_KEY"), "{stderr}");
    // With the setting, rotation is the setting's to do.
    let out = tollgate(
        &app,
        &["jwt", "rotate"],
        &[("TOLLGATE_JWT_SIGNING_KEY", SIGNING_KEY)],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("changing that setting"));
    assert_eq!(kids(&app).await.len(), 1, "nothing rotated");
}
