//! Rate limits on credential endpoints, counted in the shared database so several instances
//! enforce one limit, and the client address they are keyed on.
//!
//! Fixed windows: one atomic upsert per check (`ON CONFLICT … DO UPDATE … RETURNING`), no
//! read-modify-write race. Windows expire by themselves, so the real user is never locked out for
//! longer than one window. Subjects (addresses, emails) are stored only as hashes.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRef, FromRequestParts},
    http::{Extensions, HeaderMap, request::Parts},
};
use sha2::{Digest, Sha256};

use super::Auth;
use crate::{db, error::AppError};

/// One limit: at most `max` hits per `window_secs`.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// Name used in the counter key and the README's table.
    pub scope: &'static str,
    /// Hits allowed per window.
    pub max: i64,
    /// Window length in seconds.
    pub window_secs: i64,
}

/// Login attempts from one client address.
pub const LOGIN_PER_IP: Limit = Limit {
    scope: "login-ip",
    max: 20,
    window_secs: 60,
};
/// Login attempts for one account (any address) from browsers without a device cookie for it,
/// which slows credential stuffing of one user.
pub const LOGIN_PER_ACCOUNT: Limit = Limit {
    scope: "login-account",
    max: 10,
    window_secs: 300,
};
/// Login attempts with one device cookie (a browser that signed in to the account before); a
/// successful login issues a new cookie, so this counts the failures since.
pub const LOGIN_PER_DEVICE: Limit = Limit {
    scope: "login-device",
    max: 5,
    window_secs: 300,
};
/// Login attempts for one account from all its device cookies together: a ceiling, so that
/// cookies collected from many sign-ins do not add up to many guesses.
pub const LOGIN_PER_ACCOUNT_DEVICES: Limit = Limit {
    scope: "login-account-devices",
    max: 30,
    window_secs: 300,
};
/// Registrations from one client address.
pub const REGISTER_PER_IP: Limit = Limit {
    scope: "register-ip",
    max: 10,
    window_secs: 3600,
};
/// Password changes (each verifies the current password) for one signed-in user.
pub const PASSWORD_PER_USER: Limit = Limit {
    scope: "password-user",
    max: 10,
    window_secs: 300,
};

/// Email-sending requests (verification, reset, magic link, email change) for one address.
pub const EMAIL_PER_ADDRESS: Limit = Limit {
    scope: "email-address",
    max: 5,
    window_secs: 3600,
};
/// Reset and magic-link requests from a browser holding the owner's device cookie, per cookie:
/// counted instead of the address's, so strangers who spend an address's mails cannot keep the
/// owner's own browsers from getting a link.
pub const EMAIL_PER_DEVICE: Limit = Limit {
    scope: "email-device",
    max: 5,
    window_secs: 3600,
};
/// Email-sending requests from one client address.
pub const EMAIL_PER_IP: Limit = Limit {
    scope: "email-ip",
    max: 30,
    window_secs: 3600,
};
/// Second-factor codes (authenticator or recovery) checked for one account, at sign-in and for
/// changes: with the password known, ten guesses per 15 minutes at three valid 6-digit codes.
pub const SECOND_FACTOR_PER_USER: Limit = Limit {
    scope: "second-factor-user",
    max: 10,
    window_secs: 900,
};
/// Passkey ceremonies begun for one account (registering, a second step, a fresh proof): each
/// stores its challenge for 5 minutes, so even with `TOLLGATE_RATE_LIMIT=off` an account cannot
/// pile them up.
pub const CEREMONIES_PER_USER: Limit = Limit {
    scope: "passkey-ceremony-user",
    max: 30,
    window_secs: 300,
};
/// Token and code submissions from one client address.
pub const TOKEN_PER_IP: Limit = Limit {
    scope: "token-ip",
    max: 30,
    window_secs: 300,
};

/// Counts one hit for `subject` under `limit`; `Err(RateLimited)` once the window is full.
/// Nothing is counted with `TOLLGATE_RATE_LIMIT=off` (tests, benchmarks).
pub async fn hit(state: &Auth, limit: Limit, subject: &str) -> Result<(), AppError> {
    if !state.config.rate_limit {
        return Ok(());
    }
    hit_always(state, limit, subject).await
}

