//! Signed-in devices: where each sign-in of a user comes from, the list its owner sees, signing
//! one out or every other, and the "new sign-in" notice (on unless the user turned it off; the
//! `sign_in_notice_opt_outs` table).
//!
//! A session records at sign-in the browser *family* (`Firefox on Linux`: never the whole
//! user-agent string) and, only when the deployment's proxy supplies one
//! (`TOLLGATE_LOCATION_HEADER`), an approximate place. tollgate looks nothing up itself.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{HeaderMap, header, request::Parts},
};
use tower_sessions::Session;

use super::{
    Auth, SEEN_AT_KEY, SIGNED_IN_AT_KEY, SignedIn, device::DeviceCookie, refresh, session_store,
    users::User,
};
use crate::{
    clock,
    email::{self, Kind, Outgoing},
    error::{AppError, Result},
};

/// The session keys of what a sign-in came from.
const AGENT_KEY: &str = "agent";
const PLACE_KEY: &str = "place";
/// Longest place kept (a country code, a city name).
const PLACE_MAX: usize = 64;
/// Last-seen times are shown to this many seconds (coarse: an hour).
const SEEN_GRAIN_SECS: i64 = 3_600;

/// Where a sign-in comes from: the browser family, an approximate place when the proxy gives one,
/// and the device cookie the browser holds (a browser new to the account gets a notice).
#[derive(Clone, Debug, Default)]
pub struct SignInFrom {
    /// `Chrome on macOS`, `curl`, `Unknown browser`.
    pub agent: String,
    /// From `TOLLGATE_LOCATION_HEADER`, when set and sent.
    pub place: Option<String>,
    /// The device cookie of the request.
    pub device: DeviceCookie,
}

impl SignInFrom {
    /// What `headers` tell.
    pub fn of(state: &Auth, headers: &HeaderMap) -> Self {
        let agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "Unknown browser".to_owned(), agent_family);
        let place = state
            .config
            .location_header
            .as_deref()
            .and_then(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.trim()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(PLACE_MAX)
                    .collect::<String>()
            })
            .filter(|v| !v.is_empty());
        let device = DeviceCookie(super::device::request_cookie(
            headers,
            super::device::cookie_name(state),
        ));
        Self {
            agent,
            place,
            device,
        }
    }
}

impl<S> FromRequestParts<S> for SignInFrom
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&Auth::from_ref(state), &parts.headers))
    }
}

/// The browser family of a user-agent string: a browser and an operating system, nothing that
/// tells one installation from another.
pub fn agent_family(ua: &str) -> String {
    let has = |s: &str| ua.contains(s);
    let browser = if has("Edg/") {
        "Edge"
    } else if has("OPR/") {
        "Opera"
    } else if has("Firefox/") || has("FxiOS/") {
        "Firefox"
    } else if has("Chrome/") || has("CriOS/") || has("HeadlessChrome/") {
        "Chrome"
    } else if has("Safari/") && has("Version/") {
        "Safari"
    } else if ua.starts_with("curl/") {
        "curl"
    } else if ua.starts_with("python-") || ua.starts_with("Python") {
        "Python"
    } else if ua.starts_with("okhttp/") {
        "An Android app"
    } else {
        "Unknown browser"
    };
    let os = if has("iPhone") || has("iPad") {
        Some("iOS")
    } else if has("Android") {
        Some("Android")
    } else if has("Windows") {
        Some("Windows")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Mac OS X") || has("Macintosh") {
        Some("macOS")
    } else if has("Linux") {
        Some("Linux")
    } else {
        None
    };
    match os {
        Some(os) => format!("{browser} on {os}"),
        None => browser.to_owned(),
    }
}

/// Records on a session being signed in what it came from.
pub(super) async fn record(session: &Session, from: &SignInFrom) -> Result<()> {
    session.insert(AGENT_KEY, &from.agent).await?;
    if let Some(place) = &from.place {
        session.insert(PLACE_KEY, place).await?;
    }
    Ok(())
}

