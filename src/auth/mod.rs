//! Password accounts and server-side sessions: register, log in, who am I, log out, change
//! password.
//!
//! Sessions are tower-sessions records in the database ([`session_store`]). The session holds
//! the user id, the time of sign-in (absolute timeout) and the time last seen (idle timeout,
//! refreshed at most once a minute so that reads do not become writes). The id is rotated at every
//! sign-in and privilege change; logout deletes the record server-side.

pub mod address;
pub mod api_keys;
pub mod cleanup;
pub mod credentials;
pub mod device;
pub mod devices;
pub mod email_change;
pub mod email_flows;
pub mod magic;
pub mod opaque;
pub mod passkeys;
pub mod password;
pub mod rate_limit;
pub mod refresh;
pub mod roles;
pub mod second_factor;
pub mod session_store;
pub mod signing;
pub mod social;
pub mod suspension;
pub mod totp;
pub mod users;

use tower_sessions::{Expiry, Session};

use std::sync::Arc;

use crate::{
    base::Base,
    db,
    email::Mail,
    error::{AppError, Result},
};
use device::DeviceCookie;
use password::Verified;
use rate_limit::ClientIp;
use session_store::{EPOCH_KEY, USER_ID_KEY};
use users::{Email, User};

/// What the auth capability shares: email (and the base below it), the password hasher and the device-cookie key.
///
/// One pointer: clones (every extractor and spawned task takes one) cost a reference count. It
/// dereferences to its parts, and they to the layer below ([`Mail`]), so `auth.db` and
/// `auth.config` read through.
#[derive(Clone)]
pub struct Auth(Arc<AuthParts>);

/// What a [`Auth`] holds.
pub struct AuthParts {
    /// Email, and the base below it.
    pub mail: Mail,
    /// argon2 on a bounded blocking pool.
    pub hasher: password::PasswordHasherPool,
    /// Key of the device cookies (see [`device`]), shared by all instances through the database.
    pub device_key: Vec<u8>,
    /// The keys access tokens are signed with (see [`signing`]).
    pub signing: signing::Keys,
    /// The passkeys' relying party; `None` when passkeys are off (see [`passkeys`]).
    pub passkeys: Option<passkeys::RelyingParty>,
    /// The sign-in providers the settings turn on (see [`social`]).
    pub social: social::Providers,
}

impl Auth {
    /// Wraps the parts.
    pub fn new(parts: AuthParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for Auth {
    type Target = AuthParts;

    fn deref(&self) -> &AuthParts {
        &self.0
    }
}

impl std::ops::Deref for AuthParts {
    type Target = Mail;

    fn deref(&self) -> &Mail {
        &self.mail
    }
}

const SIGNED_IN_AT_KEY: &str = "signed_in_at";
/// When the session's user last proved who they are: at sign-in, and by re-authenticating.
const PROVED_AT_KEY: &str = "proved_at";
/// How long a proof counts for sensitive changes (second factors, API keys).
pub const REAUTH_SECS: i64 = 600;
const SEEN_AT_KEY: &str = "seen_at";
/// How stale `seen_at` may get before a request refreshes it (one write per minute at most).
const SEEN_REFRESH_SECS: i64 = 60;

/// The signed-in user as auth's flows need them: the gate's `CurrentUser` lends one
/// (`CurrentUser::signed_in`).
#[derive(Clone, Copy, Debug)]
pub struct SignedIn<'a> {
    /// The user's row.
    pub user: &'a User,
    /// The session, for flows that rotate or end it.
    pub session: &'a Session,
    /// The user's session epoch this session was signed in under.
    pub session_epoch: i64,
}

impl SignedIn<'_> {
    /// The session's stored key (the SHA-256 of its id; empty for a session never saved).
    pub fn session_key(&self) -> String {
        self.session
            .id()
            .map(|id| session_store::hash_id(&id))
            .unwrap_or_default()
    }

