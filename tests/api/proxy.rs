//! Forward-auth end to end through a real nginx (`auth_request`) and a real Caddy
//! (`forward_auth`) in front of a small upstream, each running the exact configuration file the
//! README shows (`docs/proxy/`), attacked the way a client would: forged URI, host and identity
//! headers, raw bytes, dot segments, other cases. Skipped with a notice when a proxy is not
//! installed, unless `TOLLGATE_REQUIRE_NGINX=1` (CI), which fails instead.

use std::{net::TcpListener as StdListener, path::PathBuf, process::Stdio, time::Duration};

use axum::{Json, Router, http::HeaderMap, routing::get};
use reqwest::Client;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{TestApp, client, spawn_app};

pub(crate) const NGINX_CONF: &str = include_str!("../../docs/proxy/nginx.conf");
const CADDYFILE: &str = include_str!("../../docs/proxy/Caddyfile");

fn binary(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| (*p).to_owned())
}

/// The proxy's binary, or `None` with a notice (a failure when the proxies are required).
pub(crate) fn required(name: &str, candidates: &[&str]) -> Option<String> {
    let found = binary(candidates);
    if found.is_none() {
        assert!(
            std::env::var("TOLLGATE_REQUIRE_NGINX").as_deref() != Ok("1"),
            "{name} is required here (TOLLGATE_REQUIRE_NGINX=1) but not installed"
        );
        eprintln!("NOTICE: {name} not installed; skipped its forward-auth proxy test");
    }
    found
}