/// One signed-in device as its owner sees it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Device)]
pub struct DeviceJson {
    /// What to sign out with: a session's (hashed) id, or a token sign-in's `fam_…` id.
    pub id: String,
    /// `session` (a browser) or `token` (an app holding access and refresh tokens).
    pub kind: &'static str,
    /// The request asking.
    pub current: bool,
    /// When it signed in (RFC 3339).
    pub signed_in_at: String,
    /// When it was last seen, to the hour (RFC 3339).
    pub last_seen_at: String,
    /// The browser family; `null` for a token sign-in.
    pub agent: Option<String>,
    /// An approximate place, when the deployment supplies one.
    pub place: Option<String>,
}

fn coarse(unix: i64) -> String {
    clock::rfc3339(unix - unix.rem_euclid(SEEN_GRAIN_SECS))
}

/// Every live sign-in of the user (sessions, then token sign-ins), newest first; `current` marks
/// the asking session.
pub async fn list(state: &Auth, current: SignedIn<'_>) -> Result<Vec<DeviceJson>> {
    let current_hash = current.session.id().map(|id| session_store::hash_id(&id));
    list_of(state, current.user, current_hash.as_deref()).await
}

/// Every live sign-in of `user` as [`list`] gives it, for an administrator (no current device).
pub async fn list_of(
    state: &Auth,
    user: &User,
    current_hash: Option<&str>,
) -> Result<Vec<DeviceJson>> {
    let now = crate::db::now();
    let mut devices: Vec<(i64, DeviceJson)> = Vec::new();
    for stored in session_store::list_for_user(&state.db, &user.id, now).await? {
        let data = &stored.data;
        let number = |key: &str| data.get(key).and_then(|v| v.as_i64());
        let text = |key: &str| data.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        // Only sessions of the current epoch are alive (older rows die on their next request).
        if session_store::epoch_of(data) < user.session_epoch {
            continue;
        }
        let signed_in = number(SIGNED_IN_AT_KEY).unwrap_or(stored.created_at);
        let seen = number(SEEN_AT_KEY).unwrap_or(signed_in);
        devices.push((
            signed_in,
            DeviceJson {
                current: current_hash == Some(stored.id_hash.as_str()),
                id: stored.id_hash,
                kind: "session",
                signed_in_at: clock::rfc3339(signed_in),
                last_seen_at: coarse(seen),
                agent: Some(text(AGENT_KEY).unwrap_or_else(|| "Unknown browser".into())),
                place: text(PLACE_KEY),
            },
        ));
    }
    devices.sort_by_key(|d| std::cmp::Reverse(d.0));
    let mut families = refresh::live_families(&state.db, user, state.clock.now()).await?;
    families.sort_by_key(|f| std::cmp::Reverse(f.created_at));
    let tokens = families.into_iter().map(|f| DeviceJson {
        id: f.id,
        kind: "token",
        current: false,
        signed_in_at: clock::rfc3339(f.created_at),
        last_seen_at: coarse(f.last_used_at),
        agent: None,
        place: None,
    });
    Ok(devices.into_iter().map(|(_, d)| d).chain(tokens).collect())
}

/// Signs out one of the user's devices (a session by its hashed id, or a token sign-in); whether
/// there was such a live one.
pub async fn sign_out_one(state: &Auth, user_id: &str, id: &str) -> Result<bool> {
    sign_out_one_by(state, user_id, id, None).await
}

/// [`sign_out_one`], by an administrator when `admin` names one (an audit event in the same
/// transaction, when there was such a device).
pub async fn sign_out_one_by(
    state: &Auth,
    user_id: &str,
    id: &str,
    admin: Option<&str>,
) -> Result<bool> {
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let done = if id.starts_with("fam_") {
        refresh::end_one_of_user_on(&mut tx, user_id, id, refresh::Ending::Revoked, now).await?
    } else {
        session_store::delete_for_user_on(&mut tx, user_id, id).await?
    };
    if let Some(admin) = admin.filter(|_| done) {
        let entry = crate::audit::Entry {
            kind: crate::audit::Kind::AdminSignedOutDevice,
            actor: admin,
            subject: Some(user_id),
            payload: serde_json::json!({"device": id}),
        };
        crate::audit::record(&mut tx, now, entry).await?;
    }
    state.commit_for(tx, user_id).await?;
    if done {
        tracing::info!(user = %user_id, by_admin = admin.is_some(), "device signed out");
    }
    Ok(done)
}

