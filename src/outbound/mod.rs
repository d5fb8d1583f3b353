//! Outbound webhooks: the audit trail's events, delivered to the product's backends as Standard
//! Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), so any language's Standard
//! Webhooks library verifies them.
//!
//! An endpoint (set by `TOLLGATE_WEBHOOK_URL`, or added in the admin area) receives the events
//! that follow its creation, in the trail's order (`seq`), each until its backend answers 2xx.
//! Its place is one number, `cursor_seq`: the events are the queue, so an event committed is
//! an event delivered, whatever stops in between. A failed delivery is tried again after 5 s,
//! then four times longer each time (at most 6 h); after `TOLLGATE_WEBHOOK_MAX_ATTEMPTS` tries it
//! is dead and its endpoint stops (nothing is delivered out of order) until an administrator
//! retries it. One instance at a time delivers an endpoint's events (a lease), so with several
//! instances each event is delivered once when the backend answers 2xx; a delivery whose answer
//! is lost (a crash, a timeout) comes again with the same `webhook-id`, which receivers dedupe on.

pub mod deliver;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore as _;
use serde::Serialize;
use sha2::Sha256;
use sqlx::{AnyConnection, Row as _, any::AnyRow};

use crate::{
    audit,
    clock::rfc3339,
    config::{Config, Mode, valid_event_pattern, webhook_secret_key},
    db::Db,
    error::AppError,
    ids::new_id,
};

/// The id of the endpoint `TOLLGATE_WEBHOOK_URL` sets.
pub const SETTING_ID: &str = "whe_setting";

/// How long a replaced secret still signs after a rotation in the admin area.
pub const ROTATION_OVERLAP_SECS: i64 = 24 * 3600;

/// An endpoint as stored.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `whe_…`.
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_until: Option<i64>,
    /// The event types it receives: `*`, `family.*` or a type.
    pub event_types: Vec<String>,
    /// Set by `TOLLGATE_WEBHOOK_URL` (not changed in the admin area).
    pub from_setting: bool,
    /// When it was added.
    pub created_at: i64,
    /// The last event it has finished with.
    pub cursor_seq: i64,
    /// Failed tries of the next event.
    pub attempts: i64,
    /// When the next event is tried again.
    pub next_attempt_at: i64,
    /// When it stopped at a dead delivery.
    pub dead_at: Option<i64>,
    /// The last failure, in words.
    pub last_error: Option<String>,
}

const COLUMNS: &str = "SELECT id, url, secret, previous_secret, previous_until, event_types, \
     from_setting, created_at, cursor_seq, attempts, next_attempt_at, dead_at, last_error \
     FROM webhook_endpoints";

impl<'r> sqlx::FromRow<'r, AnyRow> for Endpoint {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        let types: String = row.try_get("event_types")?;
        Ok(Self {
            id: row.try_get("id")?,
            url: row.try_get("url")?,
            secret: row.try_get("secret")?,
            previous_secret: row.try_get("previous_secret")?,
            previous_until: row.try_get("previous_until")?,
            event_types: serde_json::from_str(&types).unwrap_or_default(),
            from_setting: row.try_get::<i64, _>("from_setting")? != 0,
            created_at: row.try_get("created_at")?,
            cursor_seq: row.try_get("cursor_seq")?,
            attempts: row.try_get("attempts")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            dead_at: row.try_get("dead_at")?,
            last_error: row.try_get("last_error")?,
        })
    }
}

impl Endpoint {
    /// Whether it receives events of type `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.event_types.iter().any(|p| {
            p == "*"
                || p == kind
                || p.strip_suffix('*')
                    .is_some_and(|family| kind.starts_with(family))
        })
    }

    /// The keys that sign a delivery at `now`: the current secret's, then the replaced one's
    /// while it still signs.
    fn keys(&self, now: i64) -> Vec<Vec<u8>> {
        let previous = self
            .previous_secret
            .as_deref()
            .filter(|_| self.previous_until.is_some_and(|until| until > now));
        [Some(self.secret.as_str()), previous]
            .into_iter()
            .flatten()
            .filter_map(webhook_secret_key)
            .collect()
    }

    /// `active`, `retrying` (the next event failed, and waits for its next try) or `dead`.
    pub fn state(&self) -> &'static str {
        match (self.dead_at, self.attempts) {
            (Some(_), _) => "dead",
            (None, 0) => "active",
            (None, _) => "retrying",
        }
    }
}

