//! Magic-link sign-in: a link or a one-time code sent to the address; consuming it proves the
//! address and signs in.

use super::email_flows::{AccountMail, bound_to, bound_user, mail_if_account, prove_mailbox};
use super::{
    Auth,
    device::DeviceCookie,
    rate_limit,
    rate_limit::ClientIp,
    users::{self, Email, User},
};
use crate::{
    email::tokens::{self, Purpose},
    error::{AppError, Result},
};

/// Queues a magic link (with a one-time code) if the address has an account. Never creates one.
pub async fn request_magic_link(
    state: &Auth,
    ip: ClientIp,
    device: &DeviceCookie,
    address: &str,
) -> Result<()> {
    mail_if_account(state, ip, device, address, AccountMail::Magic).await
}

/// Signs in with a magic-link token, or with the address and its one-time code.
pub async fn consume_magic(
    state: &Auth,
    ip: ClientIp,
    token: Option<&str>,
    email_and_code: Option<(&str, &str)>,
) -> Result<User> {
    rate_limit::hit_ip(state, rate_limit::TOKEN_PER_IP, ip).await?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let mut user = match (token, email_and_code) {
        (Some(token), _) => {
            let consumed = tokens::consume(&mut tx, token, Purpose::Magic, now).await?;
            bound_user(&mut tx, &consumed).await?
        }
        (None, Some((address, code))) => {
            let email = Email::parse(address).map_err(|_| AppError::TokenInvalid)?;
            let user = users::find_by_email_on(&mut tx, &email.normalised)
                .await?
                .ok_or(AppError::TokenInvalid)?;
            let consumed = match tokens::consume_code(&mut tx, &user.id, code, now).await {
                Ok(consumed) => consumed,
                Err(e) => {
                    // Keep the count of wrong tries.
                    tx.commit().await?;
                    return Err(e);
                }
            };
            // The user was read in this transaction: only the address binding is left to check.
            bound_to(user, &consumed)?
        }
        (None, None) => return Err(AppError::TokenInvalid),
    };
    // A sign-in link proves the mailbox, not the password: an unproven one goes.
    prove_mailbox(&mut tx, &mut user, false, now).await?;
    state.commit_for(tx, &user.id).await?;
    Ok(user)
}
