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
    assert!(
        dockerfile.contains("USER "),
        "the runtime image runs as non-root"
    );
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