    /// Inside the caller's transaction: `Unauthenticated` unless this session is still live (see
    /// [`session_store::hold_session`]); a request held open across a revocation, or across the
    /// sign-out of this device, then writes nothing.
    pub async fn hold_on(&self, conn: &mut sqlx::AnyConnection) -> Result<()> {
        let id_hash = self.session_key();
        if session_store::hold_session(conn, &self.user.id, &id_hash, self.session_epoch).await? {
            Ok(())
        } else {
            Err(AppError::Unauthenticated)
        }
    }
}

/// A session's claim to a user, once its timeouts are checked: see [`session_claim`].
#[derive(Clone, Debug)]
pub struct SessionClaim {
    /// The user the session was signed in as.
    pub user_id: String,
    /// The user's session epoch the session was signed in under.
    pub session_epoch: i64,
    seen_at: i64,
}

/// The user `session` is signed in as, unless it has passed its idle or absolute timeout (then it
/// is flushed).
pub async fn session_claim(base: &Base, session: &Session) -> Result<Option<SessionClaim>> {
    let Some(user_id) = session.get::<String>(USER_ID_KEY).await? else {
        return Ok(None);
    };
    let now = db::now();
    let signed_in_at = session.get::<i64>(SIGNED_IN_AT_KEY).await?.unwrap_or(0);
    let seen_at = session.get::<i64>(SEEN_AT_KEY).await?.unwrap_or(0);
    let config = &base.config;
    if now - signed_in_at > config.session_absolute_secs as i64
        || now - seen_at > config.session_idle_secs as i64
    {
        session.flush().await?;
        return Ok(None);
    }
    let session_epoch = session.get::<i64>(EPOCH_KEY).await?.unwrap_or(0);
    Ok(Some(SessionClaim {
        user_id,
        session_epoch,
        seen_at,
    }))
}

/// Seconds the signed-in `session` has left before its absolute timeout (0 when it has none
/// left): a token sign-in made from it lives no longer.
pub async fn session_time_left(base: &Base, session: &Session) -> Result<i64> {
    let signed_in_at = session.get::<i64>(SIGNED_IN_AT_KEY).await?.unwrap_or(0);
    Ok((signed_in_at + base.config.session_absolute_secs as i64 - db::now()).max(0))
}

/// Whether `claim` still holds for `user` (loaded for it; `None` when the account was deleted
/// under the session). A session that does not hold is flushed; one that does is marked seen (at
/// most once a minute, so reads do not become writes).
pub async fn session_holds(
    session: &Session,
    claim: &SessionClaim,
    user: Option<&User>,
) -> Result<bool> {
    // Signed in before a revocation: dead, even if a copy of its record outlived the revocation.
    // (Only older: a cached user may briefly lag behind a newer session's epoch.)
    if user.is_none_or(|u| claim.session_epoch < u.session_epoch) {
        session.flush().await?;
        return Ok(false);
    }
    let now = db::now();
    if now - claim.seen_at > SEEN_REFRESH_SECS {
        session.insert(SEEN_AT_KEY, now).await?;
    }
    Ok(true)
}

/// Starts a signed-in session for `user` on a fresh session id, recording where it came from.
pub async fn sign_in(
    state: &Auth,
    session: &Session,
    user: &User,
    remember: bool,
    from: &devices::SignInFrom,
) -> Result<()> {
    users::refuse_if_suspended(&state.db, &user.id, state.clock.now()).await?;
    // A new id at every sign-in defeats session fixation.
    session.cycle_id().await?;
    session.clear().await;
    let now = db::now();
    session.insert(USER_ID_KEY, &user.id).await?;
    session.insert(EPOCH_KEY, user.session_epoch).await?;
    session.insert(SIGNED_IN_AT_KEY, now).await?;
    session.insert(SEEN_AT_KEY, now).await?;
    session.insert(PROVED_AT_KEY, state.clock.now()).await?;
    devices::record(session, from).await?;
    // The session is written by its own store: the sign-in is recorded beside it.
    let payload = serde_json::json!({"via": "session", "remember": remember});
    let entry = own_event(crate::audit::Kind::SignedIn, &user.id, payload);
    crate::audit::record_alone(&state.db, state.clock.now(), entry).await?;
    session.set_expiry(Some(if remember {
        // A persistent cookie that lives as long as the idle timeout, renewed with activity.
        Expiry::OnInactivity(time::Duration::seconds(
            state.config.session_idle_secs as i64,
        ))
    } else {
        Expiry::OnSessionEnd
    }));
    session.save().await?;
    Ok(())
}

