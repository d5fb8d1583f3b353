//! The app under test: `spawn_app` starts the real router on port 0 with a fresh database.
//!
//! The engine comes from the environment: with `TEST_DATABASE_URL=postgres://…` (an admin URL of
//! a PostgreSQL server) each app gets a new database created on that server and dropped
//! afterwards; without it, each app gets a temporary SQLite file. The same tests run on both.

use std::collections::HashMap;

use rand::RngCore as _;
use reqwest::{Client, Response, redirect::Policy};
use serde_json::Value;
use tokio::sync::oneshot;
use tollgate::{
    app::{App, AppState},
    config::Config,
    db::{Db, Engine},
};

/// A fresh database for one test: a SQLite file or a PostgreSQL database.
pub struct TestDb {
    /// The URL the app uses.
    pub url: String,
    admin_url: Option<String>,
    name: String,
}

impl TestDb {
    /// Creates the database (PostgreSQL) or picks a file name (SQLite).
    pub async fn new() -> Self {
        let mut bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut bytes);
        let name = format!("tollgate_test_{}", hex::encode(bytes));
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(admin) if admin.starts_with("postgres") => {
                let admin_db = Db::connect(&admin)
                    .await
                    .expect("TEST_DATABASE_URL reachable");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin_db.pool)
                    .await
                    .expect("create test database");
                admin_db.pool.close().await;
                let mut url = url::Url::parse(&admin).unwrap();
                url.set_path(&name);
                Self {
                    url: url.to_string(),
                    admin_url: Some(admin),
                    name,
                }
            }
            _ => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                Self {
                    url: format!("sqlite://{}", path.display()),
                    admin_url: None,
                    name,
                }
            }
        }
    }

    /// Which engine the tests run on.
    pub fn engine(&self) -> Engine {
        if self.admin_url.is_some() {
            Engine::Postgres
        } else {
            Engine::Sqlite
        }
    }

    /// Drops the PostgreSQL database now, with `FORCE` (connections are cut).
    pub async fn drop_now(&self) {
        if let Some(admin) = &self.admin_url {
            let admin_db = Db::connect(admin).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&admin_db.pool)
            .await
            .unwrap();
            admin_db.pool.close().await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.admin_url {
            Some(admin) => {
                // Drop runs inside the test's runtime: use a thread with its own.
                let (admin, name) = (admin.clone(), self.name.clone());
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        if let Ok(db) = Db::connect(&admin).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&db.pool)
                            .await;
                            db.pool.close().await;
                        }
                    });
                })
                .join();
            }
            None => {
                let path = self.url.trim_start_matches("sqlite://").to_owned();
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
        }
    }
}

/// A running tollgate and a client with a cookie store that does not follow redirects.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// A client with cookies.
    pub client: Client,
    /// The app's state (its database pool, settings).
    pub state: AppState,
    /// The database, kept alive for the app's lifetime.
    pub db: std::sync::Arc<TestDb>,
    _shutdown: oneshot::Sender<()>,
}

/// Builds a [`TestApp`] with extra settings.
#[derive(Default)]
pub struct TestAppBuilder {
    vars: HashMap<String, String>,
    db: Option<std::sync::Arc<TestDb>>,
}

impl TestAppBuilder {
    /// Sets one environment-style setting.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Uses an existing database (a second instance, or a restart).
    pub fn on_db(mut self, db: std::sync::Arc<TestDb>) -> Self {
        self.db = Some(db);
        self
    }

    /// Starts the app.
    pub async fn spawn(self) -> TestApp {
        let db = match self.db {
            Some(db) => db,
            None => std::sync::Arc::new(TestDb::new().await),
        };
        let mut vars = self.vars;
        vars.entry("TOLLGATE_BIND".into())
            .or_insert("127.0.0.1:0".into());
        vars.entry("TOLLGATE_RATE_LIMIT".into())
            .or_insert("off".into());
        vars.insert("DATABASE_URL".into(), db.url.clone());
        let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("test config");
        let rate_limited = vars.get("TOLLGATE_RATE_LIMIT").is_some_and(|v| v == "on");
        let app = App::build(config).await.expect("app builds");
        if rate_limited {
            // Limits count in fixed windows (a minute, 5 minutes, an hour) aligned to the clock:
            // start the app's clock just past an hour, so no window ends while a test fills it.
            let now = app.state.clock.now();
            app.state.clock.advance(3_600 - now.rem_euclid(3_600) + 1);
        }
        let address = format!("http://{}", app.local_addr());
        let state = app.state.clone();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        TestApp {
            address,
            client: client(),
            state,
            db,
            _shutdown: tx,
        }
    }
}

/// A new client with its own cookie jar.
pub fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The default app.
pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}

impl TestApp {
    /// A builder for custom settings.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// A second instance on this app's database and this app's Stripe (its simulator, so both
    /// resolve the catalog to the same prices) that accepts the same webhook signatures.
    pub async fn second_instance(&self) -> TestApp {
        self.second_instance_with(&[]).await
    }

    /// [`TestApp::second_instance`] with extra settings.
    pub async fn second_instance_with(&self, extra: &[(&str, &str)]) -> TestApp {
        let sim = self
            .state
            .sim
            .as_ref()
            .expect("the first instance runs the simulator");
        let builder = TestApp::builder()
            .on_db(self.db.clone())
            .with("STRIPE_API_BASE", sim.base_url())
            .with("STRIPE_SECRET_KEY", "sk_test_simulator")
            .with(
                "STRIPE_WEBHOOK_SECRET",
                self.state.stripe.webhook_secrets[0].expose(),
            );
        extra
            .iter()
            .fold(builder, |b, (name, value)| b.with(name, value))
            .spawn()
            .await
    }

    /// `address + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POSTs JSON with this app's client.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.post_json_with(&self.client, path, body).await
    }

    /// POSTs JSON with another client.
    pub async fn post_json_with(&self, client: &Client, path: &str, body: &Value) -> Response {
        client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    /// GET with this app's client.
    pub async fn get(&self, path: &str) -> Response {
        self.get_with(&self.client, path).await
    }

    /// GET with another client.
    pub async fn get_with(&self, client: &Client, path: &str) -> Response {
        client.get(self.url(path)).send().await.expect("request")
    }

    /// Number of rows in `table`.
    pub async fn count(&self, table: &str) -> i64 {
        let (n,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&self.state.db.pool)
                .await
                .unwrap();
        n
    }

    /// This app started again on its database with the catalog `text` (`TOLLGATE_PLANS`).
    pub async fn restarted_with_catalog(&self, text: &str) -> TestApp {
        let path =
            std::env::temp_dir().join(format!("tollgate-catalog-{}.toml", rand::random::<u64>()));
        std::fs::write(&path, text).unwrap();
        let restarted = TestApp::builder()
            .on_db(self.db.clone())
            .with("TOLLGATE_PLANS", path.to_str().unwrap())
            .spawn()
            .await;
        let _ = std::fs::remove_file(&path);
        restarted
    }
}
