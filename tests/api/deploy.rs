//! fly.toml and the Dockerfile agree with the code.

use crate::helpers::spawn_app;

#[tokio::test]
async fn fly_toml_port_and_health_check_match_the_app() {
    let fly = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fly.toml")).unwrap();
    let value = |key: &str| {
        fly.lines()
            .map(str::trim)
            .find_map(|l| {
                l.strip_prefix(key).map(|rest| {
                    rest.trim_start_matches([' ', '='])
                        .trim()
                        .trim_matches('"')
                        .to_owned()
                })
            })
            .unwrap_or_else(|| panic!("fly.toml has no {key}"))
    };

    assert_eq!(value("internal_port"), "8080");
    assert_eq!(value("TOLLGATE_BIND"), "0.0.0.0:8080");
    assert_eq!(value("TOLLGATE_ENV"), "production");
    let health_path = value("path");
    let app = spawn_app().await;
    assert_eq!(
        app.get(&health_path).await.status(),
        200,
        "{health_path} answers"
    );
    assert_eq!(health_path, "/readyz");

    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(dockerfile.contains("EXPOSE 8080"));
    // tollgate runs as the unprivileged user: the entrypoint drops root (after handing a mounted
    // volume to that user) before it execs anything.
    let entrypoint =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/entrypoint.sh"))
            .unwrap();
    assert!(dockerfile.contains("COPY deploy/entrypoint.sh /usr/local/bin/tollgate-entrypoint"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/tollgate-entrypoint"]"#));
    assert!(dockerfile.contains("useradd --system --uid 10001"));
    assert!(entrypoint.contains("user=${TOLLGATE_RUN_AS:-tollgate}"));
    assert!(entrypoint.contains("data=${TOLLGATE_DATA_DIR:-/data}"));
}

/// The image's entrypoint, run here as root the way the container starts: it hands the data
/// directory (root's, as a fresh volume is) to the service user and runs the command as that
/// user, with no way back to root.
#[tokio::test]
async fn the_entrypoint_hands_the_volume_over_and_drops_root() {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("NOTICE: not root; skipped the entrypoint test (CI runs as root)");
        return;
    }
    let data = std::env::temp_dir().join(format!("tollgate-volume-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/entrypoint.sh");
    let out = tokio::process::Command::new("sh")
        .args([
            script,
            "sh",
            "-c",
            "id -u; touch \"$TOLLGATE_DATA_DIR/db\" && echo wrote",
        ])
        .env("TOLLGATE_RUN_AS", "nobody")
        .env("TOLLGATE_DATA_DIR", &data)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&data);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_ne!(lines[0], "0", "the command runs as the service user");
    assert_eq!(lines[1], "wrote", "and can write to the handed-over volume");
}

/// The production recipe as documented (fly.toml's `[env]`, the secrets its comment sets, the
/// Dockerfile's `ENV` lines and the catalog it copies in) passes `tollgate check-config` in
/// production mode; without any one of the secrets it does not.
#[tokio::test]
async fn check_config_accepts_exactly_the_documented_production_settings() {
    let root = env!("CARGO_MANIFEST_DIR");
    let fly = std::fs::read_to_string(format!("{root}/fly.toml")).unwrap();
    let parsed: toml::Table = toml::from_str(&fly).expect("fly.toml is TOML");
    let mut settings: Vec<(String, String)> = parsed["env"]
        .as_table()
        .expect("fly.toml has [env]")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let secrets_line = fly
        .lines()
        .find_map(|l| {
            l.trim_start_matches(['#', ' '])
                .strip_prefix("fly secrets set ")
        })
        .expect("fly.toml's comment sets the secrets");
    let secrets: Vec<(String, String)> = secrets_line
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert!(secrets.len() >= 3, "{secrets:?}");
    settings.extend(secrets.iter().cloned());

    // The Dockerfile copies the catalog in and points TOLLGATE_PLANS at it.
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    let (source, dest) = dockerfile
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("COPY ")?;
            let (src, dst) = rest.split_once(' ')?;
            src.ends_with("plans.toml")
                .then(|| (src.to_owned(), dst.to_owned()))
        })
        .expect("the Dockerfile copies the catalog");
    for line in dockerfile.lines().filter_map(|l| l.strip_prefix("ENV ")) {
        let (k, v) = line.split_once('=').unwrap();
        let v = if k == "TOLLGATE_PLANS" {
            assert_eq!(v, dest, "TOLLGATE_PLANS is where the catalog is copied");
            format!("{root}/{source}")
        } else {
            v.to_owned()
        };
        settings.retain(|(name, _)| name != k);
        settings.push((k.to_owned(), v));
    }
    assert!(settings.iter().any(|(k, _)| k == "TOLLGATE_PLANS"));

    // The production checklist names every one of them.
    let checklist = std::fs::read_to_string(format!("{root}/docs/production.md")).unwrap();
    for (name, _) in &settings {
        if name != "TOLLGATE_BIND" && name != "TOLLGATE_LOG_FORMAT" {
            assert!(
                checklist.contains(name.as_str()),
                "docs/production.md names {name}"
            );
        }
    }

    let check = |settings: &[(String, String)]| {
        let mut cmd = crate::cli::tollgate();
        cmd.arg("check-config");
        for (k, v) in settings {
            cmd.env(k, v);
        }
        cmd.output()
    };
    let out = check(&settings).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("TOLLGATE_ENV=production"), "{stdout}");
    assert!(stdout.contains("/plans.toml"), "{stdout}");
    for (name, value) in &secrets {
        assert!(stdout.contains(&format!("{name}=")), "{name} in {stdout}");
        assert!(!stdout.contains(value.as_str()), "{name}'s value is masked");
    }

    for (missing, _) in &secrets {
        let fewer: Vec<_> = settings
            .iter()
            .filter(|(k, _)| k != missing)
            .cloned()
            .collect();
        let out = check(&fewer).await.unwrap();
        assert_eq!(out.status.code(), Some(2), "without {missing}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(missing.as_str()));
    }
}

/// The README's Fly Postgres step parses as fly.toml TOML and runs a command the binary has.
#[tokio::test]
async fn the_readmes_release_command_is_a_real_command() {
    let readme = include_str!("../../README.md");
    let open = readme
        .find("```toml\n")
        .expect("the README's fly.toml block")
        + "```toml\n".len();
    let block = &readme[open..open + readme[open..].find("```\n").unwrap()];
    let parsed: toml::Table = toml::from_str(block).expect("TOML");
    let command = parsed["deploy"]["release_command"].as_str().unwrap();
    let mut words = command.split_whitespace();
    assert_eq!(words.next(), Some("tollgate"));
    let db = crate::helpers::TestDb::new().await;
    let out = crate::cli::tollgate()
        .args(words)
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
