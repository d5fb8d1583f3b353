//! OpenID Connect: the issuer's metadata by discovery, its signing keys (JWKS), and the ID token
//! checked with jsonwebtoken: the signature by the key its `kid` names, in an algorithm that key
//! allows (never HMAC, never `none`); `iss`, `aud` (and `azp` when there are several audiences),
//! `exp` with a minute of leeway; and the nonce of this sign-in.

use std::{sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tokio::sync::Mutex;
use url::Url;

use super::{Endpoints, Identity, ProviderError, answers::json_of};

/// How long metadata and keys are kept before they are read again (keys are also read again,
/// at most once a minute, when a token names one not seen).
const METADATA_SECS: u64 = 3600;
const KEY_REFRESH_SECS: u64 = 60;
/// Algorithms accepted in ID tokens.
const ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    jwks_uri: Url,
}

/// What discovery found, with the keys.
struct Metadata {
    issuer: String,
    endpoints: Endpoints,
    jwks_uri: Url,
    keys: JwkSet,
    fetched: tokio::time::Instant,
    keys_fetched: tokio::time::Instant,
}

/// An OpenID Connect issuer, read by discovery on first use.
pub struct Issuer {
    issuer: Url,
    /// Other spellings of the issuer its tokens may carry (Google's `accounts.google.com`).
    also: &'static [&'static str],
    cache: Mutex<Option<Arc<Metadata>>>,
    /// Held while the provider is asked (the cache's own lock is not).
    reading: Mutex<()>,
}

fn trimmed(url: &str) -> &str {
    url.trim_end_matches('/')
}

impl Issuer {
    /// The issuer at `issuer`.
    pub fn new(issuer: Url, also: &'static [&'static str]) -> Self {
        Self {
            issuer,
            also,
            cache: Mutex::new(None),
            reading: Mutex::new(()),
        }
    }

    /// The metadata and keys, read again when old (the cache's lock is not held while the
    /// provider is asked: one slow provider answer does not queue every sign-in behind it).
    async fn metadata(
        &self,
        http: &reqwest::Client,
        refresh_keys: bool,
    ) -> Result<Arc<Metadata>, ProviderError> {
        let usable = |meta: &Metadata| {
            let fresh = meta.fetched.elapsed() < Duration::from_secs(METADATA_SECS);
            let keys_recent = meta.keys_fetched.elapsed() < Duration::from_secs(KEY_REFRESH_SECS);
            (fresh, fresh && (!refresh_keys || keys_recent))
        };
        if let Some(meta) = self.cache.lock().await.clone()
            && usable(&meta).1
        {
            return Ok(meta);
        }
        // One reading at a time: many sign-ins at once ask the provider once, and an older answer
        // can never land after a newer one.
        let _reading = self.reading.lock().await;
        let cached = self.cache.lock().await.clone();
        if let Some(meta) = cached {
            let (fresh, enough) = usable(&meta);
            if enough {
                return Ok(meta);
            }
            if fresh {
                let keys = fetch_keys(http, &meta.jwks_uri).await?;
                let updated = Arc::new(Metadata {
                    issuer: meta.issuer.clone(),
                    endpoints: meta.endpoints.clone(),
                    jwks_uri: meta.jwks_uri.clone(),
                    keys,
                    fetched: meta.fetched,
                    keys_fetched: tokio::time::Instant::now(),
                });
                *self.cache.lock().await = Some(updated.clone());
                return Ok(updated);
            }
        }
        let base = trimmed(self.issuer.as_str());
        let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
            .map_err(|_| ProviderError::Unavailable("discovery URL".into()))?;
        let found: Discovery = fetch(http, &url).await?;
        // The document must be the issuer's own (OpenID Connect Discovery 1.0, section 4.3).
        if trimmed(&found.issuer) != base {
            return Err(ProviderError::Unavailable(
                "discovery names another issuer".into(),
            ));
        }
        let keys = fetch_keys(http, &found.jwks_uri).await?;
        let now = tokio::time::Instant::now();
        let meta = Arc::new(Metadata {
            issuer: found.issuer,
            endpoints: Endpoints {
                authorize: found.authorization_endpoint,
                token: found.token_endpoint,
            },
            jwks_uri: found.jwks_uri,
            keys,
            fetched: now,
            keys_fetched: now,
        });
        *self.cache.lock().await = Some(meta.clone());
        Ok(meta)
    }

    /// The issuer's authorization and token endpoints.
    pub async fn endpoints(&self, http: &reqwest::Client) -> Result<Endpoints, ProviderError> {
        Ok(self.metadata(http, false).await?.endpoints.clone())
    }

    /// The identity an ID token vouches for, once every check passed.
    pub async fn identity(
        &self,
        http: &reqwest::Client,
        provider: &str,
        id_token: &str,
        (client_id, nonce): (&str, &str),
    ) -> Result<Identity, ProviderError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|_| ProviderError::IdToken("malformed".into()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(ProviderError::IdToken(format!(
                "algorithm {:?}",
                header.alg
            )));
        }
        // Extensions tollgate does not understand must not be ignored (RFC 7515, 4.1.11).
        if header.crit.is_some() {
            return Err(ProviderError::IdToken("crit".into()));
        }
        let mut meta = self.metadata(http, false).await?;
        let key = match find_key(&meta.keys, header.kid.as_deref()) {
            Some(key) => key,
            None => {
                // A key rotated in since the keys were read: read them again, once.
                meta = self.metadata(http, true).await?;
                find_key(&meta.keys, header.kid.as_deref())
                    .ok_or_else(|| ProviderError::IdToken("unknown key".into()))?
            }
        };
        if key
            .common
            .key_algorithm
            .is_some_and(|alg| alg.to_string() != format!("{:?}", header.alg))
        {
            return Err(ProviderError::IdToken("algorithm not the key's".into()));
        }
        if matches!(
            key.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) || key
            .common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&jsonwebtoken::jwk::KeyOperations::Verify))
        {
            return Err(ProviderError::IdToken("not a signing key".into()));
        }
        if !key_fits(key, header.alg) {
            return Err(ProviderError::IdToken(
                "key type not the algorithm's".into(),
            ));
        }
        let decoding = DecodingKey::from_jwk(key)
            .map_err(|_| ProviderError::IdToken("unusable key".into()))?;
        let mut validation = Validation::new(header.alg);
        let mut issuers = vec![meta.issuer.clone()];
        issuers.extend(self.also.iter().map(|s| (*s).to_owned()));
        validation.set_issuer(&issuers);
        validation.set_audience(&[client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        let claims = jsonwebtoken::decode::<Claims>(id_token, &decoding, &validation)
            .map_err(|e| ProviderError::IdToken(format!("{:?}", e.kind())))?
            .claims;
        // With several audiences, `azp` must name this client (OpenID Connect Core, 3.1.3.7).
        let several = matches!(&claims.aud, Audience::Many(list) if list.len() > 1);
        if claims.azp.as_deref().is_some_and(|azp| azp != client_id)
            || (several && claims.azp.is_none())
        {
            return Err(ProviderError::IdToken("azp".into()));
        }
        // Issued now, not in the future, and not for longer than a day.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if claims.iat.is_none_or(|iat| iat > now + 60) || claims.exp > now + 86_400 {
            return Err(ProviderError::IdToken("iat or exp".into()));
        }
        let sent = claims.nonce.as_deref().unwrap_or("");
        if !bool::from(sent.as_bytes().ct_eq(nonce.as_bytes())) || nonce.is_empty() {
            return Err(ProviderError::IdToken("nonce".into()));
        }
        if claims.sub.is_empty() || claims.sub.len() > 255 {
            return Err(ProviderError::IdToken("sub".into()));
        }
        Ok(Identity {
            provider: provider.to_owned(),
            issuer: trimmed(&meta.issuer).to_owned(),
            subject: claims.sub,
            email: claims.email,
            email_verified: claims.email_verified.is_some_and(|v| v.yes()),
        })
    }
}

