//! The periodic clean-up of what expires: sessions, rate-limit counters, refresh tokens, signing
//! keys, email tokens, pending sign-ins, passkey ceremonies, social sign-in flows, and audit
//! events (and outbound webhook attempts) past their retention.

use std::time::Duration;

use super::{rate_limit, session_store};
use crate::{clock::Clock, db::Db};

/// Deletes expired sessions, stale rate-limit counters, dead refresh tokens and token families,
/// signing keys no token can need any more, stale email tokens and expired pending sign-ins,
/// every ten minutes.
pub async fn run_forever(db: Db, clock: Clock, retired_window: i64, audit_days: i64) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        if let Err(e) = session_store::delete_expired(&db).await {
            tracing::warn!(error = %e, "session cleanup failed");
        }
        if let Err(e) = rate_limit::delete_stale(&db).await {
            tracing::warn!(error = %e, "rate-limit cleanup failed");
        }
        if let Err(e) = super::refresh::delete_expired(&db, clock.now()).await {
            tracing::warn!(error = %e, "refresh-token cleanup failed");
        }
        let retired = super::signing::Keys::delete_retired(&db, retired_window);
        if let Err(e) = retired.await {
            tracing::warn!(error = %e, "signing-key cleanup failed");
        }
        if let Err(e) = crate::email::tokens::delete_stale(&db).await {
            tracing::warn!(error = %e, "email token cleanup failed");
        }
        let pending = super::second_factor::pending::delete_expired(&db, clock.now());
        if let Err(e) = pending.await {
            tracing::warn!(error = %e, "pending sign-in cleanup failed");
        }
        let ceremonies = super::passkeys::ceremonies::delete_expired(&db, clock.now());
        if let Err(e) = ceremonies.await {
            tracing::warn!(error = %e, "passkey ceremony cleanup failed");
        }
        let flows = super::social::flows::delete_expired(&db, clock.now());
        if let Err(e) = flows.await {
            tracing::warn!(error = %e, "sign-in flow cleanup failed");
        }
        let audit = crate::audit::prune(&db, clock.now() - audit_days * 86_400);
        if let Err(e) = audit.await {
            tracing::warn!(error = %e, "audit trail pruning failed");
        }
        let attempts = crate::outbound::prune_attempts(&db, clock.now() - audit_days * 86_400);
        if let Err(e) = attempts.await {
            tracing::warn!(error = %e, "webhook attempt pruning failed");
        }
        let links = super::social::links::delete_expired(&db, clock.now());
        if let Err(e) = links.await {
            tracing::warn!(error = %e, "pending link cleanup failed");
        }
    }
}
