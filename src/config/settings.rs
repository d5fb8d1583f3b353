//! The settings table: every environment variable tollgate reads, named once, with its default,
//! its description, whether it is secret, how it is parsed and how `check-config` shows it.
//! [`Config::from_lookup`], [`Config::describe`] and the README's Settings table (kept in step by
//! a test below) all come from [`SETTINGS`].

use std::str::FromStr;

use ipnet::IpNet;
use url::Url;

use super::{Argon2Params, Config, ConfigError, LogFormat, Mode, Secret, is_live_key};

/// What a setting means when it is unset, as people see it.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the text is for the README, checked by a test")
)]
pub(super) enum Fallback {
    /// This value is read in its place; the README shows it in backticks.
    Value(&'static str),
    /// Like `Value`, with a note for people after it ("14 days").
    Noted(&'static str, &'static str),
    /// No value is read (the parser decides); the README shows this text.
    Text(&'static str),
}

impl Fallback {
    /// The value read when the variable is unset, if any.
    pub(super) fn value(self) -> Option<&'static str> {
        match self {
            Fallback::Value(v) | Fallback::Noted(v, _) => Some(v),
            Fallback::Text(_) => None,
        }
    }

    /// The README's default cell.
    #[cfg(test)]
    fn markdown(self) -> String {
        match self {
            Fallback::Value(v) => format!("`{v}`"),
            Fallback::Noted(v, note) => format!("`{v}` ({note})"),
            Fallback::Text(text) => text.to_owned(),
        }
    }
}

/// One setting: the single place its name, default, description, parser and display live.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the text is for the README, checked by a test")
)]
pub(super) struct Setting {
    /// The environment variable.
    pub(super) name: &'static str,
    /// What it does, one line (the README's "meaning").
    pub(super) about: &'static str,
    /// What applies when it is unset.
    pub(super) fallback: Fallback,
    /// Secret settings are masked by `show` (check-config never prints them).
    pub(super) secret: bool,
    /// Shares the previous setting's README row (`TOLLGATE_ARGON2_M_KIB` / `_T` / `_P`).
    pub(super) joins_previous_row: bool,
    /// Parses the value (the fallback's when unset) into the config. Settings are read in table
    /// order, so a setting may check one read before it.
    pub(super) read: fn(&Raw, &mut Config) -> Result<(), ConfigError>,
    /// The effective value as `check-config` prints it.
    pub(super) show: fn(&Config) -> String,
}

impl Setting {
    const fn new(
        name: &'static str,
        about: &'static str,
        fallback: Fallback,
        read: fn(&Raw, &mut Config) -> Result<(), ConfigError>,
        show: fn(&Config) -> String,
    ) -> Self {
        Self {
            name,
            about,
            fallback,
            secret: false,
            joins_previous_row: false,
            read,
            show,
        }
    }

    const fn secret(self) -> Self {
        Self {
            secret: true,
            ..self
        }
    }

    const fn joins_previous_row(self) -> Self {
        Self {
            joins_previous_row: true,
            ..self
        }
    }
}

/// A setting's value as read: blank counts as unset, and unset means the fallback's value.
pub(super) struct Raw {
    name: &'static str,
    value: Option<String>,
}

