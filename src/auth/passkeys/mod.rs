//! Passkeys (WebAuthn, verified by the passki crate): registered from a signed-in account, used to
//! sign in without a username (discoverable credentials), as the second step of a two-step
//! sign-in, and as the fresh proof sensitive changes ask for.
//!
//! Every use is a *ceremony* in two requests: the options (a random challenge, stored hashed
//! behind a `tgw_…` token, [`ceremonies`]), then the authenticator's answer, which takes the
//! ceremony whatever the outcome, so an answer counts once. The answer must come from our origin,
//! be signed for our relying-party id with user verification (a PIN or biometric, so a passkey is
//! two factors in itself), and carry a signature counter above the one stored when the
//! authenticator keeps one; the counter moves by a guarded update, so two racing answers cannot
//! both pass.
//!
//! The relying party comes from `TOLLGATE_BASE_URL`: its host is the id and its origin the only
//! one accepted. Browsers refuse passkeys on an IP address, so a base URL with one leaves passkeys
//! off (`passkeys_unavailable`); in development without a base URL the relying party is
//! `localhost` on tollgate's port.

pub mod ceremonies;
mod register;
pub mod store;

pub use ceremonies::Purpose;
pub use register::{clean_name, register, registration_options, registration_precheck};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use passki::{
    AuthenticationCredential, AuthenticationOptions, Passki, StoredPasskey,
    UserVerificationRequirement,
};
use serde::Serialize;
use url::Url;

use super::{Auth, SignedIn, rate_limit, rate_limit::ClientIp, users, users::User};
use crate::{
    email::{self, Kind, Outgoing},
    error::{AppError, Result},
};

/// Passkeys one account may hold.
pub const MAX_PER_USER: usize = 20;
/// The longest name a passkey takes, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The longest credential id taken, in bytes (WebAuthn: ids over 1023 bytes are to be refused).
pub const MAX_CREDENTIAL_ID_BYTES: usize = 1023;
/// The algorithms offered at registration (COSE): ES256, EdDSA, ES384, RS256, RS384.
const ALGORITHMS: [i32; 5] = [-7, -8, -35, -257, -258];
/// How long the browser waits for the authenticator (milliseconds): the ceremony's lifetime.
const TIMEOUT_MS: u64 = (ceremonies::LIFETIME_SECS as u64) * 1000;

/// Who passkeys are made for: the relying-party id (a host name) and the one origin accepted.
pub struct RelyingParty {
    passki: Passki,
    /// The relying-party id.
    pub id: String,
    /// The origin answers must come from.
    pub origin: String,
}

impl RelyingParty {
    /// The relying party of `base` (the configured base URL, when `configured`): its host, which
    /// must be a name, and its origin. In development without a configured base URL, `localhost`
    /// on `port`. `None` when passkeys cannot work (a base URL on an IP address).
    pub fn for_base(
        base: &Url,
        configured: bool,
        development: bool,
        port: u16,
        product: &str,
    ) -> Option<Self> {
        let (id, origin) = if !configured && development {
            ("localhost".to_owned(), format!("http://localhost:{port}"))
        } else {
            match base.host()? {
                url::Host::Domain(host) => (host.to_owned(), base.origin().ascii_serialization()),
                url::Host::Ipv4(_) | url::Host::Ipv6(_) => return None,
            }
        };
        Some(Self {
            passki: Passki::new(&id, &[&origin], product),
            id,
            origin,
        })
    }
}

fn relying_party(state: &Auth) -> Result<&RelyingParty> {
    state.passkeys.as_ref().ok_or(AppError::PasskeysUnavailable)
}

/// Options for the browser's `navigator.credentials.create()` or `.get()`, and the token of the
/// ceremony its answer finishes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PasskeyOptions)]
pub struct Options {
    /// The ceremony's token (`tgw_…`), sent back with the answer.
    pub ceremony: String,
    /// `PublicKeyCredentialCreationOptionsJSON` or `…RequestOptionsJSON`.
    #[serde(rename = "publicKey")]
    pub public_key: serde_json::Value,
}

