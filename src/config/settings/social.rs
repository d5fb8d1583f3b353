//! The settings of social sign-in: Google, GitHub and any OpenID Connect issuer. A provider is on
//! when its client id and secret are both set (one without the other stops start-up). In
//! `check-config` and README order, after the devices'.

use url::Url;

use super::{
    Fallback::{Text, Value},
    Setting, set_or_unset,
};
use crate::config::{Config, ConfigError, Secret};

/// The social sign-in settings, as read.
#[derive(Clone, Debug, Default)]
pub struct Social {
    /// `TOLLGATE_GOOGLE_CLIENT_ID`.
    pub google_client_id: Option<String>,
    /// `TOLLGATE_GOOGLE_CLIENT_SECRET`.
    pub google_client_secret: Option<Secret>,
    /// `TOLLGATE_GITHUB_CLIENT_ID`.
    pub github_client_id: Option<String>,
    /// `TOLLGATE_GITHUB_CLIENT_SECRET`.
    pub github_client_secret: Option<Secret>,
    /// `TOLLGATE_GITHUB_URL`: where GitHub's OAuth pages are (GitHub Enterprise, tests).
    pub github_url: Option<Url>,
    /// `TOLLGATE_GITHUB_API_URL`: GitHub's REST API.
    pub github_api_url: Option<Url>,
    /// `TOLLGATE_OIDC_ISSUER`: an OpenID Connect issuer, found by discovery.
    pub oidc_issuer: Option<Url>,
    /// `TOLLGATE_OIDC_CLIENT_ID`.
    pub oidc_client_id: Option<String>,
    /// `TOLLGATE_OIDC_CLIENT_SECRET`.
    pub oidc_client_secret: Option<Secret>,
    /// `TOLLGATE_OIDC_NAME`: the provider's name on the buttons.
    pub oidc_name: String,
}

/// A provider's client credentials, when both are set.
pub fn pair<'a>(
    id: &'a Option<String>,
    secret: &'a Option<Secret>,
) -> Option<(&'a str, &'a Secret)> {
    Some((id.as_deref()?, secret.as_ref()?))
}

fn text(r: &super::Raw) -> Option<String> {
    r.text()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn show(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

/// The social sign-in settings.
pub(in crate::config) static SOCIAL: &[Setting] = &[
    Setting::new(
        "TOLLGATE_GOOGLE_CLIENT_ID",
        "Google sign-in: the OAuth client id (Google Cloud console → Credentials); with its secret, \"Continue with Google\" appears",
        Text("unset (off)"),
        |r, c| {
            c.social.google_client_id = text(r);
            Ok(())
        },
        |c| show(&c.social.google_client_id),
    ),
    Setting::new(
        "TOLLGATE_GOOGLE_CLIENT_SECRET",
        "Google sign-in: the client secret",
        Text("unset"),
        |r, c| {
            c.social.google_client_secret = text(r).map(Secret::new);
            Ok(())
        },
        |c| set_or_unset(&c.social.google_client_secret),
    )
    .secret(),
    Setting::new(
        "TOLLGATE_GITHUB_CLIENT_ID",
        "GitHub sign-in: the OAuth app's client id (GitHub → Settings → Developer settings → OAuth Apps)",
        Text("unset (off)"),
        |r, c| {
            c.social.github_client_id = text(r);
            Ok(())
        },
        |c| show(&c.social.github_client_id),
    ),
    Setting::new(
        "TOLLGATE_GITHUB_CLIENT_SECRET",
        "GitHub sign-in: the client secret",
        Text("unset"),
        |r, c| {
            c.social.github_client_secret = text(r).map(Secret::new);
            Ok(())
        },
        |c| set_or_unset(&c.social.github_client_secret),
    )
    .secret(),
    Setting::new(
        "TOLLGATE_GITHUB_URL",
        "where GitHub's sign-in pages are (GitHub Enterprise Server)",
        Value("https://github.com"),
        |r, c| {
            c.social.github_url = r.url()?;
            Ok(())
        },
        |c| {
            c.social
                .github_url
                .as_ref()
                .map_or(String::new(), Url::to_string)
        },
    ),
    Setting::new(
        "TOLLGATE_GITHUB_API_URL",
        "GitHub's REST API (GitHub Enterprise Server: `https://HOST/api/v3`)",
        Value("https://api.github.com"),
        |r, c| {
            c.social.github_api_url = r.url()?;
            Ok(())
        },
        |c| {
            c.social
                .github_api_url
                .as_ref()
                .map_or(String::new(), Url::to_string)
        },
    ),
    Setting::new(
        "TOLLGATE_OIDC_ISSUER",
        "any OpenID Connect provider (Okta, Auth0, Keycloak, Microsoft Entra…): its issuer URL, read by discovery (`/.well-known/openid-configuration`)",
        Text("unset (off)"),
        |r, c| {
            c.social.oidc_issuer = r.url()?;
            Ok(())
        },
        |c| {
            c.social
                .oidc_issuer
                .as_ref()
                .map_or(String::new(), Url::to_string)
        },
    ),
    Setting::new(
        "TOLLGATE_OIDC_CLIENT_ID",
        "that provider's client id",
        Text("unset"),
        |r, c| {
            c.social.oidc_client_id = text(r);
            Ok(())
        },
        |c| show(&c.social.oidc_client_id),
    ),
    Setting::new(
        "TOLLGATE_OIDC_CLIENT_SECRET",
        "that provider's client secret",
        Text("unset"),
        |r, c| {
            c.social.oidc_client_secret = text(r).map(Secret::new);
            Ok(())
        },
        |c| set_or_unset(&c.social.oidc_client_secret),
    )
    .secret(),
    Setting::new(
        "TOLLGATE_OIDC_NAME",
        "that provider's name on the buttons (\"Continue with …\")",
        Value("Single sign-on"),
        |r, c| {
            c.social.oidc_name = text(r).unwrap_or_else(|| "Single sign-on".into());
            Ok(())
        },
        |c| c.social.oidc_name.clone(),
    ),
];

/// Each provider's id and secret come together, and the OpenID Connect one needs its issuer.
pub(in crate::config) fn check(c: &Config) -> Result<(), ConfigError> {
    let s = &c.social;
    let pairs = [
        (
            "TOLLGATE_GOOGLE_CLIENT_ID, TOLLGATE_GOOGLE_CLIENT_SECRET",
            s.google_client_id.is_some(),
            s.google_client_secret.is_some(),
        ),
        (
            "TOLLGATE_GITHUB_CLIENT_ID, TOLLGATE_GITHUB_CLIENT_SECRET",
            s.github_client_id.is_some(),
            s.github_client_secret.is_some(),
        ),
        (
            "TOLLGATE_OIDC_CLIENT_ID, TOLLGATE_OIDC_CLIENT_SECRET",
            s.oidc_client_id.is_some(),
            s.oidc_client_secret.is_some(),
        ),
    ];
    for (names, id, secret) in pairs {
        if id != secret {
            return Err(ConfigError::new(names, "set both, or neither"));
        }
    }
    if s.oidc_client_id.is_some() != s.oidc_issuer.is_some() {
        return Err(ConfigError::new(
            "TOLLGATE_OIDC_ISSUER, TOLLGATE_OIDC_CLIENT_ID",
            "an OpenID Connect provider needs its issuer and its client id and secret",
        ));
    }
    Ok(())
}
