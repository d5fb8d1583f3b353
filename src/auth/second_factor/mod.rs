//! Two-factor sign-in with an authenticator app (TOTP, RFC 6238), recovery codes, and devices
//! trusted to skip the code for 30 days.
//!
//! With a confirmed factor, every sign-in is two steps. The first (a password, a magic link or
//! code) ends in a *pending sign-in* ([`pending`]) that grants nothing; the second
//! ([`complete`]) takes a code from the app or a recovery code and only then starts the session
//! or hands out the token pair the first step asked for. A code is spent by one atomic update, so
//! it is accepted once even when two requests race with it; attempts are limited per pending
//! sign-in and per account.
//!
//! Enrolment: [`begin`] makes a secret (shown as an `otpauth://` URI and a QR code), which counts
//! for nothing until [`confirm`] receives a first valid code; then ten recovery codes are shown
//! once. [`turn_off`] takes a current code and mails a notice.

pub mod factors;
mod passkey;
pub mod pending;
pub mod recovery;
pub mod trust;

pub use passkey::{check_if_on, passkey_options};
pub use pending::Intent;
pub use trust::TrustCookie;

use super::{Auth, SignedIn, passkeys, rate_limit, rate_limit::ClientIp, totp, users, users::User};
use crate::{
    db,
    email::{self, Kind, Outgoing},
    error::{AppError, Result},
};

use crate::audit::Kind as Audit;

/// The account's two-factor state, as its owner sees it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = TwoFactorStatus)]
pub struct Status {
    /// A confirmed authenticator makes sign-ins two steps.
    pub enabled: bool,
    /// An enrolment was started and not confirmed.
    pub enrolling: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
}

/// The account's two-factor state.
pub async fn status(state: &Auth, user_id: &str) -> Result<Status> {
    let factor = factors::of(&state.db, user_id).await?;
    let enabled = factor.as_ref().is_some_and(|f| f.confirmed_at.is_some());
    Ok(Status {
        enabled,
        enrolling: factor.is_some() && !enabled,
        recovery_codes_left: if enabled {
            recovery::left(&state.db, user_id).await?
        } else {
            0
        },
    })
}

/// Whether the user has a confirmed second factor.
pub async fn enabled(state: &Auth, user_id: &str) -> Result<bool> {
    Ok(confirmed(state, user_id).await?.is_some())
}

async fn confirmed(state: &Auth, user_id: &str) -> Result<Option<factors::Factor>> {
    Ok(factors::of(&state.db, user_id)
        .await?
        .filter(|f| f.confirmed_at.is_some()))
}