/// A passkey's answer to a ceremony, as a client sends it: the ceremony's token and
/// `credential.toJSON()`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = PasskeyAnswer)]
pub struct Answer {
    /// The ceremony's token (`tgw_…`).
    pub ceremony: String,
    /// `RegistrationResponseJSON` or `AuthenticationResponseJSON`.
    pub credential: serde_json::Value,
}

/// A passkey as its owner sees it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Passkey)]
pub struct Summary {
    /// Its id (`pk_…`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Registered at (Unix seconds).
    pub created_at: i64,
    /// Last used (Unix seconds).
    pub last_used_at: Option<i64>,
}

impl From<&store::Row> for Summary {
    fn from(row: &store::Row) -> Self {
        Self {
            id: row.id.clone(),
            name: row.name.clone(),
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        }
    }
}

/// The user's passkeys, oldest first.
pub async fn list(state: &Auth, user_id: &str) -> Result<Vec<Summary>> {
    let rows = store::of_user(&state.db, user_id).await?;
    Ok(rows.iter().map(Summary::from).collect())
}

/// How many passkeys the user has.
pub async fn count(state: &Auth, user_id: &str) -> Result<i64> {
    Ok(store::count(&state.db, user_id).await?)
}

fn internal(what: &str, err: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("{what}: {err}"))
}

fn stored(row: &store::Row) -> Result<StoredPasskey> {
    serde_json::from_str(&row.credential).map_err(|e| internal("stored passkey", e))
}

/// A refused answer: one code for every reason, the reason in the security log (cut short: a
/// reason may quote what the client sent).
fn refused(reason: &str) -> AppError {
    let cut: String = reason.chars().take(160).collect();
    crate::telemetry::security_event("passkey_refused", None, &cut);
    AppError::PasskeyInvalid
}

/// Renames the user's passkey `id`.
/// `name` as typed: a blank one is refused (`InvalidField`), as any [`clean_name`] refuses.
pub async fn rename(state: &Auth, current: SignedIn<'_>, id: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(AppError::InvalidField("name".into()));
    }
    let name = &clean_name(Some(name))?;
    let mut tx = state.db.begin().await?;
    current.hold_on(&mut tx).await?;
    if !store::rename_on(&mut tx, &current.user.id, id, name).await? {
        return Err(AppError::NotFound);
    }
    tx.commit().await?;
    Ok(())
}

