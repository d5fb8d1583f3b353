//! A small axum app that embeds tollgate and gates two of its own routes by plan.
//!
//! ```sh
//! cargo run --example gated_app      # on http://127.0.0.1:3001, SQLite + the Stripe simulator
//! ```
//!
//! It reads tollgate's settings, with two defaults of its own so it runs beside `cargo run`:
//! `TOLLGATE_BIND=127.0.0.1:3001` and `DATABASE_URL=sqlite://gated_app.db` (set either to change
//! it).
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

/// The example's defaults where the environment sets nothing: its own port and database file.
fn example_default(name: &str) -> Option<String> {
    match name {
        "TOLLGATE_BIND" => Some("127.0.0.1:3001".into()),
        "DATABASE_URL" => Some("sqlite://gated_app.db".into()),
        _ => None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config =
        Config::from_lookup(|name| std::env::var(name).ok().or_else(|| example_default(name)))?;
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

    /// With nothing set, the example and `cargo run` use different ports and database files.
    #[test]
    fn by_default_it_runs_beside_tollgate() {
        let tollgate = Config::from_lookup(|_| None).unwrap();
        let example = Config::from_lookup(example_default).unwrap();
        assert_eq!(example.bind.to_string(), "127.0.0.1:3001");
        assert_ne!(example.bind.port(), tollgate.bind.port());
        assert_ne!(
            example.database_url.expose(),
            tollgate.database_url.expose()
        );
        // A setting in the environment still wins (the lookup in `main` asks it first).
        let set = Config::from_lookup(|name| {
            (name == "TOLLGATE_BIND")
                .then(|| "127.0.0.1:4000".to_owned())
                .or_else(|| example_default(name))
        })
        .unwrap();
        assert_eq!(set.bind.port(), 4000);
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