/// Records a fresh proof (the password or a second factor typed again) on the session.
pub async fn mark_proved(state: &Auth, session: &Session) -> Result<()> {
    session.insert(PROVED_AT_KEY, state.clock.now()).await?;
    session.save().await?;
    Ok(())
}

/// `ReauthRequired` unless the session's user signed in or proved who they are in the last
/// [`REAUTH_SECS`]: a session cookie stolen later cannot make sensitive changes by itself.
pub async fn require_recent_proof(state: &Auth, session: &Session) -> Result<()> {
    let proved_at = session.get::<i64>(PROVED_AT_KEY).await?.unwrap_or(0);
    if state.clock.now() - proved_at > REAUTH_SECS {
        return Err(AppError::ReauthRequired);
    }
    Ok(())
}

/// What every registration starts with: its rate limit, the address and the password checked,
/// and the password hashed.
async fn prepare_registration(
    state: &Auth,
    ip: ClientIp,
    email: &str,
    password: &str,
) -> Result<(Email, String)> {
    rate_limit::hit_ip(state, rate_limit::REGISTER_PER_IP, ip).await?;
    let email = Email::parse(email)?;
    let password = password::check_new_password(password, state.config.password_min_length)?;
    let hash = state.hasher.hash(password).await?;
    Ok((email, hash))
}

/// An audit entry about `user` made by that user (`payload`: the details).
pub(crate) fn own_event(
    kind: crate::audit::Kind,
    user: &str,
    payload: serde_json::Value,
) -> crate::audit::Entry<'_> {
    crate::audit::Entry {
        kind,
        actor: user,
        subject: Some(user),
        payload,
    }
}

/// Creates an account and signs it in.
pub async fn register_user(
    state: &Auth,
    ip: ClientIp,
    email: &str,
    password: &str,
) -> Result<User> {
    let (email, hash) = prepare_registration(state, ip, email, password).await?;
    // The account and its verification email commit together.
    let mut tx = state.db.begin().await?;
    let user = users::insert_user_on(&mut tx, &email, &hash).await?;
    email_flows::send_verification(state, &mut tx, &user).await?;
    let payload = serde_json::json!({"method": "password"});
    let entry = own_event(crate::audit::Kind::SignedUp, &user.id, payload);
    crate::audit::record(&mut tx, state.clock.now(), entry).await?;
    crate::email::commit_and_wake(state, tx).await?;
    tracing::info!(user = %user.id, email = %email.masked(), "registered");
    Ok(user)
}

/// Registration in privacy mode: validated like any other, then the same answer for every
/// address (see [`email_flows::register_privately`]).
pub async fn register_private(
    state: &Auth,
    ip: ClientIp,
    email: &str,
    password: &str,
) -> Result<()> {
    let (email, hash) = prepare_registration(state, ip, email, password).await?;
    // Every privacy-mode registration mails the address: the limits of the other mailing
    // requests apply, or it would be a way to bomb a mailbox. Counted only for valid requests,
    // so typos do not use up the address's mail.
    email_flows::limit_requests(state, ip, &email.display).await?;
    email_flows::register_privately(state, &email, &hash).await
}

