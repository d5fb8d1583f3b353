//! Role rules: a catalog rule `role = "admin"` admits at forward-auth only a user who holds the
//! role, with 403 `role_required` and no upgrade offered to anyone else; a bad role name in a
//! rule stops the catalog from loading; role names written by hand read back exactly as stored.

use tollgate::billing::catalog::Catalog;

use super::forward::forward;
use crate::helpers::{TestApp, client};

const CATALOG: &str = r#"
[[plans]]
id = "free"
name = "Free"
tier = 0

[[rules]]
path = "/admin/"
role = "admin"
"#;

#[tokio::test]
async fn a_role_rule_admits_only_holders_of_the_role() {
    let file = std::env::temp_dir().join(format!("tollgate-roles-{}.toml", std::process::id()));
    std::fs::write(&file, CATALOG).unwrap();
    let app = TestApp::builder()
        .with("TOLLGATE_PLANS", file.to_str().unwrap())
        .spawn()
        .await;
    let ann = app.user("ann@example.com").await;
    let id = app.me(&ann).await["id"].as_str().unwrap().to_owned();

    let r = forward(&app, &ann, "x-forwarded-uri", "/admin/users").await;
    assert_eq!(r.status(), 403);
    assert!(
        r.headers().get("x-tollgate-upgrade-url").is_none(),
        "no plan gives a role"
    );
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["error"], "role_required");
    assert_eq!(answer["required_role"], "admin");
    // Other paths only need a sign-in.
    assert_eq!(
        forward(&app, &ann, "x-forwarded-uri", "/reports")
            .await
            .status(),
        200
    );
    assert_eq!(
        forward(&app, &client(), "x-forwarded-uri", "/admin/")
            .await
            .status(),
        401
    );

    tollgate::auth::roles::grant(&app.state, &id, "admin", "operator")
        .await
        .unwrap();
    assert_eq!(
        forward(&app, &ann, "x-forwarded-uri", "/admin/users")
            .await
            .status(),
        200
    );
    assert_eq!(
        forward(&app, &ann, "x-forwarded-uri", "/ADMIN/users")
            .await
            .status(),
        200
    );
    tollgate::auth::roles::revoke(&app.state, &id, "admin", "operator")
        .await
        .unwrap();
    assert_eq!(
        forward(&app, &ann, "x-forwarded-uri", "/admin/users")
            .await
            .status(),
        403
    );

    // Names written by hand, past the grant's checks, read back exactly as stored: one with a
    // comma is one role (not `support` and `admin`).
    for role in ["support,admin", "beta"] {
        sqlx::query(
            "INSERT INTO user_roles (user_id, role, granted_at, granted_by) \
             VALUES ($1, $2, 0, 'sql')",
        )
        .bind(&id)
        .bind(role)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    }
    let written = std::time::Instant::now();
    while app.me(&ann).await["access"]["roles"] != serde_json::json!(["beta", "support,admin"]) {
        assert!(
            written.elapsed() < std::time::Duration::from_secs(2),
            "roles by hand unseen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        forward(&app, &ann, "x-forwarded-uri", "/admin/users")
            .await
            .status(),
        403
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_rule_with_a_bad_role_name_or_two_requirements_is_refused() {
    for (bad, says) in [
        ("role = \"Admin!\"", "is not a role name"),
        ("role = \"admin\"\nlogin = true", "needs exactly one of"),
    ] {
        let text = format!(
            "[[plans]]\nid = \"free\"\nname = \"Free\"\ntier = 0\n\n[[rules]]\npath = \"/x/\"\n{bad}\n"
        );
        let err = Catalog::parse(&text).expect_err("refused").to_string();
        assert!(err.contains(says), "{bad}: {err}");
    }
}