/// The `webhook-signature` of a delivery: `v1,<base64 HMAC-SHA256 of id.timestamp.body>` for each
/// key, space-separated (Standard Webhooks).
pub fn signature(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &str) -> String {
    keys.iter()
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
            let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            format!("v1,{sig}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A new secret: `whsec_` and the base64 of 32 random bytes.
fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Makes the stored endpoint of `TOLLGATE_WEBHOOK_URL` what the settings say (start-up): added
/// (from the next event on) or changed in place (its place in the trail kept). An instance
/// without the setting leaves it alone: one started without it (a deploy half done, a one-off
/// command) must not stop the others' deliveries. It goes when an administrator removes it.
pub async fn sync_setting(db: &Db, config: &Config, now: i64) -> anyhow::Result<()> {
    let settings = &config.webhooks;
    let Some(url) = settings.url.as_ref() else {
        return Ok(());
    };
    if let Some(unknown) = settings
        .events
        .iter()
        .find(|p| !audit::Kind::known_pattern(p))
    {
        // A setting error (exit 2), found here because only the audit trail knows its types.
        let message = format!("`{unknown}` names no event type (README: Audit trail)");
        return Err(crate::config::ConfigError::new("TOLLGATE_WEBHOOK_EVENTS", message).into());
    }
    let secret = settings.secrets.first().map(|s| s.expose().to_owned());
    let previous = settings.secrets.get(1).map(|s| s.expose().to_owned());
    let types = serde_json::to_string(&settings.events).expect("strings");
    let changed = sqlx::query(
        "UPDATE webhook_endpoints SET url = $1, secret = $2, previous_secret = $3, \
         previous_until = $4, event_types = $5 WHERE id = $6",
    )
    .bind(url.as_str())
    .bind(&secret)
    .bind(&previous)
    .bind(previous.as_ref().map(|_| i64::MAX))
    .bind(&types)
    .bind(SETTING_ID)
    .execute(&db.pool)
    .await?;
    if changed.rows_affected() == 0 {
        let conn = &mut *db.pool.acquire().await?;
        insert(
            conn,
            SETTING_ID,
            url.as_str(),
            secret.as_deref(),
            &types,
            true,
            now,
        )
        .await?;
    }
    Ok(())
}

async fn insert(
    conn: &mut AnyConnection,
    id: &str,
    url: &str,
    secret: Option<&str>,
    types: &str,
    from_setting: bool,
    now: i64,
) -> sqlx::Result<()> {
    let cursor = audit::last_seq(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, secret, event_types, from_setting, created_at, \
         cursor_seq, attempts, next_attempt_at, lease_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(url)
    .bind(secret)
    .bind(types)
    .bind(i64::from(from_setting))
    .bind(now)
    .bind(cursor)
    .execute(conn)
    .await?;
    Ok(())
}

/// `url` as the audit trail records it: without its query, which may hold a token.
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.to_string()
        }
        Err(_) => String::new(),
    }
}

/// Checks an endpoint's URL: absolute http(s), no user name or password, no fragment; https
/// only in production.
pub fn check_url(config: &Config, raw: &str) -> Result<url::Url, AppError> {
    let bad = || AppError::InvalidField("url".into());
    let url = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    let scheme_ok = match config.mode {
        Mode::Production => url.scheme() == "https",
        Mode::Development => matches!(url.scheme(), "http" | "https"),
    };
    if !scheme_ok
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
        || raw.len() > 2000
    {
        return Err(bad());
    }
    Ok(url)
}

/// Adds an endpoint that receives `event_types` (every type when empty) from the next event
/// on: the endpoint and its secret (shown once).
pub async fn create(
    conn: &mut AnyConnection,
    config: &Config,
    url: &str,
    event_types: &[String],
    now: i64,
) -> Result<(Endpoint, String), AppError> {
    let url = check_url(config, url)?;
    let known = |p: &String| valid_event_pattern(p) && audit::Kind::known_pattern(p);
    if event_types.len() > 50 || !event_types.iter().all(known) {
        return Err(AppError::InvalidField("events".into()));
    }
    let types = if event_types.is_empty() {
        vec!["*".to_owned()]
    } else {
        event_types.to_vec()
    };
    let id = new_id("whe");
    let secret = new_secret();
    let types = serde_json::to_string(&types).expect("strings");
    insert(
        &mut *conn,
        &id,
        url.as_str(),
        Some(&secret),
        &types,
        false,
        now,
    )
    .await?;
    let endpoint = find_on(conn, &id).await?.ok_or(AppError::NotFound)?;
    Ok((endpoint, secret))
}

/// Every endpoint, oldest first.
pub async fn list(db: &Db) -> sqlx::Result<Vec<Endpoint>> {
    let sql = format!("{COLUMNS} ORDER BY created_at, id");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&db.pool)
        .await
}

/// One endpoint.
pub async fn find(db: &Db, id: &str) -> sqlx::Result<Option<Endpoint>> {
    find_on(&mut *db.pool.acquire().await?, id).await
}

