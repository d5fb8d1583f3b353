//! README's "Use from other backends" snippets, run as they stand there: the shell one with curl,
//! the Python one with PyJWT from the virtual environment, the JavaScript one with Node.

use std::process::Stdio;

use crate::{
    helpers::{PASSWORD, TestApp, spawn_app},
    tokens::{access, login_tokens},
};

const README: &str = include_str!("../../../README.md");

/// The fenced blocks of README's "## Use from other backends": (language, code).
fn snippets() -> Vec<(String, String)> {
    let start = README
        .find("## Use from other backends\n")
        .expect("the README has the section");
    let section = &README[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = vec![];
    let mut rest = section;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let newline = after.find('\n').unwrap();
        let language = after[..newline].trim().to_owned();
        let body = &after[newline + 1..];
        let close = body.find("```").expect("a closed block");
        blocks.push((language, body[..close].to_owned()));
        rest = &body[close + 3..];
    }
    blocks
}

#[tokio::test]
async fn the_readmes_snippets_for_other_backends_run_against_a_real_tollgate() {
    let blocks = snippets();
    let languages: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        languages,
        ["sh", "python", "js"],
        "every snippet is run here"
    );
    let Some(python) = super::python() else {
        return;
    };
    let app = spawn_app().await;
    app.user("ann@example.com").await;
    let token = access(&login_tokens(&app, "ann@example.com").await);
    for (language, code) in &blocks {
        let mut command = match language.as_str() {
            "sh" => {
                let mut c = tokio::process::Command::new("bash");
                c.args(["-euo", "pipefail", "-c", code]);
                c
            }
            "python" => {
                let mut c = tokio::process::Command::new(&python);
                c.args(["-c", code]);
                c
            }
            _ => {
                let mut c = tokio::process::Command::new("node");
                c.args(["--input-type=module", "-e", code]);
                c
            }
        };
        let out = command
            .env("TOLLGATE_URL", &app.address)
            .env("EMAIL", "ann@example.com")
            .env("PASSWORD", PASSWORD)
            .env("ACCESS_TOKEN", &token)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("{language}: {e}"));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{language}: {stdout}\n{stderr}");
        let expected: &[&str] = match language.as_str() {
            "sh" => &[
                "\"email\":\"ann@example.com\"",
                "the next access token expires in 600 s",
            ],
            "python" => &["ann@example.com free"],
            _ => &["ann@example.com free none"],
        };
        for e in expected {
            assert!(stdout.contains(e), "{language}: {e:?} not in {stdout}");
        }
    }
}

/// README's Rust embedding example is the doc example of `app::build_router_with`, which
/// `cargo test --doc` compiles: the same lines, less the hidden ones (`# `).
#[test]
fn the_readmes_rust_example_is_the_compiled_doc_example() {
    let source = include_str!("../../../src/app/mod.rs");
    let start = source
        .find("/// ```no_run\n/// use axum::{Router, response::Html")
        .expect("build_router_with has the example");
    let block = &source[start..];
    let block = &block[..block[5..].find("/// ```\n").unwrap() + 5];
    let example: String = block
        .lines()
        .skip(1)
        .map(|l| {
            l.strip_prefix("/// ")
                .unwrap_or(l.trim_start_matches("///"))
        })
        .filter(|l| !l.starts_with("# ") && *l != "#")
        .map(|l| format!("{l}\n"))
        .collect();
    let open = README
        .find("```rust\n")
        .expect("the README has a Rust block")
        + "```rust\n".len();
    let close = open + README[open..].find("```\n").unwrap();
    assert_eq!(&README[open..close], example);
    assert!(example.contains("build_router_with(state, routes)"));
}

/// The README's `sh` block whose first line is `first`.
pub(crate) fn sh_block(first: &str) -> &'static str {
    let marker = format!("```sh\n{first}");
    let open = README
        .find(&marker)
        .unwrap_or_else(|| panic!("the README has a block starting {first:?}"))
        + "```sh\n".len();
    &README[open..open + README[open..].find("```\n").unwrap()]
}

