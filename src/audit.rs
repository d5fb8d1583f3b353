//! The audit trail: one table of security and billing events (`audit_events`), each appended in
//! the transaction of the change it records, numbered in commit order (`seq`). Users read their
//! own (`GET /api/account/activity`, the account's activity page); `TOLLGATE_AUDIT_RETENTION_DAYS`
//! bounds how long they are kept and `tollgate audit prune` removes the older ones.
//!
//! An entry holds a type, who acted (`actor`: a user id, `system`, or `stripe`), whom it is about
//! (`subject`), when, the request id and client address of the request that caused it, and a
//! small JSON payload. Never a secret, a password, a token or card data; an address only masked.

use serde::Serialize;
use serde_json::Value;
use sqlx::AnyConnection;

use crate::{clock::rfc3339, db::Db, ids::new_id};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An account was made.
    SignedUp,
    /// A sign-in finished (any method).
    SignedIn,
    /// A password sign-in was refused (`subject` only when the address has an account).
    SignInFailed,
    /// A rate limit refused its first request of a window (the rest of the window is not
    /// recorded, so a flood writes one event per window and key).
    RateLimited,
    /// A session or a token sign-in ended at its owner's request.
    SignedOut,
    /// The password was changed or reset.
    PasswordChanged,
    /// The account was deleted.
    AccountDeleted,
    /// A new address was confirmed.
    EmailChanged,
    /// Two-factor sign-in was turned on.
    SecondFactorEnabled,
    /// Two-factor sign-in was turned off (by the owner, or reset by an operator).
    SecondFactorDisabled,
    /// New recovery codes replaced the old ones.
    RecoveryCodesRenewed,
    /// A passkey was added.
    PasskeyAdded,
    /// A passkey was removed.
    PasskeyRemoved,
    /// An API key was made.
    ApiKeyCreated,
    /// An API key was revoked.
    ApiKeyRevoked,
    /// A role was granted.
    RoleGranted,
    /// A role was taken back.
    RoleRevoked,
    /// A Checkout Session was opened for a plan.
    CheckoutStarted,
    /// Stripe reported a Checkout Session completed.
    CheckoutCompleted,
    /// An administrator signed a user out everywhere.
    AdminSignedOut,
    /// An administrator had the user's subscriptions read again from Stripe.
    AdminResynced,
    /// An administrator sent the user a new verification link.
    AdminResentVerification,
    /// An administrator signed out one of the user's devices.
    AdminSignedOutDevice,
    /// An administrator added an outbound webhook endpoint.
    AdminWebhookCreated,
    /// An administrator removed one.
    AdminWebhookDeleted,
    /// An administrator gave one a new signing secret.
    AdminWebhookRotated,
    /// An administrator started a stopped one again.
    AdminWebhookRetried,
    /// The account was suspended (by an administrator, or the operator).
    Suspended,
    /// The account's suspension was lifted.
    Unsuspended,
    /// Stripe's state of a subscription changed what is stored: plan or status.
    SubscriptionChanged,
    /// A payment failed.
    PaymentFailed,
    /// The user's access rose to a higher plan (seen by the access watch).
    AccessGranted,
    /// The user's access fell to a lower plan, or to none.
    AccessRevoked,
    /// A past-due subscription's grace period began: the plan is kept until it ends.
    GraceStarted,
    /// The grace period ended: paid, or over (the plan went with it).
    GraceEnded,
}

impl Kind {
    /// Every kind, for the documentation's table.
    pub const ALL: [Kind; 35] = [
        Kind::SignedUp,
        Kind::SignedIn,
        Kind::SignInFailed,
        Kind::RateLimited,
        Kind::SignedOut,
        Kind::PasswordChanged,
        Kind::EmailChanged,
        Kind::SecondFactorEnabled,
        Kind::SecondFactorDisabled,
        Kind::RecoveryCodesRenewed,
        Kind::PasskeyAdded,
        Kind::PasskeyRemoved,
        Kind::ApiKeyCreated,
        Kind::ApiKeyRevoked,
        Kind::RoleGranted,
        Kind::RoleRevoked,
        Kind::Suspended,
        Kind::Unsuspended,
        Kind::AccountDeleted,
        Kind::CheckoutStarted,
        Kind::CheckoutCompleted,
        Kind::SubscriptionChanged,
        Kind::PaymentFailed,
        Kind::GraceStarted,
        Kind::GraceEnded,
        Kind::AccessGranted,
        Kind::AccessRevoked,
        Kind::AdminSignedOut,
        Kind::AdminResynced,
        Kind::AdminResentVerification,
        Kind::AdminSignedOutDevice,
        Kind::AdminWebhookCreated,
        Kind::AdminWebhookDeleted,
        Kind::AdminWebhookRotated,
        Kind::AdminWebhookRetried,
    ];