/// A second factor: a code from the authenticator app, a recovery code, or a passkey's answer.
#[derive(Clone, Copy, Debug)]
pub enum Proof<'a> {
    /// Six digits from the app.
    Totp(&'a str),
    /// One of the recovery codes.
    Recovery(&'a str),
    /// A passkey's answer to a ceremony begun for this sign-in or this proof.
    Passkey(&'a passkeys::Answer),
}

impl<'a> Proof<'a> {
    /// The proof of a JSON body: exactly one of `code`, `recovery_code` and `passkey`.
    pub fn from_fields(
        code: Option<&'a str>,
        recovery_code: Option<&'a str>,
        passkey: Option<&'a passkeys::Answer>,
    ) -> Result<Self> {
        match (code, recovery_code, passkey) {
            (Some(code), None, None) => Ok(Proof::Totp(code)),
            (None, Some(code), None) => Ok(Proof::Recovery(code)),
            (None, None, Some(answer)) => Ok(Proof::Passkey(answer)),
            _ => Err(AppError::InvalidField("code".into())),
        }
    }

    /// The proof of a form's one field: six digits are the app's, anything else a recovery code.
    pub fn from_typed(typed: &'a str) -> Self {
        let trimmed = typed.trim();
        if trimmed.len() == totp::DIGITS && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            Proof::Totp(trimmed)
        } else {
            Proof::Recovery(trimmed)
        }
    }
}

/// A sign-in waiting for its second step.
#[derive(Clone, Debug)]
pub struct Waiting {
    /// The pending sign-in's token.
    pub token: String,
    /// What the second step takes: `totp`, `recovery_code`, and `passkey` when the account has one.
    pub methods: Vec<&'static str>,
}

impl Waiting {
    /// Whether a passkey may finish it.
    pub fn passkey(&self) -> bool {
        self.methods.contains(&"passkey")
    }
}

/// After a first factor proved `user`: `None` when the sign-in may complete now (no second factor,
/// or a browser trusted for it), or the pending sign-in that waits for the second step.
pub async fn after_first_factor(
    state: &Auth,
    user: &User,
    trust: &TrustCookie,
    intent: Intent,
) -> Result<Option<Waiting>> {
    let Some(factor) = confirmed(state, &user.id).await? else {
        return Ok(None);
    };
    let now = state.clock.now();
    // A suspended account gets no second step (nor spends a code on one).
    users::refuse_if_suspended(&state.db, &user.id, now).await?;
    if trust.trusts(
        &state.device_key,
        &user.id,
        user.session_epoch,
        &factor.id,
        now,
    ) {
        tracing::info!(user = %user.id, "second factor skipped on a trusted device");
        return Ok(None);
    }
    let token = pending::create(&state.db, &user.id, user.session_epoch, intent, now).await?;
    tracing::info!(user = %user.id, "first factor passed; waiting for the second");
    let mut methods = vec!["totp", "recovery_code"];
    if state.passkeys.is_some() && passkeys::count(state, &user.id).await? > 0 {
        methods.push("passkey");
    }
    Ok(Some(Waiting { token, methods }))
}

/// A sign-in whose second factor passed.
#[derive(Debug)]
pub struct Completed {
    /// The user, as loaded now.
    pub user: User,
    /// What the first step asked for.
    pub intent: Intent,
    /// The factor that passed (a trusted-device cookie names it).
    pub factor_id: String,
}

/// The second step of the pending sign-in `token`: the proof is checked and spent, and the pending
/// sign-in ends. The caller then signs in as [`Completed::intent`] says.
pub async fn complete(
    state: &Auth,
    ip: ClientIp,
    token: &str,
    proof: Proof<'_>,
) -> Result<Completed> {
    rate_limit::hit_ip(state, rate_limit::TOKEN_PER_IP, ip).await?;
    let now = state.clock.now();
    let pending = pending::attempt(&state.db, token, now)
        .await?
        .ok_or(AppError::PendingSignInInvalid)?;
    let mut conn = state.db.pool.acquire().await?;
    let user = users::find_by_id_on(&mut conn, &pending.user_id).await?;
    drop(conn);
    // A password change or reset, or signing out everywhere, since the first step: start again.
    let user = user
        .filter(|u| u.session_epoch == pending.session_epoch)
        .ok_or(AppError::PendingSignInInvalid)?;
    let factor_id = check(state, &user, proof, CountedOn::SignIn(token)).await?;
    // The factor went (turned off by another session) while a passkey finished the sign-in.
    if factor_id.is_empty() {
        return Err(AppError::PendingSignInInvalid);
    }
    if !pending::finish(&state.db, token).await? {
        return Err(AppError::PendingSignInInvalid);
    }
    Ok(Completed {
        user,
        intent: pending.intent,
        factor_id,
    })
}

/// Where a code is counted: a sign-in's on the account (whoever holds the password may start
/// many), a signed-in session's on the account's changes, a bucket of its own (so a stolen
/// session guessing codes cannot lock the owner's sign-ins out, and cannot escape its count by
/// getting a new session id either).
#[derive(Clone, Copy, Debug)]
pub enum CountedOn<'a> {
    /// The second step of the pending sign-in whose token this is.
    SignIn(&'a str),
    /// A change asked for by a signed-in session.
    Session(SignedIn<'a>),
}

/// Checks `proof` against the user's confirmed factor and spends it (a code's step, the recovery
/// code, or the passkey ceremony); the factor's id. Counted as [`CountedOn`] says, 10 per 15
/// minutes. A recovery code used mails a notice with the number left. A passkey is a proof
/// with or without an authenticator app (the id is then empty): it is two factors in itself.
pub async fn check(
    state: &Auth,
    user: &User,
    proof: Proof<'_>,
    counted_on: CountedOn<'_>,
) -> Result<String> {
    let subject = match counted_on {
        CountedOn::SignIn(_) => user.id.clone(),
        CountedOn::Session(current) => format!("changes:{}", current.user.id),
    };
    rate_limit::hit_always(state, rate_limit::SECOND_FACTOR_PER_USER, &subject).await?;
    let factor = confirmed(state, &user.id).await?;
    let passed = match proof {
        Proof::Passkey(answer) => {
            let (purpose, pending) = match counted_on {
                CountedOn::SignIn(token) => (
                    passkeys::Purpose::SecondStep,
                    Some(passkeys::ceremonies::hash(token)),
                ),
                CountedOn::Session(_) => (passkeys::Purpose::Reauth, None),
            };
            let (ceremony, credential) = (&answer.ceremony, &answer.credential);
            passkeys::verify_for(
                state,
                user,
                purpose,
                pending.as_deref(),
                ceremony,
                credential,
            )
            .await?;
            return Ok(factor.map(|f| f.id).unwrap_or_default());
        }
        Proof::Totp(code) => {
            let factor = factor.as_ref().ok_or(AppError::SecondFactorOff)?;
            let secret = secret_bytes(factor)?;
            match totp::matching_step(&secret, code, db::now(), factor.last_step) {
                Some(step) => {
                    let mut conn = state.db.pool.acquire().await?;
                    factors::use_step_on(&mut conn, &user.id, &factor.id, step, None).await?
                }
                None => false,
            }
        }
        Proof::Recovery(code) => {
            factor.as_ref().ok_or(AppError::SecondFactorOff)?;
            spend_recovery_code(state, user, code).await?
        }
    };
    if !passed {
        crate::telemetry::security_event("second_factor_failed", None, "invalid_code");
        return Err(AppError::SecondFactorInvalid);
    }
    Ok(factor.map(|f| f.id).unwrap_or_default())
}

async fn spend_recovery_code(state: &Auth, user: &User, code: &str) -> Result<bool> {
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    if !recovery::spend_on(&mut tx, &user.id, code, now).await? {
        return Ok(false);
    }
    let left = recovery::left_on(&mut tx, &user.id).await?;
    notify(state, &mut tx, user, Kind::RecoveryCodeUsed, left).await?;
    email::commit_and_wake(state, tx).await?;
    tracing::info!(user = %user.id, left, "recovery code used");
    Ok(true)
}

fn secret_bytes(factor: &factors::Factor) -> Result<Vec<u8>> {
    data_encoding::BASE32_NOPAD
        .decode(factor.secret.as_bytes())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stored TOTP secret: {e}")))
}

async fn notify(
    state: &Auth,
    conn: &mut sqlx::AnyConnection,
    user: &User,
    kind: Kind,
    left: i64,
) -> Result<()> {
    email::enqueue(
        state,
        conn,
        Outgoing {
            kind,
            to: &user.email,
            context: minijinja::context! { left },
            dedupe_key: None,
        },
    )
    .await
}

/// An enrolment begun: what the authenticator app needs.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// The secret, base32, for typing in by hand.
    pub secret: String,
    /// The `otpauth://` URI the app scans.
    pub otpauth_uri: String,
    /// The URI as an SVG QR code.
    pub qr_svg: String,
}

/// Begins (or begins again) an enrolment: a new secret, which counts for nothing until
/// [`confirm`]. `SecondFactorEnabled` when a factor is already on.
pub async fn begin(state: &Auth, user: &User) -> Result<Enrolment> {
    let secret = totp::new_secret();
    let encoded = data_encoding::BASE32_NOPAD.encode(&secret);
    if !factors::start(&state.db, &user.id, &encoded, state.clock.now()).await? {
        return Err(AppError::SecondFactorEnabled);
    }
    tracing::info!(user = %user.id, "two-factor enrolment begun");
    enrolment(state, user, &secret)
}

/// The enrolment begun and not confirmed, shown again (a wrong first code).
pub async fn enrolment_in_progress(state: &Auth, user: &User) -> Result<Option<Enrolment>> {
    match factors::of(&state.db, &user.id).await? {
        Some(factor) if factor.confirmed_at.is_none() => {
            Ok(Some(enrolment(state, user, &secret_bytes(&factor)?)?))
        }
        _ => Ok(None),
    }
}

fn enrolment(state: &Auth, user: &User, secret: &[u8]) -> Result<Enrolment> {
    let otpauth_uri = totp::otpauth_uri(secret, &state.config.product_name, &user.email);
    let qr_svg = qrcode::QrCode::new(otpauth_uri.as_bytes())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("QR code: {e}")))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(Enrolment {
        secret: data_encoding::BASE32_NOPAD.encode(secret),
        otpauth_uri,
        qr_svg,
    })
}