/// Checks credentials with the same work and answer for an unknown email and a wrong password.
pub async fn authenticate(
    state: &Auth,
    ip: ClientIp,
    device: &DeviceCookie,
    email: &str,
    password: &str,
) -> Result<User> {
    rate_limit::hit_ip(state, rate_limit::LOGIN_PER_IP, ip).await?;
    let normalised = Email::normalise_lenient(email);
    let user = users::find_by_email(&state.db, &normalised).await?;
    // A browser that signed in to this account before counts on its own bucket: strangers who
    // fill the account's bucket cannot lock the owner out of their own device.
    // An unknown address is checked against "", which no cookie names: the same work.
    let user_id = user.as_ref().map_or("", |u| u.id.as_str());
    let epoch = user.as_ref().map_or(0, |u| u.session_epoch);
    match device.nonce_for(&state.device_key, user_id, epoch) {
        Some(nonce) => {
            rate_limit::hit(state, rate_limit::LOGIN_PER_DEVICE, nonce).await?;
            // Devices together have a ceiling too: many cookies must not add up to many guesses.
            rate_limit::hit(state, rate_limit::LOGIN_PER_ACCOUNT_DEVICES, &normalised).await?;
        }
        None => rate_limit::hit(state, rate_limit::LOGIN_PER_ACCOUNT, &normalised).await?,
    }
    let stored = user.as_ref().and_then(|u| u.password_hash.as_deref());
    // With no user, `verify` hashes against a dummy so both paths cost the same.
    let verified = state.hasher.verify(password, stored).await?;
    // In privacy mode an unverified account cannot sign in by password: its password may be a
    // stranger's pre-registration.
    let known = user.as_ref().map(|u| u.id.clone());
    let user = user.filter(|u| !state.config.registration_privacy || u.email_verified);
    match (verified, user) {
        (Verified::Yes, Some(user)) => {
            users::refuse_if_suspended(&state.db, &user.id, state.clock.now()).await?;
            Ok(user)
        }
        (Verified::YesRehashed(hash), Some(user)) => {
            users::refuse_if_suspended(&state.db, &user.id, state.clock.now()).await?;
            users::set_password_hash(state, &user.id, &hash).await?;
            tracing::info!(user = %user.id, "password rehashed with current parameters");
            Ok(user)
        }
        _ => {
            // One reason for all: the log says nothing about which addresses have accounts.
            let masked = Email::parse(email).map_or_else(|_| "***".into(), |e| e.masked());
            crate::telemetry::security_event("login_failed", Some(&masked), "invalid_credentials");
            // Recorded for an unknown address too (without a subject), so both cost the same.
            let entry = crate::audit::Entry {
                kind: crate::audit::Kind::SignInFailed,
                actor: "anonymous",
                subject: known.as_deref(),
                payload: serde_json::json!({"address": masked, "reason": "invalid_credentials"}),
            };
            crate::audit::record_alone(&state.db, state.clock.now(), entry).await?;
            Err(AppError::InvalidCredentials)
        }
    }
}

/// Checks the signed-in `user`'s password again before a sensitive change; `InvalidCredentials`
/// when it is wrong.
pub async fn confirm_password(state: &Auth, user: &User, password: &str) -> Result<()> {
    let stored = user.password_hash.as_deref();
    if state.hasher.verify(password, stored).await? == Verified::No {
        return Err(AppError::InvalidCredentials);
    }
    Ok(())
}

/// How many ways the user signs in besides email (a password, each passkey, each provider),
/// counted inside the caller's transaction, which holds the account: two removals racing each
/// other count one after the other, so they cannot take the last two ways in together.
pub async fn ways_in_on(conn: &mut sqlx::AnyConnection, user: &User) -> Result<i64> {
    let passkeys = passkeys::store::count_on(&mut *conn, &user.id).await?;
    let providers = social::identities::count_on(&mut *conn, &user.id).await?;
    Ok(i64::from(user.password_hash.is_some()) + passkeys + providers)
}

