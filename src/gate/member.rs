//! The signed-in user of a request with their access: the [`CurrentUser`] extractor.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{HeaderMap, request::Parts},
};
use std::sync::Arc;

use serde::Serialize;
use tower_sessions::Session;

use super::Access;
use crate::{
    auth::{
        self,
        api_keys::{self, ApiKey, Presented, Scope},
        users::User,
    },
    billing::Billing,
    error::{AppError, Result},
};

/// The user of this request, by their session or by an API key with the `read` scope; rejects
/// with 401 `unauthenticated` (403 `scope_required` for a key without `read`).
///
/// A request that presents an API key (`Bearer tg_…`, or Basic with `tg_…` as the password) is
/// judged by the key alone, never by a cookie beside it: a key that is malformed, unknown,
/// revoked or expired gets 401.
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
    /// The API key the request came with; `None` for a session.
    pub key: Option<Arc<ApiKey>>,
}

impl CurrentUser {
    /// Refuses a key without `scope` (403 `scope_required`); a session may do everything.
    pub fn require(&self, scope: Scope) -> Result<()> {
        match &self.key {
            Some(key) if !key.allows(scope) => Err(AppError::ScopeRequired(scope.as_str())),
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
    /// A session, or an API key with the scope.
    SessionOrKey(Scope),
    /// A session only; any `Authorization` header is refused.
    SessionOnly,
}

/// The user of a request by the credentials `accepts` takes; 401 when there is none.
async fn extract(state: &Billing, parts: &mut Parts, accepts: Accepts) -> Result<CurrentUser> {
    let user = match accepts {
        Accepts::SessionOrKey(scope) => request_user_with(state, parts, scope).await?,
        Accepts::SessionOnly => {
            if api_keys::presented(&parts.headers) != Presented::Nothing {
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
/// A request that presents an API key gets 403 `session_required`.
pub struct SessionUser(pub CurrentUser);

user_extractor!(SessionUser, Accepts::SessionOnly, SessionUser);

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

/// The user of a request with these headers and this session: by the tollgate key an
/// `Authorization` header presents (one with `scope`), else by the session. An `Authorization`
/// header for something else (an upstream app's own) is not tollgate's and is left alone.
pub async fn user_of(
    state: &Billing,
    headers: &HeaderMap,
    session: Session,
    scope: Scope,
) -> Result<Option<CurrentUser>> {
    let secret = match api_keys::presented(headers) {
        Presented::Nothing => return current_user(state, session).await,
        Presented::Key(secret) => secret,
        Presented::Ambiguous => {
            crate::telemetry::security_event(
                "api_key_refused",
                None,
                "several authorization headers",
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
        key: Some(key),
    };
    current.require(scope)?;
    Ok(Some(current))
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
        key: None,
    }))
}

/// The user JSON (docs/api.md, "Accounts").
#[derive(Debug, Serialize)]
pub struct UserJson {
    /// Opaque id.
    pub id: String,
    /// As typed.
    pub email: String,
    /// Whether the address was proven.
    pub email_verified: bool,
    /// What the user's subscriptions entitle them to.
    pub access: Access,
}

impl UserJson {
    /// The JSON shape clients see of `user` with `access`.
    pub fn new(user: &User, access: Access) -> Self {
        Self {
            id: user.id.clone(),
            email: user.email.clone(),
            email_verified: user.email_verified,
            access,
        }
    }
}
