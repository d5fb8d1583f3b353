//! Suspended accounts. An administrator (or the operator, from the command line) suspends an
//! account: its sessions and token sign-ins end at once (the session epoch moves, so trusted
//! devices and half-finished two-step sign-ins end too), its API keys are refused while the
//! suspension lasts, and every sign-in whose proof passes is refused with `account_suspended`.
//! Unsuspending lets the owner sign in again; their keys work again, ended sign-ins stay ended.
//! Billing is untouched: Stripe goes on charging until someone cancels the subscription.

use crate::{
    audit::{self, Entry, Kind},
    auth::{refresh, session_store, users},
    base::Base,
    error::AppError,
};

/// Suspends `user_id` as `actor` (a user id, or `operator`), saying why (`reason`, at most 500
/// characters, shown to administrators only); false when it was suspended already.
pub async fn suspend(
    base: &Base,
    user_id: &str,
    actor: &str,
    reason: Option<&str>,
) -> Result<bool, AppError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    let hidden = |c: char| c.is_control() || users::is_invisible(c);
    if reason.is_some_and(|r| r.chars().count() > 500 || r.chars().any(hidden)) {
        return Err(AppError::InvalidField("reason".into()));
    }
    let now = base.clock.now();
    let mut tx = base.db.begin().await?;
    let changed = users::set_suspended_on(&mut tx, user_id, Some(now)).await?;
    if changed {
        session_store::revoke_all_on(&mut tx, user_id, None).await?;
        refresh::end_all_on(&mut tx, user_id, refresh::Ending::Suspended, now).await?;
        let entry = Entry {
            kind: Kind::Suspended,
            actor,
            subject: Some(user_id),
            payload: serde_json::json!({"reason": reason}),
        };
        audit::record(&mut tx, now, entry).await?;
    }
    base.commit_for(tx, user_id).await?;
    Ok(changed)
}

/// Lifts `user_id`'s suspension as `actor`; false when it was not suspended.
pub async fn unsuspend(base: &Base, user_id: &str, actor: &str) -> Result<bool, AppError> {
    let now = base.clock.now();
    let mut tx = base.db.begin().await?;
    let changed = users::set_suspended_on(&mut tx, user_id, None).await?;
    if changed {
        let entry = Entry {
            kind: Kind::Unsuspended,
            actor,
            subject: Some(user_id),
            payload: serde_json::json!({}),
        };
        audit::record(&mut tx, now, entry).await?;
    }
    base.commit_for(tx, user_id).await?;
    Ok(changed)
}
