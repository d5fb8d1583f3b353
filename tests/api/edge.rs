//! The HTTP edge, attacked over raw TCP: huge and slow request heads, a flood of half-sent
//! requests against a process with 1,024 file descriptors, `TRACE`/`CONNECT`, forged request ids.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
};

use crate::helpers::{TestApp, TestDb, client, spawn_app};

/// Writes `request` on a new connection and reads the answer until the server closes it (or
/// 10 s pass): the status code (0 when none came).
async fn raw(address: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .unwrap();
    // The server may close while we are still writing a huge head; its answer is what counts.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[tokio::test]
async fn a_request_head_over_32_kib_is_answered_431() {
    let app = spawn_app().await;
    let head = |size: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(size)
        )
    };
    let (status, _) = raw(&app.address, head(16 * 1024).as_bytes()).await;
    assert_eq!(status, 200, "16 KiB of headers is fine");
    let (status, _) = raw(&app.address, head(40 * 1024).as_bytes()).await;
    assert_eq!(status, 431);
    // Many small headers add up the same way.
    let many: String = (0..2_000)
        .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(20)))
        .collect();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (status, _) = raw(&app.address, request.as_bytes()).await;
    assert_eq!(status, 431);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_head_is_cut_off() {
    let app = TestApp::builder()
        .with("TOLLGATE_HEADER_TIMEOUT_SECS", "1")
        .spawn()
        .await;
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection is still open after 8 s");
    assert!(
        !String::from_utf8_lossy(&rest).contains(" 200 "),
        "a half-sent request got an answer"
    );
}

#[tokio::test]
async fn trace_and_connect_are_refused_on_every_path() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/healthz",
        "/api/me",
        "/login",
        "/webhooks/stripe",
        "/nowhere",
    ] {
        let r = client()
            .request(reqwest::Method::TRACE, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "TRACE {path}");
    }
    let host = app.address.trim_start_matches("http://").to_owned();
    for target in [host.as_str(), "127.0.0.1:5432", "/healthz"] {
        let (status, _) = raw(
            &app.address,
            format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(status, 405, "CONNECT {target}");
    }
}

#[tokio::test]
async fn refusals_made_before_a_handler_runs_are_json_errors_too() {
    let app = spawn_app().await;
    // A method the route does not take.
    for (method, path) in [
        (reqwest::Method::GET, "/api/auth/login"),
        (reqwest::Method::PUT, "/api/auth/login"),
        (reqwest::Method::OPTIONS, "/api/auth/login"),
        (reqwest::Method::DELETE, "/webhooks/stripe"),
    ] {
        // JSON, so the CSRF rule for writes under /api/ is met and the method is what is judged.
        let r = client()
            .request(method.clone(), app.url(path))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert!(r.headers().contains_key("allow"), "{method} {path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
    }
    // A body over the limit on the webhook, which reads raw bytes.
    let r = client()
        .post(app.url("/webhooks/stripe"))
        .header("stripe-signature", "t=1,v1=00")
        .body(vec![b'{'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
    // A repeated name in a JSON body changes nothing and says why.
    let r = client()
        .post(app.url("/api/auth/register"))
        .header("content-type", "application/json")
        .body(r#"{"email":"first@example.com","password":"correct horse battery","email":"last@example.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_json");
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn a_request_id_is_kept_only_from_a_trusted_proxy() {
    let id_for = |app: &TestApp, sent: &'static str| {
        let url = app.url("/healthz");
        async move {
            let r = client()
                .get(url)
                .header("x-request-id", sent)
                .send()
                .await
                .unwrap();
            r.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    let direct = spawn_app().await;
    let id = id_for(&direct, "client-chosen-id").await;
    assert_ne!(id, "client-chosen-id", "a client's id is replaced");
    assert_eq!(id.len(), 16, "{id}");

    let behind_proxy = TestApp::builder()
        .with("TOLLGATE_TRUSTED_PROXIES", "127.0.0.1")
        .spawn()
        .await;
    assert_eq!(
        id_for(&behind_proxy, "proxy-id-42").await,
        "proxy-id-42",
        "the trusted proxy's id is kept"
    );
    let forged = id_for(&behind_proxy, "x\" injected=\"1").await;
    assert_ne!(
        forged, "x\" injected=\"1",
        "an id that is not an id is replaced"
    );
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Starts the real binary on `db` with 1,024 file descriptors; the process and the URL it prints.
async fn serve_with_1024_fds(db: &TestDb) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -n 1024 && exec \"$0\" serve",
            env!("CARGO_BIN_EXE_tollgate"),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("TOLLGATE_BIND", "127.0.0.1:0")
        .env("TOLLGATE_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
        .await
        .expect("prints its URL")
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    (child, url)
}

/// Opens up to `n` connections to `address` that each send half a request head and wait; the
/// ones that opened.
async fn half_sent_requests(address: &str, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address)).await
        else {
            continue;
        };
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await;
        held.push(stream);
    }
    held
}

/// Stops `child` and returns what it wrote to stderr.
async fn stop_and_read_stderr(mut child: tokio::process::Child) -> String {
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .await
        .unwrap();
    logs
}

#[tokio::test]
async fn a_flood_of_half_sent_requests_leaves_health_checks_answering() {
    let db = TestDb::new().await;
    // The real binary, with 1,024 file descriptors.
    let (child, url) = serve_with_1024_fds(&db).await;
    let pid = child.id().unwrap();
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let rss_before = rss_kib(pid);

    // 1,100 connections that each send half a request head and wait.
    let held = half_sent_requests(&address, 1_100).await;
    assert!(
        held.len() >= 1_000,
        "only {} connections opened",
        held.len()
    );

    // Health checks still answer, each within a second.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            client().get(format!("{url}healthz")).send(),
        )
        .await;
        assert!(
            matches!(&answer, Ok(Ok(r)) if r.status() == 200),
            "/healthz did not answer within a second during the flood: {answer:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let rss_during = rss_kib(pid);
    assert!(
        rss_during < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {rss_during} KiB"
    );
    drop(held);

    let logs = stop_and_read_stderr(child).await;
    assert!(
        logs.contains("connection limit reached"),
        "no log line says the cap was reached: {}",
        &logs[..logs.len().min(2_000)]
    );
}

#[tokio::test]
async fn a_router_served_without_connection_info_believes_no_forwarding_header() {
    // tollgate's router mounted in another server that records no peer address: with a trusted
    // proxy range configured, X-Forwarded-For must still not choose the rate-limit bucket.
    let app = TestApp::builder()
        .with("TOLLGATE_RATE_LIMIT", "on")
        .with("TOLLGATE_TRUSTED_PROXIES", "127.0.0.1/32")
        .spawn()
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let router = tollgate::app::build_router(app.state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut statuses = Vec::new();
    for i in 0..21 {
        let r = client()
            .post(format!("{address}/api/auth/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(
                &serde_json::json!({"email": format!("p{i}@example.com"), "password": "nope nope"}),
            )
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert_eq!(
        statuses[20], 429,
        "one bucket for every request: {statuses:?}"
    );
}
