//! Storage: one pool for SQLite or PostgreSQL, chosen at run time from `DATABASE_URL`.
//!
//! tollgate keeps **one set of portable SQL** for both engines and talks to them through sqlx's
//! `Any` driver. The rules that keep SQL portable (see the README's architecture section):
//! columns are `TEXT` or `BIGINT` only (booleans are `0`/`1`, times are Unix seconds), ids are
//! opaque random strings, parameters are written `$1, $2, …` (SQLite accepts them too), upserts use
//! `ON CONFLICT … DO UPDATE`, and `RETURNING` is allowed (SQLite ≥ 3.35).

use std::{str::FromStr, time::Duration};

use anyhow::Context as _;
use sqlx::{
    AnyPool, Connection as _, Executor as _, SqlSafeStr as _,
    any::AnyPoolOptions,
    migrate::{Migration, MigrationType, Migrator},
    sqlite::SqliteConnectOptions,
};

/// Which engine a [`Db`] talks to; a few statements differ (pragmas, locking hints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The embedded default.
    Sqlite,
    /// The production and multi-instance engine.
    Postgres,
}

/// The shared pool and its engine.
#[derive(Clone, Debug)]
pub struct Db {
    /// The pool every query goes through.
    pub pool: AnyPool,
    /// Where write transactions run: on SQLite a pool of one connection, so writers queue in
    /// process (first come, first served) instead of sleeping in SQLite's busy handler; on
    /// PostgreSQL the same pool as `pool`.
    writer: AnyPool,
    /// The engine behind it.
    pub engine: Engine,
}

/// A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_millis(500);

/// The embedded migrations, in order. One change each; never edited once released.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "users", include_str!("../migrations/0001_users.sql")),
    (
        2,
        "sessions",
        include_str!("../migrations/0002_sessions.sql"),
    ),
    (
        3,
        "rate limits",
        include_str!("../migrations/0003_rate_limits.sql"),
    ),
    (
        4,
        "app secrets",
        include_str!("../migrations/0004_app_secrets.sql"),
    ),
    (5, "billing", include_str!("../migrations/0005_billing.sql")),
    (6, "email", include_str!("../migrations/0006_email.sql")),
    (
        7,
        "session epoch",
        include_str!("../migrations/0007_session_epoch.sql"),
    ),
    (
        8,
        "stripe clock",
        include_str!("../migrations/0008_stripe_clock.sql"),
    ),
    (
        9,
        "subscription product",
        include_str!("../migrations/0009_subscription_product.sql"),
    ),
    (
        10,
        "customer email sync",
        include_str!("../migrations/0010_customer_email_sync.sql"),
    ),
    (
        11,
        "subscription fetched stamp",
        include_str!("../migrations/0011_subscription_fetched_stamp.sql"),
    ),
    (
        12,
        "api keys",
        include_str!("../migrations/0012_api_keys.sql"),
    ),
    (
        13,
        "access and refresh tokens",
        include_str!("../migrations/0013_tokens.sql"),
    ),
    (
        14,
        "second factors",
        include_str!("../migrations/0014_second_factor.sql"),
    ),
    (
        15,
        "devices",
        include_str!("../migrations/0015_devices.sql"),
    ),
    (
        16,
        "passkeys",
        include_str!("../migrations/0016_passkeys.sql"),
    ),
    (
        17,
        "social sign-in",
        include_str!("../migrations/0017_social.sql"),
    ),
    (
        18,
        "billing changes",
        include_str!("../migrations/0018_billing_changes.sql"),
    ),
    (
        19,
        "webhook follow-ups",
        include_str!("../migrations/0019_webhook_follow_ups.sql"),
    ),
    (
        20,
        "audit trail",
        include_str!("../migrations/0020_audit.sql"),
    ),
    (21, "roles", include_str!("../migrations/0021_roles.sql")),
    (
        22,
        "suspension",
        include_str!("../migrations/0022_suspension.sql"),
    ),
    (
        23,
        "outbound_webhooks",
        include_str!("../migrations/0023_outbound_webhooks.sql"),
    ),
    (
        24,
        "access_watch",
        include_str!("../migrations/0024_access_watch.sql"),
    ),
    (
        25,
        "cache_forgets",
        include_str!("../migrations/0025_cache_forgets.sql"),
    ),
    (
        26,
        "recheck_indexes",
        include_str!("../migrations/0026_recheck_indexes.sql"),
    ),
    (
        27,
        "cache_triggers",
        include_str!("../migrations/0027_cache_triggers.sql"),
    ),
    (
        28,
        "cache_forgets_emptied",
        include_str!("../migrations/0028_cache_forgets_emptied.sql"),
    ),
    (
        29,
        "subscription_changes",
        include_str!("../migrations/0029_subscription_changes.sql"),
    ),
    (
        30,
        "follow_up_taken",
        include_str!("../migrations/0030_follow_up_taken.sql"),
    ),
];

/// The part of a migration that `engine` runs: all of it, or, for one written in two dialects
/// (sections headed `-- @sqlite` and `-- @postgres`), what comes before the first heading and the
/// engine's own section.
fn dialect(sql: &str, engine: Engine) -> String {
    let Some((common, sections)) = sql.split_once("-- @") else {
        return sql.to_owned();
    };
    let wanted = match engine {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    };
    let own = format!("-- @{sections}")
        .split("-- @")
        .filter_map(|section| section.strip_prefix(wanted))
        .map(str::to_owned)
        .collect::<String>();
    format!("{common}{own}")
}

