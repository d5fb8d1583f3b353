//! Social sign-in against providers nobody here wrote: oauth2-mock-server (npm), a real OpenID
//! Connect provider with discovery, JWKS, PKCE and nonces, and a GitHub-shaped stand-in for
//! GitHub's OAuth and REST endpoints (tests/oidc/provider.mjs, one process per test). The browser
//! is a reqwest client with a cookie jar that follows the redirects by hand.
//!
//! Without Node.js or the provider's packages (scripts/install-test-deps) the tests are skipped
//! with a notice, unless `TOLLGATE_REQUIRE_NODE=1` (CI), which fails instead.

mod attacks;
mod flows;
mod linking;

use std::{path::PathBuf, process::Stdio};

use reqwest::{Client, Response, Url};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

use crate::helpers::{SmtpSink, TestApp, app_with_mail, client};

/// The providers' process: its base URL; killed when dropped.
pub(super) struct Providers {
    pub url: String,
    _child: Child,
}

impl Providers {
    /// Starts tests/oidc/provider.mjs, or `None` (the test is skipped) without Node.js.
    pub async fn start() -> Option<Self> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        let ready = dir.join("node_modules/oauth2-mock-server").exists()
            && std::process::Command::new("node")
                .arg("--version")
                .output()
                .is_ok();
        if !ready {
            assert!(
                std::env::var("TOLLGATE_REQUIRE_NODE").as_deref() != Ok("1"),
                "Node.js and tests/oidc/node_modules are required (TOLLGATE_REQUIRE_NODE=1): run scripts/install-test-deps"
            );
            eprintln!(
                "NOTICE: no Node.js or tests/oidc/node_modules; skipped the social sign-in test"
            );
            return None;
        }
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the provider says where it listens");
        let url = line
            .strip_prefix("listening ")
            .expect("listening …")
            .to_owned();
        Some(Self { url, _child: child })
    }

    /// What the next sign-in at the providers claims.
    pub async fn next(&self, settings: Value) {
        let r = client()
            .post(format!("{}/_control/next", self.url))
            .json(&settings)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// The settings that point tollgate at these providers.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TOLLGATE_OIDC_ISSUER", self.url.clone()),
            ("TOLLGATE_OIDC_CLIENT_ID", "tollgate-test".into()),
            ("TOLLGATE_OIDC_CLIENT_SECRET", "test-secret".into()),
            ("TOLLGATE_OIDC_NAME", "Acme ID".into()),
            ("TOLLGATE_GITHUB_CLIENT_ID", "gh-client".into()),
            ("TOLLGATE_GITHUB_CLIENT_SECRET", "gh-secret".into()),
            ("TOLLGATE_GITHUB_URL", self.url.clone()),
            ("TOLLGATE_GITHUB_API_URL", format!("{}/api", self.url)),
        ]
    }
}

/// An app with mail, pointed at fresh providers.
pub(super) async fn app_with_providers() -> Option<(TestApp, SmtpSink, Providers)> {
    let providers = Providers::start().await?;
    let settings = providers.settings();
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (app, sink) = app_with_mail(&pairs).await;
    Some((app, sink, providers))
}

/// The `Location` of a redirect.
pub(super) fn location(r: &Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on a {}", r.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// "Continue with `provider`" on the login page of `c`: the provider's authorization URL.
pub(super) async fn start(
    app: &TestApp,
    c: &Client,
    provider: &str,
    extra: &[(&str, &str)],
) -> Url {
    let csrf = app.csrf_token(c, "/login").await;
    let mut form = vec![("csrf_token", csrf.as_str()), ("next", "/account")];
    form.extend_from_slice(extra);
    let r = c
        .post(app.url(&format!("/auth/{provider}")))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_redirection(),
        "{}: {}",
        r.status(),
        r.text().await.unwrap()
    );
    Url::parse(&location(&r)).unwrap()
}

/// The provider's answer to the authorization URL (the user consents): our callback URL.
pub(super) async fn consent(authorize: &Url) -> Url {
    let r = client().get(authorize.clone()).send().await.unwrap();
    assert_eq!(r.status(), 302, "{authorize}");
    Url::parse(&location(&r)).unwrap()
}

/// A whole sign-in with `provider` on `c`: the callback's answer.
pub(super) async fn sign_in(app: &TestApp, c: &Client, provider: &str) -> Response {
    let authorize = start(app, c, provider, &[]).await;
    let callback = consent(&authorize).await;
    c.get(callback).send().await.unwrap()
}

/// Claims of a verified address (and a subject) for the next OpenID Connect sign-in.
pub(super) fn verified(sub: &str, email: &str) -> Value {
    json!({"claims": {"sub": sub, "email": email, "email_verified": true}})
}
