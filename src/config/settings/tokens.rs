//! The settings of access tokens (JWTs): their lifetime, audience and signing key. In
//! `check-config` and README order, after the table's.

use url::Url;

use super::{
    Fallback::{Text, Value},
    Setting, set_or_unset,
};
use crate::config::Secret;

/// Shortest and longest access-token lifetime, in seconds (5 and 15 minutes).
pub const ACCESS_TOKEN_SECS: std::ops::RangeInclusive<u64> = 300..=900;

/// The access-token settings.
pub(in crate::config) static TOKENS: &[Setting] = &[
    Setting::new(
        "TOLLGATE_ACCESS_TOKEN_SECS",
        "access-token (JWT) lifetime, 300 to 900: how long a plan change or a sign-out may take to reach a backend that verifies tokens itself",
        Value("600"),
        |r, c| {
            let secs: u64 = r.parse()?;
            if !ACCESS_TOKEN_SECS.contains(&secs) {
                return Err(r.error("must be between 300 and 900 seconds (5 to 15 minutes)"));
            }
            c.access_token_secs = secs;
            Ok(())
        },
        |c| c.access_token_secs.to_string(),
    ),
    Setting::new(
        "TOLLGATE_JWT_AUDIENCE",
        "the `aud` claim of access tokens: who they are for (your API)",
        Text("the base URL, without its trailing `/`"),
        |r, c| {
            c.jwt_audience = r.text().map(|a| a.trim().to_owned());
            Ok(())
        },
        |c| {
            c.jwt_audience
                .clone()
                .unwrap_or_else(|| "(the base URL)".into())
        },
    ),
    Setting::new(
        "TOLLGATE_JWT_SIGNING_KEY",
        "an Ed25519 private key (PKCS#8 PEM, or its DER in base64) to sign access tokens with; unset: one is generated at first start and kept in the database",
        Text("generated"),
        |r, c| {
            let key = r.text();
            if let Some(text) = &key {
                parse_signing_key(text)
                    .map_err(|e| r.error(format!("not an Ed25519 private key: {e}")))?;
            }
            c.jwt_signing_key = key.map(Secret::new);
            Ok(())
        },
        |c| set_or_unset(&c.jwt_signing_key),
    )
    .secret(),
];

/// The issuer (`iss`) of access tokens: the base URL without its trailing `/`.
pub fn issuer(base_url: &Url) -> String {
    base_url.as_str().trim_end_matches('/').to_owned()
}

/// The PKCS#8 document in `TOLLGATE_JWT_SIGNING_KEY`: PEM (`-----BEGIN PRIVATE KEY-----`, as
/// `openssl genpkey -algorithm ed25519` writes it) or the DER in base64.
pub fn parse_signing_key(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| "not PEM or base64".to_owned())?;
    signing_key_public(&der)?;
    Ok(der)
}

/// The 32-byte public key of an Ed25519 PKCS#8 document (v1 or v2).
pub fn signing_key_public(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    use ring::signature::KeyPair as _;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
        .map_err(|_| "not an Ed25519 private key in PKCS#8".to_owned())?;
    Ok(pair.public_key().as_ref().to_vec())
}
