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
