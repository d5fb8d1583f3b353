//! The command line: `serve` (the default), `migrate`, `check-config`, `user create`,
//! `jwt rotate`, `stripe sync`, `stripe-sim`.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 a bad setting or command line.

use std::{io::Read as _, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{
    app::App,
    auth::{password, users},
    billing::catalog::Catalog,
    config::Config,
    db::Db,
    telemetry,
};

/// Accounts, Stripe billing and plan-tier gating for SaaS products.
#[derive(Parser, Debug)]
#[command(name = "tollgate", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply migrations and serve HTTP (the default).
    Serve,
    /// Apply migrations and exit.
    Migrate,
    /// Print the effective settings, secrets masked, and exit.
    CheckConfig,
    /// Print the OpenAPI 3.1 document of the JSON API (as served at /api/openapi.json).
    Openapi,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Access-token signing keys.
    Jwt {
        #[command(subcommand)]
        command: JwtCommand,
    },
    /// Stripe maintenance.
    Stripe {
        #[command(subcommand)]
        command: StripeCommand,
    },
    /// Run the Stripe simulator alone (development), for tollgate started with STRIPE_API_BASE.
    StripeSim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:12111")]
        bind: std::net::SocketAddr,
        /// Where to deliver signed events.
        #[arg(long, default_value = "http://127.0.0.1:3000/webhooks/stripe")]
        webhook_url: String,
    },
}