/// The upstream app: echoes the path and the identity headers it received.
async fn spawn_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().fallback(get(|uri: axum::http::Uri, headers: HeaderMap| async move {
        // Read the way CGI and WSGI do (`HTTP_X_TOLLGATE_USER_ID`): `_` and `-` are one, and
        // every header that maps to the name counts.
        let h = |name: &str| {
            let values: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n.as_str().replace('_', "-") == name)
                .filter_map(|(_, v)| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        Json(json!({
            "upstream": true,
            "path": uri.path(),
            "user": h("x-tollgate-user-id"),
            "email": h("x-tollgate-email"),
            "plan": h("x-tollgate-plan"),
            "tier": h("x-tollgate-tier"),
            "roles": h("x-tollgate-roles"),
        }))
    }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

pub(crate) fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running proxy; stopped and cleaned up on drop.
pub(crate) struct Proxy {
    child: tokio::process::Child,
    dir: PathBuf,
    pub(crate) port: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The README's file with tollgate's and the upstream's real addresses.
fn with_addresses(file: &str, app: &TestApp, upstream: u16) -> String {
    let tollgate = app.address.trim_start_matches("http://");
    file.replace("127.0.0.1:3000", tollgate)
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{upstream}"))
}

async fn start(mut command: tokio::process::Command, dir: PathBuf, port: u16) -> Proxy {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the proxy starts");
    let proxy = Proxy { child, dir, port };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy did not start: see {}",
            proxy.dir.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy
}

pub(crate) async fn start_nginx(binary: &str, app: &TestApp, upstream: u16) -> Proxy {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("tollgate-nginx-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let server = with_addresses(NGINX_CONF, app, upstream)
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    assert!(server.contains(&format!("listen 127.0.0.1:{port};")));
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         {server}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut command = tokio::process::Command::new(binary);
    command.args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")]);
    start(command, dir, port).await
}

async fn start_caddy(binary: &str, app: &TestApp, upstream: u16) -> Proxy {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("tollgate-caddy-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let site = with_addresses(CADDYFILE, app, upstream)
        .replace("example.com {", &format!("http://127.0.0.1:{port} {{"));
    assert!(site.contains(&format!("http://127.0.0.1:{port} {{")));
    let conf = format!("{{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}}\n{site}");
    std::fs::write(dir.join("Caddyfile"), conf).unwrap();
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir)
        .env("HOME", &dir);
    start(command, dir, port).await
}

/// Every header a client could forge to steer the decision or pose as someone.
const FORGED: [(&str, &str); 8] = [
    ("x-forwarded-uri", "/public/x"),
    ("x-original-uri", "/public/x"),
    ("x-original-url", "/public/x"),
    ("x-forwarded-host", "evil.test"),
    ("x-forwarded-proto", "javascript"),
    ("x-tollgate-user-id", "usr_forged"),
    ("x-tollgate-plan", "team"),
    ("x-tollgate-roles", "admin"),
];

async fn get_forged(c: &Client, url: &str) -> reqwest::Response {
    let mut request = c.get(url);
    for (name, value) in FORGED {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

/// Whether a response came from the upstream (the gate let it through).
async fn reached_upstream(response: reqwest::Response) -> bool {
    response.status() == 200
        && response
            .json::<Value>()
            .await
            .is_ok_and(|v| v["upstream"] == true)
}

/// A request written byte for byte (a raw `é`, dot segments kept): the status code, and whether
/// the upstream answered.
async fn raw_get(port: u16, target: &[u8]) -> (u16, bool) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answers")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer.contains("\"upstream\":true"))
}

impl Proxy {
    /// The URL of `path` through the proxy.
    fn site(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The attacks of the security review, through `proxy` (whose configuration is the README's).
async fn attack_through(app: &TestApp, proxy: &Proxy, name: &str) {
    anonymous_visitors_get_tollgates_own_login_whatever_they_forge(app, proxy, name).await;
    no_spelling_of_a_pro_path_reaches_the_upstream_anonymously(app, proxy, name).await;
    let free = a_free_user_is_sent_to_pricing_but_reaches_signed_in_paths(app, proxy, name).await;
    a_pro_user_reaches_the_upstream_which_sees_its_real_identity(app, proxy, name).await;
    other_spellings_of_the_identity_headers_never_pose_as_someone(app, proxy, &free, name).await;
    a_public_path_drops_an_anonymous_clients_forged_identity(proxy, name).await;
}

/// Anonymous: redirected to tollgate's login, coming back to the page, even with forged headers.
async fn anonymous_visitors_get_tollgates_own_login_whatever_they_forge(
    app: &TestApp,
    proxy: &Proxy,
    name: &str,
) {
    let login = app.url("/login?next=%2Fpro%2Freport");

    let r = client()
        .get(proxy.site("/pro/report"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{name}");
    assert_eq!(r.headers()["location"], login.as_str(), "{name}");

    // Anonymous with every forgeable header: never the upstream; the login URL is tollgate's
    // own, for the path really asked for (a forged host or scheme is not taken).
    let r = get_forged(&client(), &proxy.site("/pro/report")).await;
    let status = r.status();
    let location = r.headers().get("location").cloned();
    assert!(
        (status == 302 && location.as_ref().is_some_and(|l| l == login.as_str())) || status == 403,
        "{name}: forged headers gave {status} {location:?}"
    );
    // A forged host and scheme alone: still exactly tollgate's own login URL for the real path.
    let r = client()
        .get(proxy.site("/pro/report"))
        .header("x-forwarded-host", "evil.test")
        .header("x-forwarded-proto", "javascript")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{name}");
    assert_eq!(r.headers()["location"], login.as_str(), "{name}");
    // Each URI header alone, too.
    for (header, value) in &FORGED[..3] {
        let r = client()
            .get(proxy.site("/pro/report"))
            .header(*header, *value)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(r.status().as_u16(), 302 | 403),
            "{name}: {header} gave {}",
            r.status()
        );
        assert!(!reached_upstream(r).await, "{name}: {header}");
    }
}

/// Other spellings of a pro path: another case, the bare prefix, dot segments, raw bytes.
async fn no_spelling_of_a_pro_path_reaches_the_upstream_anonymously(
    app: &TestApp,
    proxy: &Proxy,
    name: &str,
) {
    for path in [
        "/PRO/report",
        "/Pro/report",
        "/pro",
        "/pro/",
        "//pro//report",
        "/pro.json",
    ] {
        let r = client().get(proxy.site(path)).send().await.unwrap();
        assert_eq!(r.status(), 302, "{name}: {path}");
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with(&app.url("/login?next=")),
            "{name}: {path}"
        );
    }
    for target in [
        &b"/public/../pro/report"[..],
        b"/public/%2e%2e/pro/report",
        b"/pro/report?q=\xc3\xa9",
        b"/public/x;/../../pro/report",
        b"/public%2F..%2Fpro/report",
        b"/pro/report%00",
        b"/pro.",
        b"/pro%20",
        b"/%EF%BD%90ro/report",
        b"/pro%C2%A0/report",
    ] {
        let (status, upstream) = raw_get(proxy.port, target).await;
        assert!(
            !upstream && status != 200,
            "{name}: {} reached the upstream ({status})",
            String::from_utf8_lossy(target)
        );
    }
}

/// A free user on a pro path, with every forged header: redirected to pricing; but any
/// signed-in path reaches the upstream with the identity headers. Returns the free user.
async fn a_free_user_is_sent_to_pricing_but_reaches_signed_in_paths(
    app: &TestApp,
    proxy: &Proxy,
    name: &str,
) -> Client {
    let free = app.user("free@example.com").await;
    let r = get_forged(&free, &proxy.site("/pro/report")).await;
    let status = r.status();
    let location = r.headers().get("location").cloned();
    assert!(
        (status == 302
            && location
                .as_ref()
                .is_some_and(|l| l == app.url("/pricing?required=pro").as_str()))
            || status == 403,
        "{name}: a free user with forged headers got {status} {location:?}"
    );
    let r = free.get(proxy.site("/PRO/report")).send().await.unwrap();
    assert_eq!(r.status(), 302, "{name}");
    assert_eq!(
        r.headers()["location"],
        app.url("/pricing?required=pro").as_str(),
        "{name}"
    );
    // …but any signed-in path reaches the upstream with the identity headers.
    let r = free.get(proxy.site("/dashboard")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{name}");
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["plan"], "free", "{name}");
    free
}

/// A pro user reaches the upstream, which sees who it is — and never a forged identity.
async fn a_pro_user_reaches_the_upstream_which_sees_its_real_identity(
    app: &TestApp,
    proxy: &Proxy,
    name: &str,
) {
    let pro = app.subscriber("pro@example.com", "pro").await;
    let me = app.me(&pro).await;
    let id = me["id"].as_str().unwrap();
    tollgate::auth::roles::grant(&app.state, id, "support", "operator")
        .await
        .unwrap();
    let r = pro
        .get(proxy.site("/pro/report"))
        .header("x-tollgate-user-id", "usr_forged")
        .header("x-tollgate-plan", "team")
        .header("x-tollgate-roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{name}");
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["path"], "/pro/report", "{name}");
    assert_eq!(seen["user"], me["id"], "{name}");
    assert_eq!(seen["email"], "pro%40example.com", "{name}");
    assert_eq!(seen["plan"], "pro", "{name}");
    assert_eq!(seen["tier"], "1", "{name}");
    assert_eq!(
        seen["roles"], "support",
        "{name}: the roles tollgate granted, never forged ones"
    );
}

/// CGI-style spellings of the identity headers, and a `Connection` header asking the proxy to
/// drop tollgate's real ones: the app still sees only tollgate's identity, or none.
async fn other_spellings_of_the_identity_headers_never_pose_as_someone(
    app: &TestApp,
    proxy: &Proxy,
    free: &Client,
    name: &str,
) {
    let free_id = app.me(free).await["id"].as_str().unwrap().to_owned();
    for (c, path, expected) in [
        (free, "/dashboard", free_id.as_str()),
        (&client(), "/public/x", ""),
    ] {
        for connection in [
            None,
            Some("X-Tollgate-User-Id, X-Tollgate-Plan, X-Tollgate-Roles"),
        ] {
            let mut request = c
                .get(proxy.site(path))
                .header("x_tollgate_user_id", "usr_forged")
                .header("x_tollgate_plan", "team")
                .header("x_tollgate_roles", "admin");
            if let Some(connection) = connection {
                request = request.header("connection", connection);
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200, "{name}: {path}");
            let seen: Value = r.json().await.unwrap();
            let user = seen["user"].as_str().unwrap_or("");
            let plan = seen["plan"].as_str().unwrap_or("");
            assert!(
                user == expected || user.is_empty(),
                "{name}: {path} with {connection:?}: the app saw user {user:?}"
            );
            assert!(
                !plan.contains("team"),
                "{name}: {path} with {connection:?}: the app saw plan {plan:?}"
            );
            let roles = seen["roles"].as_str().unwrap_or("");
            assert!(
                !roles.contains("admin"),
                "{name}: {path} with {connection:?}: the app saw roles {roles:?}"
            );
        }
    }
}

/// On a public path an anonymous client's forged identity is dropped, not passed on.
async fn a_public_path_drops_an_anonymous_clients_forged_identity(proxy: &Proxy, name: &str) {
    let r = client()
        .get(proxy.site("/public/pricing.html"))
        .header("x-tollgate-user-id", "usr_forged")
        .header("x-tollgate-email", "boss%40example.com")
        .header("x-tollgate-plan", "team")
        .header("x-tollgate-tier", "2")
        .header("x-tollgate-roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{name}");
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["path"], "/public/pricing.html", "{name}");
    for field in ["user", "plan", "tier", "email", "roles"] {
        assert!(
            seen[field].is_null() || seen[field] == "",
            "{name}: {field} in {seen}"
        );
    }
}

#[tokio::test]
async fn nginx_with_the_readmes_configuration_cannot_be_steered_by_a_client() {
    let Some(binary) = required(
        "nginx",
        &["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"],
    ) else {
        return;
    };
    let app = spawn_app().await;
    let upstream = spawn_upstream().await;
    let nginx = start_nginx(&binary, &app, upstream).await;
    attack_through(&app, &nginx, "nginx").await;
}

#[tokio::test]
async fn caddy_with_the_readmes_configuration_cannot_be_steered_by_a_client() {
    let Some(binary) = required("caddy", &["/usr/bin/caddy", "/usr/local/bin/caddy"]) else {
        return;
    };
    let app = spawn_app().await;
    let upstream = spawn_upstream().await;
    let caddy = start_caddy(&binary, &app, upstream).await;
    attack_through(&app, &caddy, "caddy").await;
}

#[test]
fn the_readme_shows_exactly_the_proxy_files_the_tests_run() {
    let readme = include_str!("../../README.md");
    for (name, file) in [("nginx", NGINX_CONF), ("Caddy", CADDYFILE)] {
        assert!(
            readme.contains(file),
            "README's {name} configuration differs from docs/proxy/"
        );
    }
}
