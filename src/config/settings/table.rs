//! The table itself: one entry per setting, in `check-config` and README order.

use ipnet::IpNet;
use url::Url;

use super::{
    Fallback::{Noted, Text, Value},
    Setting, check_argon2, default_max_connections, mask_url, set_or_unset,
};
use crate::config::{LogFormat, Mode, Secret, is_live_key};

/// The settings before the access-token ones (`tokens.rs`), in `check-config` and README order.
pub(in crate::config) static SETTINGS: &[Setting] = &[
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
        "email token lifetimes: verification, reset, magic link",
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
        "`true`: registration answers alike for new and taken addresses",
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
