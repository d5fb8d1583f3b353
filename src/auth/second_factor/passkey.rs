//! Where passkeys meet the second factor: a passkey ceremony for a pending sign-in's second step,
//! and the current code that adding a passkey takes while two-factor sign-in is on.

use super::{CountedOn, Proof, check, enabled, pending};
use crate::{
    auth::{Auth, SignedIn, passkeys, rate_limit, rate_limit::ClientIp, users},
    error::{AppError, Result},
};

/// Options for a passkey to finish the pending sign-in `token` (which must be alive; this does
/// not count as an attempt).
pub async fn passkey_options(state: &Auth, ip: ClientIp, token: &str) -> Result<passkeys::Options> {
    rate_limit::hit_ip(state, rate_limit::TOKEN_PER_IP, ip).await?;
    let (user_id, epoch) = pending::peek(&state.db, token, state.clock.now())
        .await?
        .ok_or(AppError::PendingSignInInvalid)?;
    // Dead since the account's sessions were revoked, as `complete` would find.
    let mut conn = state.db.pool.acquire().await?;
    users::find_by_id_on(&mut conn, &user_id)
        .await?
        .filter(|u| u.session_epoch == epoch)
        .ok_or(AppError::PendingSignInInvalid)?;
    drop(conn);
    let hash = passkeys::ceremonies::hash(token);
    passkeys::assertion_options(state, &user_id, passkeys::Purpose::SecondStep, Some(&hash)).await
}

/// For a change that adds a way in (a passkey): with two-factor sign-in on, a current code (from
/// the app, or a recovery code) is checked and spent, so a stolen session cannot add one and then
/// use it as the second factor it lacks; `SecondFactorRequired` without one. Off, nothing.
pub async fn check_if_on(
    state: &Auth,
    current: SignedIn<'_>,
    code: Option<&str>,
    recovery_code: Option<&str>,
) -> Result<()> {
    if !enabled(state, &current.user.id).await? {
        return Ok(());
    }
    let proof = match (code, recovery_code) {
        (None, None) => return Err(AppError::SecondFactorRequired),
        (code, recovery) => Proof::from_fields(code, recovery, None)?,
    };
    check(state, current.user, proof, CountedOn::Session(current)).await?;
    Ok(())
}
