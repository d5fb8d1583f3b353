//! The signed-in user of a request with their access: the [`CurrentUser`] extractor.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{HeaderMap, request::Parts},
};
use std::sync::Arc;

use tower_sessions::Session;

use super::{Access, tokens};
use crate::{
    auth::{
        self,
        api_keys::{self, ApiKey, Scope},
        credentials::{self, Presented},
        users::User,
    },
    billing::Billing,
    error::{AppError, Result},
};

/// The user of this request, by their session, an access token, or an API key with the `read`
/// scope; rejects with 401 `unauthenticated` (403 `scope_required` for a key without `read`).
///
/// A request that presents an API key (`Bearer tg_…`, or Basic with `tg_…` as the password) or an
/// access token (`Bearer` and a JWT of tollgate's) is judged by it alone, never by a cookie
/// beside it: one that is malformed, unknown, revoked or expired gets 401.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    /// The user's row.
    pub user: User,
    /// What the user's subscriptions entitle them to, now.
    pub access: Access,
    /// The session, for handlers that rotate or end it.
    pub session: Session,
    /// The user's session epoch this session was signed in under.
    pub session_epoch: i64,
    /// What the request signed in with.
    pub via: Via,
}

/// The credential a request's user came by.
#[derive(Clone, Debug)]
pub enum Via {
    /// A session cookie.
    Session,
    /// An API key.
    Key(Arc<ApiKey>),
    /// An access token (JWT).
    Token(Arc<tokens::Verified>),
}

impl CurrentUser {
    /// Refuses a key without `scope` (403 `scope_required`); a session or an access token may do
    /// everything but account changes (those take [`SessionUser`]).
    pub fn require(&self, scope: Scope) -> Result<()> {
        match &self.via {
            Via::Key(key) if !key.allows(scope) => Err(AppError::ScopeRequired(scope.as_str())),
            _ => Ok(()),
        }
    }

    /// The signed-in user, as auth's flows take them.
    pub fn signed_in(&self) -> auth::SignedIn<'_> {
        auth::SignedIn {
            user: &self.user,
            session: &self.session,
            session_epoch: self.session_epoch,
        }
    }
}

/// Which credentials an extractor takes.
#[derive(Clone, Copy)]
enum Accepts {
    /// A session, an access token, or an API key with the scope.
    SessionOrKey(Scope),
    /// A session only; a key or an access token is refused.
    SessionOnly,
}

/// The user of a request by the credentials `accepts` takes; 401 when there is none.
async fn extract(state: &Billing, parts: &mut Parts, accepts: Accepts) -> Result<CurrentUser> {
    let user = match accepts {
        Accepts::SessionOrKey(scope) => request_user_with(state, parts, scope).await?,
        Accepts::SessionOnly => {
            if credentials::presented(&parts.headers) != Presented::Nothing {
                return Err(AppError::SessionRequired);
            }
            let session = request_session(state, parts).await?;
            current_user(state, session).await?
        }
    };
    user.ok_or(AppError::Unauthenticated)
}

/// Implements `FromRequestParts` for a user extractor taking `accepts`.
macro_rules! user_extractor {
    ($extractor:ty, $accepts:expr, $wrap:expr) => {
        impl<S> FromRequestParts<S> for $extractor
        where
            Billing: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = AppError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
                extract(&Billing::from_ref(state), parts, $accepts)
                    .await
                    .map($wrap)
            }
        }
    };
}

user_extractor!(CurrentUser, Accepts::SessionOrKey(Scope::Read), |u| u);

/// The user of a request whose key (if it came with one) has the `billing` scope.
pub struct BillingUser(pub CurrentUser);

user_extractor!(
    BillingUser,
    Accepts::SessionOrKey(Scope::Billing),
    BillingUser
);

/// The signed-in user of a request by their session only: account changes and key management.
/// A request that presents an API key or an access token gets 403 `session_required`.
pub struct SessionUser(pub CurrentUser);

user_extractor!(SessionUser, Accepts::SessionOnly, SessionUser);

/// An administrator signed in by session (the `admin` role). Anyone else, signed in or not, with
/// a key or a token, gets 404 `not_found`: the admin area does not show that it exists.
pub struct AdminUser(pub CurrentUser);

