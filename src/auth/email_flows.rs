//! Email flows: verification, password reset, magic-link sign-in (link or one-time code; its
//! consuming side is in `magic.rs`), and registration in privacy mode. The email change is in
//! `email_change.rs`.
//!
//! Request routes (forgot password, magic link) answer the same `202 check_your_email` whether or
//! not the address has an account, and do the work after answering, so neither the body nor the
//! timing tells. Links open pages whose GET only shows a confirmation form; its POST acts, so link
//! scanners that prefetch GETs use nothing up. Consuming a magic link or code, or completing a
//! reset, proves the address and marks it verified.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;
use sqlx::AnyConnection;

use super::{
    Auth, SignedIn, api_keys,
    device::DeviceCookie,
    password, rate_limit,
    rate_limit::ClientIp,
    session_store,
    users::{self, Email, User},
};
use crate::{
    email::{
        self, Kind, Outgoing,
        tokens::{self, Purpose},
    },
    error::{AppError, Result},
};

/// The one answer of every request route.
pub fn check_your_email() -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "check_your_email"})),
    )
        .into_response()
}

pub(super) fn link(state: &Auth, page: &str, token: &str) -> String {
    format!("{}{page}?token={token}", state.base_url)
}

/// Queues a verification link for `user` (inside the caller's transaction).
pub async fn send_verification(state: &Auth, conn: &mut AnyConnection, user: &User) -> Result<()> {
    let email = Email::parse(&user.email)?;
    let now = state.clock.now();
    let issued = tokens::issue(
        conn,
        &user.id,
        Purpose::Verify,
        &email.normalised,
        None,
        state.config.token_ttl_verify_secs,
        now,
    )
    .await?;
    email::enqueue(
        state,
        conn,
        Outgoing {
            kind: Kind::Verify,
            to: &user.email,
            context: minijinja::context! { link => link(state, "verify-email", &issued.token) },
            dedupe_key: None,
        },
    )
    .await
}

pub(super) fn hours(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 && s >= 3600 => {
            format!("{} hour{}", s / 3600, if s == 3600 { "" } else { "s" })
        }
        s => format!("{} minutes", s.div_ceil(60)),
    }
}

/// Rate limits of every request that sends mail: per address and per client address.
pub(crate) async fn limit_requests(state: &Auth, ip: ClientIp, address: &str) -> Result<()> {
    rate_limit::hit_ip(state, rate_limit::EMAIL_PER_IP, ip).await?;
    let normalised = Email::normalise_lenient(address);
    rate_limit::hit(state, rate_limit::EMAIL_PER_ADDRESS, &normalised).await
}

/// The nonce of `device` when it is a valid device cookie of the account `address` belongs to:
/// a browser the owner signed in on. Looked up by the cookie's account id, never by the address,
/// so the time taken depends on the cookie sent and says nothing about whether the address has
/// an account.
pub(super) async fn owners_device<'d>(
    state: &Auth,
    device: &'d DeviceCookie,
    address: &str,
) -> Result<Option<&'d str>> {
    let Some(id) = device.claimed_user() else {
        return Ok(None);
    };
    let mut conn = state.db.pool.acquire().await?;
    let Some(user) = users::find_by_id_on(&mut conn, id).await? else {
        return Ok(None);
    };
    let same_address = Email::normalise_lenient(&user.email) == Email::normalise_lenient(address);
    Ok(device
        .nonce_for(&state.device_key, &user.id, user.session_epoch)
        .filter(|_| same_address))
}

/// How long background work waits before it starts: long enough for the answer to have been
/// written, so the extra work of an address with an account never competes with its own answer.
const AFTER_THE_ANSWER: std::time::Duration = std::time::Duration::from_millis(10);

/// Runs `work` after the answer has gone, so existing and unknown addresses take the same time.
pub(super) fn in_background<F>(work: F)
where
    F: Future<Output = Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        tokio::time::sleep(AFTER_THE_ANSWER).await;
        if let Err(e) = work.await {
            tracing::warn!(error = %e, "email request failed");
        }
    });
}

/// New verification link for the signed-in user.
pub async fn request_verification(state: &Auth, ip: ClientIp, user: &User) -> Result<()> {
    limit_requests(state, ip, &user.email).await?;
    let mut tx = state.db.begin().await?;
    send_verification(state, &mut tx, user).await?;
    email::commit_and_wake(state, tx).await?;
    Ok(())
}

