//! Registering a passkey: the options (a discoverable credential, user verification required, the
//! account's other passkeys excluded), then the authenticator's answer, checked and stored.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use passki::{
    RegistrationCredential, RegistrationOptions, ResidentKeyRequirement,
    UserVerificationRequirement,
};

use super::{
    ALGORITHMS, MAX_CREDENTIAL_ID_BYTES, MAX_NAME_CHARS, MAX_PER_USER, Options, Purpose, Summary,
    TIMEOUT_MS, ceremonies, internal, notify, refused, relying_party, store, stored,
};
use crate::{
    auth::{Auth, SignedIn, rate_limit, users, users::User},
    email::{self, Kind},
    error::{AppError, Result},
};
/// A name as typed: trimmed, 1 to 64 characters, no control or invisible characters (bidi
/// overrides, zero-width spaces: a name must read as what it is); `Passkey` when blank.
pub fn clean_name(name: Option<&str>) -> Result<String> {
    let name = name.map(str::trim).unwrap_or("");
    if name.is_empty() {
        return Ok("Passkey".into());
    }
    if name.chars().count() > MAX_NAME_CHARS || !name.chars().all(shows) || stacked(name) {
        return Err(AppError::InvalidField("name".into()));
    }
    Ok(name.to_owned())
}

/// A character that shows as itself on one line: not a control, format, private-use, surrogate
/// or unassigned one, not a line or paragraph separator, not invisible.
fn shows(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory as _};
    let hidden = matches!(
        c.general_category(),
        G::Control
            | G::Format
            | G::PrivateUse
            | G::Surrogate
            | G::Unassigned
            | G::LineSeparator
            | G::ParagraphSeparator
    );
    !hidden && !users::is_invisible(c) && !matches!(c as u32, 0xFFFE | 0xFFFF)
}

/// More than two combining marks on one character (marks piled up to cover other text).
fn stacked(name: &str) -> bool {
    use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory as _};
    let mut run = 0;
    name.chars().any(|c| {
        run = if c.general_category_group() == GeneralCategoryGroup::Mark {
            run + 1
        } else {
            0
        };
        run > 2
    })
}

/// What registering needs before anything is spent (a code, a ceremony): passkeys on, a verified
/// address (a passkey must not outlive a stranger's pre-registration of it), room for one more.
pub async fn registration_precheck(state: &Auth, user: &User) -> Result<()> {
    relying_party(state)?;
    if !user.email_verified {
        return Err(AppError::EmailUnverified);
    }
    if store::count(&state.db, &user.id).await? >= MAX_PER_USER as i64 {
        return Err(AppError::TooManyPasskeys);
    }
    Ok(())
}

/// Begins registering a passkey on the user's account. The address must be verified (a passkey
/// must not outlive a stranger's pre-registration of it).
pub async fn registration_options(state: &Auth, user: &User) -> Result<Options> {
    let rp = relying_party(state)?;
    if !user.email_verified {
        return Err(AppError::EmailUnverified);
    }
    rate_limit::hit_always(state, rate_limit::CEREMONIES_PER_USER, &user.id).await?;
    let existing = store::of_user(&state.db, &user.id).await?;
    if existing.len() >= MAX_PER_USER {
        return Err(AppError::TooManyPasskeys);
    }
    let exclude = existing.iter().map(stored).collect::<Result<Vec<_>>>()?;
    let handle = store::user_handle(&state.db, &user.id).await?;
    let mut options = RegistrationOptions::default();
    options.timeout = TIMEOUT_MS;
    options.resident_key = ResidentKeyRequirement::Required;
    options.user_verification = UserVerificationRequirement::Required;
    options.exclude_credentials = Some(&exclude);
    let (challenge, ceremony_state) = rp
        .passki
        .start_passkey_registration(&handle, &user.email, &user.email, options)
        .map_err(|e| internal("passkey registration", e))?;
    let saved = serde_json::to_string(&ceremony_state).map_err(|e| internal("ceremony", e))?;
    let now = state.clock.now();
    let token = ceremonies::create(
        &state.db,
        Purpose::Register,
        Some(&user.id),
        None,
        &saved,
        now,
    )
    .await?;
    let public_key = serde_json::to_value(&challenge).map_err(|e| internal("options", e))?;
    Ok(Options {
        ceremony: token,
        public_key,
    })
}