#[derive(Subcommand, Debug)]
enum StripeCommand {
    /// Compare the subscription-state table with Stripe and repair the differences.
    Sync {
        /// Only report the differences.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Remove the events older than TOLLGATE_AUDIT_RETENTION_DAYS (or --older-than-days).
    Prune {
        /// Keep this many days instead of the setting.
        #[arg(long)]
        older_than_days: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
enum JwtCommand {
    /// Retire the current signing key and make a new one. The retired key is still published
    /// and still verifies until the last token it signed has expired.
    Rotate,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Grant a role (`admin`, or a name of the product's own) to a user.
    Grant {
        /// The user's email address.
        #[arg(long)]
        email: String,
        /// The role.
        #[arg(long)]
        role: String,
    },
    /// Take a role back from a user.
    Revoke {
        /// The user's email address.
        #[arg(long)]
        email: String,
        /// The role.
        #[arg(long)]
        role: String,
    },
    /// Suspend a user: their sign-ins end, their API keys are refused and no sign-in passes
    /// until `unsuspend` (billing is untouched).
    Suspend {
        /// The user's email address.
        #[arg(long)]
        email: String,
        /// Why (shown to administrators).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a user's suspension.
    Unsuspend {
        /// The user's email address.
        #[arg(long)]
        email: String,
    },
    /// Create a user; the password is read from standard input.
    Create {
        /// The new user's email address.
        #[arg(long)]
        email: String,
    },
    /// Turn two-factor sign-in off for a user who lost their authenticator app and recovery
    /// codes (check who they are first); they are mailed a notice.
    #[command(name = "reset-2fa")]
    ResetSecondFactor {
        /// The user's email address.
        #[arg(long)]
        email: String,
    },
}

/// The state and the user with the address `email`, for the operator's commands.
async fn operator_target(
    config: Config,
    catalog: Catalog,
    email: &str,
) -> anyhow::Result<(crate::app::AppState, crate::auth::users::User)> {
    let state = crate::app::AppState::build_with(config, catalog, 0).await?;
    let normalised = crate::auth::users::Email::normalise_lenient(email);
    let user = crate::auth::users::find_by_email(&state.db, &normalised)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user has the address {email}"))?;
    Ok((state, user))
}

/// `tollgate user suspend` and `unsuspend`.
async fn change_suspension(
    config: Config,
    catalog: Catalog,
    email: &str,
    suspend: Option<Option<String>>,
) -> anyhow::Result<()> {
    let (state, user) = operator_target(config, catalog, email).await?;
    use crate::auth::suspension;
    let changed = match &suspend {
        Some(reason) => suspension::suspend(&state, &user.id, "operator", reason.as_deref()).await,
        None => suspension::unsuspend(&state, &user.id, "operator").await,
    }
    .map_err(|e| anyhow::anyhow!("{}", e.sentence()))?;
    let what = match (suspend.is_some(), changed) {
        (true, true) => "suspended",
        (true, false) => "was suspended already",
        (false, true) => "no longer suspended",
        (false, false) => "was not suspended",
    };
    println!("{email}: {what}");
    Ok(())
}

/// `tollgate user grant` and `revoke`.
async fn change_role(
    config: Config,
    catalog: Catalog,
    email: &str,
    role: &str,
    grant: bool,
) -> anyhow::Result<()> {
    let (state, user) = operator_target(config, catalog, email).await?;
    let changed = if grant {
        crate::auth::roles::grant(&state, &user.id, role, "operator").await
    } else {
        crate::auth::roles::revoke(&state, &user.id, role, "operator").await
    }
    .map_err(|e| anyhow::anyhow!("{}", e.sentence()))?;
    let what = match (grant, changed) {
        (true, true) => "granted",
        (true, false) => "already had",
        (false, true) => "revoked",
        (false, false) => "did not have",
    };
    println!("{email}: {what} role {role}");
    Ok(())
}

async fn prune_audit(config: Config, days: Option<i64>) -> anyhow::Result<()> {
    let days = days.unwrap_or(config.audit_retention_days);
    anyhow::ensure!(days >= 1, "--older-than-days must be at least 1");
    let db = Db::connect(config.database_url.expose()).await?;
    db.migrate().await?;
    let before = crate::clock::Clock::new().now() - days * 86_400;
    let removed = crate::audit::prune(&db, before).await?;
    println!("removed {removed} audit events older than {days} days");
    Ok(())
}

async fn rotate_jwt_key(config: Config) -> anyhow::Result<()> {
    if config.jwt_signing_key.is_some() {
        anyhow::bail!(
            "TOLLGATE_JWT_SIGNING_KEY gives the signing key: rotate by changing that setting"
        );
    }
    let db = Db::connect(config.database_url.expose()).await?;
    db.migrate().await?;
    let kid = crate::auth::signing::Keys::rotate(&db).await?;
    println!(
        "new signing key {kid}: every instance publishes it within 30 s and it signs in {} s \
         (when every cached key set holds it); the old key signs until then and stays published \
         for {} s",
        crate::auth::signing::PUBLISH_AHEAD_SECS,
        crate::auth::signing::PUBLISH_AHEAD_SECS + config.access_token_secs as i64 + 60
    );
    Ok(())
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is reported like any bad setting.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("tollgate: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: bad setting {e}");
            return ExitCode::from(2);
        }
    };
    // The catalog is a setting too: read once, here, and a bad one stops every command.
    let catalog = match crate::app::load_catalog(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tollgate: bad setting {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config, catalog).await,
            Command::Migrate => {
                let db = Db::connect(config.database_url.expose()).await?;
                db.migrate().await?;
                println!("migrations applied");
                Ok(())
            }
            Command::CheckConfig => {
                print!("{}", config.describe());
                Ok(())
            }
            Command::Openapi => {
                println!("{}", crate::account::openapi::pretty());
                Ok(())
            }
            Command::User {
                command: UserCommand::Create { email },
            } => create_user(config, &email).await,
            Command::User {
                command: UserCommand::ResetSecondFactor { email },
            } => reset_second_factor(config, catalog, &email).await,
            Command::User {
                command: UserCommand::Grant { email, role },
            } => change_role(config, catalog, &email, &role, true).await,
            Command::User {
                command: UserCommand::Revoke { email, role },
            } => change_role(config, catalog, &email, &role, false).await,
            Command::User {
                command: UserCommand::Suspend { email, reason },
            } => change_suspension(config, catalog, &email, Some(reason)).await,
            Command::User {
                command: UserCommand::Unsuspend { email },
            } => change_suspension(config, catalog, &email, None).await,
            Command::Audit {
                command: AuditCommand::Prune { older_than_days },
            } => prune_audit(config, older_than_days).await,
            Command::Jwt {
                command: JwtCommand::Rotate,
            } => rotate_jwt_key(config).await,
            Command::Stripe {
                command: StripeCommand::Sync { dry_run },
            } => stripe_sync(config, catalog, dry_run).await,
            Command::StripeSim { bind, webhook_url } => {
                stripe_sim(config, catalog, bind, webhook_url).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            // A catalog that disagrees with Stripe is a setting error, like a bad variable (and
            // like one that only start-up can judge: `TOLLGATE_WEBHOOK_EVENTS`).
            if e.downcast_ref::<crate::billing::stripe::CatalogMismatch>()
                .is_some()
                || e.downcast_ref::<crate::config::ConfigError>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn serve(config: Config, catalog: Catalog) -> anyhow::Result<()> {
    let app = App::build_with(config, catalog).await?;
    println!("tollgate listening on {}", app.state.base_url);
    tracing::info!(addr = %app.local_addr(), "listening");
    app.run_until(shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn stripe_sync(config: Config, catalog: Catalog, dry_run: bool) -> anyhow::Result<()> {
    if config.stripe_secret_key.is_none() {
        anyhow::bail!(
            "stripe sync needs STRIPE_SECRET_KEY (the simulator keeps no state between runs)"
        );
    }
    let purpose = crate::app::StartUp::Reconciling;
    let state = crate::app::AppState::build_as(config, catalog, 0, purpose).await?;
    let report = crate::billing::sync::reconcile(&state, !dry_run)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    print!("{report}");
    if dry_run {
        println!("(dry run: nothing was changed)");
    }
    Ok(())
}

#[cfg(feature = "sim")]
async fn stripe_sim(
    config: Config,
    mut catalog: Catalog,
    bind: std::net::SocketAddr,
    webhook_url: String,
) -> anyhow::Result<()> {
    if config.mode != crate::config::Mode::Development || !bind.ip().is_loopback() {
        anyhow::bail!("the Stripe simulator only runs in development, on a loopback address");
    }
    let clock = crate::clock::Clock::new();
    let started =
        crate::simulated::launch(&config, &clock, &mut catalog, bind, &webhook_url).await?;
    let (sim, secret) = (started.sim, started.secret);
    println!("Stripe simulator on {}", sim.base_url());
    println!("Start tollgate with:");
    println!(
        "  STRIPE_API_BASE={} STRIPE_SECRET_KEY=sk_test_sim STRIPE_WEBHOOK_SECRET={secret} cargo run",
        sim.base_url()
    );
    println!("Events go to {webhook_url}");
    shutdown_signal().await;
    Ok(())
}

#[cfg(not(feature = "sim"))]
async fn stripe_sim(
    _: Config,
    _: Catalog,
    _: std::net::SocketAddr,
    _: String,
) -> anyhow::Result<()> {
    anyhow::bail!(crate::simulated::NO_SIMULATOR)
}

async fn create_user(config: Config, email: &str) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the password from standard input")?;
    // One trailing newline is how `echo` and terminals end input; it is not part of the password.
    let raw = input.strip_suffix('\n').unwrap_or(&input);
    let raw = raw.strip_suffix('\r').unwrap_or(raw);
    let email = users::Email::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?;
    let normalised = password::check_new_password(raw, config.password_min_length)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = Db::connect(config.database_url.expose()).await?;
    db.migrate().await?;
    let hash = password::PasswordHasherPool::new(config.argon2)
        .hash(normalised)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let user = users::insert_user(&db, &email, &hash)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("created user {} ({})", user.id, email.display);
    Ok(())
}

async fn reset_second_factor(config: Config, catalog: Catalog, email: &str) -> anyhow::Result<()> {
    let state = crate::app::AppState::build_with(config, catalog, 0).await?;
    let normalised = users::Email::normalise_lenient(email);
    let user = users::find_by_email(&state.db, &normalised)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("no user has the address {email}"))?;
    let was_on = crate::auth::second_factor::reset_by_operator(&state, &user)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if was_on {
        println!(
            "two-factor sign-in is off for {} ({email}); they were mailed a notice",
            user.id
        );
    } else {
        println!(
            "{} ({email}) had no two-factor sign-in: nothing changed",
            user.id
        );
    }
    Ok(())
}
