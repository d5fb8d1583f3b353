//! The OpenAPI document's security requirements hold: every operation it says takes the session
//! only refuses an API key with 403 `session_required`, and every one it says takes a key lets a
//! key with every scope through its credential check.

use serde_json::{Value, json};

use super::key_of;
use crate::helpers::{client, spawn_app};

#[tokio::test]
async fn every_operation_takes_the_credentials_the_document_names() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    let key = key_of(&app, &c, &["read", "billing"]).await;
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let (mut session_only, mut with_key) = (0, 0);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(alternatives) = op["security"].as_array() else {
                continue;
            };
            // The admin area answers 404 to all but a signed-in administrator.
            if path.starts_with("/api/admin/") {
                continue;
            }
            if alternatives
                .iter()
                .any(|a| a.as_object().unwrap().is_empty())
            {
                // A credential is optional here (a link's confirmation, forward-auth).
                continue;
            }
            let schemes: Vec<&str> = alternatives
                .iter()
                .flat_map(|a| a.as_object().unwrap().keys().map(String::as_str))
                .collect();
            let url = app.url(&path.replace("{id}", "x").replace("{area}", "pro"));
            let request = match method.as_str() {
                "get" => client().get(&url),
                "post" => client().post(&url).json(&json!({})),
                "patch" => client().patch(&url).json(&json!({})),
                "delete" => client()
                    .delete(&url)
                    .header("content-type", "application/json"),
                other => panic!("{other} {path}"),
            };
            let r = request.bearer_auth(&key).send().await.unwrap();
            let status = r.status().as_u16();
            let answer: Value = r.json().await.unwrap_or(Value::Null);
            if schemes == ["session"] {
                session_only += 1;
                assert_eq!(
                    (status, answer["error"].as_str()),
                    (403, Some("session_required")),
                    "{method} {path} is documented as the session's only"
                );
            } else if schemes.contains(&"bearer") && path != "/api/auth/logout" {
                with_key += 1;
                assert!(
                    ![401, 403].contains(&status)
                        || !["unauthenticated", "session_required", "scope_required"]
                            .contains(&answer["error"].as_str().unwrap_or("")),
                    "{method} {path} is documented as taking a key: {status} {answer}"
                );
            }
        }
    }
    assert!(
        session_only > 20 && with_key > 8,
        "{session_only} {with_key}"
    );
}
