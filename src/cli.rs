//! The command line: `serve` (the default), `migrate`, `check-config`, `user create`.
//!
//! Exit codes: 0 success, 1 a runtime failure, 2 a bad setting or command line.

use std::{io::Read as _, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::{
    app::App,
    auth::{password, users},
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
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        /// The new user's email address.
        #[arg(long)]
        email: String,
    },
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
    telemetry::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
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
            Command::User {
                command: UserCommand::Create { email },
            } => create_user(config, &email).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
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