/// The proof a change takes in its own body (an email change, a deletion): the password, for an
/// account that has one (counted on its password bucket); for one without (made by a sign-in
/// provider, or kept by email links), a proof from the last [`REAUTH_SECS`] instead.
pub async fn confirm_owner(
    state: &Auth,
    current: SignedIn<'_>,
    password: Option<&str>,
) -> Result<()> {
    if current.user.password_hash.is_none() {
        return require_recent_proof(state, current.session).await;
    }
    rate_limit::hit(state, rate_limit::PASSWORD_PER_USER, &current.user.id).await?;
    confirm_password(state, current.user, password.unwrap_or("")).await
}

/// Re-authentication: the password, or a second factor, typed again; the session may then make
/// sensitive changes for [`REAUTH_SECS`].
pub async fn reauthenticate(
    state: &Auth,
    current: SignedIn<'_>,
    password: Option<&str>,
    proof: Option<second_factor::Proof<'_>>,
) -> Result<()> {
    match (password, proof) {
        (Some(password), None) => {
            rate_limit::hit(state, rate_limit::PASSWORD_PER_USER, &current.user.id).await?;
            confirm_password(state, current.user, password).await?;
        }
        (None, Some(proof)) => {
            let counted_on = second_factor::CountedOn::Session(current);
            second_factor::check(state, current.user, proof, counted_on).await?;
        }
        _ => return Err(AppError::InvalidField("password".into())),
    }
    tracing::info!(user = %current.user.id, "re-authenticated");
    mark_proved(state, current.session).await
}

/// A password change as asked for.
pub struct PasswordChange<'a> {
    /// The password now.
    pub current: &'a str,
    /// The new one.
    pub new: &'a str,
    /// Also revoke every API key of the account (a leaked password may have made some).
    pub revoke_api_keys: bool,
}

/// Changes the password of the signed-in user and ends their other sessions (and, when asked,
/// their API keys); the new session epoch (the caller renews this browser's device cookie under
/// it).
pub async fn change_user_password(
    state: &Auth,
    current: SignedIn<'_>,
    change: PasswordChange<'_>,
) -> Result<i64> {
    rate_limit::hit(state, rate_limit::PASSWORD_PER_USER, &current.user.id).await?;
    let new_password = password::check_new_password(change.new, state.config.password_min_length)?;
    confirm_password(state, current.user, change.current).await?;
    let hash = state.hasher.hash(new_password).await?;
    let mut tx = state.db.begin().await?;
    // Only a session that is still current may change the password: one revoked while this
    // request ran (a reset, another change, a mailbox proof, the sign-out of this device)
    // answers 401 and changes nothing.
    current.hold_on(&mut tx).await?;
    let epoch =
        session_store::revoke_all_on(&mut tx, &current.user.id, Some(current.session_epoch))
            .await?
            .ok_or(AppError::Unauthenticated)?;
    users::set_password_hash_on(&mut tx, &current.user.id, &hash).await?;
    // Outstanding reset and sign-in links die with the old password.
    crate::email::tokens::invalidate_all(&mut tx, &current.user.id, state.clock.now()).await?;
    if change.revoke_api_keys {
        api_keys::revoke_all_on(&mut tx, &current.user.id, state.clock.now()).await?;
    }
    let payload = serde_json::json!({"via": "change", "api_keys_revoked": change.revoke_api_keys});
    let entry = own_event(
        crate::audit::Kind::PasswordChanged,
        &current.user.id,
        payload,
    );
    crate::audit::record(&mut tx, state.clock.now(), entry).await?;
    state.commit_for(tx, &current.user.id).await?;
    // A privilege change: every session of the user ended above; this one goes on under a new id
    // and the new epoch.
    current.session.cycle_id().await?;
    current.session.insert(EPOCH_KEY, epoch).await?;
    current.session.save().await?;
    tracing::info!(user = %current.user.id, "password changed");
    Ok(epoch)
}