/// Removes the user's passkey `id`, unless it is their last way in besides email
/// (`SocialLastMethod`); a notice is mailed.
pub async fn remove(state: &Auth, current: SignedIn<'_>, id: &str) -> Result<()> {
    let user = current.user;
    let mut tx = state.db.begin().await?;
    current.hold_on(&mut tx).await?;
    let name = store::delete_on(&mut tx, &user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    // Counted after the removal, in the transaction that holds the account (which rolls back).
    if super::ways_in_on(&mut tx, user).await? < 1 {
        return Err(AppError::SocialLastMethod);
    }
    notify(state, &mut tx, user, Kind::PasskeyRemoved, &name).await?;
    let payload = serde_json::json!({"passkey": id, "name": name});
    let entry = crate::auth::own_event(crate::audit::Kind::PasskeyRemoved, &user.id, payload);
    crate::audit::record(&mut tx, state.clock.now(), entry).await?;
    email::commit_and_wake(state, tx).await?;
    tracing::info!(user = %user.id, passkey = %id, "passkey removed");
    Ok(())
}

/// Ends the user's open registrations (two-factor sign-in just turned on: adding a passkey now
/// takes a code, which they were begun without).
pub async fn end_registrations_on(conn: &mut sqlx::AnyConnection, user_id: &str) -> Result<()> {
    Ok(ceremonies::end_on(conn, user_id, Purpose::Register).await?)
}

/// Removes every passkey of the user and their open ceremonies, inside the caller's transaction
/// and without a notice of its own: a password reset (how an owner takes the account back: a
/// passkey added by whoever held it must not outlive it) and a mailbox proof of an address
/// registered by someone else. How many there were.
pub async fn remove_all_on(conn: &mut sqlx::AnyConnection, user_id: &str) -> Result<u64> {
    ceremonies::end_all_on(conn, user_id).await?;
    Ok(store::delete_all_on(conn, user_id).await?)
}

async fn notify(
    state: &Auth,
    conn: &mut sqlx::AnyConnection,
    user: &User,
    kind: Kind,
    name: &str,
) -> Result<()> {
    email::enqueue(
        state,
        conn,
        Outgoing {
            kind,
            to: &user.email,
            context: minijinja::context! { name },
            dedupe_key: None,
        },
    )
    .await
}

fn request_options(
    rp: &RelyingParty,
    allowed: &[StoredPasskey],
) -> Result<(serde_json::Value, String)> {
    let mut options = AuthenticationOptions::default();
    options.timeout = TIMEOUT_MS;
    options.user_verification = UserVerificationRequirement::Required;
    let (challenge, ceremony_state) = rp
        .passki
        .start_passkey_authentication(allowed, options)
        .map_err(|e| internal("passkey authentication", e))?;
    let public_key = serde_json::to_value(&challenge).map_err(|e| internal("options", e))?;
    let saved = serde_json::to_string(&ceremony_state).map_err(|e| internal("ceremony", e))?;
    Ok((public_key, saved))
}

/// Begins a sign-in with a passkey alone: any passkey of this site the authenticator holds.
pub async fn sign_in_options(state: &Auth, ip: ClientIp) -> Result<Options> {
    let rp = relying_party(state)?;
    rate_limit::hit_ip(state, rate_limit::LOGIN_PER_IP, ip).await?;
    let (public_key, saved) = request_options(rp, &[])?;
    let now = state.clock.now();
    let token = ceremonies::create(&state.db, Purpose::SignIn, None, None, &saved, now).await?;
    Ok(Options {
        ceremony: token,
        public_key,
    })
}

/// Finishes a sign-in with a passkey alone: the user whose passkey answered. The authenticator
/// verified its user (a PIN or biometric), so no second step follows.
pub async fn sign_in(
    state: &Auth,
    ip: ClientIp,
    ceremony: &str,
    credential: &serde_json::Value,
) -> Result<User> {
    let rp = relying_party(state)?;
    rate_limit::hit_ip(state, rate_limit::LOGIN_PER_IP, ip).await?;
    let taken = ceremonies::take(&state.db, ceremony, Purpose::SignIn, state.clock.now())
        .await?
        .ok_or_else(|| refused("ceremony"))?;
    let answer = parse_assertion(credential)?;
    let row = row_of(state, &answer).await?;
    // A sign-in without a username learns the account from the user handle, which must be the
    // one this credential was registered under.
    let handle = answer
        .response
        .user_handle
        .as_deref()
        .ok_or_else(|| refused("no_user_handle"))?;
    let canonical = URL_SAFE_NO_PAD
        .decode(handle.as_bytes())
        .map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
        .map_err(|_| refused("malformed_user_handle"))?;
    if store::user_of_handle(&state.db, &canonical)
        .await?
        .as_deref()
        != Some(&row.user_id)
    {
        return Err(refused("user_handle_mismatch"));
    }
    verify_assertion(state, rp, &taken.state, &answer, &row).await?;
    let mut conn = state.db.pool.acquire().await?;
    let user = users::find_by_id_on(&mut conn, &row.user_id)
        .await?
        .ok_or_else(|| refused("account_gone"))?;
    tracing::info!(user = %user.id, passkey = %row.id, "passkey sign-in");
    Ok(user)
}

/// Begins an assertion by one of the user's passkeys: the second step of the pending sign-in
/// whose token hash is `pending_hash`, or a fresh proof. `NoPasskey` when the user has none.
pub async fn assertion_options(
    state: &Auth,
    user_id: &str,
    purpose: Purpose,
    pending_hash: Option<&str>,
) -> Result<Options> {
    let rp = relying_party(state)?;
    let rows = store::of_user(&state.db, user_id).await?;
    if rows.is_empty() {
        return Err(AppError::NoPasskey);
    }
    // A second step counts on its pending sign-in: whoever holds the password must not use up
    // the owner's ceremonies.
    let subject = pending_hash.map_or_else(|| user_id.to_owned(), |h| format!("pending:{h}"));
    rate_limit::hit_always(state, rate_limit::CEREMONIES_PER_USER, &subject).await?;
    let allowed = rows.iter().map(stored).collect::<Result<Vec<_>>>()?;
    let (public_key, saved) = request_options(rp, &allowed)?;
    let now = state.clock.now();
    let token =
        ceremonies::create(&state.db, purpose, Some(user_id), pending_hash, &saved, now).await?;
    Ok(Options {
        ceremony: token,
        public_key,
    })
}

/// Checks an answer to a ceremony begun by [`assertion_options`] for `user` (and, for a second
/// step, for the pending sign-in whose token hash is `pending_hash`); the passkey's id.
pub async fn verify_for(
    state: &Auth,
    user: &User,
    purpose: Purpose,
    pending_hash: Option<&str>,
    ceremony: &str,
    credential: &serde_json::Value,
) -> Result<String> {
    let rp = relying_party(state)?;
    let taken = ceremonies::take(&state.db, ceremony, purpose, state.clock.now())
        .await?
        .ok_or_else(|| refused("ceremony"))?;
    if taken.user_id.as_deref() != Some(user.id.as_str())
        || taken.pending_hash.as_deref() != pending_hash
    {
        return Err(refused("ceremony_of_another_sign_in"));
    }
    let answer = parse_assertion(credential)?;
    let row = row_of(state, &answer).await?;
    if row.user_id != user.id {
        return Err(refused("passkey_of_another_account"));
    }
    verify_assertion(state, rp, &taken.state, &answer, &row).await?;
    Ok(row.id)
}

fn parse_assertion(credential: &serde_json::Value) -> Result<AuthenticationCredential> {
    serde_json::from_value(credential.clone()).map_err(|_| refused("malformed"))
}

/// The stored passkey the answer names (by its raw id, in canonical base64url).
async fn row_of(state: &Auth, answer: &AuthenticationCredential) -> Result<store::Row> {
    let raw = URL_SAFE_NO_PAD
        .decode(answer.raw_id.as_bytes())
        .ok()
        .filter(|raw| (1..=MAX_CREDENTIAL_ID_BYTES).contains(&raw.len()))
        .ok_or_else(|| refused("malformed_credential_id"))?;
    store::by_credential(&state.db, &URL_SAFE_NO_PAD.encode(raw))
        .await?
        .ok_or_else(|| refused("unknown_credential"))
}

/// Verifies the answer against the ceremony's state and the stored passkey, then moves its
/// counter (guarded: a racing answer with the same counter fails here).
async fn verify_assertion(
    state: &Auth,
    rp: &RelyingParty,
    ceremony_state: &str,
    answer: &AuthenticationCredential,
    row: &store::Row,
) -> Result<()> {
    let ceremony_state =
        serde_json::from_str(ceremony_state).map_err(|e| internal("ceremony", e))?;
    let mut passkey = stored(row)?;
    // The counter lives in its own column (the JSON keeps the one seen at registration).
    passkey.counter = u32::try_from(row.sign_count).map_err(|e| internal("sign count", e))?;
    let result = rp
        .passki
        .finish_passkey_authentication(answer, &ceremony_state, &passkey)
        .map_err(|e| refused(&format!("assertion: {e}")))?;
    if result.credential_id != passkey.credential_id {
        return Err(refused("credential_id_mismatch"));
    }
    let now = state.clock.now();
    let new = i64::from(result.counter);
    if !store::record_use(&state.db, &row.id, row.sign_count, new, now).await? {
        return Err(refused("counter_raced"));
    }
    Ok(())
}
