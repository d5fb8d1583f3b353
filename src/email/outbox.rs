//! The `outbox` table: messages queued in the transaction that causes them, claimed under a lease
//! by the sending worker, and listed by the development mailbox.

use serde::Serialize;
use sqlx::{Any, AnyConnection, Row as _, any::AnyRow};

use super::Kind;
use crate::{
    db::{self, Db},
    ids::new_id,
};

/// A rendered message to queue.
pub(super) struct NewMessage<'a> {
    pub kind: Kind,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
    /// A second message with the same key is not queued.
    pub dedupe_key: Option<String>,
}

/// Queues `msg` on `conn` (inside the caller's transaction), unless its dedupe key was queued.
pub(super) async fn insert(
    conn: &mut AnyConnection,
    msg: NewMessage<'_>,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO outbox (id, kind, recipient, subject, text_body, html_body, dedupe_key, status, \
         attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(new_id("msg"))
    .bind(msg.kind.as_str())
    .bind(msg.to)
    .bind(msg.subject)
    .bind(msg.text)
    .bind(msg.html)
    .bind(msg.dedupe_key)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// A message claimed for sending.
pub(super) struct Claimed {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

impl<'r> sqlx::FromRow<'r, AnyRow> for Claimed {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            recipient: row.try_get("recipient")?,
            subject: row.try_get("subject")?,
            text_body: row.try_get("text_body")?,
            html_body: row.try_get("html_body")?,
            attempts: row.try_get("attempts")?,
        })
    }
}

/// Claims up to `limit` due messages until `lease_until` (`FOR UPDATE SKIP LOCKED` on
/// PostgreSQL, so instances never claim the same message).
pub(super) async fn claim(
    db: &Db,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> sqlx::Result<Vec<Claimed>> {
    let skip_locked = match db.engine {
        db::Engine::Postgres => "FOR UPDATE SKIP LOCKED",
        db::Engine::Sqlite => "",
    };
    let sql = format!(
        "UPDATE outbox SET locked_until = $1, attempts = attempts + 1 WHERE id IN ( \
           SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $2 \
           AND (locked_until IS NULL OR locked_until < $2) ORDER BY created_at LIMIT $3 {skip_locked}) \
         RETURNING id, recipient, subject, text_body, html_body, attempts"
    );
    sqlx::query_as::<Any, Claimed>(sqlx::AssertSqlSafe(sql))
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(&db.pool)
        .await
}

/// Marks a claimed message sent.
pub(super) async fn mark_sent(db: &Db, id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET status = 'sent', sent_at = $1, locked_until = NULL WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Releases a claimed message that was not sent: tried again at `next_attempt_at`, or given up
/// (`give_up`). `error` is kept (its first 500 characters) for an operator.
pub(super) async fn mark_unsent(
    db: &Db,
    id: &str,
    give_up: bool,
    next_attempt_at: i64,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outbox SET status = $1, next_attempt_at = $2, locked_until = NULL, last_error = $3 \
         WHERE id = $4",
    )
    .bind(if give_up { "failed" } else { "pending" })
    .bind(next_attempt_at)
    .bind(error.chars().take(500).collect::<String>())
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Drops the messages still waiting for `recipient` (inside the caller's transaction: an account
/// being deleted).
pub async fn drop_pending_to(conn: &mut AnyConnection, recipient: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM outbox WHERE recipient = $1 AND status = 'pending'")
        .bind(recipient)
        .execute(conn)
        .await?;
    Ok(())
}

/// A message as the development mailbox shows it.
#[derive(Serialize)]
pub struct MailboxMessage {
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
}

impl<'r> sqlx::FromRow<'r, AnyRow> for MailboxMessage {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(Self {
            to: row.try_get("recipient")?,
            subject: row.try_get("subject")?,
            text: row.try_get("text_body")?,
            html: row.try_get("html_body")?,
            status: row.try_get("status")?,
        })
    }
}

/// The latest `limit` messages, newest first.
pub async fn latest(db: &Db, limit: i64) -> sqlx::Result<Vec<MailboxMessage>> {
    sqlx::query_as(
        "SELECT recipient, subject, text_body, html_body, status FROM outbox \
         ORDER BY created_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await
}
