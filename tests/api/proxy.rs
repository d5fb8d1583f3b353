//! Forward-auth end to end through a real nginx (`auth_request`) in front of a small upstream.
//! Skipped with a notice when nginx is not installed, unless `TOLLGATE_REQUIRE_NGINX=1` (CI).

use std::{net::TcpListener as StdListener, process::Stdio, time::Duration};

use axum::{Json, Router, http::HeaderMap, routing::get};
use serde_json::{Value, json};

use crate::helpers::{TestApp, client, spawn_app};

fn nginx_binary() -> Option<String> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_owned)
}

/// The upstream app: echoes the path and the identity headers it received.
async fn spawn_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().fallback(get(|uri: axum::http::Uri, headers: HeaderMap| async move {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Json(json!({
            "path": uri.path(),
            "user": h("x-tollgate-user-id"),
            "email": h("x-tollgate-email"),
            "plan": h("x-tollgate-plan"),
            "tier": h("x-tollgate-tier"),
        }))
    }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// The nginx configuration the README documents, on loopback ports.
fn nginx_conf(dir: &str, port: u16, tollgate: &str, upstream: u16) -> String {
    format!(
        r#"worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};

    location = /_tollgate {{
      internal;
      proxy_pass {tollgate}/auth/forward;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
    }}

    location / {{
      auth_request /_tollgate;
      auth_request_set $tollgate_user $upstream_http_x_tollgate_user_id;
      auth_request_set $tollgate_email $upstream_http_x_tollgate_email;
      auth_request_set $tollgate_plan $upstream_http_x_tollgate_plan;
      auth_request_set $tollgate_tier $upstream_http_x_tollgate_tier;
      auth_request_set $tollgate_login $upstream_http_x_tollgate_login_url;
      auth_request_set $tollgate_upgrade $upstream_http_x_tollgate_upgrade_url;
      # Always set (possibly empty): a client-sent X-Tollgate-* header never passes through.
      proxy_set_header X-Tollgate-User-Id $tollgate_user;
      proxy_set_header X-Tollgate-Email $tollgate_email;
      proxy_set_header X-Tollgate-Plan $tollgate_plan;
      proxy_set_header X-Tollgate-Tier $tollgate_tier;
      error_page 401 = @tollgate_login;
      error_page 403 = @tollgate_upgrade;
      proxy_pass http://127.0.0.1:{upstream};
    }}
    location @tollgate_login {{ return 302 $tollgate_login; }}
    location @tollgate_upgrade {{ return 302 $tollgate_upgrade; }}
  }}
}}
"#
    )
}

struct Nginx {
    child: tokio::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_nginx(binary: &str, app: &TestApp, upstream: u16) -> Nginx {
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("tollgate-nginx-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display().to_string();
    std::fs::write(
        dir.join("nginx.conf"),
        nginx_conf(&d, port, &app.address, upstream),
    )
    .unwrap();
    let child = tokio::process::Command::new(binary)
        .args(["-p", &d, "-c", &format!("{d}/nginx.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("nginx starts");
    let nginx = Nginx { child, dir, port };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx did not start: see {d}/error.log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nginx
}

/// GETs `url` through nginx with forged identity headers; the upstream's echo (200 required).
async fn forged(c: &reqwest::Client, url: &str) -> Value {
    let r = c
        .get(url)
        .header("x-tollgate-user-id", "usr_forged")
        .header("x-tollgate-plan", "team")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn nginx_auth_request_gates_an_upstream_by_plan() {
    let Some(binary) = nginx_binary() else {
        assert!(
            std::env::var("TOLLGATE_REQUIRE_NGINX").as_deref() != Ok("1"),
            "nginx is required here (TOLLGATE_REQUIRE_NGINX=1) but not installed"
        );
        eprintln!("NOTICE: nginx not installed; skipped the forward-auth proxy test");
        return;
    };
    let app = spawn_app().await;
    let upstream = spawn_upstream().await;
    let nginx = start_nginx(&binary, &app, upstream).await;
    let site = |path: &str| format!("http://127.0.0.1:{}{path}", nginx.port);

    // Anonymous: redirected to tollgate's login, coming back to the page.
    let r = client().get(site("/pro/report")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        app.url("/login?next=%2Fpro%2Freport").as_str()
    );

    // A free user on a pro path: redirected to pricing.
    let free = app.user("free@example.com").await;
    let r = free.get(site("/pro/report")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        app.url("/pricing?required=pro").as_str()
    );
    // …but any signed-in path reaches the upstream with the identity headers.
    let r = free.get(site("/dashboard")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["plan"], "free");

    // A pro user reaches the upstream, which sees who it is — and never a forged identity.
    let pro = app.subscriber("pro@example.com", "pro").await;
    let me = app.me(&pro).await;
    let seen = forged(&pro, &site("/pro/report")).await;
    assert_eq!(seen["path"], "/pro/report");
    assert_eq!(seen["user"], me["id"]);
    assert_eq!(seen["email"], "pro%40example.com");
    assert_eq!(seen["plan"], "pro");
    assert_eq!(seen["tier"], "1");

    // On a public path an anonymous client's forged headers are dropped, not passed on.
    let seen = forged(&client(), &site("/public/pricing.html")).await;
    assert_eq!(seen["path"], "/public/pricing.html");
    assert!(seen["user"].is_null() || seen["user"] == "", "{seen}");
    assert!(seen["plan"].is_null() || seen["plan"] == "", "{seen}");
    drop(nginx);
}
