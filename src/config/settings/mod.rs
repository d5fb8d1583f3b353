//! The settings table: every environment variable tollgate reads, named once, with its default,
//! its description, whether it is secret, how it is parsed and how `check-config` shows it.
//! [`Config::from_lookup`], [`Config::describe`] and the README's Settings table (kept in step by
//! `tests.rs`) all come from [`SETTINGS`], in `table.rs`.

use std::str::FromStr;

use url::Url;

use super::{Argon2Params, Config, ConfigError, Secret};

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

mod billing;
mod devices;
mod scale;
pub mod social;
mod table;
pub mod tokens;
pub mod webhooks;

/// Every setting, in `check-config` and README order.
pub(super) static SETTINGS: std::sync::LazyLock<Vec<&'static Setting>> =
    std::sync::LazyLock::new(|| {
        table::SETTINGS
            .iter()
            .chain(tokens::TOKENS)
            .chain(devices::DEVICES)
            .chain(billing::BILLING)
            .chain(social::SOCIAL)
            .chain(webhooks::WEBHOOKS)
            .chain(scale::SCALE)
            .collect()
    });

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

/// Hides the password of a URL, and the values of query parameters named like secrets
/// (`?password=`, `?token=`, `?sslkey=`…).
fn mask_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("****"));
            }
            let secretive = |k: &str| {
                let k = k.to_ascii_lowercase();
                ["pass", "secret", "token", "key", "sig", "auth"]
                    .iter()
                    .any(|w| k.contains(w))
            };
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if secretive(&k) {
                        "****".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
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

#[cfg(test)]
mod tests;
