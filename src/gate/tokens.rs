//! Access tokens: what they claim, issuing a pair (access token and refresh token), and judging
//! one that comes back as `Authorization: Bearer`.
//!
//! An access token is a JWT signed with Ed25519 ([`crate::auth::signing`]) that carries the user
//! and their access when it was issued: any backend verifies it against
//! `/.well-known/jwks.json` without asking tollgate. So a change (a new plan, a cancellation, a
//! sign-out) reaches such a backend when the client next refreshes, within the token's lifetime
//! (`TOLLGATE_ACCESS_TOKEN_SECS`); a token never outlives the paid access it names (its `exp` is
//! at most the access's `until`). tollgate itself is stricter: at its own gates a token also needs
//! its family alive and its user's session epoch unchanged, and the access applied is the one
//! of now, as for a session.

use std::sync::Arc;

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Access, UserJson};
use crate::{
    auth::{
        refresh::{self, Family, Issued},
        users::User,
    },
    billing::Billing,
    error::Result,
};

/// An access token's claims (docs/api.md, "Access tokens").
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer: tollgate's base URL without its trailing `/`.
    pub iss: String,
    /// The audience: `TOLLGATE_JWT_AUDIENCE`, or the issuer.
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// Unix seconds.
    pub exp: i64,
    /// Unix seconds.
    pub iat: i64,
    /// This token's unique id.
    pub jti: String,
    /// The token family (the sign-in) it was issued to.
    pub sid: String,
    /// The user's address.
    pub email: String,
    /// Whether the address was proven.
    pub email_verified: bool,
    /// The access object's plan id (`null` when the catalog has no free plan).
    pub plan: Option<String>,
    /// The plan's tier.
    pub tier: Option<i64>,
    /// The plan's features.
    pub features: Vec<String>,
    /// The subscription status behind the access, or `"none"`.
    pub status: String,
}

/// A token pair as the API answers it (an OAuth 2.0 token response, with the user).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// The JWT.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The opaque, single-use refresh token.
    pub refresh_token: String,
    /// Seconds until the refresh token expires, unless it is used before.
    pub refresh_token_expires_in: i64,
    /// The user JSON, as `/api/me` answers it.
    pub user: UserJson,
}

/// The issuer and the audience tokens are made for, and checked against.
fn issuer_and_audience(state: &Billing) -> (String, String) {
    let issuer = crate::config::issuer(&state.base_url);
    let audience = state
        .config
        .jwt_audience
        .clone()
        .unwrap_or_else(|| issuer.clone());
    (issuer, audience)
}

/// Signs an access token for `user` with `access` in family `family_id`, and pairs it with
/// `refresh`.
async fn pair(
    state: &Billing,
    user: &User,
    access: Access,
    refresh: Issued,
    now: i64,
) -> Result<TokenPair> {
    let (iss, aud) = issuer_and_audience(state);
    // Never past the lifetime, the end of the paid access it names, or the end of its sign-in.
    let lifetime_end = (now + state.config.access_token_secs as i64).min(refresh.family_ends_at);
    let exp = access
        .ends_at
        .map_or(lifetime_end, |end| end.min(lifetime_end));
    let mut jti = [0u8; 16];
    rand::rng().fill_bytes(&mut jti);
    let claims = Claims {
        iss,
        aud,
        sub: user.id.clone(),
        exp,
        iat: now,
        jti: hex::encode(jti),
        sid: refresh.family_id.clone(),
        email: user.email.clone(),
        email_verified: user.email_verified,
        plan: access.plan.clone(),
        tier: access.tier,
        features: access.features.clone(),
        status: access.status.clone(),
    };
    let access_token = state.signing.sign(&claims).await?;
    Ok(TokenPair {
        token_type: "Bearer",
        access_token,
        expires_in: exp - now,
        refresh_token: refresh.token,
        refresh_token_expires_in: refresh.expires_at - now,
        user: UserJson::new(user, access),
    })
}