    /// The stored and published name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SignedUp => "account.signed_up",
            Kind::SignedIn => "auth.signed_in",
            Kind::SignInFailed => "auth.sign_in_failed",
            Kind::RateLimited => "auth.rate_limited",
            Kind::SignedOut => "auth.signed_out",
            Kind::PasswordChanged => "account.password_changed",
            Kind::AccountDeleted => "account.deleted",
            Kind::EmailChanged => "account.email_changed",
            Kind::SecondFactorEnabled => "account.second_factor_enabled",
            Kind::SecondFactorDisabled => "account.second_factor_disabled",
            Kind::RecoveryCodesRenewed => "account.recovery_codes_renewed",
            Kind::PasskeyAdded => "account.passkey_added",
            Kind::PasskeyRemoved => "account.passkey_removed",
            Kind::ApiKeyCreated => "account.api_key_created",
            Kind::ApiKeyRevoked => "account.api_key_revoked",
            Kind::RoleGranted => "account.role_granted",
            Kind::RoleRevoked => "account.role_revoked",
            Kind::CheckoutStarted => "billing.checkout_started",
            Kind::CheckoutCompleted => "billing.checkout_completed",
            Kind::AdminSignedOut => "admin.signed_out_user",
            Kind::AdminResynced => "admin.resynced_user",
            Kind::AdminResentVerification => "admin.resent_verification",
            Kind::AdminSignedOutDevice => "admin.signed_out_device",
            Kind::AdminWebhookCreated => "admin.webhook_created",
            Kind::AdminWebhookDeleted => "admin.webhook_deleted",
            Kind::AdminWebhookRotated => "admin.webhook_secret_rotated",
            Kind::AdminWebhookRetried => "admin.webhook_retried",
            Kind::Suspended => "account.suspended",
            Kind::Unsuspended => "account.unsuspended",
            Kind::SubscriptionChanged => "billing.subscription_changed",
            Kind::PaymentFailed => "billing.payment_failed",
            Kind::AccessGranted => "billing.access_granted",
            Kind::AccessRevoked => "billing.access_revoked",
            Kind::GraceStarted => "billing.grace_started",
            Kind::GraceEnded => "billing.grace_ended",
        }
    }

    /// Whether `pattern` (`*`, `family.*` or a type) names event types that exist.
    pub fn known_pattern(pattern: &str) -> bool {
        match pattern.strip_suffix(".*") {
            _ if pattern == "*" => true,
            Some(family) => Kind::ALL
                .iter()
                .any(|k| k.as_str().split('.').next() == Some(family)),
            None => Kind::ALL.iter().any(|k| k.as_str() == pattern),
        }
    }

    /// Security events are shown to their subject as their account's history.
    pub fn is_security(self) -> bool {
        !self.as_str().starts_with("billing.")
    }
}

/// One event to append.
pub struct Entry<'a> {
    /// What happened.
    pub kind: Kind,
    /// Who acted: a user id, `system` or `stripe`.
    pub actor: &'a str,
    /// Whom it is about.
    pub subject: Option<&'a str>,
    /// A small JSON object of details (no secrets).
    pub payload: Value,
}