/// [`hit`], counted even with `TOLLGATE_RATE_LIMIT=off`: for a limit that is the security of what
/// it guards (second-factor codes: a million of them, and anyone with the password may ask).
pub async fn hit_always(state: &Auth, limit: Limit, subject: &str) -> Result<(), AppError> {
    let now = state.clock.now();
    let window_start = now - now.rem_euclid(limit.window_secs);
    let key = format!(
        "{}:{}",
        limit.scope,
        hex::encode(&Sha256::digest(subject.as_bytes())[..16])
    );
    let (hits,): (i64,) = sqlx::query_as(
        "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $2, 1) \
         ON CONFLICT (key) DO UPDATE SET \
           hits = CASE WHEN rate_limits.window_start = excluded.window_start \
                       THEN rate_limits.hits + 1 ELSE 1 END, \
           window_start = excluded.window_start \
         RETURNING hits",
    )
    .bind(key)
    .bind(window_start)
    .fetch_one(&state.db.pool)
    .await?;
    if hits > limit.max {
        // An email address is logged masked; other subjects (client addresses, logged as
        // client_ip, ids and nonces) are not logged at all.
        let address = subject
            .contains('@')
            .then(|| crate::telemetry::mask_address(subject));
        crate::telemetry::security_event("rate_limited", address.as_deref(), limit.scope);
        let retry_after = (window_start + limit.window_secs - now).max(1);
        // The first refusal of the window only: a flood adds no writes beyond the counter's.
        if hits == limit.max + 1 {
            let entry = crate::audit::Entry {
                kind: crate::audit::Kind::RateLimited,
                actor: "anonymous",
                subject: None,
                payload: serde_json::json!({
                    "limit": limit.scope, "retry_after": retry_after, "address": address,
                }),
            };
            crate::audit::record_alone(&state.db, now, entry).await?;
        }
        return Err(AppError::RateLimited(retry_after as u64));
    }
    Ok(())
}

/// [`hit`] keyed on the client's address.
pub async fn hit_ip(state: &Auth, limit: Limit, ip: ClientIp) -> Result<(), AppError> {
    hit(state, limit, &ip.bucket()).await
}

impl ClientIp {
    /// The subject of per-client limits: an IPv4 address, or the /64 an IPv6 address is in (one
    /// host, or one customer of an ISP, is given a whole /64 and can pick any address in it). An
    /// IPv4 address mapped into IPv6 counts as itself.
    pub fn bucket(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        }
    }
}

/// Deletes counters whose window is long over; run periodically.
pub async fn delete_stale(db: &db::Db) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
        .bind(db::now() - 86_400)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}

/// The client's address: the platform header when configured, `X-Forwarded-For` when the peer is
/// a trusted proxy, else the peer itself. Anything else a client sends is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Worked out once per request, at the edge (`app::edge` stores it); computed here only
        // for a router mounted without that layer.
        if let Some(ip) = parts.extensions.get::<ClientIp>() {
            return Ok(*ip);
        }
        let state = Auth::from_ref(state);
        Ok(ClientIp::of(&state, &parts.extensions, &parts.headers))
    }
}

impl ClientIp {
    /// The TCP peer of the request, when the server recorded it.
    pub fn peer(extensions: &Extensions) -> Option<IpAddr> {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    }

    /// Whether the request's TCP peer is one of `TOLLGATE_TRUSTED_PROXIES`; an unknown peer is
    /// never trusted.
    pub fn peer_is_trusted(state: &Auth, extensions: &Extensions) -> bool {
        Self::peer(extensions).is_some_and(|ip| {
            state
                .config
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&ip))
        })
    }

    /// The client address of a request with these extensions and headers. Without a recorded
    /// peer (a router served without connection info) no forwarding header is believed: every
    /// such request counts as the unspecified address, one shared bucket, never a trusted proxy.
    pub fn of(state: &Auth, extensions: &Extensions, headers: &HeaderMap) -> Self {
        let platform = state.config.client_ip_header.as_deref();
        let Some(peer) = Self::peer(extensions) else {
            let unknown = IpAddr::from([0, 0, 0, 0]);
            return ClientIp(client_ip(unknown, headers, &[], platform));
        };
        ClientIp(client_ip(
            peer,
            headers,
            &state.config.trusted_proxies,
            platform,
        ))
    }
}

/// See [`ClientIp`].
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
    platform_header: Option<&str>,
) -> IpAddr {
    let header_ip = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    };
    if let Some(ip) = platform_header.and_then(header_ip) {
        return ip;
    }
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Walk X-Forwarded-For from the right: the first hop not ours is the client.
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let ip = |s: &str| ClientIp(s.parse().unwrap()).bucket();
        assert_eq!(
            ip("2001:db8:1:2:aaaa::1"),
            ip("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(ip("192.0.2.7"), "192.0.2.7");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.2")]);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted, None),
            "203.0.113.7".parse::<IpAddr>().unwrap(),
            "through trusted proxies, the first untrusted hop"
        );
        assert_eq!(
            client_ip(stranger, &h, &trusted, None),
            stranger,
            "a direct client cannot spoof its address"
        );
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9")]);
        assert_eq!(
            client_ip(proxy, &spoof, &trusted, None),
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "a client-prepended hop is ignored"
        );
    }

    #[test]
    fn the_platform_header_wins_when_configured() {
        let h = headers(&[("fly-client-ip", "203.0.113.8")]);
        let peer: IpAddr = "172.16.0.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h, &[], Some("fly-client-ip")),
            "203.0.113.8".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, &h, &[], None), peer);
    }
}
