//! Typed settings, read once from the environment (and `.env`).
//!
//! Every setting is named once, in the table of `settings/table.rs`: its variable, default, description,
//! parser and how `check-config` shows it. The README's Settings table is generated from it (a
//! test keeps them equal). A bad value is a [`ConfigError`] naming the setting; `main` turns it
//! into exit code 2. Secrets are wrapped in [`Secret`] so that `Debug` and `check-config` never
//! print them.

mod settings;

pub use settings::social::{Social, pair as client_pair};
pub use settings::tokens::{ACCESS_TOKEN_SECS, issuer, parse_signing_key, signing_key_public};
pub use settings::webhooks::{
    Webhooks, secret_key as webhook_secret_key, valid_pattern as valid_event_pattern,
};

use std::{fmt, net::SocketAddr};

use ipnet::IpNet;
use url::Url;

use settings::{Raw, SETTINGS};

/// A value that must never reach a log line or a terminal.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// Development allows the simulator and the mailbox; production requires real services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The default: loopback only, built-in Stripe simulator and development mailbox.
    Development,
    /// Real Stripe keys, real SMTP and an https base URL are required.
    Production,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

/// A setting that could not be used: which one, and why.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub setting: String,
    /// What is wrong with it, for people.
    pub message: String,
}

impl ConfigError {
    /// A setting error: `setting` is the variable's name.
    pub fn new(setting: &str, message: impl Into<String>) -> Self {
        Self {
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
}

/// Every setting tollgate reads. Field docs name the environment variable.
#[derive(Clone, Debug)]
pub struct Config {
    /// `TOLLGATE_ENV`.
    pub mode: Mode,
    /// `TOLLGATE_BIND`: the address to listen on.
    pub bind: SocketAddr,
    /// `TOLLGATE_BASE_URL`; `None` means `http://127.0.0.1:<bound port>`.
    pub base_url: Option<Url>,
    /// `TOLLGATE_ALLOWED_ORIGINS`: extra origins for the Origin check, as `scheme://host[:port]`.
    pub allowed_origins: Vec<String>,
    /// `DATABASE_URL`.
    pub database_url: Secret,
    /// `TOLLGATE_PLANS`: catalog file path (read and validated by `billing::catalog`; a bad file
    /// is a bad setting, exit code 2).
    pub plans_path: Option<String>,
    /// `STRIPE_SECRET_KEY`; `None` in development means the simulator.
    pub stripe_secret_key: Option<Secret>,
    /// `STRIPE_WEBHOOK_SECRET`: every configured secret is accepted (rotation).
    pub stripe_webhook_secrets: Vec<Secret>,
    /// `STRIPE_WEBHOOK_TOLERANCE_SECS`.
    pub stripe_webhook_tolerance_secs: u64,
    /// `STRIPE_API_BASE`.
    pub stripe_api_base: Option<Url>,
    /// `TOLLGATE_STRIPE_TEST_CLOCK`: a test clock (`clock_…`) every new Stripe customer is
    /// attached to, so a test-mode trial can move time (Stripe attaches clocks only at creation).
    pub stripe_test_clock: Option<String>,
    /// `SMTP_URL`; `None` in development means the mailbox.
    pub smtp_url: Option<Secret>,
    /// `TOLLGATE_MAIL_FROM`.
    pub mail_from: String,
    /// `TOLLGATE_PRODUCT_NAME`.
    pub product_name: String,
    /// `TOLLGATE_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `TOLLGATE_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `TOLLGATE_CLIENT_IP_HEADER`: a platform header carrying the client address.
    pub client_ip_header: Option<String>,
    /// `TOLLGATE_LOCATION_HEADER`: a platform header carrying an approximate place of the client.
    pub location_header: Option<String>,
    /// `TOLLGATE_COOKIE_DOMAIN`.
    pub cookie_domain: Option<String>,
    /// `TOLLGATE_FORWARD_URI_HEADER` (lower-case): the one header forward-auth reads the URI from.
    pub forward_uri_header: String,
    /// `TOLLGATE_FORWARD_PATH_CASE`: `insensitive` (default) matches rules ignoring ASCII case.
    pub forward_path_ignore_case: bool,
    /// `TOLLGATE_MAX_CONNECTIONS`: open client connections at most (default: the open-file
    /// limit less 128 for the database and logs, at most 10,000).
    pub max_connections: usize,
    /// `TOLLGATE_CACHE_ENTRIES`: entries of each kind the in-process cache holds at most.
    pub cache_entries: usize,
    /// `TOLLGATE_HEADER_TIMEOUT_SECS`: how long a client may take to send a request head.
    pub header_timeout_secs: u64,
    /// `TOLLGATE_RATE_LIMIT`.
    pub rate_limit: bool,
    /// `TOLLGATE_PASSWORD_MIN_LENGTH`, in characters.
    pub password_min_length: usize,
    /// `TOLLGATE_ARGON2_M_KIB` / `_T` / `_P`.
    pub argon2: Argon2Params,
    /// `TOLLGATE_SESSION_IDLE_SECS`.
    pub session_idle_secs: u64,
    /// `TOLLGATE_SESSION_ABSOLUTE_SECS`.
    pub session_absolute_secs: u64,
    /// `TOLLGATE_TOKEN_TTL_VERIFY_SECS`.
    pub token_ttl_verify_secs: u64,
    /// `TOLLGATE_TOKEN_TTL_RESET_SECS`.
    pub token_ttl_reset_secs: u64,
    /// `TOLLGATE_TOKEN_TTL_MAGIC_SECS`.
    pub token_ttl_magic_secs: u64,
    /// `TOLLGATE_REGISTRATION_PRIVACY`.
    pub registration_privacy: bool,
    /// `TOLLGATE_REQUIRE_VERIFIED_FOR_CHECKOUT`.
    pub require_verified_for_checkout: bool,
    /// `TOLLGATE_PAST_DUE_GRACE_SECS`.
    pub past_due_grace_secs: u64,
    /// `TOLLGATE_DOWNGRADES_AT`: true (`period_end`) when in-app downgrades wait for the period
    /// end.
    pub downgrades_at_period_end: bool,
    /// `TOLLGATE_AUDIT_RETENTION_DAYS`: how long audit events are kept.
    pub audit_retention_days: i64,
    /// `TOLLGATE_STRIPE_RETRY_SECS`: the first delay before queued Stripe work (a customer's
    /// email change) is tried again; it doubles with each failure, up to an hour.
    pub stripe_retry_secs: u64,
    /// `TOLLGATE_ACCESS_TOKEN_SECS`: how long an access token (JWT) lives.
    pub access_token_secs: u64,
    /// `TOLLGATE_JWT_AUDIENCE`: the `aud` of access tokens; `None` means the issuer.
    pub jwt_audience: Option<String>,
    /// `TOLLGATE_JWT_SIGNING_KEY`: a PKCS#8 Ed25519 key; `None` means one kept in the database.
    pub jwt_signing_key: Option<Secret>,
    /// Social sign-in: the providers' clients.
    pub social: settings::social::Social,
    /// Outbound webhooks: the endpoint the environment sets, and the retries.
    pub webhooks: settings::webhooks::Webhooks,
}

impl Config {
    /// Reads the process environment (after `.env`, which `main` loads).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can pass a map instead of the environment.
    /// Every setting of the table (`settings::SETTINGS`) is read in order, then the checks that
    /// span settings run.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::unread();
        for setting in SETTINGS.iter() {
            (setting.read)(&Raw::read(setting, &lookup), &mut config)?;
        }
        config.check_mode()?;
        config.check_cookie_domain()?;
        settings::social::check(&config)?;
        Ok(config)
    }

    /// Placeholders, each overwritten by its setting's `read` in [`Config::from_lookup`].
    fn unread() -> Self {
        Self {
            mode: Mode::Development,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_url: None,
            allowed_origins: Vec::new(),
            database_url: Secret::new(""),
            plans_path: None,
            stripe_secret_key: None,
            stripe_webhook_secrets: Vec::new(),
            stripe_webhook_tolerance_secs: 0,
            stripe_api_base: None,
            stripe_test_clock: None,
            smtp_url: None,
            mail_from: String::new(),
            product_name: String::new(),
            log_format: LogFormat::Text,
            trusted_proxies: Vec::new(),
            client_ip_header: None,
            location_header: None,
            cookie_domain: None,
            forward_uri_header: String::new(),
            forward_path_ignore_case: true,
            max_connections: 0,
            cache_entries: 10_000,
            header_timeout_secs: 0,
            rate_limit: true,
            password_min_length: 0,
            argon2: Argon2Params {
                m_kib: 0,
                t: 0,
                p: 0,
            },
            session_idle_secs: 0,
            session_absolute_secs: 0,
            token_ttl_verify_secs: 0,
            token_ttl_reset_secs: 0,
            token_ttl_magic_secs: 0,
            registration_privacy: false,
            require_verified_for_checkout: false,
            past_due_grace_secs: 0,
            downgrades_at_period_end: true,
            audit_retention_days: 365,
            stripe_retry_secs: 0,
            access_token_secs: 0,
            jwt_audience: None,
            jwt_signing_key: None,
            social: Default::default(),
            webhooks: Default::default(),
        }
    }

    /// `TOLLGATE_COOKIE_DOMAIN` widens where cookies go and where `next` may lead: it must be a
    /// host name of at least two labels (never a bare `com`), and hold the base URL's host.
    fn check_cookie_domain(&self) -> Result<(), ConfigError> {
        let Some(raw) = self.cookie_domain.as_deref() else {
            return Ok(());
        };
        let domain = raw.strip_prefix('.').unwrap_or(raw);
        let labels: Vec<&str> = domain.split('.').collect();
        let well_formed = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !well_formed {
            return Err(ConfigError::new(
                "TOLLGATE_COOKIE_DOMAIN",
                "must be a lower-case host name of at least two labels, like example.com",
            ));
        }
        let host = self.base_url.as_ref().and_then(|u| u.host_str());
        if let Some(host) = host
            && host != domain
            && !host.ends_with(&format!(".{domain}"))
        {
            return Err(ConfigError::new(
                "TOLLGATE_COOKIE_DOMAIN",
                "must hold TOLLGATE_BASE_URL's host (the base URL's host or a parent domain of it)",
            ));
        }
        Ok(())
    }

    /// The refusals of the README's "Modes": production needs real services, development stays
    /// on loopback.
    fn check_mode(&self) -> Result<(), ConfigError> {
        match self.mode {
            Mode::Production => {
                let mut missing = Vec::new();
                if self.stripe_secret_key.is_none() {
                    missing.push("STRIPE_SECRET_KEY");
                }
                if self.stripe_webhook_secrets.is_empty() {
                    missing.push("STRIPE_WEBHOOK_SECRET");
                }
                if self.smtp_url.is_none() {
                    missing.push("SMTP_URL");
                }
                if self.base_url.as_ref().is_none_or(|u| u.scheme() != "https") {
                    missing.push("TOLLGATE_BASE_URL (an https:// URL)");
                }
                if !missing.is_empty() {
                    return Err(ConfigError::new(
                        &missing.join(", "),
                        "required in production (TOLLGATE_ENV=production)",
                    ));
                }
            }
            Mode::Development => {
                // Development serves the simulator and the mailbox: never expose them to a network.
                if !self.bind.ip().is_loopback() {
                    return Err(ConfigError::new(
                        "TOLLGATE_BIND",
                        "development mode only binds loopback addresses; set TOLLGATE_ENV=production to listen on a network",
                    ));
                }
            }
        }
        if !self.bind.ip().is_loopback() && self.base_url.is_none() {
            return Err(ConfigError::new(
                "TOLLGATE_BASE_URL",
                "required when TOLLGATE_BIND is not a loopback address",
            ));
        }
        Ok(())
    }

    /// True when cookies must carry `Secure` (and the `__Host-`/`__Secure-` prefix).
    pub fn https(&self) -> bool {
        self.base_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
    }

    /// The effective settings, one `NAME=value` per line in table order, secrets masked
    /// (`tollgate check-config`).
    pub fn describe(&self) -> String {
        SETTINGS
            .iter()
            .map(|s| format!("{}={}\n", s.name, (s.show)(self)))
            .collect()
    }
}

/// True for a live-mode Stripe key (`sk_live_…`, `rk_live_…`); test keys and the simulator are
/// test mode.
pub fn is_live_key(key: &str) -> bool {
    key.starts_with("sk_live_") || key.starts_with("rk_live_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.mode, Mode::Development);
        assert_eq!(c.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(c.database_url.expose(), "sqlite://tollgate.db");
        assert_eq!(
            c.argon2,
            Argon2Params {
                m_kib: 19_456,
                t: 2,
                p: 1
            }
        );
        assert_eq!(c.password_min_length, 8);
        assert!(c.rate_limit);
        assert_eq!(c.stripe_webhook_tolerance_secs, 300);
    }

    #[test]
    fn bad_values_name_their_setting() {
        let cases = [
            ("TOLLGATE_ENV", "staging"),
            ("TOLLGATE_BIND", "not-an-address"),
            ("DATABASE_URL", "mysql://x"),
            ("STRIPE_WEBHOOK_TOLERANCE_SECS", "0"),
            ("TOLLGATE_RATE_LIMIT", "maybe"),
            ("TOLLGATE_SESSION_IDLE_SECS", "-5"),
            ("TOLLGATE_TRUSTED_PROXIES", "10.0.0.0/99"),
            ("TOLLGATE_ARGON2_T", "0"),
            ("TOLLGATE_STRIPE_TEST_CLOCK", "not_a_clock"),
            ("TOLLGATE_STRIPE_RETRY_SECS", "0"),
            ("TOLLGATE_COOKIE_DOMAIN", "com"),
            ("TOLLGATE_COOKIE_DOMAIN", ".com"),
            ("TOLLGATE_COOKIE_DOMAIN", "Example.COM"),
            ("TOLLGATE_COOKIE_DOMAIN", "example..com"),
        ];
        for (name, value) in cases {
            let err = config(&[(name, value)]).expect_err(name);
            assert!(
                err.setting.contains(name),
                "{name}={value} blamed {}",
                err.setting
            );
        }
    }

    #[test]
    fn a_cookie_domain_must_hold_the_base_urls_host() {
        let with = |host: &str, domain: &str| {
            config(&[
                ("TOLLGATE_BASE_URL", &format!("http://{host}")),
                ("TOLLGATE_COOKIE_DOMAIN", domain),
            ])
        };
        assert!(with("auth.example.com", "example.com").is_ok());
        assert!(with("auth.example.com", ".example.com").is_ok());
        assert!(with("example.com", "example.com").is_ok());
        let err = with("auth.example.org", "example.com").unwrap_err();
        assert_eq!(err.setting, "TOLLGATE_COOKIE_DOMAIN");
        assert!(with("notexample.com", "example.com").is_err());
    }

    #[test]
    fn production_names_every_missing_requirement() {
        let err = config(&[("TOLLGATE_ENV", "production")]).unwrap_err();
        for name in [
            "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRET",
            "SMTP_URL",
            "TOLLGATE_BASE_URL",
        ] {
            assert!(err.setting.contains(name), "{name} missing from {err}");
        }
    }

    #[test]
    fn a_test_clock_is_refused_with_a_live_key() {
        let err = config(&[
            ("STRIPE_SECRET_KEY", "sk_live_x"),
            ("TOLLGATE_STRIPE_TEST_CLOCK", "clock_1"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "TOLLGATE_STRIPE_TEST_CLOCK");
    }

    #[test]
    fn development_refuses_a_public_bind() {
        let err = config(&[("TOLLGATE_BIND", "0.0.0.0:3000")]).unwrap_err();
        assert_eq!(err.setting, "TOLLGATE_BIND");
    }

    #[test]
    fn secrets_never_show_in_debug_or_describe() {
        let c = config(&[
            ("STRIPE_SECRET_KEY", "sk_test_supersecret"),
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
        ])
        .unwrap();
        let shown = format!("{c:?}{}", c.describe());
        assert!(!shown.contains("supersecret"));
        assert!(!shown.contains("hunter2"));
    }
}