impl Raw {
    /// Reads `setting` through `lookup`.
    pub(super) fn read(setting: &Setting, lookup: &impl Fn(&str) -> Option<String>) -> Self {
        let value = lookup(setting.name)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| setting.fallback.value().map(str::to_owned));
        Self {
            name: setting.name,
            value,
        }
    }

    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.name, message)
    }

    fn text(&self) -> Option<String> {
        self.value.clone()
    }

    /// The value parsed with `FromStr` (settings with a fallback value are never unset).
    fn parse<T: FromStr>(&self) -> Result<T, ConfigError> {
        let v = self.value.as_deref().unwrap_or_default();
        v.trim()
            .parse()
            .map_err(|_| self.error(format!("`{v}` is not a valid value")))
    }

    /// A duration in seconds that must not be 0.
    fn positive(&self) -> Result<u64, ConfigError> {
        match self.parse()? {
            0 => Err(self.error("must be a positive number of seconds")),
            n => Ok(n),
        }
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        match self.value.as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(self.error("must be `true` or `false`")),
        }
    }

    /// A comma-separated list; blank items are skipped.
    fn list(&self) -> Vec<String> {
        self.value
            .as_deref()
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn url(&self) -> Result<Option<Url>, ConfigError> {
        self.value
            .as_deref()
            .map(|v| Url::parse(v).map_err(|e| self.error(format!("not a URL: {e}"))))
            .transpose()
    }

    /// A header name, lower-cased.
    fn header(&self) -> Result<Option<String>, ConfigError> {
        self.value
            .as_deref()
            .map(|h| {
                axum::http::HeaderName::from_str(h)
                    .map(|n| n.as_str().to_owned())
                    .map_err(|_| self.error("not a header name"))
            })
            .transpose()
    }
}

use Fallback::{Noted, Text, Value};

