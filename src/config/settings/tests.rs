//! The table checked: README rows, secrets masked, every setting read and shown.

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
             src/config/settings/table.rs, from row {} on:\n  README: {}\n  table:  {}\n\
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
        ("TOLLGATE_JWT_SIGNING_KEY", SIGNING_KEY),
        ("TOLLGATE_GOOGLE_CLIENT_SECRET", "gsec-s3cr3t"),
        ("TOLLGATE_GITHUB_CLIENT_SECRET", "ghsec-s3cr3t"),
        ("TOLLGATE_OIDC_CLIENT_SECRET", "osec-s3cr3t"),
        (
            "TOLLGATE_WEBHOOK_SECRET",
            "whsec_s3cr3tAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
    ];
    // The secrets' companions (a client secret comes with its client id).
    let companions = [
        ("TOLLGATE_GOOGLE_CLIENT_ID", "g-id"),
        ("TOLLGATE_GITHUB_CLIENT_ID", "gh-id"),
        ("TOLLGATE_OIDC_CLIENT_ID", "o-id"),
        ("TOLLGATE_OIDC_ISSUER", "https://id.example.com/"),
        ("TOLLGATE_WEBHOOK_URL", "https://api.example.com/hooks"),
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
            .chain(&companions)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    for s in SETTINGS.iter() {
        let shown = (s.show)(&config);
        assert!(!shown.contains("s3cr3t"), "{} shows {shown}", s.name);
        assert!(
            !shown.contains(&SIGNING_KEY[20..]),
            "{} shows {shown}",
            s.name
        );
    }
}

