//! A small axum app that embeds tollgate and gates two of its own routes by plan.
//!
//! ```sh
//! cargo run --example gated_app      # on http://127.0.0.1:3000, SQLite + the Stripe simulator
//! ```
//!
//! - `GET /reports` needs the `pro` plan (or higher): JSON 401 / 403 `plan_required` otherwise.
//! - `GET /audit` needs the `audit` feature (the `team` plan): JSON 403 `feature_required`.
//! - Everything tollgate offers (sign-up, log-in, pricing, Checkout, `/api/me`, …) is there too.

use axum::{Extension, Json, Router, routing::get};
use serde_json::{Value, json};
use tollgate::{
    app::{AppState, build_router_with},
    config::Config,
    gate::{CurrentUser, PlanName, RequirePlan, require_feature},
};

/// The `pro` plan, as a type.
struct Pro;
impl PlanName for Pro {
    const PLAN: &'static str = "pro";
}

async fn reports(RequirePlan(member, _): RequirePlan<Pro>) -> Json<Value> {
    Json(json!({"reports": ["revenue", "churn"], "for": member.user.email}))
}

async fn audit(Extension(member): Extension<CurrentUser>) -> Json<Value> {
    Json(json!({"audit_log": [], "plan": member.access.plan}))
}

/// The app's own routes; tollgate's gates protect them.
fn app_routes(state: &AppState) -> Router<AppState> {
    Router::new().route("/reports", get(reports)).route(
        "/audit",
        get(audit).route_layer(require_feature(state, "audit")),
    )
}

/// Builds the whole app: tollgate plus the routes above.
async fn build(config: Config) -> anyhow::Result<(tokio::net::TcpListener, Router)> {
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let state = AppState::build(config, listener.local_addr()?.port()).await?;
    let routes = app_routes(&state);
    Ok((listener, build_router_with(state, routes)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let (listener, router) = build(config).await?;
    println!("gated example on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn spawn() -> (String, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        let db = format!("sqlite://{}", dir.path("example.db"));
        let vars = [
            ("TOLLGATE_BIND", "127.0.0.1:0"),
            ("TOLLGATE_RATE_LIMIT", "off"),
            ("DATABASE_URL", db.as_str()),
        ];
        let config = Config::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let (listener, router) = build(config).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        (url, dir)
    }

    /// A temporary directory removed on drop (no extra crate for one test).
    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "tollgate-example-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                ));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
            pub fn path(&self, name: &str) -> String {
                self.0.join(name).display().to_string()
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[tokio::test]
    async fn the_example_gates_its_own_routes_by_plan_and_feature() {
        let (url, _dir) = spawn().await;
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();

        let anonymous = http.get(format!("{url}/reports")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);

        let register = http
            .post(format!("{url}/api/auth/register"))
            .header("content-type", "application/json")
            .body(r#"{"email":"dev@example.com","password":"correct horse battery"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(register.status(), 201);

        let free = http.get(format!("{url}/reports")).send().await.unwrap();
        assert_eq!(free.status(), 403);
        let body: Value = free.json().await.unwrap();
        assert_eq!(body["error"], "plan_required");
        assert_eq!(body["required_plan"], "pro");
        assert_eq!(body["current_plan"], "free");
        assert!(
            body["upgrade_url"]
                .as_str()
                .unwrap()
                .ends_with("/pricing?required=pro")
        );

        let audit = http.get(format!("{url}/audit")).send().await.unwrap();
        assert_eq!(audit.status(), 403);
        let body: Value = audit.json().await.unwrap();
        assert_eq!(body["error"], "feature_required");
        assert_eq!(body["required_feature"], "audit");
    }
}