/// Loads the token's user and checks the token was sent to the user's current address.
pub(super) async fn bound_user(
    conn: &mut AnyConnection,
    consumed: &tokens::Consumed,
) -> Result<User> {
    let user = users::find_by_id_on(conn, &consumed.user_id)
        .await?
        .ok_or(AppError::TokenInvalid)?;
    bound_to(user, consumed)
}

/// `user`, the token's, if the token was sent to the user's current address; a suspended
/// account's token changes nothing (`AccountSuspended`, and the caller's transaction, which used
/// the token, is dropped: the token stays unused).
pub(super) fn bound_to(user: User, consumed: &tokens::Consumed) -> Result<User> {
    let current = Email::parse(&user.email).map_err(|_| AppError::TokenInvalid)?;
    if current.normalised != consumed.email_norm {
        // Sent to an address the user no longer has.
        return Err(AppError::TokenInvalid);
    }
    if user.suspended_at.is_some() {
        return Err(AppError::AccountSuspended);
    }
    Ok(user)
}

pub(super) async fn mark_verified(conn: &mut AnyConnection, user: &mut User) -> Result<()> {
    users::set_verified_on(conn, &user.id).await?;
    user.email_verified = true;
    Ok(())
}

/// A proof that the address's owner holds the mailbox (inside the proof's transaction): the
/// address becomes verified. If it was not before, anyone could have registered it, so its
/// password is nobody's proven secret: unless `password_is_theirs` (the prover showed it), it is
/// removed, and every session that existed before the proof ends. `user` follows the change.
pub(super) async fn prove_mailbox(
    conn: &mut AnyConnection,
    user: &mut User,
    password_is_theirs: bool,
    now: i64,
) -> Result<()> {
    // Pre-hijacking: a stranger's password or session must not survive the owner's proof.
    if !user.email_verified && !password_is_theirs {
        if user.password_hash.is_some() {
            users::clear_password_on(&mut *conn, &user.id).await?;
            user.password_hash = None;
            tracing::warn!(
                target: "security",
                security_event = "unproven_password_removed",
                user = %user.id,
                "a mailbox proof removed a password set before the address was proven"
            );
        }
        user.session_epoch = session_store::revoke_all_on(conn, &user.id, None)
            .await?
            .ok_or(AppError::TokenInvalid)?;
        // Links the earlier registrant asked for (an email change to their own address) die too,
        // and so do the API keys they made.
        tokens::invalidate_all(conn, &user.id, now).await?;
        api_keys::revoke_all_on(conn, &user.id, now).await?;
        // So does a second factor they enrolled: it would lock the owner out of their address.
        // And their passkeys, which would let them back in.
        super::second_factor::clear_on(conn, &user.id).await?;
        if super::passkeys::remove_all_on(conn, &user.id).await? > 0 {
            tracing::warn!(
                target: "security",
                security_event = "unproven_passkeys_removed",
                user = %user.id,
                "a mailbox proof removed passkeys registered before the address was proven"
            );
        }
    }
    mark_verified(conn, user).await
}

/// Who asks to verify an address, besides holding the link: the signed-in user of the request,
/// and a password typed on the confirmation form.
#[derive(Default)]
pub struct Verifier<'a> {
    /// The request's signed-in user, if any.
    pub signed_in: Option<SignedIn<'a>>,
    /// The account's password, if the form asked for it.
    pub password: Option<&'a str>,
}

