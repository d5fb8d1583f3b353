//! The settings of outbound webhooks: an endpoint set by the environment (more are added in the
//! admin area), and how often a delivery is tried. In `check-config` and README order, last.

use base64::Engine as _;

use super::{
    Fallback::{Text, Value},
    Setting, set_or_unset,
};
use crate::config::Secret;

/// The outbound webhook settings, as read.
#[derive(Clone, Debug, Default)]
pub struct Webhooks {
    /// `TOLLGATE_WEBHOOK_URL`: the endpoint the environment sets, if any.
    pub url: Option<url::Url>,
    /// `TOLLGATE_WEBHOOK_SECRET`: its signing secrets, the current first (a second one signs too,
    /// while receivers move to the new one).
    pub secrets: Vec<Secret>,
    /// `TOLLGATE_WEBHOOK_EVENTS`: the event types it receives.
    pub events: Vec<String>,
    /// `TOLLGATE_WEBHOOK_MAX_ATTEMPTS`: tries before a delivery is dead.
    pub max_attempts: u32,
}

/// The key of a Standard Webhooks secret (`whsec_` and the base64 of 24 to 64 random bytes).
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_")?)
        .ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// Whether `pattern` names event types: `*` (all), `billing.*` (a family), or one type.
pub fn valid_pattern(pattern: &str) -> bool {
    let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    match pattern.split_once('.') {
        _ if pattern == "*" => true,
        Some((family, "*")) => word(family),
        Some((family, name)) => word(family) && word(name),
        None => false,
    }
}

/// The outbound webhook settings.
pub(in crate::config) static WEBHOOKS: &[Setting] = &[
    Setting::new(
        "TOLLGATE_WEBHOOK_URL",
        "an endpoint of the product's backend that receives every event of the audit trail, signed as Standard Webhooks (more endpoints: the admin area)",
        Text("unset (none)"),
        |r, c| {
            let url = r.url()?;
            if url
                .as_ref()
                .is_some_and(|u| !matches!(u.scheme(), "http" | "https"))
            {
                return Err(r.error("must be an http or https URL"));
            }
            c.webhooks.url = url;
            Ok(())
        },
        |c| c.webhooks.url.as_ref().map_or(String::new(), |u| super::mask_url(u.as_str())),
    ),
    Setting::new(
        "TOLLGATE_WEBHOOK_SECRET",
        "its signing secret, `whsec_` and base64 (`openssl rand -base64 32`); two, space-separated, sign every delivery with both while the receiver moves to the first",
        Text("unset"),
        |r, c| {
            let secrets: Vec<&str> = r.value.as_deref().unwrap_or("").split_whitespace().collect();
            if secrets.len() > 2 || secrets.iter().any(|s| secret_key(s).is_none()) {
                return Err(r.error(
                    "one or two secrets, each `whsec_` and the base64 of 24 to 64 bytes",
                ));
            }
            c.webhooks.secrets = secrets.into_iter().map(Secret::new).collect();
            if c.webhooks.url.is_some() == c.webhooks.secrets.is_empty() {
                return Err(r.error("TOLLGATE_WEBHOOK_URL and TOLLGATE_WEBHOOK_SECRET go together"));
            }
            Ok(())
        },
        |c| set_or_unset(&c.webhooks.secrets.first().cloned()),
    )
    .secret(),
    Setting::new(
        "TOLLGATE_WEBHOOK_EVENTS",
        "the event types it receives, comma-separated: `*`, a family (`billing.*`) or a type (`account.deleted`)",
        Value("*"),
        |r, c| {
            let events: Vec<String> = r
                .value
                .as_deref()
                .unwrap_or("*")
                .split(',')
                .map(|p| p.trim().to_owned())
                .collect();
            if events.iter().any(|p| !valid_pattern(p)) {
                return Err(r.error("each must be `*`, `family.*` or `family.type`"));
            }
            c.webhooks.events = events;
            Ok(())
        },
        |c| c.webhooks.events.join(","),
    ),
    Setting::new(
        "TOLLGATE_WEBHOOK_MAX_ATTEMPTS",
        "tries of one delivery (waits of 5 s, then ×4 each time, at most 6 h) before it is dead and its endpoint stops, so nothing arrives out of order, until an administrator retries it",
        Value("10"),
        |r, c| {
            c.webhooks.max_attempts = match r.parse::<u32>()? {
                n @ 1..=30 => n,
                _ => return Err(r.error("must be between 1 and 30")),
            };
            Ok(())
        },
        |c| c.webhooks.max_attempts.to_string(),
    ),
];