/// Signs out every other device: every session but this one, every token sign-in, and every
/// device trusted to skip the second factor (the session epoch moves; this session goes on under
/// a new id and the new epoch, as after a password change).
pub async fn sign_out_others(state: &Auth, current: SignedIn<'_>) -> Result<i64> {
    let user_id = &current.user.id;
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let epoch = session_store::revoke_all_on(&mut tx, user_id, Some(current.session_epoch))
        .await?
        .ok_or(AppError::Unauthenticated)?;
    refresh::end_all_on(&mut tx, user_id, refresh::Ending::Logout, now).await?;
    state.commit_for(tx, user_id).await?;
    current.session.cycle_id().await?;
    current
        .session
        .insert(session_store::EPOCH_KEY, epoch)
        .await?;
    current.session.save().await?;
    tracing::info!(user = %user_id, "signed out everywhere else");
    Ok(epoch)
}

/// Whether the user gets the "new sign-in" notice.
pub async fn notices_on(state: &Auth, user_id: &str) -> Result<bool> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT user_id FROM sign_in_notice_opt_outs WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&state.db.pool)
            .await?;
    Ok(row.is_none())
}

/// Turns the "new sign-in" notice on or off for the signed-in user. Off takes a proof from the
/// last 10 minutes: a stolen session must not silence the mail that would give it away.
pub async fn set_notices(state: &Auth, current: SignedIn<'_>, on: bool) -> Result<()> {
    if !on {
        super::require_recent_proof(state, current.session).await?;
    }
    let user_id = &current.user.id;
    let mut tx = state.db.begin().await?;
    current.hold_on(&mut tx).await?;
    if on {
        sqlx::query("DELETE FROM sign_in_notice_opt_outs WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO sign_in_notice_opt_outs (user_id, created_at) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(state.clock.now())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// After a sign-in completed (a session or a token pair): the new-device notice
/// ([`notice_if_new`]) and a fresh device cookie on `headers`.
pub async fn welcome(
    state: &Auth,
    user: &User,
    from: &SignInFrom,
    headers: &mut HeaderMap,
) -> Result<()> {
    notice_if_new(state, user, from).await?;
    headers.append(
        header::SET_COOKIE,
        super::device::issue(state, &user.id, user.session_epoch),
    );
    Ok(())
}

/// After a sign-in completed: a notice to the owner when the browser is new to the account (it
/// holds no device cookie for it under the current session epoch), unless they turned notices
/// off or the address is not proven.
pub async fn notice_if_new(state: &Auth, user: &User, from: &SignInFrom) -> Result<()> {
    let known = from
        .device
        .nonce_for(&state.device_key, &user.id, user.session_epoch)
        .is_some();
    // An address nobody has proven gets none: registering someone else's address must not be a
    // way to mail them on every sign-in.
    if known || !user.email_verified || !notices_on(state, &user.id).await? {
        return Ok(());
    }
    let mut tx = state.db.begin().await?;
    email::enqueue(
        state,
        &mut tx,
        Outgoing {
            kind: Kind::NewSignIn,
            to: &user.email,
            context: minijinja::context! {
                agent => &from.agent,
                place => &from.place,
                at => clock::rfc3339(state.clock.now()),
            },
            dedupe_key: None,
        },
    )
    .await?;
    email::commit_and_wake(state, tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::agent_family;

    #[test]
    fn user_agents_come_down_to_a_browser_and_a_system() {
        for (ua, family) in [
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                "Chrome on macOS",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            ("curl/8.5.0", "curl"),
            ("", "Unknown browser"),
        ] {
            assert_eq!(agent_family(ua), family, "{ua}");
        }
    }
}