/// Confirms an address with a verification token. The account's password is kept when the
/// verifier is the registrant (signed in as the account, or showing its password); otherwise it
/// is removed and earlier sessions end (see `prove_mailbox`).
pub async fn verify_email(
    state: &Auth,
    ip: ClientIp,
    token: &str,
    verifier: Verifier<'_>,
) -> Result<User> {
    rate_limit::hit_ip(state, rate_limit::TOKEN_PER_IP, ip).await?;
    let mut tx = state.db.begin().await?;
    let consumed = tokens::consume(&mut tx, token, Purpose::Verify, state.clock.now()).await?;
    let mut user = bound_user(&mut tx, &consumed).await?;
    let registrant_session = verifier.signed_in.is_some_and(|current| {
        current.user.id == user.id && current.session_epoch >= user.session_epoch
    });
    let registrant_password = match (verifier.password, user.password_hash.as_deref()) {
        (Some(given), Some(_)) if !given.is_empty() && !registrant_session => {
            let right = state
                .hasher
                .verify(given, user.password_hash.as_deref())
                .await?
                != password::Verified::No;
            // A mistyped password is a typo, not a stranger: refuse (the link stays usable)
            // rather than treat the registrant as one and remove their password.
            if !right {
                return Err(AppError::InvalidCredentials);
            }
            true
        }
        _ => false,
    };
    prove_mailbox(
        &mut tx,
        &mut user,
        registrant_session || registrant_password,
        state.clock.now(),
    )
    .await?;
    state.commit_for(tx, &user.id).await?;
    tracing::info!(user = %user.id, "email verified");
    Ok(user)
}

/// What a request route sends to an address that has an account.
#[derive(Clone, Copy)]
pub(super) enum AccountMail {
    Reset,
    Magic,
}

/// The course of the request routes: rate limits, then (after the answer) `mail` is queued only
/// if the address has an account.
///
/// A browser holding the owner's device cookie counts on that cookie's own mail bucket instead of
/// the address's, so strangers who fill the address's bucket (5 requests an hour, from anywhere)
/// cannot stop the owner's own browsers from getting a reset or sign-in link.
pub(super) async fn mail_if_account(
    state: &Auth,
    ip: ClientIp,
    device: &DeviceCookie,
    address: &str,
    mail: AccountMail,
) -> Result<()> {
    match owners_device(state, device, address).await? {
        Some(nonce) => {
            rate_limit::hit_ip(state, rate_limit::EMAIL_PER_IP, ip).await?;
            rate_limit::hit(state, rate_limit::EMAIL_PER_DEVICE, nonce).await?;
        }
        None => limit_requests(state, ip, address).await?,
    }
    let (state, address) = (state.clone(), address.to_owned());
    in_background(async move {
        let Ok(email) = Email::parse(&address) else {
            return Ok(());
        };
        let Some(user) = users::find_by_email(&state.db, &email.normalised).await? else {
            return Ok(());
        };
        let mut tx = state.db.begin().await?;
        match mail {
            AccountMail::Reset => queue_reset(&state, &mut tx, &user, &email.normalised).await?,
            AccountMail::Magic => queue_magic_link(&state, &mut tx, &user, Kind::Magic).await?,
        }
        email::commit_and_wake(&state, tx).await?;
        Ok(())
    });
    Ok(())
}

/// Queues a reset link if the address has an account; answers nothing either way.
pub async fn forgot_password(
    state: &Auth,
    ip: ClientIp,
    device: &DeviceCookie,
    address: &str,
) -> Result<()> {
    mail_if_account(state, ip, device, address, AccountMail::Reset).await
}

/// Issues a reset token (bound to `email_norm`) and queues its link.
async fn queue_reset(
    state: &Auth,
    conn: &mut AnyConnection,
    user: &User,
    email_norm: &str,
) -> Result<()> {
    let issued = tokens::issue(
        conn,
        &user.id,
        Purpose::Reset,
        email_norm,
        None,
        state.config.token_ttl_reset_secs,
        state.clock.now(),
    )
    .await?;
    email::enqueue(
        state,
        conn,
        Outgoing {
            kind: Kind::Reset,
            to: &user.email,
            context: minijinja::context! {
                link => link(state, "reset-password", &issued.token),
                valid_for => hours(state.config.token_ttl_reset_secs),
            },
            dedupe_key: None,
        },
    )
    .await
}