/// Appends `entry` on `conn` (inside the transaction of the change it records), at `now`.
pub async fn record(conn: &mut AnyConnection, now: i64, entry: Entry<'_>) -> sqlx::Result<()> {
    // The counter row is held until the transaction ends, so numbers commit in order.
    let (seq,): (i64,) = sqlx::query_as(
        "UPDATE audit_sequence SET value = value + 1 WHERE name = 'audit_events' RETURNING value",
    )
    .fetch_one(&mut *conn)
    .await?;
    let (request_id, client_ip) = crate::telemetry::request_context();
    sqlx::query(
        "INSERT INTO audit_events (id, seq, type, actor, subject, at, request_id, client_ip, payload) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new_id("aud"))
    .bind(seq)
    .bind(entry.kind.as_str())
    .bind(entry.actor)
    .bind(entry.subject)
    .bind(now)
    .bind(request_id)
    .bind(client_ip)
    .bind(entry.payload.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Appends `entry` in a transaction of its own: for what changes no row of tollgate's (a refused
/// sign-in) or is written by a store of its own (a session).
pub async fn record_alone(db: &Db, now: i64, entry: Entry<'_>) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    record(&mut tx, now, entry).await?;
    tx.commit().await
}

/// An event as its subject reads it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ActivityEvent)]
pub struct EventJson {
    /// `aud_…`.
    pub id: String,
    /// Its type (`auth.signed_in`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// When (RFC 3339).
    pub at: String,
    /// The client address of the request that caused it, when there was one.
    pub client_ip: Option<String>,
    /// Details.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// The security history of `user`, newest first, at most `limit` events: every type but the
/// `billing.*` ones (see [`Kind::is_security`]).
pub async fn security_history(db: &Db, user: &str, limit: i64) -> sqlx::Result<Vec<EventJson>> {
    read(db, user, limit, true).await
}

/// Every event about `user` (security and billing), newest first, at most `limit`: what an
/// administrator reads.
pub async fn about(db: &Db, user: &str, limit: i64) -> sqlx::Result<Vec<EventJson>> {
    read(db, user, limit, false).await
}

async fn read(db: &Db, user: &str, limit: i64, owner: bool) -> sqlx::Result<Vec<EventJson>> {
    let sql = if owner {
        "SELECT id, type, actor, at, client_ip, payload FROM audit_events \
         WHERE subject = $1 AND type NOT LIKE 'billing.%' ORDER BY seq DESC LIMIT $2"
    } else {
        "SELECT id, type, actor, at, client_ip, payload FROM audit_events \
         WHERE subject = $1 ORDER BY seq DESC LIMIT $2"
    };
    let rows: Vec<Row> = sqlx::query_as(sql)
        .bind(user)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| event_json(row, owner.then_some(user)))
        .collect())
}

type Row = (String, String, String, i64, Option<String>, String);

/// An event as its reader sees it: the owner (`owner`) never sees an administrator's address or
/// the reason given for a suspension, which are for administrators.
fn event_json((id, kind, actor, at, client_ip, payload): Row, owner: Option<&str>) -> EventJson {
    let mut payload = serde_json::from_str(&payload).unwrap_or(Value::Null);
    let someone_else = owner.is_some_and(|owner| actor != owner && actor != "anonymous");
    if let Some(map) = payload
        .as_object_mut()
        .filter(|_| owner.is_some() && kind == Kind::Suspended.as_str())
    {
        map.remove("reason");
    }
    EventJson {
        id,
        kind,
        at: rfc3339(at),
        client_ip: client_ip.filter(|_| !someone_else),
        payload,
    }
}

/// An event as outbound webhooks publish it (`data` of a delivery): no client address.
#[derive(Clone, Debug, Serialize)]
pub struct Published {
    /// `aud_…`: the deliveries' `webhook-id`, the same at every try.
    pub id: String,
    /// Its place in the trail: later events have higher numbers (with gaps).
    pub seq: i64,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who acted: a user id, `anonymous`, `operator`, `system` or `stripe`.
    pub actor: String,
    /// The user it is about.
    pub subject: Option<String>,
    /// When (RFC 3339).
    pub at: String,
    /// The id of the request that caused it (the `X-Request-Id` answered and logged).
    pub request_id: Option<String>,
    /// Details.
    pub payload: Value,
}

/// The events after `seq`, in order, at most `limit`.
pub async fn after(db: &Db, seq: i64, limit: i64) -> sqlx::Result<Vec<Published>> {
    type Row = (
        String,
        i64,
        String,
        String,
        Option<String>,
        i64,
        Option<String>,
        String,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, seq, type, actor, subject, at, request_id, payload FROM audit_events \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(seq)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, seq, kind, actor, subject, at, request_id, payload)| Published {
                id,
                seq,
                kind,
                actor,
                subject,
                at: rfc3339(at),
                request_id,
                payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
            },
        )
        .collect())
}

/// The number of the latest event (0 before the first): where a new endpoint starts.
pub async fn last_seq(conn: &mut AnyConnection) -> sqlx::Result<i64> {
    let (seq,): (i64,) =
        sqlx::query_as("SELECT value FROM audit_sequence WHERE name = 'audit_events'")
            .fetch_one(conn)
            .await?;
    Ok(seq)
}

/// Removes the events older than `before` (Unix seconds); how many.
pub async fn prune(db: &Db, before: i64) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM audit_events WHERE at < $1")
        .bind(before)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::Kind;

    /// The README's table lists every type, once, in this order.
    #[test]
    fn the_readme_lists_every_event_type() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("| type | actor | when | payload |")
            .expect("the table");
        let listed: Vec<&str> = readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(listed, kinds);
    }
}