/// Confirms the enrolment with a first code from the app: two-factor sign-in is on from now, and
/// the ten recovery codes (shown once) are returned. A notice is mailed.
pub async fn confirm(state: &Auth, current: SignedIn<'_>, code: &str) -> Result<Vec<String>> {
    let user = current.user;
    let subject = format!("changes:{}", user.id);
    rate_limit::hit_always(state, rate_limit::SECOND_FACTOR_PER_USER, &subject).await?;
    let factor = factors::of(&state.db, &user.id)
        .await?
        .ok_or(AppError::SecondFactorOff)?;
    if factor.confirmed_at.is_some() {
        return Err(AppError::SecondFactorEnabled);
    }
    let secret = secret_bytes(&factor)?;
    let step =
        totp::matching_step(&secret, code, db::now(), None).ok_or(AppError::SecondFactorInvalid)?;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    current.hold_on(&mut tx).await?;
    // Confirms this enrolment only: one begun again meanwhile has another id.
    if !factors::use_step_on(&mut tx, &user.id, &factor.id, step, Some(now)).await? {
        return Err(AppError::SecondFactorInvalid);
    }
    let codes = recovery::replace_on(&mut tx, &user.id, now).await?;
    // A passkey registration begun before the factor was on would finish without the code that
    // adding one now takes: it ends.
    passkeys::end_registrations_on(&mut tx, &user.id).await?;
    notify(state, &mut tx, user, Kind::SecondFactorEnabled, 0).await?;
    let entry = super::own_event(Audit::SecondFactorEnabled, &user.id, serde_json::json!({}));
    crate::audit::record(&mut tx, now, entry).await?;
    email::commit_and_wake(state, tx).await?;
    tracing::info!(user = %user.id, "two-factor sign-in turned on");
    Ok(codes)
}