fn migrator(engine: Engine) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    (*name).into(),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(dialect(sql, engine)).into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

impl Db {
    /// Opens the pool. A SQLite file is created if missing, in WAL mode with foreign keys on and a
    /// busy timeout, so concurrent writers wait instead of failing.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            Engine::Postgres
        };
        let url = match engine {
            Engine::Sqlite => sqlite_url(url)?,
            Engine::Postgres => url.to_owned(),
        };
        let options = AnyPoolOptions::new()
            .max_connections(match engine {
                Engine::Sqlite => 8,
                Engine::Postgres => 16,
            })
            .min_connections(0)
            // Fail fast when the database is gone, so /readyz and requests answer 503 promptly.
            .acquire_timeout(Duration::from_secs(3))
            // Not pinged before every use: on SQLite a ping is a round trip to the connection's
            // worker thread that finds nothing (a tenth of a cache miss), on PostgreSQL a round
            // trip to the server (a quarter of a miss's CPU; BENCHMARKS.md). A PostgreSQL
            // connection idle for longer than PING_AFTER_IDLE is pinged first (it may have been
            // cut meanwhile), as connection pools commonly do; one in steady use is not.
            .test_before_acquire(false);
        let options = if engine == Engine::Postgres {
            options.before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
        } else {
            options
        };
        let options = if engine == Engine::Sqlite {
            options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                    )
                    .await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options
            .clone()
            .connect(&url)
            .await
            .context("cannot open the database")?;
        let writer = match engine {
            Engine::Sqlite => options
                .max_connections(1)
                .connect(&url)
                .await
                .context("cannot open the database")?,
            Engine::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            writer,
            engine,
        })
    }

    /// Applies every embedded migration that has not run yet.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        migrator(self.engine)
            .run(&self.pool)
            .await
            .context("cannot apply migrations")
    }

    /// Begins a write transaction. On SQLite it runs on the single writer connection and is
    /// `BEGIN IMMEDIATE`: the write lock is taken at the start (a write outside a transaction
    /// may hold it; then this waits up to the busy timeout), because a deferred transaction that reads
    /// first fails at once with "database is locked" when it later tries to write while another
    /// connection writes. Every tollgate transaction writes.
    pub async fn begin(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.engine {
            Engine::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Engine::Postgres => self.pool.begin().await,
        }
    }

    /// Closes every connection (shutdown, or a test that takes the database away).
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// The value stored under `name` in `app_secrets` (a shared key, or a marker that a one-off
    /// job ran), storing `value` first when there is none. Every instance on one database reads
    /// the same value; the first writer wins a race.
    pub async fn shared_value(&self, name: &str, value: &str) -> sqlx::Result<String> {
        sqlx::query(
            "INSERT INTO app_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        let (value,): (String,) = sqlx::query_as("SELECT value FROM app_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }

    /// True when `name` is stored in `app_secrets`.
    pub async fn has_value(&self, name: &str) -> sqlx::Result<bool> {
        let found: Option<(String,)> =
            sqlx::query_as("SELECT value FROM app_secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// Normalises a `sqlite:` URL so the file is created on first run.
fn sqlite_url(url: &str) -> anyhow::Result<String> {
    // Validate with the SQLite driver's own parser before handing the string to `Any`.
    SqliteConnectOptions::from_str(url).context("DATABASE_URL is not a valid sqlite URL")?;
    if url.contains("mode=") || url.contains(":memory:") {
        return Ok(url.to_owned());
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}mode=rwc"))
}

/// True for failures that mean "the database cannot be reached" rather than a bug.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // PostgreSQL: the database was dropped, the server is shutting down, or connections
            // were terminated (classes 08, 57P, 3D000).
            let code = db.code().unwrap_or_default();
            code.starts_with("08") || code.starts_with("57P") || code == "3D000"
        }
        _ => false,
    }
}

/// True when `err` is a unique-constraint violation (SQLite or PostgreSQL).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Seconds since the Unix epoch: the one time format in the database (see [`crate::clock`]).
pub fn now() -> i64 {
    crate::clock::wall_now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let mut files: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
        files.sort();
        assert_eq!(
            files.len(),
            MIGRATIONS.len(),
            "a migration file is missing from MIGRATIONS"
        );
        for (file, (version, _, _)) in files.iter().zip(MIGRATIONS) {
            assert!(
                file.starts_with(&format!("{version:04}_")),
                "{file} out of order"
            );
        }
    }

    #[test]
    fn a_migration_in_two_dialects_runs_its_engine_part() {
        let sql = "-- both\n-- @sqlite\nA;\n-- @postgres\nB;\n";
        assert_eq!(dialect(sql, Engine::Sqlite), "-- both\n\nA;\n");
        assert_eq!(dialect(sql, Engine::Postgres), "-- both\n\nB;\n");
        assert_eq!(dialect("C;", Engine::Postgres), "C;");
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        assert_eq!(
            sqlite_url("sqlite://tollgate.db").unwrap(),
            "sqlite://tollgate.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite://x.db?mode=ro").unwrap(),
            "sqlite://x.db?mode=ro"
        );
    }
}