/// Runs a README curl block against `app` as it stands, except that tollgate's address is the
/// test's and every `curl` prints only its status; returns the statuses and the ones the block's
/// comments state (`# 201 …`), in order.
pub(crate) async fn run_curl_block(
    app: &TestApp,
    code: &str,
    env: &[(&str, &str)],
) -> (Vec<u16>, Vec<u16>) {
    let stated: Vec<u16> = code
        .lines()
        .filter_map(|l| l.split_once("# ").map(|(_, comment)| comment))
        .filter_map(|c| c.get(..3).and_then(|s| s.parse().ok()))
        .collect();
    let script = code
        .replace("http://127.0.0.1:3000", &app.address)
        .replace("curl ", "curl -s -o /dev/null -w '%{http_code}\\n' ");
    let dir = std::env::temp_dir().join(format!("tollgate-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .envs(env.iter().copied())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{script}\n{stdout}");
    let statuses = stdout.lines().map(|l| l.trim().parse().unwrap()).collect();
    (statuses, stated)
}

/// The README's curl walkthrough, API key and access token commands answer what their comments
/// say, run against a real tollgate.
#[tokio::test]
async fn the_readmes_curl_commands_answer_what_they_say() {
    let app = spawn_app().await;
    let walkthrough = sh_block("# Register (JSON API");
    let (got, stated) = run_curl_block(&app, walkthrough, &[]).await;
    assert_eq!(stated, [201, 200, 204, 401, 200], "{walkthrough}");
    assert_eq!(got, stated, "{walkthrough}");

    // Ann (registered by the walkthrough) pays for Pro; then her key and her token.
    let ann = crate::helpers::client();
    let body = serde_json::json!({"email": "ann@example.com", "password": PASSWORD});
    assert_eq!(
        app.post_json_with(&ann, "/api/auth/login", &body)
            .await
            .status(),
        200
    );
    let url = app.checkout(&ann, "pro", "month").await;
    app.pay(&url).await;
    app.wait_for_plan(&ann, Some("pro")).await;
    let key = crate::keys::key_of(&app, &ann, &["read"]).await;
    let keys = sh_block("curl -H \"Authorization: Bearer $TOLLGATE_KEY\"");
    let (got, stated) = run_curl_block(&app, keys, &[("TOLLGATE_KEY", &key)]).await;
    assert_eq!(stated, [200, 200]);
    assert_eq!(got, stated, "{keys}");

    let token = access(&login_tokens(&app, "ann@example.com").await);
    let tokens = sh_block("curl -s -X POST http://127.0.0.1:3000/api/auth/login");
    let (got, stated) = run_curl_block(&app, tokens, &[("ACCESS_TOKEN", &token)]).await;
    assert_eq!(stated, [200, 200]);
    assert_eq!(got, stated, "{tokens}");
}

/// The README's Traefik configuration (no Traefik here to run it: Debian has no package) read as
/// YAML by PyYAML: its forwardAuth asks tollgate's route and copies exactly the identity headers a
/// real tollgate grants with, and only the app's router goes through the middleware.
#[tokio::test]
async fn the_readmes_traefik_configuration_copies_what_tollgate_answers() {
    let Some(python) = super::python() else {
        return;
    };
    let open = README
        .find("```yaml\n")
        .expect("the README's Traefik block")
        + "```yaml\n".len();
    let yaml = &README[open..open + README[open..].find("```\n").unwrap()];
    let mut child = tokio::process::Command::new(&python)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let http = &config["http"];
    let auth = &http["middlewares"]["tollgate"]["forwardAuth"];
    assert_eq!(auth["address"], "http://127.0.0.1:3000/auth/forward");
    assert_eq!(
        http["routers"]["app"]["middlewares"],
        serde_json::json!(["tollgate"])
    );
    assert!(
        http["routers"]["tollgate"]["middlewares"].is_null(),
        "tollgate's own pages are not gated"
    );

    // What a real tollgate answers a granted request with.
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    let granted = c
        .get(app.url("/auth/forward"))
        .header("x-forwarded-uri", "/pro/report")
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 200);
    let mut answered: Vec<String> = granted
        .headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("x-tollgate-"))
        .collect();
    answered.sort();
    let mut copied: Vec<String> = auth["authResponseHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_ascii_lowercase())
        .collect();
    copied.sort();
    assert_eq!(copied, answered);
}