/// A new set of recovery codes, given a current code from the app (or one of the old recovery
/// codes): the old ones stop working, and a notice is mailed. Like turning the factor off, it
/// takes the factor itself: a stolen session cannot mint codes and then use them.
pub async fn renew_codes(
    state: &Auth,
    current: SignedIn<'_>,
    proof: Proof<'_>,
) -> Result<Vec<String>> {
    let user = current.user;
    // A passkey proves the user even with the factor off: the factor must still be on.
    if check(state, user, proof, CountedOn::Session(current))
        .await?
        .is_empty()
    {
        return Err(AppError::SecondFactorOff);
    }
    let mut tx = state.db.begin().await?;
    current.hold_on(&mut tx).await?;
    let codes = recovery::replace_on(&mut tx, &user.id, state.clock.now()).await?;
    notify(state, &mut tx, user, Kind::RecoveryCodesRenewed, 0).await?;
    let entry = super::own_event(Audit::RecoveryCodesRenewed, &user.id, serde_json::json!({}));
    crate::audit::record(&mut tx, state.clock.now(), entry).await?;
    email::commit_and_wake(state, tx).await?;
    tracing::info!(user = %user.id, "recovery codes renewed");
    Ok(codes)
}

/// Turns two-factor sign-in off, given a current code (or a recovery code): the factor, its
/// recovery codes, pending sign-ins and every trusted device go; a notice is mailed.
pub async fn turn_off(state: &Auth, current: SignedIn<'_>, proof: Proof<'_>) -> Result<()> {
    let user = current.user;
    // A passkey proves the user even with the factor off: the factor must still be on.
    if check(state, user, proof, CountedOn::Session(current))
        .await?
        .is_empty()
    {
        return Err(AppError::SecondFactorOff);
    }
    let mut tx = state.db.begin().await?;
    current.hold_on(&mut tx).await?;
    remove_on(state, &mut tx, user, &user.id).await?;
    email::commit_and_wake(state, tx).await?;
    tracing::info!(user = %user.id, "two-factor sign-in turned off");
    Ok(())
}

/// Turns two-factor sign-in off for an owner who lost both the app and the recovery codes, once
/// an operator has checked who they are (`tollgate user reset-2fa`); the notice is mailed as for
/// [`turn_off`]. Whether it was on.
pub async fn reset_by_operator(state: &Auth, user: &User) -> Result<bool> {
    if factors::of(&state.db, &user.id).await?.is_none() {
        return Ok(false);
    }
    let mut tx = state.db.begin().await?;
    remove_on(state, &mut tx, user, "operator").await?;
    email::commit_and_wake(state, tx).await?;
    tracing::info!(user = %user.id, "two-factor sign-in reset by an operator");
    Ok(true)
}

/// The factor, its recovery codes and pending sign-ins go (and with the factor every trusted
/// device); the notice is queued.
async fn remove_on(
    state: &Auth,
    conn: &mut sqlx::AnyConnection,
    user: &User,
    actor: &str,
) -> Result<()> {
    clear_on(conn, &user.id).await?;
    notify(state, conn, user, Kind::SecondFactorDisabled, 0).await?;
    let entry = crate::audit::Entry {
        kind: Audit::SecondFactorDisabled,
        actor,
        subject: Some(&user.id),
        payload: serde_json::json!({}),
    };
    Ok(crate::audit::record(conn, state.clock.now(), entry).await?)
}

/// Removes the user's factor (confirmed or not), recovery codes and pending sign-ins, inside the
/// caller's transaction and without a notice: for a mailbox proof that takes an account back from
/// whoever registered its address before it was proven.
pub async fn clear_on(conn: &mut sqlx::AnyConnection, user_id: &str) -> Result<()> {
    if factors::delete_on(conn, user_id).await? {
        tracing::warn!(
            target: "security",
            security_event = "unproven_second_factor_removed",
            user = %user_id,
            "a mailbox proof removed a second factor enrolled before the address was proven"
        );
    }
    recovery::delete_on(conn, user_id).await?;
    pending::end_all_on(conn, user_id).await?;
    Ok(())
}
