//! Typed settings, read once from the environment (and `.env`).
//!
//! Every setting has the name and default of the README's Settings table. A bad value is a
//! [`ConfigError`] naming the setting; `main` turns it into exit code 2. Secrets are wrapped in
//! [`Secret`] so that `Debug` and `check-config` never print them.

use std::{fmt, net::SocketAddr, str::FromStr};

use ipnet::IpNet;
use url::Url;

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
    /// `TOLLGATE_COOKIE_DOMAIN`.
    pub cookie_domain: Option<String>,
    /// `TOLLGATE_FORWARD_URI_HEADER` (lower-case): the one header forward-auth reads the URI from.
    pub forward_uri_header: String,
    /// `TOLLGATE_FORWARD_PATH_CASE`: `insensitive` (default) matches rules ignoring ASCII case.
    pub forward_path_ignore_case: bool,
    /// `TOLLGATE_MAX_CONNECTIONS`: open client connections at most (default: the open-file
    /// limit less 128 for the database and logs, at most 10,000).
    pub max_connections: usize,
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
    /// `TOLLGATE_STRIPE_RETRY_SECS`: the first delay before queued Stripe work (a customer's
    /// email change) is tried again; it doubles with each failure, up to an hour.
    pub stripe_retry_secs: u64,
}

impl Config {
    /// Reads the process environment (after `.env`, which `main` loads).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can pass a map instead of the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mode = match get("TOLLGATE_ENV").as_deref() {
            None | Some("development") => Mode::Development,
            Some("production") => Mode::Production,
            Some(other) => {
                return Err(ConfigError::new(
                    "TOLLGATE_ENV",
                    format!("must be `development` or `production`, not `{other}`"),
                ));
            }
        };
        let bind: SocketAddr = parse_or(&get, "TOLLGATE_BIND", "127.0.0.1:3000".parse().unwrap())?;
        let base_url = get("TOLLGATE_BASE_URL")
            .map(|v| {
                let url = Url::parse(&v).map_err(|e| {
                    ConfigError::new("TOLLGATE_BASE_URL", format!("not a URL: {e}"))
                })?;
                if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                    return Err(ConfigError::new(
                        "TOLLGATE_BASE_URL",
                        "must be an http:// or https:// URL with a host",
                    ));
                }
                Ok(url)
            })
            .transpose()?;
        let allowed_origins = list(&get, "TOLLGATE_ALLOWED_ORIGINS")
            .into_iter()
            .map(|o| {
                Url::parse(&o)
                    .ok()
                    .filter(|u| u.host().is_some())
                    .map(|u| u.origin().ascii_serialization())
                    .ok_or_else(|| {
                        ConfigError::new(
                            "TOLLGATE_ALLOWED_ORIGINS",
                            format!("`{o}` is not an origin"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let database_url = get("DATABASE_URL").unwrap_or_else(|| "sqlite://tollgate.db".into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with sqlite:// or postgres://",
            ));
        }
        let stripe_webhook_secrets: Vec<Secret> = list(&get, "STRIPE_WEBHOOK_SECRET")
            .into_iter()
            .map(|s| {
                if s.starts_with("whsec_") {
                    Ok(Secret::new(s))
                } else {
                    Err(ConfigError::new(
                        "STRIPE_WEBHOOK_SECRET",
                        "every secret must start with whsec_",
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        let stripe_webhook_tolerance_secs =
            parse_or(&get, "STRIPE_WEBHOOK_TOLERANCE_SECS", 300u64)?;
        if stripe_webhook_tolerance_secs == 0 {
            return Err(ConfigError::new(
                "STRIPE_WEBHOOK_TOLERANCE_SECS",
                "0 would accept replayed events forever; use a positive number of seconds",
            ));
        }
        let stripe_api_base = get("STRIPE_API_BASE")
            .map(|v| {
                Url::parse(&v)
                    .map_err(|e| ConfigError::new("STRIPE_API_BASE", format!("not a URL: {e}")))
            })
            .transpose()?;
        let stripe_test_clock = get("TOLLGATE_STRIPE_TEST_CLOCK");
        let live_key = get("STRIPE_SECRET_KEY").is_some_and(|k| is_live_key(&k));
        if let Some(clock) = &stripe_test_clock {
            // Test clocks exist only in test mode: a live key with one is a mistake.
            if !clock.starts_with("clock_") || live_key {
                return Err(ConfigError::new(
                    "TOLLGATE_STRIPE_TEST_CLOCK",
                    "must be a test clock id (clock_…), and only with a test-mode key",
                ));
            }
        }
        let log_format = match get("TOLLGATE_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => {
                return Err(ConfigError::new(
                    "TOLLGATE_LOG_FORMAT",
                    "must be `text` or `json`",
                ));
            }
        };
        let trusted_proxies = list(&get, "TOLLGATE_TRUSTED_PROXIES")
            .into_iter()
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::new(
                            "TOLLGATE_TRUSTED_PROXIES",
                            format!("`{p}` is not an address or CIDR"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let client_ip_header = get("TOLLGATE_CLIENT_IP_HEADER")
            .map(|h| {
                axum::http::HeaderName::from_str(&h)
                    .map(|n| n.as_str().to_owned())
                    .map_err(|_| ConfigError::new("TOLLGATE_CLIENT_IP_HEADER", "not a header name"))
            })
            .transpose()?;
        let forward_uri_header = match get("TOLLGATE_FORWARD_URI_HEADER") {
            None => "x-forwarded-uri".to_owned(),
            Some(h) => axum::http::HeaderName::from_str(&h)
                .map(|n| n.as_str().to_owned())
                .map_err(|_| {
                    ConfigError::new("TOLLGATE_FORWARD_URI_HEADER", "not a header name")
                })?,
        };
        let forward_path_ignore_case = match get("TOLLGATE_FORWARD_PATH_CASE").as_deref() {
            None | Some("insensitive") => true,
            Some("sensitive") => false,
            Some(_) => {
                return Err(ConfigError::new(
                    "TOLLGATE_FORWARD_PATH_CASE",
                    "must be `insensitive` or `sensitive`",
                ));
            }
        };
        let max_connections = match get("TOLLGATE_MAX_CONNECTIONS") {
            None => default_max_connections(),
            Some(_) => match parse_or(&get, "TOLLGATE_MAX_CONNECTIONS", 0usize)? {
                0 => {
                    return Err(ConfigError::new(
                        "TOLLGATE_MAX_CONNECTIONS",
                        "must be a positive number",
                    ));
                }
                n => n,
            },
        };
        let rate_limit = match get("TOLLGATE_RATE_LIMIT").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(_) => {
                return Err(ConfigError::new(
                    "TOLLGATE_RATE_LIMIT",
                    "must be `on` or `off`",
                ));
            }
        };
        let password_min_length = parse_or(&get, "TOLLGATE_PASSWORD_MIN_LENGTH", 8usize)?;
        if !(1..=64).contains(&password_min_length) {
            return Err(ConfigError::new(
                "TOLLGATE_PASSWORD_MIN_LENGTH",
                "must be between 1 and 64 (NIST allows at least 64 characters)",
            ));
        }
        let argon2 = Argon2Params {
            m_kib: parse_or(&get, "TOLLGATE_ARGON2_M_KIB", 19_456u32)?,
            t: parse_or(&get, "TOLLGATE_ARGON2_T", 2u32)?,
            p: parse_or(&get, "TOLLGATE_ARGON2_P", 1u32)?,
        };
        if argon2::Params::new(argon2.m_kib, argon2.t, argon2.p, None).is_err() {
            return Err(ConfigError::new(
                "TOLLGATE_ARGON2_M_KIB, TOLLGATE_ARGON2_T, TOLLGATE_ARGON2_P",
                "argon2 parameters out of range (memory must be at least 8 KiB per lane, passes at least 1)",
            ));
        }
        let plans_path = get("TOLLGATE_PLANS");
        let config = Config {
            mode,
            bind,
            base_url,
            allowed_origins,
            database_url: Secret::new(database_url),
            plans_path,
            stripe_secret_key: get("STRIPE_SECRET_KEY").map(Secret::new),
            stripe_webhook_secrets,
            stripe_webhook_tolerance_secs,
            stripe_api_base,
            stripe_test_clock,
            smtp_url: get("SMTP_URL").map(Secret::new),
            mail_from: get("TOLLGATE_MAIL_FROM")
                .unwrap_or_else(|| "tollgate <no-reply@localhost>".into()),
            product_name: get("TOLLGATE_PRODUCT_NAME").unwrap_or_else(|| "tollgate".into()),
            log_format,
            trusted_proxies,
            client_ip_header,
            cookie_domain: get("TOLLGATE_COOKIE_DOMAIN"),
            forward_uri_header,
            forward_path_ignore_case,
            max_connections,
            header_timeout_secs: positive(&get, "TOLLGATE_HEADER_TIMEOUT_SECS", 10)?,
            rate_limit,
            password_min_length,
            argon2,
            session_idle_secs: positive(&get, "TOLLGATE_SESSION_IDLE_SECS", 1_209_600)?,
            session_absolute_secs: positive(&get, "TOLLGATE_SESSION_ABSOLUTE_SECS", 2_592_000)?,
            token_ttl_verify_secs: positive(&get, "TOLLGATE_TOKEN_TTL_VERIFY_SECS", 86_400)?,
            token_ttl_reset_secs: positive(&get, "TOLLGATE_TOKEN_TTL_RESET_SECS", 3_600)?,
            token_ttl_magic_secs: positive(&get, "TOLLGATE_TOKEN_TTL_MAGIC_SECS", 900)?,
            registration_privacy: boolean(&get, "TOLLGATE_REGISTRATION_PRIVACY")?,
            require_verified_for_checkout: boolean(&get, "TOLLGATE_REQUIRE_VERIFIED_FOR_CHECKOUT")?,
            past_due_grace_secs: parse_or(&get, "TOLLGATE_PAST_DUE_GRACE_SECS", 604_800u64)?,
            stripe_retry_secs: positive(&get, "TOLLGATE_STRIPE_RETRY_SECS", 30)?,
        };
        config.check_mode()?;
        config.check_cookie_domain()?;
        Ok(config)
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

    /// The effective settings, one `NAME=value` per line, secrets masked (`tollgate check-config`).
    pub fn describe(&self) -> String {
        let mask = |s: &Option<Secret>| if s.is_some() { "(set)" } else { "(unset)" };
        let lines = [
            ("TOLLGATE_ENV", format!("{:?}", self.mode).to_lowercase()),
            ("TOLLGATE_BIND", self.bind.to_string()),
            (
                "TOLLGATE_BASE_URL",
                self.base_url
                    .as_ref()
                    .map_or("(http://127.0.0.1:<port>)".into(), Url::to_string),
            ),
            ("TOLLGATE_ALLOWED_ORIGINS", self.allowed_origins.join(",")),
            ("DATABASE_URL", mask_url(self.database_url.expose())),
            (
                "TOLLGATE_PLANS",
                self.plans_path.clone().unwrap_or("(demo catalog)".into()),
            ),
            ("STRIPE_SECRET_KEY", mask(&self.stripe_secret_key).into()),
            (
                "STRIPE_WEBHOOK_SECRET",
                format!("({} set)", self.stripe_webhook_secrets.len()),
            ),
            (
                "STRIPE_WEBHOOK_TOLERANCE_SECS",
                self.stripe_webhook_tolerance_secs.to_string(),
            ),
            (
                "STRIPE_API_BASE",
                self.stripe_api_base
                    .as_ref()
                    .map_or("(Stripe's)".into(), Url::to_string),
            ),
            (
                "TOLLGATE_STRIPE_TEST_CLOCK",
                self.stripe_test_clock.clone().unwrap_or("(none)".into()),
            ),
            ("SMTP_URL", mask(&self.smtp_url).into()),
            ("TOLLGATE_MAIL_FROM", self.mail_from.clone()),
            ("TOLLGATE_PRODUCT_NAME", self.product_name.clone()),
            (
                "TOLLGATE_LOG_FORMAT",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            (
                "TOLLGATE_TRUSTED_PROXIES",
                self.trusted_proxies
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "TOLLGATE_CLIENT_IP_HEADER",
                self.client_ip_header.clone().unwrap_or_default(),
            ),
            (
                "TOLLGATE_COOKIE_DOMAIN",
                self.cookie_domain.clone().unwrap_or_default(),
            ),
            (
                "TOLLGATE_FORWARD_URI_HEADER",
                self.forward_uri_header.clone(),
            ),
            (
                "TOLLGATE_FORWARD_PATH_CASE",
                if self.forward_path_ignore_case {
                    "insensitive"
                } else {
                    "sensitive"
                }
                .into(),
            ),
            ("TOLLGATE_MAX_CONNECTIONS", self.max_connections.to_string()),
            (
                "TOLLGATE_HEADER_TIMEOUT_SECS",
                self.header_timeout_secs.to_string(),
            ),
            (
                "TOLLGATE_RATE_LIMIT",
                if self.rate_limit { "on" } else { "off" }.into(),
            ),
            (
                "TOLLGATE_PASSWORD_MIN_LENGTH",
                self.password_min_length.to_string(),
            ),
            ("TOLLGATE_ARGON2_M_KIB", self.argon2.m_kib.to_string()),
            ("TOLLGATE_ARGON2_T", self.argon2.t.to_string()),
            ("TOLLGATE_ARGON2_P", self.argon2.p.to_string()),
            (
                "TOLLGATE_SESSION_IDLE_SECS",
                self.session_idle_secs.to_string(),
            ),
            (
                "TOLLGATE_SESSION_ABSOLUTE_SECS",
                self.session_absolute_secs.to_string(),
            ),
            (
                "TOLLGATE_TOKEN_TTL_VERIFY_SECS",
                self.token_ttl_verify_secs.to_string(),
            ),
            (
                "TOLLGATE_TOKEN_TTL_RESET_SECS",
                self.token_ttl_reset_secs.to_string(),
            ),
            (
                "TOLLGATE_TOKEN_TTL_MAGIC_SECS",
                self.token_ttl_magic_secs.to_string(),
            ),
            (
                "TOLLGATE_REGISTRATION_PRIVACY",
                self.registration_privacy.to_string(),
            ),
            (
                "TOLLGATE_REQUIRE_VERIFIED_FOR_CHECKOUT",
                self.require_verified_for_checkout.to_string(),
            ),
            (
                "TOLLGATE_PAST_DUE_GRACE_SECS",
                self.past_due_grace_secs.to_string(),
            ),
            (
                "TOLLGATE_STRIPE_RETRY_SECS",
                self.stripe_retry_secs.to_string(),
            ),
        ];
        lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }
}

/// Hides the password of a database URL.
fn mask_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("****"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

fn list(get: &impl Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn parse_or<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(name, format!("`{v}` is not a valid value"))),
    }
}

fn positive(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
) -> Result<u64, ConfigError> {
    let value = parse_or(get, name, default)?;
    if value == 0 {
        return Err(ConfigError::new(
            name,
            "must be a positive number of seconds",
        ));
    }
    Ok(value)
}

/// True for a live-mode Stripe key (`sk_live_…`, `rk_live_…`); test keys and the simulator are
/// test mode.
pub fn is_live_key(key: &str) -> bool {
    key.starts_with("sk_live_") || key.starts_with("rk_live_")
}

/// The open-file limit (from `/proc/self/limits`) less 128 descriptors kept for the database,
/// logs and the listener; between 16 and 10,000. 1,000 where the limit cannot be read.
fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|v| v.parse::<usize>().ok());
    soft.map_or(1_000, |n| n.saturating_sub(128).clamp(16, 10_000))
}

fn boolean(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<bool, ConfigError> {
    match get(name).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ConfigError::new(name, "must be `true` or `false`")),
    }
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
