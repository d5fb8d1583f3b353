//! Changing the address: the password first, then a link to the new address and a notice to the
//! old one. Confirming the link (in `account/email.rs`) moves the account to the new address.

use super::{
    Auth, SignedIn,
    email_flows::link,
    rate_limit,
    rate_limit::ClientIp,
    users::{self, Email},
};
use crate::{
    email::{
        self, Kind, Outgoing,
        tokens::{self, Purpose},
    },
    error::{AppError, Result},
    telemetry,
};

/// Starts an email change: checks the password, sends a link to the new address and a notice to
/// the old one.
pub async fn request_email_change(
    state: &Auth,
    ip: ClientIp,
    current: SignedIn<'_>,
    current_password: Option<&str>,
    new_email: &str,
) -> Result<()> {
    // The password first, on the user's password bucket (as a password change and a deletion),
    // so a wrong one from a stolen session never spends either address's mail quota.
    rate_limit::hit_ip(state, rate_limit::EMAIL_PER_IP, ip).await?;
    super::confirm_owner(state, current, current_password).await?;
    let new = Email::parse(new_email)?;
    // Both addresses receive mail: the new one's limit stops bombing it from many accounts.
    rate_limit::hit(state, rate_limit::EMAIL_PER_ADDRESS, &new.normalised).await?;
    rate_limit::hit(
        state,
        rate_limit::EMAIL_PER_ADDRESS,
        &Email::normalise_lenient(&current.user.email),
    )
    .await?;
    let taken = users::find_by_email(&state.db, &new.normalised)
        .await?
        .is_some();
    // Outside privacy mode a taken address is refused; in privacy mode it is answered, and the
    // current address told, exactly as a free one is, but no link is made (it could not be used).
    if taken && !state.config.registration_privacy {
        return Err(AppError::EmailTaken);
    }
    let mut tx = state.db.begin().await?;
    // A request that began before a reset or another revocation changes nothing.
    current.hold_on(&mut tx).await?;
    if !taken {
        let issued = tokens::issue(
            &mut tx,
            &current.user.id,
            Purpose::EmailChange,
            &new.normalised,
            Some(&new.display),
            state.config.token_ttl_verify_secs,
            state.clock.now(),
        )
        .await?;
        email::enqueue(
            state,
            &mut tx,
            Outgoing {
                kind: Kind::EmailChange,
                to: &new.display,
                context: minijinja::context! { link => link(state, "confirm-email", &issued.token) },
                dedupe_key: None,
            },
        )
        .await?;
    }
    email::enqueue(
        state,
        &mut tx,
        Outgoing {
            kind: Kind::EmailChangeNotice,
            to: &current.user.email,
            context: minijinja::context! { new_email => telemetry::mask_address(&new.display) },
            dedupe_key: None,
        },
    )
    .await?;
    email::commit_and_wake(state, tx).await?;
    Ok(())
}