/// Whether the key's type (and curve) is the one the algorithm signs with: RSA for RS*, P-256
/// for ES256, P-384 for ES384, Ed25519 for EdDSA; never a symmetric key.
fn key_fits(key: &jsonwebtoken::jwk::Jwk, alg: Algorithm) -> bool {
    use jsonwebtoken::jwk::{AlgorithmParameters as P, EllipticCurve as C};
    match (&key.algorithm, alg) {
        (P::RSA(_), Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512) => true,
        (P::EllipticCurve(ec), Algorithm::ES256) => ec.curve == C::P256,
        (P::EllipticCurve(ec), Algorithm::ES384) => ec.curve == C::P384,
        (P::OctetKeyPair(okp), Algorithm::EdDSA) => okp.curve == C::Ed25519,
        _ => false,
    }
}

fn find_key<'a>(keys: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => keys.find(kid),
        // No `kid`: only a provider with one key can be understood.
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}

/// `email_verified` as providers send it: a boolean, or (some) the string `"true"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
    Other(serde::de::IgnoredAny),
}

impl Flag {
    fn yes(&self) -> bool {
        match self {
            Flag::Bool(b) => *b,
            Flag::Text(t) => t == "true",
            Flag::Other(_) => false,
        }
    }
}

/// `aud`: one audience or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    Many(Vec<String>),
    One(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    aud: Audience,
    exp: i64,
    iat: Option<i64>,
    nonce: Option<String>,
    azp: Option<String>,
    email: Option<String>,
    email_verified: Option<Flag>,
}

/// The provider's keys, skipping any tollgate cannot read (one odd key must not stop sign-ins).
async fn fetch_keys(http: &reqwest::Client, url: &Url) -> Result<JwkSet, ProviderError> {
    #[derive(Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw = fetch(http, url).await?;
    let keys = raw
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value(k).ok())
        .collect();
    Ok(JwkSet { keys })
}

/// GETs JSON from a provider.
pub(super) async fn fetch<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
) -> Result<T, ProviderError> {
    let request = http.get(url.clone()).header("accept", "application/json");
    json_of(request, url.as_str()).await
}