/// Finishes a registration begun by [`registration_options`] on this account: the passkey is
/// stored under `name` and a notice is mailed.
pub async fn register(
    state: &Auth,
    current: SignedIn<'_>,
    ceremony: &str,
    credential: &serde_json::Value,
    name: &str,
) -> Result<Summary> {
    let rp = relying_party(state)?;
    let user = current.user;
    let now = state.clock.now();
    let taken = ceremonies::take(&state.db, ceremony, Purpose::Register, now)
        .await?
        .ok_or_else(|| refused("ceremony"))?;
    if taken.user_id.as_deref() != Some(user.id.as_str()) {
        return Err(refused("ceremony_of_another_account"));
    }
    let answer: RegistrationCredential =
        serde_json::from_value(credential.clone()).map_err(|_| refused("malformed"))?;
    let ceremony_state = serde_json::from_str(&taken.state).map_err(|e| internal("ceremony", e))?;
    let passkey = rp
        .passki
        .finish_passkey_registration(&answer, &ceremony_state)
        .map_err(|e| refused(&format!("registration: {e}")))?;
    // A key tollgate could never check, or an id past WebAuthn's bound, is not stored.
    if !ALGORITHMS.contains(&passkey.algorithm) {
        return Err(refused("algorithm_not_offered"));
    }
    if !key_fits_algorithm(passkey.algorithm, &passkey.public_key) {
        return Err(refused("key_shape"));
    }
    if !(1..=MAX_CREDENTIAL_ID_BYTES).contains(&passkey.credential_id.len()) {
        return Err(refused("credential_id_length"));
    }
    let row = store::Row {
        id: crate::ids::new_id("pk"),
        user_id: user.id.clone(),
        name: name.to_owned(),
        credential_id: URL_SAFE_NO_PAD.encode(&passkey.credential_id),
        credential: serde_json::to_string(&passkey).map_err(|e| internal("passkey", e))?,
        sign_count: i64::from(passkey.counter),
        created_at: now,
        last_used_at: None,
    };
    let mut tx = state.db.begin().await?;
    current.hold_on(&mut tx).await?;
    if store::count_on(&mut tx, &user.id).await? >= MAX_PER_USER as i64 {
        return Err(AppError::TooManyPasskeys);
    }
    if !store::insert_on(&mut tx, &row).await? {
        return Err(AppError::PasskeyExists);
    }
    notify(state, &mut tx, user, Kind::PasskeyAdded, &row.name).await?;
    let payload = serde_json::json!({"passkey": row.id, "name": row.name});
    let entry = crate::auth::own_event(crate::audit::Kind::PasskeyAdded, &user.id, payload);
    crate::audit::record(&mut tx, state.clock.now(), entry).await?;
    email::commit_and_wake(state, tx).await?;
    tracing::info!(user = %user.id, passkey = %row.id, "passkey registered");
    Ok(Summary::from(&row))
}

/// Whether a COSE public key has the shape its algorithm needs: EC2 on the named curve with both
/// coordinates for ES256/ES384, OKP Ed25519 for EdDSA, RSA with a 2048-bit or larger modulus for
/// RS256/RS384. A key of another shape would be stored and then fail every sign-in.
fn key_fits_algorithm(algorithm: i32, cose: &[u8]) -> bool {
    let Ok(ciborium::Value::Map(map)) = ciborium::from_reader::<ciborium::Value, _>(cose) else {
        return false;
    };
    let int = |label: i64| {
        map.iter()
            .find(|(k, _)| k.as_integer() == Some(label.into()))
            .and_then(|(_, v)| v.as_integer())
            .and_then(|i| i64::try_from(i).ok())
    };
    let bytes = |label: i64| {
        map.iter()
            .find(|(k, _)| k.as_integer() == Some(label.into()))
            .and_then(|(_, v)| v.as_bytes())
            .map(Vec::as_slice)
    };
    // A public key never carries a private part (`d`, label -4 for EC2 and OKP).
    if int(3) != Some(i64::from(algorithm)) || (int(1) != Some(3) && bytes(-4).is_some()) {
        return false;
    }
    let point = |size: usize| match (bytes(-2), bytes(-3)) {
        (Some(x), Some(y)) if x.len() == size && y.len() == size => {
            Some([&[0x04][..], x, y].concat())
        }
        _ => None,
    };
    match algorithm {
        -7 => {
            int(1) == Some(2)
                && int(-1) == Some(1)
                && point(32).is_some_and(|p| p256::PublicKey::from_sec1_bytes(&p).is_ok())
        }
        -35 => {
            int(1) == Some(2)
                && int(-1) == Some(2)
                && point(48).is_some_and(|p| p384::PublicKey::from_sec1_bytes(&p).is_ok())
        }
        -8 => int(1) == Some(1) && int(-1) == Some(6) && bytes(-2).is_some_and(|x| x.len() == 32),
        -257 | -258 => int(1) == Some(3) && rsa_fits(bytes(-1), bytes(-2)),
        _ => false,
    }
}

/// An RSA key ring and passki verify: a 2048- to 8192-bit modulus (leading zero bytes aside)
/// and an odd public exponent of at least 3 that fits in 32 bits.
fn rsa_fits(n: Option<&[u8]>, e: Option<&[u8]>) -> bool {
    let strip = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|&x| x == 0).collect() };
    let (Some(n), Some(e)) = (n.map(strip), e.map(strip)) else {
        return false;
    };
    let modulus_ok = (n.len() == 256 && n[0] >= 0x80) || (257..=1024).contains(&n.len());
    let exponent = (e.len() <= 4).then(|| e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
    modulus_ok && exponent.is_some_and(|e| e >= 3 && e % 2 == 1)
}
