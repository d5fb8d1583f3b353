//! The signed-in user of a request with their access: the [`CurrentUser`] extractor.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::request::Parts,
};
use serde::Serialize;
use tower_sessions::Session;

use super::Access;
use crate::{
    auth::{self, users::User},
    billing::Billing,
    error::{AppError, Result},
};

/// The signed-in user of this request; rejects with 401 `unauthenticated`.
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
}

impl CurrentUser {
    /// The signed-in user, as auth's flows take them.
    pub fn signed_in(&self) -> auth::SignedIn<'_> {
        auth::SignedIn {
            user: &self.user,
            session: &self.session,
            session_epoch: self.session_epoch,
        }
    }
}

impl<S> FromRequestParts<S> for CurrentUser
where
    Billing: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = Billing::from_ref(state);
        request_user(&state, parts)
            .await?
            .ok_or(AppError::Unauthenticated)
    }
}

/// The signed-in user of a request, if any (see [`current_user`]).
pub async fn request_user(state: &Billing, parts: &mut Parts) -> Result<Option<CurrentUser>> {
    let session = Session::from_request_parts(parts, state)
        .await
        .map_err(|_| AppError::Internal(anyhow::anyhow!("session layer missing")))?;
    current_user(state, session).await
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