/// An Ed25519 private key (PKCS#8 DER in base64; its seed is the bytes 1 to 32).
const SIGNING_KEY: &str = "MC4CAQAwBQYDK2VwBCIEIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g";

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
    ("TOLLGATE_ACCESS_TOKEN_SECS", "300"),
    ("TOLLGATE_JWT_AUDIENCE", "https://api.example.com"),
    ("TOLLGATE_JWT_SIGNING_KEY", SIGNING_KEY),
    ("TOLLGATE_LOCATION_HEADER", "CF-IPCountry"),
    ("TOLLGATE_DOWNGRADES_AT", "now"),
    ("TOLLGATE_AUDIT_RETENTION_DAYS", "30"),
    (
        "TOLLGATE_GOOGLE_CLIENT_ID",
        "123-abc.apps.googleusercontent.com",
    ),
    ("TOLLGATE_GOOGLE_CLIENT_SECRET", "GOCSPX-secret"),
    ("TOLLGATE_GITHUB_CLIENT_ID", "Iv1.0123456789abcdef"),
    ("TOLLGATE_GITHUB_CLIENT_SECRET", "gh-secret"),
    ("TOLLGATE_GITHUB_URL", "https://github.example.com/"),
    (
        "TOLLGATE_GITHUB_API_URL",
        "https://github.example.com/api/v3",
    ),
    ("TOLLGATE_OIDC_ISSUER", "https://id.example.com/"),
    ("TOLLGATE_OIDC_CLIENT_ID", "tollgate"),
    ("TOLLGATE_OIDC_CLIENT_SECRET", "oidc-secret"),
    ("TOLLGATE_OIDC_NAME", "Acme SSO"),
    (
        "TOLLGATE_WEBHOOK_URL",
        "https://api.example.com/hooks/tollgate",
    ),
    (
        "TOLLGATE_WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
    ("TOLLGATE_WEBHOOK_EVENTS", "billing.*,account.deleted"),
    ("TOLLGATE_WEBHOOK_MAX_ATTEMPTS", "3"),
    ("TOLLGATE_CACHE_ENTRIES", "1000"),
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
    for s in SETTINGS.iter() {
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

/// The rows of the README's Settings table (`| variable | meaning | default |`), in order.
fn readme_rows() -> Vec<String> {
    let mut rows: Vec<(String, &str, String)> = Vec::new();
    for s in SETTINGS.iter() {
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

#[test]
fn access_tokens_live_5_to_15_minutes_and_the_signing_key_must_be_an_ed25519_key() {
    let with = |name: &'static str, value: &'static str| {
        Config::from_lookup(move |n| (n == name).then(|| value.to_owned()))
    };
    for secs in ["299", "901", "0", "-1", "ten"] {
        let e = with("TOLLGATE_ACCESS_TOKEN_SECS", secs).unwrap_err();
        assert_eq!(e.setting, "TOLLGATE_ACCESS_TOKEN_SECS", "{secs}");
    }
    for secs in ["300", "900"] {
        assert!(with("TOLLGATE_ACCESS_TOKEN_SECS", secs).is_ok(), "{secs}");
    }
    let pem: &'static str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\n-----END PRIVATE KEY-----\n";
    assert!(with("TOLLGATE_JWT_SIGNING_KEY", pem).is_ok());
    assert!(with("TOLLGATE_JWT_SIGNING_KEY", SIGNING_KEY).is_ok());
    for bad in ["not a key", "c2VjcmV0", "MC4CAQAwBQYDK2VwBCIEIAEC"] {
        let e = with("TOLLGATE_JWT_SIGNING_KEY", bad).unwrap_err();
        assert_eq!(e.setting, "TOLLGATE_JWT_SIGNING_KEY");
        assert!(
            !e.message.contains(bad),
            "the value is not echoed: {}",
            e.message
        );
    }
}

#[test]
fn the_webhook_endpoint_needs_its_secret_and_secrets_and_event_types_are_checked() {
    let with = |pairs: &'static [(&'static str, &'static str)]| {
        Config::from_lookup(move |n| {
            pairs
                .iter()
                .find(|(name, _)| *name == n)
                .map(|(_, v)| (*v).to_owned())
        })
    };
    const URL: (&str, &str) = ("TOLLGATE_WEBHOOK_URL", "https://api.example.com/hooks");
    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(with(&[URL, ("TOLLGATE_WEBHOOK_SECRET", KEY)]).is_ok());
    let two = with(&[
        URL,
        (
            "TOLLGATE_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
    ])
    .unwrap();
    assert_eq!(two.webhooks.secrets.len(), 2);
    let refused: &[&'static [(&str, &str)]] = &[
        &[URL],
        &[("TOLLGATE_WEBHOOK_SECRET", KEY)],
        &[URL, ("TOLLGATE_WEBHOOK_SECRET", "whsec_short")],
        &[
            URL,
            (
                "TOLLGATE_WEBHOOK_SECRET",
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ],
        &[
            URL,
            (
                "TOLLGATE_WEBHOOK_SECRET",
                "whsec_not base64 at all!!!!!!!!!!!!",
            ),
        ],
        &[
            ("TOLLGATE_WEBHOOK_URL", "ftp://example.com/"),
            ("TOLLGATE_WEBHOOK_SECRET", KEY),
        ],
        &[("TOLLGATE_WEBHOOK_EVENTS", "billing")],
        &[("TOLLGATE_WEBHOOK_EVENTS", "Billing.*")],
        &[("TOLLGATE_WEBHOOK_EVENTS", "*.deleted")],
        &[("TOLLGATE_WEBHOOK_MAX_ATTEMPTS", "0")],
    ];
    for pairs in refused {
        let e = with(pairs).unwrap_err();
        assert!(
            e.setting.starts_with("TOLLGATE_WEBHOOK_"),
            "{pairs:?}: {e:?}"
        );
        assert!(!e.message.contains("MfKQ9r8"), "the secret is not echoed");
    }
    let events = with(&[("TOLLGATE_WEBHOOK_EVENTS", " billing.* , account.deleted")]).unwrap();
    assert_eq!(events.webhooks.events, ["billing.*", "account.deleted"]);
}

#[test]
fn the_cache_size_is_bounded_both_ways() {
    let with = |value: &'static str| {
        Config::from_lookup(move |n| (n == "TOLLGATE_CACHE_ENTRIES").then(|| value.to_owned()))
    };
    for bad in ["99", "many", "-1", "10000001"] {
        let e = with(bad).unwrap_err();
        assert_eq!(e.setting, "TOLLGATE_CACHE_ENTRIES", "{bad}");
    }
    let small = with("100").unwrap();
    assert_eq!(small.cache_entries, 100);
}

#[test]
fn urls_are_shown_without_passwords_or_secret_query_values() {
    let shown = super::mask_url("postgres://u:hunter2@db/x?password=qq&sslmode=require&sslkey=k1");
    assert!(
        !shown.contains("hunter2") && !shown.contains("qq") && !shown.contains("k1"),
        "{shown}"
    );
    assert!(shown.contains("sslmode=require"), "{shown}");
    assert_eq!(
        super::mask_url("sqlite://tollgate.db?mode=rwc"),
        "sqlite://tollgate.db?mode=rwc"
    );
}