/// A new token pair for `user`, in a new family (a sign-in that asked for tokens, or a session
/// exchanged for them, which passes the seconds it has left as `at_most`).
pub async fn issue(state: &Billing, user: &User, at_most: Option<i64>) -> Result<TokenPair> {
    let now = state.clock.now();
    let refresh = refresh::start(state, user, now, at_most).await?;
    let access = super::access_for(state, &user.id).await?;
    tracing::info!(user = %user.id, family = %refresh.family_id, "tokens issued");
    pair(state, user, access, refresh, now).await
}

/// The next pair of the family of `refresh_token`; `None` when the token is refused (unknown,
/// expired, used, or its family over). A used token ends its family (see
/// [`crate::auth::refresh`]).
pub async fn refresh(state: &Billing, refresh_token: &str) -> Result<Option<TokenPair>> {
    let now = state.clock.now();
    match refresh::exchange(state, refresh_token, now).await? {
        refresh::Exchange::Issued(user, issued) => {
            let access = super::access_for(state, &user.id).await?;
            Ok(Some(pair(state, &user, access, issued, now).await?))
        }
        refresh::Exchange::Refused => Ok(None),
        refresh::Exchange::Reused { user_id, family_id } => {
            state.cache.forget_user(&user_id);
            crate::telemetry::security_event(
                "refresh_token_reused",
                None,
                &format!("a used refresh token came back: family {family_id} of {user_id} ended"),
            );
            Ok(None)
        }
    }
}

/// An access token that verified, with its family as it was when it was checked.
#[derive(Debug)]
pub struct Verified {
    /// What it claims.
    pub claims: Claims,
    /// Its family.
    pub family: Family,
}

/// The verified token `token`, if its signature, issuer, audience and expiry check and its
/// family exists; cached (by the token's hash, with its user) so a client that sends one token
/// many times pays for one signature check per cache lifetime. Whether the family still holds
/// for the user is the caller's to check with the user it loads.
pub async fn resolve(state: &Billing, token: &str) -> Result<Option<Arc<Verified>>> {
    let now = state.clock.now();
    let cache_key = format!("jwt:{}", hex::encode(Sha256::digest(token.as_bytes())));
    let live = |v: &Verified| now < v.claims.exp;
    if let Some(verified) = state.cache.credential::<Verified>(&cache_key) {
        return Ok(live(&verified).then_some(verified));
    }
    let ticket = state.cache.ticket();
    let (iss, aud) = issuer_and_audience(state);
    let Some(claims) = state.signing.verify::<Claims>(token, &iss, &aud).await? else {
        return Ok(None);
    };
    if !live_claims(&claims, now, state.config.access_token_secs as i64) {
        return Ok(None);
    }
    let Some(family) = refresh::family(&state.db, &claims.sid).await? else {
        return Ok(None);
    };
    if family.user_id != claims.sub {
        return Ok(None);
    }
    let verified = Arc::new(Verified { claims, family });
    state
        .cache
        .put_credential(ticket, &cache_key, &verified.claims.sub, verified.clone());
    Ok(Some(verified))
}

/// Seconds of clock difference allowed between the instance that issued a token and the one that
/// judges it.
const SKEW_SECS: i64 = 5;

/// True while the claims are within their lifetime by tollgate's clock: issued not in the future,
/// not expired, and made to live no longer than the setting allows (a token that claims more was
/// not made by this deployment as it is configured). Overflowing numbers are refused.
fn live_claims(claims: &Claims, now: i64, lifetime: i64) -> bool {
    let lived = claims.exp.checked_sub(claims.iat);
    claims.iat >= 0
        && claims.iat <= now + SKEW_SECS
        && now < claims.exp
        && claims.exp <= now + lifetime + SKEW_SECS
        && lived.is_some_and(|l| (0..=lifetime).contains(&l))
}