/// Every setting, in `check-config` and README order.
pub(super) static SETTINGS: &[Setting] = &[
    Setting::new(
        "TOLLGATE_ENV",
        "`development` or `production` (below)",
        Value("development"),
        |r, c| {
            c.mode = match r.value.as_deref() {
                None | Some("development") => Mode::Development,
                Some("production") => Mode::Production,
                Some(other) => {
                    return Err(r.error(format!(
                        "must be `development` or `production`, not `{other}`"
                    )));
                }
            };
            Ok(())
        },
        |c| format!("{:?}", c.mode).to_lowercase(),
    ),
    Setting::new(
        "TOLLGATE_BIND",
        "address to listen on",
        Value("127.0.0.1:3000"),
        |r, c| {
            c.bind = r.parse()?;
            Ok(())
        },
        |c| c.bind.to_string(),
    ),
    Setting::new(
        "TOLLGATE_BASE_URL",
        "public URL: links, redirects, the Origin check, `Secure` cookies when https; required when the bind is not loopback",
        Text("`http://127.0.0.1:<port>`"),
        |r, c| {
            c.base_url = r.url()?;
            if let Some(url) = &c.base_url
                && (!matches!(url.scheme(), "http" | "https") || url.host().is_none())
            {
                return Err(r.error("must be an http:// or https:// URL with a host"));
            }
            Ok(())
        },
        |c| {
            c.base_url
                .as_ref()
                .map_or("(http://127.0.0.1:<port>)".into(), Url::to_string)
        },
    ),
    Setting::new(
        "TOLLGATE_ALLOWED_ORIGINS",
        "extra origins for the Origin check (comma-separated); in development `http://localhost:<port>` is always allowed",
        Text("none"),
        |r, c| {
            c.allowed_origins = r
                .list()
                .into_iter()
                .map(|o| {
                    Url::parse(&o)
                        .ok()
                        .filter(|u| u.host().is_some())
                        .map(|u| u.origin().ascii_serialization())
                        .ok_or_else(|| r.error(format!("`{o}` is not an origin")))
                })
                .collect::<Result<_, _>>()?;
            Ok(())
        },
        |c| c.allowed_origins.join(","),
    ),
    Setting::new(
        "DATABASE_URL",
        "`sqlite://…` or `postgres://…`",
        Value("sqlite://tollgate.db"),
        |r, c| {
            let url = r.text().unwrap_or_default();
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(r.error("must start with sqlite:// or postgres://"));
            }
            c.database_url = Secret::new(url);
            Ok(())
        },
        |c| mask_url(c.database_url.expose()),
    )
    .secret(),
    Setting::new(
        "TOLLGATE_PLANS",
        "catalog file (format in [docs/api.md](docs/api.md#the-catalog-file-tollgate_plans); validated at start-up, exit 2 when invalid)",
        Text("`plans.toml` if present, else the demo catalog"),
        |r, c| {
            c.plans_path = r.text();
            Ok(())
        },
        |c| c.plans_path.clone().unwrap_or("(demo catalog)".into()),
    ),
    Setting::new(
        "STRIPE_SECRET_KEY",
        "Stripe API key; unset in development means the built-in simulator",
        Text("unset"),
        |r, c| {
            c.stripe_secret_key = r.text().map(Secret::new);
            Ok(())
        },
        |c| set_or_unset(&c.stripe_secret_key),
    )
    .secret(),
    Setting::new(
        "STRIPE_WEBHOOK_SECRET",
        "one or more `whsec_…` secrets, comma-separated (rotation)",
        Text("generated with the simulator"),
        |r, c| {
            c.stripe_webhook_secrets = r
                .list()
                .into_iter()
                .map(|s| match s.starts_with("whsec_") {
                    true => Ok(Secret::new(s)),
                    false => Err(r.error("every secret must start with whsec_")),
                })
                .collect::<Result<_, _>>()?;
            Ok(())
        },
        |c| format!("({} set)", c.stripe_webhook_secrets.len()),
    )
    .secret(),
    Setting::new(
        "STRIPE_WEBHOOK_TOLERANCE_SECS",
        "accepted webhook timestamp age; 0 is refused",
        Value("300"),
        |r, c| {
            c.stripe_webhook_tolerance_secs = match r.parse()? {
                0 => {
                    return Err(r.error(
                        "0 would accept replayed events forever; use a positive number of seconds",
                    ));
                }
                n => n,
            };
            Ok(())
        },
        |c| c.stripe_webhook_tolerance_secs.to_string(),
    ),
    Setting::new(
        "STRIPE_API_BASE",
        "base URL of the Stripe API (tests, a proxy)",
        Text("Stripe's"),
        |r, c| {
            c.stripe_api_base = r.url()?;
            Ok(())
        },
        |c| {
            c.stripe_api_base
                .as_ref()
                .map_or("(Stripe's)".into(), Url::to_string)
        },
    ),
    Setting::new(
        "TOLLGATE_STRIPE_TEST_CLOCK",
        "a Stripe test clock (`clock_…`) attached to every new customer, for trying renewals in test mode; refused with a live key",
        Text("none"),
        |r, c| {
            c.stripe_test_clock = r.text();
            // Test clocks exist only in test mode: a live key with one is a mistake.
            let live_key = c
                .stripe_secret_key
                .as_ref()
                .is_some_and(|k| is_live_key(k.expose()));
            if let Some(clock) = &c.stripe_test_clock
                && (!clock.starts_with("clock_") || live_key)
            {
                return Err(
                    r.error("must be a test clock id (clock_…), and only with a test-mode key")
                );
            }
            Ok(())
        },
        |c| c.stripe_test_clock.clone().unwrap_or("(none)".into()),
    ),
    Setting::new(
        "SMTP_URL",
        "`smtp://` / `smtps://` mail relay; unset in development means the mailbox",
        Text("unset"),
        |r, c| {
            c.smtp_url = r.text().map(Secret::new);
            Ok(())
        },
        |c| set_or_unset(&c.smtp_url),
    )
    .secret(),
    Setting::new(
        "TOLLGATE_MAIL_FROM",
        "sender of every email",
        Value("tollgate <no-reply@localhost>"),
        |r, c| {
            c.mail_from = r.text().unwrap_or_default();
            Ok(())
        },
        |c| c.mail_from.clone(),
    ),
    Setting::new(
        "TOLLGATE_PRODUCT_NAME",
        "name shown in pages and email",
        Value("tollgate"),
        |r, c| {
            c.product_name = r.text().unwrap_or_default();
            Ok(())
        },
        |c| c.product_name.clone(),
    ),
    Setting::new(
        "TOLLGATE_LOG_FORMAT",
        "`text` or `json` (one object per line)",
        Value("text"),
        |r, c| {
            c.log_format = match r.value.as_deref() {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(_) => return Err(r.error("must be `text` or `json`")),
            };
            Ok(())
        },
        |c| format!("{:?}", c.log_format).to_lowercase(),
    ),
    Setting::new(
        "TOLLGATE_TRUSTED_PROXIES",
        "addresses/CIDRs whose `X-Forwarded-For` is believed",
        Text("none"),
        |r, c| {
            c.trusted_proxies = r
                .list()
                .into_iter()
                .map(|p| {
                    p.parse::<IpNet>()
                        .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                        .map_err(|_| r.error(format!("`{p}` is not an address or CIDR")))
                })
                .collect::<Result<_, _>>()?;
            Ok(())
        },
        |c| {
            c.trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        },
    ),
    Setting::new(
        "TOLLGATE_CLIENT_IP_HEADER",
        "header with the client IP set by a trusted platform proxy (e.g. `Fly-Client-IP`)",
        Text("none"),
        |r, c| {
            c.client_ip_header = r.header()?;
            Ok(())
        },
        |c| c.client_ip_header.clone().unwrap_or_default(),
    ),
    Setting::new(
        "TOLLGATE_COOKIE_DOMAIN",
        "share the session cookie with sibling subdomains; the prefix becomes `__Secure-`. A lower-case host name of at least two labels that holds the base URL's host (start-up refuses anything else)",
        Text("unset (host-only)"),
        |r, c| {
            // Checked against the base URL once everything is read (`check_cookie_domain`).
            c.cookie_domain = r.text();
            Ok(())
        },
        |c| c.cookie_domain.clone().unwrap_or_default(),
    ),
    Setting::new(
        "TOLLGATE_FORWARD_URI_HEADER",
        "the one header `/auth/forward` reads the judged URI from (Gating)",
        Value("X-Forwarded-Uri"),
        |r, c| {
            c.forward_uri_header = r.header()?.unwrap_or_default();
            Ok(())
        },
        |c| c.forward_uri_header.clone(),
    ),
    Setting::new(
        "TOLLGATE_FORWARD_PATH_CASE",
        "`insensitive` or `sensitive` matching of forward-auth rules (Gating)",
        Value("insensitive"),
        |r, c| {
            c.forward_path_ignore_case = match r.value.as_deref() {
                None | Some("insensitive") => true,
                Some("sensitive") => false,
                Some(_) => return Err(r.error("must be `insensitive` or `sensitive`")),
            };
            Ok(())
        },
        |c| match c.forward_path_ignore_case {
            true => "insensitive".into(),
            false => "sensitive".into(),
        },
    ),
    Setting::new(
        "TOLLGATE_MAX_CONNECTIONS",
        "open client connections at most; over it the connection waiting longest for a request head is closed",
        Text("open-file limit − 128 (16–10,000)"),
        |r, c| {
            c.max_connections = match r.value {
                None => default_max_connections(),
                Some(_) => match r.parse()? {
                    0 => return Err(r.error("must be a positive number")),
                    n => n,
                },
            };
            Ok(())
        },
        |c| c.max_connections.to_string(),
    ),
    Setting::new(
        "TOLLGATE_HEADER_TIMEOUT_SECS",
        "time a client has to send a whole request head",
        Value("10"),
        |r, c| {
            c.header_timeout_secs = r.positive()?;
            Ok(())
        },
        |c| c.header_timeout_secs.to_string(),
    ),
    Setting::new(
        "TOLLGATE_RATE_LIMIT",
        "`on` or `off` (tests, benchmarks)",
        Value("on"),
        |r, c| {
            c.rate_limit = match r.value.as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(_) => return Err(r.error("must be `on` or `off`")),
            };
            Ok(())
        },
        |c| match c.rate_limit {
            true => "on".into(),
            false => "off".into(),
        },
    ),
    Setting::new(
        "TOLLGATE_PASSWORD_MIN_LENGTH",
        "minimum password length in characters (1–64)",
        Value("8"),
        |r, c| {
            c.password_min_length = r.parse()?;
            if !(1..=64).contains(&c.password_min_length) {
                return Err(
                    r.error("must be between 1 and 64 (NIST allows at least 64 characters)")
                );
            }
            Ok(())
        },
        |c| c.password_min_length.to_string(),
    ),
    Setting::new(
        "TOLLGATE_ARGON2_M_KIB",
        "argon2id memory (KiB), passes, lanes",
        Value("19456"),
        |r, c| {
            c.argon2.m_kib = r.parse()?;
            Ok(())
        },
        |c| c.argon2.m_kib.to_string(),
    ),
    Setting::new(
        "TOLLGATE_ARGON2_T",
        "argon2id passes",
        Value("2"),
        |r, c| {
            c.argon2.t = r.parse()?;
            Ok(())
        },
        |c| c.argon2.t.to_string(),
    )
    .joins_previous_row(),
    Setting::new(
        "TOLLGATE_ARGON2_P",
        "argon2id lanes",
        Value("1"),
        |r, c| {
            c.argon2.p = r.parse()?;
            check_argon2(c.argon2)
        },
        |c| c.argon2.p.to_string(),
    )
    .joins_previous_row(),
    Setting::new(
        "TOLLGATE_SESSION_IDLE_SECS",
        "a session unused this long ends; also the lifetime of a \"remember me\" cookie",
        Noted("1209600", "14 days"),
        |r, c| {
            c.session_idle_secs = r.positive()?;
            Ok(())
        },
        |c| c.session_idle_secs.to_string(),
    ),
    Setting::new(
        "TOLLGATE_SESSION_ABSOLUTE_SECS",
        "a session ends this long after sign-in, whatever its use",
        Noted("2592000", "30 days"),
        |r, c| {
            c.session_absolute_secs = r.positive()?;
            Ok(())
        },
        |c| c.session_absolute_secs.to_string(),
    ),
    Setting::new(
        "TOLLGATE_TOKEN_TTL_VERIFY_SECS",
        "email token lifetimes (email flows)",
        Value("86400"),
        |r, c| {
            c.token_ttl_verify_secs = r.positive()?;
            Ok(())
        },
        |c| c.token_ttl_verify_secs.to_string(),
    ),
    Setting::new(
        "TOLLGATE_TOKEN_TTL_RESET_SECS",
        "password-reset token lifetime",
        Value("3600"),
        |r, c| {
            c.token_ttl_reset_secs = r.positive()?;
            Ok(())
        },
        |c| c.token_ttl_reset_secs.to_string(),
    )
    .joins_previous_row(),
    Setting::new(
        "TOLLGATE_TOKEN_TTL_MAGIC_SECS",
        "magic-link token lifetime",
        Value("900"),
        |r, c| {
            c.token_ttl_magic_secs = r.positive()?;
            Ok(())
        },
        |c| c.token_ttl_magic_secs.to_string(),
    )
    .joins_previous_row(),
    Setting::new(
        "TOLLGATE_REGISTRATION_PRIVACY",
        "`true`: registration answers alike for new and taken addresses (email flows)",
        Value("false"),
        |r, c| {
            c.registration_privacy = r.boolean()?;
            Ok(())
        },
        |c| c.registration_privacy.to_string(),
    ),
    Setting::new(
        "TOLLGATE_REQUIRE_VERIFIED_FOR_CHECKOUT",
        "`true`: Checkout needs a verified email",
        Value("false"),
        |r, c| {
            c.require_verified_for_checkout = r.boolean()?;
            Ok(())
        },
        |c| c.require_verified_for_checkout.to_string(),
    ),
    Setting::new(
        "TOLLGATE_PAST_DUE_GRACE_SECS",
        "how long a `past_due` subscription keeps its plan; 0 = none",
        Value("604800"),
        |r, c| {
            c.past_due_grace_secs = r.parse()?;
            Ok(())
        },
        |c| c.past_due_grace_secs.to_string(),
    ),
    Setting::new(
        "TOLLGATE_STRIPE_RETRY_SECS",
        "first delay before a customer email change Stripe refused or could not take is pushed again (doubles per failure, at most 1 h)",
        Value("30"),
        |r, c| {
            c.stripe_retry_secs = r.positive()?;
            Ok(())
        },
        |c| c.stripe_retry_secs.to_string(),
    ),
];