/// [`find`] on a connection (inside a transaction).
async fn find_on(conn: &mut AnyConnection, id: &str) -> sqlx::Result<Option<Endpoint>> {
    if id.contains('\0') {
        return Ok(None);
    }
    let sql = format!("{COLUMNS} WHERE id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// An endpoint the admin area may change: 404 for none, `invalid_field` `id` for the one the
/// environment sets (changed by its settings).
async fn changeable(conn: &mut AnyConnection, id: &str) -> Result<Endpoint, AppError> {
    let endpoint = find_on(conn, id).await?.ok_or(AppError::NotFound)?;
    if endpoint.from_setting {
        return Err(AppError::InvalidField("id".into()));
    }
    Ok(endpoint)
}

/// Removes an endpoint (its undelivered events are not sent). The one `TOLLGATE_WEBHOOK_URL`
/// sets comes back, from the next event on, when an instance with the setting starts.
pub async fn delete(conn: &mut AnyConnection, id: &str) -> Result<Endpoint, AppError> {
    let endpoint = find_on(&mut *conn, id).await?.ok_or(AppError::NotFound)?;
    sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(endpoint)
}

/// Gives an endpoint a new secret; the old one signs too for [`ROTATION_OVERLAP_SECS`]. The new
/// secret, and until when the old one signs.
pub async fn rotate(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
) -> Result<(String, i64), AppError> {
    let endpoint = changeable(&mut *conn, id).await?;
    let secret = new_secret();
    let until = now + ROTATION_OVERLAP_SECS;
    sqlx::query(
        "UPDATE webhook_endpoints SET secret = $1, previous_secret = $2, previous_until = $3 \
         WHERE id = $4",
    )
    .bind(&secret)
    .bind(&endpoint.secret)
    .bind(until)
    .bind(id)
    .execute(conn)
    .await?;
    Ok((secret, until))
}

/// Starts a stopped endpoint again at its dead delivery (tried at once, then as usual); false
/// when it was not stopped. The endpoint the environment sets may be retried too.
pub async fn retry(conn: &mut AnyConnection, id: &str) -> Result<bool, AppError> {
    find_on(&mut *conn, id).await?.ok_or(AppError::NotFound)?;
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET dead_at = NULL, attempts = 0, next_attempt_at = 0 \
         WHERE id = $1 AND dead_at IS NOT NULL",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One delivery attempt, as the admin area shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    /// The event (`aud_…`, the `webhook-id`).
    pub event_id: String,
    /// Its place in the trail.
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// The backend's HTTP status; `null` when none came (refused, timed out).
    pub status: Option<i64>,
    /// What went wrong, in words; `null` for a 2xx.
    pub error: Option<String>,
}

/// The endpoint's latest attempts, newest first.
pub async fn attempts(db: &Db, id: &str, limit: i64) -> sqlx::Result<Vec<Attempt>> {
    type Row = (String, i64, i64, Option<i64>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT event_id, seq, at, status, error FROM webhook_attempts WHERE endpoint_id = $1 \
         ORDER BY at DESC, seq DESC, id DESC LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(event_id, seq, at, status, error)| Attempt {
            event_id,
            seq,
            at: rfc3339(at),
            status,
            error,
        })
        .collect())
}

/// Removes the attempts older than `before` (with the audit trail's retention); how many.
pub async fn prune_attempts(db: &Db, before: i64) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM webhook_attempts WHERE at < $1")
        .bind(before)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_standard_webhooks_v1_for_each_key() {
        // The Standard Webhooks specification's example: this secret, id, timestamp and body
        // sign to this signature.
        let key = webhook_secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        let sig = signature(
            std::slice::from_ref(&key),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let two = signature(
            &[key.clone(), key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        );
        assert_eq!(two, format!("{sig} {sig}"));
    }

    #[test]
    fn endpoints_want_their_types_and_families() {
        let mut endpoint = Endpoint {
            id: "whe_1".into(),
            url: "https://example.com/".into(),
            secret: new_secret(),
            previous_secret: Some(new_secret()),
            previous_until: Some(100),
            event_types: vec!["billing.*".into(), "account.deleted".into()],
            from_setting: false,
            created_at: 0,
            cursor_seq: 0,
            attempts: 0,
            next_attempt_at: 0,
            dead_at: None,
            last_error: None,
        };
        assert!(endpoint.wants("billing.payment_failed"));
        assert!(endpoint.wants("account.deleted"));
        assert!(!endpoint.wants("account.deleted_x"));
        assert!(!endpoint.wants("auth.signed_in"));
        assert!(!endpoint.wants("billingx.y"));
        endpoint.event_types = vec!["*".into()];
        assert!(endpoint.wants("auth.signed_in"));
        assert_eq!(
            endpoint.keys(99).len(),
            2,
            "the replaced secret signs until its time"
        );
        assert_eq!(endpoint.keys(100).len(), 1);
    }
}
