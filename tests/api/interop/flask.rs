//! `examples/flask/app.py`, unchanged, run with Flask and PyJWT from the Python package registry:
//! gated by access tokens it verifies against tollgate's JWKS, and behind nginx forward-auth.

use std::{path::Path, process::Stdio, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::Response;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, client, spawn_app, user_in},
    proxy::{free_port, required, start_nginx},
    tokens::{access, login_tokens},
};

/// `examples/flask/app.py` on a free port, talking to `app`; killed on drop.
async fn start_flask(
    python: &Path,
    app: &TestApp,
    trust_proxy: bool,
) -> (tokio::process::Child, u16) {
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flask/app.py");
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(script)
        .env("TOLLGATE_URL", &app.address)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if trust_proxy {
        cmd.env("TRUST_PROXY", "1");
    }
    let child = cmd.spawn().expect("python starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Flask app did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, port)
}

async fn get(port: u16, path: &str, token: Option<&str>, extra: &[(&str, &str)]) -> Response {
    let mut request = client().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// A free user (`ann`) and a pro user (`bob`), each with an access token.
async fn users(app: &TestApp) -> (String, String) {
    app.user("ann@example.com").await;
    let now = app.state.clock.now();
    let bob = user_in(app, "bob", Some(("active", now, json!({})))).await;
    assert_eq!(app.me(&bob).await["access"]["plan"], "pro");
    let ann = access(&login_tokens(app, "ann@example.com").await);
    let bob = access(&login_tokens(app, "bob@example.com").await);
    (ann, bob)
}

#[tokio::test]
async fn flask_with_pyjwt_verifies_tollgates_tokens_against_its_jwks_and_gates_on_the_plan() {
    let Some(python) = super::python() else {
        return;
    };
    let app = spawn_app().await;
    let (ann, bob) = users(&app).await;
    let (_flask, port) = start_flask(&python, &app, false).await;

    let hello = get(port, "/hello", Some(&ann), &[]).await;
    assert_eq!(hello.status(), 200);
    let hello: Value = hello.json().await.unwrap();
    assert_eq!(
        hello,
        json!({"hello": "ann@example.com", "plan": "free", "via": "token"})
    );
    assert_eq!(get(port, "/reports", Some(&ann), &[]).await.status(), 403);
    let reports = get(port, "/reports", Some(&bob), &[]).await;
    assert_eq!(reports.status(), 200);
    assert_eq!(reports.json::<Value>().await.unwrap()["plan"], "pro");

    // What PyJWT refuses: no token, `alg: none`, a claim changed, another audience's token.
    assert_eq!(get(port, "/hello", None, &[]).await.status(), 401);
    let parts: Vec<&str> = ann.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["plan"] = json!("pro");
    let upgraded = URL_SAFE_NO_PAD.encode(claims.to_string());
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
    for forged in [
        format!("{}.{upgraded}.{}", parts[0], parts[2]),
        format!("{none_header}.{upgraded}."),
        format!("{}.{}.", parts[0], parts[1]),
    ] {
        assert_eq!(
            get(port, "/reports", Some(&forged), &[]).await.status(),
            401,
            "{forged}"
        );
    }
    // Another deployment's tokens (another issuer and audience) are not this app's.
    let other = spawn_app().await;
    other.user("ann@example.com").await;
    let foreign = access(&login_tokens(&other, "ann@example.com").await);
    assert_eq!(get(port, "/hello", Some(&foreign), &[]).await.status(), 401);
}

#[tokio::test]
async fn the_same_flask_app_behind_nginx_forward_auth_reads_the_identity_tollgate_vouches_for() {
    let Some(python) = super::python() else {
        return;
    };
    let Some(nginx) = required(
        "nginx",
        &["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"],
    ) else {
        return;
    };
    let app = spawn_app().await;
    let (ann, bob) = users(&app).await;
    let (_flask, flask_port) = start_flask(&python, &app, true).await;
    let proxy = start_nginx(&nginx, &app, flask_port).await;
    let port = proxy.port;

    let reports = get(port, "/reports", Some(&bob), &[]).await;
    assert_eq!(reports.status(), 200);
    let reports: Value = reports.json().await.unwrap();
    assert_eq!(
        (reports["plan"].as_str(), reports["via"].as_str()),
        (Some("pro"), Some("proxy"))
    );
    // A free user forging the identity headers: nginx overwrites them with tollgate's answer.
    let forged = [
        ("X-Tollgate-Plan", "pro"),
        ("X-Tollgate-User-Id", "usr_bob"),
    ];
    let r = get(port, "/reports", Some(&ann), &forged).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "upgrade_required"
    );
    // No credentials: tollgate's 401 becomes nginx's redirect to the login page.
    let anonymous = get(port, "/reports", None, &forged).await;
    assert_eq!(anonymous.status(), 302);
    assert!(
        anonymous.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/login?next=")
    );
}