impl<S> FromRequestParts<S> for AdminUser
where
    Billing: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let user = extract(&Billing::from_ref(state), parts, Accepts::SessionOnly).await;
        match user {
            Ok(u)
                if u.access
                    .roles
                    .iter()
                    .any(|r| r == crate::auth::roles::ADMIN) =>
            {
                Ok(Self(u))
            }
            // A failure to answer is not a refusal: the database being down stays a 503.
            Err(e @ (AppError::ServiceUnavailable | AppError::Internal(_))) => Err(e),
            _ => Err(AppError::NotFound),
        }
    }
}

async fn request_session(state: &Billing, parts: &mut Parts) -> Result<Session> {
    Session::from_request_parts(parts, state)
        .await
        .map_err(|_| AppError::Internal(anyhow::anyhow!("session layer missing")))
}

/// The user of a request, by session or by an API key with the `read` scope, if any.
pub async fn request_user(state: &Billing, parts: &mut Parts) -> Result<Option<CurrentUser>> {
    request_user_with(state, parts, Scope::Read).await
}

/// The user of a request, by session or by an API key with `scope`, if any. A request that
/// presents a key is judged by it alone (see [`CurrentUser`]).
async fn request_user_with(
    state: &Billing,
    parts: &mut Parts,
    scope: Scope,
) -> Result<Option<CurrentUser>> {
    let session = request_session(state, parts).await?;
    user_of(state, &parts.headers, session, scope).await
}

/// The user of a request with these headers and this session: by the tollgate key (one with
/// `scope`) or access token an `Authorization` header presents, else by the session. An
/// `Authorization` header for something else (an upstream app's own) is not tollgate's and is
/// left alone.
pub async fn user_of(
    state: &Billing,
    headers: &HeaderMap,
    session: Session,
    scope: Scope,
) -> Result<Option<CurrentUser>> {
    let secret = match credentials::presented(headers) {
        Presented::Nothing => return current_user(state, session).await,
        Presented::Key(secret) => secret,
        Presented::Token(token) => return token_user(state, &token, session).await.map(Some),
        Presented::Ambiguous => {
            crate::telemetry::security_event(
                "credential_refused",
                None,
                "several authorization headers, or one that is not text",
            );
            return Err(AppError::Unauthenticated);
        }
    };
    let Some(key) = api_keys::resolve(state, &secret, state.clock.now()).await? else {
        crate::telemetry::security_event("api_key_refused", None, "unknown, revoked or expired");
        return Err(AppError::Unauthenticated);
    };
    let (user, access) = super::load_member(state, &key.user_id)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    let current = CurrentUser {
        session_epoch: user.session_epoch,
        user,
        access,
        session,
        via: Via::Key(key),
    };
    current.require(scope)?;
    Ok(Some(current))
}

/// The user of an access token: a valid token whose family still holds for its user (not ended,
/// not outlived by a password change or a sign-out everywhere); 401 otherwise.
async fn token_user(state: &Billing, token: &str, session: Session) -> Result<CurrentUser> {
    let refused = |why: &str| {
        crate::telemetry::security_event("access_token_refused", None, why);
        AppError::Unauthenticated
    };
    let verified = tokens::resolve(state, token)
        .await?
        .ok_or_else(|| refused("bad signature, issuer, audience or key, or expired"))?;
    let (user, access) = super::load_member(state, &verified.claims.sub)
        .await?
        .ok_or_else(|| refused("the user is gone"))?;
    if !verified.family.holds_for(&user, state.clock.now()) {
        let family = &verified.family.id;
        return Err(refused(&format!(
            "its sign-in ended (family {family} of {})",
            user.id
        )));
    }
    Ok(CurrentUser {
        session_epoch: user.session_epoch,
        user,
        access,
        session,
        via: Via::Token(verified),
    })
}

/// Loads the user of `session` with their access, enforcing the session's timeouts and
/// revocations ([`auth::session_claim`], [`auth::session_holds`]).
pub async fn current_user(state: &Billing, session: Session) -> Result<Option<CurrentUser>> {
    let Some(claim) = auth::session_claim(state, &session).await? else {
        return Ok(None);
    };
    let member = super::load_member(state, &claim.user_id).await?;
    if !auth::session_holds(&session, &claim, member.as_ref().map(|(user, _)| user)).await? {
        return Ok(None);
    }
    let Some((user, access)) = member else {
        return Ok(None);
    };
    Ok(Some(CurrentUser {
        user,
        access,
        session,
        session_epoch: claim.session_epoch,
        via: Via::Session,
    }))
}