/// The three argon2 settings are valid together or not at all.
fn check_argon2(argon2: Argon2Params) -> Result<(), ConfigError> {
    match argon2::Params::new(argon2.m_kib, argon2.t, argon2.p, None) {
        Ok(_) => Ok(()),
        Err(_) => Err(ConfigError::new(
            "TOLLGATE_ARGON2_M_KIB, TOLLGATE_ARGON2_T, TOLLGATE_ARGON2_P",
            "argon2 parameters out of range (memory must be at least 8 KiB per lane, passes at least 1)",
        )),
    }
}

fn set_or_unset(secret: &Option<Secret>) -> String {
    match secret {
        Some(_) => "(set)".into(),
        None => "(unset)".into(),
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

/// The rows of the README's Settings table (`| variable | meaning | default |`), in order.
#[cfg(test)]
fn readme_rows() -> Vec<String> {
    let mut rows: Vec<(String, &str, String)> = Vec::new();
    for s in SETTINGS {
        match rows.last_mut() {
            Some((names, _, defaults)) if s.joins_previous_row => {
                let first = names
                    .trim_start_matches('`')
                    .split('`')
                    .next()
                    .unwrap_or("");
                names.push_str(&format!(" / `{}`", short_name(first, s.name)));
                defaults.push_str(&format!(" / {}", s.fallback.markdown()));
            }
            _ => rows.push((format!("`{}`", s.name), s.about, s.fallback.markdown())),
        }
    }
    rows.into_iter()
        .map(|(names, about, defaults)| format!("| {names} | {about} | {defaults} |"))
        .collect()
}

#[cfg(test)]
/// `name` without the words it shares with `first`: `_T` for `TOLLGATE_ARGON2_T` after
/// `TOLLGATE_ARGON2_M_KIB`.
fn short_name<'a>(first: &str, name: &'a str) -> &'a str {
    let common = first
        .bytes()
        .zip(name.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let cut = name[..common].rfind('_').unwrap_or(0);
    &name[cut..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table rows of the README's "## Settings" section.
    fn readme_table() -> Vec<String> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md is readable");
        readme
            .lines()
            .skip_while(|l| *l != "## Settings")
            .skip_while(|l| !l.starts_with("|---"))
            .skip(1)
            .take_while(|l| l.starts_with('|'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_readme_lists_exactly_the_settings_table() {
        let (readme, table) = (readme_table(), readme_rows());
        if readme != table {
            let at = readme
                .iter()
                .zip(&table)
                .take_while(|(r, t)| r == t)
                .count();
            panic!(
                "README.md's \"## Settings\" table is out of step with SETTINGS in \
                 src/config/settings.rs, from row {} on:\n  README: {}\n  table:  {}\n\
                 Change SETTINGS, or replace the rows under `|---|---|---|` in README.md with:\n{}\n",
                at + 1,
                readme.get(at).map_or("(no row)", String::as_str),
                table.get(at).map_or("(no row)", String::as_str),
                table.join("\n")
            );
        }
    }

    #[test]
    fn every_setting_is_named_once() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a setting appears twice in SETTINGS");
    }

    #[test]
    fn secret_settings_never_show_their_value() {
        let samples = [
            ("DATABASE_URL", "postgres://u:s3cr3t@db/x"),
            ("STRIPE_SECRET_KEY", "sk_test_s3cr3t"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_s3cr3t"),
            ("SMTP_URL", "smtp://u:s3cr3t@mail.example"),
        ];
        let secret: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.name)
            .collect();
        assert_eq!(
            secret,
            samples.map(|(name, _)| name),
            "every secret setting needs a sample value here"
        );
        let config = Config::from_lookup(|name| {
            samples
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        for s in SETTINGS {
            let shown = (s.show)(&config);
            assert!(!shown.contains("s3cr3t"), "{} shows {shown}", s.name);
        }
    }

    /// A value other than the default for every setting, valid together.
    const NOT_DEFAULT: &[(&str, &str)] = &[
        ("TOLLGATE_ENV", "production"),
        ("TOLLGATE_BIND", "0.0.0.0:8080"),
        ("TOLLGATE_BASE_URL", "https://auth.example.com"),
        ("TOLLGATE_ALLOWED_ORIGINS", "https://app.example.com"),
        ("DATABASE_URL", "postgres://u:p@db/x"),
        ("TOLLGATE_PLANS", "/etc/tollgate/plans.toml"),
        ("STRIPE_SECRET_KEY", "sk_test_1"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_1,whsec_2"),
        ("STRIPE_WEBHOOK_TOLERANCE_SECS", "60"),
        ("STRIPE_API_BASE", "http://127.0.0.1:12111"),
        ("TOLLGATE_STRIPE_TEST_CLOCK", "clock_1"),
        ("SMTP_URL", "smtp://mail.example.com"),
        ("TOLLGATE_MAIL_FROM", "Acme <hello@example.com>"),
        ("TOLLGATE_PRODUCT_NAME", "Acme"),
        ("TOLLGATE_LOG_FORMAT", "json"),
        ("TOLLGATE_TRUSTED_PROXIES", "10.0.0.0/8"),
        ("TOLLGATE_CLIENT_IP_HEADER", "Fly-Client-IP"),
        ("TOLLGATE_COOKIE_DOMAIN", "example.com"),
        ("TOLLGATE_FORWARD_URI_HEADER", "X-Original-URI"),
        ("TOLLGATE_FORWARD_PATH_CASE", "sensitive"),
        ("TOLLGATE_MAX_CONNECTIONS", "12345"),
        ("TOLLGATE_HEADER_TIMEOUT_SECS", "5"),
        ("TOLLGATE_RATE_LIMIT", "off"),
        ("TOLLGATE_PASSWORD_MIN_LENGTH", "12"),
        ("TOLLGATE_ARGON2_M_KIB", "65536"),
        ("TOLLGATE_ARGON2_T", "3"),
        ("TOLLGATE_ARGON2_P", "2"),
        ("TOLLGATE_SESSION_IDLE_SECS", "60"),
        ("TOLLGATE_SESSION_ABSOLUTE_SECS", "120"),
        ("TOLLGATE_TOKEN_TTL_VERIFY_SECS", "10"),
        ("TOLLGATE_TOKEN_TTL_RESET_SECS", "20"),
        ("TOLLGATE_TOKEN_TTL_MAGIC_SECS", "30"),
        ("TOLLGATE_REGISTRATION_PRIVACY", "true"),
        ("TOLLGATE_REQUIRE_VERIFIED_FOR_CHECKOUT", "true"),
        ("TOLLGATE_PAST_DUE_GRACE_SECS", "0"),
        ("TOLLGATE_STRIPE_RETRY_SECS", "5"),
    ];

    /// Each setting's `read` fills what its `show` prints: setting it changes its line.
    #[test]
    fn every_setting_reads_what_it_shows() {
        let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        let sampled: Vec<&str> = NOT_DEFAULT.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            sampled, names,
            "NOT_DEFAULT needs one value per setting, in table order"
        );
        let defaults = Config::from_lookup(|_| None).unwrap();
        let set = Config::from_lookup(|name| {
            NOT_DEFAULT
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        for s in SETTINGS {
            assert_ne!(
                (s.show)(&set),
                (s.show)(&defaults),
                "{} is not read",
                s.name
            );
        }
    }

    #[test]
    fn joined_rows_show_the_differing_words() {
        assert_eq!(
            short_name("TOLLGATE_ARGON2_M_KIB", "TOLLGATE_ARGON2_T"),
            "_T"
        );
        assert_eq!(
            short_name(
                "TOLLGATE_TOKEN_TTL_VERIFY_SECS",
                "TOLLGATE_TOKEN_TTL_RESET_SECS"
            ),
            "_RESET_SECS"
        );
    }
}