/// Sets a new password with a reset token: all sessions end, the address counts as verified,
/// and a notice goes out. Does not sign in.
pub async fn reset_password(
    state: &Auth,
    ip: ClientIp,
    token: &str,
    new_password: &str,
) -> Result<()> {
    rate_limit::hit_ip(state, rate_limit::TOKEN_PER_IP, ip).await?;
    // The policy is checked before the token is used, so a too-short password does not burn it.
    let normalised = password::check_new_password(new_password, state.config.password_min_length)?;
    let hash = state.hasher.hash(normalised).await?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let consumed = tokens::consume(&mut tx, token, Purpose::Reset, now).await?;
    let mut user = bound_user(&mut tx, &consumed).await?;
    users::set_password_hash_on(&mut tx, &user.id, &hash).await?;
    // An address proven only now: a second factor on it was enrolled by whoever registered it,
    // maybe a stranger, and goes. One enrolled on a proven address stays: a reset by mail alone
    // never removes the owner's second factor.
    if !user.email_verified {
        super::second_factor::clear_on(&mut tx, &user.id).await?;
    }
    // The new password replaces any other; every session ends either way.
    mark_verified(&mut tx, &mut user).await?;
    tokens::invalidate_all(&mut tx, &user.id, now).await?;
    session_store::revoke_all_on(&mut tx, &user.id, None).await?;
    let payload = serde_json::json!({"via": "reset"});
    let entry = super::own_event(crate::audit::Kind::PasswordChanged, &user.id, payload);
    crate::audit::record(&mut tx, now, entry).await?;
    // A reset is how an owner takes the account back: keys and passkeys made by whoever held it
    // end too (the owner adds their passkeys again; mail alone never removes the second factor).
    api_keys::revoke_all_on(&mut tx, &user.id, now).await?;
    let passkeys = super::passkeys::remove_all_on(&mut tx, &user.id).await?;
    if passkeys > 0 {
        tracing::info!(user = %user.id, passkeys, "a password reset removed the passkeys");
    }
    email::enqueue(
        state,
        &mut tx,
        Outgoing {
            kind: Kind::PasswordChanged,
            to: &user.email,
            context: minijinja::context! {},
            dedupe_key: None,
        },
    )
    .await?;
    email::commit_and_wake(state, tx).await?;
    state.cache.forget_user(&user.id);
    tracing::info!(user = %user.id, "password reset");
    Ok(())
}

/// Registration in privacy mode: the same answer for every address. A new address gets an
/// unverified account and its verification link; an unverified one gets its pending password
/// replaced and a new link (nobody can pre-register someone else's address); an owner gets a
/// "someone tried to sign up — here is a sign-in link" email.
pub async fn register_privately(state: &Auth, email: &Email, password_hash: &str) -> Result<()> {
    let mut tx = state.db.begin().await?;
    // The pending account whose password is replaced: forgotten in the cache after the commit.
    let mut replaced = None;
    match users::find_by_email_on(&mut tx, &email.normalised).await? {
        None => {
            let user = users::insert_user_on(&mut tx, email, password_hash).await?;
            send_verification(state, &mut tx, &user).await?;
        }
        Some(user) if !user.email_verified => {
            users::set_password_hash_on(&mut tx, &user.id, password_hash).await?;
            // Links sent for the replaced registration stop working, and its sessions end.
            tokens::invalidate_all(&mut tx, &user.id, state.clock.now()).await?;
            session_store::revoke_all_on(&mut tx, &user.id, None).await?;
            api_keys::revoke_all_on(&mut tx, &user.id, state.clock.now()).await?;
            send_verification(state, &mut tx, &user).await?;
            replaced = Some(user.id);
        }
        Some(user) => queue_magic_link(state, &mut tx, &user, Kind::SignupAttempt).await?,
    }
    email::commit_and_wake(state, tx).await?;
    if let Some(id) = replaced {
        state.cache.forget_user(&id);
    }
    Ok(())
}

/// Issues a magic link and code and queues `kind` (the sign-in email, or the "someone tried to
/// sign up" notice of privacy mode) with them.
async fn queue_magic_link(
    state: &Auth,
    conn: &mut AnyConnection,
    user: &User,
    kind: Kind,
) -> Result<()> {
    let email = Email::parse(&user.email)?;
    let issued = tokens::issue(
        conn,
        &user.id,
        Purpose::Magic,
        &email.normalised,
        None,
        state.config.token_ttl_magic_secs,
        state.clock.now(),
    )
    .await?;
    email::enqueue(
        state,
        conn,
        Outgoing {
            kind,
            to: &user.email,
            context: minijinja::context! {
                link => link(state, "magic", &issued.token),
                code => issued.code,
                valid_for => hours(state.config.token_ttl_magic_secs),
            },
            dedupe_key: None,
        },
    )
    .await
}
